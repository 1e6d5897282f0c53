"""Every option of every config group composes, resolves and *takes effect*; bad keys/types are rejected.

How the option tests work (so a new group or option cannot slip through):

* Groups and options are discovered from the ``conf/`` folder (:func:`aio.config.config_groups`), never from a
  hand-kept list: a new group (``strategy``, ``augment``, ``prompt``) or option is tested as soon as its
  YAML file exists.
* Generic effect, for every option of every group: composing ``group=option`` must change the composed config
  compared with the group's default choice (an option that changes nothing is a dead file or a typo in its
  ``# @package`` line). The default option itself must be what the primary config selects.
* Specific effect, for the groups in ``EXPECTATIONS``: a probe measures the real effect (the built model's
  class, the loss's terms, the dataset's tasks and protocol, the launcher class, ...) and compares it with the
  table entry of the option. An option without an entry fails with a message naming the table to extend;
  a group without a probe gets only the generic check.
* A group that the primary config's defaults list does not name (``abair``) is *appended*: the generic check
  selects its options as ``+group=option`` (a single run), the probe composes each option as the sweep that
  lists it in its grid runs it (``sweep=abair_table6 abair=ir_only``: the sweep's own defaults list adds the
  group), so a sweep's strategy cannot silently undo a row.
* An option whose documented use needs other choices (``loss=dsrir`` needs ``backbone=dsrir``) is probed
  with them (``CONTEXT``).
"""

from __future__ import annotations

import functools

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, ValidationError

from aio.config import config_groups, primary_defaults
from conftest import compose_train

GROUPS = config_groups()
CASES = [(g, o) for g, opts in GROUPS.items() for o in opts]
DEFAULTS = primary_defaults("train")
# Groups the primary config's defaults list does not name (``abair``): a single run appends them
# (``+abair=cutmix``); a sweep names them in its own defaults list (``/abair: segmentation``) and its grid
# then overrides them (``abair=ir_only``).
APPENDED = sorted(set(GROUPS) - set(DEFAULTS))


def _selection(group: str, option: str) -> str:
    """The command-line override that selects ``option`` of ``group`` on its own."""
    return f"{'+' if group in APPENDED else ''}{group}={option}"


def _sweeps_listing(group: str, option: str) -> list[str]:
    """The sweeps whose grid lists ``group=option`` (how an appended group's options are run)."""
    from aio.paths import CONF_DIR

    out = []
    for name in GROUPS["sweep"]:
        params = (OmegaConf.load(CONF_DIR / "sweep" / f"{name}.yaml").get("hydra") or {}).get("sweeper", {})
        values = str((params.get("params") or {}).get(group, "")).split(",")
        if option in values:
            out.append(name)
    return out


def _compose_hydra(overrides):
    from hydra import compose, initialize_config_dir

    from aio.config import register_configs
    from aio.paths import CONF_DIR

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def _model(cfg):
    from aio.models import model_from_config

    with open_dict(cfg):
        cfg.model.size = "tiny"
    return model_from_config(cfg.model)


def _loss_terms(cfg):
    """The term names of one real loss call. A loss that reads the whole model output (``uses_model_output``,
    e.g. DSRIR's stage images) gets the output of the tiny model its option names (see ``CONTEXT``)."""
    from aio.losses import build_loss
    from aio.losses.contract import compute_loss

    torch.manual_seed(0)
    with open_dict(cfg):
        cfg.paths.vgg19_weights = "random"
    loss = build_loss(cfg.loss)
    x, target = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    if getattr(loss, "uses_model_output", False):
        out = _model(cfg)(x, task=torch.tensor([0]))
        return sorted(compute_loss(loss, out, target, batch={"input": x, "task": torch.tensor([0])})[1])
    return sorted(loss(x, target)[1])


def _gate_channels(cfg):
    """The gate's name and how many channels it adds to the qkv of the latent attention (small model)."""
    from aio.models import model_from_config

    with open_dict(cfg):
        cfg.model.size = "small"  # tiny has one head everywhere; headwise widens qkv by the head count
    modules = dict(model_from_config(cfg.model).named_modules())
    dim = modules["latent.0.attn.project_out"].out_channels
    return (cfg.model.gate, modules["latent.0.attn.qkv_dwconv"].out_channels - 3 * dim)


