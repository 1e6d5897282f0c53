# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Sweep analysis (reads MLflow)
#
# Everything here comes from the MLflow store, never from the run folders: the sweep's table (the same
# DataFrame `aio-tables` renders), training curves, PSNR vs. model size, per-task PSNR and the validation
# sample grids logged as artifacts. Figures are also written as PNG to `FIGURES_DIR` for a paper.
#
# Set the parameters below (or the environment variables they read) and run all cells. A row whose run
# failed or is missing is skipped with a printed note; no cell raises.

# %% tags=["parameters"]
import os

from aio.paths import outputs_dir

# MLflow store: $MLFLOW_TRACKING_URI, else the repo's default sqlite store.
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{outputs_dir() / 'mlflow.db'}"
# A sweep name (its most recent parent run), a parent run id, or "latest".
SWEEP = os.environ.get("AIO_SWEEP", "latest")
EXPERIMENT = "aio"
# Where the figures are saved as PNG (created when needed).
FIGURES_DIR = os.environ.get("AIO_FIGURES_DIR") or str(outputs_dir() / "figures")
DPI = 150

# %%
import sys
import tempfile
import warnings
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
import pandas as pd
from IPython.display import display

from aio.tables.collect import child_runs, collect_sweep, find_parent_run, open_client
from aio.tracking import names

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto, imported by mlflow
pd.set_option("display.precision", 3)
pd.set_option("display.max_columns", 40)
pd.set_option("display.width", 200)


def note(msg: str) -> None:
    """A skipped run or figure: printed, never raised."""
    print(f"[note] {msg}")


def save_figure(fig, name: str) -> Path | None:
    """Save ``fig`` as ``<FIGURES_DIR>/<sweep>_<name>.png``; a failure to write is a note."""
    try:
        folder = Path(FIGURES_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{sweep_name}_{name}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        print(f"saved {path}")
        return path
    except Exception as err:
        note(f"could not save figure {name!r}: {err}")
        return None


def run_label(run) -> str:
    tags = run.data.tags
    return tags.get(names.TAG_ROW_LABEL) or tags.get(names.TAG_ROW) or run.info.run_name or run.info.run_id[:8]


print(f"python: {sys.executable}")
print(f"tracking URI: {TRACKING_URI}\nsweep: {SWEEP}   experiment: {EXPERIMENT}\nfigures: {FIGURES_DIR}")

client = parent = None
sweep_name = str(SWEEP)
children: list = []
try:
    client = open_client(TRACKING_URI)
    parent = find_parent_run(client, SWEEP, EXPERIMENT)
    sweep_name = parent.data.tags.get(names.TAG_SWEEP) or parent.info.run_name or parent.info.run_id
    children = sorted(child_runs(client, parent), key=lambda r: r.info.start_time or 0)
    print(f"sweep {sweep_name!r}: parent run {parent.info.run_id} ({parent.info.status}), {len(children)} child runs")
    for run in children:
        print(f"  {run.info.run_id}  {run.info.status:9s}  {run_label(run)}")
except Exception as err:
    note(f"no sweep to analyse: {err}")

# %% [markdown]
# ## 1. The sweep's table
# One row per table row (the latest finished child of each row key; rows without a finished run show
# their status and empty cells), as collected by `aio.tables.collect.collect_sweep`.

# %%
df = pd.DataFrame()
spec: dict = {}
if parent is not None:
    try:
        df, spec = collect_sweep(client, parent.info.run_id)
        display(df)
        not_done = df[(df["kind"] == "run") & (df["status"] != "FINISHED")]
        for row, status in not_done["status"].items():
            note(f"row {row!r} has no finished run ({status}); it is left out of the plots below")
    except Exception as err:
        note(f"could not collect the sweep's table: {err}")
else:
    note("no sweep: no table")

# The finished runs behind the table's rows, with their label (used by the plots below).
finished_rows: list[tuple[str, str, str]] = []  # (row key, label, run id)
if len(df):
    for row, rec in df[(df["kind"] == "run") & (df["status"] == "FINISHED")].iterrows():
        finished_rows.append((str(row), str(rec["label"]), str(rec["run_id"]).split(",")[0]))  # seed 0's run

# %% [markdown]
# ## 2. Training curves
# `train/loss` and `val/avg/psnr` against the step for every child run of the sweep (failed runs show
# their partial curves, marked in the legend).

# %%
CURVES = [(names.train_metric("loss"), "training loss"),
          (names.val_metric(names.AVG, "psnr"), "validation PSNR (avg) [dB]")]
if children:
    fig, axes = plt.subplots(1, len(CURVES), figsize=(6 * len(CURVES), 4), squeeze=False)
    plotted = 0
    steps_seen: dict[str, set] = {key: set() for key, _ in CURVES}
    for i, run in enumerate(children):
        color = f"C{i % 10}"  # one colour per run in both panels
        label = run_label(run) + ("" if run.info.status == "FINISHED" else f" ({run.info.status})")
        for ax, (key, _) in zip(axes[0], CURVES):
            try:
                history = client.get_metric_history(run.info.run_id, key)
            except Exception as err:
                note(f"{label}: could not read {key}: {err}")
                continue
            if not history:
                note(f"{label}: no {key} logged")
                continue
            points = sorted((m.step, m.value) for m in history)
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o", markersize=3, color=color, label=label)
            steps_seen[key].update(steps)
            plotted += 1
    for ax, (key, title) in zip(axes[0], CURVES):
        ax.set_xlabel("step")
        if 0 < len(steps_seen[key]) <= 10:
            ax.set_xticks(sorted(steps_seen[key]))  # short runs: tick the logged steps
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    fig.suptitle(f"{sweep_name}: training curves")
    fig.tight_layout()
    if plotted:
        save_figure(fig, "curves")
    else:
        note("no curve to plot")
    plt.show()
    plt.close(fig)
else:
    note("no child runs: no training curves")

# %% [markdown]
# ## 3. PSNR vs. model size
# `model/params_m` against `val/avg/psnr` for every finished row, labelled by the row's label.

# %%
points = []
for row, label, run_id in finished_rows:
    try:
        metrics = client.get_run(run_id).data.metrics
    except Exception as err:
        note(f"{label}: could not read run {run_id}: {err}")
        continue
    psnr_key = names.val_metric(names.AVG, "psnr")
    if names.PARAMS_M not in metrics or psnr_key not in metrics:
        note(f"{label}: model/params_m or val/avg/psnr not logged; skipped")
        continue
    points.append((label, metrics[names.PARAMS_M], metrics[psnr_key]))

if points:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, params_m, psnr in points:
        ax.scatter(params_m, psnr, s=40)
        ax.annotate(label, (params_m, psnr), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("parameters [M]")
    ax.set_ylabel("validation PSNR (avg) [dB]")
    ax.set_title(f"{sweep_name}: PSNR vs. parameters")
    ax.grid(alpha=0.3)
    ax.margins(x=0.25, y=0.2)
    fig.tight_layout()
    save_figure(fig, "psnr_vs_params")
    plt.show()
    plt.close(fig)
else:
    note("no finished run with params and PSNR: no scatter plot")

# %% [markdown]
# ## 4. Per-task PSNR
# Grouped bars: one group per test set (and the average), one bar per finished row (`val/<set>/psnr`).

# %%
sets = [s for s in (spec.get("sets") or []) if f"{s}/psnr" in df.columns]
if spec.get("average") and "avg/psnr" in df.columns:
    sets.append("avg")
bars = []
for row, label, _ in finished_rows:
    values = [float(df.at[row, f"{s}/psnr"]) for s in sets]
    if all(np.isnan(values)):
        note(f"{label}: no per-set PSNR; skipped")
        continue
    bars.append((label, values))

if sets and bars:
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(sets) * max(1, len(bars)) / 2 + 2), 4.5))
    x = np.arange(len(sets))
    width = 0.8 / len(bars)
    for i, (label, values) in enumerate(bars):
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=label)
    ax.set_xticks(x, ["average" if s == "avg" else s for s in sets], rotation=20)
    ax.set_ylabel("PSNR [dB]")
    ax.set_title(f"{sweep_name}: PSNR per test set")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, "psnr_per_task")
    plt.show()
    plt.close(fig)
