"""``python -m aio.cli.abair``: ABAIR's three training phases in one command, adding a degradation, parts.

Examples::

    python -m aio.cli.abair pipeline --out outputs/abair scale=tiny            # phases I, II, III in a row
    python -m aio.cli.abair add --base outputs/abair/phase3 --task dejpeg_q20 \\
        --recipe '[{type: jpeg, quality: 20.0}]' --out outputs/abair_jpeg scale=tiny
    python -m aio.cli.abair add --base outputs/abair/phase3 --task bitdepth dejpeg_q20 desnow \\
        --out outputs/abair_unseen '++dataset.recipes.dejpeg_q20=[{type: jpeg, quality: 20.0}]'   # Table 4's Ours*
    python -m aio.cli.abair params --ranks 4 8 16                               # adapter parameter counts
    python -m aio.cli.abair export outputs/abair/phase3 outputs/abair/parts.pt  # backbone/adapters/estimator

Every phase is an ordinary ``aio-train`` run (``strategy=abair_pretrain|abair_adapters|abair_estimator``,
each in ``<out>/phase<k>``, each its own MLflow run) started from the previous phase's checkpoint through
``model.init_from``; trailing ``key=value`` arguments are Hydra overrides applied to every phase, and
``--phase1/--phase2/--phase3 "k=v ..."`` add overrides to one phase. ``add`` trains new adapters (one or several;
the backbone and the other adapters frozen, each on its new task's data only) and then retrains the estimator
over old + new tasks.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from aio.config import register_configs


def compose(overrides: list[str], config_name: str = "train"):
    """The ``aio-train`` (or ``aio-eval``: ``config_name="eval"``) config for ``overrides``, without a Hydra
    run folder (the caller names it)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from aio.paths import CONF_DIR

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def run_phase(overrides: list[str], run_dir: Path) -> Path:
    """Train one phase into ``run_dir``; returns its checkpoint (resumes when one is already there)."""
    from aio.train.checkpoint import CHECKPOINT_NAME
    from aio.train.trainer import train

    cfg = compose(overrides)
    print(f"[abair] {run_dir.name}: {' '.join(overrides)}")
    train(cfg, run_dir, tracker_tags={"aio.overrides": " ".join(overrides), "aio.strategy": "abair",
                                      "aio.phase": run_dir.name})
    return run_dir / "checkpoints" / CHECKPOINT_NAME


def pipeline(out: Path, common: list[str], per_phase: dict[int, list[str]]) -> dict[str, Path]:
    """Phases I -> II -> III; returns ``{"phase1": ckpt, "phase2": ckpt, "phase3": ckpt}``."""
    p1 = run_phase(["strategy=abair_pretrain", *common, *per_phase.get(1, [])], out / "phase1")
    p2 = run_phase(["strategy=abair_adapters", f"model.init_from={p1}", *common, *per_phase.get(2, [])],
                   out / "phase2")
    p3 = run_phase(["strategy=abair_estimator", f"model.init_from={p2}", *common, *per_phase.get(3, [])],
                   out / "phase3")
    return {"phase1": p1, "phase2": p2, "phase3": p3}


def add_degradation(base: str | Path, task: str | Sequence[str], out: Path, common: list[str],
                    recipe: str | None = None, per_phase: dict[int, list[str]] | None = None) -> dict[str, Path]:
    """Train new adapters ``task`` (one name or several, each adapter on its own task's images: oracle
    routing) on the frozen backbone of ``base`` (an ABAIR run / checkpoint), then retrain the estimator over
    the old adapters + the new ones; returns both checkpoints. ``recipe`` (YAML) is the degradation of a single
    new task when it is not built in; for several, pass ``++dataset.recipes.<task>=...`` in ``common``."""
    from aio.train.checkpoint import load_checkpoint, resolve_checkpoint_path

    per_phase = per_phase or {}
    tasks = [task] if isinstance(task, str) else [str(t) for t in task]
    if recipe and len(tasks) != 1:
        raise ValueError(f"--recipe is the recipe of one new task, not of {tasks}; give each as "
                         "++dataset.recipes.<task>=[...] instead")
    base_ckpt = resolve_checkpoint_path(base)
    base_model = load_checkpoint(base_ckpt)["config"]["model"]
    old = list(base_model["adapters"])
    taken = [t for t in tasks if t in old]
    if taken or len(set(tasks)) != len(tasks):
        raise ValueError(f"--task {' '.join(tasks)}: {taken or tasks} already has an adapter or is given twice "
                         f"(adapters: {old}); pick new degradations")
    adapters = "[" + ",".join(old + tasks) + "]"
    new_list = "[" + ",".join(tasks) + "]"
    keep = [f"model.seg_classes=[{','.join(base_model['seg_classes'])}]"]  # the phase-I head, unchanged
    keep += [f"++dataset.recipes.{tasks[0]}={recipe}"] if recipe else []
    only = "[" + ",".join(f"*.adapters.{t}.*" for t in tasks) + "]"
    new = run_phase(["strategy=abair_adapters", f"model.init_from={base_ckpt}", f"dataset.tasks={new_list}",
                     f"model.adapters={adapters}", f"model.train_adapters={new_list}",
                     f"strategy.phases.0.train_only={only}", *keep, *common,
                     *per_phase.get(2, [])], out / "adapter")
    est = run_phase(["strategy=abair_estimator", f"model.init_from={new}", f"dataset.tasks={adapters}", *keep,
                     *common, *per_phase.get(3, [])], out / "estimator")
    return {"adapter": new, "estimator": est}


