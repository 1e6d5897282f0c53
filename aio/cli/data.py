"""``aio-data``: check a dataset's folder layout, or preview its degradations.

    aio-data check   dataset=aio3 dataset.root=/data/aio [--quick]
    aio-data preview dataset=synthetic_cdd11 out=grid.png [n=4] [split=train|val]

The config is composed like ``aio-train`` does (primary config ``train``), so every dataset override
works the same. ``check`` prints counts per split and task and every problem with its path; it exits
with 1 when anything required is broken (2 for a usage error).
"""

from __future__ import annotations

import argparse
import sys


def compose_dataset(overrides, config_dir=None, config_name: str = "train"):
    """Compose the primary config and return its ``dataset`` node."""
    from hydra import compose, initialize_config_dir

    import aio.paths

    try:
        from aio.config import register_configs
    except ImportError:  # pragma: no cover - the foundation is not installed
        register_configs = None
    if register_configs is not None:
        register_configs()
    else:  # pragma: no cover
        from hydra.core.config_store import ConfigStore

        from aio.data.config import DatasetConfig

        ConfigStore.instance().store(group="dataset", name="base_dataset", node=DatasetConfig)
    config_dir = str(config_dir or aio.paths.CONF_DIR)
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    return cfg.dataset


def _split_args(items):
    hydra_overrides, local = [], {}
    for it in items:
        key = it.split("=", 1)[0]
        if "=" in it and key in ("out", "n", "split") :
            local[key] = it.split("=", 1)[1]
        else:
            hydra_overrides.append(it)
    return hydra_overrides, local


def cmd_check(cfg, quick: bool) -> int:
    from aio.data import check_dataset

    report = check_dataset(cfg, verify=not quick)
    print(report.render())
    return 0 if report.ok else 1


def cmd_preview(cfg, out: str, n: int, split: str) -> int:
    import torch

    from aio.data import build_train_dataset, build_val_sets
    from aio.data.images import write_image
    from aio.data.transforms import center_crop, pad_to

    rows = []
    if split == "val":
        for name, ds in build_val_sets(cfg).items():
            rows.append([ds[i] for i in range(min(n, len(ds)))])
    else:
        ds = build_train_dataset(cfg)
        starts = getattr(ds, "offsets", [0])
        for t in range(len(ds.task_names)):
            base = starts[t] if t < len(starts) else 0
            rows.append([ds[base + i] for i in range(n)])
    size = max(int(it["target"].shape[-1]) for r in rows for it in r)
    size = min(size, 256)

    def tile(x):
        return pad_to(center_crop(x, size), size)[..., :size, :size]

    lines = []
    for r in rows:
        cells = []
        for it in r:
            cells += [tile(it["input"]), tile(it["target"]), torch.ones(3, size, 4)]
        lines.append(torch.cat(cells, dim=2))
        lines.append(torch.ones(3, 4, lines[-1].shape[-1]))
    width = max(line.shape[-1] for line in lines)
    grid = torch.cat([torch.nn.functional.pad(line, (0, width - line.shape[-1]), value=1.0) for line in lines], 1)
    write_image(out, grid)
    names = [r[0]["name"].split("/")[0] if split != "val" else list(build_val_sets(cfg))[i] for i, r in enumerate(rows)]
    print(f"wrote {out}: one row per task ({', '.join(names)}), pairs of (degraded, clean)")
    return 0


def main(argv=None, config_dir=None, config_name: str = "train") -> int:
    parser = argparse.ArgumentParser(prog="aio-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="check the dataset's folders and files")
    p_check.add_argument("--quick", action="store_true", help="list and pair files without opening them")
    p_check.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=aio3 dataset.root=/data")
    p_prev = sub.add_parser("preview", help="write a PNG grid of degraded/clean pairs per task")
    p_prev.add_argument("overrides", nargs="*", help="Hydra overrides plus out=grid.png n=4 split=train|val")
    args = parser.parse_args(argv)
    overrides, local = _split_args(args.overrides)
    try:
        cfg = compose_dataset(overrides, config_dir=config_dir, config_name=config_name)
    except Exception as e:  # Hydra's errors are long; show the first line
        print(f"aio-data: cannot compose the config: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    if args.command == "check":
        return cmd_check(cfg, args.quick)
    try:
        return cmd_preview(cfg, local.get("out", "preview.png"), int(local.get("n", 4)), local.get("split", "train"))
    except (ValueError, OSError) as e:
        print(f"aio-data: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
