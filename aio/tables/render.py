r"""Render a results table (a pandas DataFrame) as LaTeX (``Styler.to_latex``), Markdown (``to_markdown``), CSV.

The DataFrame (built by :mod:`aio.tables.collect`, or by hand) has one row per table row, indexed by the row
key. Info columns: ``label``, ``kind`` (``run`` | ``published``), ``status``, ``run_id``, ``source`` (a
published row's citation), ``n_seeds``, ``note``, ``random_vgg``. Value columns: ``<set>/<metric>``
(``avg/<metric>`` for the average over sets), extra columns by key (``params_m``, ``gflops``, any MLflow metric
key such as ``test_x8/SOTS/psnr``, or a run parameter such as ``model.ffn_ratio``). With several seeds each
value column has ``<key>:std``; with ``compare_to`` it has ``<key>:diff``, ``<key>:ci_low``, ``<key>:ci_high``
and ``<key>:sig`` (1/0). ``df.attrs`` carries ``significance`` (the test's parameters) and ``tied`` (columns
whose top two are not significantly apart). NaN is "no value", shown as an en dash.

Marks: best **bold**, second underlined, per column and in the metric's direction, among the sweep's runs
(published rows, daggered, are never ranked) and only on quality metrics (not Params/GFLOPs/parameters unless
the spec sets ``rank: all``). A column gets no best/second marks when its top displayed values tie (rounding
ties are not "best") or when the paired test says its top two are not significantly apart; the footnote
names such columns. A cell whose difference to the ``compare_to`` row is significant carries ``*``.

Spec keys (all optional): ``name``, ``caption`` (``{dataset}``/``{sweep}`` filled by collect), ``label``,
``rows`` (``[{key, label, note}]``), ``metrics`` (default ``[psnr, ssim]``), ``sets`` (null = inferred, ``[]``
= average only), ``average``, ``extra_columns`` (``params_m``, ``gflops``, a metric key, or ``{key, label,
decimals, higher_is_better, published_set, scale}``; ``published_set``: the published CSV's ``test_set`` whose
numbers fill this column in the reference rows; ``scale``: a factor on the logged value, e.g. ``1e-6`` for M), ``param_columns`` (``[{key: model.ffn_ratio, label: FFN ratio}]``: run
parameters), ``note_column`` (a Note column from the rows' ``note``), ``compare_to`` (a row key),
``significance`` (``{level, resamples, seed}``), ``delta: previous`` (each cell with its change against the
previous row, ``26.38 (+0.30)``), ``orient: sets`` (transposed: test sets as rows, runs as columns, first
metric only) with ``gain: [a, b]`` (a Gain column = b - a), ``columns_by: preset`` (collate: one column group
per dataset preset from each preset's average, see collect), ``presets`` (``{dataset name: {label,
published}}``), ``published`` (``{benchmark, methods}``), ``published_position``, ``set_labels``,
``decimals`` (``{metric: n}``), ``metric_prefix`` (``val``: the training runs' validation metrics, the
default; ``test``: the ``test/<set>/<metric>`` of evaluation runs, e.g. an ``aio-eval -m`` sweep), ``layout`` (``single``: ``table`` at ``\linewidth``; ``double``: ``table*`` at
``\textwidth``), ``compact`` (``\small`` and a narrow ``\tabcolsep``; default true), ``placement``, ``rank``.
LaTeX needs ``booktabs`` and ``graphicx`` (the width guard is a ``\resizebox`` that only ever shrinks).
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

from aio.tables.labels import metric_header, set_label

MISSING_TEXT = "\u2013"
MISSING_LATEX = "--"
AVG_SET = "avg"
INFO_COLUMNS = ("label", "kind", "status", "run_id", "source", "n_seeds", "note", "random_vgg")
STAT_SUFFIXES = (":std", ":diff", ":ci_low", ":ci_high", ":sig")
QUALITY_EXCLUDED = {"params_m", "gflops"}

# direction of metrics aio.metrics does not know (and of the extra columns)
HIGHER_IS_BETTER: dict[str, bool] = {"psnr": True, "ssim": True, "ms_ssim": True, "fsim": True, "vif": True,
                                     "haarpsi": True, "gmsd": False, "lpips": False, "dists": False,
                                     "params_m": False, "gflops": False}
DEFAULT_DECIMALS: dict[str, int] = {"psnr": 2, "ssim": 3}
EXTRA_ALIASES: dict[str, str] = {"params_m": "model/params_m", "gflops": "model/gflops_256"}

DEFAULT_SPEC: dict[str, Any] = {
    "name": None, "caption": None, "label": None, "rows": None, "metrics": ["psnr", "ssim"], "sets": None,
    "average": True, "extra_columns": ["params_m", "gflops"], "param_columns": [], "note_column": False,
    "compare_to": None, "significance": {}, "delta": None, "orient": "rows", "gain": None,
    "columns_by": "set", "presets": {}, "published": None, "published_position": "top", "set_labels": {},
    "decimals": {}, "raw_caption": False, "layout": "single", "compact": True, "placement": "t",
    "rank": "quality", "metric_prefix": "val",
}
CHOICES = {"orient": ("rows", "sets"), "columns_by": ("set", "preset"), "layout": ("single", "double"),
           "published_position": ("top", "bottom"), "rank": ("quality", "all", "none"), "delta": (None, "previous"),
           "metric_prefix": ("val", "test")}


class SpecError(ValueError):
    """The table spec is malformed."""


def normalize_spec(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``spec`` with every key of :data:`DEFAULT_SPEC`, rows as ``{key, label, note}``; checks values."""
    out = copy.deepcopy(DEFAULT_SPEC)
    out.update(copy.deepcopy(dict(spec or {})))
    for key in ("metrics", "extra_columns", "param_columns"):
        value = out[key] if out[key] is not None else []
        out[key] = [value] if isinstance(value, (str, Mapping)) else list(value)
    if isinstance(out["sets"], str):
        out["sets"] = [out["sets"]]
    for key in ("set_labels", "decimals", "presets", "significance"):
        out[key] = dict(out.get(key) or {})
    if out.get("float") == "table*":  # the spec key before `layout`
        out["layout"] = "double"
    for key, allowed in CHOICES.items():
        if out[key] not in allowed:
            raise SpecError(f"table spec {key}={out[key]!r} is not one of {', '.join(map(str, allowed))}")
    if out["rows"] is not None:
        rows = []
        for row in out["rows"]:
            if isinstance(row, str):
                row = {"key": row}
            if not isinstance(row, Mapping) or "key" not in row:
                raise SpecError(f"table spec row {row!r} is neither a key nor a {{key, label}} mapping")
            rows.append({"key": str(row["key"]), "label": str(row.get("label", row["key"])),
                         "note": str(row.get("note") or "")})
        out["rows"] = rows
    pub = out.get("published")
    if isinstance(pub, str):
        out["published"] = {"benchmark": pub, "methods": None}
    elif pub is not None and not isinstance(pub, Mapping):
        raise SpecError(f"table spec 'published' must be a benchmark name or {{benchmark, methods}}, not {pub!r}")
    gain = out.get("gain")
    if gain is not None and (isinstance(gain, str) or len(gain) != 2):
        raise SpecError(f"table spec gain={gain!r} must be two row keys [a, b] (Gain = b - a)")
    return out


