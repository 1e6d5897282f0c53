"""``aio-model``: inspect networks built from the Hydra config.

    aio-model summary backbone=restormer gate=elementwise lora_ratio=r05_08 model.size=paper [--size 512]
    aio-model summary experiment=dfrg
    aio-model list

``summary`` composes ``conf/train.yaml`` with the given overrides, builds ``cfg.model`` and prints its
parameter count and forward GFLOPs at 256x256 (and at ``--size``). FLOPs are counted on a meta-device copy
(no memory, no compute); one multiply-add counts as 2 FLOPs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def compose_model_config(overrides: Sequence[str]):
    """The ``model`` node of the ``train`` config composed with ``overrides`` (Hydra compose API)."""
    from hydra import compose, initialize_config_dir

    import aio.paths
    from aio.config import check_overrides, register_configs

    check_overrides(overrides, prog="aio-model summary")  # unknown options of optional groups, misspelt keys
    register_configs()
    with initialize_config_dir(config_dir=str(aio.paths.CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    return cfg.model


def describe(cfg_model) -> str:
    """One line naming the model and its switches, e.g. ``restormer[paper] gate=elementwise ffn/attn=0.5/0.8``."""
    parts = [f"{cfg_model.name}[{cfg_model.get('size')}]"]
    if cfg_model.get("gate", "none") != "none":
        parts.append(f"gate={cfg_model.gate}")
    if (cfg_model.get("ffn_ratio", 1.0), cfg_model.get("attn_ratio", 1.0)) != (1.0, 1.0):
        parts.append(f"ffn/attn={cfg_model.ffn_ratio}/{cfg_model.attn_ratio}")
    dfrg = cfg_model.get("dfrg")
    if dfrg and dfrg.get("enabled", False):
        parts.append(f"dfrg(K={dfrg.get('experts', 4)}, aux={dfrg.get('aux_weight', 0.0)})")
    for flag in ("spatial_lora", "csff"):
        if cfg_model.get(flag, False):
            parts.append(flag)
    return " ".join(parts)


def summary(overrides: Sequence[str], sizes: Sequence[int] = (256,)) -> dict:
    """Build the configured model; returns ``{"name", "params", "gflops": {size: value}}`` and prints it."""
    from aio.models import count_parameters, forward_gflops, model_from_config

    cfg_model = compose_model_config(overrides)
    model = model_from_config(cfg_model)
    params = count_parameters(model)
    gflops = {s: forward_gflops(model, s) for s in sizes}
    name = describe(cfg_model)
    print(f"model:   {name}")
    print(f"class:   {type(model).__name__}")
    print(f"params:  {params / 1e6:.3f} M ({params:,})")
    for s, g in gflops.items():
        print(f"GFLOPs:  {g:.2f} (forward, 1x3x{s}x{s})")
    return {"name": name, "params": params, "gflops": gflops}


def list_text() -> str:
    """Every ``backbone=`` option of ``conf/backbone`` with the registered network it builds, then any
    registered network that no backbone file selects (usable through ``model.name=``)."""
    from omegaconf import OmegaConf

    import aio.paths
    from aio.models import list_models

    lines, used = ["backbone (conf/backbone)   network   note"], set()
    for path in sorted((aio.paths.CONF_DIR / "backbone").glob("*.yaml")):
        node = OmegaConf.load(path)
        name = str(node.get("name"))
        used.add(name)
        note = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines()
                     if ln.startswith("#") and "@package" not in ln), "")
        note = note.split(": ")[0].split(". ")[0]
        lines.append(f"{path.stem:26s} {name:9s} {note}")
    others = [m for m in list_models() if m not in used]
    if others:
        lines.append("registered networks without a backbone file (model.name=...): " + ", ".join(others))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aio-model", description="Inspect aio networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_sum = sub.add_parser("summary", help="parameters and forward GFLOPs of the configured model")
    p_sum.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. backbone=nafnet model.size=small")
    p_sum.add_argument("--size", type=int, action="append", default=[], help="also count GFLOPs at SIZExSIZE")
    sub.add_parser("list", help="registered model names")
    args, extra = parser.parse_known_args(argv)  # overrides may come after --size too
    unknown = [e for e in extra if e.startswith("-") or args.command != "summary"]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "list":
        print(list_text())
        return 0
    sizes = [256] + [s for s in args.size if s != 256]
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        summary(list(args.overrides) + extra, sizes)
    except (ValueError, HydraException, OmegaConfBaseException) as e:  # configuration errors, no traceback
        print(f"aio-model: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
