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
    from aio.config import check_overrides, register_configs

    register_configs()
    config_dir = str(config_dir or aio.paths.CONF_DIR)
    check_overrides(overrides, config_name=config_name, conf_dir=config_dir, prog="aio-data")
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


def labelled_grid(rows, row_labels, size: int):
    """A PIL image: one row per degradation (its name on the left), pairs of columns headed
    ``degraded`` / ``clean``; cells are ``size`` px centre crops (padded when smaller)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from aio.data.images import to_uint8
    from aio.data.transforms import center_crop, pad_to

    font = ImageFont.load_default()
    gap, head = 4, 16
    label_w = 8 + max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(str(t), font=font)) for t in row_labels)
    n_cols = max(len(r) for r in rows)
    width = label_w + n_cols * (2 * size + gap) + gap
    height = head + len(rows) * (size + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j in range(n_cols):
        x0 = label_w + j * (2 * size + gap)
        draw.text((x0 + 2, 2), "degraded", fill=(0, 0, 0), font=font)
        draw.text((x0 + size + 2, 2), "clean", fill=(0, 0, 0), font=font)
    for i, (r, label) in enumerate(zip(rows, row_labels)):
        y0 = head + i * (size + gap)
        draw.text((4, y0 + size // 2 - 6), str(label), fill=(0, 0, 0), font=font)
        for j, it in enumerate(r):
            x0 = label_w + j * (2 * size + gap)
            for k, key in enumerate(("input", "target")):
                cell = pad_to(center_crop(it[key], size), size)[..., :size, :size]
                canvas.paste(Image.fromarray(np.ascontiguousarray(to_uint8(cell))), (x0 + k * size, y0))
    return canvas


def cmd_preview(cfg, out: str, n: int, split: str) -> int:
    from pathlib import Path

    from aio.data import build_train_dataset, build_val_sets

    rows, labels = [], []
    if split == "val":
        for name, ds in build_val_sets(cfg).items():
            rows.append([ds[i] for i in range(min(n, len(ds)))])
            labels.append(name)
    else:
        ds = build_train_dataset(cfg)
        starts = getattr(ds, "offsets", [0])
        for t in range(len(ds.task_names)):
            base = starts[t] if t < len(starts) else 0
            rows.append([ds[base + i] for i in range(n)])
            labels.append(ds.task_names[t])
    size = min(max(int(it["target"].shape[-1]) for r in rows for it in r), 256)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    labelled_grid(rows, labels, size).save(out, format="PNG")
    print(f"wrote {out}: one row per degradation ({', '.join(labels)}), columns of (degraded, clean) pairs")
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
