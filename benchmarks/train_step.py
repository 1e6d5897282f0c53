"""Training-step speed: aio's networks in fp32 / bf16 / channels_last / torch.compile, side by side with the
reference implementations they reproduce (official Restormer, PromptIR, seed-000, DSRIR, MiOIR, AirNet).

One step = forward (autocast where the mode says), loss, backward, AdamW (the trainer's default foreach kernel)
and zero_grad, on a random ``batch x 3 x size x size`` batch (task labels ``arange(batch) % 7``); the loss is
the L1 of every restored image the network returns (DSRIR: three) plus the mean |.| of its auxiliary outputs
(DSRIR's variances, AirNet's contrastive logits), the same on both sides. Every case is warmed up once, then the cases
are run **interleaved** (one step of each, in a rotating order, ``--reps`` times) so that a busy machine
slows them all alike: compare the ratios of one run, not absolute times across runs. Printed per case:
median s/step, images/s, the median process CPU seconds per step (all threads; where other work shares the
cores, its ratios are the steadier figure), achieved FLOP/s (3 x the forward FLOPs of FlopCounterMode, over the median step)
against this machine's matmul peak measured in the same run (fp32 and bf16), and peak memory on CUDA; per
model with a reference clone, the ratio reference-fp32 / aio-mode and the fp32 max |diff| of the (eval-mode)
outputs with the same weights (ours loaded ``strict=True`` into the reference); and a torch.profiler top-10
of the first model's fp32 and fastest steps (``--profile-rows`` adds rows, ours and the reference).

    .venv/bin/python benchmarks/train_step.py                     # Restormer, PromptIR, NAFNet; a few minutes
    .venv/bin/python benchmarks/train_step.py --official-restormer ~/src/Restormer \\
        --official-promptir ~/src/PromptIR --reps 5               # + the official code, its ratio
    .venv/bin/python benchmarks/train_step.py --models none --modes fp32 --reference seed000=~/src/Image-Restoration \\
        --reference dsrir=~/src/DSRIR --reference mioir=~/src/MiOIR --reference airnet=~/src/AirNet
    .venv/bin/python benchmarks/train_step.py --models all --modes fp32,bf16,bf16_cl,bf16_compile

``--reference NAME=DIR`` (repeatable) adds the rows NAME's reference reproduces to ``--models`` and times the
reference next to them (``benchmarks/references.py``):

- ``restormer``: github.com/swz30/Restormer ``basicsr/models/archs/restormer_arch.py`` -> row Restormer
  (``--official-restormer DIR`` is the same);
- ``promptir``: github.com/va1shn9v/PromptIR ``net/model.py`` -> PromptIR (= ``--official-promptir DIR``);
- ``seed000``: github.com/1601339895/Image-Restoration (the repo root or its ``experiment/20251208_cpMoCE_IR_
  Gatewise_LoRa/src``): ``net/model.py`` LoRa_Gate_Restormer + apply_mixed_strategy_lora(0.5, 0.8) -> row
  ``Baseline (LoRa-Gate-Restormer)`` (experiment=baseline); ``net/model_improved.py``
  ImprovedLoRaGateRestormer(use_dfrg) + apply_enhanced_lora_strategy(0.5, 0.8) -> ``Full (0.5, 0.8)``
  (experiment=full);
- ``dsrir``: github.com/xfwang23/DSRIR ``model/DSRIR.py`` -> DSRIR;
- ``mioir``: github.com/Xiangtaokong/MiOIR ``basicsr/archs/{srresnet,restormer}_arch.py`` (SRResNet, SRResNet_EP,
  SRResNet_AP, Restormer_EP, Restormer_AP; the EP prompt maps from its ``data/type7.npy``, which our EP rows
  read too) -> the five ``(MiOIR)`` rows;
- ``airnet``: github.com/XLearning-SCU/2022-CVPR-AirNet ``net/model.py`` -> AirNet (MoCo key = the flipped input
  on both sides).

All need ``einops``; what a loader had to bridge to import a clone on this machine (a missing mmcv or fvcore,
MiOIR's import-everything ``basicsr/__init__``) is printed under "notes". Nothing of theirs is vendored here.
Writes ``benchmarks/results/train_step.txt`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see model_table.py: spinning threads thrash when shared

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_table import ROWS  # noqa: E402  (the published backbones and the ablation rows)
from references import NOTES, REFERENCES, Runner, parse_references, run_plain  # noqa: E402

from aio.cli.model import compose_model_config  # noqa: E402
from aio.models import forward_gflops, model_from_config  # noqa: E402
from aio.train.precision import compile_unsupported_reason, cpu_bf16_flags  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODES = {  # name: (autocast dtype, channels_last, torch.compile)
    "fp32": (None, False, False),
    "fp32_cl": (None, True, False),
    "bf16": (torch.bfloat16, False, False),
    "bf16_cl": (torch.bfloat16, True, False),
    "bf16_compile": (torch.bfloat16, True, True),
}
DEFAULT_MODELS = "Restormer,PromptIR,NAFNet"


@dataclass
class Case:
    """One timed configuration: a module (shared by the modes of the same layout), its optimizer, a mode."""

    model: str
    impl: str  # "aio" | "reference"
    mode: str
    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    fwd_gflop: float
    runner: Runner = run_plain
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds (all threads): robust to a busy box
    peak_mem_gb: float = float("nan")
    warmup_s: float = float("nan")

    @property
    def name(self) -> str:
        return f"{self.model} [{self.impl} {self.mode}]"


def select_rows(spec: str, extra: list[str] = ()) -> list[tuple[str, list[str]]]:
    """``[(label, overrides)]`` for a comma list of model_table row labels (case-insensitive), ``all`` or
    ``none``, followed by the labels ``extra`` (the rows of the references given) not already in it."""
    rows = {label: ov for _, label, ov in ROWS}
    by_lower = {k.lower(): k for k in rows}
    if spec.strip().lower() == "all":
        names = list(rows)
    elif spec.strip().lower() == "none":
        names = []
    else:
        names = []
        for name in (s.strip() for s in spec.split(",") if s.strip()):
            if name.lower() not in by_lower:
                sys.exit(f"--models: unknown model {name!r}; choose from: all, none, {', '.join(rows)}")
            names.append(by_lower[name.lower()])
    names += [e for e in extra if e not in names]
    return [(name, rows[name]) for name in names]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int = 5) -> float:
    """Achieved GFLOP/s of an ``n x n`` matmul in ``dtype``: the best of ``reps``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    sync(device)
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def train_step(case: Case, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> float:
    """Seconds of one forward + loss + backward + AdamW step of ``case``."""
    dtype, channels_last, _ = MODES[case.mode]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    device = x.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        images, others = case.runner(case.module, x, task)
    loss = sum(F.l1_loss(img.float(), y) for img in images) + sum(o.float().abs().mean() for o in others)
    loss.backward()
    case.optimizer.step()
    case.optimizer.zero_grad(set_to_none=True)
    sync(device)
    seconds = time.perf_counter() - t0
    case.cpu_times.append(time.process_time() - c0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        case.peak_mem_gb = peak if case.peak_mem_gb != case.peak_mem_gb else max(case.peak_mem_gb, peak)
    return seconds


def references_of(args) -> dict[str, tuple]:
    """``{row label: (RefNet, clone)}`` for the references given (``--reference`` and the two official flags)."""
    clones = parse_references(args.reference)
    for name, flag in (("restormer", args.official_restormer), ("promptir", args.official_promptir)):
        if flag:
            clones.update(parse_references([f"{name}={flag}"]))
    return {net.row: (net, clone) for name, clone in clones.items() for net in REFERENCES[name].nets}


def max_diff(ref: torch.nn.Module, ref_run: Runner, ours: torch.nn.Module, our_run: Runner, x: torch.Tensor,
             task: torch.Tensor) -> float:
    """fp32 max |diff| over the restored images of both networks in eval mode (then back to train)."""
    ref.eval(), ours.eval()
    with torch.no_grad():
        a, _ = ref_run(ref, x, task)
        b, _ = our_run(ours, x, task)
    ref.train(), ours.train()
    if len(a) != len(b):
        sys.exit(f"reference returns {len(a)} images, ours {len(b)}")
    return max(float((u - v).abs().max()) for u, v in zip(a, b))


def build_cases(args, device: torch.device, x: torch.Tensor,
                task: torch.Tensor) -> tuple[list[Case], dict[str, float], dict[str, float]]:
    """The cases to time and, per model with a reference clone, the fp32 max |diff| of the two outputs (and of
    our channels_last copy's, when a mode uses one)."""
    cases: list[Case] = []
    diffs: dict[str, float] = {}
    cl_diffs: dict[str, float] = {}
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            sys.exit(f"--modes: unknown mode {m!r}; choose from {', '.join(MODES)}")
    if any(MODES[m][2] for m in modes):
        reason = compile_unsupported_reason(device)
        if reason:
            print(f"[train_step] skipping the compile modes: {reason}")
            modes = [m for m in modes if not MODES[m][2]]
    refs = references_of(args)
    for label, overrides in select_rows(args.models, list(refs)):
        ref_net, clone = refs.get(label, (None, None))
        runner = ref_net.ours if ref_net else run_plain
        extra = ref_net.ours_overrides(clone) if ref_net else []
        torch.manual_seed(0)
        base = model_from_config(compose_model_config(overrides + ["model.size=paper"] + extra)).to(device).train()
        gflop = forward_gflops(base, args.size) * args.batch
        modules: dict[tuple[bool, bool], tuple[torch.nn.Module, torch.optim.Optimizer]] = {}
        for mode in modes:
            _, channels_last, compiled = MODES[mode]
            key = (channels_last, compiled)
            if key not in modules:
                layout = (channels_last, False)
                if layout not in modules:
                    net = base if not channels_last else _copy(base).to(memory_format=torch.channels_last)
                    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)  # the trainer's kernel (foreach)
                    modules[layout] = (net, opt)
                if compiled:
                    net, opt = modules[layout]
                    modules[key] = (torch.compile(net), opt)
            net, opt = modules[key]
            cases.append(Case(label, "aio", mode, net, opt, gflop, runner))
        if ref_net:
            reference, ref_run = ref_net.build(clone)
            reference = reference.to(device).train()
            reference.load_state_dict(base.state_dict(), strict=True)
            diffs[label] = max_diff(reference, ref_run, base, runner, x, task)
            if (True, False) in modules:  # the channels_last copy (fp32_cl, bf16_cl): its fp32 outputs too
                x_cl = x.contiguous(memory_format=torch.channels_last)
                cl_diffs[label] = max_diff(reference, ref_run, modules[(True, False)][0], runner, x_cl, task)
            # torch's default AdamW, as the reference training scripts build it
            cases.append(Case(label, "reference", "fp32", reference,
                              torch.optim.AdamW(reference.parameters(), lr=1e-4), gflop, ref_run))
    return cases, diffs, cl_diffs


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)


