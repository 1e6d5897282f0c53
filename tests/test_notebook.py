"""notebooks/analysis: the jupytext pair is in sync and output-free; executed headless with a real kernel
(nbclient + ipykernel, this venv's Python) against a real two-job tiny sweep, no cell errors and every figure
is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NB_DIR = REPO / "notebooks"
NB_PY = NB_DIR / "analysis.py"
NB_IPYNB = NB_DIR / "analysis.ipynb"
FIGURES = ("curves", "psnr_vs_params", "psnr_per_task", "samples")
KERNEL = "aio-test-venv"


def test_pair_in_sync_and_without_outputs():
    jupytext = pytest.importorskip("jupytext")
    nb = nbformat.read(NB_IPYNB, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "clear the notebook's outputs (notebooks/README.md)"
            assert "execution" not in cell.metadata
    assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    py = jupytext.read(NB_PY)
    assert [(c.cell_type, c.source) for c in py.cells] == [(c.cell_type, c.source) for c in nb.cells], (
        "notebooks/analysis.py and .ipynb differ: run `.venv/bin/jupytext --sync notebooks/analysis.py`"
    )
    tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in tags[0]


def _add_failed_child(uri: str) -> None:
    """A FAILED job for a third row with a partial loss curve and no sample grid: the notebook must skip it."""
    from mlflow.tracking import MlflowClient

    from aio.tables.collect import find_parent_run

    client = MlflowClient(tracking_uri=uri)
    parent = find_parent_run(client, "ablation")
    tags = {"mlflow.parentRunId": parent.info.run_id, "aio.sweep": "ablation", "aio.row": "spatial_lora",
            "aio.row_label": "+ Spatial LoRa", "aio.overrides": "experiment=spatial_lora"}
    run = client.create_run(parent.info.experiment_id, run_name="restormer", tags=tags)
    client.log_metric(run.info.run_id, "train/loss", 0.2, step=1)
    client.set_terminated(run.info.run_id, "FAILED")


@pytest.mark.slow
def test_analysis_notebook_executes(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "AIO_OUTPUTS": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "aio.cli.train", "-m", "sweep=ablation", "debug=tiny", "trainer.device=cpu",
         "experiment=baseline,dfrg", f"hydra.sweep.dir={tmp_path / 'sweep'}", f"logger.tracking_uri={uri}",
         f"logger.artifact_location={tmp_path / 'art'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep_s = time.perf_counter() - t0
    _add_failed_child(uri)

    # a kernelspec pinned to this interpreter (never a `python3` found on PATH or in another Jupyter dir)
    kernel_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "aio test (venv)", "language": "python",
    }))
    figures = tmp_path / "figures"
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("AIO_OUTPUTS", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AIO_SWEEP", "ablation")
    monkeypatch.setenv("AIO_FIGURES_DIR", str(figures))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend displays the figures

    nb = nbformat.read(NB_IPYNB, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=300, startup_timeout=120,
                                     resources={"metadata": {"path": str(NB_DIR)}})
    t1 = time.perf_counter()
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        nbformat.write(nb, tmp_path / "analysis-executed.ipynb")  # for a look when it fails
    print(f"sweep {sweep_s:.0f} s, notebook {time.perf_counter() - t1:.0f} s")

    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"python: {sys.executable}" in text  # the kernel is this venv's interpreter
    assert "sweep 'ablation'" in text and "3 child runs" in text
    assert "row 'spatial_lora' has no finished run (FAILED)" in text
    assert "+ Spatial LoRa: no sample grid" in text
    assert "could not" not in text, text
    table = [o for o in outputs if o.output_type in ("display_data", "execute_result") and "text/html" in o.data]
    assert table and "Baseline (LoRa-Gate-Restormer)" in table[0].data["text/html"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == len(FIGURES)

    import matplotlib.image as mpimg

    for name in FIGURES:
        path = figures / f"ablation_{name}.png"
        assert path.is_file(), f"{path} not written"
        image = mpimg.imread(path)
        assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0
