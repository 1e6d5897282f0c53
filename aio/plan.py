"""A plan before the spend: the jobs of a sweep, their size and an estimated wall time, without training.

``aio-plan sweep=ablation scale=demo [seed=0,1,2] [launcher=slurm]`` (or ``aio-train -m ... sweep.plan=true``)
expands the sweep's grid (the sweep file's ``hydra.sweeper.params`` and the command line's ``a=x,y`` lists,
as Hydra's basic sweeper does), composes every job's config and, once per distinct model (model, loss, batch,
patch, precision and device), builds a real :class:`aio.train.trainer.Trainer` (``logger=none``, in a temporary
folder) and times it: the set-up, a first step (with the model summary), 3 more training steps, one
validation pass and one checkpoint save. A job's estimate is

    set-up + first step + (max_steps - 1) x step + validations x validation + saves x save

on this machine. ``launcher=slurm`` adds GPU-hours (estimate x GPUs per job); those hours are measured on the
planning machine's device, so plan on the cluster's login/GPU node for cluster figures.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

TIMED_STEPS = 3


@dataclass
class Timing:
    """Seconds measured for one distinct model."""

    setup: float
    first_step: float
    step: float
    validation: float
    save: float
    steps_run: int = 0  # training steps the timing run took (TIMED_STEPS + 2 for a single-phase strategy)


@dataclass
class PlannedJob:
    overrides: list[str]
    model: str
    params_m: float
    gflops: float | None
    steps: int
    validations: int
    saves: int
    estimate_s: float
    gpus: int


def expand_grid(sweeper_params: dict[str, str], overrides: Sequence[str]) -> list[list[str]]:
    """Every job's override list, as Hydra's basic sweeper builds them (command line wins over the file)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    merged: dict[str, str] = {str(k): f"{k}={v}" for k, v in (sweeper_params or {}).items()}
    for item in overrides:
        merged[parser.parse_override(item).get_key_element()] = item
    parsed = parser.parse_overrides(list(merged.values()))
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(job) for batch in batches for job in batch]


def _model_key(cfg: DictConfig) -> str:
    parts = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "loss")}
    parts["data"] = [cfg.dataset.name, cfg.dataset.batch_size, cfg.dataset.patch_size]
    parts["trainer"] = [cfg.trainer.amp, cfg.trainer.device, cfg.trainer.grad_accum]
    return json.dumps(parts, sort_keys=True, default=str)


def time_model(cfg: DictConfig) -> Timing:
    """Time the set-up, the first and 3 more training steps (median), a validation and a save of ``cfg``'s job."""
    from aio.train.trainer import Trainer

    raw = OmegaConf.to_container(cfg, resolve=False)
    raw.pop("hydra", None)
    raw["paths"]["run_dir"] = "unused"  # ${hydra:runtime.output_dir}: the Trainer sets its own folder
    # the short run is set before resolving: the strategy's `fit_steps: ${trainer.max_steps}` (and any other
    # reference to the run's length) must see it, and a strategy with declared phase lengths (scale=paper:
    # fit_steps null) is fitted into it too, or the "3-step timing" would train the whole schedule
    raw["trainer"]["max_steps"], raw["trainer"]["warmup_steps"] = TIMED_STEPS + 2, 0
    if isinstance(raw.get("strategy"), dict):
        raw["strategy"]["fit_steps"] = TIMED_STEPS + 2
    cfg = OmegaConf.create(raw)
    OmegaConf.resolve(cfg)
    with open_dict(cfg):
        cfg.logger = {"name": "none"}
        t = cfg.trainer
        t.val_every = t.checkpoint_every = 10**9
        t.checkpoint_every_min = 0
        t.progress = False
        t.resume = "never"
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trainer = Trainer(cfg, tmp, callbacks=[lambda _tr: stamps.append(time.perf_counter())])
        setup = time.perf_counter() - start
        fit_start = time.perf_counter()
        trainer.fit()  # its last step also validates and saves (step == max_steps): not a timed one
        # stamps[k] is taken after step k+1: step 1 is the first (warm-up) step, steps 2..TIMED_STEPS+1 are
        # timed, the last one also validates and saves (step == max_steps) and is not used
        first = stamps[0] - fit_start
        # the median of the timed steps: one step slowed by a busy machine does not scale the whole estimate
        step = float(np.median(np.diff(stamps[:TIMED_STEPS + 1])))
        tic = time.perf_counter()
        trainer.validate()
        validation = time.perf_counter() - tic
        tic = time.perf_counter()
        trainer.save()
        save = time.perf_counter() - tic
    return Timing(setup, first, step, validation, save, len(stamps))


