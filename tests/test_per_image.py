"""Per-image metrics: EvalResult rows, their CSVs, and aio-eval's logging of them into a real MLflow store."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import compose_train


@pytest.fixture(scope="module")
def evaluated():
    from aio.data import build_val_sets
    from aio.eval import evaluate_sets
    from aio.models import model_from_config

    cfg = compose_train(["debug=tiny", "dataset.val.crops_per_task=1", "dataset.images=[astronaut,coffee]"])
    torch.manual_seed(0)
    model = model_from_config(cfg.model)
    sets = build_val_sets(cfg.dataset)
    return evaluate_sets(model, sets, device="cpu"), sets


def test_per_image_rows_are_the_images_behind_each_mean(evaluated, tmp_path):
    result, sets = evaluated
    assert list(result.per_image) == list(sets)
    for name, rows in result.per_image.items():
        assert [r["image"] for r in rows] == [sets[name][i]["name"] for i in range(len(sets[name]))]
        for key in ("psnr", "ssim", "psnr_input", "ssim_input"):
            assert math.isclose(sum(r[key] for r in rows) / len(rows), result.per_set[name][key], rel_tol=1e-12)
    paths = result.write_per_image(tmp_path)
    assert {p.name for p in paths} == {f"{name}.csv" for name in sets}
    frame = pd.read_csv(paths[0])
    assert list(frame.columns) == ["image", "psnr", "psnr_input", "ssim", "ssim_input"]
    assert len(frame) == len(result.per_image[paths[0].stem])


def test_eval_logs_test_metrics_and_per_image_csvs(evaluated, tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    from aio.tracking.runs import log_evaluation

    result, sets = evaluated
    summary = tmp_path / "results.csv"
    result.to_frame().to_csv(summary)
    run_id = log_evaluation(mlflow_store, "aio", str(tmp_path / "art"), result, {"step": 7}, "ckpt.pt", [summary],
                            tmp_path, tta="x8")
    client = MlflowClient(tracking_uri=mlflow_store)
    run = client.get_run(run_id)
    assert run.data.tags["aio.kind"] == "eval" and run.info.status == "FINISHED"
    first = next(iter(sets))
    assert run.data.metrics[f"test_x8/{first}/psnr"] == pytest.approx(result.per_set[first]["psnr"])
    assert run.data.metrics["test_x8/avg/psnr"] == pytest.approx(result.average["psnr"])
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, "per_image/test_x8")}
    assert logged == {f"{name}.csv" for name in sets}
    assert [Path(a.path).name for a in client.list_artifacts(run_id, "eval")] == ["results.csv"]
