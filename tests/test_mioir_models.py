"""MiOIR's networks (issue 13): SRResNet and the EP/AP prompt models against the reference's key/shape
listings (tests/fixtures/mioir_*_state_dict.tsv, generated from Xiangtaokong/MiOIR at its default arguments),
the prompt group's dispatch and errors, the prompt semantics (zeroed prompts = the plain backbone, task maps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aio.models import count_parameters, create_model, model_from_config
from aio.models.prompts import MIO_PROMPT_ROWS, TaskPromptMaps
from conftest import compose_train

FIXTURES = Path(__file__).parent / "fixtures"
LAYOUTS = ["srresnet", "srresnet_ep", "srresnet_ap", "restormer_ep", "restormer_ap"]


def read_listing(name: str) -> tuple[list[tuple[str, tuple[int, ...]]], int]:
    lines = (FIXTURES / f"mioir_{name}_state_dict.tsv").read_text().splitlines()
    params = int(lines[0].split()[-2])
    rows = []
    for line in lines[2:]:
        key, shape = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.split("x")) if shape != "-" else ()))
    return rows, params


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_matches_reference_and_loads_strict(name):
    rows, params = read_listing(name)
    with torch.device("meta"):
        model = create_model(name)
    own = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert own == rows  # names, shapes and order
    assert count_parameters(model) == params
    sd = {k: torch.empty(s, device="meta") for k, s in rows}
    model.load_state_dict(sd, strict=True, assign=True)


@pytest.mark.parametrize("backbone", ["srresnet", "restormer"])
@pytest.mark.parametrize("prompt", ["none", "explicit", "adaptive"])
def test_prompt_group_builds_the_variant(backbone, prompt):
    cfg = compose_train([f"backbone={backbone}", f"prompt={prompt}", "dataset=synthetic_mio7", "scale=tiny"])
    model = model_from_config(cfg.model)
    suffix = {"none": "", "explicit": "_ep", "adaptive": "_ap"}[prompt]
    assert type(model).__name__.lower() == f"{backbone}{suffix}".replace("_", "")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 37, 29, requires_grad=True)
    y = model(x, task=torch.tensor([0, 6]))
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.abs().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model(x.detach(), task=torch.tensor([1, 2])).float()).all()


def test_prompt_on_other_backbone_is_one_line_error():
    cfg = compose_train(["backbone=nafnet", "prompt=explicit", "dataset=synthetic_mio7"])
    with pytest.raises(ValueError, match=r"^prompt=explicit is supported only by backbone=restormer/srresnet; "
                                         r"use prompt=none with backbone=nafnet$"):
        model_from_config(cfg.model)
    with pytest.raises(ValueError, match="model.prompt='bogus' unknown"):
        model_from_config({"name": "restormer", "prompt": "bogus"})
    with pytest.raises(ValueError, match="model.upscale=4"):
        create_model("srresnet", upscale=4)


def _copy_trunk(src: torch.nn.Module, dst: torch.nn.Module, rename=lambda k: k) -> None:
    """Load ``src``'s weights into the trunk of ``dst`` and zero every prompt_scale*/prompt_shift* layer."""
    sd = dst.state_dict()
    for k, v in src.state_dict().items():
        sd[rename(k)] = v
    for k in sd:
        if k.startswith("prompt_"):
            sd[k] = torch.zeros_like(sd[k])
    dst.load_state_dict(sd, strict=True)


def test_zero_prompt_srresnet_is_the_plain_srresnet():
    torch.manual_seed(0)
    kw = dict(num_feat=8, num_block=3)
    plain, ep = create_model("srresnet", **kw).eval(), create_model("srresnet_ap", **kw).eval()
    _copy_trunk(plain, ep, lambda k: f"body{int(k.split('.')[1]) + 1}.0.{k.split('.', 2)[2]}"
                if k.startswith("body.") else k)
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        assert torch.equal(plain(x), ep(x))


def test_zero_prompt_restormer_is_the_plain_restormer():
    torch.manual_seed(0)
    kw = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2])
    plain, ep = create_model("restormer", **kw).eval(), create_model("restormer_ep", **kw).eval()
    _copy_trunk(plain, ep)
    x = torch.rand(2, 3, 24, 40)
    with torch.no_grad():
        assert torch.allclose(plain(x), ep(x, task=torch.tensor([0, 5])), atol=1e-6)


def test_explicit_prompt_follows_the_task_name_and_the_reference_maps(tmp_path):
    torch.manual_seed(0)
    ep = create_model("srresnet_ep", num_feat=8, num_block=2).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        y = ep(x, task=torch.tensor([0, 6]))
        assert not torch.allclose(y, ep(x, task=torch.tensor([6, 0])))
    with pytest.raises(ValueError, match="needs the task label"):
        ep(x)
    with pytest.raises(ValueError, match="out of range"):
        ep(x, task=torch.tensor([0, 7]))
    # labels name the dataset's tasks: [sr, blur] label 0 is reference row 6 (sr)
    default, named = TaskPromptMaps(), TaskPromptMaps(["sr", "blur", "desnow"])
    assert torch.equal(named.maps[0], default.maps[MIO_PROMPT_ROWS.index("sr")])
    assert torch.equal(named.maps[1], default.maps[0])
    assert not torch.equal(named.maps[2], default.maps[0])  # an extra task gets a map of its own
    # the reference's type7.npy layout ([7, H, W], row order blur..sr) is read from model.prompt_maps
    ref = np.random.default_rng(0).random((7, 32, 32))
    np.save(tmp_path / "type7.npy", ref)
    maps = TaskPromptMaps(["haze"], str(tmp_path / "type7.npy"))
    assert torch.equal(maps(torch.tensor([0]), 1)[0, 0], torch.from_numpy(ref[4].astype(np.float32)))
    with pytest.raises(FileNotFoundError, match=r"model.prompt_maps=.*missing.npy does not exist"):
        TaskPromptMaps(None, str(tmp_path / "missing.npy"))


def test_adaptive_prompt_needs_no_task_and_reads_the_image():
    torch.manual_seed(0)
    ap = create_model("restormer_ap", dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1,
                      heads=[1, 1, 2, 2]).eval()
    assert ap.task_maps is None and ap.F_ext_net1.conv1.in_channels == 3
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ap(x), ap(x, task=torch.tensor([3])))
