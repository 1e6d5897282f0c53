"""aio-tables: rendering (snapshots, pdflatex), published rows, collation from a real sqlite MLflow store, CLI."""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
import yaml

from aio.tables.collect import TablesError, collect_sweep, default_tracking_uri, find_parent_run, make_tables
from aio.tables.published import PublishedError, published_rows
from aio.tables.render import (
    escape_latex,
    rank_marks,
    render_csv,
    render_latex,
    render_markdown,
    table_columns,
    write_tables,
)
from conftest import SHARED_REFERENCE

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("AIO_UPDATE_SNAPSHOTS") == "1"
NAN = float("nan")

SPEC = {
    "name": "fixed",
    "caption": "Ablation of 50% of the LoRa_Gate & co. on {dataset}.",
    "label": "tab:fixed",
    "rows": [
        {"key": "baseline", "label": "Baseline (LoRa-Gate-Restormer)"},
        {"key": "dfrg", "label": "+ DFRG"},
        {"key": "odd", "label": "odd_{name} #1 ~ $x^2$ \\ 100%"},
        {"key": "failed", "label": "+ CSFF (failed)"},
    ],
    "metrics": ["psnr", "ssim"],
    "sets": ["SOTS", "Rain100L"],
    "average": True,
    "extra_columns": ["params_m", "gflops"],
    "published": {"benchmark": "AIO-3", "methods": ["PromptIR", "AirNet"]},
}


def _fixed_frame() -> pd.DataFrame:
    """A hand-made table: three finished runs (with a tie), a failed one, two published rows."""
    cols = ["SOTS/psnr", "SOTS/ssim", "Rain100L/psnr", "Rain100L/ssim", "avg/psnr", "avg/ssim", "params_m", "gflops"]
    runs = {
        "baseline": ("Baseline (LoRa-Gate-Restormer)", "FINISHED", [29.1234, 0.9612, 35.5, 0.9701, 32.3812, 0.9657, 1.234, 12.3456]),
        "dfrg": ("+ DFRG", "FINISHED", [29.5678, 0.9655, 35.2, 0.9701, 32.3795, 0.9678, 1.5, 13.0]),
        "odd": ("odd_{name} #1 ~ $x^2$ \\ 100%", "FINISHED", [28.9, 0.9589, 35.9, 0.9688, 32.1, 0.9641, 0.9, 9.87]),
        "failed": ("+ CSFF (failed)", "FAILED", [NAN] * len(cols)),
    }
    records = []
    for key, (label, status, values) in runs.items():
        rec = {"row": key, "label": label, "kind": "run", "status": status, "run_id": f"id-{key}", "source": ""}
        rec.update(dict(zip(cols, values)))
        records.append(rec)
    df = pd.DataFrame.from_records(records).set_index("row")
    pub = published_rows("AIO-3", ["PromptIR", "AirNet"]).reindex(columns=df.columns)
    return pd.concat([df, pub])


def _fixed_spec() -> dict:
    spec = dict(SPEC)
    spec["caption"] = spec["caption"].format(dataset="AIO-3 (synthetic)")
    return spec


def _check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"snapshot {path} is missing; run with AIO_UPDATE_SNAPSHOTS=1 to create it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        import difflib

        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True), text.splitlines(keepends=True), f"{name} (snapshot)", f"{name} (now)"
            )
        )
        pytest.fail(
            f"rendered output differs from snapshot {path}.\n"
            f"If the change is intended, regenerate with: AIO_UPDATE_SNAPSHOTS=1 pytest tests/test_tables.py\n{diff}"
        )


# -------------------------------------------------------------------------------------------------------
# rendering
# -------------------------------------------------------------------------------------------------------
def test_latex_snapshot():
    _check_snapshot("tables_fixed.tex", render_latex(_fixed_frame(), _fixed_spec()))


def test_markdown_snapshot():
    _check_snapshot("tables_fixed.md", render_markdown(_fixed_frame(), _fixed_spec()))


