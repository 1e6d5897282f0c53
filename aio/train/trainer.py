"""The trainer: plain PyTorch, iteration-based, a loop over phases, readable top to bottom.

``Trainer(cfg, run_dir).fit()`` does, in order: check the config and the data; resolve the run's phases from
``cfg.strategy`` (:mod:`aio.train.phases`; the default ``mixed`` is one phase); build the model, the loss,
timm's EMA and a GradScaler; resume from ``last.pt`` when there is one (it holds the phase index and the
in-phase step); then ``for phase in schedule: enter(phase); train steps`` where ``enter`` applies the phase's
freeze globs and builds its optimizer, LR schedule, loss, augmentation and batch stream
(:mod:`aio.train.builders`). Each step does gradient accumulation, autocast and clipping; the loop logs,
validates (also at the end of every phase, as ``val:<phase>/...``) and saves ``last.pt`` atomically as it
goes. A stop request (SIGTERM/SIGUSR2 from SLURM, or a callback) saves and returns; a non-finite loss stops
with a clear error and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import logging
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import aio
from aio.losses.contract import compute_loss
from aio.tracking import names
from aio.tracking.mlflow_tracker import error_tag
from aio.train import builders
from aio.train import checkpoint as ckpt_io
from aio.train.distributed import (
    DistInfo, barrier, broadcast_object, cleanup_distributed, init_distributed, mean_over_ranks,
)
from aio.train.phases import Phase, resolve_schedule
from aio.train.host_memory import apply_cpu_malloc, resolve_cpu_malloc
from aio.train.precision import AMP_CHOICES, amp_dtype, maybe_compile
from aio.train.sampler import VirtualIndexDataset, task_ranges  # noqa: F401  (VirtualIndexDataset: old import path)

log = logging.getLogger("aio.train")


def say(message: str) -> None:
    """What the console shows, through logging (Hydra sends it to the console and ``train.log``); printed
    when nothing configured logging (a Trainer used from Python)."""
    if logging.getLogger().handlers or log.handlers:
        log.info(message)
    else:
        print(message, flush=True)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is left untouched."""


class DatasetLayoutError(RuntimeError):
    """The dataset's folder layout is broken; the message is the checker's full report."""


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=aio.paths.REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def validate_config(cfg: DictConfig) -> None:
    """One-line errors for bad values, before any work starts (phases are checked by resolve_schedule)."""
    t = cfg.trainer
    if t.amp not in AMP_CHOICES:
        raise ValueError(f"trainer.amp={t.amp} is not one of {', '.join(AMP_CHOICES)}")
    resolve_cpu_malloc(t.cpu_malloc, "cpu")  # the value's one-line error; the device's choice comes later
    builders.check_adamw_kernel(t.adamw_kernel)
    if t.max_steps < 1:
        raise ValueError(f"trainer.max_steps={t.max_steps} must be >= 1")
    if t.grad_accum < 1:
        raise ValueError(f"trainer.grad_accum={t.grad_accum} must be >= 1")
    if t.warmup_steps < 0 or t.warmup_steps >= t.max_steps:
        raise ValueError(f"trainer.warmup_steps={t.warmup_steps} must be in [0, trainer.max_steps={t.max_steps})")
    if t.lr <= 0:
        raise ValueError(f"trainer.lr={t.lr} must be > 0")
    for key in ("val_every", "checkpoint_every", "log_every"):
        if t[key] < 1:
            raise ValueError(f"trainer.{key}={t[key]} must be >= 1")
    if cfg.dataset.batch_size < 1:
        raise ValueError(f"dataset.batch_size={cfg.dataset.batch_size} must be >= 1")


