"""Collect a sweep's results from MLflow into a pandas DataFrame (one row per table row).

Only MLflow is read (never the run folders): the sweep's parent run (tags ``aio.role=sweep``,
``aio.sweep=<name>``, artifact ``table_spec.yaml``) and its children (tag ``mlflow.parentRunId``, row key
in ``aio.row``, label in ``aio.row_label``). For each row key the latest FINISHED child is used (re-runs);
when a row has no finished child its latest child is shown with empty cells (a FAILED job's partial
metrics are not shown). Each cell is the latest logged value of ``val/<set>/<metric>``,
``val/avg/<metric>``, ``model/params_m`` or ``model/gflops_256``.

See :mod:`aio.tables.render` for the DataFrame's layout and the rendering rules.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from aio.tables.render import (
    AVG_SET,
    extra_column_info,
    fill_caption,
    normalize_spec,
    render_markdown,
    write_tables,
)

ROLE_TAG = "aio.role"
SWEEP_TAG = "aio.sweep"
SWEEP_DIR_TAG = "aio.sweep_dir"
ROW_TAG = "aio.row"
ROW_LABEL_TAG = "aio.row_label"
OVERRIDES_TAG = "aio.overrides"
PARENT_TAG = "mlflow.parentRunId"
VAL_SETS_TAG = "aio.val_sets"  # comma-separated test sets in the preset's order
SPEC_ARTIFACT = "table_spec.yaml"
TABLES_ARTIFACT_PATH = "tables"
SWEEP_ROLE = "sweep"

_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class TablesError(RuntimeError):
    """A one-line, user-facing error (unknown sweep, missing store, no children, bad spec)."""


def _retry(fn):
    try:
        from aio.tracking.mlflow_tracker import with_retry
    except Exception:  # tracking helpers unavailable: call once
        return fn()
    return with_retry(fn)


# ---------------------------------------------------------------------------------------------------------
# store and parent run
# ---------------------------------------------------------------------------------------------------------
def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<outputs>/mlflow.db`` (``aio.paths.outputs_dir()``)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    from aio.paths import outputs_dir

    return f"sqlite:///{outputs_dir() / 'mlflow.db'}"


def open_client(tracking_uri: str | None = None):
    """An ``MlflowClient`` for ``tracking_uri`` (default: :func:`default_tracking_uri`); a missing sqlite
    database is an error here (MLflow would silently create an empty one)."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if not db.is_file():
            raise TablesError(f"no MLflow store at {db} (tracking URI {uri}); run a sweep first or pass --tracking-uri")
    elif uri.startswith("file:") or "://" not in uri:
        raise TablesError(f"tracking URI {uri} is a file store, which MLflow 3 refuses; use sqlite:///<path>/mlflow.db")
    return MlflowClient(tracking_uri=uri)


def _search_all(client, experiment_ids: Sequence[str], filter_string: str = "", order_by=None) -> list:
    runs: list = []
    token = None
    while True:
        page = _retry(
            lambda: client.search_runs(
                experiment_ids=list(experiment_ids),
                filter_string=filter_string,
                max_results=1000,
                order_by=order_by,
                page_token=token,
            )
        )
        runs.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return runs