def profile_top10(case: Case, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> str:
    """torch.profiler's top-10 operators of one step of ``case`` by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train_step(case, x, y, task)
    key = "self_device_time_total" if x.device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=10, max_name_column_width=44)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"comma list of benchmarks/model_table.py row labels, 'all' or 'none' (default {DEFAULT_MODELS}); "
                        "the rows of the --reference clones are added")
    parser.add_argument("--modes", default=None,
                        help=f"comma list of {', '.join(MODES)} (default fp32,bf16,bf16_cl; + bf16_compile on CUDA)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3, help="interleaved timed steps per case")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--official-restormer", default=None, help="root of a clone of swz30/Restormer "
                        "(= --reference restormer=DIR)")
    parser.add_argument("--official-promptir", default=None, help="root of a clone of va1shn9v/PromptIR "
                        "(= --reference promptir=DIR)")
    parser.add_argument("--reference", action="append", default=[], metavar="NAME=DIR",
                        help=f"time the reference NAME ({', '.join(REFERENCES)}) from the clone DIR next to the rows "
                        "it reproduces (added to --models); repeatable; the repos are listed above")
    parser.add_argument("--no-profile", action="store_true", help="skip the torch.profiler top-10")
    parser.add_argument("--profile-rows", default="",
                        help="comma list of row labels whose fp32 step (ours and the reference's) is profiled too")
    parser.add_argument("--out", default=str(RESULTS / "train_step.txt"))
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.modes is None:
        args.modes = "fp32,bf16,bf16_cl" + (",bf16_compile" if device.type == "cuda" else "")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    y = torch.rand_like(x)
    task = torch.arange(args.batch, device=device) % 7
    load_start = os.getloadavg()[0]
    n = 8192 if device.type == "cuda" else 2048
    peaks = {"fp32": [matmul_peak(device, torch.float32, n)], "bf16": [matmul_peak(device, torch.bfloat16, n)]}

    cases, diffs, cl_diffs = build_cases(args, device, x, task)
    for case in cases:  # warm-up (compiles the compiled cases)
        case.warmup_s = train_step(case, x, y, task)
        case.cpu_times.clear()
        print(f"[train_step] warm-up {case.name}: {case.warmup_s:.2f} s", flush=True)
    for rep in range(args.reps):
        k = rep % len(cases)
        for case in cases[k:] + cases[:k]:
            case.times.append(train_step(case, x, y, task))
        print(f"[train_step] rep {rep + 1}/{args.reps} done", flush=True)
    peaks["fp32"].append(matmul_peak(device, torch.float32, n))
    peaks["bf16"].append(matmul_peak(device, torch.bfloat16, n))
    peak = {k: max(v) for k, v in peaks.items()}

    lines = [
        f"# torch {torch.__version__}, {device.type}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
           f" ({platform.processor() or platform.machine()}, bf16 flags: {','.join(cpu_bf16_flags()) or 'none'})")
        + f", {torch.get_num_threads()} threads, batch {args.batch} x 3 x {args.size}^2, {args.reps} interleaved reps,"
        f" 1-min load {load_start:.1f} at start / {os.getloadavg()[0]:.1f} at end",
        f"# matmul peak (n={n}, measured in this run): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s;"
        " FLOP/s = 3 x forward FLOPs / median step",
        "",
        f"{'case':50s} {'s/step':>8s} {'img/s':>7s} {'GFLOP/s':>8s} {'%peak':>6s} {'peak GB':>8s} {'CPU s':>7s}  steps (s)",
    ]
    rows = []
    for c in cases:
        med = statistics.median(c.times)
        gflops = 3 * c.fwd_gflop / med
        pk = peak["bf16" if MODES[c.mode][0] is torch.bfloat16 else "fp32"]
        rows.append({"model": c.model, "impl": c.impl, "mode": c.mode, "median_s": med, "images_per_s": args.batch / med,
                     "gflops": gflops, "pct_peak": 100 * gflops / pk, "peak_mem_gb": c.peak_mem_gb,
                     "warmup_s": c.warmup_s, "times": c.times, "median_cpu_s": statistics.median(c.cpu_times),
                     "cpu_times": c.cpu_times})
        lines.append(f"{c.name:50s} {med:8.3f} {args.batch / med:7.2f} {gflops:8.1f} {100 * gflops / pk:6.1f} "
                     f"{c.peak_mem_gb:8.2f} {statistics.median(c.cpu_times):7.2f}  " + " ".join(f"{t:.2f}" for t in c.times))
    ratios, cpu_ratios = {}, {}
    for label in diffs:
        ref_case = next(c for c in cases if c.model == label and c.impl == "reference")
        ref, ref_cpu = statistics.median(ref_case.times), statistics.median(ref_case.cpu_times)
        ours = [c for c in cases if c.model == label and c.impl == "aio"]
        ratios[label] = {c.mode: ref / statistics.median(c.times) for c in ours}
        cpu_ratios[label] = {c.mode: ref_cpu / statistics.median(c.cpu_times) for c in ours}
        lines.append("")
        lines.append(f"{label}: reference fp32 {ref:.3f} s/step; fp32 max|diff| aio vs reference (same weights) "
                     f"{diffs[label]:.2e}" + (f" (channels_last copy {cl_diffs[label]:.2e})" if label in cl_diffs else "")
                     + "; reference-fp32 / aio: "
                     + ", ".join(f"{m} {r:.2f}x" for m, r in ratios[label].items())
                     + " (process CPU time: " + ", ".join(f"{m} {r:.2f}x" for m, r in cpu_ratios[label].items()) + ")")
    if NOTES:
        lines += ["", "notes (what the reference loaders bridged on this machine):"] + [f"- {n}" for n in NOTES]
    if not args.no_profile and cases:
        first = [c for c in cases if c.model == cases[0].model and c.impl == "aio"]
        fastest = min(first, key=lambda c: statistics.median(c.times))
        extra = [r.strip().lower() for r in args.profile_rows.split(",") if r.strip()]
        more = [c for c in cases if c.model.lower() in extra and c.mode == "fp32" and c is not first[0]]
        for c in [first[0]] + ([fastest] if fastest is not first[0] else []) + more:
            lines += ["", f"torch.profiler top-10, one step of {c.name}:", profile_top10(c, x, y, task)]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    result = {"peak_gflops": peak, "rows": rows, "ratios_reference_over_aio": ratios,
              "cpu_time_ratios_reference_over_aio": cpu_ratios, "max_abs_diff": diffs,
              "max_abs_diff_channels_last": dict(cl_diffs),
              "notes": NOTES, "args": vars(args)}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return result


if __name__ == "__main__":
    main()
