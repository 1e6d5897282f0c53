"""Training as phases: the schedule's resolution, the task-mix sampler, freezing, and multi-phase runs that
resume exactly across a phase boundary; ``mixed`` is bitwise the single-phase trainer it replaced."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from aio.train import checkpoint as ckpt_io
from aio.train.phases import PhaseConfig, resolve_schedule, trainable_names
from aio.train.sampler import ResumableBatchSampler
from aio.train.trainer import Trainer
from conftest import compose_train, sqlite_uri

SNAPSHOT = Path(__file__).parent / "snapshots" / "mixed_tiny_weights.json"
TASKS = {"denoise_15": 10, "derain": 20, "dehaze": 30}


def _weights_sha256(trainer: Trainer) -> str:
    h = hashlib.sha256()
    for part, sd in (("model", trainer.model.state_dict()), ("ema", trainer.ema.module.state_dict())):
        for k in sorted(sd):
            h.update(f"{part}.{k}".encode())
            h.update(sd[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("heap", ["system", "cache"])
def test_mixed_strategy_is_bitwise_the_single_phase_trainer(tmp_path, heap):
    """The recorded weights, on glibc's default heap and on trainer.cpu_malloc=cache alike (the heap moves
    bytes, not values). Recorded with torch's default AdamW kernel (the loop), so that one is asked for."""
    from aio.train.host_memory import malloc_cache_supported

    if heap == "cache" and not malloc_cache_supported():
        pytest.skip("trainer.cpu_malloc=cache needs glibc")
    ref = json.loads(SNAPSHOT.read_text())
    here = (torch.__version__, torch.backends.cpu.get_cpu_capability())
    if here != (ref["torch"], ref["cpu"]):
        pytest.skip(f"checksum recorded with torch {ref['torch']} on {ref['cpu']}; here {here}")
    threads = torch.get_num_threads()
    torch.set_num_threads(ref["threads"])
    try:
        cfg = compose_train(ref["overrides"] + ["strategy=mixed", f"trainer.cpu_malloc={heap}",
                                                 "trainer.adamw_kernel=default"])
        trainer = Trainer(cfg, tmp_path / "run")
        trainer.fit()
    finally:
        torch.set_num_threads(threads)
    assert [p.name for p in trainer.schedule] == ["main"] and trainer.step == 6
    assert _weights_sha256(trainer) == ref["sha256"]


def _cfg(phases, **trainer):
    cfg = compose_train(["debug=tiny", "logger=none", "trainer.device=cpu"])
    with open_dict(cfg):
        cfg.strategy.phases = [OmegaConf.structured(PhaseConfig(**p)) for p in phases]
        cfg.strategy.fit_steps = None  # the declared lengths
        for k, v in trainer.items():
            cfg.trainer[k] = v
    return cfg


def test_phase_lengths_epochs_fit_and_lr_segments():
    cfg = _cfg([{"name": "a", "epochs": 1, "tasks": ["derain"]},  # ceil(20 / 2) = 10 steps
                {"name": "b", "steps": 30, "lr_scale": 0.5, "warmup_epochs": 0.2},  # ceil(0.2 * 60 / 2) = 6
                {"name": "c", "steps": 20, "schedule": "continue"}])
    with open_dict(cfg):
        cfg.strategy.fit_steps = None
    a, b, c = resolve_schedule(cfg, TASKS)
    assert (a.steps, a.tasks, a.start_step) == (10, ["derain"], 0)
    assert (b.steps, b.lr, b.warmup_steps, b.start_step) == (30, cfg.trainer.lr * 0.5, 6, 10)
    assert (c.segment_start, c.segment_steps, c.lr) == (10, 50, b.lr) and b.segment_steps == 50
    with open_dict(cfg):
        cfg.strategy.fit_steps = 12  # 10:30:20 -> 2:6:4
    assert [p.steps for p in resolve_schedule(cfg, TASKS)] == [2, 6, 4]
    with open_dict(cfg):
        cfg.strategy.until = "b"
    assert [p.name for p in resolve_schedule(cfg, TASKS)] == ["a", "b"]


