"""trainer.cpu_malloc / cpu_malloc: the choice, its one-line errors, and that ``cache`` really stops the page
faults of re-mapping freed tensors (measured in a fresh process: the pytest process's heap is shared)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aio.train import host_memory
from aio.train.trainer import Trainer
from conftest import compose_train

needs_glibc = pytest.mark.skipif(not host_memory.malloc_cache_supported(), reason="needs glibc's mallopt")

# Ten small training steps whose activations (2 x 8 x 768^2 fp32: 38 MB, above glibc's largest dynamic mmap
# threshold) are freed every step; prints the minor page faults of the last four.
_FAULTS = """
import json, resource, sys, torch
from aio.train.host_memory import apply_cpu_malloc, current_cpu_malloc
mode = apply_cpu_malloc(sys.argv[1], "cpu")
torch.manual_seed(0)
w = torch.randn(8, 3, 3, 3, requires_grad=True)
def step():
    x = torch.rand(2, 3, 768, 768)
    torch.nn.functional.conv2d(x, w, padding=1).relu().square().mean().backward()
for _ in range(6):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"mode": mode, "current": current_cpu_malloc(), "faults": faults / 4}))
"""


def _faults_per_step(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_cache_stops_refaulting_freed_tensors():
    system, cache = _faults_per_step("system"), _faults_per_step("cache")
    assert system["mode"] == system["current"] == "system"
    assert cache["mode"] == cache["current"] == "cache"
    activation_pages = 2 * 8 * 768 * 768 * 4 / 4096
    assert system["faults"] > activation_pages / 512  # mmap'd afresh each step (>= 1 fault per 2 MiB huge page)
    assert cache["faults"] < 0.05 * system["faults"]  # reused from the heap (measured: 0, once 2%)


def test_choices_and_errors(monkeypatch):
    assert host_memory.resolve_cpu_malloc("system", "cpu") == "system"
    assert host_memory.resolve_cpu_malloc("auto", "cuda") == "system"  # GPU tensors do not live in the C heap
    expected = "cache" if host_memory.malloc_cache_supported() else "system"
    assert host_memory.resolve_cpu_malloc("auto", "cpu") == expected
    assert host_memory.resolve_cpu_malloc(None, "cpu") == expected
    with pytest.raises(ValueError, match="^trainer.cpu_malloc=jemalloc is not one of auto, cache, system$"):
        host_memory.resolve_cpu_malloc("jemalloc", "cpu")
    monkeypatch.setattr(host_memory, "malloc_cache_supported", lambda: False)
    assert host_memory.resolve_cpu_malloc("auto", "cpu") == "system"
    with pytest.raises(ValueError, match="^cpu_malloc=cache needs glibc's mallopt .*; use cpu_malloc=auto or system$"):
        host_memory.resolve_cpu_malloc("cache", "cpu", key="cpu_malloc")


def test_trainer_rejects_a_bad_mode_before_any_work(tiny_overrides, tmp_path):
    cfg = compose_train([o for o in tiny_overrides if not o.startswith("logger.")]
                        + ["logger=none", "trainer.cpu_malloc=tcmalloc"])
    with pytest.raises(ValueError, match="^trainer.cpu_malloc=tcmalloc is not one of auto, cache, system$"):
        Trainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_trainer_applies_and_records_the_mode(tiny_overrides, tmp_path):
    trainer = Trainer(compose_train(tiny_overrides), tmp_path / "run")
    assert trainer.cpu_malloc == host_memory.resolve_cpu_malloc("auto", "cpu") == host_memory.current_cpu_malloc()
    import mlflow

    from aio.tracking import names

    run = mlflow.MlflowClient(trainer.cfg.logger.tracking_uri).get_run(trainer.mlflow_run_id)
    assert run.data.tags[names.TAG_CPU_MALLOC] == trainer.cpu_malloc
    assert run.data.params["trainer.cpu_malloc"] == "auto"
