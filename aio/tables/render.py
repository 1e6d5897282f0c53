r"""Render a sweep's results table (a pandas DataFrame) as LaTeX (booktabs), Markdown and CSV.

The DataFrame (built by :func:`aio.tables.collect.collect_sweep`, or by hand) has one row per table row,
indexed by the row key, with these columns:

- ``label``: the displayed row name (plain text, escaped here);
- ``kind``: ``"run"`` for a run of the sweep, ``"published"`` for a reference row from the published CSV;
- ``status`` / ``run_id``: the MLflow run behind the row (empty for published rows and rows with no run);
- ``source``: where a published row's numbers come from (empty for runs);
- one numeric column per cell: ``"<test set>/<metric>"`` (e.g. ``"SOTS/psnr"``), ``"avg/<metric>"`` for the
  average, and the extra columns by key (``"params_m"``, ``"gflops"``, or a full MLflow metric key).
  NaN means "no value" and is shown as an en dash.

Best and second-best values per column are **bold** and underlined, following each metric's direction
(ties share the mark). The ranking is among the sweep's own runs only: published rows (marked with a
dagger, sources in a footnote) are never ranked, so the marks say which variant of *this* sweep wins.
Values are compared as displayed (rounded), so two cells that print the same are marked the same.
A column is ranked only when at least two runs have a value in it.

The table spec (a dict; the sweep's ``table_spec.yaml``) keys, all optional: ``name``, ``caption``
(``{dataset}``/``{sweep}`` are filled by :mod:`aio.tables.collect`; escaped unless ``raw_caption: true``),
``label``, ``rows`` (``[{key, label}]`` in display order), ``metrics`` (per test set, default
``[psnr, ssim]``), ``sets`` (null = inferred), ``average`` (an Average column group from ``val/avg/*``),
``extra_columns`` (``params_m``, ``gflops``, a full MLflow metric key, or ``{key, label, decimals,
higher_is_better}``), ``published`` (``{benchmark, methods}``), and for layout ``published_position``
(``top``/``bottom``), ``set_labels`` (``{set: header}``), ``decimals`` (``{metric: n}``, e.g.
``{ssim: 4}``), ``float`` (``table``/``table*``), ``placement`` (default ``t``) and ``resize`` (wrap the
tabular in ``\resizebox{\linewidth}{!}{...}``; needs ``graphicx``).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

MISSING_TEXT = "\u2013"  # en dash (Markdown / console)
MISSING_LATEX = "--"  # en dash in LaTeX
DAGGER_LATEX = r"$^\dagger$"
DAGGER_TEXT = "\u2020"
AVG_SET = "avg"
INFO_COLUMNS = ("label", "kind", "status", "run_id", "source")

# Directions used when aio.metrics (METRICS[name].higher_is_better) is not available or lacks a metric.
HIGHER_IS_BETTER: dict[str, bool] = {
    "psnr": True,
    "ssim": True,
    "ms_ssim": True,
    "fsim": True,
    "vif": True,
    "haarpsi": True,
    "psnr_input": True,
    "ssim_input": True,
    "gmsd": False,
    "lpips": False,
    "dists": False,
    "params_m": False,
    "gflops": False,
}

METRIC_HEADERS: dict[str, str] = {
    "psnr": "PSNR",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "fsim": "FSIM",
    "vif": "VIF",
    "haarpsi": "HaarPSI",
    "gmsd": "GMSD",
    "lpips": "LPIPS",
    "dists": "DISTS",
    "psnr_input": "PSNR (input)",
    "ssim_input": "SSIM (input)",
}

DEFAULT_DECIMALS: dict[str, int] = {"psnr": 2, "psnr_input": 2, "ssim": 3, "ssim_input": 3, "params_m": 2}

# Extra columns known by alias: key -> (MLflow metric key, header); both are lower-is-better
EXTRA_ALIASES: dict[str, tuple[str, str]] = {
    "params_m": ("model/params_m", "Params (M)"),
    "gflops": ("model/gflops_256", "GFLOPs"),
}

DEFAULT_SPEC: dict[str, Any] = {
    "name": None,
    "caption": None,
    "label": None,
    "rows": None,
    "metrics": ["psnr", "ssim"],
    "sets": None,
    "average": True,
    "extra_columns": ["params_m", "gflops"],
    "published": None,
    "published_position": "top",
    "set_labels": {},
    "decimals": {},
    "raw_caption": False,
    "resize": False,
    "placement": "t",
    "float": "table",
}


class SpecError(ValueError):
    """The table spec is malformed."""


# ---------------------------------------------------------------------------------------------------------
# spec and columns
# ---------------------------------------------------------------------------------------------------------
def normalize_spec(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``spec`` with every key of :data:`DEFAULT_SPEC` present and the rows as ``{key, label}``."""
    out = copy.deepcopy(DEFAULT_SPEC)
    for key, value in dict(spec or {}).items():
        out[key] = copy.deepcopy(value)
    for key in ("metrics", "extra_columns"):
        if out[key] is None:
            out[key] = []
        if isinstance(out[key], str):
            out[key] = [out[key]]
        out[key] = list(out[key])
    if isinstance(out["sets"], str):
        out["sets"] = [out["sets"]]
    out["set_labels"] = dict(out.get("set_labels") or {})
    out["decimals"] = dict(out.get("decimals") or {})
    if out["rows"] is not None:
        rows = []
        for row in out["rows"]:
            if isinstance(row, str):
                row = {"key": row, "label": row}
            elif isinstance(row, Mapping):
                if "key" not in row:
                    raise SpecError(f"table spec row {dict(row)} has no 'key'")
                row = {"key": str(row["key"]), "label": str(row.get("label", row["key"]))}
            else:
                raise SpecError(f"table spec row {row!r} is neither a key nor a {{key, label}} mapping")
            rows.append(row)
        out["rows"] = rows
    pub = out.get("published")
    if isinstance(pub, str):
        out["published"] = {"benchmark": pub, "methods": None}
    elif pub is not None and not isinstance(pub, Mapping):
        raise SpecError(f"table spec 'published' must be a benchmark name or {{benchmark, methods}}, not {pub!r}")
    if out["float"] not in ("table", "table*"):
        raise SpecError("table spec 'float' must be 'table' or 'table*'")
    if out["published_position"] not in ("top", "bottom"):
        raise SpecError("table spec 'published_position' must be 'top' or 'bottom'")
    return out


