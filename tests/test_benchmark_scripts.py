"""The speed benchmark runs end to end at a toy size (a benchmark that no test runs breaks silently)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_benchmark_runs_and_reports_wall_and_cpu_time(tmp_path):
    out = tmp_path / "train_step.txt"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--models", "NAFNet", "--modes", "fp32,bf16",
         "--size", "32", "--batch", "1", "--reps", "2", "--no-profile", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["model"], r["mode"]) for r in rows] == [("NAFNet", "fp32"), ("NAFNet", "bf16")]
    for r in rows:
        assert len(r["times"]) == len(r["cpu_times"]) == 2 and all(t > 0 for t in r["times"] + r["cpu_times"])
        assert r["median_s"] > 0 and r["gflops"] > 0
    assert "NAFNet [aio fp32]" in out.read_text()
