"""ABAIR (Serrano-Lozano et al., arXiv 2411.18412): a backbone with a degradation-segmentation head,
one low-rank adapter per degradation and a degradation estimator that blends them per image.

No reference code is public; this follows the paper's text (see docs/abair.md for every choice we made).

Parts (each its own state-dict prefix, see :func:`split_parts`):
  ``backbone.*``   any registered network (Restormer at paper size in the paper); its keys are exactly the plain
                   backbone's, so a plain checkpoint of it loads as the ABAIR backbone;
  ``seg_head.*``   3x3 conv + GELU + 1x1 conv on the decoder features (the output of ``feature_module``,
                   Restormer's ``refinement``) to one logit per degradation class and pixel (phase I);
  ``...adapters.<name>.*``  one adapter per degradation inside every adapted layer (phase II);
  ``estimator.*``  a small CNN giving one probability per adapter (phase III).

``phase`` decides what trains (``requires_grad``; everything else is frozen, so its weights stay bitwise
unchanged under AdamW, which skips parameters without gradients):
  ``pretrain``: backbone + segmentation head;  ``adapters``: the adapters in ``train_adapters`` (default all);
  ``estimator``: the estimator;  ``frozen``: nothing (evaluation).
``blend`` decides the adapters' per-image weights (default: ``none`` in pretrain, ``oracle`` in adapters,
``sw`` otherwise): ``oracle`` one-hot of the true task label (phase II trains every adapter on its own task's
images only this way); ``oh`` one-hot of the estimator's argmax; ``sw`` the estimator's softmax; ``sum`` all
ones; ``average`` all ``1/K``; ``none`` the backbone alone. Only ``oracle`` reads the task label.

``forward(x, task)`` returns ``ModelOutput(restored, extras)`` with ``seg_logits [B, C, H, W]`` (when the head
exists), ``est_logits [B, K]`` (when the estimator ran) and ``blend [B, K]``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aio.models.adapters import BlendState, adapted_layers, count_adapter_parameters, inject_adapters
from aio.models.base import RestorationModel
from aio.models.estimator import DegradationEstimator
from aio.models.output import ModelOutput
from aio.models.registry import model_from_config, register_model

PHASES = ("pretrain", "adapters", "estimator", "frozen")
BLENDS = ("oracle", "oh", "sw", "sum", "average", "none")
DEFAULT_BLEND = {"pretrain": "none", "adapters": "oracle", "estimator": "sw", "frozen": "sw"}
ADAPTER_MARK = ".adapters."


def _plain(cfg: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return copy.deepcopy(cfg)


class SegmentationHead(nn.Module):
    """Per-pixel degradation logits from decoder features: 3x3 conv, GELU, 1x1 conv."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(channels, num_classes, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.body(f)