_METRICS_DIRECTIONS: dict[str, bool] | None = None


def _aio_metric_directions() -> dict[str, bool]:
    """``{name: higher_is_better}`` from ``aio.metrics.METRICS`` when that module exists, else ``{}``."""
    global _METRICS_DIRECTIONS
    if _METRICS_DIRECTIONS is None:
        found: dict[str, bool] = {}
        try:
            from aio.metrics import METRICS  # type: ignore[attr-defined]

            for name, info in dict(METRICS).items():
                hib = getattr(info, "higher_is_better", None)
                if hib is None and isinstance(info, Mapping):
                    hib = info.get("higher_is_better")
                if hib is not None:
                    found[str(name)] = bool(hib)
        except Exception:  # module missing or broken: fall back to our own table
            found = {}
        _METRICS_DIRECTIONS = found
    return _METRICS_DIRECTIONS


def higher_is_better(metric: str) -> bool | None:
    """The direction of ``metric`` (None when unknown: such a column is not ranked)."""
    if metric in ("params_m", "gflops"):
        return False
    directions = _aio_metric_directions()
    if metric in directions:
        return directions[metric]
    return HIGHER_IS_BETTER.get(metric)


@dataclass(frozen=True)
class Column:
    """One numeric column of the table."""

    key: str  # DataFrame column
    group: str | None  # test set (None for extra columns)
    metric: str  # metric name used for direction and decimals
    header: str  # plain-text sub-header
    higher_is_better: bool | None
    decimals: int
    source_key: str  # MLflow metric key the values come from


def metric_header(metric: str) -> str:
    return METRIC_HEADERS.get(metric, metric.replace("_", "-").upper())


def extra_column_info(entry: Any) -> dict[str, Any]:
    """``{key, mlflow, header, metric, higher_is_better?, decimals?}`` for one ``extra_columns`` entry."""
    if isinstance(entry, Mapping):
        info = dict(entry)
        if "key" not in info:
            raise SpecError(f"extra column {info} has no 'key'")
        base = extra_column_info(str(info["key"]))
        base.update({k: v for k, v in info.items() if k != "key"})
        if "label" in info:
            base["header"] = str(info["label"])
        return base
    key = str(entry)
    if key in EXTRA_ALIASES:
        mlflow_key, header = EXTRA_ALIASES[key]
        return {"key": key, "mlflow": mlflow_key, "header": header, "metric": key}
    parts = key.split("/")
    metric = parts[-1]
    if len(parts) == 3 and parts[0] == "val":
        header = f"{'Average' if parts[1] == AVG_SET else parts[1]} {metric_header(metric)}"
    else:
        header = key
    return {"key": key, "mlflow": key, "header": header, "metric": metric}


