"""VGG19 perceptual loss: weighted L1 between ReLU feature maps of prediction and target.

The network is ``torchvision.models.vgg19(weights=None)``; its weights are read from a local file given as
``loss.perceptual.weights`` (nothing is downloaded). Accepted files: a torchvision VGG19 state dict
(``features.N.weight`` keys, classifier keys ignored), a features-only state dict (``N.weight``), or either
wrapped under ``state_dict``/``model``. ``loss.perceptual.weights: random`` is an explicit opt-in to a
randomly initialised (seeded) VGG for tests and smoke runs: the module then has ``random_init = True`` so
the trainer can tag the run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

KEY = "loss.perceptual.weights"
RANDOM_CHOICES = ("random", "random_init", "none-random")

# index (in vgg19().features) of each ReLU output
VGG19_RELU = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15, "relu3_4": 17,
    "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26,
    "relu5_1": 29, "relu5_2": 31, "relu5_3": 33, "relu5_4": 35,
}
DEFAULT_LAYERS = {"relu1_2": 0.1, "relu2_2": 0.1, "relu3_4": 1.0, "relu4_4": 1.0, "relu5_4": 1.0}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualWeightsError(ValueError):
    """Raised (one line, naming ``loss.perceptual.weights``) when the VGG weights cannot be used."""


def _extract_features_state(obj, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for wrap in ("state_dict", "model", "params"):
            if wrap in obj and isinstance(obj[wrap], Mapping):
                obj = obj[wrap]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise PerceptualWeightsError(f"{KEY}={path!r} is not a VGG19 state dict (got {type(obj).__name__})")
    out = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue
        k = k.removeprefix("module.")
        if k.startswith("features."):
            out[k[len("features."):]] = v
        elif k.split(".")[0].isdigit():
            out[k] = v
    if not out:
        raise PerceptualWeightsError(f"{KEY}={path!r} has no VGG19 'features.*' weights")
    return out


def load_vgg19_features(weights, last_index: int) -> tuple[nn.Sequential, bool]:
    """Build ``vgg19().features[: last_index + 1]`` and load ``weights``; returns (features, random_init)."""
    from torchvision.models import vgg19

    if weights is None or (isinstance(weights, str) and not weights.strip()):
        raise PerceptualWeightsError(
            f"{KEY} is not set: give a local VGG19 state-dict file (e.g. {KEY}=/path/vgg19-dcbb9e9d.pth) "
            f"or {KEY}=random for a randomly initialised VGG (tests only)")
    random_init = isinstance(weights, str) and weights.strip().lower() in RANDOM_CHOICES
    state = None
    if not random_init:
        path = os.path.expanduser(str(weights))
        if not os.path.isfile(path):
            raise PerceptualWeightsError(f"{KEY}={weights!r}: file not found (give a local VGG19 state dict or 'random')")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - report any unreadable file in one line
            raise PerceptualWeightsError(
                f"{KEY}={weights!r}: cannot read as a torch state dict ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        state = _extract_features_state(obj, str(weights))
    # Build on the meta device (the 100M-parameter classifier is never materialised), keep the layers
    # up to the last one used, then fill them: torchvision's own init (seeded) or the file's weights.
    with torch.device("meta"):
        net = vgg19(weights=None)
    features = net.features[: last_index + 1].to_empty(device="cpu")
    own = features.state_dict()
    if random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for m in features.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
    else:
        missing = [k for k in own if k not in state]
        bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or bad:
            raise PerceptualWeightsError(
                f"{KEY}={weights!r} does not match VGG19 features: missing {missing[:3]}, "
                f"wrong shape {bad[:3]}")
        features.load_state_dict({k: state[k] for k in own})
    for m in features.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    features.eval()
    for p in features.parameters():
        p.requires_grad_(False)
    return features, random_init


class PerceptualLoss(nn.Module):
    """sum_l w_l * L1(phi_l(pred), phi_l(target)) on ImageNet-normalised inputs; term ``l_percep``."""

    def __init__(self, weights=None, layers: Mapping[str, float] | None = None, weight: float = 1.0,
                 criterion: str = "l1"):
        super().__init__()
        layers = dict(layers or DEFAULT_LAYERS)
        unknown = [k for k in layers if k not in VGG19_RELU]
        if unknown:
            raise ValueError(f"loss.perceptual.layers: unknown {unknown}; choose from {list(VGG19_RELU)}")
        if criterion not in ("l1", "l2", "mse"):
            raise ValueError(f"loss.perceptual.criterion={criterion!r}; choose from ['l1', 'l2']")
        self.criterion = criterion
        self.layer_weights = {VGG19_RELU[k]: float(v) for k, v in layers.items()}
        self.layer_names = list(layers)
        self.weight = float(weight)
        self.vgg, self.random_init = load_vgg19_features(weights, max(self.layer_weights))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.vgg.eval()  # frozen feature extractor, always in eval mode
        return self

    def _features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = (x - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.vgg):
            x = layer(x)
            if i in self.layer_weights:
                out[i] = x
        return out

    def distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.mean.device != pred.device:
            self.to(pred.device)
        pred, target = pred.float(), target.float()
        with torch.autocast(device_type=pred.device.type, enabled=False):
            fp = self._features(pred)
            with torch.no_grad():
                ft = self._features(target)
            dist = F.l1_loss if self.criterion == "l1" else F.mse_loss
            return sum(w * dist(fp[i], ft[i]) for i, w in self.layer_weights.items())

    def forward(self, pred: torch.Tensor, target: torch.Tensor):
        loss = self.weight * self.distance(pred, target)
        return loss, {"l_percep": loss.detach()}
