"""trainer.amp resolution (auto per device), trainer.compile, and the fp32 identity of
the sped-up Restormer attention (channels_last views) with the plain normalise-then-multiply formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aio.models.blocks.gates import GATES, apply_gate, split_qkv_gate
from aio.models.layers import Attention
from aio.train import precision
from aio.train.trainer import Trainer
from conftest import compose_train


def _offline(overrides: list[str], *extra: str):
    """The tiny run without tracking (the logger.* keys exist only under logger=mlflow)."""
    return compose_train([o for o in overrides if not o.startswith("logger.")] + ["logger=none", *extra])


def test_explicit_modes_and_errors():
    assert precision.resolve_amp("none", "cpu") == "none"
    assert precision.resolve_amp(None, "cpu") == "none"
    assert precision.resolve_amp("bf16", "cpu") == "bf16"
    assert precision.amp_dtype("bf16", "cpu") is torch.bfloat16
    assert precision.amp_dtype("none", "cpu") is None
    with pytest.raises(ValueError, match="trainer.amp=fp8 is not one of none, bf16, fp16, auto"):
        precision.resolve_amp("fp8", "cpu")
    with pytest.raises(ValueError, match="trainer.amp=fp16 needs a CUDA device"):
        precision.resolve_amp("fp16", "cpu")


@pytest.mark.parametrize("flags,expected", [((), "none"), (("avx512_bf16",), "bf16"), (("amx_bf16",), "bf16")])
def test_auto_follows_the_cpu_bf16_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)
    assert precision.resolve_amp("auto", "cpu") == expected


def test_cpu_flags_are_read_from_cpuinfo():
    flags = precision.cpu_bf16_flags()
    assert set(flags) <= {"amx_bf16", "avx512_bf16"}
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert ("avx512_bf16" in flags) == (" avx512_bf16" in text)


def test_trainer_resolves_auto(tiny_overrides, tmp_path):
    cfg = _offline(tiny_overrides, "trainer.amp=auto")
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.amp_dtype is precision.amp_dtype("auto", "cpu")
    assert not trainer.scaler.is_enabled()


def test_compile_error_is_one_line(monkeypatch, tiny_overrides, tmp_path):
    monkeypatch.setattr(precision, "compile_unsupported_reason", lambda device: "no C++ compiler here")
    cfg = _offline(tiny_overrides, "trainer.compile=true")
    with pytest.raises(RuntimeError, match="^trainer.compile=true but no C\\+\\+ compiler here; set trainer.compile=false$"):
        Trainer(cfg, tmp_path / "run")


@pytest.mark.slow
@pytest.mark.timeout(2400)  # inductor runs g++ per kernel: ~minutes on 2 free cores, far more on a busy machine
def test_three_compiled_steps(tiny_overrides, tmp_path):
    reason = precision.compile_unsupported_reason("cpu")
    if reason:
        pytest.skip(reason)
    cfg = _offline(tiny_overrides, "trainer.compile=true", "trainer.max_steps=3", "trainer.val_every=3",
                   "trainer.checkpoint_every=3")
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.train_model is not trainer.model  # the compiled wrapper shares the parameters
    metrics = trainer.fit()
    assert trainer.step == 3 and torch.isfinite(torch.tensor(metrics["val/avg/psnr"]))


def _official_mdta(att: Attention, x: torch.Tensor) -> torch.Tensor:
    """MDTA written the official way: chunk (the seed-000 reference's gated split), reshape, F.normalize q and
    k, then multiply (and gate)."""
    b, c, h, w = x.shape
    q, k, v, g = split_qkv_gate(att.gate, att.qkv_dwconv(att.qkv(x)), c, att.num_heads)
    q, k, v = (t.reshape(b, att.num_heads, -1, h * w) for t in (q, k, v))
    attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * att.temperature
    return att.project_out(apply_gate(att.gate, attn.softmax(-1) @ v, g).reshape(b, c, h, w))


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_attention_fast_paths_equal_the_official_formula(heads, gate):
    """Gated or not, the channels_last views (aio's CPU layout) and the NCHW path give the official values."""
    torch.manual_seed(0)
    att = Attention(16, heads, bias=False, gate=gate)
    with torch.no_grad():
        att.temperature.uniform_(0.5, 2.0)
    x = torch.randn(2, 16, 12, 10, requires_grad=True)
    ref = _official_mdta(att, x)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    for fmt in (torch.contiguous_format, torch.channels_last):
        xi = x.detach().contiguous(memory_format=fmt).requires_grad_()
        out = att(xi)
        (g,) = torch.autograd.grad(out.square().sum(), xi)
        assert (out - ref).abs().max() < 1e-5
        assert (g - g_ref).abs().max() < 1e-4


def test_eval_runtime_accepts_auto():
    from aio.eval.runtime import amp_dtype as eval_amp

    assert eval_amp("auto", torch.device("cpu")) is precision.amp_dtype("auto", "cpu")
    assert eval_amp(None, torch.device("cpu")) is None
    with pytest.raises(ValueError, match=r"choose from \[null, bf16, fp16, auto\]"):
        eval_amp("fp8", torch.device("cpu"))


def test_attention_zero_query_and_key_rows_keep_finite_gradients():
    torch.manual_seed(0)
    att = Attention(8, 2, bias=False)
    with torch.no_grad():
        att.qkv.weight[:4].zero_()  # head 0: q = 0
        att.qkv.weight[8:12].zero_()  # head 0: k = 0
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    ref = _official_mdta(att, x)
    out = att(x)
    out.square().sum().backward()
    assert (out - ref).abs().max() < 1e-5
    assert all(torch.isfinite(p.grad).all() for p in att.parameters()) and torch.isfinite(x.grad).all()


def test_promptir_stays_channels_last_through_the_decoder():
    """aio's CPU layout: from the patch embedding on, every stage of PromptIR hands on a channels_last tensor;
    an NCHW prompt would turn the decoder after each ``cat`` back to NCHW (a layout copy at every LayerNorm)."""
    from aio.cli.model import compose_model_config
    from aio.models import model_from_config

    torch.manual_seed(0)
    model = model_from_config(compose_model_config(["backbone=promptir"])).eval()
    seen = {}
    for name, child in model.named_children():
        child.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(
            name, out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()))
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    nchw = [name for name, cl in seen.items() if not cl and name != "output"]
    assert "prompt1" in seen and not nchw, f"stages returning NCHW: {nchw}"
