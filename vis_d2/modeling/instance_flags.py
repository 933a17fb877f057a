"""The per-instance flags of multi-source training data (paper Sec. 3.2), read with defaults.

The pair mappers give every training ``Instances`` (key and reference frame) two bool fields:

* ``gt_aux``: True for an object of a source class that the video set does not have, an
  auxiliary object; it trains the K auxiliary class outputs (Algorithm 1,
  :mod:`vis_d2.modeling.auxiliary_classes`).
* ``gt_mask_valid``: False for an object whose mask must not train (weakly segmented sources
  such as OpenImages: "no or noisy masks"); it trains the box, class and track losses and never
  the mask, TCIS or semantic-segmentation losses.

Instances built without them (older callers, hand-made tests) read as the video set's:
no auxiliary object, every mask valid, so such a batch trains exactly as before.
"""
import torch

from detectron2.structures import Instances

__all__ = ["auxiliary_flags", "mask_valid_flags"]


def _flags(inst: Instances, name: str, default: bool) -> torch.Tensor:
    if inst.has(name):
        return inst.get(name).to(torch.bool)
    device = inst.gt_classes.device if inst.has("gt_classes") else torch.device("cpu")
    return torch.full((len(inst),), default, dtype=torch.bool, device=device)


def auxiliary_flags(inst: Instances) -> torch.Tensor:
    """(N,) bool: ``inst.gt_aux``, or all False where the field is missing."""
    return _flags(inst, "gt_aux", False)


def mask_valid_flags(inst: Instances) -> torch.Tensor:
    """(N,) bool: ``inst.gt_mask_valid``, or all True where the field is missing."""
    return _flags(inst, "gt_mask_valid", True)