def higher_is_better(metric: str) -> bool | None:
    """The direction of ``metric`` (aio.metrics' registry first; None when unknown: not ranked)."""
    if metric in HIGHER_IS_BETTER and metric in QUALITY_EXCLUDED:
        return HIGHER_IS_BETTER[metric]
    try:
        from aio.metrics import METRICS  # type: ignore[attr-defined]

        info = METRICS.get(metric)
        hib = getattr(info, "higher_is_better", None) if info is not None else None
        if hib is not None:
            return bool(hib)
    except Exception:  # no registry: our own table
        pass
    return HIGHER_IS_BETTER.get(metric)


@dataclass(frozen=True)
class Column:
    """One value column: DataFrame key, group (test set / preset; None for extra columns), metric, header."""

    key: str
    group: str | None
    metric: str
    header: str
    higher_is_better: bool | None
    decimals: int
    source_key: str  # the MLflow metric (or parameter) the values come from
    ranked: bool
    kind: str = "metric"  # "param" for run parameters (no delta, no rank)


def extra_column_info(entry: Any) -> dict[str, Any]:
    """``{key, mlflow, header, metric, ...}`` for one ``extra_columns`` entry (alias, metric key or mapping)."""
    if isinstance(entry, Mapping):
        info = extra_column_info(str(entry["key"])) if "key" in entry else None
        if info is None:
            raise SpecError(f"extra column {dict(entry)} has no 'key'")
        info.update({k: v for k, v in entry.items() if k != "key"})
        if "label" in entry:
            info["header"] = str(entry["label"])
        return info
    key = str(entry)
    if key in EXTRA_ALIASES:
        return {"key": key, "mlflow": EXTRA_ALIASES[key], "header": metric_header(key), "metric": key}
    parts = key.split("/")
    header = key
    if len(parts) == 3:  # val/<set>/<m>, val@<phase>/..., test/<set>/<m>, test_x8/<set>/<m>
        where = {"val": "val", "test": "test"}.get(parts[0], parts[0].replace("_", " "))
        header = f"{set_label(parts[1], {})} {metric_header(parts[2])} ({where})"
    return {"key": key, "mlflow": key, "header": header, "metric": parts[-1]}


