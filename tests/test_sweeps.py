"""Real tiny sweeps: seeds, a failing job, resume, significance, and the table layouts rendered from them.

The module's ``ablation_sweep`` runs once (3 rows x 2 seeds at ``debug=tiny``): the "+ Mixed loss" jobs fail
(no VGG weights), the cause is fixed (``AIO_VGG19_WEIGHTS=random``) and the sweep is resumed with
``sweep.resume=latest``; the tests below read what it left in MLflow.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

from aio.paths import SWEEPS_DIR
from conftest import compose_train

REPO = Path(__file__).resolve().parents[1]
ROWS = ["baseline", "dfrg", "full"]


@pytest.mark.parametrize("sweep", ["ablation", "lora_ratio", "backbones", "losses", "per_task", "sota"])
def test_every_sweep_composes_with_rows_matching_its_grid(sweep):
    cfg = compose_train([f"sweep={sweep}"])
    spec = cfg.sweep
    grid = OmegaConf.load(SWEEPS_DIR / f"{sweep}.yaml").hydra.sweeper.params
    keys = [str(row.key) for row in spec.rows]
    assert spec.name == sweep and len(keys) == len(set(keys)) >= 2
    assert str(grid[spec.row_key]).split(",") == keys
    assert spec.plan is False and spec.resume is None
    from aio.tables.render import normalize_spec

    normalize_spec(OmegaConf.to_container(spec))  # every table-spec option of the file is valid


def _train(args, env, tmp_path, timeout=900):
    return subprocess.run([sys.executable, "-m", "aio.cli.train", "-m", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def ablation_sweep(tmp_path_factory, _template_store):
    """3 rows x 2 seeds; the two "+ Mixed loss" jobs fail, then the sweep is resumed with the cause fixed."""
    root = tmp_path_factory.mktemp("ablation-sweep")
    shutil.copy(_template_store, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {**os.environ, "AIO_OUTPUTS": str(root)}
    env.pop("AIO_VGG19_WEIGHTS", None)
    args = ["sweep=ablation", "debug=tiny", "trainer.device=cpu", f"experiment={','.join(ROWS)}", "seed=0,1",
            f"logger.tracking_uri={uri}", f"logger.artifact_location={root / 'art'}"]
    first = _train([*args, f"hydra.sweep.dir={root / 'sweep1'}"], env, root)
    resumed = _train([*args, f"hydra.sweep.dir={root / 'sweep2'}", "sweep.resume=latest"],
                     {**env, "AIO_VGG19_WEIGHTS": "random"}, root)
    from mlflow.tracking import MlflowClient

    return {"uri": uri, "root": root, "first": first, "resumed": resumed, "client": MlflowClient(tracking_uri=uri)}


def _children(client):
    runs = client.search_runs([client.get_experiment_by_name("aio").experiment_id])
    parents = [r for r in runs if r.data.tags.get("aio.role") == "sweep"]
    return parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


@pytest.mark.slow
def test_failed_jobs_recorded_then_resume_runs_only_them(ablation_sweep):
    first, resumed = ablation_sweep["first"], ablation_sweep["resumed"]
    assert first.returncode != 0 and "loss.perceptual.weights" in first.stderr  # Hydra reports the failed jobs
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    skips = [line for line in resumed.stdout.splitlines() if line.startswith("[aio] resume: skip")]
    runs = [line for line in resumed.stdout.splitlines() if line.startswith("[aio] resume: run ")]
    assert len(skips) == 4 and all("FINISHED in run" in line for line in skips)
    assert len(runs) == 2 and all("experiment=full" in line for line in runs)
    assert resumed.stdout.count("[aio] run folder:") == 2  # only the two fixed jobs trained

    parents, children = _children(ablation_sweep["client"])
    assert len(parents) == 1  # resumed inside the same parent run
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    done = sorted((c.data.tags["aio.row"], c.data.tags["aio.seed"]) for c in children if c.info.status == "FINISHED")
    assert done == sorted((row, seed) for row in ROWS for seed in "01")
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == 2 and all("loss.perceptual.weights" in c.data.tags["aio.error"] for c in failed)
    full = [c for c in children if c.data.tags["aio.row"] == "full" and c.info.status == "FINISHED"]
    assert all(c.data.tags.get("perceptual_weights") == "random-init" for c in full)
    assert {c.info.run_name for c in full} == {"+ Mixed loss (seed 0)", "+ Mixed loss (seed 1)"}
    # per-image rows of every validation set are artifacts of each finished child
    client = ablation_sweep["client"]
    child = next(c for c in children if c.info.status == "FINISHED")
    files = {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "per_image/val")}
    assert files == {f"{s}.csv" for s in child.data.tags["aio.val_sets"].split(",")}
    # the sweep's summary metrics are on the parent
    parent = client.get_run(parents[0].info.run_id)
    assert parent.data.metrics["summary/full/avg/psnr"] == pytest.approx(
        np.mean([c.data.metrics["val/avg/psnr"] for c in full]))


def _per_image(client, run_ids, metric):
    """{set: [seeds, images]} read straight from the artifacts (images sorted by id)."""
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        frames = []
        for k, rid in enumerate(run_ids):
            folder = Path(client.download_artifacts(rid, "per_image/val", f"{tmp}/{k}"))
            frames.append({p.stem: pd.read_csv(p).sort_values("image") for p in folder.glob("*.csv")})
        for name in frames[0]:
            out[name] = np.stack([f[name][metric].to_numpy() for f in frames])
    return out


def _independent_ci(a, b, resamples=4000, level=0.95, seed=123):
    """The hierarchical paired bootstrap, written as a plain loop (a different RNG stream than aio's)."""
    rng = np.random.default_rng(seed)
    sets = sorted(a)
    diffs = []
    for _ in range(resamples):
        sa = rng.integers(0, a[sets[0]].shape[0], a[sets[0]].shape[0])
        sb = rng.integers(0, b[sets[0]].shape[0], b[sets[0]].shape[0])
        per_set = []
        for name in sets:
            idx = rng.integers(0, a[name].shape[1], a[name].shape[1])
            per_set.append(a[name][sa][:, idx].mean() - b[name][sb][:, idx].mean())
        diffs.append(np.mean(per_set))
    return np.quantile(diffs, [(1 - level) / 2, 1 - (1 - level) / 2])


@pytest.mark.slow
def test_table_mean_std_and_significance_match_an_independent_computation(ablation_sweep, tmp_path):
    from aio.tables.collect import make_tables

    result = make_tables("ablation", tracking_uri=ablation_sweep["uri"], out_dir=tmp_path)
    rows = {r["row"]: r for r in csv.DictReader(open(result.paths["csv"]))}
    _, children = _children(ablation_sweep["client"])
    done = [c for c in children if c.info.status == "FINISHED"]
    md = result.paths["md"].read_text()
    assert "n=2 seeds" in md and "\u00b1" in md and "paired hierarchical bootstrap" in md
    ids = {row: [c.info.run_id for c in done if c.data.tags["aio.row"] == row] for row in ROWS}
    base = _per_image(ablation_sweep["client"], ids["baseline"], "psnr")
    for row in ROWS:
        values = [c.data.metrics["val/avg/psnr"] for c in done if c.data.tags["aio.row"] == row]
        assert float(rows[row]["avg/psnr"]) == pytest.approx(np.mean(values), abs=1e-9)
        assert float(rows[row]["avg/psnr:std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-9)
        assert rows[row]["n_seeds"] == "2"
        if row == "baseline":
            continue
        mine = _per_image(ablation_sweep["client"], ids[row], "psnr")
        low, high = _independent_ci(mine, base)
        assert float(rows[row]["avg/psnr:diff"]) == pytest.approx(
            np.mean([mine[s].mean() - base[s].mean() for s in base]), abs=1e-6)
        assert float(rows[row]["avg/psnr:ci_low"]) == pytest.approx(low, abs=0.1 * (high - low) + 1e-3)
        assert float(rows[row]["avg/psnr:ci_high"]) == pytest.approx(high, abs=0.1 * (high - low) + 1e-3)
        significant = low > 0 or high < 0
        if min(abs(low), abs(high)) > 0.05 * (high - low):  # not on the boundary: the decisions must agree
            assert rows[row]["avg/psnr:sig"] == ("1.0" if significant else "0.0")
            line = next(line for line in md.splitlines() if line.startswith(f"| {result.df.at[row, 'label']}"))
            assert ("\\*" in line.split("|")[2]) == significant
    assert rows["baseline"]["sig_resamples"] == "10000" and rows["baseline"]["sig_level"] == "0.95"


@pytest.mark.slow
def test_per_task_table_is_transposed_with_a_gain_column(ablation_sweep):
    """The per-task layout (sweeps/per_task.yaml's spec) rendered from the real sweep's baseline and full rows."""
    from aio.tables.collect import collect_sweep, find_parent_run
    from aio.tables.render import render_markdown

    spec = OmegaConf.to_container(OmegaConf.load(SWEEPS_DIR / "per_task.yaml").sweep)
    client = ablation_sweep["client"]
    df, spec = collect_sweep(client, find_parent_run(client, "ablation").info.run_id, spec)
    md = render_markdown(df, spec)
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert lines[0].split("|")[1].strip() == "Task" and "Gain" in lines[0] and "Enhanced\u2021 PSNR" in lines[0]
    assert "DFRG" not in lines[0]  # the spec's two rows only
    tasks = [line.split("|")[1].strip() for line in lines[1:]]  # (the |:--- rule is not a "| " line)
    assert tasks == ["\u03c3=15", "\u03c3=25", "\u03c3=50", "Rain", "Haze", "Average"]
    for line, set_name in zip(lines[1:], ["denoise_15", "denoise_25", "denoise_50", "derain", "dehaze", "avg"]):
        gain = float(line.split("|")[-2].strip().rstrip("\\*"))
        expected = round(df.at["full", f"{set_name}/psnr"], 2) - round(df.at["baseline", f"{set_name}/psnr"], 2)
        assert gain == pytest.approx(expected, abs=0.006)  # the printed difference of the printed values


def _pdflatex_log(tmp_path, tex):
    exe = shutil.which("pdflatex")
    if exe is None:
        pytest.skip("pdflatex is not on PATH (apt-get install texlive-latex-base texlive-latex-recommended)")
    (tmp_path / "table.tex").write_text(tex)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass[twocolumn]{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        "\\begin{document}\nSome text.\n\\input{table}\n\\end{document}\n")
    proc = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    return log


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["single", "double"])
def test_every_test_set_table_fits_a_two_column_page(ablation_sweep, tmp_path, layout):
    """The widest table (every set, PSNR and SSIM, mean ± std, Params, GFLOPs) compiles without overfull boxes."""
    from aio.tables.collect import collect_sweep, find_parent_run
    from aio.tables.render import render_latex

    client = ablation_sweep["client"]
    spec = OmegaConf.to_container(OmegaConf.load(SWEEPS_DIR / "ablation.yaml").sweep)
    spec.update(sets=None, extra_columns=["params_m", "gflops"], layout=layout)
    df, spec = collect_sweep(client, find_parent_run(client, "ablation").info.run_id, spec)
    tex = render_latex(df, spec)
    assert ("\\begin{table*}" in tex) == (layout == "double") and "$\\sigma$=15" in tex
    assert "PSNR$\\uparrow$ (dB)" in tex and "GFLOPs @256$^2$" in tex and "$^\\ddagger$" in tex
    log = _pdflatex_log(tmp_path, tex)
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)


@pytest.mark.slow
def test_plan_estimate_is_within_2x_of_a_real_run(tmp_path, mlflow_store):
    """aio-plan's estimate for a tiny job against the same job trained for real (with MLflow)."""
    import time

    from aio.plan import plan_jobs
    from aio.train.trainer import Trainer

    overrides = ["experiment=baseline", "debug=tiny", "trainer.device=cpu", "trainer.max_steps=16",
                 "trainer.val_every=8", "trainer.checkpoint_every=8", f"logger.tracking_uri={mlflow_store}",
                 f"logger.artifact_location={tmp_path / 'art'}"]
    (job,) = plan_jobs([overrides], lambda o: compose_train(o), log=lambda m: None)
    cfg = compose_train(overrides)
    with open_dict(cfg):
        cfg.paths.run_dir = str(tmp_path / "run")
    tic = time.perf_counter()
    Trainer(cfg, tmp_path / "run").fit()
    real = time.perf_counter() - tic
    assert job.steps == 16 and job.validations == 2 and job.params_m > 0
    assert 0.5 <= job.estimate_s / real <= 2.0, (job, real)


@pytest.mark.parametrize("scale", ["scale=demo", "scale=paper"])
def test_plan_timing_trains_a_few_steps_not_the_schedule(scale):
    """The 3-step timing stays 5 steps long whatever the run's length: the strategy's ``fit_steps`` follows it
    (it used to be resolved from the full ``trainer.max_steps`` first, so the "timing" trained the whole run)."""
    from aio.plan import TIMED_STEPS, time_model

    cfg = compose_train(["experiment=baseline", scale, "model.size=tiny", "dataset.batch_size=2",
                         "dataset.patch_size=32", "dataset.val.crops_per_task=1", "dataset.val.crop_size=32",
                         "trainer.device=cpu", "trainer.amp=none", "logger=none"])
    assert cfg.trainer.max_steps >= 360
    assert time_model(cfg).steps_run == TIMED_STEPS + 2


@pytest.mark.slow
def test_lora_ratio_and_sota_tables_from_real_sweeps(tmp_path, mlflow_store):
    """lora_ratio (ratio columns, Note, on the full model) and a SOTA table collating presets."""
    from aio.tables.collect import make_tables

    env = {**os.environ, "AIO_OUTPUTS": str(tmp_path), "AIO_VGG19_WEIGHTS": "random"}
    common = ["debug=tiny", "trainer.device=cpu", f"logger.tracking_uri={mlflow_store}",
              f"logger.artifact_location={tmp_path / 'art'}"]
    lora = _train(["sweep=lora_ratio", "lora_ratio=r05_08,full", f"hydra.sweep.dir={tmp_path / 'l'}", *common],
                  env, tmp_path)
    assert lora.returncode == 0, lora.stderr[-3000:]
    sota = _train(["sweep=sota", "experiment=restormer,baseline", "dataset=synthetic_aio3,synthetic",
                   f"hydra.sweep.dir={tmp_path / 's'}", *common], env, tmp_path)
    assert sota.returncode == 0, sota.stderr[-3000:]

    table = make_tables("lora_ratio", tracking_uri=mlflow_store, out_dir=tmp_path / "t")
    md = table.paths["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert [c.strip() for c in header.split("|")[1:-1]] == [
        "Method", "FFN ratio", "Attn ratio", "Average PSNR\u2191 (dB)", "Average SSIM\u2191", "Params (M)",
        "GFLOPs @256\u00b2", "Note"]
    line = next(line for line in md.splitlines() if line.startswith("| (0.5, 0.8)"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[1:3] == ["0.5", "0.8"] and cells[-1] == "default (the seed's optimum)"
    # each row's Params cell is its composed model's count (at debug=tiny the low-rank convs with their
    # spatial/SE extras outweigh the dense ones they replace: no ordering is implied at that size)
    from aio.models import count_parameters, model_from_config

    for row in ("r05_08", "full"):
        model = model_from_config(compose_train(["sweep=lora_ratio", f"lora_ratio={row}", "debug=tiny"]).model)
        assert table.df.at[row, "params_m"] == pytest.approx(count_parameters(model) / 1e6, abs=5e-7)
    tex_rows = [line for line in table.paths["tex"].read_text().splitlines() if line.startswith(("(0.5", "(1.0"))]
    assert len(tex_rows) == 2 and not any("textbf" in "".join(r.split("&")[5:7]) for r in tex_rows)  # not ranked

    spec = OmegaConf.to_container(OmegaConf.load(SWEEPS_DIR / "sota.yaml").sweep)
    # the synthetic presets have no published numbers: map them to the real benchmarks to check the layout
    spec["presets"] = {"synthetic_aio3": {"label": "AIO-3", "published": "AIO-3"},
                       "synthetic": {"label": "AIO-3 (default)", "published": "AIO-3"}}
    from aio.tables.collect import collect_sweep, find_parent_run, open_client
    from aio.tables.render import render_latex, render_markdown

    client = open_client(mlflow_store)
    df, spec = collect_sweep(client, find_parent_run(client, "sota").info.run_id, spec)
    md = render_markdown(df, spec)
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert "AIO-3 PSNR" in header and "AIO-3 (default) SSIM" in header and "Params (M)" in header
    assert "PromptIR\u2020" in md and "AirNet\u2020" in md and "Restormer\u2020" in md
    pub = df.loc["pub:PromptIR"]
    assert pub["synthetic_aio3/psnr"] == pytest.approx(np.mean([33.98, 31.31, 28.06, 36.37, 30.58]), abs=0.01)
    run = df.loc["baseline"]
    for preset in ("synthetic_aio3", "synthetic"):
        child = [c for c in client.search_runs([client.get_experiment_by_name("aio").experiment_id])
                 if c.data.tags.get("aio.row") == "baseline" and c.data.params.get("dataset.name") == preset]
        assert run[f"{preset}/psnr"] == pytest.approx(child[0].data.metrics["val/avg/psnr"])
    assert "table*" in render_latex(df, spec)


def test_tables_for_a_sweep_never_run_print_the_command(tmp_path, mlflow_store):
    from aio.tables.collect import TablesError, make_tables

    with pytest.raises(TablesError, match=r"'lora_ratio' has not been run yet.*aio-train -m sweep=lora_ratio"):
        make_tables("lora_ratio", tracking_uri=mlflow_store, out_dir=tmp_path)


@pytest.mark.slow
def test_a_killed_job_resumes_from_its_checkpoint_in_the_same_run(tmp_path, mlflow_store):
    """SIGTERM during a job (a preempted sweep), then sweep.resume=latest: the job continues from its last.pt."""
    import signal
    import time

    env = {**os.environ, "AIO_OUTPUTS": str(tmp_path)}
    args = ["sweep=ablation", "debug=tiny", "trainer.device=cpu", "experiment=baseline", "trainer.max_steps=40",
            "trainer.val_every=40", "trainer.checkpoint_every=2", f"logger.tracking_uri={mlflow_store}",
            f"logger.artifact_location={tmp_path / 'art'}"]
    ckpt = tmp_path / "sweep1" / "0" / "checkpoints" / "last.pt"
    proc = subprocess.Popen([sys.executable, "-m", "aio.cli.train", "-m", *args, f"hydra.sweep.dir={tmp_path / 'sweep1'}"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # the trainer saves last.pt at the end of the step and stops
    out, _ = proc.communicate(timeout=600)
    assert "stop requested: saved" in out, out[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store)
    (child,) = [r for r in client.search_runs([client.get_experiment_by_name("aio").experiment_id])
                if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "RUNNING"  # preempted: left for its requeued/resumed job to finish

    resumed = _train([*args, f"hydra.sweep.dir={tmp_path / 'sweep2'}", "sweep.resume=latest"], env, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    line = next(x for x in resumed.stdout.splitlines() if x.startswith("[aio] resume:"))
    assert line.startswith("[aio] resume: rerun") and "experiment=baseline" in line and str(ckpt.parents[1]) in line
    assert f"resumed from {ckpt}" in resumed.stdout
    runs = [r for r in client.search_runs([client.get_experiment_by_name("aio").experiment_id])
            if "mlflow.parentRunId" in r.data.tags]
    assert [r.info.run_id for r in runs] == [child.info.run_id]  # the same MLflow run, now finished
    assert runs[0].info.status == "FINISHED" and runs[0].data.metrics["val/avg/psnr"] > 0


def test_plan_side_by_side_total_follows_joblibs_in_order_dispatch():
    """``launcher=joblib`` plans: the total with n_jobs workers, each taking the next job in launch order when
    free (the longest-first order of ``make demo`` packs two workers evenly)."""
    from aio.plan import PlannedJob, format_plan, in_order_makespan, side_by_side_jobs

    assert in_order_makespan([290, 140, 140, 140, 140], 2) == 430  # 290+140 | 140+140+140 (free at 280 takes #4)
    assert in_order_makespan([140, 140, 140, 140, 290], 2) == 570  # slowest last: one worker waits for it
    assert in_order_makespan([5, 7], 1) == 12
    cfg = compose_train(["launcher=joblib"], return_hydra_config=True)
    assert side_by_side_jobs(cfg) == 2 and side_by_side_jobs(compose_train([], return_hydra_config=True)) == 1
    jobs = [PlannedJob([f"experiment={e}"], e, 0.8, 9.0, 360, 1, 1, t, 0) for e, t in (("full", 290), ("csff", 140))]
    text = format_plan(jobs, slurm=False, side_by_side=2)
    assert "2 jobs, estimated 7m10s in total if run one after another" in text
    assert "launcher=joblib, 2 jobs at a time in launch order: about 4m50s" in text
