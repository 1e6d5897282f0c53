"""How the trainer applies a loss to a model's output (one call, no per-model branches).

Ordinary losses take ``(pred, target)`` with ``pred`` the restored image. A loss that needs the model's
auxiliary outputs or other fields of the batch (task labels, degradation maps) sets the class attribute
``uses_model_output = True`` and is called as ``loss_fn(output, target, batch=batch)`` with ``output`` a
:class:`~aio.models.output.ModelOutput`. Both return ``(total, terms)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from aio.models.output import ModelOutput, as_model_output


def compute_loss(loss_fn: nn.Module, out: torch.Tensor | ModelOutput, target: torch.Tensor,
                 batch: Mapping[str, Any] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Apply ``loss_fn`` to a model output in fp32; returns ``(total, terms)``."""
    output = as_model_output(out).float()
    if getattr(loss_fn, "uses_model_output", False):
        return loss_fn(output, target, batch=batch)
    return loss_fn(output.restored, target)
