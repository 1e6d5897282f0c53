"""Shared test set-up: outputs go to a temporary folder, torch threads fit the xdist worker count."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

# ../shared/reference beside the checkout: the official state-dict lists and published results.
# (AIO_SHARED_REFERENCE overrides the location; tests/test_ci_guards.py uses it.)
SHARED_REFERENCE = Path(os.environ.get("AIO_SHARED_REFERENCE")
                        or Path(__file__).resolve().parents[2] / "shared" / "reference")


def ci_missing_requirements() -> list[str]:
    """What the tests would skip for: locally a skip with its reason, under ``CI=true`` a failed run."""
    missing = []
    if not SHARED_REFERENCE.is_dir() or not any(SHARED_REFERENCE.iterdir()):
        missing.append(f"{SHARED_REFERENCE} (the official state-dict lists and published results) is missing")
    if shutil.which("pdflatex") is None:
        missing.append("pdflatex is not on PATH (apt-get install texlive-latex-base texlive-latex-recommended)")
    return missing


def pytest_sessionstart(session):
    """Under CI=true the state-dict, published-CSV and LaTeX tests must run: a missing input fails the run."""
    if os.environ.get("CI") == "true":
        missing = ci_missing_requirements()
        if missing:
            pytest.exit("CI=true, but the tests would skip: " + "; ".join(missing), returncode=3)

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_threads = max(1, (os.cpu_count() or 1) // _workers)
torch.set_num_threads(_threads)
# Subprocesses (CLI, sweeps, DDP ranks) inherit these: two multi-threaded torch processes on 2 cores
# otherwise spin-wait on each other and run 10x slower.
os.environ["OMP_NUM_THREADS"] = str(_threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True, scope="session")
def _isolated_outputs(tmp_path_factory) -> Path:
    """Send every default output path (runs, MLflow store) to a session temp dir, never the repo's outputs/."""
    out = tmp_path_factory.mktemp("aio-outputs")
    os.environ["AIO_OUTPUTS"] = str(out)
    return out


def compose_train(overrides: list[str] | None = None, config_name: str = "train", return_hydra_config: bool = False):
    """Compose aio's config like ``aio-train`` would, without running anything (with its ``hydra`` node when
    ``return_hydra_config``)."""
    from hydra import compose, initialize_config_dir

    from aio.config import register_configs
    from aio.paths import CONF_DIR

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides or []), return_hydra_config=return_hydra_config)


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="session")
def _template_store(tmp_path_factory) -> Path:
    """An empty MLflow sqlite store, created once per test session (schema creation takes seconds)."""
    from aio.tracking.mlflow_tracker import ensure_store

    folder = tmp_path_factory.mktemp("mlflow-template")
    ensure_store(sqlite_uri(folder))
    return folder / "mlflow.db"


@pytest.fixture
def mlflow_store(tmp_path, _template_store) -> str:
    """A fresh MLflow store in ``tmp_path`` (a copy of the session's empty template); returns its URI."""
    shutil.copy(_template_store, tmp_path / "mlflow.db")
    return sqlite_uri(tmp_path)


@pytest.fixture
def tiny_overrides(tmp_path, mlflow_store) -> list[str]:
    """A seconds-long CPU run into a temporary MLflow store."""
    return [
        "debug=tiny",
        f"logger.tracking_uri={mlflow_store}",
        f"logger.artifact_location={tmp_path / 'artifacts'}",
        "trainer.device=cpu",
    ]