def infer_sets(columns: Sequence[str], metrics: Sequence[str]) -> list[str]:
    """Test sets with a ``<set>/<metric>`` column, in column order, without ``avg``."""
    sets: list[str] = []
    for col in columns:
        if "/" not in col:
            continue
        name, metric = col.rsplit("/", 1)
        if metric in metrics and name != AVG_SET and name not in sets and not col.startswith("val/"):
            sets.append(name)
    return sets


def table_columns(df: pd.DataFrame, spec: Mapping[str, Any]) -> list[Column]:
    """The numeric columns of the table, in display order, from the spec (sets inferred from ``df`` if null)."""
    spec = normalize_spec(spec)
    metrics = [str(m) for m in spec["metrics"]]
    sets = [str(s) for s in spec["sets"]] if spec["sets"] is not None else infer_sets(list(df.columns), metrics)
    sets = [s for s in sets if s != AVG_SET]
    if spec["average"]:
        sets.append(AVG_SET)
    dec_over = spec["decimals"]
    cols: list[Column] = []
    for set_name in sets:
        for metric in metrics:
            decimals = int(dec_over.get(metric, DEFAULT_DECIMALS.get(metric, 3)))
            cols.append(
                Column(
                    key=f"{set_name}/{metric}",
                    group=set_name,
                    metric=metric,
                    header=metric_header(metric),
                    higher_is_better=higher_is_better(metric),
                    decimals=decimals,
                    source_key=f"val/{set_name}/{metric}",
                )
            )
    for entry in spec["extra_columns"]:
        info = extra_column_info(entry)
        key, metric = info["key"], info["metric"]
        if "decimals" in info:
            decimals = int(info["decimals"])
        elif key in dec_over or metric in dec_over:
            decimals = int(dec_over.get(key, dec_over.get(metric)))
        elif metric == "gflops":
            values = pd.to_numeric(df[key], errors="coerce") if key in df.columns else pd.Series(dtype=float)
            decimals = 1 if values.notna().any() and values.abs().max() >= 100 else 2
        else:
            decimals = DEFAULT_DECIMALS.get(metric, 3)
        hib = info["higher_is_better"] if "higher_is_better" in info else higher_is_better(metric)
        cols.append(
            Column(
                key=key,
                group=None,
                metric=metric,
                header=str(info["header"]),
                higher_is_better=hib,
                decimals=decimals,
                source_key=str(info["mlflow"]),
            )
        )
    return cols


def set_label(name: str, spec: Mapping[str, Any]) -> str:
    labels = spec.get("set_labels") or {}
    if name in labels:
        return str(labels[name])
    return "Average" if name == AVG_SET else name


# ---------------------------------------------------------------------------------------------------------
# values, ranking
# ---------------------------------------------------------------------------------------------------------
def _value(df: pd.DataFrame, row: Any, key: str) -> float | None:
    if key not in df.columns:
        return None
    value = df.at[row, key]
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def format_value(value: float | None, decimals: int) -> str | None:
    """The displayed number, or None for a missing value."""
    if value is None:
        return None
    return f"{value:.{decimals}f}"


def _kind(df: pd.DataFrame, row: Any) -> str:
    return str(df.at[row, "kind"]) if "kind" in df.columns else "run"


def rank_marks(df: pd.DataFrame, columns: Sequence[Column]) -> dict[tuple[Any, str], str]:
    """``{(row, column key): "best" | "second"}`` among the sweep's runs (published rows are not ranked)."""
    marks: dict[tuple[Any, str], str] = {}
    run_rows = [row for row in df.index if _kind(df, row) == "run"]
    for col in columns:
        if col.higher_is_better is None:
            continue
        shown: dict[Any, float] = {}
        for row in run_rows:
            text = format_value(_value(df, row, col.key), col.decimals)
            if text is not None:
                shown[row] = float(text)
        if len(shown) < 2:
            continue
        distinct = sorted(set(shown.values()), reverse=bool(col.higher_is_better))
        best = distinct[0]
        second = distinct[1] if len(distinct) > 1 else None
        for row, value in shown.items():
            if value == best:
                marks[(row, col.key)] = "best"
            elif second is not None and value == second:
                marks[(row, col.key)] = "second"
    return marks


