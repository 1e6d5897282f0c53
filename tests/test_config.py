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
    from aio.losses import build_loss

    torch.manual_seed(0)
    with open_dict(cfg):
        cfg.paths.vgg19_weights = "random"
    loss = build_loss(cfg.loss)
    return sorted(loss(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))[1])


def _experiment_row(cfg):
    m = cfg.model
    return (m.name, m.get("gate"), m.get("ffn_ratio"), m.get("attn_ratio"), bool(m.get("dfrg", {}).get("enabled")),
            bool(m.get("spatial_lora")), bool(m.get("csff")), cfg.loss.name)


R = "restormer"
# group -> (probe(composed cfg) -> value, {option: expected value}); see the module docstring
EXPECTATIONS = {
    "backbone": (lambda c: (type(_model(c)).__name__, c.model.name),
                 {"restormer": ("Restormer", "restormer"), "promptir": ("PromptIR", "promptir"),
                  "nafnet": ("NAFNet", "nafnet"), "nafnet_gopro": ("NAFNet", "nafnet")}),
    "gate": (lambda c: c.model.gate, {"none": "none", "elementwise": "elementwise", "channel": "channel"}),
    "lora_ratio": (lambda c: (c.model.ffn_ratio, c.model.attn_ratio),
                   {"full": (1.0, 1.0), "r03_06": (0.3, 0.6), "r04_07": (0.4, 0.7), "r05_08": (0.5, 0.8),
                    "r06_09": (0.6, 0.9)}),
    "loss": (_loss_terms, {"l1": ["l_pix"], "charbonnier": ["l_pix"], "fft": ["l_freq"], "edge": ["l_edge"],
                           "perceptual": ["l_percep"], "mixed": ["l_edge", "l_percep", "l_pix"],
                           "gfl": ["l_gfl"], "gfl_banded": ["l_freq", "l_lap", "l_pix"]}),
    "dataset": (lambda c: (c.dataset.kind, list(c.dataset.tasks)[:2], len(c.dataset.tasks)),
                {"synthetic": ("synthetic", ["denoise_15", "denoise_25"], 5),
                 "synthetic_aio3": ("synthetic", ["denoise_15", "denoise_25"], 5),
                 "synthetic_aio5": ("synthetic", ["denoise_25", "derain"], 5),
                 "synthetic_cdd11": ("synthetic", ["low", "haze"], 11),
                 "aio3": ("aio", ["denoise_15", "denoise_25"], 5), "aio5": ("aio", ["denoise_25", "derain"], 5),
                 "cdd11": ("cdd11", ["low", "haze"], 11), "folder": ("folder", ["folder"], 1),
                 "derain_desnow": ("aio", ["derain", "desnow"], 2),
                 "synthetic_derain_desnow": ("synthetic", ["derain", "desnow"], 2)}),
    "scale": (lambda c: (c.model.size, c.trainer.max_steps),
              {"tiny": ("tiny", 150), "small": ("small", 300), "paper": ("paper", 300000)}),
    "experiment": (_experiment_row, {
        "baseline": (R, "elementwise", 0.5, 0.8, False, False, False, "l1"),
        "dfrg": (R, "elementwise", 0.5, 0.8, True, False, False, "l1"),
        "spatial_lora": (R, "elementwise", 0.5, 0.8, True, True, False, "l1"),
        "csff": (R, "elementwise", 0.5, 0.8, True, True, True, "l1"),
        "full": (R, "elementwise", 0.5, 0.8, True, True, True, "mixed"),
        "restormer": (R, "none", 1.0, 1.0, False, False, False, "l1"),
        "promptir": ("promptir", "none", 1.0, 1.0, False, False, False, "l1"),
        "nafnet": ("nafnet", "none", 1.0, 1.0, False, False, False, "l1")}),
    "debug": (lambda c: (c.model.size, c.trainer.max_steps, c.trainer.progress), {"tiny": ("tiny", 4, False)}),
    "logger": (lambda c: c.logger.name, {"mlflow": "mlflow", "none": "none"}),
}
# groups whose effect lives in the hydra node (composed with return_hydra_config=True)
HYDRA_EXPECTATIONS = {
    "launcher": (lambda c: c.hydra.launcher._target_.rsplit(".", 1)[-1],
                 {"local": "BasicLauncher", "submitit_local": "LocalLauncher", "slurm": "SlurmLauncher"}),
    "sweep": (lambda c: (c.sweep.name, sorted(c.hydra.sweeper.params)),
              {"ablation": ("ablation", ["experiment"]), "lora_ratio": ("lora_ratio", ["lora_ratio"]),
               "backbones": ("backbones", ["experiment"]), "losses": ("losses", ["loss"]),
               "seed004": ("seed004", ["loss", "strategy.until"])}),
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
    cfg = _compose_hydra([f"{group}={option}"])
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


@pytest.mark.parametrize("group,option", PROBED, ids=[f"{g}={o}" for g, o in PROBED])
def test_option_has_its_expected_effect(group, option):
    probe, expected = EXPECTATIONS.get(group) or HYDRA_EXPECTATIONS[group]
    if option not in expected:
        pytest.fail(f"conf/{group}/{option}.yaml has no expected effect: add {option!r} to the "
                    f"{'HYDRA_' if group in HYDRA_EXPECTATIONS else ''}EXPECTATIONS[{group!r}] table in "
                    f"tests/test_config.py")
    cfg = _compose_hydra([f"{group}={option}"]) if group in HYDRA_EXPECTATIONS else compose_train([f"{group}={option}"])
    assert probe(cfg) == expected[option]


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
