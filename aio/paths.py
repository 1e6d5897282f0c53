"""Where the repository, its Hydra configs and its outputs live.

aio is installed editable from its repository, so the configs are found next to the package. Set
``AIO_OUTPUTS`` to put outputs (runs, the MLflow store, tables) somewhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
SWEEPS_DIR = REPO_ROOT / "sweeps"


def outputs_dir() -> Path:
    """The outputs folder: ``$AIO_OUTPUTS`` when set, else ``<repo>/outputs``."""
    return Path(os.environ.get("AIO_OUTPUTS", REPO_ROOT / "outputs")).resolve()
