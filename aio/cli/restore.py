"""``aio-restore``: restore an image or every image of a folder with a trained checkpoint.

Example::

    aio-restore checkpoint=outputs/runs/.../last.pt input=photos/ output=restored/ [tile=512 tta=x8 task=derain]

Images of any size are restored (tile by tile when larger than ``tile``); grey and RGBA files are read as
:mod:`aio.data.images` documents (grey replicated to RGB, alpha dropped). Output names mirror the input
names (``ext=png`` to change the extension).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from aio.config import register_configs
from aio.paths import CONF_DIR

register_configs()


def _task_index(task, ckpt_cfg) -> int | None:
    if task is None or task == "":
        return None
    if isinstance(task, int) or str(task).isdigit():
        return int(task)
    names = list((ckpt_cfg.get("dataset") or {}).get("tasks") or [])
    if str(task) not in names:
        raise ValueError(f"task={task!r} is not a task of the checkpoint; choose from {names} or an index")
    return names.index(str(task))


def run_restore(cfg: DictConfig) -> list:
    from aio.eval.runtime import amp_dtype, load_model_and_state, pick_device
    from aio.eval import restore_path

    for key in ("checkpoint", "input", "output"):
        if cfg.get(key) in (None, "", "???"):
            raise ValueError(f"give {key}=...  (aio-restore checkpoint=<file|run dir> input=<file|folder> output=<folder>)")
    device = pick_device(cfg.get("device", "auto"))
    model, ckpt_cfg, _ = load_model_and_state(str(cfg.checkpoint), bool(cfg.get("use_ema", True)), device)
    written = restore_path(
        model, cfg.input, cfg.output, device=device, tile=cfg.get("tile") or None,
        tile_overlap=int(cfg.get("tile_overlap", 32)), tta=cfg.get("tta") or None,
        task=_task_index(cfg.get("task"), ckpt_cfg), amp_dtype=amp_dtype(cfg.get("amp"), device),
        ext=cfg.get("ext") or None, progress=bool(cfg.get("progress", True)),
    )
    print(f"[aio] restored {len(written)} image(s) into {cfg.output}")
    return written


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="restore")
def main(cfg: DictConfig) -> None:
    from aio.data.images import ImageReadError
    from aio.train.checkpoint import CheckpointError

    try:
        run_restore(cfg)
    except (ValueError, FileNotFoundError, CheckpointError, ImageReadError) as err:
        print(f"aio-restore: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
