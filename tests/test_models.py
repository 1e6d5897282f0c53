"""Networks: forward/backward of every backbone and of the Restormer family's gate x row at tiny size,
autocast/channels_last, the gated attention, the LoRa role map, the DFRG expert weights / routing loss,
model_from_config's errors and the aio-model CLI."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from aio.models import (
    RestorationModel,
    count_parameters,
    create_model,
    crop_to,
    forward_gflops,
    list_models,
    model_from_config,
    pad_to_multiple,
)
from aio.models.blocks.attention import Attention
from aio.models.output import restored_image
from aio.models.blocks.gates import GATES
from aio.models.blocks.lora import BASELINE_ROLES, ENHANCED_ROLES, LoRaConv, LoRaPlan, SpatialLoRaConv
from aio.paths import CONF_DIR


BACKBONES = ["restormer", "promptir", "nafnet", "nafnet_gopro", "airnet"]
#: The ablation rows (cumulative, as conf/experiment builds them) on top of the dense network.
_LORA = {"ffn_ratio": 0.5, "attn_ratio": 0.8}
_DFRG = _LORA | {"dfrg": {"enabled": True, "aux_weight": 0.1}}
ROWS = {
    "dense": {},
    "baseline": _LORA,
    "dfrg": _DFRG,
    "spatial_lora": _DFRG | {"spatial_lora": True},
    "csff": _DFRG | {"spatial_lora": True, "csff": True},
}


TASKS = ["denoise_15", "denoise_25", "denoise_50", "derain", "dehaze"]


def model_cfg(backbone: str, size: str = "tiny", gate: str = "none", **over):
    """The composed ``model`` node as the config groups build it: backbone yaml (+ prompt yaml for a prompted
    variant such as ``restormer_ep``) + gate + lora_ratio=full, ``${dataset.tasks}`` resolved to the AIO-3 tasks."""
    base, _, kind = backbone.rpartition("_")
    prompt = {"ep": "explicit", "ap": "adaptive"}.get(kind) if base else None
    cfg = OmegaConf.load(CONF_DIR / "backbone" / f"{base if prompt else backbone}.yaml")
    if prompt:
        cfg.merge_with(OmegaConf.load(CONF_DIR / "prompt" / f"{prompt}.yaml"))
    cfg = OmegaConf.merge({"dataset": {"tasks": TASKS}}, {"model": cfg}).model
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    cfg.merge_with({"gate": gate, "ffn_ratio": 1.0, "attn_ratio": 1.0, "size": size})
    cfg.merge_with(over)
    return cfg


def _fwd_bwd(model: torch.nn.Module, shape: tuple[int, int], task=None) -> None:
    x = torch.rand(2, 3, *shape, requires_grad=True)
    y = restored_image(model(x, task=task))
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    loss = (y - x.detach()).abs().mean() + sum(model.aux_losses(task).values(), torch.zeros(()))
    loss.backward()
    assert torch.isfinite(x.grad).all()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


CASES = [(b, "none", "dense") for b in sorted(set(list_models()) - {"restormer"})] + [
    ("restormer", g, r) for g in GATES for r in ROWS
]


def test_cases_cover_every_registered_model():
    assert {c[0] for c in CASES} == set(list_models())


@pytest.mark.parametrize("backbone,gate,row", CASES, ids=["-".join(c) for c in CASES])
def test_forward_backward_any_size(backbone, gate, row):
    torch.manual_seed(0)
    model = model_from_config(model_cfg(backbone, gate=gate, **ROWS[row]))
    assert isinstance(model, RestorationModel)
    task = torch.tensor([0, 3])
    for shape in [(64, 64), (37, 53)]:
        model.zero_grad(set_to_none=True)
        _fwd_bwd(model, shape, task)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_autocast_bf16_and_channels_last(backbone):
    over = ROWS["csff"] if backbone == "restormer" else {}
    gate = "elementwise" if backbone == "restormer" else "none"
    model = model_from_config(model_cfg(backbone, gate=gate, **over)).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 40, 36).to(memory_format=torch.channels_last)  # batch 2: spatial LoRa has BatchNorms
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y.float()).all()
    y.float().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():  # channels_last gives the same result as contiguous
        ref = model(x.contiguous())
        assert torch.allclose(model(x), ref, atol=1e-5)


def _unambiguous(t, memory_format) -> bool:
    """``t`` is a 4-D tensor dense in ``memory_format`` and not also in the other one (1x1 maps are both)."""
    other = torch.contiguous_format if memory_format is torch.channels_last else torch.channels_last
    return (torch.is_tensor(t) and t.dim() == 4 and t.is_contiguous(memory_format=memory_format)
            and not t.is_contiguous(memory_format=other))


@pytest.mark.parametrize("channels_last_input", [False, True], ids=["nchw_input", "channels_last_input"])
@pytest.mark.parametrize("backbone,gate,row", [(b, "none", "dense") for b in list_models()]
                         + [("restormer", g, "csff") for g in GATES if g != "none"])
def test_no_module_drops_channels_last(backbone, gate, row, channels_last_input):
    """Once a feature map is channels_last (aio's CPU layout from the patch embedding on, or a channels_last
    input), no module turns it back to NCHW: a module whose 4-D inputs are all channels_last returns none in
    NCHW. One such drop (PromptIR's NCHW prompt) turned the rest of the decoder NCHW, with a layout copy at
    every LayerNorm (6% of an fp32 step)."""
    torch.manual_seed(0)
    # small, not tiny: a tiny model's 1-channel maps (CSFF's squeeze) are both layouts at once, and a conv
    # given one returns NCHW
    model = model_from_config(model_cfg(backbone, size="small", gate=gate, **ROWS[row])).eval()
    drops = []

    def check(name, inputs, output):
        maps = [t for t in inputs if torch.is_tensor(t) and t.dim() == 4]
        outputs = output if isinstance(output, (tuple, list)) else [output]
        if maps and all(_unambiguous(t, torch.channels_last) for t in maps) and any(
                _unambiguous(o, torch.contiguous_format) for o in outputs):
            drops.append(f"{name or '<model>'} ({type(mod_of[name]).__name__})")

    mod_of = dict(model.named_modules())
    for name, module in mod_of.items():
        module.register_forward_hook(lambda m, i, o, name=name: check(name, i, o))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        model(x.contiguous(memory_format=torch.channels_last) if channels_last_input else x, task=torch.tensor([0, 1]))
    assert not drops, f"modules returning NCHW from channels_last inputs: {drops}"


def test_sizes_small_are_cpu_friendly():
    for backbone in BACKBONES:
        for size, (lo, hi) in {"tiny": (1e4, 1.2e5), "small": (1e5, 3.5e5)}.items():
            with torch.device("meta"):
                n = count_parameters(model_from_config(model_cfg(backbone, size)))
            assert lo < n < hi, (backbone, size, n)


def test_registry():
    assert {"restormer", "promptir", "nafnet"} <= set(list_models())
    m = create_model("nafnet", width=4, enc_blk_nums=[1], middle_blk_num=1, dec_blk_nums=[1])
    assert m(torch.rand(1, 3, 9, 7)).shape == (1, 3, 9, 7)
    with pytest.raises(ValueError, match="valid: " + ", ".join(list_models()) + "$"):
        create_model("unet")


def test_pad_and_crop():
    x = torch.rand(1, 3, 37, 53)
    p, size = pad_to_multiple(x, 8)
    assert p.shape[-2:] == (40, 56) and torch.equal(crop_to(p, size), x)
    tiny = torch.rand(1, 3, 3, 2)  # too small to reflect: falls back to replicate
    p, size = pad_to_multiple(tiny, 8)
    assert p.shape[-2:] == (8, 8) and torch.equal(crop_to(p, size), tiny)


# -- model_from_config errors ------------------------------------------------------------------------------
def _one_line_error(cfg) -> str:
    with pytest.raises(ValueError) as e:
        model_from_config(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_model_from_config_errors():
    msg = _one_line_error(model_cfg("restormer", name="unet"))
    assert "unet" in msg and "nafnet, promptir, restormer" in msg
    msg = _one_line_error(model_cfg("restormer", size="huge"))
    assert "huge" in msg and "tiny, small, demo, paper" in msg
    msg = _one_line_error(model_cfg("nafnet", gate="elementwise"))
    assert msg.startswith("gate=elementwise is supported only by backbone=restormer") and "gate=none" in msg
    msg = _one_line_error(model_cfg("promptir", ffn_ratio=0.5, attn_ratio=0.8))
    assert "ffn_ratio=0.5" in msg and "lora_ratio=full" in msg
    cfg = model_cfg("nafnet_gopro")
    cfg.merge_with({"dfrg": {"enabled": True}})
    assert "dfrg.enabled=true" in _one_line_error(cfg)
    cfg = model_cfg("nafnet")
    cfg.merge_with({"csff": True})
    assert "csff=true" in _one_line_error(cfg)
    cfg = model_cfg("restormer")
    cfg.merge_with({"widht": 3})
    assert "model.widht" in _one_line_error(cfg)
    # neutral values are accepted (and dropped) by the non-Restormer models
    cfg = model_cfg("promptir")
    cfg.merge_with({"dfrg": {"enabled": False, "experts": 4}, "spatial_lora": False, "csff": False})
    assert type(model_from_config(cfg)).__name__ == "PromptIR"
    assert type(model_from_config(dict(OmegaConf.to_container(model_cfg("nafnet"))))).__name__ == "NAFNet"


# -- seed-000 blocks ---------------------------------------------------------------------------------------
def test_lora_plan_roles_and_ranks():
    plan = LoRaPlan(0.5, 0.8)
    assert isinstance(LoRaPlan().conv1x1("attn.qkv", 48, 192), torch.nn.Conv2d)  # ratio 1.0: dense
    qkv = plan.conv1x1("attn.qkv", 48, 192)
    assert isinstance(qkv, LoRaConv) and qkv.conv1.out_channels == 38  # int(48 * 0.8)
    assert plan.conv1x1("attn.project_out", 48, 48).conv1.out_channels == 24  # the reference gives it the FFN ratio
    assert plan.conv1x1("ffn.project_out", 127, 48, bias=True).conv2.bias is not None  # the original bias
    assert isinstance(plan.conv1x1("reduce", 96, 48), torch.nn.Conv2d)
    assert isinstance(plan.conv1x1("dfrg.expert_selector", 12, 5), LoRaConv)  # rank 4 < 5
    assert isinstance(plan.conv1x1("attn.qkv", 2, 8), torch.nn.Conv2d)  # rank max(2, 1) = 2, not below min
    spatial = LoRaPlan(0.5, 0.8, spatial=True)
    assert isinstance(spatial.conv1x1("attn.qkv", 48, 192), SpatialLoRaConv)
    assert isinstance(spatial.conv1x1("attn.qkv", 5, 20), SpatialLoRaConv)  # rank max(4, 4) = 4 < 5 ...
    assert isinstance(spatial.conv1x1("attn.qkv", 4, 20), torch.nn.Conv2d)  # ... but 4 is not below 4
    assert isinstance(spatial.conv1x1("csff.merge", 96, 48), torch.nn.Conv2d)
    assert isinstance(plan.conv1x1("csff.merge", 96, 48), LoRaConv)  # the baseline rule's default branch
    assert set(BASELINE_ROLES) == set(ENHANCED_ROLES)
    with pytest.raises(KeyError, match="unknown 1x1-conv role"):
        plan.conv1x1("head", 8, 8)
    with pytest.raises(ValueError, match=r"model.ffn_ratio=1.5 must be in \(0, 1\]"):
        LoRaPlan(1.5, 0.8)


@pytest.mark.parametrize("gate,extra", [("none", 0), ("headwise", 4), ("elementwise", 16)])
def test_gated_attention_widens_qkv_and_scales_by_sigmoid(gate, extra):
    torch.manual_seed(0)
    attn = Attention(16, 4, bias=False, gate=gate)
    assert attn.qkv.out_channels == attn.qkv_dwconv.out_channels == 48 + extra
    plain = Attention(16, 4, bias=False)
    keep = [*range(16), *range(16 + extra, 48 + extra)]  # q, then the gate slice, then k and v
    with torch.no_grad():
        attn.qkv.weight[16 : 16 + extra] = 0  # gate = 0: sigmoid 1/2 on every head / element
        plain.temperature.copy_(torch.rand(4, 1, 1) + 0.5)
        attn.temperature.copy_(plain.temperature)
        plain.qkv.weight.copy_(attn.qkv.weight[keep])
        plain.qkv_dwconv.weight.copy_(attn.qkv_dwconv.weight[keep])
        plain.project_out.weight.copy_(attn.project_out.weight)
        x = torch.rand(2, 16, 6, 5)
        scale = 1.0 if gate == "none" else 0.5  # project_out is linear (no bias)
        assert torch.allclose(attn(x), scale * plain(x), atol=1e-6)
    with pytest.raises(ValueError, match="gate='channel'; valid: none, headwise, elementwise"):
        Attention(16, 4, bias=False, gate="channel")


def test_dfrg_expert_weights_metrics_and_opt_in_routing_loss():
    torch.manual_seed(0)
    model = model_from_config(model_cfg("restormer", dfrg={"enabled": True}))
    assert model.aux_metrics() == {} and model.aux_losses(torch.tensor([0])) == {}
    x, task = torch.rand(4, 3, 24, 24), torch.tensor([0, 1, 2, 6])
    model(x, task=task)
    metrics = model.aux_metrics()
    assert sorted(metrics) == [f"route_w{k}" for k in range(5)]
    assert abs(sum(metrics.values()) - 1.0) < 1e-5
    assert model.aux_losses(task) == {}  # computed and discarded by default (as the reference)
    routed = model_from_config(model_cfg("restormer", dfrg={"enabled": True, "experts": 3, "aux_weight": 0.5}))
    routed(x, task=task)
    losses = routed.aux_losses(task)
    assert set(losses) == {"l_route"} and losses["l_route"].requires_grad and losses["l_route"] > 0
    assert routed.aux_losses(None) == {} and len(routed.aux_metrics()) == 3
    copy.deepcopy(routed)  # EMA copies after a forward must not trip over the stored graph


def test_non_dfrg_models_have_empty_aux():
    model = model_from_config(model_cfg("nafnet"))
    model(torch.rand(1, 3, 16, 16))
    assert model.aux_losses(torch.tensor([1])) == {} and model.aux_metrics() == {}


# -- summary + CLI -----------------------------------------------------------------------------------------
def test_forward_gflops_counts_forward_only():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert forward_gflops(conv, 16) == pytest.approx(2 * 3 * 8 * 9 * 16 * 16 / 1e9)
    m = model_from_config(model_cfg("restormer"))
    g = forward_gflops(m, 64)
    assert g > 0 and forward_gflops(m, 128) == pytest.approx(4 * g, rel=0.05)


def test_cli_summary(capsys):
    from aio.cli.model import main

    assert main(["summary", "backbone=restormer", "gate=elementwise", "lora_ratio=r05_08", "model.size=tiny",
                 "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "restormer[tiny] gate=elementwise ffn/attn=0.5/0.8" in out and "params:" in out
    assert "1x3x256x256" in out and "1x3x64x64" in out
    assert main(["summary", "backbone=nafnet", "gate=headwise", "model.size=tiny"]) == 2
    assert "supported only by backbone=restormer" in capsys.readouterr().err
    assert main(["list"]) == 0


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gdfn_gate_is_bitwise_the_plain_expression(channels_last, dtype):
    """The GDFN gate's one-buffer backward gives exactly autograd's values and gradients, in its layout
    (autograd through the same dense halves: a strided channels_last half takes torch's scalar GELU)."""
    import torch.nn.functional as F

    from aio.models.blocks.ffn import _dense_half, gelu_gate

    torch.manual_seed(0)
    z = torch.randn(2, 12, 9, 7, dtype=dtype)
    if channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(2, 6, 9, 7, dtype=dtype)
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    a1, a2 = _dense_half(a)
    assert a1.is_contiguous(memory_format=torch.channels_last) or not channels_last
    want = F.gelu(a1) * a2
    want.backward(grad)
    got = gelu_gate(b)
    got.backward(grad)
    assert torch.equal(got, want) and torch.equal(b.grad, a.grad)
    assert b.grad.is_contiguous(memory_format=torch.channels_last) == channels_last
    with torch.no_grad():
        assert torch.equal(gelu_gate(z), want)