def _experiment_row(cfg):
    m = cfg.model
    return (m.name, m.get("gate"), m.get("ffn_ratio"), m.get("attn_ratio"), bool(m.get("dfrg", {}).get("enabled")),
            bool(m.get("spatial_lora")), bool(m.get("csff")), cfg.loss.name, m.get("prompt"), cfg.strategy.name)


def _phases(cfg):
    """The resolved phases (:func:`aio.train.phases.resolve_schedule`, 100 items per task): name, number of
    tasks, steps, LR cycles, LR, augment preset, whether only part of the model trains, crop and batch size."""
    from aio.train.phases import resolve_schedule

    phases = resolve_schedule(cfg, {t: 100 for t in cfg.dataset.tasks})
    return [(p.name, len(p.tasks), p.steps, p.cycles, float(f"{p.lr:.4g}"), (p.augment or {}).get("name"),
             bool(p.freeze or p.train_only), p.patch_size, p.batch_size) for p in phases]


def _batch_augment(cfg):
    """The batch operations the augment preset builds, and whether one call changes a batch."""
    from aio.data.augment import BatchAugment, build_batch_augment

    aug = build_batch_augment(OmegaConf.to_container(cfg.augment, resolve=True))
    if aug is None:
        return (cfg.augment.name, [], False)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    x2, y2 = aug(x.clone(), y.clone(), BatchAugment.generator(0, 0, 0, 0))
    return (cfg.augment.name, sorted(op for op, _, _ in aug.ops), not (torch.equal(x, x2) and torch.equal(y, y2)))


def _abair_row(cfg):
    """What an ABAIR sweep row runs: strategy (phase), blend, adapter kind/rank, data mix, segmentation
    weight, tasks and the adapters that train."""
    m, d = cfg.model, cfg.dataset
    mix = d.get("abair")
    mix = tuple(mix.get(k) for k in ("single", "cutmix", "composite", "fresh")) if mix else None
    train = m.get("train_adapters")
    return (cfg.strategy.name, m.get("blend"), m.adapter.kind, m.adapter.rank, mix, cfg.loss.seg_weight,
            list(d.tasks), list(train) if train is not None else None)


def _sweep_grid(cfg):
    """A sweep's name and grid; a sweep whose rows are one key's values must run exactly those rows."""
    grid = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    key = cfg.sweep.row_key
    if key is not None and not isinstance(key, str) and len(key) == 1:
        key = str(key[0])  # rows keyed by one config key (an evaluation sweep's abair.blend)
    if isinstance(key, str):
        assert grid.get(key) == [r.key for r in cfg.sweep.rows], f"sweep={cfg.sweep.name}: rows are not its grid"
    return (cfg.sweep.name, grid)


R = "restormer"
AIO5 = ["denoise_25", "derain", "dehaze", "deblur", "lowlight"]
AIO3 = ["denoise_15", "denoise_25", "denoise_50", "derain", "dehaze"]
LR = 2.0e-3  # trainer.lr of the default composition (TrainerConfig; scale=small keeps it)
MIO7 = ["sr", "blur", "noise", "jpeg", "rain", "haze", "dark"]
STEPS = 300  # trainer.max_steps of the default composition: strategy.fit_steps fits the phases into it


