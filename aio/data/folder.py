"""A generic paired-folder dataset (``dataset=folder``): any test or training set a user has on disk.

``dataset.input`` holds the degraded images, ``dataset.target`` the clean ones; they are paired by file
stem (extensions may differ) with the layout checker's rules (:func:`aio.data.layouts.list_pairs`): an
input without a target is an error (a warning that skips it with ``dataset.skip_bad=true``), a target
without an input a warning, sizes must match. ``dataset.task`` names the degradation the pairs show; it is
the task label of every item (null: the first of ``dataset.tasks``; a task outside ``dataset.tasks``
becomes the only task). The single evaluation set is called ``folder``; its metric protocol is
``dataset.test_sets.folder.{crop_border,test_y_channel}`` (RGB, no border crop by default).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf, open_dict

from .layouts import Listing, PairedTrainDataset, Problem, TestSet, list_pairs

SET_NAME = "folder"


def _folder(cfg, key: str) -> Path:
    value = cfg.get(key)
    if value in (None, "", "???"):
        raise ValueError(f"dataset.{key} is not set: dataset=folder needs dataset.input=<degraded folder> "
                         f"dataset.target=<clean folder>")
    return Path(str(value)).expanduser()


def task_name(cfg) -> str:
    return str(cfg.task) if cfg.get("task") not in (None, "") else str(list(cfg.tasks)[0])


def normalized(cfg):
    """A copy of the node whose ``tasks`` contain ``task`` (a task outside them becomes the only one)."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)) if not OmegaConf.is_config(cfg) else cfg.copy()
    name = task_name(cfg)
    with open_dict(cfg):
        if name not in list(cfg.tasks):
            cfg.tasks = [name]
        cfg.task = name
    return cfg


def with_tasks_of(cfg, tasks) -> "OmegaConf":
    """For evaluating a checkpoint: index ``dataset.task`` in the checkpoint's task list, so a
    task-conditioned model gets the label it was trained with; raises naming the valid tasks."""
    name = task_name(cfg) if cfg.get("task") not in (None, "") else None
    tasks = [str(t) for t in tasks]
    if name is not None and name not in tasks:
        raise ValueError(f"dataset.task={name} is not a task of the checkpoint; choose from {tasks} "
                         f"(or leave dataset.task unset for label 0)")
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.tasks = tasks
        cfg.task = name if name is not None else tasks[0]
    return cfg


def folder_listing(cfg) -> Listing:
    """The pairs of the two folders (checker's rules)."""
    return list_pairs(_folder(cfg, "input"), _folder(cfg, "target"), cache=bool(cfg.cache),
                      skip_bad=bool(cfg.skip_bad))


class FolderTrainDataset(PairedTrainDataset):
    """Training crops of the folder pairs (same random crop and flip/rot90 of input and target)."""

    listing = staticmethod(lambda cfg, task: folder_listing(cfg))

    def __init__(self, cfg):
        super().__init__(normalized(cfg))


def _spec(cfg):
    declared = (cfg.get("test_sets") or {}).get(SET_NAME) or {}
    return OmegaConf.create({"task": task_name(cfg), "crop_border": int(declared.get("crop_border", 0)),
                             "test_y_channel": bool(declared.get("test_y_channel", False))})


def build_folder_val_sets(cfg) -> dict:
    """``{"folder": TestSet}``: every pair at full size (or ``val.center_crop``)."""
    cfg = normalized(cfg)
    lst = folder_listing(cfg)
    errors = [p for p in lst.problems if p.severity == "error"]
    if errors:
        raise FileNotFoundError(f"{errors[0].line()} (run `aio-data check dataset=folder ...` for the full report)")
    return {SET_NAME: TestSet(cfg, SET_NAME, _spec(cfg), lst)}


def check_folder(cfg, report, verify: bool) -> None:
    """The checker's rows and problems for ``dataset=folder`` (see :func:`aio.data.check_dataset`)."""
    from .check import Row, add_listing

    try:
        lst = folder_listing(cfg)
    except ValueError as e:
        report.problems.append(Problem("error", "folder not set", "dataset.input/target", str(e)))
        return
    good = add_listing(report, lst, verify, bool(cfg.skip_bad), int(cfg.patch_size))
    report.rows.append(Row("test", SET_NAME, task_name(cfg), good, f"{cfg.input} vs {cfg.target}"))
