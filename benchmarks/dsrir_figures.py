"""DSRIR figures for the README: parameters, state-dict entries, forward GFLOPs at 256x256, CPU forward time at
256x256 (batch 1, inference) and forward+backward+loss time of one 128x128 training crop with loss=dsrir
(random-init VGG19). Writes ``benchmarks/results/dsrir.json``.

    .venv/bin/python benchmarks/dsrir_figures.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see model_table.py

import torch  # noqa: E402

from aio.losses import build_loss  # noqa: E402
from aio.losses.contract import compute_loss  # noqa: E402
from aio.models import count_parameters, create_model, forward_gflops  # noqa: E402


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model("dsrir")
    loss = build_loss({"name": "dsrir", "perceptual": {"weights": "random"}})
    x256 = torch.rand(1, 3, 256, 256)
    crop = torch.rand(1, 3, 128, 128)
    target = torch.rand(1, 3, 128, 128)

    def infer():
        with torch.inference_mode():
            model.eval()(x256)

    def train_step():
        model.train().zero_grad(set_to_none=True)
        total, _ = compute_loss(loss, model(crop), target, {"input": crop})
        total.backward()

    out = {
        "params": count_parameters(model),
        "state_dict_entries": len(model.state_dict()),
        "gflops_fwd_256": round(forward_gflops(model, size=256), 2),
        "cpu_infer_256_s": round(_median_seconds(infer, args.repeats), 3),
        "cpu_train_step_128_s": round(_median_seconds(train_step, args.repeats), 3),
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    path = Path(__file__).resolve().parent / "results" / "dsrir.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
