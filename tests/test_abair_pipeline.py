"""ABAIR end to end at tiny scale on the embedded photos: phases I -> II -> III, OH / SW / Oracle evaluation,
and adding a degradation (only the new adapter and the estimator change)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import compose_train

FAST = ["scale=tiny", "trainer.max_steps=4", "trainer.warmup_steps=1", "trainer.val_every=4",
        "trainer.checkpoint_every=4", "trainer.log_every=1", "trainer.progress=false", "trainer.device=cpu",
        "dataset.batch_size=2", "dataset.patch_size=32", "dataset.num_workers=0", "dataset.epoch_size=8",
        "dataset.val.crops_per_task=1", "dataset.val.crop_size=32", "model.estimator.input_size=32",
        "trainer.lr=0.02"]


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


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 5 training runs and 3 evaluations: ~4 min on 2 idle cores
def test_three_phases_blends_and_adding_a_degradation(tmp_path, mlflow_store):
    from aio.cli.abair import add_degradation, pipeline
    from aio.cli.eval import evaluate_checkpoint
    from aio.train.checkpoint import load_checkpoint

    common = [*FAST, f"logger.tracking_uri={mlflow_store}", f"logger.artifact_location={tmp_path / 'art'}"]
    ckpts = pipeline(tmp_path / "abair", common, {})
    p1, p2, p3 = (load_checkpoint(ckpts[k]) for k in ("phase1", "phase2", "phase3"))

    # phase I logged the segmentation loss; phase III the estimator's accuracy
    assert {"train/l_seg", "train/seg_acc", "train/l_pix"} <= _metric_keys(mlflow_store, tmp_path / "abair/phase1")
    assert {"train/l_est", "train/est_acc"} <= _metric_keys(mlflow_store, tmp_path / "abair/phase3")

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

    # OH, SW and Oracle evaluate and differ
    results = {}
    for blend in ("oh", "sw", "oracle"):
        cfg = compose_train([f"checkpoint={ckpts['phase3']}", f"abair.blend={blend}", "logger=none",
                             "eval.progress=false"], config_name="eval")
        res = evaluate_checkpoint(cfg, tmp_path / f"eval_{blend}", override_keys=[])
        results[blend] = res
        assert 0.0 <= res.average["est_acc"] <= 1.0
    psnr = {b: r.average["psnr"] for b, r in results.items()}
    assert len({round(v, 6) for v in psnr.values()}) == 3, psnr

    # a new degradation: one new adapter + the estimator retrained; nothing else moves
    added = add_degradation(ckpts["phase3"], "dejpeg_q20", tmp_path / "add", common,
                            recipe="[{type: jpeg, quality: 20.0}]")
    before = _checksums(p3["ema"])
    a_ckpt = load_checkpoint(added["adapter"])
    a_state = a_ckpt["model"]
    e_state = load_checkpoint(added["estimator"])["model"]
    mid, end = _checksums(a_state), _checksums(e_state)
    for key in ["backbone", "seg_head", *adapters]:
        assert mid[key] == before[key] and end[key] == before[key], key
    handed_over = _checksums(a_ckpt["ema"])  # the estimator run starts from the adapter run's EMA weights
    assert "adapter:dejpeg_q20" in mid and end["adapter:dejpeg_q20"] == handed_over["adapter:dejpeg_q20"]
    assert e_state["estimator.head.weight"].shape[0] == 6
    assert end["estimator"] != mid["estimator"]


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
