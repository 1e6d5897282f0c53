"""Parameter layouts: Restormer (both LayerNorm types) and PromptIR against the official state-dict listings in
../shared/reference, strict loading of official-layout weights, NAFNet counts, LoRa-ratio monotonicity."""

from __future__ import annotations


import pytest
import torch

from aio.models import count_parameters, create_model, load_official_checkpoint
from aio.models.registry import extract_state_dict
from conftest import SHARED_REFERENCE

REFERENCE = SHARED_REFERENCE


def read_reference(name: str) -> tuple[dict[str, tuple[int, ...]], int, int]:
    """``({key: shape}, entries, params)`` from a ``<name>_state_dict.tsv`` listing."""
    path = REFERENCE / f"{name}_state_dict.tsv"
    if not path.exists():
        pytest.skip(f"{path} not available")
    lines = path.read_text().splitlines()
    header = lines[0].split()  # "# restormer: 494 state_dict entries, 26126644 parameters"
    entries, params = int(header[2]), int(header[5])
    shapes = {}
    for line in lines[2:]:
        key, shape = line.split("\t")
        shapes[key] = tuple(int(s) for s in shape.split("x"))
    return shapes, entries, params


def meta_model(name: str, **kw) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


LAYOUTS = [
    ("restormer", "restormer", {}),
    ("restormer_biasfree", "restormer", {"LayerNorm_type": "BiasFree"}),
    ("promptir", "promptir", {}),
]


@pytest.mark.parametrize("ref,name,kw", LAYOUTS, ids=[r for r, _, _ in LAYOUTS])
def test_layout_matches_official(ref, name, kw):
    shapes, entries, params = read_reference(ref)
    model = meta_model(name, **kw)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == entries
    assert sorted(set(own) - set(shapes)) == [] and sorted(set(shapes) - set(own)) == []
    assert list(own) == list(shapes)  # same order too
    assert {k: v for k, v in own.items() if shapes[k] != v} == {}
    assert count_parameters(model) == params


@pytest.mark.parametrize("ref,name,kw", LAYOUTS, ids=[r for r, _, _ in LAYOUTS])
def test_official_layout_loads_strict(ref, name, kw):
    shapes, _, _ = read_reference(ref)
    gen = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    model = create_model(name, **kw)
    model.load_state_dict(sd, strict=True)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items())
    # the loader unwraps Lightning ("state_dict" + "net." prefix) and BasicSR ("params") checkpoints
    wrapped = {"state_dict": {f"net.{k}": v * 2 for k, v in sd.items()}, "epoch": 3}
    load_official_checkpoint(model, wrapped)
    assert torch.equal(model.state_dict()["output.weight"], 2 * sd["output.weight"])
    load_official_checkpoint(model, {"params": sd})
    assert torch.equal(model.state_dict()["output.weight"], sd["output.weight"])


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
    assert "latent.0.attn.qkv.down.weight" in lora and "latent.0.attn.qkv.weight" not in lora
    assert "latent.0.ffn.project_in.up.weight" in lora
    assert "latent.0.attn.qkv_dwconv.weight" in lora  # untouched modules keep their official names
