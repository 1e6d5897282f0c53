"""Camera-ready tables from a sweep's MLflow runs (``aio-tables``).

- :func:`aio.tables.collect.collect_sweep` ``(client, parent_run_id, spec=None, *, published=None)
  -> (DataFrame, spec)``: query MLflow and pivot the children into one row per table row;
- :func:`aio.tables.render.render_latex` / :func:`~aio.tables.render.render_markdown` /
  :func:`~aio.tables.render.render_csv` ``(df, spec) -> str`` and
  :func:`~aio.tables.render.write_tables` ``(df, spec, out_dir, name) -> {"tex", "md", "csv": Path}``;
- :func:`aio.tables.collect.make_tables` ``(target, *, tracking_uri, experiment, out_dir, published, ...)``:
  everything the CLI does (resolve the parent run, collect, write, log the files on the parent);
- :func:`aio.tables.published.published_rows` ``(benchmark, methods=None) -> DataFrame``: reference rows.

Submodules are imported lazily so ``import aio.tables`` stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "collect_sweep": "aio.tables.collect",
    "make_tables": "aio.tables.collect",
    "find_parent_run": "aio.tables.collect",
    "frame_from_records": "aio.tables.collect",
    "TablesError": "aio.tables.collect",
    "render_latex": "aio.tables.render",
    "render_markdown": "aio.tables.render",
    "render_csv": "aio.tables.render",
    "write_tables": "aio.tables.render",
    "normalize_spec": "aio.tables.render",
    "published_rows": "aio.tables.published",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aio.tables' has no attribute {name!r}")
