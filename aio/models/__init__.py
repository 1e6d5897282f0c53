"""Networks, a registry and a factory.

``create_model(name, **kw)``, ``model_from_config(cfg.model)``, ``list_models()``; every model subclasses
:class:`~aio.models.base.RestorationModel` (``forward(x, task=None)``, ``aux_losses``, ``aux_metrics``).
"""

from aio.models import airnet, nafnet, promptir, restormer  # noqa: F401  (registers the models)
from aio.models import dsrir  # noqa: F401  (registers dsrir)
from aio.models import mioir_restormer, mioir_srresnet, srresnet  # noqa: F401  (MiOIR's models)
from aio.models import abair  # noqa: F401,E402  (after the backbones it wraps)
from aio.models.airnet import AirNet
from aio.models.base import RestorationModel, crop_to, pad_to_multiple
from aio.models.nafnet import NAFNet
from aio.models.promptir import PromptIR
from aio.models.registry import (
    create_model,
    extract_state_dict,
    list_models,
    load_official_checkpoint,
    model_from_config,
    register_model,
)
from aio.models.restormer import Restormer
from aio.models.summary import count_parameters, forward_gflops

__all__ = [
    "RestorationModel",
    "AirNet",
    "Restormer",
    "PromptIR",
    "NAFNet",
    "create_model",
    "model_from_config",
    "list_models",
    "register_model",
    "load_official_checkpoint",
    "extract_state_dict",
    "count_parameters",
    "forward_gflops",
    "pad_to_multiple",
    "crop_to",
]
