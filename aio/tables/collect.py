"""Collect a sweep's results from MLflow into the table DataFrame (one row per table row).

Only MLflow is read (never the run folders): the sweep's parent run (``aio.role=sweep``, ``aio.sweep``,
artifact ``table_spec.yaml``) and its children (``mlflow.parentRunId``; row in ``aio.row``, seed in
``aio.seed``). Per (row, seed) the latest FINISHED child counts (re-runs, resumed sweeps); a row with no
finished child shows its latest child's status and empty cells. A cell is the mean over the row's seeds of
the latest logged value of its metric (``<key>:std`` the sample std when there are several seeds).

With ``compare_to`` the per-image CSVs (``per_image/<prefix>/<set>.csv``, logged by every validation and
``aio-eval``) of each row and of the reference row are read and each cell gets the paired bootstrap of
:mod:`aio.tables.stats`; the top two of every ranked column are tested against each other the same way (a
column whose top two are not significantly apart gets no best/second marks).

``columns_by: preset`` collates the runs of one sweep over several dataset presets (or of several sweeps:
:func:`collect_many`) into one column group per preset, from each preset's average (``val/avg/*``).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aio.tables import stats
from aio.tables.labels import PRESET_COLUMNS, preset_name
from aio.tables.render import AVG_SET, extra_column_info, fill_caption, normalize_spec, render_markdown, table_columns
from aio.tables.render import top_two, write_tables
from aio.tracking import names

_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class TablesError(RuntimeError):
    """A one-line, user-facing error (unknown sweep, missing store, no children, bad spec)."""


def _retry(fn):
    from aio.tracking.mlflow_tracker import with_retry

    return with_retry(fn)


# ---------------------------------------------------------------------------------------------------------
# store and parent run
# ---------------------------------------------------------------------------------------------------------
def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<outputs>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    from aio.paths import outputs_dir

    return f"sqlite:///{outputs_dir() / 'mlflow.db'}"


def open_client(tracking_uri: str | None = None):
    """An ``MlflowClient``; a missing sqlite database is an error (MLflow would create an empty one)."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.is_file():
            raise TablesError(f"no MLflow store at {db} (tracking URI {uri}); run a sweep first or pass --tracking-uri")
    elif uri.startswith("file:") or "://" not in uri:
        raise TablesError(f"tracking URI {uri} is a file store, which MLflow 3 refuses; use sqlite:///<path>/mlflow.db")
    return MlflowClient(tracking_uri=uri)


def _search_all(client, experiment_ids: Sequence[str], filter_string: str = "") -> list:
    runs: list = []
    token = None
    while True:
        page = _retry(lambda: client.search_runs(experiment_ids=list(experiment_ids), filter_string=filter_string,
                                                 max_results=1000, page_token=token))
        runs.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return runs


