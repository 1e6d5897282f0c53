"""Training-step speed: aio's networks in fp32 / bf16 / channels_last / torch.compile, side by side with the
reference implementations they reproduce (official Restormer, PromptIR, seed-000, DSRIR, MiOIR, AirNet).

One step = forward (autocast where the mode says), loss, backward, AdamW (ours: the trainer's kernel,
``--adamw-kernel``, default ``auto`` = fused on CPU and CUDA; the references: torch's default, a loop over the
tensors on a CPU, as their training scripts build it) and zero_grad, on a random ``batch x 3 x size x size`` batch (task labels ``arange(batch) % 7``); the loss is
the L1 of every restored image the network returns (DSRIR: three) plus the mean |.| of its auxiliary outputs
(DSRIR's variances, AirNet's contrastive logits), the same on both sides. Every case is warmed up once, then the cases
are run **interleaved** (one step of each, in a rotating order, ``--reps`` times) so that a busy machine
slows them all alike: compare the ratios of one run, not absolute times across runs. Printed per case:
median s/step, images/s, the median process CPU seconds per step (all threads; where other work shares the
cores, its ratios are the steadier figure), the median minor page faults of the process per step (pages the
kernel maps and zeroes anew: see the C heap below), achieved FLOP/s (3 x the forward FLOPs of FlopCounterMode, over the median step)
against this machine's matmul peak measured in the same run (fp32 and bf16), and peak memory on CUDA; per
model with a reference clone, the ratio reference-fp32 / aio-mode (of the two medians, of the CPU-time medians, and
paired by rep: the median of each rep's reference step over our step in the same rep, which cancels a drift of the
machine's speed over the run) and the fp32 max |diff| of the (eval-mode)
outputs with the same weights (ours loaded ``strict=True`` into the reference); and a torch.profiler top-10
of the first model's fp32 and fastest steps (``--profile-rows`` adds rows, ours and the reference).

    .venv/bin/python benchmarks/train_step.py                     # Restormer, PromptIR, NAFNet; a few minutes
    .venv/bin/python benchmarks/train_step.py --official-restormer ~/src/Restormer \\
        --official-promptir ~/src/PromptIR --reps 5               # + the official code, its ratio
    .venv/bin/python benchmarks/train_step.py --models none --modes fp32 --reference seed000=~/src/Image-Restoration \\
        --reference dsrir=~/src/DSRIR --reference mioir=~/src/MiOIR --reference airnet=~/src/AirNet
    .venv/bin/python benchmarks/train_step.py --models all --modes fp32,bf16,bf16_cl,bf16_compile

**The C heap.** aio's trainer keeps freed host memory in the process heap (``trainer.cpu_malloc=auto`` ->
``cache`` on a CPU with glibc; ``aio/train/host_memory.py``); the references' own training scripts run on
glibc's defaults, which hand every large activation out as a fresh mmap and fault its pages in again each step.
Our cases run in this process under ``--cpu-malloc`` (default: what ``aio-train`` does). The references are
timed under each heap of ``--reference-malloc`` (default ``system,cache``): ``system`` is the reference as it
runs on its own, ``cache`` the same code given aio's setting (so the ratio that the code alone earns is printed
too); ``--system-malloc-modes fp32`` also times our own fp32 step on glibc's defaults. The cases of the heap
mode this process does not run live in spawned worker processes (fresh heaps: one for our cases, one for the
references', since a heap's state depends on what else ran in the process), and their steps are interleaved
with ours over a pipe: one step runs at a time, as before.

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
from references import NOTES, REFERENCES, Runner, note, parse_references, run_plain  # noqa: E402

from aio.cli.model import compose_model_config  # noqa: E402
from aio.models import forward_gflops, model_from_config  # noqa: E402
from aio.train.host_memory import MALLOC_CHOICES, apply_cpu_malloc, resolve_cpu_malloc  # noqa: E402
from aio.train.builders import ADAMW_KERNELS, adamw  # noqa: E402
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
    malloc: str = "system"  # the C-heap mode of the process that runs it (aio/train/host_memory.py)
    worker: "Worker | None" = None  # None: this process; else the worker process that runs it
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds (all threads): robust to a busy box
    faults: list[int] = field(default_factory=list)  # the process's minor page faults during the step
    peak_mem_gb: float = float("nan")
    warmup_s: float = float("nan")

    @property
    def name(self) -> str:
        return f"{self.model} [{self.impl} {self.mode}]"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.impl, self.mode)


def comma_list(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated option value."""
    return [item.strip() for item in text.split(",") if item.strip()]


