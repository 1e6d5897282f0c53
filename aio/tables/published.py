"""Published reference numbers (``published_results.csv``) as extra, non-ranked table rows.

The CSV (columns ``benchmark, method, params_M, test_set, psnr, ssim, source``) is the project's copy of
``shared/reference/published_results.csv``: numbers as reported by the cited source, nothing derived.
Its test-set names are aio's preset names (AIO-3: BSD68_s15, BSD68_s25, BSD68_s50, Rain100L, SOTS;
AIO-5: BSD68_s25, Rain100L, SOTS, GoPro, LOLv1; CDD11: ``average``, which goes under the Average column),
so published rows line up under the sweep's columns. Cells a source does not report stay empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import pandas as pd

CSV_NAME = "published_results.csv"
CSV_COLUMNS = ["benchmark", "method", "params_M", "test_set", "psnr", "ssim", "source"]
AVERAGE_NAMES = {"average", "avg"}


class PublishedError(ValueError):
    """Unknown benchmark or method."""


def csv_path() -> Path:
    return Path(str(resources.files("aio.tables").joinpath(CSV_NAME)))


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """The whole published CSV (long form: one line per benchmark, method and test set)."""
    df = pd.read_csv(path or csv_path(), dtype={"benchmark": str, "method": str, "test_set": str, "source": str})
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise PublishedError(f"{path or csv_path()} lacks the columns {missing}")
    for col in ("params_M", "psnr", "ssim"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def benchmarks(path: str | Path | None = None) -> list[str]:
    """The benchmarks in the CSV, in file order."""
    return list(dict.fromkeys(load_published(path)["benchmark"]))


def published_rows(
    benchmark: str,
    methods: Sequence[str] | None = None,
    *,
    path: str | Path | None = None,
) -> pd.DataFrame:
    """Wide rows for ``benchmark`` (all methods, or ``methods`` in that order), in the table's layout.

    Index ``pub:<method>``; columns ``label`` (method), ``kind="published"``, ``status``/``run_id`` empty,
    ``source`` (the sources joined with "; " when several), ``<set>/psnr``, ``<set>/ssim`` (``avg/...`` for
    the CSV's ``average``) and ``params_m``.
    """
    df = load_published(path)
    known = list(dict.fromkeys(df["benchmark"]))
    if benchmark not in known:
        lowered = {b.lower(): b for b in known}
        if benchmark.lower() not in lowered:
            raise PublishedError(f"unknown published benchmark {benchmark!r}; known: {', '.join(known)}")
        benchmark = lowered[benchmark.lower()]
    sub = df[df["benchmark"] == benchmark]
    available = list(dict.fromkeys(sub["method"]))
    if methods is None:
        chosen = available
    else:
        chosen = [str(m) for m in methods]
        unknown = [m for m in chosen if m not in available]
        if unknown:
            raise PublishedError(
                f"no published {benchmark} numbers for {', '.join(unknown)}; known: {', '.join(available)}"
            )
    records = []
    for method in chosen:
        lines = sub[sub["method"] == method]
        record: dict[str, object] = {
            "row": f"pub:{method}",
            "label": method,
            "kind": "published",
            "status": "",
            "run_id": "",
            "source": "; ".join(dict.fromkeys(lines["source"].dropna().astype(str))),
        }
        params = lines["params_M"].dropna()
        record["params_m"] = float(params.iloc[0]) if len(params) else float("nan")
        for _, line in lines.iterrows():
            set_name = "avg" if str(line["test_set"]).lower() in AVERAGE_NAMES else str(line["test_set"])
            record[f"{set_name}/psnr"] = float(line["psnr"])
            record[f"{set_name}/ssim"] = float(line["ssim"])
        records.append(record)
    return pd.DataFrame.from_records(records).set_index("row")