else:
    note("no per-set PSNR: no bar chart")

# %% [markdown]
# ## 5. Sample restorations
# The latest validation grid each row's run logged under `samples/` (columns: degraded | restored | clean),
# downloaded from the artifact store into a temporary folder.

# %%
SAMPLES_PATH = "samples"
# every table row with a run (a failed run may still have logged a grid before it stopped)
row_runs = [(str(k), str(v["label"]), str(v["run_id"]).split(",")[0]) for k, v in df.iterrows()
            if isinstance(v["run_id"], str) and v["run_id"]] if len(df) else []
grids = []
for row, label, run_id in row_runs:
    try:
        files = [a.path for a in client.list_artifacts(run_id, SAMPLES_PATH)
                 if not a.is_dir and a.path.endswith(".png")]
        if not files:
            note(f"{label}: no sample grid under {SAMPLES_PATH}/; skipped")
            continue
        latest = max(files, key=lambda p: Path(p).name)  # val_stepNNNNNNN.png: zero-padded step
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run_id, latest, tmp)
            image = mpimg.imread(local)
        grids.append((label, Path(latest).stem, image))
    except Exception as err:
        note(f"{label}: could not load its sample grid: {err}")

if grids:
    ncols = min(len(grids), 5)
    nrows = -(-len(grids) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, stem, image) in zip(axes.flat, grids):
        ax.imshow(image)
        step = stem.removeprefix("val_step").lstrip("0") or "0"
        ax.set_title(f"{label}\nstep {step}", fontsize=9)
    fig.suptitle(f"{sweep_name}: validation samples (columns: degraded | restored | clean)")
    fig.tight_layout()
    save_figure(fig, "samples")
    plt.show()
    plt.close(fig)
else:
    note("no sample grids to show")
