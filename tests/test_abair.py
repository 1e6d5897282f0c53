"""ABAIR parts in seconds: blended adapters, the model's phases and blends, data, loss, parts files, eval."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from aio.models.abair import ABAIR, prepare_eval, read_parts, save_parts, split_parts
from aio.models.adapters import KINDS, AdaptedConv2d, AdaptedLinear, BlendState
from aio.models.output import ModelOutput

TASKS = ["denoise_25", "derain", "dehaze", "deblur", "lowlight"]


def _model(**kw) -> ABAIR:
    torch.manual_seed(0)
    return ABAIR(adapters=TASKS, estimator={"width": 4, "input_size": 32}, **kw)


def _randomise_adapters(model: ABAIR) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".adapters." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ks", [1, 3])
def test_blended_updates_equal_the_merged_weight(kind, ks):
    torch.manual_seed(0)
    state = BlendState(["a", "b"])
    layer = AdaptedConv2d(nn.Conv2d(6, 5, ks, padding=ks // 2), state, kind, rank=2, layer_name="x")
    for p in layer.adapters.parameters():
        nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 6, 11, 11)
    state.weights = torch.tensor([[0.3, 0.7], [1.0, 0.0]])
    y = layer(x)
    for i in range(2):
        w = layer.merged_weight(state.weights[i].tolist())
        pad = ks // 2 + (w.shape[-1] - ks) // 2
        ref = F.conv2d(x[i:i + 1], w, layer.bias, padding=pad)
        diff = (y[i:i + 1] - ref).abs().detach()
        if kind == "conv_lora":  # the bottleneck conv zero-pads its own input: equal away from the border
            diff = diff[..., 2:-2, 2:-2]
        assert float(diff.max()) < 1e-4


def test_linear_adapter_and_zero_weights_are_the_plain_layer():
    torch.manual_seed(0)
    base = nn.Linear(4, 3)
    state = BlendState(["a"])
    lin = AdaptedLinear(base, state, "lora", rank=2)
    nn.init.normal_(lin.adapters["a"].up)
    x = torch.randn(2, 7, 4)
    assert torch.equal(lin(x), base(x))  # weights None: the backbone alone
    state.weights = torch.tensor([[0.0], [0.5]])
    y = lin(x)
    assert torch.equal(y[0], base(x)[0])
    ref = F.linear(x[1], base.weight + 0.5 * lin.adapters["a"].delta_weight().flatten(1), base.bias)
    assert torch.allclose(y[1], ref, atol=1e-5)


def test_backbone_keys_unchanged_and_plain_checkpoint_loads():
    from aio.models import create_model

    model = _model()
    plain = create_model("restormer", dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1])
    parts = split_parts(model.state_dict())
    assert set(parts["backbone"]) == {f"backbone.{k}" for k in plain.state_dict()}
    loaded = read_parts({"backbone": {f"backbone.{k}": v for k, v in plain.state_dict().items()}})
    model.load_parts(loaded)
    x = torch.rand(1, 3, 20, 28)
    model.set_blend("none")
    assert torch.allclose(model(x).restored, plain(x), atol=1e-6)


def test_phases_freeze_what_they_do_not_train():
    model = _model(phase="adapters", train_adapters=["derain"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapters.derain." in n for n in trainable)
    model.set_phase("estimator")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith("estimator.")}
    model.set_phase("pretrain")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("seg_head.") for n in trainable)
    assert not any(".adapters." in n or n.startswith("estimator.") for n in trainable)
    with pytest.raises(ValueError, match="model.phase='warmup' unknown"):
        model.set_phase("warmup")
    with pytest.raises(ValueError, match=r"model.train_adapters=\['snow'\]"):
        model.set_phase("adapters", ["snow"])


def test_adapter_training_leaves_the_backbone_bitwise_unchanged():
    model = _model(phase="adapters")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
    x, y = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    task = torch.tensor([0, 1, 1, 3])
    for _ in range(2):
        out = model(x, task=task)
        F.l1_loss(out.restored, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".adapters." in k for k in changed)
    # each adapter trains on its own task's images only: dehaze (2) and lowlight (4) saw none
    assert {k.split(".adapters.")[1].split(".")[0] for k in changed} == {"denoise_25", "derain", "deblur"}


def test_blends_oh_sw_oracle_sum_average_differ_and_only_oracle_reads_the_task():
    model = _model(phase="frozen")
    _randomise_adapters(model)
    model.eval()
    x = torch.rand(2, 3, 24, 24)
    task = torch.tensor([1, 4])
    outs = {}
    for blend in ("none", "oh", "sw", "oracle", "sum", "average"):
        model.set_blend(blend)
        out = model(x, task=task)
        assert isinstance(out, ModelOutput) and out.restored.shape == x.shape
        outs[blend] = out
    w = outs["sw"].extras["blend"]
    assert torch.allclose(w.sum(-1), torch.ones(2)) and (w > 0).all()
    assert torch.equal(outs["oh"].extras["blend"].argmax(-1), w.argmax(-1))
    assert torch.equal(outs["oracle"].extras["blend"].argmax(-1), task)
    imgs = [o.restored for o in outs.values()]
    assert all(not torch.equal(a, b) for i, a in enumerate(imgs) for b in imgs[i + 1:])
    model.set_blend("sw")
    assert torch.equal(model(x).restored, outs["sw"].restored)  # blind: the label changes nothing
    model.set_blend("oracle")
    with pytest.raises(ValueError, match="needs the task label"):
        model(x)
    model.set_task_names(["desnow"])
    with pytest.raises(ValueError, match="task 'desnow' has no adapter"):
        model(x, task=torch.tensor([0, 0]))
    model.task_to_adapter = {"desnow": "derain"}
    assert torch.equal(model(x, task=torch.tensor([0, 0])).extras["blend"].argmax(-1), torch.tensor([1, 1]))


def test_segmentation_logits_follow_the_input_size():
    out = _model()(torch.rand(2, 3, 19, 30))
    assert out.extras["seg_logits"].shape == (2, 5, 19, 30)
    with pytest.raises(ValueError, match="feature_module='nope'"):
        _model(feature_module="nope")


def test_adapter_parameter_counts_scale_with_rank():
    counts = {}
    for r in (4, 8):
        model = ABAIR(adapters=TASKS, adapter={"rank": r})
        counts[r] = model.adapter_parameter_count()
        assert counts[r] == 5 * model.adapter_parameter_count("derain")
    assert counts[8] == 2 * counts[4]
    vera = ABAIR(adapters=TASKS, adapter={"kind": "vera", "rank": 4})
    assert vera.adapter_parameter_count() < counts[4] / 3  # only the scaling vectors train


def _ds_cfg(**abair):
    from aio.data.config import load_preset

    return load_preset("abair_pretrain", {"patch_size": 32, "epoch_size": 4, "abair": abair})


@pytest.mark.parametrize("kind", ["single", "cutmix", "composite"])
def test_pretrain_items_carry_degradation_maps(kind):
    from aio.data import build_train_dataset
    from aio.data.abair import ABAIRTrainDataset

    ds = build_train_dataset(_ds_cfg(**{"single": 0.0, kind: 1.0}))
    assert isinstance(ds, ABAIRTrainDataset)
    item = ds.get_item(7, seed_offset=0)
    assert item["name"].startswith(kind)
    dm = item["deg_map"]
    assert dm.shape == (5, 32, 32) and torch.allclose(dm.sum(0), torch.ones(32, 32))
    assert torch.allclose(item["deg_prob"], dm.mean(dim=(1, 2)))
    if kind == "composite":
        assert sorted(set(dm[:, 0, 0].tolist())) == [0.0, 0.5]
    elif kind == "single":
        assert int(dm[:, 0, 0].argmax()) == ds.task_of(7) == item["task"]
    assert torch.equal(ds.get_item(7, 0)["input"], item["input"])


def test_fixed_pairs_repeat_each_epoch_and_bad_options_fail():
    from aio.data import build_train_dataset

    fresh = build_train_dataset(_ds_cfg())
    fixed = build_train_dataset(_ds_cfg(fresh=False))
    assert not torch.equal(fresh.get_item(3, 0)["input"], fresh.get_item(3, 1)["input"])
    assert torch.equal(fixed.get_item(3, 0)["input"], fixed.get_item(3, 1)["input"])
    with pytest.raises(ValueError, match=r"dataset.abair has unknown key\(s\) \['mixup'\]"):
        build_train_dataset(_ds_cfg(mixup=1.0))


def test_loss_terms_and_soft_targets():
    from aio.losses import build_loss
    from aio.losses.contract import compute_loss

    loss = build_loss({"name": "abair", "seg_weight": 0.5, "est_weight": 2.0})
    seg = torch.zeros(2, 3, 4, 4, requires_grad=True)
    est = torch.zeros(2, 3, requires_grad=True)
    out = ModelOutput(torch.zeros(2, 3, 4, 4), {"seg_logits": seg, "est_logits": est})
    batch = {"task": torch.tensor([0, 2])}
    total, terms = compute_loss(loss, out, torch.ones(2, 3, 4, 4), batch)
    ln3 = torch.log(torch.tensor(3.0))
    assert torch.isclose(terms["l_seg"], 0.5 * ln3) and torch.isclose(terms["l_est"], 2.0 * ln3)
    assert torch.isclose(total, terms["l_pix"] + terms["l_seg"] + terms["l_est"])
    total.backward()
    assert seg.grad is not None and est.grad is not None
    soft = {"deg_prob": torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])}
    _, terms = compute_loss(loss, ModelOutput(torch.zeros(2, 3, 4, 4), {"est_logits": est.detach()}),
                            torch.zeros(2, 3, 4, 4), soft)
    assert torch.isclose(terms["l_est"], 2.0 * ln3) and "l_seg" not in terms
    with pytest.raises(ValueError, match="loss.seg_weight=-1"):
        build_loss({"name": "abair", "seg_weight": -1})


def test_parts_file_round_trip_swaps_one_adapter(tmp_path):
    a, b = _model(), _model()
    _randomise_adapters(a)
    path = save_parts(a, tmp_path / "parts.pt", which=["backbone", "adapters"], adapters=["derain"])
    parts = read_parts(path)
    assert set(parts["adapters"]) == {"derain"} and "estimator" not in parts
    loaded = b.load_parts(path)
    assert loaded == ["backbone", "adapters.derain"]
    sa, sb = split_parts(a.state_dict()), split_parts(b.state_dict())
    assert all(torch.equal(sa["adapters"]["derain"][k], v) for k, v in sb["adapters"]["derain"].items())
    assert not all(torch.equal(sa["adapters"]["dehaze"][k], v) for k, v in sb["adapters"]["dehaze"].items())
    with pytest.raises(FileNotFoundError, match="model.init_from="):
        read_parts(tmp_path / "missing.pt")


@pytest.mark.parametrize("adapter", [{"kind": "lora", "rank": 8}, {"kind": "vera", "rank": 4}])
def test_adapters_of_another_kind_or_rank_stay_fresh(tmp_path, adapter):
    """A Table-7 row (rank 8, VeRA) started from a phase-I checkpoint (rank-4 LoRA): the backbone and head load,
    the adapters that do not fit stay as initialised."""
    a = _model()
    _randomise_adapters(a)
    path = save_parts(a, tmp_path / "parts.pt")
    b = _model(adapter=adapter)
    fresh = {k: v.clone() for k, v in split_parts(b.state_dict())["adapters"]["derain"].items()}
    assert b.load_parts(path) == ["backbone", "seg_head", "estimator"]
    assert all(torch.equal(fresh[k], v) for k, v in split_parts(b.state_dict())["adapters"]["derain"].items())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in split_parts(a.state_dict())["backbone"].items())


def test_prepare_eval_and_estimator_accuracy():
    from aio.data.synthetic import FixedSet
    from aio.eval import evaluate_sets
    from aio.models import create_model
    from aio.models.abair import add_estimator_accuracy

    model = _model(phase="adapters")
    assert prepare_eval(model, OmegaConf.create({"blend": "oh"}), TASKS) == "oh"
    assert model.phase == "frozen" and not any(p.requires_grad for p in model.parameters())
    items = [{"input": torch.rand(3, 16, 16), "target": torch.rand(3, 16, 16), "task": 1, "name": str(i)}
             for i in range(3)]
    sets = {"Rain": FixedSet(items, "derain", {}), "Snow": FixedSet(items, "desnow", {})}
    result = evaluate_sets(model, sets, device="cpu")
    acc = add_estimator_accuracy(model, sets, result)
    assert set(acc) == {"Rain"} and result.per_set["Rain"]["est_acc"] in (0.0, 1 / 3, 2 / 3, 1.0)
    with pytest.raises(ValueError, match="abair.blend=oh needs an ABAIR checkpoint"):
        prepare_eval(create_model("nafnet", width=4, enc_blk_nums=[1], middle_blk_num=1, dec_blk_nums=[1]),
                     {"blend": "oh"}, None)


def test_an_unrun_evaluation_sweep_names_its_aio_eval_command(mlflow_store):
    from aio.tables.collect import TablesError, make_tables

    with pytest.raises(TablesError, match=r"'abair_table5' has not been run yet.*aio-eval -m sweep=abair_table5 "
                                          r"checkpoint=<run>"):
        make_tables("abair_table5", tracking_uri=mlflow_store, log_artifacts=False)
    with pytest.raises(TablesError, match=r"'abair_table7' has not been run yet.*aio-train -m sweep=abair_table7"):
        make_tables("abair_table7", tracking_uri=mlflow_store, log_artifacts=False)
