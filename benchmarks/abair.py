"""ABAIR figures: adapter parameter counts, and a tiny end-to-end run (phases I-III, OH / SW / Oracle, adding
a degradation) on the embedded photos.

    python benchmarks/abair.py params   # -> benchmarks/results/abair_params.txt
    python benchmarks/abair.py tiny     # -> benchmarks/results/abair_tiny.json (minutes on 2 CPU cores)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TINY = ["scale=tiny", "logger=none", "trainer.device=cpu", "trainer.max_steps=40", "trainer.warmup_steps=2",
        "trainer.val_every=40", "trainer.checkpoint_every=40", "trainer.log_every=10", "trainer.progress=false",
        "trainer.lr=0.005", "dataset.batch_size=4", "dataset.patch_size=32", "dataset.num_workers=0",
        "dataset.val.crops_per_task=3", "dataset.val.crop_size=48", "model.estimator.input_size=32"]


def params() -> str:
    import pandas as pd

    from aio.cli.abair import adapter_counts

    df = pd.DataFrame(adapter_counts([4, 8, 16], ["lora", "vera", "conv_lora"], ["model.size=paper"]))
    text = ("ABAIR adapter parameters, paper-size Restormer, five adapters "
            "(python benchmarks/abair.py params)\n" + df.to_string(index=False, float_format=lambda v: f"{v:.4f}")
            + "\npaper (its own backbone): rank 4 / 8 / 16 = 3.6 / 7.2 / 14.3 M\n")
    (RESULTS / "abair_params.txt").write_text(text)
    return text


def tiny() -> dict:
    from aio.cli.abair import add_degradation, compose, pipeline
    from aio.cli.eval import evaluate_checkpoint
    from aio.train.checkpoint import load_checkpoint

    out: dict = {"overrides": TINY}
    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        ckpts = pipeline(Path(tmp) / "abair", TINY, {})
        out["pipeline_s"] = round(time.perf_counter() - tic, 1)
        for blend in ("none", "oh", "sw", "oracle", "sum", "average"):
            res = evaluate_checkpoint(compose([f"checkpoint={ckpts['phase3']}", f"abair.blend={blend}",
                                                    "logger=none", "eval.progress=false"], "eval"),
                                      Path(tmp) / f"eval_{blend}", override_keys=[])
            out[blend] = {"psnr": round(res.average["psnr"], 3), "ssim": round(res.average["ssim"], 4),
                          "psnr_input": round(res.average["psnr_input"], 3),
                          "est_acc": round(res.average.get("est_acc", float("nan")), 3)}
        for name in ("abair_unseen", "abair_mixed"):
            res = evaluate_checkpoint(compose([f"checkpoint={ckpts['phase3']}", "abair.blend=sw",
                                                    f"dataset={name}", "dataset.val.crops_per_task=3",
                                                    "dataset.val.crop_size=48", "logger=none",
                                                    "eval.progress=false"], "eval"),
                                      Path(tmp) / f"eval_{name}", override_keys=["dataset"])
            out[f"{name}_sw"] = {k: round(v, 3) for k, v in res.average.items() if k in ("psnr", "psnr_input")}
        tic = time.perf_counter()
        added = add_degradation(ckpts["phase3"], "dejpeg_q20", Path(tmp) / "add", TINY,
                                recipe="[{type: jpeg, quality: 20.0}]")
        out["add_s"] = round(time.perf_counter() - tic, 1)
        out["added_estimator_classes"] = int(load_checkpoint(added["estimator"])["model"][
            "estimator.head.weight"].shape[0])
    (RESULTS / "abair_tiny.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "params"
    print(params() if what == "params" else json.dumps(tiny(), indent=2))
