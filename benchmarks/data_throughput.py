"""Synthesis throughput of the synthetic presets (images/s, 128x128 crops, batch 16, CPU by default).

    python benchmarks/data_throughput.py [preset ...] [--batches 20] [--workers 0] [--device cpu]

Next to them, the default model's training throughput (``aio-train``'s own step: forward, loss, backward,
AdamW, EMA) at the same batch and crop size, and the ratio data/model, which must stay >= 5 so that the
data never starves training. Two figures per preset: ``loader`` (the training Dataset through a DataLoader: crop, flip/rot90 and
per-item degradation, what ``aio-train`` sees) and ``batched`` (the engine degrading whole batches of
clean crops at once, e.g. on the GPU). ``synthesis_throughput(cfg.dataset, n_batches)`` is the function
the trainer's throughput comparison calls.
"""

from __future__ import annotations

import argparse
import time


def synthesis_throughput(cfg_dataset, n_batches: int = 20, *, batch_size: int = 16, patch_size: int = 128,
                         num_workers: int = 0, device: str = "cpu", warmup: int = 2) -> dict:
    """Images per second produced by the preset's training pipeline and by the batched engine.

    Returns ``{"loader_images_per_s", "batched_images_per_s", "batch_size", "patch_size", "num_workers",
    "device", "n_batches"}``. ``cfg_dataset`` is a ``dataset`` node (any kind; ``batched`` is measured
    for synthetic presets only, else None).
    """
    import torch
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader

    from aio.data import build_train_dataset
    from aio.data import degradations as D

    cfg = OmegaConf.merge(cfg_dataset, {"patch_size": patch_size, "num_workers": num_workers})
    ds = build_train_dataset(cfg)
    n_items = (n_batches + warmup) * batch_size
    if cfg.kind == "synthetic":  # enough items for the run whatever epoch_size says
        cfg = OmegaConf.merge(cfg, {"epoch_size": max(int(cfg.epoch_size), -(-n_items // len(ds.task_names)))})
        ds = build_train_dataset(cfg)
    sampler = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n_items].tolist()
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        persistent_workers=False)
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    got = 0
    for batch in it:
        got += batch["input"].shape[0]
    loader_ips = got / (time.perf_counter() - t0)

    batched_ips = None
    if cfg.kind == "synthetic":
        dev = torch.device(device)
        recipes = [D.get_recipe(t, cfg.recipes) for t in ds.task_names]
        clean = torch.stack([ds[i]["target"] for i in sampler[:batch_size]]).to(dev)
        g = torch.Generator(device=dev).manual_seed(0)
        for w in range(warmup):
            D.degrade_batch(clean, torch.arange(batch_size, device=dev) % len(recipes), recipes, g)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in range(n_batches):
            task = torch.randint(len(recipes), (batch_size,), generator=g, device=dev)
            D.degrade_batch(clean, task, recipes, g)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        batched_ips = n_batches * batch_size / (time.perf_counter() - t0)
    return {"loader_images_per_s": loader_ips, "batched_images_per_s": batched_ips, "batch_size": batch_size,
            "patch_size": patch_size, "num_workers": num_workers, "device": device, "n_batches": n_batches}


def model_training_throughput(batch_size: int = 16, patch_size: int = 128, steps: int = 5,
                              overrides: tuple[str, ...] = ()) -> float:
    """Images/s that the default ``aio-train`` model consumes: real trainer steps on a fixed batch."""
    import itertools
    import tempfile

    import torch
    from hydra import compose, initialize_config_dir

    from aio.config import register_configs
    from aio.paths import CONF_DIR
    from aio.train.trainer import Trainer

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", f"dataset.batch_size={batch_size}",
                                          f"dataset.patch_size={patch_size}", *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp)
        batch = next(iter(trainer.loader))
        same = itertools.repeat(batch)
        trainer._train_step(same)  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer._train_step(same)
        return steps * batch_size / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("presets", nargs="*", default=["synthetic", "synthetic_aio5", "synthetic_cdd11"])
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    import torch

    from aio.data.config import load_preset

    print(f"torch threads: {torch.get_num_threads()}; batch {args.batch_size} x {args.patch}px, "
          f"{args.batches} batches, workers {args.workers}, engine on {args.device}")
    print(f"{'preset':18s} {'loader img/s':>13s} {'batched img/s':>14s}")
    for name in args.presets:
        r = synthesis_throughput(load_preset(name), args.batches, batch_size=args.batch_size,
                                 patch_size=args.patch, num_workers=args.workers, device=args.device)
        b = f"{r['batched_images_per_s']:.1f}" if r["batched_images_per_s"] is not None else "-"
        print(f"{name:18s} {r['loader_images_per_s']:13.1f} {b:>14s}")
    model_ips = model_training_throughput(args.batch_size, args.patch)
    ratio = synthesis_throughput(load_preset("synthetic"), args.batches, batch_size=args.batch_size,
                                 patch_size=args.patch)["loader_images_per_s"] / model_ips
    print(f"default model (aio-train, scale=small) trains at {model_ips:.1f} img/s; "
          f"data/model ratio for the default preset: {ratio:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