def test_latex_structure():
    tex = render_latex(_fixed_frame(), _fixed_spec())
    assert "\\documentclass" not in tex
    assert tex.startswith("\\begin{table}[t]\n\\centering\n")
    for token in ("\\toprule", "\\midrule", "\\bottomrule", "\\caption{", "\\label{tab:fixed}"):
        assert token in tex
    assert "\\multicolumn{2}{c}{SOTS}" in tex and "\\cmidrule(lr){2-3}" in tex and "\\multicolumn{2}{c}{Average}" in tex
    assert "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%" in tex  # only ever shrinks
    assert "50\\% of the LoRa\\_Gate \\& co." in tex
    assert "odd\\_\\{name\\} \\#1 \\textasciitilde{} \\$x\\textasciicircum{}2\\$ \\textbackslash{} 100\\%" in tex
    lines = tex.splitlines()
    failed = next(line for line in lines if line.startswith("+ CSFF (failed)"))
    assert failed.count("--") == 8 and not any(ch.isdigit() for ch in failed.split("&", 1)[1])
    # published rows: dagger, apart from the runs by a midrule, sources in a footnote inside the float
    prompt = next(i for i, line in enumerate(lines) if line.startswith("PromptIR$^\\dagger$"))
    airnet = next(i for i, line in enumerate(lines) if line.startswith("AirNet$^\\dagger$"))
    baseline = next(i for i, line in enumerate(lines) if line.startswith("Baseline"))
    assert prompt < airnet < baseline and lines[baseline - 1] == "\\midrule"
    assert "& 30.58 & 0.974 & 36.37 & 0.972 & -- & -- & 35.59 & -- \\\\" in lines[prompt]
    foot = next(line for line in lines if line.startswith("\\par"))
    assert "$^\\dagger$" in foot and "PromptIR README" in foot
    assert lines.index(foot) > lines.index("\\end{tabular}%") and lines[-1] == "\\end{table}"


def test_best_and_second_by_direction():
    df, spec = _fixed_frame(), _fixed_spec()
    marks = rank_marks(df, table_columns(df, spec))
    # higher PSNR is better
    assert marks[("dfrg", "SOTS/psnr")] == "best" and marks[("baseline", "SOTS/psnr")] == "second"
    assert ("odd", "SOTS/psnr") not in marks
    # a tie at the top (0.9701 twice) is not a "best": the column has no marks
    assert not any(key == "Rain100L/ssim" for _, key in marks)
    # compared as displayed: 32.3812 and 32.3795 both print as 32.38, a rounding tie: no marks either
    assert not any(key == "avg/psnr" for _, key in marks)
    assert marks[("dfrg", "avg/ssim")] == "best" and marks[("baseline", "avg/ssim")] == "second"
    # Params / GFLOPs are not quality metrics: unranked unless the spec says rank: all (then lower is better)
    assert not any(key in ("params_m", "gflops") for _, key in marks)
    ranked_all = rank_marks(df, table_columns(df, {**spec, "rank": "all"}))
    assert ranked_all[("odd", "gflops")] == "best" and ranked_all[("baseline", "gflops")] == "second"
    assert ranked_all[("odd", "params_m")] == "best" and ("dfrg", "params_m") not in ranked_all
    # published rows (better numbers!) and failed rows are never marked
    assert not any(row.startswith("pub:") or row == "failed" for row, _ in marks)
    tex = render_latex(df, spec)
    assert "\\textbf{29.57}" in tex and "\\underline{29.12}" in tex and "\\textbf{9.87}" not in tex
    md = render_markdown(df, spec)
    assert "**29.57**" in md and "<u>29.12</u>" in md
    failed = next(line for line in md.splitlines() if line.startswith("| + CSFF (failed)"))
    assert [c.strip() for c in failed.split("|")[2:-1]] == ["\u2013"] * 8


def test_a_tie_in_the_second_place_gets_no_second_mark():
    df = pd.DataFrame({"label": list("abc"), "kind": ["run"] * 3, "S/psnr": [30.0, 29.0, 29.001]}, index=list("abc"))
    marks = rank_marks(df, table_columns(df, {"metrics": ["psnr"], "average": False, "extra_columns": []}))
    assert marks == {("a", "S/psnr"): "best"}


def test_params_get_enough_decimals_to_tell_rows_apart():
    df = pd.DataFrame({"label": ["a", "b"], "kind": ["run"] * 2, "params_m": [0.0546, 0.0612]}, index=["a", "b"])
    spec = {"metrics": [], "average": False, "extra_columns": ["params_m"]}
    (col,) = table_columns(df, spec)
    assert col.decimals == 3 and "0.055" in render_markdown(df, spec) and "0.055" in render_latex(df, spec)


