"""Seeds and significance for tables: mean ± std over seeds, and a paired hierarchical bootstrap.

The test (:func:`paired_bootstrap`): a cell of row A is compared with the reference row B on the *same*
test images. One resample draws, independently for A and for B, as many seeds as each has (with
replacement: the seed level), and one set of image indices per test set shared by A and B (with
replacement: the image level, paired). The statistic is mean(A) - mean(B) over the drawn seeds and images;
for the average column it is the mean over sets of the per-set differences (images drawn per set, the seed
draw shared by the sets, since a seed is one whole model). The confidence interval is the percentile
interval at ``level``; the difference is significant when the interval excludes 0. With one seed per row
this is the ordinary paired bootstrap over images. Draws come from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 10_000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
METHOD = "paired hierarchical bootstrap (seeds, then images)"


@dataclass(frozen=True)
class BootstrapResult:
    """The observed difference A - B, its percentile confidence interval and whether it excludes 0."""

    diff: float
    low: float
    high: float
    n_images: int
    n_seeds_a: int
    n_seeds_b: int

    @property
    def significant(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def _set_means(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``[seeds, resamples]``: each seed's mean over the resampled images ``idx`` [resamples, n]."""
    return values[:, idx].mean(axis=2)


def paired_bootstrap(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> BootstrapResult:
    """Bootstrap CI of mean(A) - mean(B) over the sets of ``a``/``b`` (``{set: [seeds, images]}`` arrays whose
    columns are the same images in the same order). One set: that set's difference; several: the mean of the
    per-set differences (the table's average column)."""
    sets = list(a)
    if not sets or set(sets) != set(b):
        raise ValueError(f"paired_bootstrap: A has sets {sorted(a)}, B has {sorted(b)}")
    if not 0 < level < 1:
        raise ValueError(f"significance level {level} must be in (0, 1), e.g. 0.95")
    rng = np.random.default_rng(seed)
    sa, sb = a[sets[0]].shape[0], b[sets[0]].shape[0]
    seeds_a = rng.integers(0, sa, size=(resamples, sa))
    seeds_b = rng.integers(0, sb, size=(resamples, sb))
    rows = np.arange(resamples)[:, None]
    diffs = np.zeros(resamples)
    observed = 0.0
    n_images = 0
    for name in sets:
        va, vb = np.asarray(a[name], dtype=float), np.asarray(b[name], dtype=float)
        if va.shape[1] != vb.shape[1]:
            raise ValueError(f"paired_bootstrap: set {name}: {va.shape[1]} vs {vb.shape[1]} images")
        n = va.shape[1]
        idx = rng.integers(0, n, size=(resamples, n))
        ma = _set_means(va, idx).T[rows, seeds_a].mean(axis=1)
        mb = _set_means(vb, idx).T[rows, seeds_b].mean(axis=1)
        diffs += (ma - mb) / len(sets)
        observed += (va.mean() - vb.mean()) / len(sets)
        n_images += n
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return BootstrapResult(float(observed), float(low), float(high), n_images, sa, sb)


def seed_mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """``(mean, sample std (ddof=1; NaN for one seed), n)`` of the finite values."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan"), 0
    std = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
    return float(arr.mean()), std, int(arr.size)