def _count(max_steps: int, every: int) -> int:
    """How often an ``every``-step event fires in a run (also at the last step)."""
    return max_steps // every + (1 if max_steps % every else 0)


def _gpus(cfg: DictConfig) -> int:
    launcher = cfg.get("hydra", {}).get("launcher", {}) if "hydra" in cfg else {}
    gpus = launcher.get("gpus_per_node") or launcher.get("gpus_per_task") or 0
    return int(gpus or 0) * int(launcher.get("nodes", 1) or 1)


def plan_jobs(jobs: Sequence[Sequence[str]], compose: Callable[[list[str]], DictConfig],
              timer: Callable[[DictConfig], Timing] = time_model, log=print) -> list[PlannedJob]:
    """Compose and size every job; time each distinct model once."""
    from aio.models import model_from_config
    from aio.models.summary import count_parameters, forward_gflops

    timings: dict[str, Timing] = {}
    sizes: dict[str, tuple[float, float | None]] = {}
    planned = []
    for overrides in jobs:
        cfg = compose(list(overrides))
        key = _model_key(cfg)
        if key not in timings:
            log(f"[aio-plan] timing {cfg.model.name} ({' '.join(overrides) or 'defaults'}) ...")
            model = model_from_config(cfg.model)
            try:
                gflops = forward_gflops(model, size=256)
            except Exception:  # FLOP counting is informative only
                gflops = None
            sizes[key] = (count_parameters(model) / 1e6, gflops)
            with contextlib.redirect_stdout(sys.stderr):  # the trainer's own lines are not the plan
                timings[key] = timer(cfg)
        tm, t = timings[key], cfg.trainer
        steps = int(t.max_steps)
        vals, saves = _count(steps, int(t.val_every)), _count(steps, int(t.checkpoint_every))
        estimate = tm.setup + tm.first_step + (steps - 1) * tm.step + vals * tm.validation + saves * tm.save
        name = str(cfg.get("run_name") or cfg.model.name)
        planned.append(PlannedJob(list(overrides), name, sizes[key][0], sizes[key][1], steps, vals, saves,
                                  estimate, _gpus(cfg)))
    return planned


def format_plan(planned: Sequence[PlannedJob], slurm: bool, side_by_side: int = 1) -> str:
    """The plan as a Markdown table plus totals (and GPU-hours for SLURM); ``side_by_side`` > 1 (``launcher=joblib``'s
    ``n_jobs``) adds the total with that many jobs at a time, each worker taking the next job in launch order."""
    import pandas as pd

    common = set.intersection(*(set(j.overrides) for j in planned)) if planned else set()
    rows = [{"job": i, "overrides": " ".join(o for o in j.overrides if o not in common) or "(same)", "run": j.model, "params (M)": f"{j.params_m:.3f}",
             "GFLOPs @256²": "–" if j.gflops is None else f"{j.gflops:.2f}", "steps": j.steps,
             "val": j.validations, "est. wall": _hms(j.estimate_s)} for i, j in enumerate(planned)]
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    total = sum(j.estimate_s for j in planned)
    shared = " ".join(o for o in (planned[0].overrides if planned else []) if o in common)
    lines = [f"every job: {shared or '(defaults)'}", table, "", f"{len(planned)} jobs, estimated {_hms(total)} in total if run one after another "
             "(timed on this machine)"]
    if side_by_side > 1 and len(planned) > 1:
        lines.append(f"launcher=joblib, {side_by_side} jobs at a time in launch order: about "
                     f"{_hms(in_order_makespan([j.estimate_s for j in planned], side_by_side))} (each job then has "
                     f"1/{side_by_side} of the cores, which the timing above, at all of them, does not model)")
    if slurm:
        hours = sum(j.estimate_s * max(1, j.gpus) for j in planned) / 3600
        gpus = sorted({max(1, j.gpus) for j in planned})
        lines.append(f"SLURM: about {hours:.3f} GPU-hours ({'/'.join(map(str, gpus))} GPU(s) per job x its estimate; "
                     "timed on this machine's device: plan on a cluster node for cluster figures)")
    return "\n".join(lines)


