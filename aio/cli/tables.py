"""``aio-tables``: turn a sweep's MLflow runs into LaTeX / Markdown / CSV tables.

    aio-tables <sweep name | parent run id | latest> [more sweeps to collate ...] [--tracking-uri URI] [--experiment aio]
               [--out outputs/tables] [--published AIO-3 [--published-methods PromptIR,AirNet]]
               [--ssim-decimals 4] [--no-log]

Reads MLflow only (never the run folders), writes ``<out>/<sweep>.tex|.md|.csv``, logs them (and the
``summary/<row>/<column>`` metrics) on the sweep's parent run and prints the Markdown table and the paths. Errors are one line on
stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aio-tables",
        description="Camera-ready tables (LaTeX, Markdown, CSV) from the MLflow runs of a sweep.",
    )
    p.add_argument("target", nargs="+",
                   help="sweep name, parent run id, or 'latest' (most recent sweep); several: one collated table "
                        "(the first one's spec, e.g. columns_by: preset)")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<outputs>/mlflow.db)",
    )
    p.add_argument("--experiment", default="aio", help="MLflow experiment of the sweep parents (default: aio)")
    p.add_argument("--out", default=None, help="output folder (default: <outputs>/tables)")
    p.add_argument(
        "--published",
        default=None,
        metavar="BENCHMARK",
        help="add published reference rows of this benchmark (AIO-3, AIO-5, CDD11); 'none' drops the spec's",
    )
    p.add_argument(
        "--published-methods",
        default=None,
        metavar="A,B",
        help="with --published: only these methods, in this order (default: all of the benchmark)",
    )
    p.add_argument("--ssim-decimals", type=int, default=None, help="SSIM decimals (default 3)")
    p.add_argument("--no-log", action="store_true", help="do not log the tables on the parent run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from aio.tables.collect import TablesError, make_tables
    from aio.tables.published import PublishedError
    from aio.tables.render import SpecError

    published = args.published
    if args.published_methods:
        if not published:
            print("aio-tables: error: --published-methods needs --published BENCHMARK", file=sys.stderr)
            return 2
        methods = [m.strip() for m in args.published_methods.split(",") if m.strip()]
        published = {"benchmark": published, "methods": methods}
    try:
        result = make_tables(
            args.target[0] if len(args.target) == 1 else args.target,
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            out_dir=args.out,
            published=published,
            ssim_decimals=args.ssim_decimals,
            log_artifacts=not args.no_log,
        )
    except (TablesError, SpecError, PublishedError) as err:
        print(f"aio-tables: error: {err}", file=sys.stderr)
        return 2
    print(result.markdown)
    for note in result.notes:
        print(f"[aio-tables] note: {note}", file=sys.stderr)
    for ext in ("tex", "md", "csv"):
        print(f"[aio-tables] wrote {result.paths[ext]}")
    if result.logged:
        print(f"[aio-tables] logged to run {result.parent_run_id} (sweep {result.sweep}) under tables/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
