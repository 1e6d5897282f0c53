"""How much of a training step its convolutions take, timed call by call outside the step.

``train_step.py --profile-rows`` reads the convolutions' share of a step off torch.profiler, whose per-op split is
approximate on a CPU: inside a profiled Restormer step it gave a depthwise 3x3 backward ~72 ms per call that takes
~12 ms between tensor hooks in an unprofiled step. This script measures the share without the profiler: it
records every ``conv2d`` call of one training step (shapes, layout, stride, padding, groups, autocast dtype,
which inputs need a gradient), re-runs each distinct call alone, forward + backward, as many times as the step
made it (the fastest of ``--reps`` runs of each, taken in rounds over all the calls of all the cases of a row),
and prints the sum against the median step (steps interleaved across the cases). ``reference step / our
convolution time`` is then the most that any change outside the convolutions could give.

    .venv/bin/python benchmarks/conv_share.py --models DSRIR,Restormer --modes fp32_cl
    .venv/bin/python benchmarks/conv_share.py --models DSRIR --reference dsrir=~/src/DSRIR

The cases are built as ``train_step.py`` builds them (same rows, modes, batch, weights and references).
Re-timed calls run on fresh random tensors of the recorded shapes, so they miss what the step's order of
operations does to caches, and they include the allocation of their outputs: read the share to a few percent.
Writes ``benchmarks/results/conv_share.txt`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train_step as ts  # noqa: E402
from aio.train.host_memory import apply_cpu_malloc, resolve_cpu_malloc  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _layout(t: torch.Tensor) -> str:
    return "cl" if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() \
        else "nchw"


class ConvCall(NamedTuple):
    """One kind of ``conv2d`` call: everything that decides its kernel and its backward."""

    shape: tuple
    layout: str  # "cl" | "nchw"
    dtype: torch.dtype
    x_grad: bool
    w_shape: tuple
    w_layout: str
    w_grad: bool
    b_grad: bool
    has_b: bool
    stride: object
    padding: object
    dilation: object
    groups: int
    amp: torch.dtype | None  # the autocast dtype, None outside autocast
    device: str


class ConvRecorder(TorchFunctionMode):
    """Counts the ``conv2d`` calls made under it, keyed by everything that decides their kernel."""

    def __init__(self):
        super().__init__()
        self.calls: collections.Counter = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (F.conv2d, torch.conv2d):
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
            a = {**dict(zip(names, args)), **kwargs}
            x, w, b = a["input"], a["weight"], a.get("bias")
            amp = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else None
            self.calls[ConvCall(tuple(x.shape), _layout(x), x.dtype, x.requires_grad, tuple(w.shape), _layout(w),
                                w.requires_grad, b is not None and b.requires_grad, b is not None,
                                a.get("stride", 1), a.get("padding", 0), a.get("dilation", 1), a.get("groups", 1),
                                amp, x.device.type)] += 1
        return func(*args, **kwargs)


def time_once(key: ConvCall) -> float:
    """Seconds of one forward + backward of the recorded call ``key`` on fresh random tensors (after one
    untimed run of the same call)."""
    (shape, layout, dtype, x_grad, w_shape, w_layout, w_grad, b_grad, has_b, stride, padding, dilation, groups,
     amp, device) = key
    fmt = {"cl": torch.channels_last, "nchw": torch.contiguous_format}
    x = torch.randn(shape, dtype=dtype, device=device).contiguous(memory_format=fmt[layout]).requires_grad_(x_grad)
    w = torch.randn(w_shape, dtype=dtype, device=device).contiguous(memory_format=fmt[w_layout]).requires_grad_(w_grad)
    b = torch.randn(w_shape[0], dtype=dtype, device=device).requires_grad_(b_grad) if has_b else None

    def run(grad: torch.Tensor | None) -> torch.Tensor:
        with torch.autocast(device, dtype=amp or torch.bfloat16, enabled=amp is not None):
            out = F.conv2d(x, w, b, stride, padding, dilation, groups)
        if grad is not None and out.requires_grad:
            out.backward(grad)
        return out

    grad = torch.randn_like(run(None))
    run(grad)
    for t in (x, w, b):  # the timed run writes fresh gradients, as in the step, instead of adding to these
        if t is not None:
            t.grad = None
    ts.sync(torch.device(device))
    t0 = time.perf_counter()
    run(grad)
    ts.sync(torch.device(device))
    return time.perf_counter() - t0


def retime(keys: list[ConvCall], reps: int) -> dict[ConvCall, float]:
    """Per recorded call, the fastest of ``reps`` runs, taken in rounds over all ``keys``.

    Rounds, not one call's reps back to back: a call is milliseconds long and a shared box's slow spells last
    seconds, so back-to-back reps can all fall into one (a 3x3 conv once re-timed at 76 ms against 40 ms in the
    next row), and a call's time is multiplied by its count in the step. Spread over rounds, each call's fastest
    run is its time on an undisturbed box: the lower end of the convolution time, which makes
    ``reference step / our convolution time`` the most generous bound.
    """
    best = {key: float("inf") for key in keys}
    for _ in range(reps):
        for key in keys:
            best[key] = min(best[key], time_once(key))
    return best


def time_call(key: ConvCall, reps: int) -> float:
    """The fastest of ``reps`` forward + backward runs of one recorded call (see :func:`retime`)."""
    return retime([key], reps)[key]


def describe(key: ConvCall) -> str:
    g = key.groups
    kind = "depthwise" if g == key.shape[1] and g > 1 else (f"groups {g}" if g > 1 else "dense")
    return f"{'x'.join(map(str, key.shape))} {key.layout} -> w {'x'.join(map(str, key.w_shape))} ({kind})"


def measure(cases: list[ts.Case], x, y, task, reps: int) -> list[dict]:
    """Per case, the median step (steps interleaved across the cases) and its convolutions re-timed one call at
    a time (rounds over the calls of every case, see :func:`retime`)."""
    recorded, steps = [], {id(c): [] for c in cases}
    for case in cases:
        ts.warm_up(case, x, y, task)
        recorder = ConvRecorder()
        with recorder:
            ts.train_step(case, x, y, task)
        recorded.append(recorder.calls)
    for _ in range(reps):
        for case in cases:
            steps[id(case)].append(ts.train_step(case, x, y, task))
    best = retime(list(dict.fromkeys(k for calls in recorded for k in calls)), reps)
    results = []
    for case, calls in zip(cases, recorded):
        rows = sorted(((best[key] * n, n, key) for key, n in calls.items()), key=lambda r: -r[0])
        results.append({"step": statistics.median(steps[id(case)]), "conv": sum(r[0] for r in rows), "rows": rows,
                        "calls": sum(calls.values())})
    return results


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="Restormer", help="row labels of train_step.py (commas)")
    p.add_argument("--modes", default="fp32_cl", help=f"of {', '.join(ts.MODES)} (not the compile modes)")
    p.add_argument("--reference", action="append", default=[], metavar="NAME=DIR",
                   help="also time the reference NAME reproduces (as in train_step.py)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--top", type=int, default=8, help="convolution kinds listed per case")
    p.add_argument("--out", default=str(RESULTS / "conv_share.txt"))
    args = p.parse_args(argv)
    args.official_restormer = args.official_promptir = None
    args.adamw_kernel = "auto"
    modes = ts.comma_list(args.modes)
    bad = [m for m in modes if m not in ts.MODES or ts.MODES[m][2]]
    if bad:
        sys.exit(f"--modes: {', '.join(bad)} cannot be re-timed call by call; choose from "
                 + ", ".join(m for m in ts.MODES if not ts.MODES[m][2]))
    device = torch.device("cpu")
    heap = apply_cpu_malloc(resolve_cpu_malloc("auto", device), device)
    x, y, task = ts.make_batch(args, device)
    refs = ts.references_of(args)
    lines = [f"# torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x 3 x "
             f"{args.size}^2, {args.reps} reps, {heap} heap for every case (the references included)",
             "# step = median of the reps; conv = every conv2d call of one step re-run alone, forward + backward "
             "(the fastest of the reps), times its count"]
    for label, overrides in ts.select_rows(args.models, list(refs)):
        wanted = [("aio", m) for m in modes] + ([("reference", "fp32")] if label in refs else [])
        cases, _, _ = ts.build_label(args, device, label, overrides, wanted, heap)
        results = list(zip(cases, measure(cases, x, y, task, args.reps)))
        for case, r in results:
            lines.append(f"\n{case.name}: step {r['step']:.3f} s, {r['calls']} conv2d calls, conv {r['conv']:.3f} s "
                         f"= {r['conv'] / r['step']:.0%} of the step")
            for seconds, n, key in r["rows"][:args.top]:
                lines.append(f"  {seconds * 1e3:9.1f} ms  x{n:<3d} {describe(key)}")
        ref = [r for c, r in results if c.impl == "reference"]
        for case, r in results:
            if ref and case.impl == "aio":
                lines.append(f"  reference step / {case.name}'s conv time = {ref[0]['step'] / r['conv']:.2f}x: "
                             "the most a change outside its convolutions could give")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
