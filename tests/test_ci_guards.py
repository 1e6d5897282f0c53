"""Under CI=true, inputs that tests would skip for (../shared, pdflatex) fail the run instead (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICK = "tests/test_ci_guards.py::test_ci_script_does_not_ignore_a_failed_install"  # the sub-runs' target

def _pytest(tmp_path, **env):
    e = dict(os.environ, PYTHONPATH=str(REPO), **env)
    e.pop("PYTEST_XDIST_WORKER", None)
    e.pop("PYTEST_XDIST_WORKER_COUNT", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", QUICK],
                          cwd=REPO, env=e, capture_output=True, text=True, timeout=300)


def test_missing_shared_fails_under_ci(tmp_path):
    r = _pytest(tmp_path, CI="true", AIO_SHARED_REFERENCE=str(tmp_path / "nowhere"))
    assert r.returncode == 3, r.stdout[-2000:]
    assert "CI=true, but the tests would skip" in r.stdout + r.stderr and "nowhere" in r.stdout + r.stderr
    import conftest

    saved = conftest.SHARED_REFERENCE
    conftest.SHARED_REFERENCE = tmp_path / "nowhere"
    try:  # locally the same check is only a reason to skip
        assert any("nowhere" in m for m in conftest.ci_missing_requirements())
    finally:
        conftest.SHARED_REFERENCE = saved


def test_missing_pdflatex_fails_under_ci(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    r = _pytest(tmp_path, CI="true", PATH=str(bin_dir))
    assert r.returncode == 3 and "pdflatex is not on PATH" in r.stdout + r.stderr, r.stdout[-2000:]


def test_ci_script_does_not_ignore_a_failed_install():
    script = (REPO / ".ci" / "run").read_text()
    assert "|| echo" not in script and "set -euo pipefail" in script
    assert "exit 1" in script.split("apt-get install", 1)[1].split("fi", 1)[0]