@pytest.mark.parametrize("phase, message", [
    ({"tasks": ["desnow"]}, r"task\(s\) \['desnow'\] are not in dataset.tasks"),
    ({"schedule": "cosine"}, "schedule='cosine' is not one of"),
    ({"steps": 0}, "steps=0 must be >= 1"),
    ({"task_weights": {"derain": 0}}, "positive sum"),
])
def test_bad_phases_get_one_line_errors(phase, message):
    with pytest.raises(ValueError, match=message):
        resolve_schedule(_cfg([phase]), TASKS)
    with pytest.raises(ValueError, match="keeps the previous optimizer"):
        resolve_schedule(_cfg([{}, {"schedule": "continue", "lr": 1e-4}]), TASKS)


def test_sampler_task_mix_restricts_and_weights_the_stream():
    ranges = [range(0, 10), range(10, 30), range(30, 60)]
    plain = ResumableBatchSampler(60, 4, seed=3)
    same = ResumableBatchSampler(60, 4, seed=3, ranges=ranges, active=[0, 1, 2])
    assert [plain.batch(t) for t in range(20)] == [same.batch(t) for t in range(20)]
    only = ResumableBatchSampler(60, 4, seed=3, ranges=ranges, active=[1])
    items = [k % 60 for t in range(30) for k in only.batch(t)]
    assert set(items) == set(range(10, 30))  # every derain item, nothing else (5 passes over 20 items)
    weighted = ResumableBatchSampler(60, 8, seed=3, ranges=ranges, weights=[3.0, 0.0, 1.0])
    drawn = [k % 60 for t in range(100) for k in weighted.batch(t)]
    first = sum(i < 10 for i in drawn) / len(drawn)
    assert not any(10 <= i < 30 for i in drawn) and 0.70 < first < 0.80, first
    resumed = ResumableBatchSampler(60, 8, seed=3, ranges=ranges, weights=[3.0, 0.0, 1.0], start_batch=7)
    assert next(iter(resumed)) == weighted.batch(7)


def test_trainable_name_globs():
    names = ["encoder.0.weight", "encoder.0.bias", "refinement.0.weight", "output.weight"]
    assert trainable_names(names, [], ["refinement.*", "output.*"]) == ["refinement.0.weight", "output.weight"]
    assert trainable_names(names, ["*.bias"], []) == ["encoder.0.weight", "refinement.0.weight", "output.weight"]
    with pytest.raises(ValueError, match="match no parameter"):
        trainable_names(names, ["decoder.*"], [])


TWO_PHASES = [
    {"name": "warm", "steps": 2},
    {"name": "ft", "steps": 2, "tasks": ["derain", "dehaze"], "lr_scale": 0.5, "warmup_steps": 1,
     "train_only": ["refinement.*", "output.*"], "patch_size": 24, "batch_size": 3, "ema_decay": 0.9},
]


def _stop_at(step):
    def callback(trainer):
        if trainer.step == step:
            trainer.stop_requested = True

    return callback


