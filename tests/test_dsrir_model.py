"""DSRIR: the reference state-dict layout (names, shapes, count), strict loading, the ModelOutput contract,
padding inside the model, any input size, forward/backward and bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from aio.models import count_parameters, create_model, model_from_config
from aio.models.dsrir import EXTRAS, DSRIR
from aio.models.output import ModelOutput, restored_image
from aio.paths import CONF_DIR
from conftest import SHARED_REFERENCE


def _reference_entries() -> dict[str, tuple[int, ...]]:
    out = {}
    for line in (SHARED_REFERENCE / "dsrir_state_dict.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split("\t")
        out[name] = tuple(int(s) for s in shape.split("x"))
    return out


def _tiny(**over) -> DSRIR:
    cfg = OmegaConf.load(CONF_DIR / "backbone" / "dsrir.yaml")
    cfg.merge_with({"size": "tiny", **over})
    return model_from_config(cfg)


def test_state_dict_matches_the_reference_layout_and_loads_strict():
    ref = _reference_entries()
    model = create_model("dsrir")
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(ref) == 316
    assert own == ref
    assert count_parameters(model) == 3_516_837
    g = torch.Generator().manual_seed(0)
    weights = {k: torch.randn(shape, generator=g) for k, shape in ref.items()}
    model.load_state_dict(weights, strict=True)
    assert torch.equal(model.SN3.PAG4.body[4].weight, weights["SN3.PAG4.body.4.weight"])


def test_paper_backbone_config_is_the_reference_model():
    cfg = OmegaConf.load(CONF_DIR / "backbone" / "dsrir.yaml")
    assert count_parameters(model_from_config(cfg)) == 3_516_837


def test_output_contract_and_any_size_forward_backward():
    torch.manual_seed(0)
    model = _tiny()
    for h, w in [(24, 32), (21, 29)]:
        model.zero_grad(set_to_none=True)
        x = torch.rand(1, 3, h, w, requires_grad=True)
        out = model(x)
        assert isinstance(out, ModelOutput) and restored_image(out) is out.restored
        assert set(out.extras) == set(EXTRAS)
        for t in [out.restored, *out.extras.values()]:
            assert t.shape == x.shape and torch.isfinite(t).all()
        loss = sum(t.abs().mean() for t in [out.restored, *out.extras.values()])
        loss.backward()
        assert torch.isfinite(x.grad).all()
        unused = {n for n, p in model.named_parameters() if p.grad is None}
        assert unused == {"usau_3.conv2.weight", "usau_3.att_map.0.weight", "usau_3.att_map.0.bias"}


def test_padding_is_inside_the_model_and_exact_on_multiples_of_8():
    """``stages`` is the reference's forward (no padding); on a CPU the model runs it channels_last."""
    torch.manual_seed(1)
    model = _tiny().eval()
    x = torch.rand(1, 3, 40, 48)
    cl = torch.channels_last
    with torch.no_grad():
        out = model(x)
        images, variances = model.stages(x.contiguous(memory_format=cl))
        assert torch.equal(out.restored, images[0])
        assert torch.equal(out.extras["restored1"], images[2]) and torch.equal(out.extras["var2"], variances[1])
        assert (out.restored - model.stages(x)[0][0]).abs().max() < 1e-5  # NCHW, as the reference runs
        odd = x[..., :37, :45]
        padded = F.pad(odd, (0, 3, 0, 3), mode="reflect").contiguous(memory_format=cl)
        assert torch.equal(model(odd).restored, model.stages(padded)[0][0][..., :37, :45])


def test_bf16_autocast_and_channels_last():
    model = _tiny().to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 24, 32).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.restored.shape == x.shape and torch.isfinite(out.restored.float()).all()


def test_bad_settings_give_one_line_errors():
    with pytest.raises(ValueError, match="model.sn2_feats=12 must be a multiple of model.reduction=8"):
        create_model("dsrir", sn2_feats=12)
    with pytest.raises(ValueError, match="gate=channel is supported only by"):
        _tiny(gate="channel")
