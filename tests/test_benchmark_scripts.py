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
         "--system-malloc-modes", "fp32", "--size", "32", "--batch", "1", "--reps", "2", "--profile-rows", "NAFNet",
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
    text = out.read_text()
    assert "NAFNet [aio fp32]" in text
    # --profile-rows: the fp32 case profiled here and, for the glibc-heap one, in the worker process
    assert f"torch.profiler top-10, one step of NAFNet [aio fp32] ({heap} heap):" in text
    if heap == "cache":
        assert "torch.profiler top-10, one step of NAFNet [aio fp32] (system heap):" in text


def test_conv_ceiling_is_the_reference_step_over_our_convolution_time():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_step import Case, conv_ceiling_line

    def case(impl, mode, times, malloc="cache"):
        return Case("Net", impl, mode, None, None, 1.0, times=times, malloc=malloc)

    ours, ours_cl = case("aio", "fp32", [1.0, 1.2, 1.1]), case("aio", "fp32_cl", [0.9, 1.0, 0.8])
    ref = case("reference", "fp32", [1.3, 1.2, 1.25], malloc="system")
    shares = {id(ours): 0.5, id(ours_cl): 0.8, id(ref): 0.75}
    line = conv_ceiling_line("Net", [ours, ours_cl, ref], shares)
    # fastest of ours: fp32_cl, 0.9 s median x 80% = 0.72 s of convolutions; 1.25 / 0.72 = 1.74x
    assert "aio fp32_cl (cache heap) 80%" in line and "reference fp32 (system heap) 75%" in line
    assert "0.720 s" in line and "1.74x (reference on the system heap)" in line
    assert conv_ceiling_line("Net", [ours], shares) is None and conv_ceiling_line("Other", [ours, ref], shares) is None


def test_row_labels_keep_their_inner_commas():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_step import label_list, select_rows

    assert label_list("DSRIR, Full (0.5, 0.8),,Restormer") == ["DSRIR", "Full (0.5, 0.8)", "Restormer"]
    assert [label for label, _ in select_rows("dsrir,full (0.5, 0.8)")] == ["DSRIR", "Full (0.5, 0.8)"]