@register_model("abair")
class ABAIR(RestorationModel):
    """Backbone + segmentation head + per-degradation adapters + estimator; see the module docstring."""

    def __init__(
        self,
        backbone: Mapping | None = None,
        backbone_size: str | None = None,
        adapters: Sequence[str] = ("denoise_25", "derain", "dehaze", "deblur", "lowlight"),
        task_names: Sequence[str] | None = None,
        task_to_adapter: Mapping[str, str] | None = None,
        seg_classes: Sequence[str] | None = None,
        seg_head: bool = True,
        feature_module: str = "refinement",
        adapter: Mapping | None = None,
        estimator: Mapping | None = None,
        phase: str = "pretrain",
        train_adapters: Sequence[str] | None = None,
        blend: str | None = None,
        init_from: str | None = None,
    ):
        super().__init__()
        bb = _plain(backbone) or {"name": "restormer", "dim": 4, "num_blocks": [1, 1, 1, 1],
                                  "num_refinement_blocks": 1, "heads": [1, 1, 1, 1]}
        if backbone_size is not None:
            bb["size"] = backbone_size
        if bb.get("name") == "abair":
            raise ValueError("model.backbone.name=abair: the ABAIR backbone must be a plain network")
        self.backbone = model_from_config(bb)
        self.pad_multiple = getattr(self.backbone, "pad_multiple", 8)
        self.adapter_names = [str(a) for a in adapters]
        if len(set(self.adapter_names)) != len(self.adapter_names):
            raise ValueError(f"model.adapters={self.adapter_names} has duplicates")
        self.task_names = [str(t) for t in (task_names or self.adapter_names)]
        self.task_to_adapter = {str(k): str(v) for k, v in (_plain(task_to_adapter) or {}).items()}
        self.seg_classes = [str(c) for c in (seg_classes or self.adapter_names)]
        ad = {"kind": "lora", "rank": 4, "alpha": None, "targets": None, **(_plain(adapter) or {})}
        self.adapter_cfg = ad
        self.state = BlendState(self.adapter_names)
        self.adapted = inject_adapters(self.backbone, self.state, ad["kind"], int(ad["rank"]), ad["alpha"],
                                       targets=ad["targets"])

        self.feature_module = feature_module
        self._features: torch.Tensor | None = None
        self.seg_head: SegmentationHead | None = None
        if seg_head:
            try:
                feat = self.backbone.get_submodule(feature_module)
            except AttributeError:
                raise ValueError(f"model.feature_module={feature_module!r} is not a module of backbone "
                                 f"{bb.get('name')}") from None
            feat.register_forward_hook(self._keep_features)
            self.seg_head = SegmentationHead(self._feature_channels(), len(self.seg_classes))
        est = {"width": 16, "input_size": 128, **(_plain(estimator) or {})}
        self.estimator = DegradationEstimator(len(self.adapter_names), int(est["width"]), int(est["input_size"]))

        self.phase = "pretrain"
        self.set_phase(phase, train_adapters)
        self.set_blend(blend)
        if init_from:
            self.load_parts(init_from)

    # -- construction helpers -------------------------------------------------------------------------------
    def _keep_features(self, module, inputs, output) -> None:
        self._features = output

    @torch.no_grad()
    def _feature_channels(self) -> int:
        was = self.training
        self.backbone.eval()
        self.state.weights = None
        self.backbone(torch.zeros(1, 3, self.pad_multiple, self.pad_multiple, device=self._device()))
        self.backbone.train(was)
        c = int(self._features.shape[1])
        self._features = None
        return c

    def _device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    # -- phase and blending ------------------------------------------------------------------------------------
    def set_phase(self, phase: str, train_adapters: Sequence[str] | None = None) -> None:
        """Freeze everything but what ``phase`` trains (see the module docstring)."""
        if phase not in PHASES:
            raise ValueError(f"model.phase={phase!r} unknown; choose from {', '.join(PHASES)}")
        train_adapters = list(train_adapters) if train_adapters else list(self.adapter_names)
        unknown = [a for a in train_adapters if a not in self.adapter_names]
        if unknown:
            raise ValueError(f"model.train_adapters={unknown} are not adapters ({self.adapter_names})")
        self.phase, self.train_adapter_names = phase, train_adapters
        for p in self.parameters():
            p.requires_grad_(False)
        if phase == "pretrain":
            for name, p in self.named_parameters():
                if not name.startswith("estimator.") and ADAPTER_MARK not in name:
                    p.requires_grad_(True)
        elif phase == "adapters":
            for _, layer in adapted_layers(self.backbone):
                for a in train_adapters:
                    layer.adapters[a].requires_grad_(True)
        elif phase == "estimator":
            self.estimator.requires_grad_(True)

    def set_blend(self, blend: str | None) -> None:
        blend = blend or DEFAULT_BLEND[self.phase]
        if blend not in BLENDS:
            raise ValueError(f"abair.blend={blend!r} unknown; choose from {', '.join(BLENDS)}")
        self.blend = blend

    def set_task_names(self, names: Sequence[str]) -> None:
        """The task list that ``task`` labels index (the evaluated dataset's ``tasks``); used by ``oracle``."""
        self.task_names = [str(n) for n in names]

    def oracle_weights(self, task: torch.Tensor) -> torch.Tensor:
        """One-hot rows selecting each image's own adapter (its task name must be an adapter)."""
        idx = []
        for t in task.view(-1).tolist():
            name = self.task_names[int(t)] if 0 <= int(t) < len(self.task_names) else f"#{t}"
            name = self.task_to_adapter.get(name, name)
            if name not in self.adapter_names:
                raise ValueError(f"abair.blend=oracle: task {name!r} has no adapter (adapters: "
                                 f"{self.adapter_names}); use abair.blend=oh or sw for unseen degradations")
            idx.append(self.adapter_names.index(name))
        return nn.functional.one_hot(torch.tensor(idx, device=task.device), len(self.adapter_names)).float()

    def blend_weights(self, x: torch.Tensor, task: torch.Tensor | None) -> tuple[torch.Tensor | None,
                                                                                torch.Tensor | None]:
        """``(weights [B, K] or None, estimator logits or None)`` for the current ``blend``."""
        b, k = x.shape[0], len(self.adapter_names)
        if self.blend == "none":
            return None, None
        if self.blend == "oracle":
            if task is None:
                raise ValueError("abair.blend=oracle needs the task label; blind modes: oh, sw")
            return self.oracle_weights(task.to(x.device)).to(x.dtype), None
        if self.blend == "sum":
            return x.new_ones(b, k), None
        if self.blend == "average":
            return x.new_full((b, k), 1.0 / k), None
        logits = self.estimator(x)
        probs = logits.float().softmax(-1)
        if self.blend == "oh":
            probs = nn.functional.one_hot(probs.argmax(-1), k).float()
        return probs.to(x.dtype), logits

    # -- forward ---------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> ModelOutput:
        weights, est_logits = self.blend_weights(x, task)
        self.state.weights = weights
        self._features = None
        try:
            restored = self.backbone(x)
        finally:
            self.state.weights = None
        extras: dict[str, torch.Tensor] = {}
        if self.seg_head is not None and self._features is not None:
            h, w = x.shape[-2:]
            extras["seg_logits"] = self.seg_head(self._features)[..., :h, :w]
        self._features = None
        if est_logits is not None:
            extras["est_logits"] = est_logits
        elif self.phase == "estimator":
            extras["est_logits"] = self.estimator(x)
        if weights is not None:
            extras["blend"] = weights.detach()
        return ModelOutput(restored, extras)

    # -- parts -------------------------------------------------------------------------------------------------------
    def adapter_parameter_count(self, name: str | None = None) -> int:
        return count_adapter_parameters(self.backbone, name)

    def parts(self) -> dict[str, Any]:
        """``{"backbone", "seg_head", "estimator": state dicts, "adapters": {name: state dict}, "meta"}``."""
        out = split_parts(self.state_dict())
        out["meta"] = {"adapters": list(self.adapter_names), "seg_classes": list(self.seg_classes),
                       "adapter": dict(self.adapter_cfg)}
        return out

    def load_parts(self, source: str | os.PathLike | Mapping, which: Sequence[str] | None = None) -> list[str]:
        """Load parts from a parts file (:func:`save_parts`), an aio checkpoint of an ABAIR run, or a plain
        backbone checkpoint (then only ``backbone``). Parts absent from the source or of another shape (the
        estimator of a smaller adapter set; an adapter of another kind or rank, e.g. the untrained rank-4 LoRA
        a phase-I checkpoint carries when a Table-7 row builds rank-16 VeRA) stay as they are; returns the
        loaded part names."""
        parts = read_parts(source)
        which = list(which) if which else ["backbone", "seg_head", "adapters", "estimator"]
        loaded = []
        own = split_parts(self.state_dict())

        def fits(mine: Mapping[str, torch.Tensor], theirs: Mapping[str, torch.Tensor]) -> bool:
            return all(mine.get(k) is not None and mine[k].shape == v.shape for k, v in theirs.items())

        for part in which:
            if part == "adapters":
                for name, sd in (parts.get("adapters") or {}).items():
                    if name in own["adapters"] and fits(own["adapters"][name], sd):
                        self._load_prefixed(sd)
                        loaded.append(f"adapters.{name}")
                continue
            sd = parts.get(part)
            if not sd:
                continue
            if part != "backbone" and not fits(own[part], sd):
                continue  # a head/estimator of another class set: trained afresh
            self._load_prefixed(sd, strict_part=part == "backbone")
            loaded.append(part)
        if "backbone" in which and "backbone" not in loaded:
            raise ValueError(f"model.init_from={source}: no backbone weights found")
        return loaded

    def _load_prefixed(self, sd: Mapping[str, torch.Tensor], strict_part: bool = False) -> None:
        own = self.state_dict()
        if strict_part:
            backbone_keys = [k for k in own if k.startswith("backbone.") and ADAPTER_MARK not in k]
            missing = [k for k in backbone_keys if k not in sd]
            wrong = [k for k in sd if k not in own or own[k].shape != sd[k].shape]
            if missing or wrong:
                raise ValueError(f"model.init_from: backbone weights do not fit ({len(missing)} missing, e.g. "
                                 f"{missing[:3]}; {len(wrong)} unexpected/mis-shaped, e.g. {wrong[:3]}); check "
                                 f"model.backbone and its size")
        with torch.no_grad():
            for k, v in sd.items():
                own[k].copy_(v)