def _auto_decimals(df: pd.DataFrame, key: str, base: int, significant: bool = True) -> int:
    """``base`` decimals, more for small values (two significant digits: 0.055 M, not 0.05 M) and until
    distinct values print distinctly; at most 4."""
    values = pd.to_numeric(df[key], errors="coerce").dropna().unique() if key in df.columns else []
    nonzero = [abs(v) for v in values if v != 0]
    if nonzero and significant:
        base = max(base, math.ceil(-math.log10(min(nonzero))) + 1)
    for decimals in range(min(base, 4), 5):
        if len({f"{v:.{decimals}f}" for v in values}) == len(values):
            return decimals
    return 4


def table_columns(df: pd.DataFrame, spec: Mapping[str, Any]) -> list[Column]:
    """The value columns in display order (sets inferred from ``df`` when the spec's are null)."""
    spec = normalize_spec(spec)
    metrics = [str(m) for m in spec["metrics"]]
    if spec["sets"] is not None:
        sets = [str(s) for s in spec["sets"]]
    else:
        sets = list(dict.fromkeys(c.rsplit("/", 1)[0] for c in df.columns if "/" in c and c.count("/") == 1
                                  and c.rsplit("/", 1)[1] in metrics and not c.endswith(STAT_SUFFIXES)))
    sets = [s for s in sets if s != AVG_SET] + ([AVG_SET] if spec["average"] else [])
    rank_all, rank_none = spec["rank"] == "all", spec["rank"] == "none"
    cols: list[Column] = []
    for entry in spec["param_columns"]:
        info = dict(entry) if isinstance(entry, Mapping) else {"key": str(entry)}
        key = str(info["key"])
        cols.append(Column(key, None, key, str(info.get("label", key)), None,
                           int(info.get("decimals", _auto_decimals(df, key, 1, significant=False))), key, False, "param"))
    for set_name in sets:
        for metric in metrics:
            hib = higher_is_better(metric)
            cols.append(Column(f"{set_name}/{metric}", set_name, metric, metric_header(metric), hib,
                               int(spec["decimals"].get(metric, DEFAULT_DECIMALS.get(metric, 3))),
                               f"val/{set_name}/{metric}", hib is not None and not rank_none))
    for entry in spec["extra_columns"]:
        info = extra_column_info(entry)
        key, metric = str(info["key"]), str(info["metric"])
        hib = info["higher_is_better"] if "higher_is_better" in info else higher_is_better(metric)
        if "decimals" in info or key in spec["decimals"] or metric in spec["decimals"]:
            decimals = int(info.get("decimals", spec["decimals"].get(key, spec["decimals"].get(metric, 2))))
        else:
            decimals = _auto_decimals(df, key, DEFAULT_DECIMALS.get(metric, 2))
        quality = metric not in QUALITY_EXCLUDED
        ranked = hib is not None and not rank_none and (quality or rank_all)
        cols.append(Column(key, None, metric, str(info["header"]), hib, decimals, str(info["mlflow"]), ranked))
    return cols


