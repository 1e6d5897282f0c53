"""Reference implementations that ``benchmarks/train_step.py`` times next to aio's networks.

Each reference is built from a local clone the user names (``--reference NAME=DIR``); nothing of theirs is
vendored here. A :class:`RefNet` pairs one ``benchmarks/model_table.py`` row of ours with the class of the
clone that it reproduces, says how both are called (a *runner*: ``(module, x, task) -> (images, others)``, the
restored images that enter the L1 loss and the auxiliary outputs whose mean |.| enters it, identical on both
sides) and which extra overrides our side needs to be the same network (e.g. MiOIR's prompt maps).

Where a clone cannot be imported as it is on a CPU box, the loader bridges the gap and records it in
:data:`NOTES` (printed with the results): a ``fvcore`` stand-in for the seed-000 code's unused FLOP-counter
import, bare ``basicsr`` packages pointing at the MiOIR clone (so its ``basicsr/__init__`` with every dataset
and model is not run) with stand-ins for two names the arch files import but the timed classes never call,
torchvision's ``deform_conv2d`` as mmcv's ``modulated_deform_conv2d`` when mmcv is absent (AirNet), and a
no-op ``Tensor.cuda`` around AirNet's training forward when no GPU is there (its MoCo labels call ``.cuda()``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from aio.models.output import ModelOutput, restored_image

Runner = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[list[torch.Tensor], list[torch.Tensor]]]

#: What the loaders had to bridge in this process (printed with the results).
NOTES: list[str] = []

SEED000_SRC = "experiment/20251208_cpMoCE_IR_Gatewise_LoRa/src/net"
MIO_TASKS = "[blur,noise,jpeg,rain,haze,dark,sr]"  # the rows of the reference's data/type7.npy, in order
BASELINE_ROW = "Baseline (LoRa-Gate-Restormer)"
FULL_ROW = "Full (0.5, 0.8)"


def note(text: str) -> None:
    if text not in NOTES:
        NOTES.append(text)


# -- runners: how a module is called in a training step -----------------------------------------------------
def run_plain(module: nn.Module, x: torch.Tensor, task: torch.Tensor):
    return [restored_image(module(x))], []


def run_task(module: nn.Module, x: torch.Tensor, task: torch.Tensor):
    return [restored_image(module(x, task=task))], []


def run_aio_dsrir(module: nn.Module, x: torch.Tensor, task: torch.Tensor):
    out: ModelOutput = module(x)
    e = out.extras
    return [out.restored, e["restored2"], e["restored1"]], [e["var3"], e["var2"], e["var1"]]


def run_ref_dsrir(module: nn.Module, x: torch.Tensor, task: torch.Tensor):
    images, variances = module(x)
    return list(images), list(variances)


def airnet_key(x: torch.Tensor) -> torch.Tensor:
    """The MoCo key view both AirNets get in the benchmark (deterministic: a horizontal flip)."""
    return x.flip(-1)


def run_aio_airnet(module: nn.Module, x: torch.Tensor, task: torch.Tensor):
    if not module.training:
        return [module(x)], []
    return [module(x, x_key=airnet_key(x))], [module._logits]


@contextlib.contextmanager
def _cuda_noop_without_gpu() -> Iterator[None]:
    if torch.cuda.is_available():
        yield
        return
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = cuda


def run_ref_airnet(module: nn.Module, x: torch.Tensor, task: torch.Tensor):
    if not module.training:
        return [module(x, x)], []
    if not torch.cuda.is_available():
        note("airnet: the official MoCo calls .cuda() on its labels; Tensor.cuda is a no-op around its training "
             "forward here (no GPU)")
    with _cuda_noop_without_gpu():
        restored, logits, _ = module(x, airnet_key(x))
    return [restored], [logits]


def _run_prompted(prompt: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Runner:
    def run(module: nn.Module, x: torch.Tensor, task: torch.Tensor):
        return [module([x, prompt(x, task)])], []
    return run


# -- importing a clone's files without vendoring them --------------------------------------------------------
def _exec_file(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _isolated_imports(root: Path, packages: tuple[str, ...]) -> Iterator[None]:
    """``root`` first on ``sys.path`` and ``packages`` fresh in ``sys.modules`` while importing (several clones
    have a top-level ``net`` package); both restored afterwards (the loaded classes keep their globals)."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in packages}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if k.split(".")[0] in packages]:
            del sys.modules[k]
        sys.modules.update(saved)


def _require(clone: Path, rel: str, name: str) -> Path:
    path = clone / rel
    if not path.is_file():
        sys.exit(f"--reference {name}={clone}: {rel} not found; pass the root of a clone of {REFERENCES[name].repo}")
    return path