# -- parts files -------------------------------------------------------------------------------------------------
def split_parts(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Split an ABAIR state dict into ``backbone`` / ``seg_head`` / ``estimator`` / ``adapters[name]`` (full
    keys kept, so each part loads back into the model by name)."""
    out: dict[str, Any] = {"backbone": {}, "seg_head": {}, "estimator": {}, "adapters": {}}
    for k, v in state_dict.items():
        if ADAPTER_MARK in k:
            name = k.split(ADAPTER_MARK, 1)[1].split(".", 1)[0]
            out["adapters"].setdefault(name, {})[k] = v
        elif k.startswith("seg_head."):
            out["seg_head"][k] = v
        elif k.startswith("estimator."):
            out["estimator"][k] = v
        else:
            out["backbone"][k] = v
    return out


def read_parts(source: str | os.PathLike | Mapping) -> dict[str, Any]:
    """Parts from a parts dict, a parts file, an ABAIR checkpoint (EMA weights when present) or a plain
    backbone checkpoint (its keys prefixed ``backbone.``)."""
    if isinstance(source, Mapping):
        return dict(source)
    from aio.train.checkpoint import load_checkpoint

    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model.init_from={source} does not exist; give a parts file or a run folder")
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") == "abair_parts":
        return ckpt
    weights = ckpt["ema"] if ckpt.get("ema") is not None else ckpt.get("model")
    if weights is None:
        from aio.models.registry import extract_state_dict

        weights = {k: v for k, v in extract_state_dict(ckpt).items() if torch.is_tensor(v)}
    if not any(k.startswith("backbone.") for k in weights):
        weights = {f"backbone.{k}": v for k, v in weights.items()}
    return split_parts(weights)


def save_parts(model: ABAIR, path: str | os.PathLike, which: Sequence[str] | None = None,
               adapters: Sequence[str] | None = None) -> Path:
    """Write the model's parts (all, or ``which`` / the named ``adapters``) atomically to ``path``."""
    from aio.train.checkpoint import save_checkpoint

    parts = model.parts()
    which = list(which) if which else ["backbone", "seg_head", "adapters", "estimator"]
    state: dict[str, Any] = {"kind": "abair_parts", "meta": parts["meta"]}
    for part in which:
        state[part] = parts[part]
    if adapters is not None and "adapters" in state:
        state["adapters"] = {n: sd for n, sd in state["adapters"].items() if n in set(adapters)}
    return save_checkpoint(path, state)


def export_parts(checkpoint: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Split a trainer checkpoint of an ABAIR run into a parts file (backbone, head, adapters, estimator)."""
    from aio.train.checkpoint import load_model

    model, _ = load_model(checkpoint)
    return save_parts(model, path)


# -- evaluation helpers (aio-eval) ----------------------------------------------------------------------------
def prepare_eval(model: nn.Module, abair_cfg: Mapping | None, task_names: Sequence[str] | None) -> str | None:
    """Set an ABAIR model up for evaluation: frozen, ``abair.blend`` (default ``sw``), and the evaluated
    dataset's task names for ``oracle``; returns the blend used (None for other models, which only check
    that no ``abair.blend`` was asked for)."""
    blend = (abair_cfg or {}).get("blend") if abair_cfg is not None else None
    if not isinstance(model, ABAIR):
        if blend:
            raise ValueError(f"abair.blend={blend} needs an ABAIR checkpoint (model.name=abair)")
        return None
    model.set_phase("frozen")
    model.set_blend(blend or "sw")
    if task_names:
        model.set_task_names(task_names)
    return model.blend


@torch.no_grad()
def estimator_accuracy(model: nn.Module, sets: Mapping[str, Any], device=None) -> dict[str, float]:
    """Top-1 accuracy of the estimator per set whose task has an adapter (others are left out)."""
    if not isinstance(model, ABAIR):
        return {}
    device = device or model._device()
    out = {}
    was = model.training
    model.eval()
    for name, ds in sets.items():
        task = model.task_to_adapter.get(str(getattr(ds, "task_name", "")), str(getattr(ds, "task_name", "")))
        if task not in model.adapter_names:
            continue
        want = model.adapter_names.index(task)
        hits = [int(model.estimator(ds[i]["input"][None].to(device)).argmax(-1)) == want for i in range(len(ds))]
        out[name] = float(sum(hits) / max(1, len(hits)))
    model.train(was)
    return out


def add_estimator_accuracy(model: nn.Module, sets: Mapping[str, Any], result, device=None) -> dict[str, float]:
    """Put ``est_acc`` per set (and its mean under ``average``) into an EvalResult; returns the per-set values."""
    acc = estimator_accuracy(model, sets, device)
    for name, value in acc.items():
        result.per_set[name]["est_acc"] = value
    if acc:
        result.average["est_acc"] = float(sum(acc.values()) / len(acc))
    return acc