def ordered_rows(df: pd.DataFrame, spec: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """``(first block, second block)`` of row keys: published rows on top by default, then the runs."""
    runs = [row for row in df.index if _kind(df, row) != "published"]
    published = [row for row in df.index if _kind(df, row) == "published"]
    if normalize_spec(spec)["published_position"] == "bottom":
        return runs, published
    return published, runs


def published_sources(df: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """``[(source, [method labels])]`` for the published rows, in row order."""
    by_source: dict[str, list[str]] = {}
    for row in df.index:
        if _kind(df, row) != "published":
            continue
        source = str(df.at[row, "source"]) if "source" in df.columns else ""
        source = source if source and source != "nan" else "unknown source"
        by_source.setdefault(source, []).append(str(df.at[row, "label"]))
    return list(by_source.items())


def fill_caption(spec: Mapping[str, Any], **values: Any) -> str | None:
    """``spec["caption"]`` with ``{dataset}``-style placeholders filled (unknown ones are left as they are)."""
    caption = spec.get("caption")
    if caption is None:
        return None

    class _Keep(dict):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    try:
        return str(caption).format_map(_Keep({k: v for k, v in values.items() if v is not None}))
    except (ValueError, IndexError, AttributeError):  # stray braces: keep the caption as written
        return str(caption)


# ---------------------------------------------------------------------------------------------------------
# LaTeX
# ---------------------------------------------------------------------------------------------------------
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_RE = re.compile("|".join(re.escape(ch) for ch in _LATEX_SPECIAL))


def escape_latex(text: Any) -> str:
    """Escape LaTeX's special characters (& % $ # _ { } ~ ^ \\) in plain text."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], str(text))


def _latex_cell(text: str | None, mark: str | None) -> str:
    if text is None:
        return MISSING_LATEX
    if mark == "best":
        return rf"\textbf{{{text}}}"
    if mark == "second":
        return rf"\underline{{{text}}}"
    return text


def render_latex(df: pd.DataFrame, spec: Mapping[str, Any], *, ssim_decimals: int | None = None) -> str:
    """A ``table`` float (booktabs, grouped headers, best bold / second underlined) ready to ``\\input``.

    ``ssim_decimals`` (e.g. 4) overrides the spec's SSIM precision. Published rows carry a dagger, sit
    apart behind a ``\\midrule`` and are listed with their sources in a footnote inside the float; they
    are not ranked. Needs only ``booktabs`` (plus ``graphicx`` when the spec sets ``resize: true``).
    """
    spec = _with_decimals(normalize_spec(spec), ssim_decimals)
    columns = table_columns(df, spec)
    marks = rank_marks(df, columns)
    first, second = ordered_rows(df, spec)

    groups: list[tuple[str | None, int, int]] = []  # (set, first column index 2.., last)
    for idx, col in enumerate(columns, start=2):
        if groups and col.group is not None and groups[-1][0] == col.group:
            groups[-1] = (col.group, groups[-1][1], idx)
        else:
            groups.append((col.group, idx, idx))

    lines: list[str] = []
    env = str(spec["float"] or "table")
    lines.append(rf"\begin{{{env}}}[{spec['placement']}]" if spec["placement"] else rf"\begin{{{env}}}")
    lines.append(r"\centering")
    caption = spec.get("caption")
    if caption:
        text = str(caption) if spec["raw_caption"] else escape_latex(caption)
        lines.append(rf"\caption{{{text}}}")
    if spec.get("label"):
        lines.append(rf"\label{{{spec['label']}}}")
    if spec["resize"]:
        lines.append(r"\resizebox{\linewidth}{!}{%")
    colspec = "@{}l" + "".join(
        ("c" * (last - start + 1)) if grp is not None else "c" for grp, start, last in groups
    ) + "@{}"
    lines.append(rf"\begin{{tabular}}{{{colspec}}}")
    lines.append(r"\toprule")
    has_groups = any(grp is not None for grp, _, _ in groups)
    if has_groups:
        top = [""]
        rules = []
        for grp, start, last in groups:
            if grp is None:
                top.append("")
                continue
            width = last - start + 1
            top.append(rf"\multicolumn{{{width}}}{{c}}{{{escape_latex(set_label(grp, spec))}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{last}}}")
        lines.append(" & ".join(top) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join(["Method"] + [escape_latex(col.header) for col in columns]) + r" \\")
    lines.append(r"\midrule")

    def body(rows: list[Any]) -> None:
        for row in rows:
            label = escape_latex(df.at[row, "label"] if "label" in df.columns else row)
            if _kind(df, row) == "published":
                label += DAGGER_LATEX
            cells = [label]
            for col in columns:
                text = format_value(_value(df, row, col.key), col.decimals)
                cells.append(_latex_cell(text, marks.get((row, col.key))))
            lines.append(" & ".join(cells) + r" \\")

    body(first)
    if first and second:
        lines.append(r"\midrule")
    body(second)
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    if spec["resize"]:
        lines.append(r"}")
    sources = published_sources(df)
    if sources:
        parts = "; ".join(f"{escape_latex(', '.join(methods))}: {escape_latex(src)}" for src, methods in sources)
        lines.append(
            r"\par\smallskip\footnotesize " + DAGGER_LATEX
            + f" Published numbers, not ranked ({parts})."
        )
    lines.append(rf"\end{{{env}}}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Markdown, CSV
# ---------------------------------------------------------------------------------------------------------
def escape_markdown(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(df: pd.DataFrame, spec: Mapping[str, Any], *, ssim_decimals: int | None = None) -> str:
    """The same table as a pipe table (best ``**bold**``, second ``<u>underlined</u>``, missing "–")."""
    spec = _with_decimals(normalize_spec(spec), ssim_decimals)
    columns = table_columns(df, spec)
    marks = rank_marks(df, columns)
    first, second = ordered_rows(df, spec)
    headers = ["Method"] + [
        escape_markdown(f"{set_label(col.group, spec)} {col.header}" if col.group is not None else col.header)
        for col in columns
    ]
    lines: list[str] = []
    if spec.get("caption"):
        lines += [f"Table: {str(spec['caption']).strip()}", ""]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * len(columns)) + "|")
    for row in first + second:
        label = escape_markdown(df.at[row, "label"] if "label" in df.columns else row)
        if _kind(df, row) == "published":
            label += DAGGER_TEXT
        cells = [label]
        for col in columns:
            text = format_value(_value(df, row, col.key), col.decimals)
            mark = marks.get((row, col.key))
            if text is None:
                cells.append(MISSING_TEXT)
            elif mark == "best":
                cells.append(f"**{text}**")
            elif mark == "second":
                cells.append(f"<u>{text}</u>")
            else:
                cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    sources = published_sources(df)
    if sources:
        parts = "; ".join(f"{', '.join(methods)}: {src}" for src, methods in sources)
        lines += ["", f"{DAGGER_TEXT} Published numbers, not ranked ({parts})."]
    return "\n".join(lines) + "\n"


def render_csv(df: pd.DataFrame, spec: Mapping[str, Any]) -> str:
    """Tidy CSV: one line per row (key, label, kind, status, run id, source) and full-precision numbers."""
    columns = table_columns(df, spec)
    out = pd.DataFrame(index=df.index)
    for name in INFO_COLUMNS:
        out[name] = df[name] if name in df.columns else ""
    for col in columns:
        out[col.key] = pd.to_numeric(df[col.key], errors="coerce") if col.key in df.columns else float("nan")
    first, second = ordered_rows(df, spec)
    out = out.loc[first + second]
    out.index.name = "row"
    return out.to_csv(na_rep="", lineterminator="\n")


def write_tables(
    df: pd.DataFrame,
    spec: Mapping[str, Any],
    out_dir: str | Path,
    name: str | None = None,
    *,
    ssim_decimals: int | None = None,
) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.tex``, ``.md`` and ``.csv``; returns ``{"tex": path, "md": path, "csv": path}``."""
    name = name or normalize_spec(spec).get("name") or "table"
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", str(name)).strip("._") or "table"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "tex": render_latex(df, spec, ssim_decimals=ssim_decimals),
        "md": render_markdown(df, spec, ssim_decimals=ssim_decimals),
        "csv": render_csv(df, spec),
    }
    paths: dict[str, Path] = {}
    for ext, text in texts.items():
        path = out / f"{safe}.{ext}"
        path.write_text(text, encoding="utf-8")
        paths[ext] = path
    return paths


def _with_decimals(spec: dict[str, Any], ssim_decimals: int | None) -> dict[str, Any]:
    if ssim_decimals is not None:
        spec["decimals"] = {**spec["decimals"], "ssim": int(ssim_decimals)}
    return spec