def _import_error(name: str, err: Exception):
    sys.exit(f"--reference {name}: cannot import the reference code ({err}); pip install einops")


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


# -- the references ----------------------------------------------------------------------------------------
def build_restormer(clone: Path):
    path = _require(clone, "basicsr/models/archs/restormer_arch.py", "restormer")
    try:
        return _exec_file(path, "reference_restormer").Restormer(), run_plain
    except ImportError as err:
        _import_error("restormer", err)


def build_promptir(clone: Path):
    path = _require(clone, "net/model.py", "promptir")
    try:
        return _exec_file(path, "reference_promptir").PromptIR(decoder=True), run_plain
    except ImportError as err:
        _import_error("promptir", err)


def _seed000_file(clone: Path, stem: str) -> types.ModuleType:
    rel = f"{SEED000_SRC}/{stem}.py"
    path = clone / rel if (clone / rel).is_file() else clone / "net" / f"{stem}.py"  # repo root or its src/
    if not path.is_file():
        _require(clone, rel, "seed000")
    stub = None
    if importlib.util.find_spec("fvcore") is None:  # imported at the top of both files, used only in __main__
        note("seed000: fvcore is not installed; its import (FlopCountAnalysis, flop_count_table: unused by the "
             "networks) gets a stand-in module")
        stub = types.ModuleType("fvcore"), types.ModuleType("fvcore.nn")
        stub[1].FlopCountAnalysis = stub[1].flop_count_table = None
        stub[0].nn = stub[1]
        sys.modules.update({"fvcore": stub[0], "fvcore.nn": stub[1]})
    try:
        return _exec_file(path, f"reference_seed000_{stem}")
    except ImportError as err:
        _import_error("seed000", err)
    finally:
        if stub is not None:
            del sys.modules["fvcore"], sys.modules["fvcore.nn"]


def build_seed000_baseline(clone: Path):
    ref = _seed000_file(clone, "model")
    net = _quiet(ref.apply_mixed_strategy_lora, ref.LoRa_Gate_Restormer(gate_type="elementwise"), 0.5, 0.8)
    return net, run_plain


def build_seed000_full(clone: Path):
    ref = _seed000_file(clone, "model_improved")
    net = ref.ImprovedLoRaGateRestormer(gate_type="elementwise", use_dfrg=True)
    return _quiet(ref.apply_enhanced_lora_strategy, net, 0.5, 0.8), run_plain


def build_dsrir(clone: Path):
    _require(clone, "model/DSRIR.py", "dsrir")
    with _isolated_imports(clone, ("model",)):
        return importlib.import_module("model.DSRIR").DSRIR(), run_ref_dsrir


_MIOIR_ARCHS: dict[str, types.ModuleType] = {}


def _mioir_arch(clone: Path, stem: str) -> types.ModuleType:
    """``basicsr/archs/<stem>.py`` of the MiOIR clone, imported once per process (its registry refuses a
    second registration) under bare ``basicsr`` packages (see the module docstring)."""
    if stem in _MIOIR_ARCHS:
        return _MIOIR_ARCHS[stem]
    _require(clone, f"basicsr/archs/{stem}.py", "mioir")
    if "basicsr" not in sys.modules:
        note("mioir: basicsr/archs/*.py imported under bare basicsr packages (its __init__ files, which import "
             "every dataset/model, are not run); basicsr.ops.dcn and basicsr.utils.get_root_logger, imported by "
             "arch_util but unused by the timed classes, are stand-ins")
        root = clone / "basicsr"
        for name, sub in (("basicsr", root), ("basicsr.utils", root / "utils"), ("basicsr.archs", root / "archs"),
                          ("basicsr.ops", root / "ops")):
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(sub)]
            sys.modules[name] = pkg
        sys.modules["basicsr.utils"].get_root_logger = None
        dcn = types.ModuleType("basicsr.ops.dcn")
        dcn.ModulatedDeformConvPack = type("ModulatedDeformConvPack", (nn.Module,), {})
        dcn.modulated_deform_conv = None
        sys.modules["basicsr.ops.dcn"] = dcn
    try:
        _MIOIR_ARCHS[stem] = importlib.import_module(f"basicsr.archs.{stem}")
    except ImportError as err:
        _import_error("mioir", err)
    return _MIOIR_ARCHS[stem]


def _type7(clone: Path) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.load(_require(clone, "data/type7.npy", "mioir")).astype(np.float32))


