"""Parameter layouts against official / reference state-dict listings (Restormer with both LayerNorm types,
PromptIR and the seed-000 baseline and full networks in ../shared/reference; AirNet in tests/reference), strict
loading of those layouts, NAFNet counts, LoRa-ratio monotonicity."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from aio.cli.model import compose_model_config
from aio.models import count_parameters, create_model, load_official_checkpoint, model_from_config
from aio.models.registry import extract_state_dict
from conftest import SHARED_REFERENCE

REFERENCE = SHARED_REFERENCE


REPO_REFERENCE = Path(__file__).resolve().parent / "reference"  # listings made from official code not in ../shared


def read_reference(name: str) -> tuple[dict[str, tuple[int, ...]], int, int]:
    """``({key: shape}, entries, params)`` from a ``<name>.tsv`` listing in ../shared/reference (or
    tests/reference): a header ``# ...: N state[-_]dict entries, P parameters``, an optional ``key\tshape``
    line, then one ``key\tshape`` row per entry (``48x3x3x3``, ``scalar``)."""
    path = next((p for p in (REFERENCE / f"{name}.tsv", REPO_REFERENCE / f"{name}.tsv") if p.exists()), None)
    if path is None:
        pytest.skip(f"{name}.tsv not available in {REFERENCE}")
    lines = path.read_text().splitlines()
    entries, params = (int(v) for v in re.search(r"(\d+) state[-_]dict entries, (\d+) parameters", lines[0]).groups())
    shapes = {}
    for line in lines[1:]:
        if line == "key\tshape":
            continue
        key, shape = line.split("\t")
        shapes[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return shapes, entries, params


def meta_model(name: str, **kw) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def build(spec) -> torch.nn.Module:
    """A meta-device model from ``(name, kwargs)`` or from aio-train overrides (composed as aio-train does)."""
    with torch.device("meta"):
        if isinstance(spec, list):
            return model_from_config(compose_model_config(spec + ["model.size=paper"]))
        return create_model(spec[0], **spec[1])


LAYOUTS = [
    ("restormer_state_dict", ("restormer", {})),
    ("restormer_biasfree_state_dict", ("restormer", {"LayerNorm_type": "BiasFree"})),
    ("promptir_state_dict", ("promptir", {})),
    ("lora_gate_restormer_baseline_05_08", ["experiment=baseline"]),
    ("lora_gate_restormer_full_05_08", ["experiment=full"]),
    ("airnet_state_dict", ["backbone=airnet"]),
]


@pytest.mark.parametrize("ref,spec", LAYOUTS, ids=[r for r, _ in LAYOUTS])
def test_layout_matches_official(ref, spec):
    shapes, entries, params = read_reference(ref)
    model = build(spec)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == entries
    assert sorted(set(own) - set(shapes)) == [] and sorted(set(shapes) - set(own)) == []
    assert list(own) == list(shapes)  # same order too
    assert {k: v for k, v in own.items() if shapes[k] != v} == {}
    assert count_parameters(model) == params


@pytest.mark.parametrize("ref,spec", LAYOUTS, ids=[r for r, _ in LAYOUTS])
def test_official_layout_loads_strict(ref, spec):
    shapes, _, _ = read_reference(ref)
    model = build(spec).to_empty(device="cpu")  # uninitialised storage: every value comes from the load
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=gen).to(dtypes[k]) for k, s in shapes.items()}
    model.load_state_dict(sd, strict=True)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items())
    # the loader unwraps Lightning ("state_dict" + "net." prefix) and BasicSR ("params") checkpoints
    last = next(reversed(sd))
    wrapped = {"state_dict": {f"net.{k}": v * 2 for k, v in sd.items()}, "epoch": 3}
    load_official_checkpoint(model, wrapped)
    assert torch.equal(model.state_dict()[last], 2 * sd[last])
    load_official_checkpoint(model, {"params": sd})
    assert torch.equal(model.state_dict()[last], sd[last])


def test_load_official_checkpoint_file_and_errors(tmp_path):
    model = create_model("restormer", dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1])
    sd = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    torch.save({"params": sd}, tmp_path / "net_g.pth")
    load_official_checkpoint(model, tmp_path / "net_g.pth")
    assert torch.equal(model.state_dict()["patch_embed.proj.weight"], sd["patch_embed.proj.weight"])

    bad = dict(sd)
    bad.pop("output.weight")
    bad["extra.weight"] = torch.zeros(1)
    bad["patch_embed.proj.weight"] = torch.zeros(5, 3, 3, 3)
    with pytest.raises(RuntimeError) as e:
        load_official_checkpoint(model, {"state_dict": bad})
    msg = str(e.value)
    assert "1 missing: output.weight" in msg and "1 unexpected: extra.weight" in msg
    assert "patch_embed.proj.weight: checkpoint (5, 3, 3, 3) vs model (4, 3, 3, 3)" in msg
    assert list(extract_state_dict({"module.a": 1, "net.b": 2})) == ["a", "b"]


@pytest.mark.parametrize(
    "kw,expected",
    [
        ({}, 29_159_715),
        ({"enc_blk_nums": [1, 1, 1, 28], "middle_blk_num": 1, "dec_blk_nums": [1, 1, 1, 1]}, 17_111_907),
    ],
    ids=["nafnet_width32", "nafnet_gopro_width32"],
)
def test_nafnet_parameter_counts(kw, expected):
    assert count_parameters(meta_model("nafnet", **kw)) == expected


def test_lora_ratio_params_monotone_and_baseline_smaller():
    counts = [
        count_parameters(meta_model("restormer", gate="elementwise", ffn_ratio=f, attn_ratio=a))
        for f, a in [(0.3, 0.6), (0.4, 0.7), (0.5, 0.8), (0.6, 0.9), (1.0, 1.0)]
    ]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    restormer = count_parameters(meta_model("restormer"))
    assert restormer == 26_126_644
    assert counts[2] < restormer  # Baseline (LoRa-Gate-Restormer) = elementwise gate, ffn 0.5 / attn 0.8


def test_switches_keep_official_names_where_neutral():
    neutral = meta_model("restormer", gate="none", ffn_ratio=1.0, attn_ratio=1.0, dfrg={"enabled": False},
                         spatial_lora=False, csff=False)
    assert count_parameters(neutral) == 26_126_644
    lora = meta_model("restormer", ffn_ratio=0.5, attn_ratio=0.8).state_dict()
    assert "latent.0.attn.qkv.conv1.weight" in lora and "latent.0.attn.qkv.weight" not in lora
    assert "latent.0.ffn.project_in.conv2.weight" in lora
    assert "latent.0.attn.qkv_dwconv.weight" in lora  # untouched modules keep their official names