def adapter_counts(ranks: list[int], kinds: list[str], backbone_overrides: list[str]) -> list[dict]:
    """Adapter parameters (all five adapters, and one) per kind and rank for the composed backbone."""
    from aio.models import model_from_config

    rows = []
    for kind in kinds:
        for rank in ranks:
            cfg = compose(["backbone=abair", f"model.adapter.kind={kind}", f"model.adapter.rank={rank}",
                           "dataset=synthetic_aio5", *backbone_overrides])
            model = model_from_config(cfg.model)
            total = model.adapter_parameter_count()
            rows.append({"kind": kind, "rank": rank, "adapters": len(model.adapter_names),
                         "params_m": total / 1e6, "per_adapter_m": total / len(model.adapter_names) / 1e6,
                         "backbone_m": sum(p.numel() for n, p in model.named_parameters()
                                           if n.startswith("backbone.") and ".adapters." not in n) / 1e6})
    return rows


def _split(text: str | None) -> list[str]:
    return shlex.split(text) if text else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aio.cli.abair", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pipeline", help="phases I, II, III in a row")
    p.add_argument("--out", required=True, type=Path)
    for k in (1, 2, 3):
        p.add_argument(f"--phase{k}", default=None, help=f"extra overrides of phase {k} only")
    p.add_argument("overrides", nargs="*")
    a = sub.add_parser("add", help="a new adapter + the estimator retrained; the backbone stays frozen")
    a.add_argument("--base", required=True, help="the phase-III (or II) run folder / checkpoint")
    a.add_argument("--task", required=True, nargs="+",
                   help="the new degradations' task names (e.g. dejpeg_q20, or: bitdepth dejpeg_q20 desnow)")
    a.add_argument("--recipe", default=None, help="the recipe of a single new task when not built in (YAML "
                   "list); for several tasks pass ++dataset.recipes.<task>=[...] overrides")
    a.add_argument("--out", required=True, type=Path)
    a.add_argument("--phase2", default=None, help="extra overrides of the adapter run")
    a.add_argument("--phase3", default=None, help="extra overrides of the estimator run")
    a.add_argument("overrides", nargs="*")
    c = sub.add_parser("params", help="adapter parameter counts per kind and rank")
    c.add_argument("--ranks", type=int, nargs="+", default=[4, 8, 16])
    c.add_argument("--kinds", nargs="+", default=["lora", "vera", "conv_lora"])
    c.add_argument("overrides", nargs="*", help="e.g. model.size=paper (the default)")
    e = sub.add_parser("export", help="split a checkpoint into a parts file (backbone, head, adapters, estimator)")
    e.add_argument("checkpoint")
    e.add_argument("path")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "pipeline":
            per = {k: _split(getattr(args, f"phase{k}")) for k in (1, 2, 3)}
            for name, ckpt in pipeline(args.out, args.overrides, per).items():
                print(f"[abair] {name}: {ckpt}")
        elif args.cmd == "add":
            per = {2: _split(args.phase2), 3: _split(args.phase3)}
            for name, ckpt in add_degradation(args.base, args.task, args.out, args.overrides, args.recipe,
                                              per).items():
                print(f"[abair] {name}: {ckpt}")
        elif args.cmd == "params":
            import pandas as pd

            print(pd.DataFrame(adapter_counts(args.ranks, args.kinds, args.overrides)).to_string(index=False))
        else:
            from aio.models.abair import export_parts

            print(f"[abair] wrote {export_parts(args.checkpoint, args.path)}")
    except (ValueError, FileNotFoundError) as err:
        print(f"abair: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
