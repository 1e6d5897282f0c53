"""Each preset declares its metric protocol, and evaluation uses the declared one (issue 18)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from aio.paths import CONF_DIR


def _real_presets():
    out = []
    for path in sorted((CONF_DIR / "dataset").glob("*.yaml")):
        raw = OmegaConf.load(path)
        if raw.get("test_sets"):
            out.append(path.stem)
    return out


@pytest.mark.parametrize("preset", _real_presets())
def test_every_test_set_declares_its_protocol_in_the_yaml(preset):
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "dataset" / f"{preset}.yaml"))
    if raw.get("metric_protocol"):  # a named protocol (aio/metrics/protocols.py) scores every test set
        from aio.metrics.protocols import PROTOCOLS

        assert raw["metric_protocol"] in PROTOCOLS, f"conf/dataset/{preset}.yaml: unknown metric_protocol"
        return
    for name, spec in raw["test_sets"].items():
        missing = {"crop_border", "test_y_channel"} - set(spec)
        assert not missing, f"conf/dataset/{preset}.yaml: test set {name} does not declare {sorted(missing)}"


def test_aio_presets_use_the_rgb_protocol():
    from aio.data.config import load_preset

    for preset in ("aio3", "aio5", "cdd11"):
        for name, spec in load_preset(preset).test_sets.items():
            assert (spec.crop_border, spec.test_y_channel) == (0, False), (preset, name)


def test_evaluation_uses_the_declared_protocol(tmp_path):
    from aio.data import build_val_sets
    from aio.data.config import load_preset
    from aio.data.fixtures import make_aio_tree
    from aio.eval import evaluate_sets
    from aio.metrics import psnr

    root = make_aio_tree(tmp_path / "aio")
    class Mix(torch.nn.Conv2d):  # a colour-mixing "restoration" with aio's forward signature
        def forward(self, x, task=None):
            return super().forward(x)

    model = Mix(3, 3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.9]]).view(3, 3, 1, 1))
        model.bias.fill_(0.02)

    def run(y_channel: bool, border: int):
        cfg = load_preset("aio3", {"root": str(root), "test_sets": {"Rain100L": {
            "crop_border": border, "test_y_channel": y_channel}}})
        ds = build_val_sets(cfg)["Rain100L"]
        assert ds.protocol == {"crop_border": border, "test_y_channel": y_channel}
        got = evaluate_sets(model, {"Rain100L": ds})
        with torch.no_grad():
            want = [float(psnr(model(it["input"][None]).clamp(0, 1), it["target"][None], crop_border=border,
                               test_y_channel=y_channel)[0]) for it in (ds[i] for i in range(len(ds)))]
        assert got.per_set["Rain100L"]["psnr"] == pytest.approx(sum(want) / len(want), abs=1e-6)
        return got.per_set["Rain100L"]["psnr"]

    rgb, y = run(False, 0), run(True, 4)
    assert abs(rgb - y) > 0.05  # the two protocols differ on these images: the declaration takes effect
