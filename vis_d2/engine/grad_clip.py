"""Per-parameter gradient-norm clipping (``SOLVER.CLIP_GRADIENTS`` with ``CLIP_TYPE`` "norm";
``train.clip_gradients`` in a LazyConfig), computed for all parameters at once.

detectron2's ``maybe_add_gradient_clipping`` calls ``torch.nn.utils.clip_grad_norm_`` once per
parameter: 130 calls per step for the demo model, which make its AdamW step about twice as long
(``tools/benchmark.py clip``). This does the same arithmetic with one ``_foreach_norm`` per device
and dtype, and one ``_foreach_mul_`` over the gradients above the limit: each gradient g is
scaled by ``min(1, CLIP_VALUE / (||g||_NORM_TYPE + 1e-6))``, as ``clip_grad_norm_`` does for a
single parameter. Other clip types go to detectron2 unchanged.
"""
from collections import defaultdict
from typing import Iterable

import torch

from detectron2.solver.build import maybe_add_gradient_clipping

__all__ = ["clip_grad_norm_per_parameter_", "maybe_add_per_parameter_clipping"]


@torch.no_grad()
def clip_grad_norm_per_parameter_(grads: Iterable[torch.Tensor], max_norm: float,
                                  norm_type: float = 2.0) -> None:
    """Scale each gradient tensor in place so that its own ``norm_type``-norm is at most
    ``max_norm`` (tensors already below it are left as they are)."""
    groups = defaultdict(list)
    for g in grads:
        groups[(g.device, g.dtype)].append(g)
    for tensors in groups.values():
        norms = torch.stack(torch._foreach_norm(tensors, norm_type))
        coefs = (max_norm / (norms + 1e-6)).tolist()
        # Only the tensors over the limit are touched (the others would be multiplied by 1).
        over = [i for i, c in enumerate(coefs) if c < 1.0]
        if over:
            torch._foreach_mul_([tensors[i] for i in over], [coefs[i] for i in over])


def maybe_add_per_parameter_clipping(cfg, optimizer):
    """detectron2's ``maybe_add_gradient_clipping(cfg, optimizer)``, with the per-parameter
    "norm" clipping done by :func:`clip_grad_norm_per_parameter_`.

    ``optimizer`` is an optimizer class or, as detectron2 also accepts, an optimizer (the
    LazyConfig trainer's, already built). Returns it unchanged when clipping is off,
    detectron2's wrapper for "value", and for "norm" a subclass whose ``step`` clips every
    gradient before the update (an optimizer given is switched to that subclass and returned).
    """
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED or clip.CLIP_TYPE != "norm":
        return maybe_add_gradient_clipping(cfg, optimizer)
    max_norm, norm_type = float(clip.CLIP_VALUE), float(clip.NORM_TYPE)
    instance = isinstance(optimizer, torch.optim.Optimizer)
    optimizer_type = type(optimizer) if instance else optimizer

    def step(self, closure=None):
        clip_grad_norm_per_parameter_(
            [p.grad for group in self.param_groups for p in group["params"]
             if p.grad is not None],
            max_norm, norm_type)
        return super(clipped, self).step(closure)

    clipped = type(optimizer_type.__name__ + "WithGradientClip", (optimizer_type,), {"step": step})
    if instance:
        optimizer.__class__ = clipped  # as detectron2 does for an optimizer given
        return optimizer
    return clipped