def in_order_makespan(durations: Sequence[float], workers: int) -> float:
    """Wall time of ``durations`` run by ``workers`` that each take the next job in order when free (joblib)."""
    free = [0.0] * max(1, workers)
    for d in durations:
        i = min(range(len(free)), key=free.__getitem__)
        free[i] += d
    return max(free)


def _launcher_is(config: DictConfig, cls: str) -> bool:
    """Whether the composed Hydra launcher (``config.hydra.launcher._target_``) is the class named ``cls``."""
    launcher = config.hydra.launcher if "hydra" in config else {}
    return str(launcher.get("_target_", "")).endswith(cls)


def side_by_side_jobs(config: DictConfig) -> int:
    """How many jobs the composed launcher runs at once on this machine (joblib's ``n_jobs``; else 1)."""
    import os

    if not _launcher_is(config, "JoblibLauncher"):
        return 1
    n = int(config.hydra.launcher.get("n_jobs", 1) or 1)
    return (os.cpu_count() or 1) if n == -1 else max(1, n)


def _hms(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def print_plan_and_exit(config: DictConfig) -> None:
    """``sweep.plan=true`` inside ``aio-train -m``: plan the sweep Hydra is about to launch, then exit 0."""
    import hydra

    from aio.tracking.sweep import job_overrides

    task = job_overrides(list(config.hydra.overrides.task))
    params = OmegaConf.to_container(config.hydra.sweeper.params, resolve=True) if config.hydra.sweeper.get("params") else {}
    jobs = expand_grid(params or {}, task)

    def compose(overrides: list[str]) -> DictConfig:
        return hydra.compose(config_name=config.hydra.job.config_name, overrides=overrides, return_hydra_config=True)

    planned = plan_jobs(jobs, compose)
    print(format_plan(planned, slurm=_launcher_is(config, "SlurmLauncher"), side_by_side=side_by_side_jobs(config)))
    sys.exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """``aio-plan <overrides as for aio-train -m>``."""
    from hydra import compose, initialize_config_dir

    from aio.config import register_configs
    from aio.paths import CONF_DIR

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    args = [a for a in args if a not in ("-m", "--multirun")]
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        fixed = [a for a in args if "," not in a.split("=", 1)[-1]]
        base = compose(config_name="train", overrides=fixed, return_hydra_config=True)
        params = OmegaConf.to_container(base.hydra.sweeper.params, resolve=True) if base.hydra.sweeper.get("params") else {}
        jobs = expand_grid(params or {}, args)

        def compose_job(overrides: list[str]) -> DictConfig:
            return compose(config_name="train", overrides=overrides, return_hydra_config=True)

        try:
            planned = plan_jobs(jobs, compose_job, log=lambda m: print(m, file=sys.stderr))
        except (ValueError, FileNotFoundError) as err:
            print(f"aio-plan: error: {err}", file=sys.stderr)
            return 2
        slurm = _launcher_is(base, "SlurmLauncher")
        parallel = side_by_side_jobs(base)
    print(format_plan(planned, slurm=slurm, side_by_side=parallel))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
