"""Training as a list of phases: the ``strategy`` config node's schema and its resolution into a schedule.

A strategy (``conf/strategy/*.yaml``) is ``phases: [...]``; every field of a phase is optional and falls back
to the run's ``trainer`` / ``dataset`` / ``loss`` / ``augment`` nodes (so the one empty phase of ``mixed`` is
exactly the single-phase run). :func:`resolve_schedule` turns the node into :class:`Phase` objects with every
value filled in and the phase's global step range; the trainer then runs ``for phase in schedule:
enter(phase); train steps``. The YAML fields are documented in ``docs/design.md`` ("Phases").

Length rule: ``steps`` wins; otherwise ``epochs`` is converted with
``steps = ceil(epochs * N / (batch_size * world_size * grad_accum))`` where ``N`` is the number of training
items of the phase's tasks (``len`` of the training set restricted to them, ``dataset.repeat`` included)
and ``batch_size`` the phase's; a phase with neither gets ``trainer.max_steps``. ``warmup_epochs`` is
converted the same way. With ``strategy.fit_steps = S`` (the ``scale=tiny``/``small`` and ``debug=tiny``
forms) the phase lengths are rescaled proportionally so that they sum to ``S`` (each at least 1 step, warm-ups
scaled alike): every strategy keeps its proportions and finishes in minutes on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional

SCHEDULES = ("restart", "continue", "constant")


@dataclass
class PhaseConfig:
    """One phase as written in YAML (every field optional; ``null`` = the run's value)."""

    name: Optional[str] = None  # default "phase<k>"; used in metric names (val:<name>/...)
    steps: Optional[int] = None  # optimizer steps of this phase
    epochs: Optional[float] = None  # or: passes over the phase's training items (see the length rule)
    tasks: Optional[List[str]] = None  # train on these tasks of dataset.tasks only, names or globs (null: all)
    task_weights: Optional[Dict[str, float]] = None  # sampling probability per task (null: per item)
    lr: Optional[float] = None  # peak learning rate (null: trainer.lr x lr_scale)
    lr_scale: float = 1.0  # multiplies trainer.lr when lr is null (fine-tuning at 50%: 0.5)
    min_lr: Optional[float] = None
    warmup_steps: Optional[int] = None
    warmup_epochs: Optional[float] = None
    schedule: str = "restart"  # restart: new optimizer + warm-up + cosine | continue | constant
    cycles: int = 1  # cosine restarts inside the phase (equal periods; BasicSR's CosineAnnealingRestartLR)
    freeze: List[str] = field(default_factory=list)  # fnmatch globs over parameter names
    train_only: List[str] = field(default_factory=list)  # if set: only parameters matching these train
    frozen_bn_eval: bool = True  # BatchNorm layers whose parameters are all frozen keep their statistics
    loss: Optional[Any] = None  # a loss node like conf/loss/*.yaml (null: the run's loss)
    extra_losses: List[Any] = field(default_factory=list)  # loss nodes added to the phase's loss
    augment: Optional[Any] = None  # an augment preset name (conf/augment/<name>.yaml) or node
    patch_size: Optional[int] = None
    batch_size: Optional[int] = None
    ema_decay: Optional[float] = None


@dataclass
class StrategyConfig:
    """The ``strategy`` node."""

    name: str = "mixed"
    source: str = ""  # where the schedule comes from (paper, reference config)
    phases: List[PhaseConfig] = field(default_factory=lambda: [PhaseConfig()])
    fit_steps: Optional[int] = None  # rescale phase lengths to sum to this (tiny/small scales)
    # sequential strategies: tasks added one at a time in this order. The phases are then generated: stage k
    # trains on order[:k+1], from phases[0] (every stage but the last) and phases[-1] (the last stage) as
    # templates; stage names are "<k>_<task added>" (1-based).
    order: Optional[List[str]] = None
    start: Optional[str] = None  # first phase to run (e.g. skip pre-training when fine-tuning a checkpoint)
    until: Optional[str] = None  # last phase to run (sweeps over "how far")


@dataclass
class Phase:
    """A resolved phase: every value set, plus where it sits on the run's step axis."""

    index: int
    name: str
    steps: int
    start_step: int  # global step at which the phase begins
    tasks: list[str]
    task_weights: dict[str, float] | None
    lr: float
    min_lr: float
    warmup_steps: int
    schedule: str
    cycles: int
    freeze: list[str]
    train_only: list[str]
    frozen_bn_eval: bool
    loss: Any
    extra_losses: list[Any]
    augment: Any
    patch_size: int
    batch_size: int
    ema_decay: float | None
    # the LR segment this phase belongs to (a "continue" phase extends the previous phase's segment)
    segment_start: int = 0
    segment_steps: int = 0

    @property
    def end_step(self) -> int:
        return self.start_step + self.steps


def to_plain(node: Any) -> Any:
    """A config node as plain Python containers (other values unchanged)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _length(p: dict, steps_key: str, epochs_key: str, default: int, n_items: int, images_per_step: int) -> int:
    """``p[steps_key]``, else ``p[epochs_key]`` converted to steps (the module's length rule), else ``default``."""
    if p.get(steps_key) is not None:
        return int(p[steps_key])
    if p.get(epochs_key) is not None:
        return _epochs_to_steps(p[epochs_key], n_items, images_per_step)
    return default


def _epochs_to_steps(epochs: float, n_items: int, images_per_step: int) -> int:
    return max(1, math.ceil(float(epochs) * n_items / images_per_step))


def resolve_schedule(cfg, task_items: dict[str, int], world_size: int = 1) -> list[Phase]:
    """The phases of ``cfg.strategy`` (default: one phase) with every value filled in.

    ``task_items`` maps each task of ``dataset.tasks`` to its number of training items (after repeat).
    Raises ``ValueError`` with a one-line message for a bad phase.
    """
    t, d = cfg.trainer, cfg.dataset
    strategy = cfg.get("strategy") or {"phases": [{}]}
    raw_phases = [to_plain(p) or {} for p in (strategy.get("phases") or [{}])]
    if strategy.get("order"):
        raw_phases = _sequential_phases(list(strategy.get("order")), raw_phases)
    names = [p.get("name") or f"phase{k}" for k, p in enumerate(raw_phases)]
    if len(set(names)) != len(names):
        raise ValueError(f"strategy.phases: phase names {names} must be unique")
    all_tasks = list(task_items)
    default_augment = to_plain(cfg.get("augment")) if cfg.get("augment") is not None else None
    phases: list[Phase] = []
    for k, (p, name) in enumerate(zip(raw_phases, names)):
        where = f"strategy.phases[{k}] ({name})"
        tasks = _expand_tasks(p.get("tasks"), all_tasks, where)
        weights = p.get("task_weights")
        unknown = [x for x in tasks + list(weights or {}) if x not in task_items]
        if unknown:
            raise ValueError(f"{where}: task(s) {unknown} are not in dataset.tasks={all_tasks}")
        if weights is not None:
            tasks = [x for x in tasks if x in weights] if p.get("tasks") else list(weights)
            if any(float(w) < 0 for w in weights.values()) or sum(float(weights[x]) for x in tasks) <= 0:
                raise ValueError(f"{where}: task_weights={weights} must be >= 0 with a positive sum")
            empty = [x for x in tasks if float(weights[x]) > 0 and task_items[x] == 0]
            if empty:
                raise ValueError(f"{where}: task(s) {empty} have no training items")
            weights = {x: float(weights[x]) for x in tasks}
        batch = int(p.get("batch_size") or d.batch_size)
        patch = int(p.get("patch_size") or d.patch_size)
        if batch < 1 or patch < 1:
            raise ValueError(f"{where}: batch_size={batch} and patch_size={patch} must be >= 1")
        images_per_step = batch * world_size * int(t.grad_accum)
        n_items = sum(task_items[x] for x in tasks)
        steps = _length(p, "steps", "epochs", int(t.max_steps), n_items, images_per_step)
        if steps < 1:
            raise ValueError(f"{where}: steps={steps} must be >= 1")
        warmup = _length(p, "warmup_steps", "warmup_epochs", int(t.warmup_steps), n_items, images_per_step)
        schedule = p.get("schedule") or "restart"
        if schedule not in SCHEDULES:
            raise ValueError(f"{where}: schedule={schedule!r} is not one of {', '.join(SCHEDULES)}")
        if schedule == "continue":
            if k == 0:
                raise ValueError(f"{where}: the first phase cannot 'continue'; use schedule=restart")
            clash = [key for key in ("lr", "min_lr", "warmup_steps", "warmup_epochs", "freeze", "train_only")
                     if p.get(key) not in (None, [])] + (["lr_scale"] if p.get("lr_scale", 1.0) != 1.0 else [])
            if clash:
                raise ValueError(f"{where}: a 'continue' phase keeps the previous optimizer; drop {clash} "
                                 "or use schedule=restart")
        lr = float(p["lr"]) if p.get("lr") is not None else float(t.lr) * float(p.get("lr_scale", 1.0))
        if lr <= 0:
            raise ValueError(f"{where}: lr={lr} must be > 0")
        augment = p.get("augment", None)
        phases.append(Phase(
            index=k, name=name, steps=steps, start_step=0, tasks=tasks, task_weights=weights, lr=lr,
            min_lr=float(p["min_lr"]) if p.get("min_lr") is not None else float(t.min_lr),
            warmup_steps=warmup, schedule=schedule, cycles=int(p.get("cycles") or 1), freeze=list(p.get("freeze") or []),
            train_only=list(p.get("train_only") or []), frozen_bn_eval=bool(p.get("frozen_bn_eval", True)),
            loss=to_plain(p.get("loss")) if p.get("loss") is not None else to_plain(cfg.loss),
            extra_losses=list(p.get("extra_losses") or []),
            augment=load_augment(augment) if augment is not None else default_augment,
            patch_size=patch, batch_size=batch, ema_decay=p.get("ema_decay"),
        ))
    phases = _select(phases, strategy.get("start"), strategy.get("until"))
    fit = strategy.get("fit_steps")
    if fit is not None:
        phases = _fit_lengths(phases, int(fit))
    return _place(phases)


def _expand_tasks(patterns: list[str] | None, all_tasks: list[str], where: str) -> list[str]:
    """A phase's ``tasks``: names or fnmatch globs (``denoise*``) over ``dataset.tasks``, in preset order."""
    from fnmatch import fnmatchcase

    if not patterns:
        return list(all_tasks)
    dead = [pat for pat in patterns if not any(fnmatchcase(x, pat) for x in all_tasks)]
    if dead:
        raise ValueError(f"{where}: task(s) {dead} are not in dataset.tasks={all_tasks}")
    return [x for x in all_tasks if any(fnmatchcase(x, pat) for pat in patterns)]


def _sequential_phases(order: list[str], templates: list[dict]) -> list[dict]:
    """Stage k of a sequential strategy trains on ``order[:k+1]`` (see ``StrategyConfig.order``)."""
    if len(set(order)) != len(order):
        raise ValueError(f"strategy.order={order} names a task twice")
    stages = []
    for k, task in enumerate(order):
        template = templates[-1] if k == len(order) - 1 else templates[0]
        stages.append({**template, "name": f"{k + 1}_{task}", "tasks": order[:k + 1]})
    return stages


def _select(phases: list[Phase], start: str | None, until: str | None) -> list[Phase]:
    names = [p.name for p in phases]
    for key, value in (("start", start), ("until", until)):
        if value is not None and value not in names:
            raise ValueError(f"strategy.{key}={value!r} is not a phase name; phases: {names}")
    lo = names.index(start) if start is not None else 0
    hi = names.index(until) + 1 if until is not None else len(phases)
    if lo >= hi:
        raise ValueError(f"strategy.start={start!r} comes after strategy.until={until!r}")
    chosen = phases[lo:hi]
    if chosen[0].schedule == "continue":
        chosen[0] = replace(chosen[0], schedule="restart")
    return [replace(p, index=i) for i, p in enumerate(chosen)]


def _fit_lengths(phases: list[Phase], total: int) -> list[Phase]:
    """Rescale the phase lengths (and warm-ups) proportionally so they sum to ``total``."""
    if total < len(phases):
        raise ValueError(f"strategy.fit_steps={total} must be >= the number of phases ({len(phases)})")
    declared = sum(p.steps for p in phases)
    if declared == total:
        return phases
    factor = total / declared
    steps = [max(1, p.steps * total // declared) for p in phases]  # integers: no 29.999... floored to 29
    steps[-1] = max(1, total - sum(steps[:-1]))
    out = []
    for p, s in zip(phases, steps):
        warmup = min(int(round(p.warmup_steps * factor)), max(0, s - 1))
        out.append(replace(p, steps=s, warmup_steps=warmup, cycles=max(1, min(p.cycles, s - warmup))))
    return out


def _place(phases: list[Phase]) -> list[Phase]:
    """Global step ranges and LR segments; each restart phase's warm-up must fit inside its segment."""
    out: list[Phase] = []
    start = 0
    for p in phases:
        p = replace(p, start_step=start)
        if p.schedule == "continue":
            head = out[-1]
            p = replace(p, lr=head.lr, min_lr=head.min_lr, warmup_steps=head.warmup_steps, freeze=head.freeze,
                        train_only=head.train_only, segment_start=head.segment_start)
        else:
            p = replace(p, segment_start=start)
        out.append(p)
        start += p.steps
    for i, p in enumerate(out):
        seg_end = max(q.end_step for q in out if q.segment_start == p.segment_start)
        out[i] = replace(p, segment_steps=seg_end - p.segment_start)
    for p in out:
        if p.cycles < 1 or (p.segment_steps - p.warmup_steps) < p.cycles:
            raise ValueError(f"strategy phase {p.name}: cycles={p.cycles} must be >= 1 and fit its steps")
        if p.schedule != "constant" and not 0 <= p.warmup_steps < p.segment_steps:
            where = f"strategy phase {p.name}" if len(out) > 1 else "trainer"
            raise ValueError(f"{where}: warmup_steps={p.warmup_steps} must be in [0, {p.segment_steps}) "
                             f"(the phase's length{'' if len(out) > 1 else ', trainer.max_steps'})")
    return out


def load_augment(spec: Any) -> dict:
    """An augment node: a preset name (``conf/augment/<name>.yaml``) or a mapping, returned as a dict."""
    spec = to_plain(spec)
    if isinstance(spec, str):
        from omegaconf import OmegaConf

        from aio.paths import CONF_DIR

        path = CONF_DIR / "augment" / f"{spec}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (CONF_DIR / "augment").glob("*.yaml"))
            raise ValueError(f"augment preset {spec!r} not found; known: {', '.join(known)}")
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return dict(spec)


def trainable_names(names: list[str], freeze: list[str], train_only: list[str]) -> list[str]:
    """The parameter names that train under ``freeze`` / ``train_only`` (fnmatch globs)."""
    from fnmatch import fnmatchcase

    def hit(name: str, patterns: list[str]) -> bool:
        return any(fnmatchcase(name, pat) for pat in patterns)

    kept = [n for n in names if (not train_only or hit(n, train_only)) and not hit(n, freeze)]
    for key, patterns in (("train_only", train_only), ("freeze", freeze)):
        dead = [pat for pat in patterns if not any(fnmatchcase(n, pat) for n in names)]
        if dead and len(dead) == len(patterns):
            raise ValueError(f"phase {key} pattern(s) {dead} match no parameter; names look like {names[:3]}")
        if dead:  # a strategy may name modules of several backbones (PromptIR's prompt blocks)
            import logging

            logging.getLogger("aio.train").info(f"[aio] phase {key} pattern(s) {dead} match no parameter")
    if not kept:
        raise ValueError(f"phase freeze={freeze} / train_only={train_only} leave no parameter to train")
    return kept
