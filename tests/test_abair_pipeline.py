"""ABAIR end to end at tiny scale on the embedded photos: phases I -> II -> III, OH / SW / Oracle evaluation,
adding degradations (only the new adapters and the estimator change), and every table of the paper rendered
from real tiny runs: Tables 1, 4, 5, 8 from evaluation sweeps (``aio-eval -m sweep=...``) of one shared
phase-III model, Table 7 from a phase-II training sweep, Table 6 from a phase-I sweep."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from conftest import compose_train, sqlite_uri

REPO = Path(__file__).resolve().parents[1]
FAST = ["scale=tiny", "trainer.max_steps=4", "trainer.warmup_steps=1", "trainer.val_every=4",
        "trainer.checkpoint_every=4", "trainer.log_every=1", "trainer.progress=false", "trainer.device=cpu",
        "dataset.batch_size=2", "dataset.patch_size=32", "dataset.num_workers=0", "dataset.epoch_size=8",
        "dataset.val.crops_per_task=1", "dataset.val.crop_size=32", "model.estimator.input_size=32",
        "trainer.lr=0.02"]
EVAL_FAST = ["dataset.val.crops_per_task=1", "dataset.val.crop_size=32", "dataset.num_workers=0",
             "eval.progress=false", "device=cpu"]
UNSEEN = ["bitdepth", "dejpeg_q20", "desnow"]  # Table 4's degradations (Ours* adds one adapter each)
JPEG_RECIPE = "++dataset.recipes.dejpeg_q20=[{type: jpeg, quality: 20.0}]"


def _checksums(state: dict) -> dict[str, str]:
    from aio.models.abair import split_parts

    parts = split_parts(state)
    out = {p: _digest(parts[p]) for p in ("backbone", "seg_head", "estimator")}
    out.update({f"adapter:{n}": _digest(sd) for n, sd in parts["adapters"].items()})
    return out


def _digest(sd: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _metric_keys(uri: str, run_dir) -> set[str]:
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    return set(MlflowClient(tracking_uri=uri).get_run(run_id).data.metrics)


@pytest.fixture(scope="session")
def abair_runs(tmp_path_factory, _template_store):
    """One tiny ABAIR pipeline shared by the tests below: phases I -> II -> III and Ours* (three unseen
    adapters trained on the frozen phase-III model, then an 8-way estimator), in an MLflow store of its own."""
    from aio.cli.abair import add_degradation, pipeline

    root = tmp_path_factory.mktemp("abair")
    shutil.copy(_template_store, root / "mlflow.db")
    uri = sqlite_uri(root)
    common = [*FAST, f"logger.tracking_uri={uri}", f"logger.artifact_location={root / 'art'}"]
    ckpts = pipeline(root / "abair", common, {})
    added = add_degradation(ckpts["phase3"], UNSEEN, root / "add", [*common, JPEG_RECIPE])
    return SimpleNamespace(root=root, uri=uri, common=common, added=added, **ckpts)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the shared pipeline: 5 training runs, ~3 min on 2 loaded cores
def test_three_phases_and_adding_degradations(abair_runs):
    from aio.train.checkpoint import load_checkpoint

    runs = abair_runs
    p1, p2, p3 = (load_checkpoint(getattr(runs, k)) for k in ("phase1", "phase2", "phase3"))

    # phase I logged the segmentation loss; phase III the estimator's accuracy
    assert {"train/l_seg", "train/seg_acc", "train/l_pix"} <= _metric_keys(runs.uri, runs.root / "abair/phase1")
    assert {"train/l_est", "train/est_acc"} <= _metric_keys(runs.uri, runs.root / "abair/phase3")

    # the backbone phase II started from (phase I's EMA weights) is bitwise the backbone after phases II and III
    start = _checksums(p1["ema"])
    for state in (p2["model"], p2["ema"], p3["model"], p3["ema"]):
        sums = _checksums(state)
        assert sums["backbone"] == start["backbone"] and sums["seg_head"] == start["seg_head"]
    adapters = [k for k in start if k.startswith("adapter:")]
    assert len(adapters) == 5
    after2 = _checksums(p2["ema"])  # what phase III starts from (EMA weights when present)
    assert all(_checksums(p2["model"])[a] != start[a] for a in adapters)  # every adapter trained in phase II
    after3 = _checksums(p3["model"])
    assert all(after3[a] == after2[a] for a in adapters) and after3["estimator"] != after2["estimator"]

    # new degradations: three new adapters + the estimator retrained; nothing else moves
    before = _checksums(p3["ema"])
    a_ckpt = load_checkpoint(runs.added["adapter"])
    e_state = load_checkpoint(runs.added["estimator"])["model"]
    mid, end = _checksums(a_ckpt["model"]), _checksums(e_state)
    for key in ["backbone", "seg_head", *adapters]:
        assert mid[key] == before[key] and end[key] == before[key], key
    handed_over = _checksums(a_ckpt["ema"])  # the estimator run starts from the adapter run's EMA weights
    for task in UNSEEN:
        assert f"adapter:{task}" in mid and end[f"adapter:{task}"] == handed_over[f"adapter:{task}"]
        ups = [v for k, v in a_ckpt["model"].items() if f".adapters.{task}." in k and k.endswith(".up")]
        assert ups and any(bool(v.abs().sum() > 0) for v in ups), task  # trained (LoRA's up starts at zero)
    assert e_state["estimator.head.weight"].shape[0] == 8
    assert end["estimator"] != mid["estimator"]


# -- the tables --------------------------------------------------------------------------------------------------
def _sweep(runs, app: str, sweep: str, *overrides: str):
    """Run ``aio-<app> -m sweep=<sweep>`` into the shared store, render its table with aio-tables; returns
    ``(TablesResult, {row: child run})``."""
    from aio.tables.collect import make_tables
    from aio.tracking import names

    env = {**os.environ, "AIO_OUTPUTS": str(runs.root / "outputs")}
    res = subprocess.run(
        [sys.executable, "-m", f"aio.cli.{app}", "-m", f"sweep={sweep}", *overrides,
         f"hydra.sweep.dir={runs.root / 'sweeps' / sweep}", f"logger.tracking_uri={runs.uri}",
         f"logger.artifact_location={runs.root / 'art'}"], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    table = make_tables(sweep, tracking_uri=runs.uri, out_dir=runs.root / "tables")
    client = MlflowClient(tracking_uri=runs.uri)
    children = client.search_runs([client.get_run(table.parent_run_id).info.experiment_id],
                                  f"tags.`{names.TAG_PARENT}` = '{table.parent_run_id}'")
    return table, {r.data.tags[names.TAG_ROW]: r for r in children}


def _assert_cells_are_the_logged_metrics(table, children, rows, sets, prefix="test"):
    """Every (row, set, metric) cell of the table is the metric its run logged; nothing is missing."""
    df = table.df
    assert set(children) == set(rows)
    for row in rows:
        assert df.at[row, "status"] == "FINISHED" and df.at[row, "run_id"] == children[row].info.run_id
        for set_name in [*sets, "avg"]:
            for metric in ("psnr", "ssim"):
                logged = children[row].data.metrics[f"{prefix}/{set_name}/{metric}"]
                assert df.at[row, f"{set_name}/{metric}"] == pytest.approx(logged, rel=1e-12), (row, set_name)
    assert list(table.spec["sets"]) == list(sets)


def _evaluate(checkpoint, blend: str | None, dataset: str):
    """The same evaluation done in this process (aio-eval's body), independent of the sweep."""
    from aio.cli.eval import evaluate_checkpoint

    cfg = compose_train([f"checkpoint={checkpoint}", *([f"abair.blend={blend}"] if blend else []),
                         f"dataset={dataset}", "logger=none", *EVAL_FAST], config_name="eval")
    return evaluate_checkpoint(cfg, Path(str(checkpoint)).parent / f"eval_{blend or 'plain'}_{dataset}",
                               override_keys=["dataset"])


AIO5_TASKS = ["denoise_25", "derain", "dehaze", "deblur", "lowlight"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_table1_oh_sw_oracle_from_an_eval_sweep(abair_runs):
    """Table 1: one phase-III checkpoint evaluated with OH / SW / Oracle next to two other backbones trained on
    the same five tasks (``row=...`` + ``row_overrides.<row>.checkpoint``); cells are the eval runs' metrics and
    the same as evaluating in this process; the three blends differ; the published rows are daggered below."""
    from aio.cli.abair import run_phase

    plain = [o for o in abair_runs.common if not o.startswith("model.estimator.")]  # ABAIR-only key
    others = {name: run_phase([f"experiment={name}", "dataset=synthetic_aio5", *plain], abair_runs.root / name)
              for name in ("restormer", "promptir")}
    table, children = _sweep(abair_runs, "eval", "abair_table1", f"checkpoint={abair_runs.phase3}",
                             "row=restormer,promptir,oh,sw,oracle",
                             *(f"row_overrides.{n}.checkpoint={c}" for n, c in others.items()), *EVAL_FAST)
    sets = list(table.spec["sets"])
    assert len(sets) == 5
    _assert_cells_are_the_logged_metrics(table, children, ["restormer", "promptir", "oh", "sw", "oracle"], sets)
    for name, ckpt in others.items():
        assert children[name].data.params["checkpoint"] == str(ckpt) and "abair.blend" not in children[name].data.params
        res = _evaluate(ckpt, None, "synthetic_aio5")
        assert table.df.at[name, "avg/psnr"] == pytest.approx(res.average["psnr"], abs=1e-9)
    df = table.df
    for blend in ("oh", "sw", "oracle"):
        assert 0.0 <= children[blend].data.metrics["test/avg/est_acc"] <= 1.0
        assert children[blend].data.tags["aio.abair_blend"] == blend
        assert children[blend].data.params["abair.blend"] == blend
    res = _evaluate(abair_runs.phase3, "oh", "synthetic_aio5")  # the argmax route, evaluated here again
    assert df.at["oh", "avg/psnr"] == pytest.approx(res.average["psnr"], abs=1e-9)
    assert [df.at["oh", f"{s}/psnr"] for s in sets] == pytest.approx([res.per_set[s]["psnr"] for s in sets], abs=1e-9)
    assert len({round(df.at[b, "avg/psnr"], 6) for b in ("oh", "sw", "oracle")}) == 3
    model_params = children["sw"].data.metrics["model/params_m"]
    assert df.at["sw", "params_m"] == pytest.approx(model_params) and model_params > 0
    published = df[df["kind"] == "published"]
    assert "ABAIR (OH)" in set(published["label"])
    md = table.markdown
    for label in ("ABAIR (OH)", "ABAIR (SW)", "ABAIR (Oracle)", "Restormer", "PromptIR"):
        assert any(line.startswith(f"| {label} ") for line in md.splitlines()), label
    assert (abair_runs.root / "tables" / "abair_table1.tex").is_file()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_table4_unseen_ours_and_ours_star(abair_runs):
    """Table 4: the five-adapter model (Ours) and Ours* (+3 adapters, 8-way estimator) on the unseen sets."""
    from aio.models.summary import count_parameters
    from aio.train.checkpoint import load_model

    table, children = _sweep(abair_runs, "eval", "abair_table4", f"abair.base={abair_runs.phase3}",
                             f"abair.added={abair_runs.added['estimator']}", *EVAL_FAST)
    _assert_cells_are_the_logged_metrics(table, children, ["base", "added"], UNSEEN)
    df = table.df
    assert children["base"].data.params["checkpoint"] == str(abair_runs.phase3)
    for row, ckpt in (("base", abair_runs.phase3), ("added", abair_runs.added["estimator"])):
        model, _ = load_model(ckpt)
        assert df.at[row, "params_m"] == pytest.approx(count_parameters(model) / 1e6, rel=1e-9)
    assert df.at["added", "params_m"] > df.at["base", "params_m"]  # three adapters more, a wider estimator head
    assert df.at["added", "avg/psnr"] != df.at["base", "avg/psnr"]
    assert "Ours*" in table.markdown and "unseen" in table.spec["caption"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_table5_mixed_degradations(abair_runs):
    """Table 5: the phase-III model on blur & noise, blur & JPEG, haze & snow, blind (OH and SW)."""
    table, children = _sweep(abair_runs, "eval", "abair_table5", f"checkpoint={abair_runs.phase3}", *EVAL_FAST)
    _assert_cells_are_the_logged_metrics(table, children, ["oh", "sw"], ["blur_noise", "blur_jpeg", "haze_snow"])
    res = _evaluate(abair_runs.phase3, "sw", "abair_mixed")
    assert table.df.at["sw", "avg/psnr"] == pytest.approx(res.average["psnr"], abs=1e-9)
    assert table.df.at["oh", "avg/psnr"] != table.df.at["sw", "avg/psnr"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_table8_blending(abair_runs):
    """Table 8: sum / average / estimator blending of one phase-III model's adapters: three different cells."""
    table, children = _sweep(abair_runs, "eval", "abair_table8", f"checkpoint={abair_runs.phase3}", *EVAL_FAST)
    rows = ["sum", "average", "sw"]
    _assert_cells_are_the_logged_metrics(table, children, rows, list(table.spec["sets"]))
    assert len(table.spec["sets"]) == 5
    assert len({round(table.df.at[r, "avg/psnr"], 6) for r in rows}) == 3
    assert [table.df.at[r, "label"] for r in rows] == ["Sum", "Average", "Estimator (SW)"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_table7_adapter_kinds_and_ranks(abair_runs):
    """Table 7: phase II on the shared phase-I backbone with LoRA / VeRA / Conv-LoRA at ranks 4 / 8 / 16; the
    adapter-parameter column is the trained model's counted adapter parameters."""
    from aio.tracking import names
    from aio.train.checkpoint import load_model

    rows = [f"{k}_r{r}" for k in ("lora", "vera", "conv_lora") for r in (4, 8, 16)]
    table, children = _sweep(abair_runs, "train", "abair_table7", f"model.init_from={abair_runs.phase1}", *FAST)
    _assert_cells_are_the_logged_metrics(table, children, rows, AIO5_TASKS, prefix="val")
    df = table.df
    counted = {}
    for row in rows:
        model, _ = load_model(Path(children[row].data.tags[names.TAG_RUN_DIR]) / "checkpoints" / "last.pt")
        kind, rank = row.rsplit("_r", 1)
        assert model.adapter_cfg["kind"] == kind and int(model.adapter_cfg["rank"]) == int(rank)
        counted[row] = model.adapter_parameter_count()
        assert df.at[row, "model/trainable_params"] == pytest.approx(counted[row] / 1e6, rel=1e-12), row
    assert counted["lora_r8"] == 2 * counted["lora_r4"] and counted["lora_r16"] == 4 * counted["lora_r4"]
    assert counted["vera_r4"] < counted["lora_r4"] < counted["conv_lora_r4"]
    assert "Adapter params (M)" in table.markdown


@pytest.mark.slow
def test_table6_sweep_renders_from_tiny_runs(tmp_path, mlflow_store):
    import csv
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "AIO_OUTPUTS": str(tmp_path)}
    sweep = subprocess.run(
        [sys.executable, "-m", "aio.cli.train", "-m", "sweep=abair_table6", "debug=tiny", "trainer.device=cpu",
         "abair=ir_only,segmentation", "dataset.val.crops_per_task=1", "dataset.val.crop_size=32",
         "model.estimator.input_size=32", f"hydra.sweep.dir={tmp_path / 'sweep'}",
         f"logger.tracking_uri={mlflow_store}", f"logger.artifact_location={tmp_path / 'art'}"],
        capture_output=True, text=True, env=env, cwd=repo, timeout=900)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    tables = subprocess.run(
        [sys.executable, "-m", "aio.cli.tables", "abair_table6", "--tracking-uri", mlflow_store,
         "--out", str(tmp_path / "tables")], capture_output=True, text=True, env=env, cwd=repo, timeout=300)
    assert tables.returncode == 0, tables.stderr
    markdown = (tmp_path / "tables" / "abair_table6.md").read_text()
    assert "ABAIR pre-training ablation" in markdown
    for label in ("IR datasets only", "+ segmentation"):
        line = next(row for row in markdown.splitlines() if row.startswith(f"| {label}"))
        assert line.count("|") > 10 and "–" not in line  # every cell filled from the runs
    rows = list(csv.DictReader(open(tmp_path / "tables" / "abair_table6.csv")))
    assert len(rows) >= 2
