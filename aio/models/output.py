"""The multi-output contract: what a model's ``forward`` may return and how the rest of aio reads it.

A single-output network returns the restored image as a Tensor ``[B, 3, H, W]``. A network with auxiliary
outputs (several restored images, variance maps, segmentation logits, ...) returns a :class:`ModelOutput`
whose ``restored`` is the image that evaluation and restoration use and whose ``extras`` hold the rest under
documented names. Evaluation, tiling, restoration and FLOP counting call :func:`restored_image`; losses that
declare ``uses_model_output = True`` receive the whole :class:`ModelOutput` (see :mod:`aio.losses.contract`).
Nothing outside this module needs an ``isinstance`` test on a model's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutput:
    """``restored``: the final restored image; ``extras``: named auxiliary tensors (model-specific)."""

    restored: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def float(self) -> "ModelOutput":
        """The same output with every floating tensor in float32 (losses run in fp32 after autocast)."""
        return ModelOutput(self.restored.float(),
                           {k: v.float() if torch.is_floating_point(v) else v for k, v in self.extras.items()})


def as_model_output(out: torch.Tensor | ModelOutput) -> ModelOutput:
    """Wrap a plain Tensor output into a :class:`ModelOutput` with no extras."""
    return out if isinstance(out, ModelOutput) else ModelOutput(out)


def restored_image(out: torch.Tensor | ModelOutput) -> torch.Tensor:
    """The image evaluation and restoration use: the Tensor itself, or ``ModelOutput.restored``."""
    return out.restored if isinstance(out, ModelOutput) else out