def test_single_run_not_ranked_and_ssim_decimals():
    df = pd.DataFrame(
        {"label": ["only"], "kind": ["run"], "SOTS/psnr": [30.0], "SOTS/ssim": [0.91234]}, index=["a"]
    )
    spec = {"metrics": ["psnr", "ssim"], "sets": None, "average": False, "extra_columns": []}
    tex = render_latex(df, spec, ssim_decimals=4)
    assert "\\textbf" not in tex and "0.9123" in tex and "\\multicolumn{2}{c}{SOTS}" in tex


def test_csv_tidy_full_precision(tmp_path):
    df, spec = _fixed_frame(), _fixed_spec()
    paths = write_tables(df, spec, tmp_path, name="fixed")
    assert {p.name for p in paths.values()} == {"fixed.tex", "fixed.md", "fixed.csv"}
    back = pd.read_csv(paths["csv"], index_col="row", keep_default_na=False)
    assert list(back.columns[:5]) == ["label", "kind", "status", "run_id", "source"]
    assert back.loc["baseline", "SOTS/psnr"] == "29.1234" and back.loc["baseline", "avg/psnr"] == "32.3812"
    assert back.loc["failed", "SOTS/psnr"] == "" and back.loc["pub:PromptIR", "gflops"] == ""
    assert back.loc["pub:AirNet", "source"] == "PromptIR README"
    assert render_csv(df, spec) == paths["csv"].read_text()


def test_escape_latex():
    assert escape_latex("a&b%c_d#e$f{g}h~i^j\\k") == (
        "a\\&b\\%c\\_d\\#e\\$f\\{g\\}h\\textasciitilde{}i\\textasciicircum{}j\\textbackslash{}k"
    )


