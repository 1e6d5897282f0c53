"""The trainer: plain PyTorch, iteration-based, readable top to bottom.

``Trainer(cfg, run_dir).fit()`` does, in order: check the config and the data, build data, model, loss,
AdamW, timm's warm-up + cosine schedule, timm's EMA and a GradScaler; resume from ``last.pt`` when there is
one; then loop over steps (gradient accumulation, autocast, clipping), logging, validating and saving
``last.pt`` atomically as it goes. A stop request (SIGTERM/SIGUSR2 from SLURM, or a callback) saves and
returns; a non-finite loss stops with a clear error and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
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
from torch.utils.data import DataLoader, Dataset

import aio
from aio.train import checkpoint as ckpt_io
from aio.train.distributed import (
    DistInfo, barrier, broadcast_object, cleanup_distributed, init_distributed, mean_over_ranks,
)
from aio.losses.contract import compute_loss
from aio.tracking.mlflow_tracker import error_tag
from aio.train.sampler import ResumableBatchSampler
from aio.train.precision import AMP_CHOICES, adamw_kernel, amp_dtype, maybe_compile  # issue 19


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is left untouched."""


class DatasetLayoutError(RuntimeError):
    """The dataset's folder layout is broken; the message is the checker's full report."""


class VirtualIndexDataset(Dataset):
    """Maps the sampler's virtual index ``epoch * n + i`` to item ``i`` with epoch-dependent randomness.

    Datasets with ``get_item(i, seed_offset=epoch)`` or ``set_epoch(epoch)`` (aio's presets) draw fresh
    crops/noise each epoch, reproducibly, in whichever worker reads the item; others are read with
    ``dataset[i]``.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.n = len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        epoch, i = divmod(int(k), self.n)
        if hasattr(self.dataset, "get_item"):
            return self.dataset.get_item(i, seed_offset=epoch)
        if hasattr(self.dataset, "set_epoch"):  # runs in the worker that reads the item
            self.dataset.set_epoch(epoch)
        return self.dataset[i]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=aio.paths.REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def validate_config(cfg: DictConfig) -> None:
    """One-line errors for bad values, before any work starts."""
    t = cfg.trainer
    if t.amp not in AMP_CHOICES:
        raise ValueError(f"trainer.amp={t.amp} is not one of {', '.join(AMP_CHOICES)}")
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
        seed = int(cfg.seed) + self.dist.rank
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

        # --- data: checked before any model is built --------------------------------------------------
        from aio.data import build_train_dataset, build_val_sets, check_dataset

        report = check_dataset(cfg.dataset)
        if not report.ok:
            raise DatasetLayoutError(report.render())
        train_set = build_train_dataset(cfg.dataset)
        self.task_names = list(train_set.task_names)
        self.val_sets = build_val_sets(cfg.dataset) if self.dist.is_main else {}

        # --- model, loss -------------------------------------------------------------------------------
        from aio.losses import build_loss
        from aio.models import model_from_config

        self.model: nn.Module = model_from_config(cfg.model).to(self.device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = build_loss(cfg.loss).to(self.device)

        # --- optimisation state --------------------------------------------------------------------------
        from timm.scheduler import CosineLRScheduler
        from timm.utils.model_ema import ModelEmaV3

        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay,
            **adamw_kernel(self.device),  # issue 19: fused AdamW (torch's CPU default is a per-tensor loop)
        )
        self.scheduler = CosineLRScheduler(
            self.optimizer,
            t_initial=t.max_steps - t.warmup_steps,
            lr_min=t.min_lr,
            warmup_t=t.warmup_steps,
            warmup_lr_init=t.lr * 1e-3,
            warmup_prefix=True,
            t_in_epochs=False,
        )
        self.ema = ModelEmaV3(self.model, decay=t.ema.decay, use_warmup=t.ema.warmup) if t.ema.enabled else None
        self.amp_dtype = amp_dtype(t.amp, self.device)  # issue 19: trainer.amp=auto resolves per device
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)

        # --- resume or fine-tune -------------------------------------------------------------------------
        self.mlflow_run_id: str | None = None
        self._restore(t)

        # --- data loader (after resume: the stream starts at the saved step) ----------------------------
        self.sampler = ResumableBatchSampler(
            len(train_set),
            cfg.dataset.batch_size,
            seed=int(cfg.seed),
            start_batch=self.step * t.grad_accum,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        workers = int(cfg.dataset.num_workers)
        self.loader = DataLoader(
            VirtualIndexDataset(train_set),
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )
        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = getattr(self.model, "has_unused_parameters", False)
            self.train_model = DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=unused)
        self.train_model = maybe_compile(self.train_model, t.compile, self.device)  # issue 19: trainer.compile

        # --- tracking (rank 0 only) ----------------------------------------------------------------------
        from aio.tracking.mlflow_tracker import NullTracker, flatten, make_tracker

        self.tracker: Any = NullTracker()
        if self.dist.is_main:
            tags = {"git_commit": _git_commit(), "host": socket.gethostname(), "aio_version": aio.__version__,
                    "aio.val_sets": ",".join(self.val_sets)}
            tags.update(tracker_tags or {})
            random_vgg = getattr(self.loss_fn, "random_init", False)
            if random_vgg:
                tags["perceptual_weights"] = "random-init"
            run_id_file = self.run_dir / "mlflow_run_id"
            if self.mlflow_run_id is None and t.resume == "auto" and run_id_file.is_file():
                self.mlflow_run_id = run_id_file.read_text().strip() or None  # requeued before its 1st checkpoint
            self.tracker = make_tracker(cfg.logger, self.mlflow_run_id, cfg.get("run_name"), tags)
            self.mlflow_run_id = self.tracker.run_id
            if self.mlflow_run_id:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                run_id_file.write_text(self.mlflow_run_id)
            self.tracker.set_tags(tags)
            global_batch = cfg.dataset.batch_size * self.dist.world_size * t.grad_accum
            self.tracker.log_params({**flatten(OmegaConf.to_container(cfg, resolve=True)),
                                     "train/global_batch": global_batch})
            config_file = self.run_dir / "config.yaml"
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config_file.write_text(OmegaConf.to_yaml(cfg, resolve=True))
            self.tracker.log_artifact(config_file)

    # ------------------------------------------------------------------------------------------------------
    def _restore(self, t: DictConfig) -> None:
        """Resume full state from last.pt (auto or trainer.resume) or load weights from trainer.fine_tune_from."""
        source: Path | None = None
        if t.resume == "auto":
            source = self.ckpt_path if self.ckpt_path.is_file() else None
        elif t.resume not in ("never", "", None):
            source = ckpt_io.resolve_checkpoint_path(t.resume)
        if source is not None:
            state = ckpt_io.load_checkpoint(source, map_location=self.device)
            ckpt_io.load_state_dict_checked(self.model, state["model"], source=str(source))
            self.optimizer.load_state_dict(state["optimizer"])
            if self.ema is not None and state.get("ema") is not None:
                ckpt_io.load_state_dict_checked(self.ema.module, state["ema"], source=f"{source} (ema)")
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.step = int(state["step"])
            # The schedule is a function of the step: re-derived from the current config, so a resumed run
            # may extend trainer.max_steps.
            self.scheduler.step_update(num_updates=self.step)
            self.mlflow_run_id = state.get("mlflow_run_id")
            _set_rng_state(state["rng"])
            print(f"[aio] resumed from {source} at step {self.step}")
        elif t.fine_tune_from:
            weights = ckpt_io.load_weights_only(t.fine_tune_from)
            ckpt_io.load_state_dict_checked(self.model, weights, source=str(t.fine_tune_from))
            if self.ema is not None:
                self.ema.module.load_state_dict(self.model.state_dict())
            print(f"[aio] fine-tuning from weights in {t.fine_tune_from}")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly, plus the config and MLflow run id."""
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
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
                    metrics[f"val/{name}/{key}"] = float(value)
        for key, value in result.average.items():
            if key != "n":
                metrics[f"val/avg/{key}"] = float(value)
        self.tracker.log_metrics(metrics, step=self.step)
        if self.cfg.logger.get("log_images", False) and result.samples:
            grid = self.run_dir / "samples" / f"val_step{self.step:07d}.png"
            grid.parent.mkdir(parents=True, exist_ok=True)
            save_sample_grid(result.samples, grid)
            self.tracker.log_artifact(grid, "samples")
        return metrics

    def _log_model_summary(self) -> None:
        from aio.models.summary import count_parameters, forward_gflops

        params = count_parameters(self.model)
        stats = {"model/params_m": params / 1e6}
        try:
            stats["model/gflops_256"] = forward_gflops(self.model, size=256)
        except Exception as err:  # FLOP counting is informative only
            print(f"[aio] could not count FLOPs: {err}")
        self.tracker.log_metrics(stats, step=self.step)
        print(f"[aio] model {self.cfg.model.name}: {params / 1e6:.3f} M params" + (
            f", {stats['model/gflops_256']:.2f} GFLOPs @256" if "model/gflops_256" in stats else ""))

    def _train_step(self, data_iter) -> dict[str, float]:
        """One optimiser step over ``grad_accum`` micro-batches; returns the loss terms of the step."""
        t = self.cfg.trainer
        self.train_model.train()
        terms_sum: dict[str, float] = {}
        for micro in range(t.grad_accum):
            batch = next(data_iter)
            x = batch["input"].to(self.device, non_blocking=True)
            y = batch["target"].to(self.device, non_blocking=True)
            task = batch["task"].to(self.device, non_blocking=True)
            if t.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            last_micro = micro == t.grad_accum - 1
            sync = self.train_model.no_sync() if (self.dist.enabled and not last_micro) else nullcontext()
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    out = self.train_model(x, task=task)
                loss, terms = compute_loss(self.loss_fn, out, y, batch)
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
        self.scheduler.step_update(num_updates=self.step)
        if self.ema is not None:
            self.ema.update(self.model, step=self.step)
        return terms_sum

    def fit(self) -> dict[str, float]:
        """Train to ``trainer.max_steps`` (or until a stop is requested); returns the last validation metrics."""
        from tqdm import tqdm

        t = self.cfg.trainer
        if self.step == 0 and self.dist.is_main:
            self._log_model_summary()
        status = "FAILED"
        val_metrics: dict[str, float] = {}
        self._last_save_time = time.monotonic()
        images_per_step = self.cfg.dataset.batch_size * t.grad_accum * self.dist.world_size
        bar = tqdm(
            total=t.max_steps, initial=self.step, disable=not (t.progress and self.dist.is_main),
            dynamic_ncols=True, desc="train",
        )
        data_iter = iter(self.loader)
        previous_handlers = self._install_signal_handlers()
        try:
            tic, steps_since = time.perf_counter(), 0
            while self.step < t.max_steps and not self.stop_requested:
                terms = self._train_step(data_iter)
                steps_since += 1
                bar.update(1)
                if self.step % t.log_every == 0 or self.step == t.max_steps:
                    terms = mean_over_ranks(terms, self.dist)  # under DDP: the mean over the global batch
                    elapsed = max(time.perf_counter() - tic, 1e-9)
                    speed = images_per_step * steps_since / elapsed
                    lr = self.optimizer.param_groups[0]["lr"]
                    logged = {f"train/{k}": v for k, v in terms.items()}
                    logged.update({"train/lr": lr, "train/images_per_s": speed,
                                   "train/global_batch": images_per_step})
                    logged.update({f"train/{k}": v for k, v in self.model.aux_metrics().items()})
                    self.tracker.log_metrics(logged, step=self.step)
                    bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{lr:.2e}", img_s=f"{speed:.1f}")
                    tic, steps_since = time.perf_counter(), 0
                if self.step % t.val_every == 0 or self.step == t.max_steps:
                    val_metrics = self.validate()
                    if val_metrics:
                        bar.write(f"[aio] step {self.step}: val PSNR {val_metrics['val/avg/psnr']:.2f} dB "
                                  f"(input {val_metrics.get('val/avg/psnr_input', float('nan')):.2f} dB)")
                minutes = (time.monotonic() - self._last_save_time) / 60
                timed_save = t.checkpoint_every_min > 0 and minutes >= t.checkpoint_every_min
                if self.step % t.checkpoint_every == 0 or self.step == t.max_steps or timed_save:
                    self.save()
                for callback in self.callbacks:
                    callback(self)
                self._agree_on_stop()
            if self.stop_requested and self.step < t.max_steps:
                self.save()
                status = "KILLED"
                print(f"[aio] stop requested: saved {self.ckpt_path} at step {self.step}; "
                      "run the same command again to continue")
            else:
                status = "FINISHED"
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
        return val_metrics

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
