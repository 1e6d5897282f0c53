"""``aio-restore``: restore an image or every image of a folder with a trained checkpoint.

Example::

    aio-restore checkpoint=outputs/runs/.../last.pt input=photos/ output=restored/ [tile=512 tta=x8 task=derain]

Images of any size are restored (tile by tile when larger than ``tile``) and written in the input's mode by
the rules of :mod:`aio.data.images`: grey in -> grey out (BT.601 luma of the restored RGB), alpha carried
through, 16-bit written as 16-bit; a file whose mode cannot be kept gets one line saying what was converted.
Unreadable files are skipped with one line each and counted in the summary (``restored 3, skipped 1``).
Output names mirror the input names (``ext=png`` to change the extension). Nothing is written under
``outputs/`` (Hydra's run folder is the current directory, without ``.hydra/`` or a log file).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from aio.config import check_command_line, register_configs
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


def run_restore(cfg: DictConfig):
    from aio.eval.runtime import amp_dtype, load_model_and_state, pick_device, show_progress
    from aio.train.host_memory import apply_cpu_malloc
    from aio.eval import restore_path

    for key in ("checkpoint", "input", "output"):
        if cfg.get(key) in (None, "", "???"):
            raise ValueError(f"give {key}=...  (aio-restore checkpoint=<file|run dir> input=<file|folder> output=<folder>)")
    device = pick_device(cfg.get("device", "auto"))
    apply_cpu_malloc(cfg.get("cpu_malloc", "auto"), device, key="cpu_malloc")
    model, ckpt_cfg, _ = load_model_and_state(str(cfg.checkpoint), bool(cfg.get("use_ema", True)), device)
    report = restore_path(
        model, cfg.input, cfg.output, device=device, tile=cfg.get("tile") or None,
        tile_overlap=int(cfg.get("tile_overlap", 32)), tta=cfg.get("tta") or None,
        task=_task_index(cfg.get("task"), ckpt_cfg), amp_dtype=amp_dtype(cfg.get("amp"), device),
        ext=cfg.get("ext") or None, progress=show_progress(cfg.get("progress", True)),
    )
    print(f"[aio] {report.summary()} into {cfg.output}")
    return report


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="restore")
def hydra_main(cfg: DictConfig) -> None:
    from aio.data.images import ImageReadError
    from aio.train.checkpoint import CheckpointError

    try:
        run_restore(cfg)
    except (ValueError, FileNotFoundError, CheckpointError, ImageReadError) as err:
        print(f"aio-restore: error: {err}", file=sys.stderr)
        sys.exit(1)


def main():
    """Console entry point: command-line mistakes Hydra lets through are refused before composing."""
    check_command_line("aio-restore", sys.argv[1:], config_name="restore")
    return hydra_main()


if __name__ == "__main__":
    main()