def _fit(declared, total=STEPS):
    """The documented fit rule (``strategy.fit_steps``: "proportions kept"): each phase's share of ``total``,
    rounded down, the last phase taking the remainder (exact integer arithmetic)."""
    steps = [total * d // sum(declared) for d in declared[:-1]]
    return steps + [total - sum(steps)]


def _stages(order, stage_steps, last_steps):
    """A sequential strategy: stage k on the first k tasks, the last stage four cosine periods (MiOIR)."""
    steps = _fit([stage_steps] * (len(order) - 1) + [last_steps])
    return [(f"{k + 1}_{t}", k + 1, steps[k], 4 if k == len(order) - 1 else 1, LR, "basic", False, 128, 8)
            for k, t in enumerate(order)]


def _epochs(epochs, tasks):
    """Declared epochs -> steps: an epoch is the phase's tasks x 100 items (what the probe passes)."""
    return [e * 100 * n for e, n in zip(epochs, tasks)]


_DSRIR_STEPS = _fit([127710, 111343, 95912, 62469])
_DSRIR_NAMES = ("p128", "p160", "p192", "p256")


def _dsrir(patches, batches):
    """DSRIR's four progressive phases (one cosine across them) at the given crops and batch sizes."""
    return [(n, 5, s, 1, LR, "basic", False, p, b) for n, s, p, b in zip(_DSRIR_NAMES, _DSRIR_STEPS, patches, batches)]


def _t7(kind, rank):
    """A Table 7 row: phase II (five adapters on synthetic AIO-5, oracle routing) with ``kind`` x ``rank``."""
    return ("abair_adapters", None, kind, rank, None, 0.0, AIO5, None)


def _t6(single, cutmix, composite, fresh, seg):
    """A Table 6 row: phase I on the given data mix and segmentation weight."""
    return ("abair_pretrain", None, "lora", 4, (single, cutmix, composite, fresh), seg, AIO5, None)


# group -> (probe(composed cfg) -> value, {option: expected value}); see the module docstring
EXPECTATIONS = {
    "backbone": (lambda c: (type(_model(c)).__name__, c.model.name),
                 {"restormer": ("Restormer", "restormer"), "promptir": ("PromptIR", "promptir"),
                  "nafnet": ("NAFNet", "nafnet"), "nafnet_gopro": ("NAFNet", "nafnet"),
                  "dsrir": ("DSRIR", "dsrir"), "srresnet": ("SRResNet", "srresnet"), "abair": ("ABAIR", "abair"),
                  "airnet": ("AirNet", "airnet")}),
    # channels the gate adds to the attention's qkv (the latent block of the small Restormer: C = 64, 2 heads):
    # elementwise "qkv widened to 4C" (+C), headwise "widened by `heads` channels" (+2)
    "gate": (_gate_channels, {"none": ("none", 0), "elementwise": ("elementwise", 64), "headwise": ("headwise", 2)}),
    "lora_ratio": (lambda c: (c.model.ffn_ratio, c.model.attn_ratio),
                   {"full": (1.0, 1.0), "r03_06": (0.3, 0.6), "r04_07": (0.4, 0.7), "r05_08": (0.5, 0.8),
                    "r06_09": (0.6, 0.9)}),
    "loss": (_loss_terms, {"l1": ["l_pix"], "charbonnier": ["l_pix"], "fft": ["l_freq"], "edge": ["l_edge"],
                           "perceptual": ["l_percep"], "mixed": ["l_edge", "l_percep", "l_pix"],
                           "gfl": ["l_gfl"], "gfl_banded": ["l_freq", "l_lap", "l_pix"],
                           "dsrir": ["l_contrast", "l_psnr", "l_uncert"],
                           # backbone=abair in its default phase (pretrain): restoration + segmentation CE;
                           # the estimator's logits (l_est, est_acc) exist only in phase III
                           "abair": ["l_pix", "l_seg", "seg_acc"]}),
    "dataset": (lambda c: (c.dataset.kind, list(c.dataset.tasks)[:2], len(c.dataset.tasks),
                           c.dataset.get("metric_protocol")),
                {"synthetic": ("synthetic", ["denoise_15", "denoise_25"], 5, None),
                 "synthetic_aio3": ("synthetic", ["denoise_15", "denoise_25"], 5, None),
                 "synthetic_aio5": ("synthetic", ["denoise_25", "derain"], 5, None),
                 "synthetic_cdd11": ("synthetic", ["low", "haze"], 11, None),
                 "aio3": ("aio", ["denoise_15", "denoise_25"], 5, None),
                 "aio5": ("aio", ["denoise_25", "derain"], 5, None),
                 "cdd11": ("cdd11", ["low", "haze"], 11, None), "folder": ("folder", ["folder"], 1, None),
                 "dsrir_aio3": ("aio", AIO3[:2], 5, "dsrir"),
                 "synthetic_dsrir_aio3": ("synthetic", AIO3[:2], 5, "dsrir"),
                 "mio7": ("mio", MIO7[:2], 7, None), "synthetic_mio7": ("synthetic", MIO7[:2], 7, None),
                 "derain_desnow": ("aio", ["derain", "desnow"], 2, None),
                 "synthetic_derain_desnow": ("synthetic", ["derain", "desnow"], 2, None),
                 "abair_pretrain": ("synthetic", AIO5[:2], 5, None),
                 "abair_estimator": ("synthetic", AIO5[:2], 5, None),
                 "abair_synthetic3": ("synthetic", ["denoise", "derain"], 3, None),
                 "abair_known_extra": ("aio", ["derain", "deblur"], 3, None),
                 "abair_unseen": ("synthetic", ["bitdepth", "dejpeg_q20"], 3, None),
                 "abair_unseen_real": ("aio", ["bitdepth", "dejpeg_q20"], 3, None),
                 "abair_mixed": ("synthetic", ["blur_noise", "blur_jpeg"], 3, None)}),
    "scale": (lambda c: (c.model.size, c.trainer.max_steps),
              {"tiny": ("tiny", 150), "small": ("small", 300), "paper": ("paper", 300000),
               "demo": ("demo", 480)}),  # make demo: "size demo (dim 16), batch 8, 480 steps", 48-px crops
    "experiment": (_experiment_row, {
        "baseline": (R, "elementwise", 0.5, 0.8, False, False, False, "l1", "none", "mixed"),
        "dfrg": (R, "elementwise", 0.5, 0.8, True, False, False, "l1", "none", "mixed"),
        "spatial_lora": (R, "elementwise", 0.5, 0.8, True, True, False, "l1", "none", "mixed"),
        "csff": (R, "elementwise", 0.5, 0.8, True, True, True, "l1", "none", "mixed"),
        "full": (R, "elementwise", 0.5, 0.8, True, True, True, "mixed", "none", "mixed"),
        "restormer": (R, "none", 1.0, 1.0, False, False, False, "l1", "none", "mixed"),
        "promptir": ("promptir", "none", 1.0, 1.0, False, False, False, "l1", "none", "mixed"),
        "nafnet": ("nafnet", "none", 1.0, 1.0, False, False, False, "l1", "none", "mixed"),
        "dsrir": ("dsrir", "none", 1.0, 1.0, False, False, False, "dsrir", "none", "dsrir_progressive"),
        **{f"mioir/{net}_{mode}{suffix}": (net, "none", 1.0, 1.0, False, False, False, "l1", prompt,
                                          {"m": "mixed", "s": "sequential" + ("_restormer" if net == R else "")}[mode])
           for net in ("srresnet", R) for mode in ("m", "s")
           for suffix, prompt in (("", "none"), ("_ep", "explicit"), ("_ap", "adaptive"))}}),
    "debug": (lambda c: (c.model.size, c.trainer.max_steps, c.trainer.progress), {"tiny": ("tiny", 4, False)}),
    "logger": (lambda c: c.logger.name, {"mlflow": "mlflow", "none": "none"}),
    # the prompted variant of the default backbone (restormer): MiOIR's Restormer_EP / Restormer_AP
    "prompt": (lambda c: type(_model(c)).__name__,
               {"none": "Restormer", "explicit": "RestormerEP", "adaptive": "RestormerAP"}),
    "augment": (_batch_augment, {"basic": ("basic", [], False),
                                 "strong": ("strong", ["blend", "cutblur", "mixup"], True)}),
    "strategy": (_phases, {
        "mixed": [("main", 5, STEPS, 1, LR, "basic", False, 64, 8)],
        # 60 epochs of the easy tasks (denoise* + derain: 4 of synthetic's 5), then 60 of all at 50% LR
        "progressive": [(n, k, s, 1, lr, "basic", False, 64, 8) for n, k, s, lr in
                        zip(("easy", "all"), (4, 5), _fit(_epochs([60, 60], [4, 5])), (LR, LR / 2))],
        # 40 epochs each: denoise*, + derain, all; the later two at 50% LR
        "task_incremental": [(n, k, s, 1, lr, "basic", False, 64, 8) for n, k, s, lr in
                             zip(("denoise", "plus_derain", "all"), (3, 4, 5), _fit(_epochs([40] * 3, [3, 4, 5])),
                                 (LR, LR / 2, LR / 2))],
        # SRResNet: 250k per stage, the last 1M; Restormer: 100k per stage, the last 400k
        "sequential": _stages(MIO7, 250000, 1000000),
        "sequential_restormer": _stages(["rain", "jpeg", "blur", "sr", "noise", "haze", "dark"], 100000, 400000),
        # 128/160/192/256 px at batch 16/14/12/8; the tiny form 32/40/48/64 px at 4/3/3/2
        "dsrir_progressive": _dsrir((128, 160, 192, 256), (16, 14, 12, 8)),
        "dsrir_progressive_tiny": _dsrir((32, 40, 48, 64), (4, 3, 3, 2)),
        # 250 + 3 x 100 epochs; lr 2e-4 then 1.5e-4 (absolute); strong augment in the base phase only;
        # ft2/ft3 train the core modules only
        "staged_finetune": [(n, 5, s, 1, lr, aug, part, 64, 8) for n, s, lr, aug, part in
                            zip(("base", "ft1", "ft2", "ft3"), _fit([250, 100, 100, 100]), (2.0e-4,) + (1.5e-4,) * 3,
                                ("strong", "basic", "basic", "basic"), (False, False, True, True))],
        # AirNet: 60 + 40 epochs of the encoder alone at 1e-3 / 1e-4, then 1,400 joint epochs at 1e-4
        "airnet": [(n, 5, s, 1, lr, "basic", part, 64, 8) for n, s, lr, part in
                   zip(("encoder", "encoder_decay", "joint"), _fit(_epochs([60, 40, 1400], [5, 5, 5])),
                       (1e-3, 1e-4, 1e-4), (True, True, False))],
        "abair_pretrain": [("pretrain", 5, STEPS, 1, LR, "basic", True, 128, 8)],
        "abair_adapters": [("adapters", 5, STEPS, 1, LR, "basic", True, 128, 8)],
        "abair_estimator": [("estimator", 5, STEPS, 1, LR, "basic", True, 128, 8)]}),
    "abair": (_abair_row, {
        **{f"{k}_r{r}": _t7(k, r) for k in ("lora", "vera", "conv_lora") for r in (4, 8, 16)},
        "ir_only": _t6(1.0, 0.0, 0.0, False, 0.0), "synthetic": _t6(0.8, 0.0, 0.2, True, 0.0),
        "cutmix": _t6(0.4, 0.4, 0.2, True, 0.0), "segmentation": _t6(0.4, 0.4, 0.2, True, 0.1)}),
}
# Options whose documented use needs other choices (their YAML says so): the probe composes them together.
CONTEXT = {
    ("loss", "dsrir"): ["backbone=dsrir"],  # "needs backbone=dsrir, whose ModelOutput carries the stage images"
    ("loss", "abair"): ["backbone=abair"],  # segmentation / estimator logits come from the ABAIR model
    ("strategy", "sequential"): ["dataset=synthetic_mio7"],  # "Task names must be the preset's (mio7)"
    ("strategy", "sequential_restormer"): ["dataset=synthetic_mio7"],
}
# groups whose effect lives in the hydra node (composed with return_hydra_config=True)
HYDRA_EXPECTATIONS = {
    "launcher": (lambda c: c.hydra.launcher._target_.rsplit(".", 1)[-1],
                 {"local": "BasicLauncher", "submitit_local": "LocalLauncher", "slurm": "SlurmLauncher",
                  "joblib": "JoblibLauncher"}),
    "sweep": (_sweep_grid,
              {"ablation": ("ablation", {"experiment": ["baseline", "dfrg", "spatial_lora", "csff", "full"]}),
               "lora_ratio": ("lora_ratio", {"lora_ratio": ["r03_06", "r04_07", "r05_08", "r06_09", "full"]}),
               "backbones": ("backbones", {"experiment": ["restormer", "promptir", "nafnet", "baseline", "full"]}),
               "losses": ("losses", {"loss": ["l1", "charbonnier", "mixed", "gfl"]}),
               "dsrir": ("dsrir", {"experiment": ["dsrir", "promptir", "full"]}),
               "mioir": ("mioir", {"experiment": [f"mioir/{n}_{m}{s}" for n in ("srresnet", R)
                                                  for s in ("", "_ep", "_ap") for m in ("m", "s")]}),
               "seed004": ("seed004", {"loss": ["charbonnier", "gfl"],
                                       "strategy.until": ["base", "ft1", "ft2", "ft3"]}),
               # ABAIR's evaluation sweeps (aio-eval -m, sweep.app: eval): one checkpoint, the rows its blends
               "abair_table1": ("abair_table1", {"dataset": ["synthetic_aio5"], "row": ["oh", "sw", "oracle"]}),
               "abair_table4": ("abair_table4", {"dataset": ["abair_unseen"], "abair.blend": ["sw"],
                                                 "abair.model": ["base", "added"]}),
               "abair_table5": ("abair_table5", {"dataset": ["abair_mixed"], "abair.blend": ["oh", "sw"]}),
               "abair_table6": ("abair_table6", {"abair": ["ir_only", "synthetic", "cutmix", "segmentation"]}),
               "abair_table7": ("abair_table7", {"abair": [f"{k}_r{r}" for k in ("lora", "vera", "conv_lora")
                                                           for r in (4, 8, 16)]}),
               "abair_table8": ("abair_table8", {"dataset": ["synthetic_aio5"], "abair.blend": ["sum", "average", "sw"]}),
               "per_task": ("per_task", {"experiment": ["baseline", "full"]}),
               "sota": ("sota", {"experiment": ["restormer", "promptir", "full"],
                                 "dataset": ["synthetic_aio3", "synthetic_aio5", "synthetic_cdd11"]})}),
}


def _signature(cfg) -> dict:
    """The composed job config plus the parts of the hydra node that config groups set."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain["hydra"] = {k: OmegaConf.to_container(cfg.hydra[k], resolve=False) for k in ("launcher", "sweeper")}
    return plain


@functools.lru_cache(maxsize=1)
def _base_signature() -> dict:
    return _signature(_compose_hydra([]))


def test_groups_are_discovered_from_the_folder():
    assert {"backbone", "gate", "lora_ratio", "loss", "dataset", "trainer", "logger", "paths", "launcher",
            "scale", "experiment", "debug", "sweep"} <= set(GROUPS)
    for group in GROUPS:
        assert GROUPS[group], f"conf/{group}/ has no options"


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_resolves_and_changes_the_config(group, option, tmp_path):
    cfg = _compose_hydra([_selection(group, option)])
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    with open_dict(job):
        job.paths.run_dir = str(tmp_path)
    plain = OmegaConf.to_container(job, resolve=True)
    assert plain["model"]["name"] and plain["trainer"]["max_steps"] >= 1
    if DEFAULTS.get(group) == option:
        return  # the default choice: composing it is the default composition
    mine = _signature(cfg)
    assert mine != _base_signature(), (
        f"{group}={option} composes to exactly the default config: the option has no effect "
        f"(check conf/{group}/{option}.yaml and its # @package line)")


PROBED = [(g, o) for g, o in CASES if g in EXPECTATIONS or g in HYDRA_EXPECTATIONS]
# Options whose measured effect differs from their documentation because of a bug in code outside conf/
# (strict: the case fails once the bug is fixed, so the entry is removed then).
KNOWN_BUGS: dict[tuple[str, str], str] = {}  # (group, option) -> why its effect is known to be wrong


@pytest.mark.parametrize("group,option", [
    pytest.param(g, o, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[g, o])) if (g, o) in KNOWN_BUGS
    else (g, o) for g, o in PROBED], ids=[f"{g}={o}" for g, o in PROBED])
def test_option_has_its_expected_effect(group, option):
    probe, expected = EXPECTATIONS.get(group) or HYDRA_EXPECTATIONS[group]
    if option not in expected:
        pytest.fail(f"conf/{group}/{option}.yaml has no expected effect: add {option!r} to the "
                    f"{'HYDRA_' if group in HYDRA_EXPECTATIONS else ''}EXPECTATIONS[{group!r}] table in "
                    f"tests/test_config.py")
    if group in HYDRA_EXPECTATIONS:
        cfg = _compose_hydra([f"{group}={option}"])
    else:
        cfg = compose_train(_probe_overrides(group, option))
    assert probe(cfg) == expected[option]


def _probe_overrides(group: str, option: str) -> list[str]:
    """How the probe composes an option: with its documented companions (``CONTEXT``); an appended group's
    option as the (first) sweep that lists it runs it, so the sweep's strategy cannot silently undo it."""
    if group in APPENDED:
        sweeps = _sweeps_listing(group, option)
        assert sweeps, f"{group}={option} is in no sweep's grid: add a CONTEXT entry saying how it is run"
        return [f"sweep={sweeps[0]}", f"{group}={option}"]
    return [f"{group}={option}", *CONTEXT.get((group, option), [])]


def test_appended_groups_are_the_groups_outside_the_defaults_list():
    """``abair`` is appended (``+abair=...`` or a sweep's defaults list), every other group has a default."""
    assert APPENDED == ["abair"]
    for group in APPENDED:
        with pytest.raises(ConfigCompositionException, match=rf"\+{group}="):
            compose_train([f"{group}={GROUPS[group][0]}"])  # Hydra: "To append ... use +abair=..."


@pytest.mark.parametrize("group", APPENDED)
def test_appended_group_is_checked_on_the_command_line(group):
    """``aio-train +abair=<option>`` passes the early check for every option; a typo fails naming them."""
    import subprocess
    import sys

    from aio.config import check_overrides

    for option in GROUPS[group]:
        check_overrides([f"+{group}={option}"])
    res = subprocess.run([sys.executable, "-m", "aio.cli.train", f"+{group}=nosuch"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert f"error: +{group}=nosuch: no such option in conf/{group}/; valid options: {', '.join(GROUPS[group])}" \
        in res.stderr, res.stderr


def test_every_probed_group_has_exactly_the_options_on_disk():
    for group, (_, expected) in {**EXPECTATIONS, **HYDRA_EXPECTATIONS}.items():
        stale = set(expected) - set(GROUPS.get(group, []))
        assert not stale, f"EXPECTATIONS[{group!r}] names options that no longer exist: {sorted(stale)}"


def test_model_options_change_the_network():
    from aio.models import count_parameters

    def params(*o):
        return count_parameters(_model(compose_train(list(o))))

    backbones = {o: params(f"backbone={o}") for o in GROUPS["backbone"]}
    assert len(set(backbones.values())) == len(backbones), backbones
    gates = {o: params(f"gate={o}") for o in GROUPS["gate"]}
    assert len(set(gates.values())) == len(gates), gates
    ratios = sorted(GROUPS["lora_ratio"], key=lambda o: EXPECTATIONS["lora_ratio"][1][o])
    counts = [params(f"lora_ratio={o}") for o in ratios]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), dict(zip(ratios, counts))


def test_abair_adapter_rows_change_the_adapters():
    """Table 7 rows build the adapters they name (tiny ABAIR, as the sweep composes them): LoRA's parameters
    grow linearly with the rank, VeRA trains a small fraction of LoRA's, Conv-LoRA more than LoRA (the
    relations of README's paper-size counts: 2.64 / 5.28 M, 0.40 M, 2.77 M at rank 4 / 8)."""
    def adapter_params(option):
        cfg = compose_train(_probe_overrides("abair", option))
        with open_dict(cfg):
            cfg.model.init_from = None  # the sweep's previous-phase checkpoint: not needed to count
        return sum(p.numel() for k, p in _model(cfg).named_parameters() if ".adapters." in k)

    n = {o: adapter_params(o) for o in ("lora_r4", "lora_r8", "vera_r4", "conv_lora_r4")}
    assert n["lora_r4"] > 0 and n["lora_r8"] == 2 * n["lora_r4"], n
    assert 0 < n["vera_r4"] < n["lora_r4"] / 4 and n["conv_lora_r4"] > n["lora_r4"], n


def test_experiment_rows_chain_cumulatively():
    """Each ablation row is the previous row plus exactly one change (the sweep's row order)."""
    rows = [r["key"] for r in OmegaConf.load(__import__("aio.paths").paths.SWEEPS_DIR / "ablation.yaml").sweep.rows]
    flat = [OmegaConf.to_container(compose_train([f"experiment={r}"]), resolve=False) for r in rows]

    def leaves(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(leaves(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    for prev, cur, name in zip(flat, flat[1:], rows[1:]):
        a, b = leaves({k: prev[k] for k in ("model", "loss")}), leaves({k: cur[k] for k in ("model", "loss")})
        changed = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
        assert changed and all(k in b for k in changed), (name, changed)
        kept = {k for k in a if k in b and a[k] == b[k]}
        assert kept | changed == set(a) | set(b)
        assert len({k.split(".")[1] if k.startswith("model.") else "loss" for k in changed}) == 1, (name, changed)


def test_default_composition_is_the_embedded_run():
    cfg = compose_train()
    assert cfg.dataset.name == "synthetic"
    assert cfg.model.name == "restormer" and cfg.model.size == "small"
    assert cfg.logger.name == "mlflow" and cfg.logger.tracking_uri.endswith("mlflow.db")


def test_misspelt_trainer_key_is_rejected():
    with pytest.raises((ConfigCompositionException, ConfigKeyError), match="max_stepz"):
        compose_train(["trainer.max_stepz=3"])


def test_wrong_type_is_rejected():
    with pytest.raises((ConfigCompositionException, ValidationError), match="many"):
        compose_train(["trainer.max_steps=many"])


def test_misspelt_dataset_key_is_rejected():
    with pytest.raises((ConfigCompositionException, ConfigKeyError), match="batchsize"):
        compose_train(["dataset.batchsize=3"])