class Trainer:
    """Trains one model from a composed config into ``run_dir``; see the module docstring for the order."""

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: str | Path,
        callbacks: Iterable[Callable[["Trainer"], None]] = (),
        tracker_tags: dict[str, str] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.ckpt_path = self.run_dir / "checkpoints" / ckpt_io.CHECKPOINT_NAME
        self.callbacks = list(callbacks)
        self.stop_requested = False
        self.step = 0
        with open_dict(cfg):
            cfg.paths.run_dir = str(self.run_dir)
        self.cfg = cfg
        t = cfg.trainer
        validate_config(cfg)

        # --- devices and seeds -----------------------------------------------------------------------
        self.dist: DistInfo = init_distributed(t.device)
        self.device = self.dist.device
        if self.dist.enabled:  # torchrun ranks may resolve ${now:} apart: all use rank 0's run folder
            self.run_dir = Path(broadcast_object(str(self.run_dir), self.dist))
            self.ckpt_path = self.run_dir / "checkpoints" / ckpt_io.CHECKPOINT_NAME
            with open_dict(cfg):
                cfg.paths.run_dir = str(self.run_dir)
        if t.amp == "fp16" and self.device.type != "cuda":
            raise ValueError("trainer.amp=fp16 needs a CUDA device; use trainer.amp=bf16 on CPU")
        self.cpu_malloc = apply_cpu_malloc(t.cpu_malloc, self.device)  # before the first big tensor
        seed = int(cfg.seed) + self.dist.rank
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

        # --- data and the phases: checked before any model is built ------------------------------------
        from aio.data import build_train_dataset, build_val_sets, check_dataset

        report = check_dataset(cfg.dataset)
        if not report.ok:
            raise DatasetLayoutError(report.render())
        self.train_set = build_train_dataset(cfg.dataset)
        self.task_names = list(self.train_set.task_names)
        task_items = {name: len(r) for name, r in zip(self.task_names, task_ranges(self.train_set))}
        self.schedule: list[Phase] = resolve_schedule(cfg, task_items, self.dist.world_size)
        self.total_steps = self.schedule[-1].end_step
        self.val_sets = build_val_sets(cfg.dataset) if self.dist.is_main else {}

        # --- model, loss, EMA ----------------------------------------------------------------------------
        from aio.losses import build_loss

        from aio.models import model_from_config

        self.model: nn.Module = model_from_config(cfg.model).to(self.device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.run_loss = build_loss(cfg.loss).to(self.device)
        self.loss_fn: nn.Module = self.run_loss
        self.extra_losses: list[nn.Module] = []
        self.ema = builders.build_ema(self.model, t)
        self.amp_dtype = amp_dtype(t.amp, self.device)  # trainer.amp=auto resolves per device
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)

        # --- resume or fine-tune, then enter the phase the run is in -------------------------------------
        self.mlflow_run_id: str | None = None
        self.last_metrics: dict[str, float] = {}
        self.phase: Phase | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        state = self._restore(t)
        self.enter(self._phase_of(state), state)

        # --- tracking (rank 0 only) ----------------------------------------------------------------------
        from aio.tracking.mlflow_tracker import NullTracker, flatten, make_tracker

        self.tracker: Any = NullTracker()
        if self.dist.is_main:
            tags = {"git_commit": _git_commit(), "host": socket.gethostname(), "aio_version": aio.__version__,
                    names.TAG_VAL_SETS: ",".join(self.val_sets), names.TAG_RUN_DIR: str(self.run_dir),
                    names.TAG_STRATEGY: str(cfg.get("strategy", {}).get("name", "mixed")),
                    names.TAG_PHASES: ",".join(p.name for p in self.schedule), names.TAG_CPU_MALLOC: self.cpu_malloc,
                    names.TAG_ADAMW_KERNEL: builders.adamw_kernel_of(self.optimizer)}
            tags.update(tracker_tags or {})
            random_vgg = getattr(self.loss_fn, "random_init", False)
            if random_vgg:
                tags[names.TAG_RANDOM_VGG] = "random-init"
            run_id_file = self.run_dir / "mlflow_run_id"
            if self.mlflow_run_id is None and t.resume == "auto" and run_id_file.is_file():
                self.mlflow_run_id = run_id_file.read_text().strip() or None  # requeued before its 1st checkpoint
            self.tracker = make_tracker(cfg.logger, self.mlflow_run_id, cfg.get("run_name"), tags)
            self.mlflow_run_id = self.tracker.run_id
            if self.mlflow_run_id:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                run_id_file.write_text(self.mlflow_run_id)
            self.tracker.set_tags(tags)
            from aio.data.summary import log_data_summary
            log_data_summary(report, self.tracker, cfg.dataset.patch_size)  # what is skipped/padded, once
            global_batch = cfg.dataset.batch_size * self.dist.world_size * t.grad_accum
            self.tracker.log_params({**flatten(OmegaConf.to_container(cfg, resolve=True)),
                                     "train/global_batch": global_batch})
            config_file = self.run_dir / "config.yaml"
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config_file.write_text(OmegaConf.to_yaml(cfg, resolve=True))
            self.tracker.log_artifact(config_file)

    # --- phases ------------------------------------------------------------------------------------------
    def enter(self, phase: Phase, state: dict[str, Any] | None = None) -> None:
        """Set the run up for ``phase``: trainable parameters, optimizer and LR schedule (kept by a
        ``continue`` phase), loss, augmentation, EMA decay and the phase's batch stream at the current step.
        ``state`` (a checkpoint being resumed) restores the optimizer and loss state of that phase."""
        t = self.cfg.trainer
        continues = phase.schedule == "continue" and self.phase is not None and self.optimizer is not None
        self.phase = phase
        params = builders.apply_freeze(self.model, phase)
        self.trainable_params = sum(p.numel() for p in params)
        if not continues:
            self.optimizer = builders.build_optimizer(params, phase, t)
            self.scheduler = builders.build_scheduler(self.optimizer, phase)
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        segment_step = self.step - phase.segment_start
        if self.scheduler is not None and segment_step > 0 and not continues:
            # the schedule is a function of the step: re-derived from the config on resume
            self.scheduler.step_update(num_updates=segment_step)

        from aio.data.augment import build_batch_augment
        from aio.losses import build_loss
        from aio.train.phases import to_plain

        same_loss = phase.loss == to_plain(self.cfg.loss)
        self.loss_fn = self.run_loss if same_loss else build_loss(phase.loss).to(self.device)
        self.extra_losses = [build_loss(node).to(self.device) for node in phase.extra_losses]
        if state is not None and state.get("loss"):
            self.loss_fn.load_state_dict(state["loss"], strict=False)  # e.g. GFL's curriculum position
        self.augmenter = build_batch_augment(phase.augment)
        if self.ema is not None:
            self.ema.decay = float(phase.ema_decay if phase.ema_decay is not None else t.ema.decay)

        phase_set = builders.build_phase_dataset(self.cfg.dataset, phase, self.train_set)
        self.loader, self.sampler = builders.build_loader(
            phase_set, phase, seed=builders.phase_seed(int(self.cfg.seed), phase),
            start_batch=(self.step - phase.start_step) * t.grad_accum, rank=self.dist.rank,
            world_size=self.dist.world_size, num_workers=int(self.cfg.dataset.num_workers),
            pin_memory=self.device.type == "cuda",
        )
        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = getattr(self.model, "has_unused_parameters", False)
            self.train_model = DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=unused)
        self.train_model = maybe_compile(self.train_model, t.compile, self.device)  # trainer.compile

    def _phase_of(self, state: dict[str, Any] | None) -> Phase:
        """The phase a resumed checkpoint was written in (checked against the strategy), else the first."""
        if state is None:
            return self.schedule[0]
        if "phase" not in state:  # a checkpoint from before phases: the phase that contains its step
            return next((p for p in self.schedule if self.step < p.end_step), self.schedule[-1])
        index, name, in_phase = int(state["phase"]), state.get("phase_name"), int(state["phase_step"])
        if index >= len(self.schedule) or (name is not None and self.schedule[index].name != name):
            raise ValueError(f"the checkpoint was written in phase {index} ({name}) but the strategy's phases are "
                             f"{[p.name for p in self.schedule]}; resume with the strategy that wrote it")
        phase = self.schedule[index]
        if phase.start_step + in_phase != self.step or (self.step > phase.end_step and phase is not self.schedule[-1]):
            raise ValueError(f"the checkpoint is at step {in_phase} of phase {name} (run step {self.step}) which "
                             f"does not fit this strategy's phase lengths; resume with the strategy that wrote it")
        return phase

    def _log_phase_start(self, phase: Phase) -> None:
        n = len(self.schedule)
        self.tracker.log_metrics({names.PHASE: phase.index, names.TRAINABLE_PARAMS: self.trainable_params},
                                 step=self.step)
        self.tracker.set_tags({names.TAG_PHASE: phase.name})
        tasks = "all tasks" if phase.tasks == self.task_names else ", ".join(phase.tasks)
        say(f"[aio] phase {phase.index + 1}/{n} {phase.name}: steps {phase.start_step + 1}-{phase.end_step}, "
            f"{tasks}, lr {phase.lr:.2e} ({phase.schedule}), batch {phase.batch_size}x{phase.patch_size}px, "
            f"{self.trainable_params / 1e6:.3f} M trainable params")

    # ------------------------------------------------------------------------------------------------------
    def _restore(self, t: DictConfig) -> dict[str, Any] | None:
        """Resume full state from last.pt (auto or trainer.resume) or load weights from trainer.fine_tune_from.

        Returns the checkpoint being resumed (its optimizer/loss state are loaded by :meth:`enter`)."""
        source: Path | None = None
        if t.resume == "auto":
            source = self.ckpt_path if self.ckpt_path.is_file() else None
        elif t.resume not in ("never", "", None):
            source = ckpt_io.resolve_checkpoint_path(t.resume)
        if self.dist.is_main:
            ckpt_io.remove_stale_temp_files(self.ckpt_path.parent)
        if source is not None:
            state = ckpt_io.load_checkpoint(source, map_location=self.device)
            ckpt_io.load_state_dict_checked(self.model, state["model"], source=str(source))
            if self.ema is not None and state.get("ema") is not None:
                ckpt_io.load_state_dict_checked(self.ema.module, state["ema"], source=f"{source} (ema)")
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.step = int(state["step"])
            self.mlflow_run_id = state.get("mlflow_run_id")
            self.last_metrics = dict(state.get("metrics") or {})
            _set_rng_state(state["rng"])
            if self.step < self.total_steps:
                say(f"[aio] resumed from {source} at step {self.step} of {self.total_steps}")
            return state
        if t.fine_tune_from:
            weights = ckpt_io.load_weights_only(t.fine_tune_from)
            ckpt_io.load_state_dict_checked(self.model, weights, source=str(t.fine_tune_from))
            if self.ema is not None:
                self.ema.module.load_state_dict(self.model.state_dict())
            say(f"[aio] fine-tuning from weights in {t.fine_tune_from}")
        return None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (incl. the phase and the step within it), plus the
        config, the MLflow run id and the last validation metrics."""
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "loss": _loss_state(self.loss_fn),
            "step": self.step,
            "phase": self.phase.index,
            "phase_name": self.phase.name,
            "phase_step": self.step - self.phase.start_step,
            "metrics": dict(self.last_metrics),
            "rng": _get_rng_state(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "mlflow_run_id": self.mlflow_run_id,
            "aio_version": aio.__version__,
        }

    def save(self) -> Path | None:
        """Write last.pt atomically (rank 0 only)."""
        if not self.dist.is_main:
            return None
        path = ckpt_io.save_checkpoint(self.ckpt_path, self.state_dict())
        self._last_save_time = time.monotonic()
        say(f"[aio] saved checkpoint {path} (step {self.step})")
        return path

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    # ------------------------------------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Evaluate the (EMA) model on every validation set; log per-set PSNR/SSIM, the average and a grid."""
        if not self.dist.is_main or not self.val_sets:
            return {}
        from aio.eval import evaluate_sets, save_sample_grid

        t = self.cfg.trainer
        result = evaluate_sets(
            self.eval_model,
            self.val_sets,
            device=self.device,
            amp_dtype=self.amp_dtype,
            num_samples=t.num_val_samples,
        )
        metrics: dict[str, float] = {}
        for name, values in result.per_set.items():
            for key, value in values.items():
                if key != "n":
                    metrics[names.val_metric(name, key)] = float(value)
        for key, value in result.average.items():
            if key != "n":
                metrics[names.val_metric(names.AVG, key)] = float(value)
        self.tracker.log_metrics(metrics, step=self.step)
        for path in result.write_per_image(self.run_dir / names.per_image_dir("val")):  # for significance tests
            self.tracker.log_artifact(path, names.per_image_dir("val"))
        if self.cfg.logger.get("log_images", False) and result.samples:
            grid = self.run_dir / "samples" / f"val_step{self.step:07d}.png"
            grid.parent.mkdir(parents=True, exist_ok=True)
            save_sample_grid(result.samples, grid)
            self.tracker.log_artifact(grid, "samples")
        return metrics

    def _log_model_summary(self) -> None:
        from aio.models.summary import count_parameters, forward_gflops

        params = count_parameters(self.model)
        stats = {names.PARAMS_M: params / 1e6}
        try:
            stats[names.GFLOPS_256] = forward_gflops(self.model, size=256)
        except Exception as err:  # FLOP counting is informative only
            say(f"[aio] could not count FLOPs: {err}")
        self.tracker.log_metrics(stats, step=self.step)
        say(f"[aio] model {self.cfg.model.name}: {params / 1e6:.3f} M params" + (
            f", {stats['model/gflops_256']:.2f} GFLOPs @256" if "model/gflops_256" in stats else ""))

    def _train_step(self, data_iter) -> dict[str, float]:
        """One optimiser step over ``grad_accum`` micro-batches; returns the loss terms of the step."""
        t = self.cfg.trainer
        phase = self.phase
        builders.set_train_mode(self.train_model)
        if hasattr(self.loss_fn, "set_progress"):  # curricula (GFL) advance per optimizer step, over the phase
            self.loss_fn.set_progress((self.step - phase.start_step) / phase.steps)
        terms_sum: dict[str, float] = {}
        for micro in range(t.grad_accum):
            batch = next(data_iter)
            x = batch["input"].to(self.device, non_blocking=True)
            y = batch["target"].to(self.device, non_blocking=True)
            task = batch["task"].to(self.device, non_blocking=True)
            if self.augmenter is not None:  # batch-level augmentations (CutBlur, Mixup, Blend), seeded per step
                g = self.augmenter.generator(int(self.cfg.seed), self.step, micro, self.dist.rank)
                x, y = self.augmenter(x, y, g)
                batch = {**batch, "input": x, "target": y}
            if t.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            last_micro = micro == t.grad_accum - 1
            sync = self.train_model.no_sync() if (self.dist.enabled and not last_micro) else nullcontext()
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    out = self.train_model(x, task=task)
                loss, terms = compute_loss(self.loss_fn, out, y, batch)
                for extra in self.extra_losses:
                    value, extra_terms = compute_loss(extra, out, y, batch)
                    loss = loss + value
                    for name, term in extra_terms.items():
                        terms[name if name not in terms else f"{name}_extra"] = term
                for name, value in self.model.aux_losses(task).items():
                    loss = loss + value
                    terms[name] = value.detach()
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"loss became {loss.item()} at step {self.step + 1}; training stopped. The last good "
                        f"checkpoint is {self.ckpt_path if self.ckpt_path.is_file() else '(none yet)'}; "
                        "lower trainer.lr, set trainer.grad_clip, or use trainer.amp=none"
                    )
                self.scaler.scale(loss / t.grad_accum).backward()
            terms["loss"] = loss.detach()
            for name, value in terms.items():
                terms_sum[name] = terms_sum.get(name, 0.0) + float(value) / t.grad_accum
        if t.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.scheduler is not None:
            self.scheduler.step_update(num_updates=self.step - phase.segment_start)
        if self.ema is not None:
            self.ema.update(self.model, step=self.step)
        return terms_sum

    def fit(self) -> dict[str, float]:
        """Run the remaining phases (or until a stop is requested); returns the last validation metrics."""
        if self.step >= self.total_steps:
            say(f"[aio] run already complete: step {self.step} of {self.total_steps} in {self.run_dir}; nothing "
                "to do (pass trainer.resume=never or another hydra.run.dir to train again)")
            self.tracker.end("FINISHED")
            cleanup_distributed()
            return dict(self.last_metrics)
        if self.step == 0 and self.dist.is_main:
            self._log_model_summary()
        status = "FAILED"
        self._last_save_time = time.monotonic()
        bar = _progress_bar(self.cfg.trainer.progress and self.dist.is_main, self.total_steps, self.step)
        previous_handlers = self._install_signal_handlers()
        try:
            with _console_through(bar):
                for phase in self.schedule[self.phase.index:]:
                    if phase is not self.phase:
                        self.enter(phase)
                    if self.step == phase.start_step and self.dist.is_main:
                        self._log_phase_start(phase)
                    self._train_phase(phase, bar)
                    if self.stop_requested:
                        break
            if self.stop_requested and self.step < self.total_steps:
                self.save()
                status = "KILLED"
                say(f"[aio] stop requested: saved {self.ckpt_path} at step {self.step}; "
                    "run the same command again to continue")
            else:
                status = "FINISHED"
                if self.cfg.trainer.test.enabled:
                    self.test()
                if self.dist.is_main and self.cfg.logger.get("log_checkpoint", False):
                    self.tracker.log_artifact(self.ckpt_path, "checkpoints")
        except BaseException as err:
            self.tracker.set_tags(error_tag(err))
            raise
        finally:
            bar.close()
            self._restore_signal_handlers(previous_handlers)
            # A preempted run stays RUNNING in MLflow: its requeued job reattaches and finishes it.
            if status != "KILLED":
                self.tracker.end(status)
            if status != "FAILED":
                barrier(self.dist)  # rank 0 may still be saving/validating: no rank tears down before it is done
            cleanup_distributed()
        if status == "KILLED":
            self._chain_signal(previous_handlers)
        return dict(self.last_metrics)

    def _train_phase(self, phase: Phase, bar) -> None:
        """Train ``phase`` from the current step to its end: log, validate (also at the phase's end, as
        ``val:<phase>/...``) and checkpoint as configured."""
        t = self.cfg.trainer
        images_per_step = phase.batch_size * t.grad_accum * self.dist.world_size
        data_iter = iter(self.loader)
        tic, steps_since = time.perf_counter(), 0
        while self.step < phase.end_step and not self.stop_requested:
            terms = self._train_step(data_iter)
            steps_since += 1
            bar.update(1)
            at_end = self.step == phase.end_step
            if self.step % t.log_every == 0 or at_end:
                terms = mean_over_ranks(terms, self.dist)  # under DDP: the mean over the global batch
                elapsed = max(time.perf_counter() - tic, 1e-9)
                speed = images_per_step * steps_since / elapsed
                lr = self.optimizer.param_groups[0]["lr"]
                logged = {names.train_metric(k): v for k, v in terms.items()}
                logged.update({names.train_metric("lr"): lr, names.train_metric("images_per_s"): speed,
                               names.train_metric("global_batch"): images_per_step})
                logged.update({names.train_metric(k): v for k, v in self.model.aux_metrics().items()})
                self.tracker.log_metrics(logged, step=self.step)
                bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{lr:.2e}", img_s=f"{speed:.1f}", refresh=False)
                if bar.disable and self.dist.is_main:
                    say(f"[aio] step {self.step}/{self.total_steps} ({phase.name}): loss {terms['loss']:.4f}, "
                        f"lr {lr:.2e}, {speed:.1f} img/s")
                tic, steps_since = time.perf_counter(), 0
            if self.step % t.val_every == 0 or at_end:
                val_metrics = self.validate()
                if val_metrics:
                    self.last_metrics = val_metrics
                    say(f"[aio] step {self.step}: val PSNR {val_metrics['val/avg/psnr']:.2f} dB "
                        f"(input {val_metrics.get('val/avg/psnr_input', float('nan')):.2f} dB)")
                    if at_end:
                        self.tracker.log_metrics(_phase_copies(val_metrics, phase.name), step=self.step)
            minutes = (time.monotonic() - self._last_save_time) / 60
            timed_save = t.checkpoint_every_min > 0 and minutes >= t.checkpoint_every_min
            if self.step % t.checkpoint_every == 0 or at_end or timed_save:
                self.save()
            for callback in self.callbacks:
                callback(self)
            self._agree_on_stop()

    def test(self) -> dict[str, float]:
        """Evaluate the (EMA) model on the preset's test sets after training, once per ``trainer.test.tta``
        entry (``none``: plain; ``x8``: self-ensemble); logs ``test/<set>/<metric>`` and
        ``test_<tta>/<set>/<metric>`` (rank 0)."""
        if not self.dist.is_main or not self.val_sets:
            return {}
        from aio.eval import evaluate_sets

        metrics: dict[str, float] = {}
        for tta in self.cfg.trainer.test.tta:
            tta = None if tta in (None, "none", "") else str(tta)
            result = evaluate_sets(self.eval_model, self.val_sets, device=self.device, amp_dtype=self.amp_dtype,
                                   tta=tta)
            per_set = {**result.per_set, names.AVG: result.average}
            for set_name, values in per_set.items():
                for key, value in values.items():
                    if key != "n":
                        metrics[names.test_metric(set_name, key, tta)] = float(value)
            say(f"[aio] test{' ' + tta if tta else ''}: PSNR {result.average['psnr']:.2f} dB")
        self.tracker.log_metrics(metrics, step=self.step)
        return metrics

    # --- preemption --------------------------------------------------------------------------------------
    STOP_SIGNALS = ("SIGTERM", "SIGUSR2")

    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGTERM/SIGUSR2 (what SLURM and submitit send) finish the current step, save last.pt and stop."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        self._signal_received: int | None = None

        def on_signal(signum, frame):
            self.stop_requested = True
            self._signal_received = signum

        for name in self.STOP_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None:
                previous[signum] = signal.signal(signum, on_signal)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _chain_signal(self, previous: dict[int, Any]) -> None:
        """After saving, hand the signal to whoever handled it before (submitit: checkpoint and requeue)."""
        signum = getattr(self, "_signal_received", None)
        handler = previous.get(signum) if signum is not None else None
        if callable(handler):
            handler(signum, None)

    def _agree_on_stop(self) -> None:
        """Under DDP every rank must stop at the same step: a stop seen by any rank stops all."""
        if self.dist.enabled:
            flag = torch.tensor([1.0 if self.stop_requested else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self.stop_requested = bool(flag.item() > 0)


def _loss_state(loss_fn: nn.Module) -> dict[str, torch.Tensor]:
    """The loss's persistent buffers (a curriculum position), not its parameters (a frozen VGG)."""
    params = {name for name, _ in loss_fn.named_parameters()}
    return {k: v for k, v in loss_fn.state_dict().items() if k not in params}


def _phase_copies(metrics: dict[str, float], phase: str) -> dict[str, float]:
    """``val/<set>/<metric>`` -> ``val:<phase>/<set>/<metric>`` (the end-of-phase validation, kept per phase)."""
    out = {}
    for key, value in metrics.items():
        prefix, set_name, metric = key.split("/", 2)
        if prefix == "val":
            out[names.val_metric(set_name, metric, phase)] = value
    return out


def _progress_bar(enabled: bool, total: int, initial: int):
    """tqdm on a terminal only: in a file or a pipe its redraws would repeat lines (the step lines are
    logged instead)."""
    from tqdm import tqdm

    on_terminal = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(total=total, initial=initial, disable=not (enabled and on_terminal), dynamic_ncols=True, desc="train")


def _console_through(bar):
    """While the bar is shown, console log lines are written above it (tqdm's logging redirect)."""
    if bar.disable:
        return nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _get_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    npd = state["numpy"]
    np.random.set_state(("MT19937", npd["keys"].numpy().astype(np.uint32), npd["pos"], npd["has_gauss"], npd["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def train(cfg: DictConfig, run_dir: str | Path, callbacks: Iterable[Callable[[Trainer], None]] = (),
          tracker_tags: dict[str, str] | None = None) -> dict[str, float]:
    """Build a :class:`Trainer` and run it; returns the final validation metrics."""
    return Trainer(cfg, run_dir, callbacks=callbacks, tracker_tags=tracker_tags).fit()