def sweep_parents(client, experiment: str = "aio") -> list:
    """The sweep parent runs of ``experiment``, most recent first."""
    exp = _retry(lambda: client.get_experiment_by_name(experiment))
    if exp is None:
        names = [e.name for e in _retry(lambda: client.search_experiments())]
        raise TablesError(
            f"no experiment {experiment!r} in the MLflow store; known: {', '.join(names) or 'none'} (use --experiment)"
        )
    runs = _search_all(client, [exp.experiment_id], f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'")
    return sorted(runs, key=lambda r: (r.info.start_time or 0), reverse=True)


def known_sweeps(client, experiment: str = "aio") -> list[str]:
    """Names of the sweeps with a parent run in ``experiment``, most recent first."""
    return list(dict.fromkeys(r.data.tags.get(SWEEP_TAG, r.info.run_name) for r in sweep_parents(client, experiment)))


def find_parent_run(client, target: str, experiment: str = "aio"):
    """The parent run for ``target``: a run id, a sweep name (its most recent parent) or ``latest``."""
    target = str(target).strip()
    if _RUN_ID_RE.match(target):
        try:
            return _retry(lambda: client.get_run(target))
        except Exception:  # not a run id of this store: try it as a sweep name
            pass
    parents = sweep_parents(client, experiment)
    if target == "latest":
        if not parents:
            raise TablesError(f"no sweep runs (tag {ROLE_TAG}={SWEEP_ROLE}) in experiment {experiment!r}")
        return parents[0]
    for run in parents:
        if run.data.tags.get(SWEEP_TAG) == target:
            return run
    names = list(dict.fromkeys(r.data.tags.get(SWEEP_TAG, r.info.run_name) for r in parents))
    raise TablesError(
        f"unknown sweep {target!r} in experiment {experiment!r}; known sweeps: {', '.join(names) or 'none'}"
    )


def load_spec(client, parent_run_id: str) -> dict[str, Any] | None:
    """The parent's ``table_spec.yaml`` artifact as a dict, or None when it has none."""
    import yaml

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = _retry(lambda: client.download_artifacts(parent_run_id, SPEC_ARTIFACT, tmp))
        except Exception:
            return None
        text = Path(local).read_text(encoding="utf-8")
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise TablesError(f"{SPEC_ARTIFACT} of run {parent_run_id} is not valid YAML ({err})") from err
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise TablesError(f"{SPEC_ARTIFACT} of run {parent_run_id} is not a mapping")
    return dict(spec)


def child_runs(client, parent) -> list:
    """The children of ``parent`` (searched in its experiment, then in every experiment)."""
    parent_id = parent.info.run_id
    flt = f"tags.`{PARENT_TAG}` = '{parent_id}'"
    runs = _search_all(client, [parent.info.experiment_id], flt)
    if not runs:
        ids = [e.experiment_id for e in _retry(lambda: client.search_experiments())]
        others = [i for i in ids if i != parent.info.experiment_id]
        if others:
            runs = _search_all(client, others, flt)
    return runs


# ---------------------------------------------------------------------------------------------------------
# DataFrame
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
    set_order: list[str] = field(default_factory=list)  # the dataset preset's order of its test sets

    @classmethod
    def from_run(cls, run) -> ChildRecord:
        tags = run.data.tags
        return cls(
            # a sweep without a row key (plain multirun): the job's overrides tell the rows apart
            row=str(tags.get(ROW_TAG) or tags.get(OVERRIDES_TAG) or run.info.run_name or run.info.run_id),
            label=tags.get(ROW_LABEL_TAG) or tags.get(OVERRIDES_TAG),
            status=str(run.info.status),
            run_id=run.info.run_id,
            start_time=int(run.info.start_time or 0),
            metrics=dict(run.data.metrics),  # MLflow gives the latest value of each metric
            params=dict(run.data.params),
            set_order=[x for x in tags.get(VAL_SETS_TAG, "").split(",") if x],
        )


def _pick(records: list[ChildRecord]) -> ChildRecord:
    finished = [r for r in records if r.status == "FINISHED"]
    pool = finished or records
    return max(pool, key=lambda r: r.start_time)


def frame_from_records(
    records: Sequence[ChildRecord],
    spec: Mapping[str, Any] | None = None,
    *,
    sweep: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Pivot child records into the table DataFrame; returns it with the resolved spec (explicit sets,
    filled caption, rows). Published rows are not added here (see :func:`add_published`)."""
    spec = normalize_spec(spec)
    spec["name"] = spec.get("name") or sweep or "table"
    by_row: dict[str, list[ChildRecord]] = {}
    for rec in sorted(records, key=lambda r: r.start_time):
        by_row.setdefault(rec.row, []).append(rec)

    # rows: the spec's, in its order, then rows found only in the runs (in start order)
    rows = list(spec["rows"] or [])
    known = {r["key"] for r in rows}
    for key, recs in by_row.items():
        if key not in known:
            rows.append({"key": key, "label": _pick(recs).label or key})
    spec["rows"] = [{"key": r["key"], "label": r["label"]} for r in rows]

    chosen = {key: _pick(recs) for key, recs in by_row.items()}
    shown = {key: rec for key, rec in chosen.items() if rec.status == "FINISHED"}

    # test sets: explicit, or every set with a requested metric, first seen in row order; avg goes last
    metrics = [str(m) for m in spec["metrics"]]
    if spec["sets"] is None:
        # the preset's own order (tag written by the trainer) first, then any other set seen in the runs
        sets: list[str] = next((list(r.set_order) for r in shown.values() if r.set_order), [])
        sets = [s for s in sets if any(f"val/{s}/{m}" in r.metrics for r in shown.values() for m in metrics)]
        for row in rows:
            rec = shown.get(row["key"])
            if rec is None:
                continue
            for key in rec.metrics:
                parts = key.split("/")
                if len(parts) == 3 and parts[0] == "val" and parts[2] in metrics and parts[1] != AVG_SET:
                    if parts[1] not in sets:
                        sets.append(parts[1])
        spec["sets"] = sets
    else:
        spec["sets"] = [str(s) for s in spec["sets"] if str(s) != AVG_SET]
    set_list = list(spec["sets"]) + ([AVG_SET] if spec["average"] else [])
    wanted: dict[str, str] = {}  # MLflow key -> column
    for set_name in set_list:
        for metric in metrics:
            wanted[f"val/{set_name}/{metric}"] = f"{set_name}/{metric}"
    for entry in spec["extra_columns"]:
        info = extra_column_info(entry)
        wanted[str(info["mlflow"])] = str(info["key"])

    long = [
        {"row": key, "column": column, "value": float(rec.metrics[mkey])}
        for key, rec in shown.items()
        for mkey, column in wanted.items()
        if mkey in rec.metrics
    ]
    order = [r["key"] for r in rows]
    columns = list(dict.fromkeys(wanted.values()))
    if long:
        values = pd.DataFrame(long).pivot(index="row", columns="column", values="value")
    else:
        values = pd.DataFrame(index=pd.Index([], name="row"))
    values = values.reindex(index=order, columns=columns).astype(float)
    info = pd.DataFrame(
        {
            "label": [r["label"] for r in rows],
            "kind": ["run"] * len(rows),
            "status": [chosen[r["key"]].status if r["key"] in chosen else "MISSING" for r in rows],
            "run_id": [chosen[r["key"]].run_id if r["key"] in chosen else "" for r in rows],
            "source": [""] * len(rows),
        },
        index=pd.Index(order, name="row"),
    )
    df = pd.concat([info, values], axis=1)
    df.index.name = "row"

    datasets = list(
        dict.fromkeys(rec.params["dataset.name"] for rec in chosen.values() if rec.params.get("dataset.name"))
    )
    spec["label"] = spec.get("label") or f"tab:{spec['name']}"
    if spec.get("caption") is None:
        spec["caption"] = "Results of the {sweep} sweep" + (" on {dataset}." if datasets else ".")
    spec["caption"] = fill_caption(spec, dataset=", ".join(datasets) or None, sweep=sweep or spec["name"])
    return df, spec


def add_published(df: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """``df`` with the reference rows of ``spec["published"]`` (``{benchmark, methods}``) appended."""
    pub = normalize_spec(spec).get("published")
    if not pub:
        return df
    from aio.tables.published import PublishedError, published_rows

    try:
        rows = published_rows(str(pub["benchmark"]), pub.get("methods"))
    except PublishedError as err:
        raise TablesError(str(err)) from err
    rows = rows.reindex(columns=df.columns)
    return pd.concat([df, rows], axis=0) if len(df) else rows


def collect_sweep(
    client,
    parent_run_id: str,
    spec: Mapping[str, Any] | None = None,
    *,
    published: str | Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Query MLflow for the sweep ``parent_run_id`` and pivot it into the table DataFrame.

    ``spec`` defaults to the parent's ``table_spec.yaml`` artifact (or a default spec: every row found,
    PSNR/SSIM per set, average, params and GFLOPs). ``published`` (a benchmark name or
    ``{benchmark, methods}``; a bare name means every method of that benchmark, "none" drops them)
    overrides the spec's reference rows. Returns ``(df, resolved spec)``.
    Raises :class:`TablesError` when the parent has no children.
    """
    parent = _retry(lambda: client.get_run(parent_run_id))
    if spec is None:
        spec = load_spec(client, parent_run_id)
    spec = normalize_spec(spec)
    if published is not None:
        spec["published"] = _published_override(published)
        spec = normalize_spec(spec)
    sweep = parent.data.tags.get(SWEEP_TAG) or parent.info.run_name or parent_run_id
    children = child_runs(client, parent)
    if not children:
        raise TablesError(f"sweep {sweep!r} (run {parent_run_id}) has no child runs")
    records = [ChildRecord.from_run(run) for run in children]
    df, spec = frame_from_records(records, spec, sweep=sweep)
    df = add_published(df, spec)
    return df, spec


def _published_override(published: str | Mapping[str, Any]) -> dict[str, Any] | None:
    """``published`` as ``{benchmark, methods}``: a bare benchmark name means all its methods; "none" drops."""
    if isinstance(published, Mapping):
        return dict(published)
    if str(published).lower() in ("", "none", "off"):
        return None
    return {"benchmark": str(published), "methods": None}


# ---------------------------------------------------------------------------------------------------------
# one call: resolve, collect, write, log
# ---------------------------------------------------------------------------------------------------------
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
    """Warnings worth printing: rows without a finished run, published rows that share no test set."""
    notes: list[str] = []
    runs = df[df["kind"] == "run"]
    not_done = [f"{row} ({status})" for row, status in runs["status"].items() if status != "FINISHED"]
    if not_done:
        notes.append(f"rows without a finished run, shown as \u2013: {', '.join(not_done)}")
    published = df[df["kind"] == "published"]
    if len(published):
        set_cols = [c for c in df.columns if "/" in c and not c.startswith("val/")]
        shared = bool(set_cols) and bool(published[set_cols].notna().to_numpy().any())
        if not shared:
            pub = normalize_spec(spec)["published"] or {}
            notes.append(
                f"published {pub.get('benchmark')} numbers share no test set with this sweep "
                f"({', '.join(spec.get('sets') or []) or 'none'}); only their params are shown"
            )
    return notes


def make_tables(
    target: str,
    *,
    tracking_uri: str | None = None,
    experiment: str = "aio",
    out_dir: str | Path | None = None,
    published: str | Mapping[str, Any] | None = None,
    ssim_decimals: int | None = None,
    log_artifacts: bool = True,
) -> TablesResult:
    """Resolve ``target`` (sweep name, parent run id or ``latest``), collect, write ``<out>/<sweep>.tex|md|csv``
    (``out`` defaults to ``<outputs>/tables``) and log them on the parent run under ``tables/``."""
    client = open_client(tracking_uri)
    parent = find_parent_run(client, target, experiment)
    parent_id = parent.info.run_id
    df, spec = collect_sweep(client, parent_id, published=published)
    sweep = parent.data.tags.get(SWEEP_TAG) or parent.info.run_name or parent_id
    if out_dir is None:
        from aio.paths import outputs_dir

        out_dir = outputs_dir() / "tables"
    paths = write_tables(df, spec, out_dir, name=sweep, ssim_decimals=ssim_decimals)
    if log_artifacts:
        for path in paths.values():
            _retry(lambda p=path: client.log_artifact(parent_id, str(p), TABLES_ARTIFACT_PATH))
    return TablesResult(
        parent_run_id=parent_id,
        sweep=sweep,
        df=df,
        spec=spec,
        paths=paths,
        markdown=render_markdown(df, spec, ssim_decimals=ssim_decimals),
        logged=log_artifacts,
        notes=table_notes(df, spec),
    )
