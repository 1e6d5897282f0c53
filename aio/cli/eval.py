"""``aio-eval``: evaluate a checkpoint on the test sets of a dataset preset.

Examples::

    aio-eval checkpoint=outputs/runs/2025-01-01/12-00-00            # the run's own dataset config
    aio-eval checkpoint=last.pt dataset=aio3 dataset.root=/data/aio eval.tile=512 eval.tta=x8
    aio-eval checkpoint=last.pt dataset=aio3 eval.sets=[SOTS,Rain100L] eval.save_images=true

Loads the EMA weights when present, evaluates every test set (or ``eval.sets``), prints a table, writes
``results.csv`` into the Hydra output folder and logs ``test/<set>/<metric>`` (and ``test/avg/...``) to
MLflow: into the training run when the checkpoint's ``mlflow_run_id`` exists in the store, else into a new
run named ``eval``. Without a ``dataset=`` override the checkpoint's own dataset config is used (with any
``dataset.*`` overrides applied on top); with one, the composed preset.

Evaluation sweeps (``aio-eval -m sweep=<name> checkpoint=...``, sweep files with ``sweep.app: eval``, e.g.
``abair_table5``): each job evaluates into a run of its own, a child of the sweep's parent run tagged with its
table row (:func:`aio.tracking.sweep.job_tags`), so ``aio-tables <name>`` renders the ``test/...`` metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from aio.config import check_command_line, register_configs
from aio.paths import CONF_DIR, outputs_dir

register_configs()


def _override_keys() -> list[str]:
    try:
        task = list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra app (tests may call evaluate_checkpoint directly)
        return []
    return [o.split("=", 1)[0].lstrip("+~") for o in task]


def choose_dataset_cfg(cfg: DictConfig, ckpt_cfg: DictConfig | None, override_keys: list[str]) -> tuple[DictConfig, str]:
    """The dataset config to evaluate on and a word on where it came from."""
    if "dataset" in override_keys or ckpt_cfg is None or ckpt_cfg.get("dataset") is None:
        return cfg.dataset, "command line" if "dataset" in override_keys else "eval.yaml default"
    ds = OmegaConf.create(OmegaConf.to_container(ckpt_cfg.dataset, resolve=True))
    for key in override_keys:
        if key.startswith("dataset."):
            with open_dict(ds):
                OmegaConf.update(ds, key[len("dataset."):], OmegaConf.select(cfg, key), force_add=True)
    return ds, "checkpoint"


def _tracking_uri(cfg: DictConfig) -> str | None:
    logger = cfg.get("logger")
    if logger is not None:
        if logger.get("name") == "none":
            return None
        if logger.get("tracking_uri"):
            return str(logger.tracking_uri)
    return f"sqlite:///{outputs_dir() / 'mlflow.db'}"


def log_to_mlflow(cfg: DictConfig, result, meta: dict, csv_path: Path, checkpoint: str) -> str | None:
    """Log test metrics; returns the MLflow run id used (None when tracking is off)."""
    uri = _tracking_uri(cfg)
    if uri is None:
        return None
    from aio.tracking.runs import log_evaluation

    from aio.tracking import names

    logger = cfg.get("logger") or {}
    tags = {**({names.TAG_ABAIR_BLEND: str(meta["abair_blend"])} if meta.get("abair_blend") else {}),
            **(meta.get("sweep_tags") or {})}
    return log_evaluation(uri, str(logger.get("experiment", "aio")), logger.get("artifact_location"), result, meta,
                          checkpoint, [csv_path], csv_path.parent, tta=cfg.eval.get("tta") or None,
                          extra_tags=tags or None, params=meta.get("params"),
                          extra_metrics=meta.get("extra_metrics"))


def sweep_job(cfg: DictConfig, sets: list[str]) -> dict | None:
    """In an evaluation sweep (``aio-eval -m sweep=...``): the job's run name and tags (its sweep's parent run,
    row, seed, overrides, set order); None for a single evaluation."""
    from hydra.types import RunMode

    from aio.tracking import names
    from aio.tracking.sweep import job_overrides, job_tags

    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    if hc.mode != RunMode.MULTIRUN or cfg.get("sweep") is None:
        return None
    tags = job_tags(cfg, hc.sweep.dir, dict(hc.runtime.choices))
    tags[names.TAG_OVERRIDES] = " ".join(job_overrides(hc.overrides.task)) or "(defaults)"
    tags[names.TAG_VAL_SETS] = ",".join(sets)
    return {"tags": tags, "run_name": tags.get(names.TAG_ROW_LABEL, "eval")}


def apply_row(cfg: DictConfig) -> DictConfig:
    """``row=<key>``: the config with ``row_overrides.<key>`` merged over it (its ``checkpoint``, ``abair.blend``,
    ...), so one evaluation sweep can hold rows that differ in more than one key — ABAIR's OH / SW / Oracle of one
    checkpoint next to other backbones' checkpoints (``sweeps/abair_table1.yaml``). An entry's ``label`` names the
    row in the table when the sweep file does not. ``row=null`` (the default) leaves ``cfg`` as it is."""
    row = cfg.get("row")
    if row is None:
        return cfg
    table = cfg.get("row_overrides") or {}
    if str(row) not in table:
        raise ValueError(f"row={row} is not a key of row_overrides ({', '.join(map(str, table)) or 'none'}): "
                         f"give +row_overrides.{row}.checkpoint=<run folder or last.pt>")
    entry = OmegaConf.to_container(table[str(row)], resolve=True) or {}
    if entry.get("checkpoint") == "???":
        raise ValueError(f"row={row} needs its checkpoint: give row_overrides.{row}.checkpoint=<run folder or last.pt>")
    label = entry.pop("label", None)
    out = OmegaConf.merge(cfg, entry)
    spec = out.get("sweep")
    if label and spec is not None and str(row) not in {str(r.key) for r in spec.get("rows") or []}:
        with open_dict(out):
            out.sweep.rows = [*(spec.get("rows") or []), {"key": str(row), "label": str(label)}]
    return out


def evaluate_checkpoint(cfg: DictConfig, out_dir: Path, override_keys: list[str] | None = None):
    """The body of ``aio-eval``: returns the EvalResult."""
    from aio.eval.runtime import amp_dtype, load_model_and_state, pick_device, show_progress
    from aio.train.host_memory import apply_cpu_malloc
    from aio.data import build_val_sets
    from aio.eval import evaluate_sets, save_sample_grid

    cfg = apply_row(cfg)
    if cfg.get("checkpoint") in (None, "", "???"):
        raise ValueError("give checkpoint=<last.pt or run folder>")
    override_keys = _override_keys() if override_keys is None else override_keys
    e = cfg.eval
    device = pick_device(cfg.get("device", "auto"))
    apply_cpu_malloc(cfg.get("cpu_malloc", "auto"), device, key="cpu_malloc")
    model, ckpt_cfg, meta = load_model_and_state(str(cfg.checkpoint), bool(cfg.get("use_ema", True)), device)
    ds_cfg, origin = choose_dataset_cfg(cfg, ckpt_cfg, override_keys)
    ckpt_tasks = ((ckpt_cfg or {}).get("dataset") or {}).get("tasks")
    if ds_cfg.get("kind") == "folder" and ckpt_tasks:
        from aio.data.folder import with_tasks_of

        ds_cfg = with_tasks_of(ds_cfg, ckpt_tasks)  # the task label the model was trained with
    sets = build_val_sets(ds_cfg)
    from aio.models.abair import add_estimator_accuracy, prepare_eval
    blend = prepare_eval(model, cfg.get("abair"), list(ds_cfg.get("tasks") or []))  # abair.blend=oh|sw|oracle
    if blend:  # each blending mode gets its own eval run (not the training run's test/ keys)
        meta = {**meta, "mlflow_run_id": None, "abair_blend": blend, "run_name": f"eval_{blend}"}
    if e.get("sets"):
        wanted = [str(s) for s in e.sets]
        unknown = [s for s in wanted if s not in sets]
        if unknown:
            raise ValueError(f"eval.sets: unknown {unknown}; this dataset has {list(sets)}")
        sets = {s: sets[s] for s in wanted}
    from aio.models.summary import count_parameters
    from aio.tracking import names

    meta["extra_metrics"] = {names.PARAMS_M: count_parameters(model) / 1e6}
    job = sweep_job(cfg, list(sets))
    if job is not None:  # a job of an evaluation sweep: its own run, a child of the sweep's parent
        meta = {**meta, "mlflow_run_id": None, "run_name": job["run_name"], "sweep_tags": job["tags"],
                "params": {"dataset.name": ds_cfg.get("name"), "checkpoint": str(cfg.checkpoint),
                           **({"abair.blend": blend} if blend else {})}}
    print(f"[aio] evaluating {cfg.checkpoint} (step {meta['step']}, {'EMA' if meta['has_ema'] and cfg.get('use_ema', True) else 'raw'} "
          f"weights) on dataset {ds_cfg.get('name')} ({origin}): {', '.join(sets)}")
    metric_options = {
        "lpips": {"weights": e.get("lpips_weights"), "vgg16_weights": e.get("vgg16_weights")},
        "dists": {"weights": e.get("dists_weights"), "vgg16_weights": e.get("vgg16_weights")},
    }
    save_dir = out_dir / "images" if e.get("save_images") else None
    result = evaluate_sets(
        model, sets, device=device, amp_dtype=amp_dtype(e.get("amp"), device),
        tile=e.get("tile") or None, tile_overlap=int(e.get("tile_overlap", 32)), tta=e.get("tta") or None,
        save_dir=save_dir, num_samples=int(e.get("num_samples", 0) or 0), metrics=list(e.get("metrics") or ["psnr", "ssim"]),
        metric_options=metric_options, progress=show_progress(e.get("progress", True)),
    )
    add_estimator_accuracy(model, sets, result, device)  # ABAIR checkpoints: est_acc per set
    df = result.to_frame()
    csv_path = out_dir / str(e.get("csv", "results.csv"))
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv_path)
    print(df.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"[aio] wrote {csv_path}" + (f" and restored images under {save_dir}" if save_dir else ""))
    if result.samples:
        save_sample_grid(result.samples, out_dir / "samples.png", crop=256)
    run_id = log_to_mlflow(cfg, result, meta, csv_path, str(cfg.checkpoint))
    if run_id:
        print(f"[aio] logged to MLflow run {run_id} ({_tracking_uri(cfg)})")
    return result


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def hydra_main(cfg: DictConfig) -> float | None:
    from aio.tracking.mlflow_tracker import TrackingError
    from aio.train.checkpoint import CheckpointError

    try:
        result = evaluate_checkpoint(cfg, Path(HydraConfig.get().runtime.output_dir))
        return result.average.get("psnr")
    except (ValueError, FileNotFoundError, CheckpointError, TrackingError) as err:
        print(f"aio-eval: error: {err}", file=sys.stderr)
        sys.exit(1)


def main():
    """Console entry point: command-line mistakes Hydra lets through are refused before composing."""
    check_command_line("aio-eval", sys.argv[1:], config_name="eval")
    return hydra_main()


if __name__ == "__main__":
    main()
