"""Model table: parameters, forward GFLOPs at 256x256 and CPU forward+backward time at 128x128 (batch 2).

Rows: the published backbones (incl. DSRIR and MiOIR's SRResNet / prompted models), the ablation rows (cumulative, as conf/experiment builds them), and the full
model and the baseline at each LoRa ratio, all at paper size. Each model is composed from ``conf/train.yaml`` exactly as
``aio-train``/``aio-model`` would build it. Writes ``benchmarks/results/model_table.csv``.

    .venv/bin/python benchmarks/model_table.py [--repeats 3] [--threads 2] [--no-time]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from pathlib import Path

# Spinning OpenMP threads thrash when another process shares the 2 cores (measured: a Restormer step 14x
# slower); passive waiting keeps timings meaningful on a busy machine. Must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from aio.cli.model import compose_model_config  # noqa: E402
from aio.models import count_parameters, forward_gflops, model_from_config  # noqa: E402

RATIOS = [("r03_06", 0.3, 0.6), ("r04_07", 0.4, 0.7), ("r05_08", 0.5, 0.8), ("r06_09", 0.6, 0.9), ("full", 1.0, 1.0)]
ROWS: list[tuple[str, str, list[str]]] = [
    ("backbone", "Restormer", ["backbone=restormer"]),
    ("backbone", "PromptIR", ["backbone=promptir"]),
    ("backbone", "NAFNet", ["backbone=nafnet"]),
    ("backbone", "NAFNet (GoPro)", ["backbone=nafnet_gopro"]),
    ("backbone", "AirNet", ["backbone=airnet"]),
    ("backbone", "DSRIR", ["backbone=dsrir"]),
    ("mioir", "SRResNet (MiOIR)", ["backbone=srresnet"]),
    ("mioir", "SRResNet-EP (MiOIR)", ["backbone=srresnet", "prompt=explicit"]),
    ("mioir", "SRResNet-AP (MiOIR)", ["backbone=srresnet", "prompt=adaptive"]),
    ("mioir", "Restormer-EP (MiOIR)", ["backbone=restormer", "prompt=explicit"]),
    ("mioir", "Restormer-AP (MiOIR)", ["backbone=restormer", "prompt=adaptive"]),
    ("ablation", "Baseline (LoRa-Gate-Restormer)", ["experiment=baseline"]),
    ("ablation", "+DFRG", ["experiment=dfrg"]),
    ("ablation", "+Spatial LoRa", ["experiment=spatial_lora"]),
    ("ablation", "+CSFF (= full network; +Mixed loss: same)", ["experiment=csff"]),
] + [
    ("lora_ratio_full", f"Full ({f}, {a})", ["experiment=full", f"lora_ratio={name}"]) for name, f, a in RATIOS
] + [
    ("lora_ratio_baseline", f"Baseline ({f}, {a})", ["experiment=baseline", f"lora_ratio={name}"])
    for name, f, a in RATIOS
]


def time_fwd_bwd(model: torch.nn.Module, size: int = 128, repeats: int = 3) -> list[float]:
    """Seconds per forward+backward of a ``[2, 3, size, size]`` batch (after a cheap 32x32 warm-up step; batch 2
    because the spatial-LoRa BatchNorms cannot train on one 1x1 pooled sample)."""
    model.train()
    model(torch.rand(2, 3, 32, 32)).abs().mean().backward()
    x = torch.rand(2, 3, size, size)
    times = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        model(x).abs().mean().backward()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-time", action="store_true", help="skip the CPU timing")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "model_table.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    header = ["group", "model", "overrides", "params", "params_M", "gflops_fwd_256", "cpu_fwd_bwd_s_2x128", "cpu_runs_s",
              "load1"]
    rows = []
    load_before = os.getloadavg()[0]
    print(f"{'model':44s} {'params (M)':>10s} {'GFLOPs@256':>11s} {'fwd+bwd@2x128 (s)':>18s}")
    for group, label, overrides in ROWS:
        with torch.device("meta" if args.no_time else "cpu"):  # counting needs no weights
            model = model_from_config(compose_model_config(overrides + ["model.size=paper"]))
        n_params = count_parameters(model)
        params = n_params / 1e6
        gflops = forward_gflops(model, 256)
        runs = [] if args.no_time else time_fwd_bwd(model, 128, args.repeats)
        med = statistics.median(runs) if runs else float("nan")
        print(f"{label:44s} {params:10.3f} {gflops:11.2f} {med:18.2f}", flush=True)
        rows.append([group, label, " ".join(overrides), n_params, f"{params:.3f}", f"{gflops:.2f}", f"{med:.3f}",
                     " ".join(f"{t:.3f}" for t in runs), f"{os.getloadavg()[0]:.1f}"])
        del model

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        f.write(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
                f"{args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; GFLOPs = forward only, FlopCounterMode (1 MAC = 2 FLOPs); "
                f"time = median of {args.repeats} fwd+bwd at 2x3x128x128; 1-min load average "
                f"{load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end (times grow with the machine's load)\n")
        csv.writer(f).writerows([header] + rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