def test_phase_boundary_changes_what_trains_and_the_batches(tmp_path):
    trainer = Trainer(_cfg(TWO_PHASES, checkpoint_every=100, val_every=100), tmp_path / "run",
                      callbacks=[_stop_at(2)])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    total = sum(p.numel() for p in trainer.model.parameters())
    assert trainer.trainable_params == total
    trainer.fit()
    assert trainer.step == 2 and trainer.phase.name == "warm"
    state = ckpt_io.load_checkpoint(tmp_path / "run")
    assert (state["phase"], state["phase_name"], state["phase_step"]) == (0, "warm", 2)

    resumed = Trainer(_cfg(TWO_PHASES, checkpoint_every=100, val_every=100), tmp_path / "run")
    resumed.enter(resumed.schedule[1])
    frozen = [n for n, p in resumed.model.named_parameters() if not p.requires_grad]
    in_optimizer = {id(p) for g in resumed.optimizer.param_groups for p in g["params"]}
    assert frozen and all(id(p) not in in_optimizer for n, p in resumed.model.named_parameters() if n in frozen)
    assert resumed.trainable_params == sum(p.numel() for p in resumed.model.parameters() if p.requires_grad) < total
    batch = next(iter(resumed.loader))
    assert batch["input"].shape[0] == 3 and batch["input"].shape[-1] == 24
    assert set(batch["task"].tolist()) <= {resumed.task_names.index("derain"), resumed.task_names.index("dehaze")}
    assert resumed.optimizer.param_groups[0]["lr"] < resumed.cfg.trainer.lr * 0.5
    assert resumed.ema.decay == 0.9
    after_warm = {k: v.clone() for k, v in resumed.model.state_dict().items()}
    resumed.fit()
    for name in frozen:
        assert torch.equal(resumed.model.state_dict()[name], after_warm[name]), name
    assert not all(torch.equal(resumed.model.state_dict()[k], before[k]) for k in before)


def test_resume_across_a_phase_boundary_is_exact_and_one_mlflow_run(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    def cfg():
        c = _cfg(TWO_PHASES, checkpoint_every=100, val_every=100)
        with open_dict(c):
            c.logger = OmegaConf.create({"name": "mlflow", "tracking_uri": mlflow_store, "experiment": "aio",
                                         "artifact_location": str(tmp_path / "art"), "log_images": False,
                                         "log_checkpoint": False})
        return c

    straight = Trainer(_cfg(TWO_PHASES, checkpoint_every=100, val_every=100), tmp_path / "a")
    straight.fit()
    for stop in (1, 3):  # mid-phase 1, then mid-phase 2 (after the boundary at step 2)
        Trainer(cfg(), tmp_path / "b", callbacks=[_stop_at(stop)]).fit()
        assert ckpt_io.load_checkpoint(tmp_path / "b")["step"] == stop
    resumed = Trainer(cfg(), tmp_path / "b")
    assert resumed.phase.name == "ft" and resumed.step == 3
    resumed.fit()
    assert resumed.step == 4
    for part, a, b in (("model", straight.model, resumed.model), ("ema", straight.ema.module, resumed.ema.module)):
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), f"{part} {key}"

    client = MlflowClient(tracking_uri=mlflow_store)
    run = client.get_run(resumed.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "phase")] == [(0, 0.0), (2, 1.0)]
    counts = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "model/trainable_params"),
                                      key=lambda m: m.step)]
    assert counts[0] > counts[1] > 0
    for key in ("val:warm/avg/psnr", "val:ft/avg/psnr", "val/avg/psnr"):
        assert key in run.data.metrics, key
    assert run.data.tags["aio.phase"] == "ft" and run.data.tags["aio.phases"] == "warm,ft"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert steps == list(range(1, 5))


def test_misspelt_phase_key_is_refused_at_compose_time():
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ConfigKeyError

    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_train(["strategy=progressive", "strategy.phases.0.lr_scal=0.5"])
    cfg = compose_train(["strategy=progressive", "strategy.phases.1.lr_scale=0.25"])
    assert cfg.strategy.phases[1].lr_scale == 0.25


def test_gfl_curriculum_advances_per_optimizer_step_over_the_phase_and_is_saved(tmp_path):
    cfg = _cfg([{"name": "only", "steps": 4}], grad_accum=2, checkpoint_every=100, val_every=100)
    with open_dict(cfg):
        cfg.loss = OmegaConf.create({"name": "gfl", "start_frequency": 2, "end_frequency": 30})
    seen = []
    trainer = Trainer(cfg, tmp_path / "run", callbacks=[lambda tr: seen.append(float(tr.loss_fn.progress))])
    trainer.fit()
    assert seen == [0.0, 0.25, 0.5, 0.75]  # set before each optimizer step, not per micro-batch (grad_accum=2)
    assert float(ckpt_io.load_checkpoint(tmp_path / "run")["loss"]["progress"]) == 0.75
