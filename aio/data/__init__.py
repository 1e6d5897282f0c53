"""Images, datasets, the synthetic degradation engine and the layout checker.

Public entry points (see docs/design.md): ``build_train_dataset(cfg.dataset)``,
``build_val_sets(cfg.dataset)``, ``check_dataset(cfg.dataset)``; also ``read_image``/``write_image``
(:mod:`aio.data.images`) and the engine (:mod:`aio.data.degradations`). Importing this package is cheap:
the sub-modules are imported when a function is called.
"""

from __future__ import annotations

__all__ = ["build_train_dataset", "build_val_sets", "check_dataset", "read_image", "write_image"]


def build_train_dataset(cfg_dataset):
    """The training Dataset of the preset (with ``.task_names`` and ``.set_epoch(epoch)``)."""
    kind = cfg_dataset.kind
    if kind == "synthetic" and cfg_dataset.get("abair"):
        from .abair import ABAIRTrainDataset

        return ABAIRTrainDataset(cfg_dataset)
    if kind == "synthetic":
        from .synthetic import SyntheticTrainDataset

        return SyntheticTrainDataset(cfg_dataset)
    if kind in ("aio", "cdd11", "mio"):
        from .layouts import PairedTrainDataset

        return PairedTrainDataset(cfg_dataset)
    if kind == "folder":
        from .folder import FolderTrainDataset

        return FolderTrainDataset(cfg_dataset)
    raise ValueError(f"dataset.kind={kind!r} unknown (synthetic | aio | cdd11 | mio | folder)")


def build_val_sets(cfg_dataset):
    """``{name: Dataset}``, deterministic, each with ``.task_name`` and ``.protocol``."""
    kind = cfg_dataset.kind
    if kind == "synthetic":
        from .synthetic import build_synthetic_val_sets

        return build_synthetic_val_sets(cfg_dataset)
    if kind in ("aio", "cdd11", "mio"):
        from .layouts import build_real_val_sets

        return build_real_val_sets(cfg_dataset)
    if kind == "folder":
        from .folder import build_folder_val_sets

        return build_folder_val_sets(cfg_dataset)
    raise ValueError(f"dataset.kind={kind!r} unknown (synthetic | aio | cdd11 | mio | folder)")


def check_dataset(cfg_dataset, verify: bool = True):
    """A report with ``.ok`` and ``.render()`` (counts per split and task, every problem with its path)."""
    from .check import check_dataset as _check

    return _check(cfg_dataset, verify=verify)


def read_image(path):
    from .images import read_image as _read

    return _read(path)


def write_image(path, tensor):
    from .images import write_image as _write

    return _write(path, tensor)