def label_list(text: str) -> list[str]:
    """:func:`comma_list` for row labels: a comma inside parentheses belongs to the label (``Full (0.5, 0.8)``)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth <= 0:
            items.append(text[start:i].strip())
            start = i + 1
    return [item for item in items if item]


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
        for name in label_list(spec):
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


def _minor_faults() -> int:
    """This process's minor page faults so far (pages the kernel mapped and zeroed); 0 where unknown."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def train_step(case: Case, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> float:
    """Seconds of one forward + loss + backward + AdamW step of ``case``."""
    dtype, channels_last, _ = MODES[case.mode]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    device = x.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    f0 = _minor_faults()
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
    case.faults.append(_minor_faults() - f0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        case.peak_mem_gb = peak if case.peak_mem_gb != case.peak_mem_gb else max(case.peak_mem_gb, peak)
    return seconds


def paired_ratio(reference: list[float], ours: list[float]) -> float:
    """The median over reps of ``reference step / our step`` in the same rep.

    One rep runs one step of every case back to back, so the two steps of a pair saw the same state of a
    shared machine; a drift in its speed over the run (on this project's boxes a step can slow by half within
    minutes) moves both alike and cancels in their ratio, where it does not in the ratio of the two medians.
    """
    if len(reference) != len(ours) or not ours:
        raise ValueError(f"paired_ratio needs one step per rep on both sides: {len(reference)} vs {len(ours)}")
    return statistics.median(r / o for r, o in zip(reference, ours))


def warm_up(case: Case, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> float:
    """One untimed step (it compiles a compiled case); its seconds, kept out of the case's CPU-time and fault lists."""
    seconds = train_step(case, x, y, task)
    case.cpu_times.clear(), case.faults.clear()
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


def parse_modes(args, device: torch.device) -> list[str]:
    """``--modes`` checked, minus the compile modes where inductor cannot run here."""
    modes = comma_list(args.modes)
    for m in modes + comma_list(args.system_malloc_modes):
        if m not in MODES:
            sys.exit(f"--modes / --system-malloc-modes: unknown mode {m!r}; choose from {', '.join(MODES)}")
    if any(MODES[m][2] for m in modes):
        reason = compile_unsupported_reason(device)
        if reason:
            print(f"[train_step] skipping the compile modes: {reason}")
            modes = [m for m in modes if not MODES[m][2]]
    if not modes:
        sys.exit("--modes: no mode left to time; give at least one of " + ", ".join(m for m in MODES if not MODES[m][2]))
    return modes


def build_label(args, device: torch.device, label: str, overrides: list[str], wanted: list[tuple[str, str]],
                malloc: str, x: torch.Tensor | None = None, task: torch.Tensor | None = None):
    """The cases ``wanted`` (``(impl, mode)`` pairs) of one model row, built in this process; with ``x`` also
    the fp32 max |diff| of the reference's outputs against ours (and our channels_last copy's), else NaN.

    Our network is built from seed 0 and the reference loads its state dict (``strict=True``), so every
    process that builds a row holds the same weights."""
    ref_net, clone = references_of(args).get(label, (None, None))
    runner = ref_net.ours if ref_net else run_plain
    extra = ref_net.ours_overrides(clone) if ref_net else []
    torch.manual_seed(0)
    base = model_from_config(compose_model_config(overrides + ["model.size=paper"] + extra)).to(device).train()
    gflop = forward_gflops(base, args.size) * args.batch
    modules: dict[tuple[bool, bool], tuple[torch.nn.Module, torch.optim.Optimizer]] = {}
    cases: list[Case] = []
    for impl, mode in wanted:
        if impl != "aio":
            continue
        _, channels_last, compiled = MODES[mode]
        key = (channels_last, compiled)
        if key not in modules:
            layout = (channels_last, False)
            if layout not in modules:
                net = base if not channels_last else _copy(base).to(memory_format=torch.channels_last)
                opt = adamw(net.parameters(), lr=1e-4, kernel=args.adamw_kernel, key="--adamw-kernel")
                modules[layout] = (net, opt)
            if compiled:
                net, opt = modules[layout]
                modules[key] = (torch.compile(net), opt)
        net, opt = modules[key]
        cases.append(Case(label, "aio", mode, net, opt, gflop, runner, malloc))
    diff = cl_diff = float("nan")
    if ref_net and (x is not None or any(impl == "reference" for impl, _ in wanted)):
        reference, ref_run = ref_net.build(clone)
        reference = reference.to(device).train()
        reference.load_state_dict(base.state_dict(), strict=True)
        if x is not None:
            diff = max_diff(reference, ref_run, base, runner, x, task)
            if (True, False) in modules:  # the channels_last copy (fp32_cl, bf16_cl): its fp32 outputs too
                x_cl = x.contiguous(memory_format=torch.channels_last)
                cl_diff = max_diff(reference, ref_run, modules[(True, False)][0], runner, x_cl, task)
        if any(impl == "reference" for impl, _ in wanted):
            # torch's default AdamW, as the reference training scripts build it
            cases.append(Case(label, "reference", "fp32", reference,
                              torch.optim.AdamW(reference.parameters(), lr=1e-4), gflop, ref_run, malloc))
    return cases, diff, cl_diff


def make_batch(args, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The timed batch (seed 0): inputs, targets, task labels ``arange(batch) % 7``."""
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    return x, torch.rand_like(x), torch.arange(args.batch, device=device) % 7


def _worker_main(conn, args, device: str, malloc: str, wanted: dict[str, list[tuple[str, str]]]) -> None:
    """A process under the other heap mode: builds its cases, warms them up, then times one step per request."""
    device = torch.device(device)
    apply_cpu_malloc(malloc, device, key="--reference-malloc")
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, task = make_batch(args, device)
    rows = dict(select_rows(args.models, list(references_of(args))))
    cases = {}
    for label, pairs in wanted.items():
        for case in build_label(args, device, label, rows[label], pairs, malloc)[0]:
            cases[case.key] = case
    warmups = {}
    for key, case in cases.items():
        warmups[key] = warm_up(case, x, y, task)
    conn.send((warmups, list(NOTES)))
    while True:
        cmd, key = conn.recv()
        if cmd == "stop":
            break
        case = cases[key]
        if cmd == "step":
            seconds = train_step(case, x, y, task)
            conn.send((seconds, case.cpu_times[-1], case.faults[-1], case.peak_mem_gb))
        elif cmd == "profile":
            conn.send(profile_top10(case, x, y, task))


class Worker:
    """A child process (spawned: a fresh C heap) that runs cases under the heap mode this one does not."""

    def __init__(self, args, device: torch.device, malloc: str, wanted: dict[str, list[tuple[str, str]]]):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, args, str(device), malloc, wanted), daemon=True)
        self.process.start()
        self.warmups, notes = self._recv()
        for n in notes:
            note(n)

    def _recv(self):
        try:
            return self.conn.recv()
        except EOFError:
            self.process.join(5)
            sys.exit(f"[train_step] the worker process died (exit code {self.process.exitcode})")

    def step(self, case: Case) -> float:
        self.conn.send(("step", case.key))
        seconds, cpu, faults, peak = self._recv()
        case.cpu_times.append(cpu)
        case.faults.append(faults)
        case.peak_mem_gb = peak
        return seconds

    def profile(self, case: Case) -> tuple[str, float]:
        self.conn.send(("profile", case.key))
        return self._recv()

    def close(self) -> None:
        self.conn.send(("stop", None))
        self.process.join(60)


def build_cases(args, device: torch.device, x: torch.Tensor, task: torch.Tensor, malloc: str
                ) -> tuple[list[Case], dict[str, float], dict[str, float], list["Worker"]]:
    """The cases to time, in order; per model with a reference clone, the fp32 max |diff| of the two outputs
    (and of our channels_last copy's, when a mode uses one); and the worker processes of the other heap mode,
    one for our cases and one for the references' (a heap's state depends on what else ran in the process:
    the reference on glibc's heap runs alone, as in its own scripts). ``malloc`` is this process's heap mode:
    the aio ``--modes`` run under it; the reference under each of ``--reference-malloc``; the
    ``--system-malloc-modes`` under ``system``."""
    modes = parse_modes(args, device)
    system_modes = comma_list(args.system_malloc_modes)
    ref_mallocs = comma_list(args.reference_malloc)
    refs = references_of(args)
    plan: list[tuple[str, list[str], list[tuple[str, str, str]]]] = []
    for label, overrides in select_rows(args.models, list(refs)):
        wanted = [("aio", m, malloc) for m in modes]
        wanted += [("aio", m, "system") for m in system_modes if malloc != "system" or m not in modes]
        if label in refs:
            wanted += [("reference", "fp32", m) for m in ref_mallocs]
        plan.append((label, overrides, wanted))
    groups: dict[tuple[str, str], dict[str, list[tuple[str, str]]]] = {}  # (heap, impl) -> {label: pairs}
    for label, _, wanted in plan:
        for impl, mode, heap in wanted:
            if heap != malloc:
                groups.setdefault((heap, impl), {}).setdefault(label, []).append((impl, mode))
    workers = {key: Worker(args, device, key[0], group) for key, group in groups.items()}
    cases: list[Case] = []
    diffs: dict[str, float] = {}
    cl_diffs: dict[str, float] = {}
    for label, overrides, wanted in plan:
        local, diff, cl_diff = build_label(args, device, label, overrides,
                                           [(i, m) for i, m, h in wanted if h == malloc], malloc, x, task)
        if label in refs:
            diffs[label] = diff
            if cl_diff == cl_diff:
                cl_diffs[label] = cl_diff
        by_key = {(c.impl, c.mode): c for c in local}
        gflop = local[0].fwd_gflop  # --modes is not empty: our network is built here
        for impl, mode, heap in wanted:
            if heap == malloc:
                cases.append(by_key[(impl, mode)])
            else:
                case = Case(label, impl, mode, None, None, gflop, malloc=heap, worker=workers[(heap, impl)])
                case.warmup_s = case.worker.warmups[case.key]
                cases.append(case)
    return cases, diffs, cl_diffs, list(workers.values())


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)


def profile_top10(case: Case, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> tuple[str, float]:
    """torch.profiler's top-10 operators of one step of ``case`` by self time, and the share of the step's
    self time spent in convolution operators (forward and backward: oneDNN's kernels, the same calls in a
    reference that has the same convs)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train_step(case, x, y, task)
    del case.cpu_times[-1], case.faults[-1]  # a profiled step is not a timed one
    key = "self_device_time_total" if x.device.type == "cuda" else "self_cpu_time_total"
    averages = prof.key_averages()
    total = sum(getattr(e, key) for e in averages)
    conv = sum(getattr(e, key) for e in averages if "convolution" in e.key)
    return averages.table(sort_by=key, row_limit=10, max_name_column_width=44), conv / total if total else float("nan")


def conv_ceiling_line(label: str, profiled: list[Case], shares: dict[int, float]) -> str | None:
    """Amdahl's bound of a profiled row: the reference's median step over the convolution time of our fastest
    profiled case (its median step x its convolution share), i.e. the ratio if every other op of ours took no
    time; None without both a reference and an aio case of ``label`` among ``profiled``."""
    ours = [c for c in profiled if c.model == label and c.impl == "aio"]
    refs = [c for c in profiled if c.model == label and c.impl == "reference"]
    if not ours or not refs:
        return None
    best = min(ours, key=lambda c: statistics.median(c.times))
    conv_s = statistics.median(best.times) * shares[id(best)]
    parts = ", ".join(f"{c.impl} {c.mode} ({c.malloc} heap) {shares[id(c)]:.0%}" for c in ours + refs)
    bounds = ", ".join(f"{statistics.median(r.times) / conv_s:.2f}x (reference on the {r.malloc} heap)" for r in refs)
    return (f"{label}: convolutions (forward + backward) are {parts} of the profiled step; reference / "
            f"(aio {best.mode}'s convolution time, {conv_s:.3f} s) = {bounds}: the most any change outside the "
            "convolutions could give")


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
    parser.add_argument("--cpu-malloc", default="auto", choices=MALLOC_CHOICES,
                        help="the C-heap mode aio's cases run under, as trainer.cpu_malloc (default auto: cache on a "
                        "CPU with glibc, what aio-train does); see aio/train/host_memory.py")
    parser.add_argument("--reference-malloc", default=None,
                        help="comma list of the heap modes the references are timed under (default system,cache on a "
                        "CPU with glibc, else system): system = glibc's defaults, as their own training scripts run; "
                        "cache = aio's setting. The mode this process does not run is timed in a spawned worker "
                        "process, its steps interleaved with ours")
    parser.add_argument("--system-malloc-modes", default="",
                        help="comma list of aio modes also timed under glibc's default heap (the heap's share)")
    parser.add_argument("--adamw-kernel", default="auto", choices=ADAMW_KERNELS,
                        help="AdamW kernel of our cases, as trainer.adamw_kernel (default auto: fused where torch has "
                        "it); the references keep torch's default")
    parser.add_argument("--no-profile", action="store_true", help="skip the torch.profiler top-10")
    parser.add_argument("--profile-rows", default="",
                        help="comma list of row labels whose fp32 and fp32_cl steps (ours and the reference's) are profiled "
                        "too, with the bound the convolutions put on the ratio")
    parser.add_argument("--out", default=str(RESULTS / "train_step.txt"))
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.modes is None:
        args.modes = "fp32,bf16,bf16_cl" + (",bf16_compile" if device.type == "cuda" else "")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reference_malloc is None:
        args.reference_malloc = "system,cache" if resolve_cpu_malloc("auto", device) == "cache" else "system"
    try:
        for m in comma_list(args.reference_malloc):
            if resolve_cpu_malloc(m, device, key="--reference-malloc") != m:
                sys.exit(f"--reference-malloc: name the heap modes (system, cache), not {m!r}")
        malloc = apply_cpu_malloc(args.cpu_malloc, device, key="--cpu-malloc")
    except ValueError as err:
        sys.exit(f"[train_step] {err}")
    x, y, task = make_batch(args, device)
    load_start = os.getloadavg()[0]
    n = 8192 if device.type == "cuda" else 2048
    peaks = {"fp32": [matmul_peak(device, torch.float32, n)], "bf16": [matmul_peak(device, torch.bfloat16, n)]}

    cases, diffs, cl_diffs, workers = build_cases(args, device, x, task, malloc)
    for case in cases:  # warm-up (compiles the compiled cases); the worker warmed its own up
        if case.worker is None:
            case.warmup_s = warm_up(case, x, y, task)
        print(f"[train_step] warm-up {case.name} ({case.malloc} heap): {case.warmup_s:.2f} s", flush=True)
    for rep in range(args.reps):
        k = rep % len(cases)
        for case in cases[k:] + cases[:k]:
            case.times.append(train_step(case, x, y, task) if case.worker is None else case.worker.step(case))
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
        f"# AdamW: ours --adamw-kernel={args.adamw_kernel} (trainer.adamw_kernel; auto = fused where torch has it),"
        " the references torch's default (a loop over the tensors on a CPU)",
        "",
        f"# heap: the C-heap mode of the process the case ran in (aio/train/host_memory.py): system = glibc's defaults"
        " (as the references' own training scripts run), cache = aio's trainer.cpu_malloc=auto on a CPU;"
        " faults = median minor page faults of the process per step (pages mapped and zeroed anew)",
        "",
        f"{'case':50s} {'heap':>6s} {'s/step':>8s} {'img/s':>7s} {'GFLOP/s':>8s} {'%peak':>6s} {'peak GB':>8s} {'CPU s':>7s} {'faults':>7s}  steps (s)",
    ]
    rows = []
    for c in cases:
        med = statistics.median(c.times)
        gflops = 3 * c.fwd_gflop / med
        pk = peak["bf16" if MODES[c.mode][0] is torch.bfloat16 else "fp32"]
        rows.append({"model": c.model, "impl": c.impl, "mode": c.mode, "malloc": c.malloc, "median_s": med, "images_per_s": args.batch / med,
                     "gflops": gflops, "pct_peak": 100 * gflops / pk, "peak_mem_gb": c.peak_mem_gb,
                     "warmup_s": c.warmup_s, "times": c.times, "median_cpu_s": statistics.median(c.cpu_times),
                     "cpu_times": c.cpu_times, "median_minor_faults": statistics.median(c.faults), "minor_faults": c.faults})
        lines.append(f"{c.name:50s} {c.malloc:>6s} {med:8.3f} {args.batch / med:7.2f} {gflops:8.1f} {100 * gflops / pk:6.1f} "
                     f"{c.peak_mem_gb:8.2f} {statistics.median(c.cpu_times):7.2f} {statistics.median(c.faults) / 1e3:6.0f}k  " + " ".join(f"{t:.2f}" for t in c.times))
    ratios, cpu_ratios, paired = {}, {}, {}  # {label: {reference heap: {aio case: ratio}}}
    for label in diffs:
        ours = [c for c in cases if c.model == label and c.impl == "aio"]
        lines.append("")
        lines.append(f"{label}: fp32 max|diff| aio vs reference (same weights) {diffs[label]:.2e}"
                     + (f" (channels_last copy {cl_diffs[label]:.2e})" if label in cl_diffs else ""))
        ratios[label], cpu_ratios[label], paired[label] = {}, {}, {}
        for ref_case in (c for c in cases if c.model == label and c.impl == "reference"):
            ref, ref_cpu = statistics.median(ref_case.times), statistics.median(ref_case.cpu_times)
            tags = [c.mode + ("" if c.malloc == malloc else f" ({c.malloc} heap)") for c in ours]
            r = {t: ref / statistics.median(c.times) for t, c in zip(tags, ours)}
            rc = {t: ref_cpu / statistics.median(c.cpu_times) for t, c in zip(tags, ours)}
            rp = {t: paired_ratio(ref_case.times, c.times) for t, c in zip(tags, ours)}
            ratios[label][ref_case.malloc], cpu_ratios[label][ref_case.malloc] = r, rc
            paired[label][ref_case.malloc] = rp
            lines.append(f"  reference fp32 on the {ref_case.malloc} heap {ref:.3f} s/step; reference / aio (on the {malloc} heap unless marked): "
                         + ", ".join(f"{m} {v:.2f}x" for m, v in r.items())
                         + " (process CPU time: " + ", ".join(f"{m} {v:.2f}x" for m, v in rc.items())
                         + "; paired by rep: " + ", ".join(f"{m} {v:.2f}x" for m, v in rp.items()) + ")")
    if NOTES:
        lines += ["", "notes (what the reference loaders bridged on this machine):"] + [f"- {n}" for n in NOTES]
    if not args.no_profile and cases:
        first = [c for c in cases if c.model == cases[0].model and c.impl == "aio"]
        fastest = min(first, key=lambda c: statistics.median(c.times))
        extra = [r.lower() for r in label_list(args.profile_rows)]
        more = [c for c in cases if c.model.lower() in extra and c.mode in ("fp32", "fp32_cl")]
        profiled, shares = [], {}
        for c in [first[0], fastest] + more:  # each case once (the fastest may also be a --profile-rows case)
            if any(c is p for p in profiled):
                continue
            profiled.append(c)
            table, shares[id(c)] = profile_top10(c, x, y, task) if c.worker is None else c.worker.profile(c)
            lines += ["", f"torch.profiler top-10, one step of {c.name} ({c.malloc} heap):", table]
        ceilings = [conv_ceiling_line(label, profiled, shares) for label in dict.fromkeys(c.model for c in profiled)]
        if any(ceilings):
            lines += ["", "Where the convolutions bound the ratio (profiled rows):"] + [f"  {t}" for t in ceilings if t]
    for worker in workers:
        worker.close()
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    result = {"peak_gflops": peak, "malloc": malloc, "rows": rows, "ratios_reference_over_aio": ratios,
              "cpu_time_ratios_reference_over_aio": cpu_ratios, "paired_ratios_reference_over_aio": paired,
              "max_abs_diff": diffs,
              "max_abs_diff_channels_last": dict(cl_diffs),
              "notes": NOTES, "args": vars(args)}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return result


if __name__ == "__main__":
    main()
