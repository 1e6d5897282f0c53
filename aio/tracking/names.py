"""The MLflow contract: every tag and metric name aio writes or reads, in one place.

The trainer, the sweep callback, ``aio-eval``, ``aio-tables`` and the notebook all use these names, so a
renamed key cannot silently split writers from readers. Metric keys are built by the functions below.

Tags: ``aio.sweep`` (sweep name on parent and children), ``aio.sweep_dir``, ``aio.role`` (``parent`` /
``job``), ``aio.row`` / ``aio.row_label`` (the table row of a job), ``aio.overrides``, ``aio.val_sets``
(comma-separated validation set names in preset order), ``aio.error`` (why a run FAILED), ``aio.kind``,
``aio.checkpoint``, ``aio.seed``, ``aio.phase`` / ``aio.phases``, ``aio.strategy``.

Metrics: ``train/<term>``, ``val/<set>/<metric>`` with ``<set> = avg`` for the mean over sets,
``val:<phase>/<set>/<metric>`` (the validation at the end of a named phase; MLflow refuses ``@`` in
metric names, so the phase is joined with a colon), ``test/<set>/<metric>`` and
``test_<tta>/<set>/<metric>`` (evaluation after training, e.g. ``test_x8``), ``model/params_m``,
``model/gflops_256``, ``phase`` (index of the current phase, logged at each boundary), ``model/trainable_params`` (the number of
parameters that train in the phase, logged at each boundary).
"""

from __future__ import annotations

TAG_SWEEP = "aio.sweep"
TAG_SWEEP_DIR = "aio.sweep_dir"
TAG_ROLE = "aio.role"
TAG_ROW = "aio.row"
TAG_ROW_LABEL = "aio.row_label"
TAG_OVERRIDES = "aio.overrides"
TAG_VAL_SETS = "aio.val_sets"
TAG_ERROR = "aio.error"
TAG_KIND = "aio.kind"
TAG_CHECKPOINT = "aio.checkpoint"
TAG_SEED = "aio.seed"
TAG_PHASE = "aio.phase"
TAG_PHASES = "aio.phases"
TAG_STRATEGY = "aio.strategy"
TAG_CPU_MALLOC = "aio.cpu_malloc"  # the heap mode trainer.cpu_malloc resolved to: cache | system
TAG_ADAMW_KERNEL = "aio.adamw_kernel"  # the AdamW kernel trainer.adamw_kernel resolved to: fused | default

AVG = "avg"
PARAMS_M = "model/params_m"
GFLOPS_256 = "model/gflops_256"
PHASE = "phase"


def train_metric(term: str) -> str:
    """``train/<term>`` (a loss term, ``lr``, ``images_per_s``, ...)."""
    return f"train/{term}"


def val_metric(set_name: str, metric: str, phase: str | None = None) -> str:
    """``val/<set>/<metric>``, or ``val:<phase>/<set>/<metric>`` for the end-of-phase validation."""
    prefix = "val" if phase is None else f"val:{phase}"
    return f"{prefix}/{set_name}/{metric}"


def test_metric(set_name: str, metric: str, tta: str | None = None) -> str:
    """``test/<set>/<metric>``, or ``test_<tta>/<set>/<metric>`` when evaluated with test-time augmentation."""
    prefix = "test" if not tta else f"test_{tta}"
    return f"{prefix}/{set_name}/{metric}"


TRAINABLE_PARAMS = "model/trainable_params"
# What the data pipeline skips or pads (aio/data/summary.py): a one-line tag and two counts.
TAG_DATA_SUMMARY = "aio.data_summary"
DATA_SKIPPED = "data/skipped"
DATA_PADDED = "data/padded"
# --- appended by the tables branch: sweep structure, per-image artifacts, sweep summaries -----------------
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own tag that nests a child run under its parent
TAG_RUN_DIR = "aio.run_dir"  # the job's run folder (a resumed sweep reruns an unfinished job there)
TAG_RANDOM_VGG = "perceptual_weights"  # "random-init" when the perceptual loss used a random VGG
ROLE_SWEEP = "sweep"  # value of aio.role on a sweep's parent run
SPEC_ARTIFACT = "table_spec.yaml"  # the sweep's table spec, logged on the parent run
TABLES_ARTIFACT_DIR = "tables"  # where aio-tables logs the rendered tables on the parent run
PER_IMAGE_DIR = "per_image"


def per_image_file(set_name: str) -> str:
    """The file name of one set's per-image metrics: ``<set>.csv`` (path separators made safe)."""
    return str(set_name).replace("/", "_").replace("\\", "_") + ".csv"


def per_image_dir(prefix: str) -> str:
    """The artifact folder of the per-image metrics behind ``<prefix>/<set>/<metric>`` metrics.

    ``prefix`` is a metric prefix: ``val``, ``val@<phase>``, ``test`` or ``test_<tta>``; the per-image rows
    of ``val/SOTS/psnr`` are in ``per_image/val/SOTS.csv``.
    """
    return f"{PER_IMAGE_DIR}/{prefix}"


def sweep_summary_metric(row: str, metric_key: str) -> str:
    """``summary/<row>/<metric key>`` on a sweep's parent run: the row's mean over its finished seeds. Characters
    MLflow refuses in metric names (a multi-key row such as ``gfl,ft2``) become ``_``."""
    import re

    return f"summary/{re.sub(r'[^0-9A-Za-z_. :/-]', '_', str(row))}/{metric_key}"
# --- appended by the abair branch: evaluation sweeps (aio-eval -m sweep=...) and ABAIR's blending mode -------
TAG_ABAIR_BLEND = "aio.abair_blend"  # the blending mode an ABAIR checkpoint was evaluated with (oh, sw, ...)
KIND_EVAL = "eval"  # value of aio.kind on a run that aio-eval created
