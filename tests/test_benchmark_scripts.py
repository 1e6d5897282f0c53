"""The speed benchmark runs end to end at a toy size (a benchmark that no test runs breaks silently)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_benchmark_runs_and_reports_wall_and_cpu_time(tmp_path):
    """Our modes under aio's heap here, and fp32 on glibc's default heap in the spawned worker process."""
    from aio.train.host_memory import resolve_cpu_malloc

    out = tmp_path / "train_step.txt"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--models", "NAFNet", "--modes", "fp32,bf16",
         "--system-malloc-modes", "fp32", "--size", "32", "--batch", "1", "--reps", "2", "--no-profile",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.with_suffix(".json").read_text())
    heap = resolve_cpu_malloc("auto", "cpu")
    assert result["malloc"] == heap
    expected = [("NAFNet", "fp32", heap), ("NAFNet", "bf16", heap)] + ([("NAFNet", "fp32", "system")] if heap == "cache" else [])
    assert [(r["model"], r["mode"], r["malloc"]) for r in result["rows"]] == expected
    for r in result["rows"]:
        assert len(r["times"]) == len(r["cpu_times"]) == 2 and all(t > 0 for t in r["times"] + r["cpu_times"])
        assert r["median_s"] > 0 and r["gflops"] > 0
    assert "NAFNet [aio fp32]" in out.read_text()
