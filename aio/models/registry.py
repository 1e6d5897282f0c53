"""A timm-style model registry, the config factory and the official-checkpoint loader."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}

#: Restormer-family switches and their neutral values (models without ``supports_ablations`` accept only these).
NEUTRAL = {"gate": "none", "ffn_ratio": 1.0, "attn_ratio": 1.0, "dfrg": False, "spatial_lora": False, "csff": False}


def register_model(name_or_obj: str | Callable | None = None):
    """Register a model class or builder: ``@register_model`` (uses ``__name__``, lower-cased) or
    ``@register_model("name")``. A registered object with ``supports_ablations = True`` accepts the
    Restormer-family switches (``gate``, ``ffn_ratio``, ``attn_ratio``, ``dfrg``, ``spatial_lora``, ``csff``)."""

    def deco(obj: Callable, name: str | None = None) -> Callable:
        key = name or obj.__name__.lower()
        if key in _MODELS and _MODELS[key] is not obj:
            raise ValueError(f"model {key!r} is already registered")
        _MODELS[key] = obj
        return obj

    if callable(name_or_obj):
        return deco(name_or_obj)
    return lambda obj: deco(obj, name_or_obj)


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs``."""
    if name not in _MODELS:
        raise ValueError(f"unknown model name={name!r}; valid: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)


def _is_neutral(key: str, value: Any) -> bool:
    if key == "dfrg":
        return not value or (isinstance(value, Mapping) and not value.get("enabled", False))
    if key in ("ffn_ratio", "attn_ratio"):
        return float(value) == 1.0
    return value == NEUTRAL[key]


def _neutral_hint(key: str) -> str:
    hints = {"gate": "gate=none", "ffn_ratio": "lora_ratio=full", "attn_ratio": "lora_ratio=full",
             "dfrg": "model.dfrg.enabled=false", "spatial_lora": "model.spatial_lora=false", "csff": "model.csff=false"}
    return hints[key]


def _show(key: str, value: Any) -> str:
    if key == "dfrg" and isinstance(value, Mapping):
        return f"dfrg.enabled={str(value.get('enabled')).lower()}"
    return f"{key}={str(value).lower() if isinstance(value, bool) else value}"


def prompted_model_name(backbone: str, prompt: str | None) -> str:
    """The registered model that adds ``prompt`` (``explicit`` | ``adaptive``, the ``prompt`` group) to
    ``backbone``: the one whose class has ``prompt_backbone == backbone`` and ``prompt_kind == prompt``;
    ``backbone`` itself for ``none``. A backbone without that variant is a one-line error."""
    if prompt in (None, "none"):
        return backbone
    kinds = sorted({getattr(m, "prompt_kind") for m in _MODELS.values() if hasattr(m, "prompt_backbone")})
    if prompt not in kinds:
        raise ValueError(f"model.prompt={prompt!r} unknown; valid: none, {', '.join(kinds)}")
    for key, m in _MODELS.items():
        if getattr(m, "prompt_backbone", None) == backbone and getattr(m, "prompt_kind", None) == prompt:
            return key
    family = sorted({m.prompt_backbone for m in _MODELS.values() if getattr(m, "prompt_kind", None) == prompt})
    raise ValueError(f"prompt={prompt} is supported only by backbone={'/'.join(family)}; "
                     f"use prompt=none with backbone={backbone}")


def model_from_config(cfg_model: Any) -> nn.Module:
    """Build a model from the composed ``model`` config node (a DictConfig or a dict).

    Keys: ``name`` (a registered model), ``prompt`` (``none`` or the prompted variant of ``name``, see
    :func:`prompted_model_name`), ``size`` (a key of ``sizes``, whose entry is merged over the other
    keys), ``sizes``, and the constructor's keyword arguments. Raises a one-line ValueError for an unknown
    name, size or key, or an ablation switch on a model that does not support it.
    """
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg_model, DictConfig):
            cfg_model = OmegaConf.to_container(cfg_model, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    cfg = dict(cfg_model)
    name = cfg.pop("name", None)
    if name not in _MODELS:
        raise ValueError(f"unknown model name={name!r}; valid: {', '.join(list_models())}")
    name = prompted_model_name(name, cfg.pop("prompt", "none"))
    sizes = cfg.pop("sizes", None) or {}
    size = cfg.pop("size", None)
    if size is not None:
        if size not in sizes:
            valid = ", ".join(sizes) or "(none defined)"
            raise ValueError(f"unknown model.size={size!r} for {name}; valid: {valid}")
        cfg.update(sizes[size] or {})
    entry = _MODELS[name]
    if not getattr(entry, "supports_ablations", False):
        family = [n for n, m in _MODELS.items() if getattr(m, "supports_ablations", False)]
        for key in NEUTRAL:
            if key in cfg:
                value = cfg.pop(key)
                if not _is_neutral(key, value):
                    raise ValueError(
                        f"{_show(key, value)} is supported only by backbone={'/'.join(family)}; "
                        f"use {_neutral_hint(key)} with backbone={name}"
                    )
    params = inspect.signature(entry).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(cfg) - set(params))
        if unknown:
            raise ValueError(f"unknown key(s) model.{', model.'.join(unknown)} for {name}; valid: {', '.join(params)}")
    return entry(**cfg)


# ----------------------------------------------------------------------------------------------------------
# Official checkpoints
# ----------------------------------------------------------------------------------------------------------
def extract_state_dict(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights in an official checkpoint: unwraps ``state_dict`` (Lightning) / ``params`` /
    ``params_ema`` (BasicSR) and strips ``net.`` (Lightning) and ``module.`` (DDP) key prefixes."""
    for wrapper in ("state_dict", "params", "params_ema", "model"):
        if wrapper in ckpt and isinstance(ckpt[wrapper], Mapping):
            ckpt = ckpt[wrapper]
            break
    out = {}
    for k, v in ckpt.items():
        for prefix in ("module.", "net."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def state_dict_mismatch(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str:
    """What keeps ``state_dict`` from loading strictly into ``model`` (missing, unexpected, mis-shaped keys,
    the first 10 of each), or "" when it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mis_shaped = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]

    def show(items: list[str]) -> str:
        return ", ".join(items[:10]) + (f" ... (+{len(items) - 10} more)" if len(items) > 10 else "")

    parts = [f"{len(missing)} missing: {show(missing)}" if missing else "",
             f"{len(unexpected)} unexpected: {show(unexpected)}" if unexpected else "",
             f"{len(mis_shaped)} mis-shaped: {show(mis_shaped)}" if mis_shaped else ""]
    return "; ".join(p for p in parts if p)


def load_official_checkpoint(model: nn.Module, path_or_state: Any, weights_only: bool = True) -> nn.Module:
    """Load an official Restormer / PromptIR / NAFNet checkpoint into ``model`` strictly.

    ``path_or_state`` is a file path or an already loaded dict. Raises a RuntimeError listing the missing,
    unexpected and mis-shaped keys when the layout does not match. Lightning checkpoints that pickle more than
    tensors need ``weights_only=False`` (only for files you trust).
    """
    if isinstance(path_or_state, Mapping):
        ckpt = path_or_state
    else:
        try:
            ckpt = torch.load(path_or_state, map_location="cpu", weights_only=weights_only)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(
                f"cannot read {path_or_state} with weights_only={weights_only}: {e}; "
                "if the file is trusted, retry with weights_only=False"
            ) from e
    sd = extract_state_dict(ckpt)
    problem = state_dict_mismatch(model, sd)
    if problem:
        raise RuntimeError(f"checkpoint does not match {type(model).__name__}: {problem}")
    model.load_state_dict(sd, strict=True)
    return model
