"""README's measured figures are the committed benchmark outputs (issue 18: a stale README fails).

Every row of README's "Measured figures" table whose source cell cites ``benchmarks/results/<file>`` is checked:
the script it names exists, and every number in the row's figure and value cells is a number of that file at
the README's precision (``23.86`` matches ``23.86``; ``516`` matches ``515.8``; ``1.8 GB`` matches ``1780`` MB:
one factor of 1000 is allowed for a unit step). A row that cites nothing (``make demo``, the suite's own time) must at least name the command it timed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)")


def _rows() -> list[tuple[str, str, str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Measured figures", 1)[1].split("\n## ", 1)[0]
    rows, previous = [], ""
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("figure", "") and not set(cells[0]) <= {"-"}:
            if cells[2] == "same":  # "same" = the source of the row above
                cells[2] = previous
            previous = cells[2]
            rows.append(tuple(cells))
    return rows


def _numbers(text: str) -> list[str]:
    return NUMBER.findall(text.replace("`", " "))


def _matches(readme_value: str, file_values: list[float]) -> bool:
    decimals = len(readme_value.split(".")[1]) if "." in readme_value else 0
    x = float(readme_value)
    tol = 0.5 * 10 ** -decimals + 1e-9
    return any(abs(y - x) <= tol or abs(y / 1000 - x) <= tol for y in file_values)


ROWS = _rows()


def test_the_table_is_found():
    assert len(ROWS) >= 5, "README's '## Measured figures' table was not found or lost its rows"


@pytest.mark.parametrize("figure,value,source", ROWS, ids=[r[0][:40] for r in ROWS])
def test_readme_figure_matches_its_benchmark_output(figure, value, source):
    cited = re.findall(r"benchmarks/results/[\w.\-]+", source)
    if not cited:
        assert re.search(r"timed with|measured with|`[^`]+`", f"{figure} {source}"), (
            f"README figure {figure!r} cites no benchmarks/results file and says nothing about how it was measured")
        return
    scripts = re.findall(r"benchmarks/[\w\-]+\.py", source)
    for script in scripts:
        assert (REPO / script).is_file(), f"README cites {script}, which does not exist"
    file_values = []
    for path in cited:
        assert (REPO / path).is_file(), f"README cites {path}, which is not committed"
        file_values += [float(v) for v in _numbers((REPO / path).read_text())]
    stale = [v for v in _numbers(f"{figure} {value}") if not _matches(v, file_values)]
    assert not stale, (f"README figures {stale} of row {figure!r} are not in {', '.join(cited)}: "
                       "re-run the benchmark and update README (or the committed output)")


def test_a_stale_figure_is_caught():
    import json

    text = (REPO / "benchmarks/results/default_run.json").read_text()
    values = [float(v) for v in _numbers(text)]
    run = json.loads(text)
    psnr, wall = run["val_psnr_restored_db"], run["wall_s"]
    assert _matches(f"{psnr:.2f}", values) and _matches(f"{wall:.1f}", values)
    assert not _matches(f"{psnr + 0.1:.2f}", values) and not _matches(f"{wall + 1.3:.0f}", values)