# ---------------------------------------------------------------------------------------------------------
# cell values and marks
# ---------------------------------------------------------------------------------------------------------
def _num(df: pd.DataFrame, row: Any, key: str) -> float | None:
    if key not in df.columns:
        return None
    try:
        value = float(df.at[row, key])
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _info(df: pd.DataFrame, row: Any, key: str, default: Any = "") -> Any:
    if key not in df.columns:
        return default
    value = df.at[row, key]
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else value


def format_value(value: float | None, decimals: int) -> str | None:
    return None if value is None else f"{value:.{decimals}f}"


def _runs(df: pd.DataFrame) -> list[Any]:
    return [row for row in df.index if _info(df, row, "kind", "run") == "run"]


def rank_marks(df: pd.DataFrame, columns: Sequence[Column]) -> dict[tuple[Any, str], str]:
    """``{(row, key): "best" | "second"}`` on ranked columns; none where the top displayed values tie or the
    column is in ``df.attrs["tied"]`` (top two not significantly apart); a tied second place gets no mark."""
    marks: dict[tuple[Any, str], str] = {}
    tied = set(df.attrs.get("tied", ()))
    for col in columns:
        if not col.ranked or col.key in tied:
            continue
        shown = {row: float(t) for row in _runs(df)
                 if (t := format_value(_num(df, row, col.key), col.decimals)) is not None}
        order = sorted(shown.items(), key=lambda rv: rv[1], reverse=bool(col.higher_is_better))
        if len(order) < 2 or order[0][1] == order[1][1]:
            continue
        marks[(order[0][0], col.key)] = "best"
        if len(order) == 2 or order[1][1] != order[2][1]:
            marks[(order[1][0], col.key)] = "second"
    return marks


def top_two(df: pd.DataFrame, col: Column) -> tuple[Any, Any] | None:
    """The rows holding the best and second displayed values of ``col`` (None when fewer than two)."""
    shown = [(float(t), row) for row in _runs(df) if (t := format_value(_num(df, row, col.key), col.decimals))]
    if len(shown) < 2 or col.higher_is_better is None:
        return None
    shown.sort(key=lambda vr: vr[0], reverse=bool(col.higher_is_better))
    return shown[0][1], shown[1][1]


def cell_text(df: pd.DataFrame, row: Any, col: Column, spec: Mapping[str, Any], previous: Any, latex: bool) -> str:
    """One cell: value [± std] [(+delta)] [*], or an en dash."""
    text = format_value(_num(df, row, col.key), col.decimals)
    if text is None:
        return MISSING_LATEX if latex else MISSING_TEXT
    std = _num(df, row, col.key + ":std")
    if std is not None:
        text += (r"{\scriptsize$\pm$" + f"{std:.{col.decimals}f}}}") if latex else f" \u00b1 {std:.{col.decimals}f}"
    before = _num(df, previous, col.key) if previous is not None else None
    if spec["delta"] == "previous" and col.kind != "param" and before is not None:
        step = round(float(_num(df, row, col.key)), col.decimals) - round(before, col.decimals)
        text += f" ({step:+.{col.decimals}f})"
    if _num(df, row, col.key + ":sig") == 1.0:
        text += r"$^{*}$" if latex else "\\*"
    return text


def _row_label(df: pd.DataFrame, row: Any, latex: bool) -> str:
    label = str(_info(df, row, "label", row))
    label = escape_latex(label) if latex else label.replace("|", "\\|")  # tabulate does not escape pipes
    if _info(df, row, "kind", "run") == "published":
        label += r"$^\dagger$" if latex else "\u2020"
    if bool(_info(df, row, "random_vgg", False)):
        label += r"$^\ddagger$" if latex else "\u2021"
    return label