def _pdflatex(tmp_path: Path, tex: str, packages: str = "\\usepackage{booktabs}\n\\usepackage{graphicx}") -> None:
    exe = shutil.which("pdflatex")
    if exe is None:
        pytest.skip("pdflatex is not on PATH (apt-get install texlive-latex-base texlive-latex-recommended)")
    (tmp_path / "table.tex").write_text(tex, encoding="utf-8")
    (tmp_path / "doc.tex").write_text(
        f"\\documentclass{{article}}\n{packages}\n\\begin{{document}}\n\\input{{table}}\n\\end{{document}}\n"
    )
    proc = subprocess.run(
        [exe, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    log = (tmp_path / "doc.log").read_text(errors="replace") if (tmp_path / "doc.log").exists() else proc.stdout
    assert proc.returncode == 0, f"pdflatex failed:\n{log[-3000:]}"
    assert (tmp_path / "doc.pdf").stat().st_size > 0


def test_latex_compiles(tmp_path):
    _pdflatex(tmp_path, render_latex(_fixed_frame(), _fixed_spec()))


def test_latex_compiles_resized_wide_float(tmp_path):
    spec = {**_fixed_spec(), "layout": "double"}
    _pdflatex(tmp_path, render_latex(_fixed_frame(), spec), "\\usepackage{booktabs}\n\\usepackage{graphicx}")


# -------------------------------------------------------------------------------------------------------
# published rows
# -------------------------------------------------------------------------------------------------------
def test_published_rows_line_up_with_aio_set_names():
    aio3 = published_rows("AIO-3")
    assert "PromptIR" in set(aio3["label"]) and set(aio3["kind"]) == {"published"}
    per_set = aio3.drop(index=["pub:DSRIR", "pub:PromptIR (DSRIR paper)"])  # published as averages only
    for name in ("BSD68_s15", "BSD68_s25", "BSD68_s50", "Rain100L", "SOTS"):
        assert per_set[f"{name}/psnr"].notna().all()
    assert aio3.loc["pub:DSRIR", "avg/psnr"] == 33.27 and math.isnan(aio3.loc["pub:DSRIR", "SOTS/psnr"])
    assert aio3.loc["pub:PromptIR", "SOTS/psnr"] == 30.58 and aio3.loc["pub:PromptIR", "params_m"] == 35.59
    assert math.isnan(aio3.loc["pub:DFPIR", "params_m"])  # not reported: stays empty
    aio5 = published_rows("AIO-5", ["AdaIR"])
    assert list(aio5.index) == ["pub:AdaIR"] and aio5.loc["pub:AdaIR", "LOLv1/psnr"] == 23.00
    cdd = published_rows("cdd11", ["OneRestore"])
    assert cdd.loc["pub:OneRestore", "avg/ssim"] == 0.8784
    with pytest.raises(PublishedError, match="known: AIO-3, AIO-5, CDD11, RainSnow"):
        published_rows("AIO-7")
    with pytest.raises(PublishedError, match="no published AIO-3 numbers for NoSuchNet"):
        published_rows("AIO-3", ["NoSuchNet"])


def test_published_csv_is_the_reference_copy():
    ref = SHARED_REFERENCE / "published_results.csv"
    if not ref.exists():
        pytest.skip("reference CSV not available here")
    from aio.tables.published import csv_path

    assert csv_path().read_bytes().startswith(ref.read_bytes())  # method branches append rows (DSRIR, seed 004)


# -------------------------------------------------------------------------------------------------------
# a real sqlite MLflow store
# -------------------------------------------------------------------------------------------------------
STORE_SPEC = {
    "name": "ablation",
    "caption": "Ablation of the LoRa-Gate-Restormer components on {dataset}.",
    "label": "tab:ablation",
    "rows": [
        {"key": "baseline", "label": "Baseline (LoRa-Gate-Restormer)"},
        {"key": "dfrg", "label": "+ DFRG"},
        {"key": "csff", "label": "+ CSFF"},
        {"key": "full", "label": "+ Mixed loss"},
    ],
    "metrics": ["psnr", "ssim"],
    "sets": None,
    "average": True,
    "extra_columns": ["params_m", "gflops"],
    "published": {"benchmark": "AIO-3", "methods": ["PromptIR"]},
}
SETS = ["BSD68_s25", "Rain100L", "SOTS"]
# row -> (psnr offset, ssim, params M, GFLOPs)
RESULTS = {"baseline": (0.0, 0.900, 1.20, 10.5), "dfrg": (0.4, 0.910, 1.45, 11.25), "csff": (0.2, 0.905, 1.30, 10.75)}


def _child(client, exp_id, parent_id, row, status, start, metrics=None, label=None):
    from mlflow.entities import Metric

    tags = {"mlflow.parentRunId": parent_id, "aio.sweep": "ablation", "aio.row": row, "aio.overrides": f"experiment={row}"}
    tags["aio.row_label"] = label or row
    run = client.create_run(exp_id, run_name=row, start_time=start, tags=tags)
    rid = run.info.run_id
    client.log_param(rid, "dataset.name", "aio3")
    if metrics:
        items = []
        for key, value in metrics.items():
            items.append(Metric(key, value - 1.0, start, 0))  # an earlier, worse value: the latest one counts
            items.append(Metric(key, value, start + 1, 100))
        client.log_batch(rid, metrics=items)
    client.set_terminated(rid, status=status)
    return rid


def _run_metrics(offset, ssim, params, gflops):
    out = {}
    for i, name in enumerate(SETS):
        out[f"val/{name}/psnr"] = 30.0 + i + offset
        out[f"val/{name}/ssim"] = ssim
        out[f"val/{name}/psnr_input"] = 20.0  # ignored
    out["val/avg/psnr"] = 31.0 + offset
    out["val/avg/ssim"] = ssim
    out["model/params_m"] = params
    out["model/gflops_256"] = gflops
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite store with sweep 'ablation' (3 finished rows, a FAILED row, a re-run) and an empty sweep."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("aio", artifact_location=(root / "artifacts").as_uri())
    t0 = int(time.time() * 1000) - 100_000

    old = client.create_run(exp_id, run_name="ablation", start_time=t0, tags={"aio.role": "sweep", "aio.sweep": "ablation"})
    client.set_terminated(old.info.run_id, "FINISHED")  # an older sweep of the same name: not used
    parent = client.create_run(
        exp_id, run_name="ablation", start_time=t0 + 10,
        tags={"aio.role": "sweep", "aio.sweep": "ablation", "aio.sweep_dir": str(root / "sweep")},
    )
    pid = parent.info.run_id
    spec_file = root / "table_spec.yaml"
    spec_file.write_text(yaml.safe_dump(STORE_SPEC, sort_keys=False))
    client.log_artifact(pid, str(spec_file))
    # dfrg: a first run with worse numbers, then the re-run that counts
    _child(client, exp_id, pid, "dfrg", "FINISHED", t0 + 20, _run_metrics(-3.0, 0.5, 1.45, 11.25), "+ DFRG")
    for i, (row, values) in enumerate(RESULTS.items()):
        _child(client, exp_id, pid, row, "FINISHED", t0 + 30 + i, _run_metrics(*values))
    # csff re-run that crashed later: the finished one still counts
    _child(client, exp_id, pid, "csff", "FAILED", t0 + 50, {"val/SOTS/psnr": 1.0})
    # full: failed with no metrics at all
    _child(client, exp_id, pid, "full", "FAILED", t0 + 60)
    client.set_terminated(pid, "FINISHED")

    empty = client.create_run(exp_id, run_name="empty", start_time=t0 + 70, tags={"aio.role": "sweep", "aio.sweep": "empty"})
    client.set_terminated(empty.info.run_id, "FINISHED")
    return {"uri": uri, "root": root, "client": client, "parent": pid, "old": old.info.run_id, "empty": empty.info.run_id}


def test_collect_from_mlflow(store):
    df, spec = collect_sweep(store["client"], store["parent"])
    assert spec["sets"] == SETS
    assert spec["caption"] == "Ablation of the LoRa-Gate-Restormer components on AIO-3 (BSD68 \u03c3=15/25/50, Rain100L, SOTS)."
    assert list(df.index) == ["baseline", "dfrg", "csff", "full", "pub:PromptIR"]
    assert df.loc["dfrg", "SOTS/psnr"] == pytest.approx(32.4)  # latest value of the re-run
    assert df.loc["csff", "Rain100L/psnr"] == pytest.approx(31.2) and df.loc["csff", "status"] == "FINISHED"
    assert df.loc["baseline", "gflops"] == 10.5 and df.loc["baseline", "params_m"] == 1.2
    assert df.loc["full", "status"] == "FAILED" and df.loc["full", "label"] == "+ Mixed loss"
    numeric = [c for c in df.columns if "/" in c or c in ("params_m", "gflops")]
    assert df.loc["full", numeric].isna().all()
    assert not any("psnr_input" in c for c in df.columns)
    assert df.loc["pub:PromptIR", "SOTS/psnr"] == 30.58 and df.loc["pub:PromptIR", "BSD68_s25/psnr"] == 31.31
    assert math.isnan(df.loc["pub:PromptIR", "avg/psnr"])  # no published AIO-3 average: not derived

    tex = render_latex(df, spec)
    lines = tex.splitlines()
    full = next(line for line in lines if line.startswith("+ Mixed loss"))
    assert full == "+ Mixed loss" + " & --" * 10 + " \\\\"
    base = next(line for line in lines if line.startswith("Baseline"))
    assert "1.20" in base and "\\textbf{1.20}" not in base  # Params / GFLOPs are not ranked
    dfrg = next(line for line in lines if line.startswith("+ DFRG"))
    assert "\\textbf{32.40}" in dfrg and "\\textbf{0.910}" in dfrg and "11.25" in dfrg and "\\textbf{11.25}" not in dfrg
    csff = next(line for line in lines if line.startswith("+ CSFF"))
    assert "\\underline{32.20}" in csff and "10.75" in csff
    assert "PromptIR$^\\dagger$" in tex and "PromptIR README" in tex


def test_find_parent_run(store):
    client = store["client"]
    assert find_parent_run(client, "ablation").info.run_id == store["parent"]  # the most recent of that name
    assert find_parent_run(client, "latest").info.run_id == store["empty"]
    assert find_parent_run(client, store["old"]).info.run_id == store["old"]
    with pytest.raises(TablesError, match=r"unknown sweep 'nope'.*known sweeps: empty, ablation"):
        find_parent_run(client, "nope")
    with pytest.raises(TablesError, match="'ablation' has not been run yet.*experiment 'other'"):
        find_parent_run(client, "ablation", experiment="other")  # a sweep file of this checkout
    with pytest.raises(TablesError, match="no experiment 'other'"):
        find_parent_run(client, "nosuchsweep", experiment="other")


def test_no_children_and_missing_store(store, tmp_path):
    with pytest.raises(TablesError, match="has no child runs"):
        collect_sweep(store["client"], store["empty"])
    with pytest.raises(TablesError, match="no MLflow store at"):
        make_tables("latest", tracking_uri=f"sqlite:///{tmp_path / 'none.db'}", out_dir=tmp_path)
    assert not (tmp_path / "none.db").exists()


def test_default_tracking_uri(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("AIO_OUTPUTS", str(tmp_path))
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/x.db")
    assert default_tracking_uri() == "sqlite:////elsewhere/x.db"


def _main(argv):
    from aio.cli.tables import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_cli_errors_exit_2(store, tmp_path):
    code, _, err = _main(["nope", "--tracking-uri", store["uri"], "--out", str(tmp_path)])
    assert code == 2 and err.count("\n") == 1 and "unknown sweep 'nope'" in err and "ablation" in err
    code, _, err = _main(["empty", "--tracking-uri", store["uri"], "--out", str(tmp_path)])
    assert code == 2 and "no child runs" in err
    code, _, err = _main(["latest", "--tracking-uri", f"sqlite:///{tmp_path / 'missing.db'}"])
    assert code == 2 and "no MLflow store" in err
    code, _, err = _main(["ablation", "--tracking-uri", store["uri"], "--published", "AIO-9", "--no-log",
                          "--out", str(tmp_path)])
    assert code == 2 and "unknown published benchmark" in err


def test_cli_end_to_end(store, tmp_path):
    out = tmp_path / "tables"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"]}  # the default when no --tracking-uri is given
    proc = subprocess.run(
        [sys.executable, "-m", "aio.cli.tables", "ablation", "--out", str(out), "--published", "AIO-3"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    md = (out / "ablation.md").read_text()
    assert md in proc.stdout and str(out / "ablation.tex") in proc.stdout
    assert re.search(r"^\| Baseline \(LoRa-Gate-Restormer\) +\|", md, re.M) and re.search(r"^\| \+ Mixed loss +\| +– \|", md, re.M)
    assert "AdaIR†" in md  # --published AIO-3: every AIO-3 method
    assert "\\bottomrule" in (out / "ablation.tex").read_text()
    assert "ablation.csv" in {p.name for p in out.iterdir()}
    client = store["client"]
    logged = {Path(a.path).name for a in client.list_artifacts(store["parent"], "tables")}
    assert logged == {"ablation.tex", "ablation.md", "ablation.csv"}
    assert "Traceback" not in proc.stderr and "full (FAILED)" in proc.stderr  # a note on the failed row


def test_frame_without_spec_rows():
    """A plain multirun (no row key, rows: []): one row per job, named by its overrides, in start order."""
    from aio.tables.collect import ChildRecord, frame_from_records

    recs = [
        ChildRecord("loss=l1", "loss=l1", "FINISHED", "r1", 2, {"val/SOTS/psnr": 30.0, "val/avg/psnr": 30.0}),
        ChildRecord("loss=gfl", "loss=gfl", "RUNNING", "r2", 1, {"val/SOTS/psnr": 31.0}),
        ChildRecord("loss=l1", "loss=l1", "FINISHED", "r0", 0, {"val/SOTS/psnr": 29.0, "val/Rain100L/psnr": 1.0}),
    ]
    df, spec = frame_from_records(recs, {"rows": [], "metrics": ["psnr"], "extra_columns": []}, sweep="multirun-x")
    assert list(df.index) == ["loss=l1", "loss=gfl"] and spec["sets"] == ["SOTS"]
    assert df.loc["loss=l1", "run_id"] == "r1" and df.loc["loss=l1", "SOTS/psnr"] == 30.0
    assert df.loc["loss=gfl", "status"] == "RUNNING" and math.isnan(df.loc["loss=gfl", "SOTS/psnr"])
    assert spec["caption"] == "Results of the multirun-x sweep." and spec["label"] == "tab:multirun-x"
    md = render_markdown(df, spec)
    assert re.search(r"^\| loss=gfl +\| +– \| +– \|$", md, re.M) and "\\textbf" not in render_latex(df, spec)


def test_lower_is_better_metric_and_directions_agree_with_aio_metrics():
    from aio.tables.render import HIGHER_IS_BETTER, higher_is_better

    df = pd.DataFrame(
        {"label": ["a", "b", "c"], "kind": ["run"] * 3, "SOTS/lpips": [0.12, 0.08, 0.10]}, index=["a", "b", "c"]
    )
    spec = {"metrics": ["lpips"], "average": False, "extra_columns": []}
    marks = rank_marks(df, table_columns(df, spec))
    assert marks == {("b", "SOTS/lpips"): "best", ("c", "SOTS/lpips"): "second"}
    assert "LPIPS" in render_latex(df, spec)
    from aio.metrics import METRICS
    for name, metric in METRICS.items():
        assert higher_is_better(name) == metric.higher_is_better
        if name in HIGHER_IS_BETTER:
            assert HIGHER_IS_BETTER[name] == metric.higher_is_better, name