def _mioir(stem: str, cls: str, prompt: str, **kwargs):
    def build(clone: Path):
        net = getattr(_mioir_arch(clone, stem), cls)(**kwargs)
        if prompt == "none":
            return net, run_plain
        if prompt == "adaptive":
            return net, _run_prompted(lambda x, task: x)
        maps = _type7(clone)
        return net, _run_prompted(lambda x, task: maps.to(x.device)[task])
    return build


def _airnet(clone: Path):
    _require(clone, "net/model.py", "airnet")
    mmcv = None
    if importlib.util.find_spec("mmcv") is None:
        from torchvision.ops import deform_conv2d

        note("airnet: mmcv is not installed; the official DCN_layer's mmcv.ops.modulated_deform_conv2d is "
             "torchvision.ops.deform_conv2d here (aio's DeformConv runs that op on CUDA; on the CPU its own "
             "gathers + GEMM, aio.models.blocks.deform.deform_conv2d_cpu)")

        def modulated_deform_conv2d(inp, offset, mask, weight, bias, stride, padding, dilation, groups, dgroups):
            return deform_conv2d(inp, offset, weight, bias, stride=stride, padding=padding, dilation=dilation,
                                 mask=mask)

        mmcv, ops = types.ModuleType("mmcv"), types.ModuleType("mmcv.ops")
        ops.modulated_deform_conv2d = modulated_deform_conv2d
        mmcv.ops = ops
    with _isolated_imports(clone, ("net", "mmcv") if mmcv else ("net",)):
        if mmcv:
            sys.modules.update({"mmcv": mmcv, "mmcv.ops": mmcv.ops})
        try:
            cls = importlib.import_module("net.model").AirNet
        except ImportError as err:
            _import_error("airnet", err)
    # queue of 256 x batch_size keys: 1280, aio's default (the official five-task model)
    return cls(types.SimpleNamespace(batch_size=5)), run_ref_airnet


@dataclass(frozen=True)
class RefNet:
    """One of our rows (a model_table label), the reference network it reproduces and how both are called."""

    row: str
    build: Callable[[Path], tuple[nn.Module, Runner]]
    ours: Runner = run_plain
    ours_overrides: Callable[[Path], list[str]] = lambda clone: []


@dataclass(frozen=True)
class Reference:
    repo: str
    nets: list[RefNet] = field(default_factory=list)


def _ep_overrides(clone: Path) -> list[str]:
    return [f"model.prompt_maps={_require(clone, 'data/type7.npy', 'mioir')}", f"model.prompt_tasks={MIO_TASKS}"]


REFERENCES: dict[str, Reference] = {
    "restormer": Reference("github.com/swz30/Restormer", [RefNet("Restormer", build_restormer)]),
    "promptir": Reference("github.com/va1shn9v/PromptIR", [RefNet("PromptIR", build_promptir)]),
    "seed000": Reference("github.com/1601339895/Image-Restoration (seed-000: model.py, model_improved.py)",
                         [RefNet(BASELINE_ROW, build_seed000_baseline), RefNet(FULL_ROW, build_seed000_full)]),
    "dsrir": Reference("github.com/xfwang23/DSRIR", [RefNet("DSRIR", build_dsrir, run_aio_dsrir)]),
    "mioir": Reference("github.com/Xiangtaokong/MiOIR", [
        RefNet("SRResNet (MiOIR)", _mioir("srresnet_arch", "SRResNet", "none", upscale=1)),
        RefNet("SRResNet-EP (MiOIR)", _mioir("srresnet_arch", "SRResNet_EP", "explicit", upscale=1), run_task,
               _ep_overrides),
        RefNet("SRResNet-AP (MiOIR)", _mioir("srresnet_arch", "SRResNet_AP", "adaptive", upscale=1)),
        RefNet("Restormer-EP (MiOIR)", _mioir("restormer_arch", "Restormer_EP", "explicit"), run_task,
               _ep_overrides),
        RefNet("Restormer-AP (MiOIR)", _mioir("restormer_arch", "Restormer_AP", "adaptive")),
    ]),
    "airnet": Reference("github.com/XLearning-SCU/2022-CVPR-AirNet", [RefNet("AirNet", _airnet, run_aio_airnet)]),
}


def parse_references(specs: list[str]) -> dict[str, Path]:
    """``["seed000=DIR", ...]`` -> ``{"seed000": Path(DIR)}``; a bad name or a missing folder stops here."""
    out = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        name = name.strip().lower()
        if not sep or name not in REFERENCES:
            sys.exit(f"--reference {spec!r}: expected NAME=DIR with NAME one of {', '.join(REFERENCES)}")
        path = Path(folder).expanduser()
        if not path.is_dir():
            sys.exit(f"--reference {name}={folder}: no such folder; pass the root of a clone of "
                     f"{REFERENCES[name].repo}")
        out[name] = path
    return out
