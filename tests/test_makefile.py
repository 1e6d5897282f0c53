"""The Makefile's venv step: a disk too full for torch's wheels stops with one line before pip starts."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_new_venv_refuses_a_disk_without_room(tmp_path):
    venv = tmp_path / "sub" / "venv"
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "venv", f"VENV={venv}", "VENV_MIN_FREE_GIB=100000000"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, proc.stderr
    assert "GiB free under" in error[0] and "VENV_MIN_FREE_GIB=100000000" in error[0]
    assert not venv.exists()  # nothing was installed