def ordered_rows(df: pd.DataFrame, spec: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """``(first block, second block)``: published rows on top (or bottom), then the runs."""
    runs, published = _runs(df), [r for r in df.index if _info(df, r, "kind", "run") == "published"]
    return (runs, published) if normalize_spec(spec)["published_position"] == "bottom" else (published, runs)


def display_frame(df: pd.DataFrame, spec: Mapping[str, Any], latex: bool) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """``(cells, marks, n_first)``: the table as strings (MultiIndex columns: group label, header), the
    best/second marks aligned with it, and how many rows the first block has."""
    spec = normalize_spec(spec)
    if spec["orient"] == "sets":
        return _transposed(df, spec, latex)
    columns = table_columns(df, spec)
    marks = rank_marks(df, columns)
    first, second = ordered_rows(df, spec)
    header = [("", "Method")] + [(set_label(c.group, spec) if c.group else "", metric_header(c.metric, latex)
                                  if c.group else _header(c, latex)) for c in columns]
    if spec["note_column"]:
        header.append(("", "Note"))
    cells, flags = [], []
    runs = _runs(df)
    for row in first + second:
        previous = runs[runs.index(row) - 1] if row in runs and runs.index(row) > 0 else None
        line = [_row_label(df, row, latex)] + [cell_text(df, row, c, spec, previous, latex) for c in columns]
        flag = [""] + [marks.get((row, c.key), "") for c in columns]
        if spec["note_column"]:
            note = str(_info(df, row, "note", ""))
            line.append(escape_latex(note) if latex else note)
            flag.append("")
        cells.append(line)
        flags.append(flag)
    index = pd.MultiIndex.from_tuples([(escape_latex(a) if latex else a, b) for a, b in header])
    return pd.DataFrame(cells, columns=index), pd.DataFrame(flags, columns=index), len(first)


def _header(col: Column, latex: bool) -> str:
    """An extra or parameter column's header (the aliases' LaTeX forms carry their units)."""
    if col.metric in QUALITY_EXCLUDED and col.header == metric_header(col.metric):
        return metric_header(col.metric, latex)
    return escape_latex(col.header) if latex else col.header


def _transposed(df: pd.DataFrame, spec: dict[str, Any], latex: bool) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Test sets as rows, the runs as columns (first metric), and an optional Gain column (b - a)."""
    metric = str(spec["metrics"][0])
    columns = [c for c in table_columns(df, {**spec, "extra_columns": [], "param_columns": []})
               if c.metric == metric]
    runs = _runs(df)
    declared = df.attrs.get("declared_rows") or [row["key"] for row in spec["rows"] or []]
    if declared:  # the spec's rows only: a sweep with more rows still gives the two-run table
        runs = [r for r in runs if r in declared]
    gain = [str(g) for g in spec["gain"]] if spec["gain"] else None
    if gain and any(g not in runs for g in gain):
        raise SpecError(f"table spec gain={gain}: rows {', '.join(g for g in gain if g not in runs)} have no run")
    head = metric_header(metric, latex)
    header = [("", "Task")] + [(_row_label(df, r, latex), head) for r in runs] + ([("", "Gain")] if gain else [])
    cells = []
    for col in columns:
        line = [escape_latex(set_label(col.group, spec)) if latex else set_label(col.group, spec)]
        line += [cell_text(df, r, col, {**spec, "delta": None}, None, latex) for r in runs]
        if gain:
            a, b = (_num(df, g, col.key) for g in gain)
            text = MISSING_LATEX if latex else MISSING_TEXT
            if a is not None and b is not None:
                text = f"{round(b, col.decimals) - round(a, col.decimals):+.{col.decimals}f}"
                if _num(df, gain[1], col.key + ":sig") == 1.0 and spec.get("compare_to") == gain[0]:
                    text += r"$^{*}$" if latex else "\\*"
            line.append(text)
        cells.append(line)
    index = pd.MultiIndex.from_tuples(header)
    return pd.DataFrame(cells, columns=index), pd.DataFrame("", index=range(len(cells)), columns=index), 0


# ---------------------------------------------------------------------------------------------------------
# notes, caption
# ---------------------------------------------------------------------------------------------------------
def footnotes(df: pd.DataFrame, spec: Mapping[str, Any], latex: bool) -> list[str]:
    """The table's notes: significance method, unmarked columns, published sources, random VGG rows."""
    spec = normalize_spec(spec)
    notes: list[tuple[str, str, str]] = []  # (LaTeX mark, text mark, plain text)
    sig = df.attrs.get("significance")
    if sig:
        notes.append((r"$^{*}$", "\\*",
                      f"difference to {sig['reference']} significant at {sig['level'] * 100:g}%: {sig['method']}, "
                      f"{sig['resamples']:,} resamples (seed {sig['seed']}), paired over the same test images; "
                      "percentile interval excludes 0."))
    tied = [c for c in table_columns(df, spec) if c.key in set(df.attrs.get("tied", ()))]
    if tied:
        names = ", ".join(f"{set_label(c.group, spec) + ' ' if c.group else ''}{metric_header(c.metric)}" for c in tied)
        notes.append(("", "", f"No best/second mark where the top two are not significantly apart ({names})."))
    sources: dict[str, list[str]] = {}
    for row in df.index:
        if _info(df, row, "kind", "run") == "published":
            sources.setdefault(str(_info(df, row, "source", "")) or "unknown source", []).append(
                str(_info(df, row, "label", row)))
    if sources:
        parts = "; ".join(f"{', '.join(m)}: {s}" for s, m in sources.items())
        notes.append((r"$^\dagger$", "\u2020", f"Published numbers, not ranked ({parts})."))
    if any(bool(_info(df, r, "random_vgg", False)) for r in df.index):
        notes.append((r"$^\ddagger$", "\u2021", "Trained with a randomly initialised VGG in the perceptual loss "
                      "(no pretrained weights given): its perceptual term is not the published one."))
    if latex:
        return [f"{mark} {escape_latex(text)}".strip() for mark, _, text in notes]
    return [f"{mark} {text}".strip() for _, mark, text in notes]


def fill_caption(spec: Mapping[str, Any], **values: Any) -> str | None:
    """``spec["caption"]`` with ``{dataset}``-style placeholders filled (unknown ones kept as written)."""
    caption = spec.get("caption")
    if caption is None:
        return None

    class _Keep(dict):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    try:
        return str(caption).format_map(_Keep({k: v for k, v in values.items() if v is not None}))
    except (ValueError, IndexError, AttributeError):
        return str(caption)


# ---------------------------------------------------------------------------------------------------------
# LaTeX, Markdown, CSV
# ---------------------------------------------------------------------------------------------------------
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_RE = re.compile("|".join(re.escape(ch) for ch in _LATEX_SPECIAL))


def escape_latex(text: Any) -> str:
    """Escape LaTeX's special characters in plain text (σ and other Unicode are written as math)."""
    out = _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], str(text))
    for char, tex in (("\u03c3", r"$\sigma$"), ("\u00b2", r"$^2$"), ("\u00b1", r"$\pm$"), ("\u2191", r"$\uparrow$"),
                      ("\u2193", r"$\downarrow$")):
        out = out.replace(char, tex)
    return out


