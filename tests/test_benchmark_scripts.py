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


def test_default_run_pairs_two_seed_studies_seed_by_seed(tmp_path, monkeypatch):
    import pytest

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import default_run

    other = {"command": "aio-train ", "seeds": [2, 0, 1], "val_psnr_restored_db": [22.78, 23.82, 23.63]}
    (tmp_path / "base.json").write_text(json.dumps(other))
    monkeypatch.setattr(default_run, "RESULTS", tmp_path)
    loaded = default_run.load_paired("base", [0, 1, 2])
    gaps = default_run.paired_gaps([0, 1, 2], [23.41, 23.98, 23.37], "base", loaded)
    assert gaps["paired_gap_db"] == [-0.41, 0.35, 0.59]  # matched by seed, not by position
    assert gaps["paired_gap_mean_db"] == 0.18 and gaps["paired_gap_max_abs_db"] == 0.59
    assert gaps["paired_with"] == "base" and gaps["paired_command"] == "aio-train "
    with pytest.raises(SystemExit, match=r"no run at seed\(s\) \[3\]; pair it with --seeds 2,0,1"):
        default_run.load_paired("base", [0, 3])
    with pytest.raises(SystemExit, match="--paired-with nothing: .* does not exist"):
        default_run.load_paired("nothing", [0])


def test_conv_recorder_counts_every_conv2d_call_by_kernel():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from conv_share import ConvRecorder, describe, time_call

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 1),
                              torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False))
    x = torch.rand(1, 3, 16, 16)
    with ConvRecorder() as rec:
        net(x), net(x.contiguous(memory_format=torch.channels_last))
    assert sum(rec.calls.values()) == 6 and len(rec.calls) == 6  # the layout is part of the key
    with ConvRecorder() as rec:
        net(x), net(x)
    assert sorted(rec.calls.values()) == [2, 2, 2]
    first = next(k for k in rec.calls if k.shape == (1, 3, 16, 16))
    assert first.x_grad is False and first.w_grad is True  # the input needs no gradient, the weight does
    assert [describe(k).split("(")[-1] for k in rec.calls] == ["dense)", "dense)", "depthwise)"]
    assert time_call(first, reps=2) > 0


def test_conv_share_benchmark_runs(tmp_path):
    out = tmp_path / "conv_share.txt"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "conv_share.py"), "--models", "NAFNet", "--modes", "fp32",
         "--size", "32", "--batch", "1", "--reps", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "NAFNet [aio fp32]: step" in text and "of the step" in text and " ms  x" in text
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "conv_share.py"), "--modes", "bf16_compile"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "cannot be re-timed call by call" in bad.stderr


def test_paired_ratio_is_the_median_of_the_reps_own_ratios():
    import statistics

    import pytest

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_step import paired_ratio

    speed = [1.0, 1.0, 1.6, 1.6, 1.6]  # the box slows down after two reps
    ours = [1.0 * s for s in speed]
    ref = [2.2, 2.2, 1.9 * 1.6, 1.9 * 1.6, 1.9 * 1.6]  # 2.2x, 2.2x, then 1.9x of ours in the same reps
    assert paired_ratio(ref, ours) == pytest.approx(1.9)
    assert statistics.median(ref) / statistics.median(ours) == pytest.approx(1.9)
    assert paired_ratio(ref[:2] + [3.3] * 3, ours[:2] + [1.0] * 3) == pytest.approx(3.3)  # pairs, not positions
    with pytest.raises(ValueError, match="one step per rep on both sides: 2 vs 1"):
        paired_ratio([1.0, 2.0], [1.0])
