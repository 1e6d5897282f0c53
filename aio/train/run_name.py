"""Informative MLflow run names for standalone runs: what the run is, not only its backbone.

``run_label(base, overrides)`` -> e.g. ``baseline strategy=progressive loss=gfl trainer.max_steps=2000``:
the experiment's (or the backbone's) name followed by the command-line overrides that change what is
trained; bookkeeping overrides (where outputs, logs and the tracking store go, the device, the progress
bar) are left out. Sweeps name their jobs after the table row instead.
"""

from __future__ import annotations

from collections.abc import Iterable

BOOKKEEPING = ("hydra.", "logger.", "paths.", "trainer.device", "trainer.progress", "trainer.resume",
               "launcher", "experiment=", "run_name=")
MAX_LENGTH = 250  # MLflow's run-name limit is generous; keep the UI readable


def run_label(base: str, overrides: Iterable[str]) -> str:
    """``base`` plus the overrides that change the trained model, trimmed to ``MAX_LENGTH`` characters."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith(BOOKKEEPING)]
    label = " ".join([base, *kept])
    return label if len(label) <= MAX_LENGTH else label[: MAX_LENGTH - 3] + "..."