def render_latex(df: pd.DataFrame, spec: Mapping[str, Any], *, ssim_decimals: int | None = None) -> str:
    """The table as a LaTeX float that fits its layout's width (``\\input`` it; booktabs + graphicx)."""
    spec = _with_decimals(normalize_spec(spec), ssim_decimals)
    cells, flags, n_first = display_frame(df, spec, latex=True)
    wrap = {"best": "textbf:--rwrap;", "second": "underline:--rwrap;", "": ""}
    styler = cells.style.hide(axis="index").apply(lambda _: flags.map(wrap.get), axis=None)
    tabular = styler.to_latex(hrules=True, multicol_align="c", column_format="@{}l" + "c" * (cells.shape[1] - 1) + "@{}")
    # Styler writes neither booktabs' \cmidrule under a column group nor a rule between row groups: added here
    lines = tabular.splitlines()
    spans, start = [], 0
    groups = [a for a, _ in cells.columns]
    for j in range(1, len(groups) + 1):
        if j == len(groups) or groups[j] != groups[start]:
            if groups[start] and j - start >= 1 and cells.columns.nlevels > 1:
                spans.append(rf"\cmidrule(lr){{{start + 1}-{j}}}")
            start = j
    if spans:
        lines.insert(lines.index(r"\toprule") + 2, " ".join(spans))
    if n_first and n_first < len(cells):
        lines.insert(lines.index(r"\midrule") + 1 + n_first, r"\midrule")
    tabular = "\n".join(lines) + "\n"
    # Styler's float cannot hold a width guard around the tabular nor notes under it: the float is ours
    env, width = ("table*", r"\textwidth") if spec["layout"] == "double" else ("table", r"\linewidth")
    out = [rf"\begin{{{env}}}" + (f"[{spec['placement']}]" if spec["placement"] else ""), r"\centering"]
    if spec.get("caption"):
        out.append(rf"\caption{{{spec['caption'] if spec['raw_caption'] else escape_latex(spec['caption'])}}}")
    if spec.get("label"):
        out.append(rf"\label{{{spec['label']}}}")
    if spec["compact"]:
        out.append(r"\small\setlength{\tabcolsep}{4pt}")
    out.append(rf"\resizebox{{\ifdim\width>{width}{width}\else\width\fi}}{{!}}{{%")
    out += [tabular.rstrip("\n") + "%", "}"]
    notes = footnotes(df, spec, latex=True)
    if notes:
        out.append(r"\par\smallskip\parbox{" + width + r"}{\footnotesize " + r" \\ ".join(notes) + "}")
    out.append(rf"\end{{{env}}}")
    return "\n".join(out) + "\n"


