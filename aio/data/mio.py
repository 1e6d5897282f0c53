"""The MiO setting of MiOIR (Kong et al. 2024): seven tasks on the reference's folder layout.

Tasks (``dataset.tasks`` of ``mio7`` / ``synthetic_mio7``): ``sr`` (bicubic x4 down + up: the SR input has
the target's size), ``blur`` (isotropic Gaussian, kernel 7..21, sigma 1..3), ``noise`` (Gaussian, sigma
15..50), ``jpeg`` (quality 30..70), ``rain`` (synthetic streaks), ``haze`` (depth-based scattering, A 0.8..1,
beta 0.5..2.5), ``dark`` (gamma 1..3): the ranges of the reference's ``data_script/add_MiO_*_degradation.py``.

Layout of ``mio7`` (``dataset.kind=mio``), the reference's folder names under ``dataset.root``::

    DF2K/GT_sub300/<name>                 clean 300x300 sub-images (``data_script/gen_sub.py``)
    DF2K/<task>_sub300/<name>             degraded, same names (task = sr|blur|noise|jpeg|rain|haze|dark)
    CL_test/original/GT/<name>            clean test images, shared by every test set
    CL_test/single_indis/<task>/<name>    in-distribution test sets (named sr, blur, ... as in options/test)
    CL_test/single_outbig/<task>_outbig/<name>   out-of-distribution (stronger) test sets, optional

The reference's ``MiODateset`` reads its training list from a meta file of LQ paths and finds the target
and the task from the *type prefix* of the path: the first of ``snow_ rain_ haze_ blur_ noise_ jpeg_ dark_
sr_`` found in it is the task, and replacing it by ``GT_`` gives the target (``DF2K/rain_sub300/x.png`` ->
``DF2K/GT_sub300/x.png``, task ``rain``). Here the task's folder is listed directly and paired with
``GT_sub300`` by file stem; the sample's ``task`` is the index of its task in ``dataset.tasks`` (see
:mod:`aio.models.prompts` for how explicit-prompt models map it to the reference's prompt).
The reference's five "unknown degradation" test sets (``CL_test/unknow/...``) have no single task and are
not declared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .layouts import Listing, list_pairs

#: The seven MiO tasks, in the order of the paper's tables.
MIO_TASKS: tuple[str, ...] = ("sr", "blur", "noise", "jpeg", "rain", "haze", "dark")
TRAIN_DIR = "DF2K"
SUB_SUFFIX = "_sub300"
TEST_GT_DIR = "CL_test/original/GT"


def train_folders(root: Path, task: str) -> tuple[Path, Path]:
    """``(degraded folder, clean folder)`` of one training task."""
    if task not in MIO_TASKS:
        raise ValueError(f"task {task!r} has no MiO training layout; known: {', '.join(MIO_TASKS)}")
    base = Path(root) / TRAIN_DIR
    return base / f"{task}{SUB_SUFFIX}", base / f"GT{SUB_SUFFIX}"


def mio_train_listing(root: Path, task: str, *, cache: bool = False, skip_bad: bool = False) -> Listing:
    """The training pairs of one task: ``DF2K/<task>_sub300/*`` against ``DF2K/GT_sub300/*``."""
    lq, gt = train_folders(root, task)
    return list_pairs(lq, gt, cache=cache, skip_bad=skip_bad)


def mio_test_listing(root: Path, folder: Path, *, skip_bad: bool = False) -> Listing:
    """A test set: the degraded images in ``folder`` against ``CL_test/original/GT`` (same names)."""
    return list_pairs(Path(folder), Path(root) / TEST_GT_DIR, skip_bad=skip_bad)


def make_mio_tree(root, n_train: int = 2, n_test: int = 1, seed: int = 0, size=(48, 64),
                  outbig: bool = False) -> Path:
    """A tiny ``mio7`` tree for tests and demos (degraded = clean / 2, so aligned pairs can be recognised)."""
    from .fixtures import _half, _img, save

    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(n_train):
        t = _img(rng, *size)
        save(root / TRAIN_DIR / f"GT{SUB_SUFFIX}" / f"{i:04d}_s001.png", t)
        for task in MIO_TASKS:
            save(root / TRAIN_DIR / f"{task}{SUB_SUFFIX}" / f"{i:04d}_s001.png", _half(t))
    for i in range(n_test):
        t = _img(rng, *size)
        save(root / TEST_GT_DIR / f"{801 + i:04d}.png", t)
        for task in MIO_TASKS:
            save(root / "CL_test/single_indis" / task / f"{801 + i:04d}.png", _half(t))
            if outbig:
                save(root / "CL_test/single_outbig" / f"{task}_outbig" / f"{801 + i:04d}.png", _half(t))
    return root
