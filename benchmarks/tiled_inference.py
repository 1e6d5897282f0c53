"""Tiled vs whole-image inference: agreement (PSNR between the two outputs, dB gap to the clean image),
time and peak memory, for a model at several image sizes.

    python benchmarks/tiled_inference.py                       # tiny Restormer, CPU
    python benchmarks/tiled_inference.py --model nafnet --size small --device cuda --sizes 512 1024 2048
    python benchmarks/tiled_inference.py --checkpoint outputs/runs/.../last.pt --tile 256 --overlap 32

Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA and the process's peak RSS growth on CPU (a
rough figure: the RSS high-water mark never goes down, so whole-image runs are done last).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _model(args):
    if args.checkpoint:
        from aio.train.checkpoint import load_model

        return load_model(args.checkpoint, use_ema=True)[0]
    from omegaconf import OmegaConf

    from aio.models import model_from_config
    from aio.paths import CONF_DIR

    cfg = OmegaConf.load(CONF_DIR / "backbone" / f"{args.model}.yaml")
    cfg.size = args.size
    return model_from_config(cfg)


def _measure(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    with torch.inference_mode():
        y = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        mem = torch.cuda.max_memory_allocated() / 2**20
    else:
        mem = _rss_mb() - rss0
    return y, time.perf_counter() - t0, mem


def main() -> None:
    from aio.eval import tiled_forward
    from aio.metrics import psnr

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="restormer")
    p.add_argument("--size", default="tiny", help="model size preset (tiny | small | paper)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 768])
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--skip-full-above", type=int, default=4096, help="no whole-image run above this size")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = _model(args).to(device).eval()
    print(f"model={args.model}/{args.size} device={device} tile={args.tile} overlap={args.overlap}")
    print(f"{'size':>6} {'tiled s':>8} {'tiled MB':>9} {'full s':>8} {'full MB':>8} {'PSNR(t,f)':>10} {'dB gap':>8}")
    for s in args.sizes:
        g = torch.Generator().manual_seed(s)
        clean = torch.rand(1, 3, s, s, generator=g)
        clean = torch.nn.functional.avg_pool2d(clean, 5, 1, 2)  # some structure
        x = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1).to(device)
        yt, tt, mt = _measure(lambda: tiled_forward(model, x, tile=args.tile, overlap=args.overlap), device)
        row = f"{s:>6} {tt:>8.2f} {mt:>9.0f}"
        if s <= args.skip_full_above:
            yf, tf, mf = _measure(lambda: model(x), device)
            agree = psnr(yt.clamp(0, 1), yf.clamp(0, 1), quantize=False).item()
            gap = (psnr(yt, clean.to(device)) - psnr(yf, clean.to(device))).item()
            row += f" {tf:>8.2f} {mf:>8.0f} {agree:>10.2f} {gap:>8.4f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