def render_markdown(df: pd.DataFrame, spec: Mapping[str, Any], *, ssim_decimals: int | None = None) -> str:
    """The same table as a pipe table (``DataFrame.to_markdown``; best ``**bold**``, second ``<u>…</u>``)."""
    spec = _with_decimals(normalize_spec(spec), ssim_decimals)
    cells, flags, _ = display_frame(df, spec, latex=False)
    marked = cells.copy()
    for j in range(cells.shape[1]):
        for i in range(len(cells)):
            mark = flags.iat[i, j]
            if mark:
                marked.iat[i, j] = f"**{cells.iat[i, j]}**" if mark == "best" else f"<u>{cells.iat[i, j]}</u>"
    marked.columns = [f"{a} {b}".strip() for a, b in cells.columns]
    table = marked.to_markdown(index=False, disable_numparse=True,
                               colalign=["left"] + ["right"] * (cells.shape[1] - 1))
    lines = ([f"Table: {str(spec['caption']).strip()}", ""] if spec.get("caption") else []) + [table]
    notes = footnotes(df, spec, latex=False)
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def render_csv(df: pd.DataFrame, spec: Mapping[str, Any]) -> str:
    """Tidy CSV: info columns, every value column at full precision with its std / difference / CI / flag, and
    the significance test's parameters in ``sig_*`` columns."""
    spec = normalize_spec(spec)
    keys = [c.key for c in table_columns(df, spec)]
    stats = [k + s for k in keys for s in STAT_SUFFIXES if k + s in df.columns]
    out = df.reindex(columns=[c for c in INFO_COLUMNS if c in df.columns] + keys + stats)
    for key, value in (df.attrs.get("significance") or {}).items():
        out[f"sig_{key}"] = value
    first, second = ordered_rows(df, spec)
    out = out.loc[first + second]
    out.index.name = "row"
    return out.to_csv(na_rep="", lineterminator="\n")


def write_tables(df: pd.DataFrame, spec: Mapping[str, Any], out_dir: str | Path, name: str | None = None, *,
                 ssim_decimals: int | None = None) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.tex|.md|.csv``; returns ``{"tex": path, "md": path, "csv": path}``."""
    name = name or normalize_spec(spec).get("name") or "table"
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", str(name)).strip("._") or "table"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {"tex": render_latex(df, spec, ssim_decimals=ssim_decimals),
             "md": render_markdown(df, spec, ssim_decimals=ssim_decimals), "csv": render_csv(df, spec)}
    paths = {}
    for ext, text in texts.items():
        paths[ext] = out / f"{safe}.{ext}"
        paths[ext].write_text(text, encoding="utf-8")
    return paths


def _with_decimals(spec: dict[str, Any], ssim_decimals: int | None) -> dict[str, Any]:
    if ssim_decimals is not None:
        spec["decimals"] = {**spec["decimals"], "ssim": int(ssim_decimals)}
    return spec