def sweep_parents(client, experiment: str = "aio") -> list:
    """The sweep parent runs of ``experiment``, most recent first."""
    exp = _retry(lambda: client.get_experiment_by_name(experiment))
    if exp is None:
        known = [e.name for e in _retry(lambda: client.search_experiments())]
        raise TablesError(
            f"no experiment {experiment!r} in the MLflow store; known: {', '.join(known) or 'none'} (use --experiment)"
        )
    runs = _search_all(client, [exp.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_SWEEP}'")
    return sorted(runs, key=lambda r: (r.info.start_time or 0), reverse=True)


def known_sweeps(client, experiment: str = "aio") -> list[str]:
    """Names of the sweeps with a parent run in ``experiment``, most recent first."""
    return list(dict.fromkeys(r.data.tags.get(names.TAG_SWEEP, r.info.run_name) for r in sweep_parents(client, experiment)))


def sweep_files() -> list[str]:
    """The sweeps this checkout defines (``sweeps/*.yaml``)."""
    from aio.paths import SWEEPS_DIR

    return sorted(p.stem for p in Path(SWEEPS_DIR).glob("*.yaml"))


def find_parent_run(client, target: str, experiment: str = "aio"):
    """The parent run for ``target``: a run id, a sweep name (its most recent parent) or ``latest``."""
    target = str(target).strip()
    if _RUN_ID_RE.match(target):
        try:
            return _retry(lambda: client.get_run(target))
        except Exception:  # not a run id of this store: try it as a sweep name
            pass
    try:
        parents = sweep_parents(client, experiment)
    except TablesError:
        if target not in sweep_files():
            raise
        parents = []
    if target == "latest":
        if not parents:
            raise TablesError(f"no sweep runs (tag {names.TAG_ROLE}={names.ROLE_SWEEP}) in experiment {experiment!r}")
        return parents[0]
    for run in parents:
        if run.data.tags.get(names.TAG_SWEEP) == target:
            return run
    if target in sweep_files():
        from aio.config import sweep_app
        from aio.paths import CONF_DIR

        how = ("aio-eval -m sweep={} checkpoint=<run>" if sweep_app(CONF_DIR, target) == "eval"
               else "aio-train -m sweep={} [scale=tiny]").format(target)
        raise TablesError(f"sweep {target!r} has not been run yet (no parent run in experiment {experiment!r}); "
                          f"run it with: {how}")
    known = list(dict.fromkeys(r.data.tags.get(names.TAG_SWEEP, r.info.run_name) for r in parents))
    raise TablesError(f"unknown sweep {target!r} in experiment {experiment!r}; known sweeps: "
                      f"{', '.join(known) or 'none'}; sweep files: {', '.join(sweep_files())}")


def load_spec(client, parent_run_id: str) -> dict[str, Any] | None:
    """The parent's ``table_spec.yaml`` artifact as a dict, or None when it has none."""
    import yaml

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = _retry(lambda: client.download_artifacts(parent_run_id, names.SPEC_ARTIFACT, tmp))
        except Exception:
            return None
        text = Path(local).read_text(encoding="utf-8")
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise TablesError(f"{names.SPEC_ARTIFACT} of run {parent_run_id} is not valid YAML ({err})") from err
    if spec is not None and not isinstance(spec, Mapping):
        raise TablesError(f"{names.SPEC_ARTIFACT} of run {parent_run_id} is not a mapping")
    return dict(spec or {})


def child_runs(client, parent) -> list:
    """The children of ``parent`` (searched in its experiment, then in every experiment)."""
    flt = f"tags.`{names.TAG_PARENT}` = '{parent.info.run_id}'"
    runs = _search_all(client, [parent.info.experiment_id], flt)
    if not runs:
        others = [e.experiment_id for e in _retry(lambda: client.search_experiments())
                  if e.experiment_id != parent.info.experiment_id]
        if others:
            runs = _search_all(client, others, flt)
    return runs


# ---------------------------------------------------------------------------------------------------------
# records -> DataFrame
# ---------------------------------------------------------------------------------------------------------
@dataclass
class ChildRecord:
    """What the table needs from one child run (built from an MLflow ``Run`` or by hand in tests)."""

    row: str
    label: str | None
    status: str
    run_id: str
    start_time: int
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    set_order: list[str] = field(default_factory=list)
    seed: str = "0"
    random_vgg: bool = False

    @property
    def dataset(self) -> str:
        return str(self.params.get("dataset.name") or "")

    @classmethod
    def from_run(cls, run) -> ChildRecord:
        tags = run.data.tags
        return cls(
            # a sweep without a row key (plain multirun): the job's overrides tell the rows apart
            row=str(tags.get(names.TAG_ROW) or tags.get(names.TAG_OVERRIDES) or run.info.run_name or run.info.run_id),
            label=tags.get(names.TAG_ROW_LABEL) or tags.get(names.TAG_OVERRIDES),
            status=str(run.info.status),
            run_id=run.info.run_id,
            start_time=int(run.info.start_time or 0),
            metrics=dict(run.data.metrics),  # MLflow gives the latest value of each metric
            params=dict(run.data.params),
            set_order=[x for x in tags.get(names.TAG_VAL_SETS, "").split(",") if x],
            seed=str(tags.get(names.TAG_SEED) or run.data.params.get("seed") or "0"),
            random_vgg=tags.get(names.TAG_RANDOM_VGG) == "random-init",
        )


def _pick(records: list[ChildRecord]) -> ChildRecord:
    finished = [r for r in records if r.status == "FINISHED"]
    return max(finished or records, key=lambda r: r.start_time)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def frame_from_records(records: Sequence[ChildRecord], spec: Mapping[str, Any] | None = None, *,
                       sweep: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Pivot child records into the table DataFrame (mean and std over seeds); returns it with the resolved
    spec (explicit sets, filled caption, rows). Published rows and significance are added by the callers."""
    spec = normalize_spec(spec)
    spec["name"] = spec.get("name") or sweep or "table"
    by_preset = spec["columns_by"] == "preset"
    cells: dict[tuple[str, str, str], list[ChildRecord]] = {}  # (row, seed, preset) -> records
    for rec in sorted(records, key=lambda r: r.start_time):
        cells.setdefault((rec.row, rec.seed, rec.dataset if by_preset else ""), []).append(rec)
    chosen = {key: _pick(recs) for key, recs in cells.items()}

    rows = list(spec["rows"] or [])
    declared = [r["key"] for r in rows]
    known = set(declared)
    for (row, _, _), rec in chosen.items():
        if row not in known:
            rows.append({"key": row, "label": rec.label or row, "note": ""})
            known.add(row)
    spec["rows"] = rows
    finished: dict[str, list[ChildRecord]] = {r["key"]: [] for r in rows}
    for (row, _, _), rec in chosen.items():
        if rec.status == "FINISHED":
            finished[row].append(rec)

    metrics = [str(m) for m in spec["metrics"]]
    # validation metrics of training runs, or the test metrics of evaluation runs (metric_prefix: test)
    metric_key = names.test_metric if spec["metric_prefix"] == "test" else names.val_metric
    prefix = metric_key("", "").split("/")[0] + "/"
    wanted: dict[str, str] = {}  # column -> MLflow key (per record)
    scales: dict[str, float] = {}  # column -> factor on the logged value (extra columns with `scale`)
    if by_preset:
        presets = list(spec["sets"] or dict.fromkeys(r.dataset for recs in finished.values() for r in recs))
        spec["sets"], spec["average"] = presets, False
        for preset in presets:
            for metric in metrics:
                wanted[f"{preset}/{metric}"] = metric_key(AVG_SET, metric)
    else:
        shown = [r for recs in finished.values() for r in recs]
        order = next((list(r.set_order) for r in shown if r.set_order), [])
        seen = [k.split("/")[1] for r in shown for k in r.metrics
                if k.count("/") == 2 and k.startswith(prefix) and k.split("/")[2] in metrics]
        all_sets = [s for s in dict.fromkeys(order + seen) if s != AVG_SET and s in seen]
        if spec["sets"] is None:
            spec["sets"] = all_sets
        spec["sets"] = [str(s) for s in spec["sets"] if str(s) != AVG_SET]
        for set_name in spec["sets"] + ([AVG_SET] if spec["average"] else []):
            for metric in metrics:
                wanted[f"{set_name}/{metric}"] = metric_key(set_name, metric)
    for entry in spec["extra_columns"]:
        info = extra_column_info(entry)
        wanted[str(info["key"])] = str(info["mlflow"])
        if info.get("scale") is not None:
            scales[str(info["key"])] = float(info["scale"])
    param_keys = [str(e["key"] if isinstance(e, Mapping) else e) for e in spec["param_columns"]]

    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        key, recs = row["key"], finished[row["key"]]
        latest = [rec for (r, _, _), rec in chosen.items() if r == key]
        status = "FINISHED" if recs else (_pick(latest).status if latest else "MISSING")
        line: dict[str, Any] = {
            "label": row["label"], "kind": "run", "status": status,
            "run_id": ",".join(r.run_id for r in recs) or (_pick(latest).run_id if latest else ""),
            "source": "", "n_seeds": len({r.seed for r in recs}), "note": row.get("note", ""),
            "random_vgg": any(r.random_vgg for r in recs),
        }
        for column, mkey in wanted.items():
            preset = column.split("/")[0] if by_preset and mkey.startswith(prefix) else None
            pool = [r for r in recs if preset is None or r.dataset == preset]
            pool = list({r.seed: r for r in pool}.values())  # a model figure: one value per seed, any preset
            scale = scales.get(column, 1.0)
            mean, std, _ = stats.seed_mean_std([r.metrics[mkey] * scale for r in pool if mkey in r.metrics])
            line[column] = mean
            if len(pool) > 1 and not mkey.startswith("model/"):
                line[column + ":std"] = std
        for pkey in param_keys:
            values = {_float(r.params.get(pkey)) for r in recs}
            line[pkey] = values.pop() if len(values) == 1 else float("nan")
        table[key] = line
    df = pd.DataFrame.from_dict(table, orient="index")
    df.index.name = "row"
    df.attrs["avg_sets"] = [] if by_preset else all_sets  # the sets an average column is the mean of
    df.attrs["declared_rows"] = declared  # the spec's own rows (a transposed table shows only these)
    for column in list(wanted) + param_keys:
        if column not in df.columns:
            df[column] = float("nan")

    datasets = list(dict.fromkeys(r.dataset for r in records if r.dataset))
    seeds = sorted({int(n) for n in df["n_seeds"] if n}) if len(df) else []
    spec["label"] = spec.get("label") or f"tab:{spec['name']}"
    if spec.get("caption") is None:
        spec["caption"] = "Results of the {sweep} sweep" + (" on {dataset}." if datasets else ".")
    caption = fill_caption(spec, dataset=", ".join(preset_name(d) for d in datasets) or None,
                           sweep=sweep or spec["name"])
    if seeds and max(seeds) > 1 and "sample std over" not in str(caption):
        n = f"n={seeds[0]}" if len(seeds) == 1 else f"n={seeds[0]}-{seeds[-1]}"
        caption = f"{caption} Mean \u00b1 sample std over {n} seeds."
    spec["caption"] = caption
    return df, spec


# ---------------------------------------------------------------------------------------------------------
# significance from the per-image artifacts
# ---------------------------------------------------------------------------------------------------------
class PerImageStore:
    """Per-image rows of child runs, downloaded once per (run, prefix): ``frame(run_id, prefix, set)``."""

    def __init__(self, client) -> None:
        self.client = client
        self._tmp = tempfile.TemporaryDirectory()
        self._cache: dict[tuple[str, str], Path | None] = {}

    def frame(self, run_id: str, prefix: str, set_name: str) -> pd.DataFrame | None:
        key = (run_id, prefix)
        if key not in self._cache:
            dest = Path(self._tmp.name) / run_id / prefix
            dest.mkdir(parents=True, exist_ok=True)
            try:
                self._cache[key] = Path(_retry(lambda: self.client.download_artifacts(
                    run_id, names.per_image_dir(prefix), str(dest))))
            except Exception:  # a run from before per-image logging: no test for its cells
                self._cache[key] = None
        folder = self._cache[key]
        path = folder / names.per_image_file(set_name) if folder is not None else None
        return pd.read_csv(path) if path is not None and path.is_file() else None


def _arrays(store: PerImageStore, a: Sequence[str], b: Sequence[str], prefix: str, sets: Sequence[str],
            metric: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """``({set: [seeds, images]}, ...)`` for run ids ``a`` and ``b``, images aligned by id (inner join)."""
    out_a, out_b = {}, {}
    for set_name in sets:
        frames = {rid: store.frame(rid, prefix, set_name) for rid in list(a) + list(b)}
        if any(f is None or metric not in f.columns for f in frames.values()):
            return None
        common = set.intersection(*(set(f["image"].astype(str)) for f in frames.values()))
        if not common:
            return None
        order = sorted(common)
        pick = {rid: f.set_index(f["image"].astype(str)).loc[order, metric].to_numpy(float) for rid, f in frames.items()}
        out_a[set_name] = np.stack([pick[r] for r in a])
        out_b[set_name] = np.stack([pick[r] for r in b])
    return out_a, out_b


def _column_scope(col, avg_sets: Sequence[str]) -> tuple[str, list[str], str] | None:
    """``(per-image prefix, sets, metric)`` a column's values are the mean of, or None (no per-image data)."""
    parts = col.source_key.split("/")
    if len(parts) != 3 or col.kind == "param":
        return None
    prefix, set_name, metric = parts
    if set_name == AVG_SET:
        return (prefix, list(avg_sets), metric) if avg_sets else None
    return prefix, [set_name], metric


def add_significance(df: pd.DataFrame, spec: Mapping[str, Any], store: PerImageStore) -> pd.DataFrame:
    """Per cell vs ``compare_to`` (``<key>:diff/:ci_low/:ci_high/:sig``) and the top-two test of ranked
    columns (``df.attrs["tied"]``), from the per-image CSVs; ``df.attrs["significance"]`` records the test."""
    spec = normalize_spec(spec)
    ref = spec.get("compare_to")
    if ref is None or spec["columns_by"] == "preset":
        return df
    ref = str(ref)
    if ref not in df.index:
        raise TablesError(f"table spec compare_to={ref!r} is not a row of this table ({', '.join(map(str, df.index))})")
    sig = spec["significance"]
    opts = {"resamples": int(sig.get("resamples", stats.DEFAULT_RESAMPLES)),
            "level": float(sig.get("level", stats.DEFAULT_LEVEL)), "seed": int(sig.get("seed", stats.DEFAULT_SEED))}
    ids = {row: [r for r in str(df.at[row, "run_id"]).split(",") if r] for row in df.index
           if df.at[row, "kind"] == "run" and df.at[row, "status"] == "FINISHED"}
    if ref not in ids:
        return df
    df = df.copy()
    avg_sets = df.attrs.get("avg_sets") or []
    columns = [c for c in table_columns(df, spec) if _column_scope(c, avg_sets) is not None]
    tested = False
    for col in columns:
        prefix, sets, metric = _column_scope(col, avg_sets)
        for row, run_ids in ids.items():
            if row == ref:
                continue
            arrays = _arrays(store, run_ids, ids[ref], prefix, sets, metric)
            if arrays is None:
                continue
            res = stats.paired_bootstrap(*arrays, **opts)
            df.loc[row, [col.key + s for s in (":diff", ":ci_low", ":ci_high", ":sig")]] = [
                res.diff, res.low, res.high, float(res.significant)]
            tested = True
    tied = []
    for col in columns:
        pair = top_two(df, col) if col.ranked else None
        if pair is None or not all(p in ids for p in pair):
            continue
        prefix, sets, metric = _column_scope(col, avg_sets)
        arrays = _arrays(store, ids[pair[0]], ids[pair[1]], prefix, sets, metric)
        if arrays is not None and not stats.paired_bootstrap(*arrays, **opts).significant:
            tied.append(col.key)
    df.attrs["tied"] = tied
    if tested:
        label = str(df.at[ref, "label"])
        df.attrs["significance"] = {"reference": label, "method": stats.METHOD, **opts}
    return df


# ---------------------------------------------------------------------------------------------------------
# published rows
# ---------------------------------------------------------------------------------------------------------
def add_published(df: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """``df`` with the reference rows of ``spec["published"]`` appended (per preset for ``columns_by: preset``)."""
    from aio.tables.published import PublishedError, published_rows

    spec = normalize_spec(spec)
    try:
        if spec["columns_by"] == "preset":
            rows = _published_per_preset(spec, published_rows)
        elif spec.get("published"):
            rows = published_rows(str(spec["published"]["benchmark"]), spec["published"].get("methods"))
        else:
            return df
    except PublishedError as err:
        raise TablesError(str(err)) from err
    if rows is None or not len(rows):
        return df
    from aio.tables.render import extra_column_info

    for entry in spec.get("extra_columns") or []:  # {key: test_x8/avg/psnr, published_set: test_x8}: the CSV's
        info = extra_column_info(entry)           # rows with that test_set fill the metric-key column
        source = f"{info['published_set']}/{info['metric']}" if info.get("published_set") else None
        if source in rows.columns:
            rows[info["key"]] = rows[source]
    rows = rows.reindex(columns=df.columns)
    return pd.concat([df, rows], axis=0) if len(df) else rows


def _published_per_preset(spec: dict[str, Any], published_rows) -> pd.DataFrame | None:
    """One published row per method: ``<preset>/<metric>`` = the benchmark's published average (or the mean of
    its published per-set numbers when the source gives no average), ``params_m`` from any benchmark."""
    methods = (spec.get("published") or {}).get("methods")
    table: dict[str, dict[str, Any]] = {}
    for preset in spec["sets"] or []:
        entry = spec["presets"].get(preset) or {}
        benchmark = entry.get("published") if isinstance(entry, Mapping) else None
        benchmark = benchmark or PRESET_COLUMNS.get(preset, (None, None))[1]
        if not benchmark:
            continue
        pub = published_rows(str(benchmark))
        for row in pub.index:
            if methods and pub.at[row, "label"] not in methods:
                continue
            line = table.setdefault(row, {"label": pub.at[row, "label"], "kind": "published", "status": "",
                                          "run_id": "", "source": pub.at[row, "source"], "params_m": float("nan")})
            if np.isnan(_float(line["params_m"])):
                line["params_m"] = pub.at[row, "params_m"]
            for metric in spec["metrics"]:
                avg = _float(pub.at[row, f"avg/{metric}"]) if f"avg/{metric}" in pub.columns else float("nan")
                per_set = [c for c in pub.columns if c.endswith(f"/{metric}") and not c.startswith("avg/")]
                if np.isnan(avg) and per_set and pub.loc[row, per_set].notna().all():
                    avg = float(pub.loc[row, per_set].astype(float).mean())
                line[f"{preset}/{metric}"] = avg
    if not table:
        return None
    return pd.DataFrame.from_dict(table, orient="index")


# ---------------------------------------------------------------------------------------------------------
# one sweep, several sweeps, everything the CLI does
# ---------------------------------------------------------------------------------------------------------
def _published_override(published: str | Mapping[str, Any]) -> dict[str, Any] | None:
    if isinstance(published, Mapping):
        return dict(published)
    if str(published).lower() in ("", "none", "off"):
        return None
    return {"benchmark": str(published), "methods": None}


def collect_many(client, parent_run_ids: Sequence[str], spec: Mapping[str, Any] | None = None, *,
                 published: str | Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Collect the children of one or more sweep parents into one table (``spec`` defaults to the first
    parent's ``table_spec.yaml``): several sweeps run on different presets make one ``columns_by: preset``
    table. Raises :class:`TablesError` when there are no children."""
    parents = [_retry(lambda pid=pid: client.get_run(pid)) for pid in parent_run_ids]
    if spec is None:
        spec = load_spec(client, parents[0].info.run_id)
    spec = normalize_spec(spec)
    if published is not None:
        spec["published"] = _published_override(published)
    sweep = "+".join(p.data.tags.get(names.TAG_SWEEP) or p.info.run_name or p.info.run_id for p in parents)
    records = []
    for parent in parents:
        children = child_runs(client, parent)
        if not children:
            name = parent.data.tags.get(names.TAG_SWEEP) or parent.info.run_id
            raise TablesError(f"sweep {name!r} (run {parent.info.run_id}) has no child runs")
        records += [ChildRecord.from_run(run) for run in children]
    df, spec = frame_from_records(records, spec, sweep=sweep)
    df = add_significance(df, spec, PerImageStore(client))
    attrs = dict(df.attrs)
    df = add_published(df, spec)
    df.attrs.update(attrs)
    return df, spec


def collect_sweep(client, parent_run_id: str, spec: Mapping[str, Any] | None = None, *,
                  published: str | Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Query MLflow for the sweep ``parent_run_id`` and pivot it into the table DataFrame."""
    return collect_many(client, [parent_run_id], spec, published=published)


@dataclass
class TablesResult:
    parent_run_id: str
    sweep: str
    df: pd.DataFrame
    spec: dict[str, Any]
    paths: dict[str, Path]
    markdown: str
    logged: bool
    notes: list[str] = field(default_factory=list)


def table_notes(df: pd.DataFrame, spec: Mapping[str, Any]) -> list[str]:
    """Warnings worth printing: rows without a finished run, published rows that share no column."""
    notes: list[str] = []
    runs = df[df["kind"] == "run"]
    not_done = [f"{row} ({status})" for row, status in runs["status"].items() if status != "FINISHED"]
    if not_done:
        notes.append(f"rows without a finished run, shown as \u2013: {', '.join(not_done)}")
    published = df[df["kind"] == "published"]
    if len(published):
        keys = [c.key for c in table_columns(df, spec) if c.group is not None]
        if not (keys and published.reindex(columns=keys).notna().to_numpy().any()):
            notes.append(f"published numbers share no test set with this sweep "
                         f"({', '.join(spec.get('sets') or []) or 'none'}); only their params are shown")
    return notes


def summary_metrics(df: pd.DataFrame, spec: Mapping[str, Any]) -> dict[str, float]:
    """``summary/<row>/<column>`` = the table's cells (mean over seeds) of the sweep's finished rows."""
    out = {}
    for col in table_columns(df, spec):
        for row in df.index:
            if df.at[row, "kind"] == "run" and not pd.isna(df.at[row, col.key]):
                out[names.sweep_summary_metric(str(row), col.key.replace("@", "_at_"))] = float(df.at[row, col.key])
    return out


def make_tables(target: str | Sequence[str], *, tracking_uri: str | None = None, experiment: str = "aio",
                out_dir: str | Path | None = None, published: str | Mapping[str, Any] | None = None,
                ssim_decimals: int | None = None, log_artifacts: bool = True) -> TablesResult:
    """Resolve ``target`` (sweep name, parent run id, ``latest``, or several of them to collate), collect,
    write ``<out>/<sweep>.tex|md|csv`` and log them (and the summary metrics) on the (first) parent run."""
    client = open_client(tracking_uri)
    targets = [target] if isinstance(target, str) else list(target)
    parents = [find_parent_run(client, t, experiment) for t in targets]
    parent_id = parents[0].info.run_id
    df, spec = collect_many(client, [p.info.run_id for p in parents], published=published)
    sweep = "+".join(p.data.tags.get(names.TAG_SWEEP) or p.info.run_name or p.info.run_id for p in parents)
    if out_dir is None:
        from aio.paths import outputs_dir

        out_dir = outputs_dir() / "tables"
    paths = write_tables(df, spec, out_dir, name=sweep, ssim_decimals=ssim_decimals)
    if log_artifacts:
        for path in paths.values():
            _retry(lambda p=path: client.log_artifact(parent_id, str(p), names.TABLES_ARTIFACT_DIR))
        log_summary(client, parent_id, df, spec)
    return TablesResult(parent_id, sweep, df, spec, paths, render_markdown(df, spec, ssim_decimals=ssim_decimals),
                        log_artifacts, table_notes(df, spec))


def log_summary(client, parent_id: str, df: pd.DataFrame, spec: Mapping[str, Any]) -> None:
    """Log :func:`summary_metrics` on the parent run (MLflow's UI then compares sweeps at a glance)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, v, now, 0) for k, v in summary_metrics(df, spec).items()]
    for i in range(0, len(items), 500):
        _retry(lambda chunk=items[i:i + 500]: client.log_batch(parent_id, metrics=chunk))
