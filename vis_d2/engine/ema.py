"""Exponential moving average (EMA) of the model weights, as a detectron2 hook.

A model trained from scratch on a short schedule with small batches (the CPU demo: two pairs, a
handful of objects per step) moves its classifier a lot from step to step; the average of the
weights over the last few hundred steps is a better model than the last step's. The average is
kept by ``torch.optim.swa_utils.AveragedModel`` with an EMA update (decay ``SOLVER.EMA.DECAY``)
after every step. Evaluation during training runs on the averaged weights, and at the end of
training they replace the live ones, so ``model_final.pth`` and the final evaluation are the
averaged model. The average is a checkpointable (``"model_ema"``), so ``--resume`` carries it on.
"""
import logging
from contextlib import contextmanager

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from detectron2.engine import HookBase

__all__ = ["ModelEMA", "EMAHook", "eval_on_average"]

logger = logging.getLogger(__name__)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


class ModelEMA:
    """The EMA of a model's parameters and buffers.

    Args:
        model: the live model (a DDP wrapper is unwrapped).
        decay: weight of the old average at each update, in [0, 1).
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"SOLVER.EMA.DECAY must be in [0, 1), got {decay}")
        self.model = _unwrap(model)
        self.decay = float(decay)
        self.averaged = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay),
                                      use_buffers=True)
        self.averaged.requires_grad_(False)

    def update(self) -> None:
        """Fold the live weights into the average (the first call copies them)."""
        self.averaged.update_parameters(self.model)

    def _tensors(self, module: torch.nn.Module):
        return list(module.parameters()) + list(module.buffers())

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Overwrite the live weights with the averaged ones."""
        for live, avg in zip(self._tensors(self.model), self._tensors(self.averaged.module)):
            live.copy_(avg)

    @contextmanager
    def averaged_weights(self):
        """Within: the live model holds the averaged weights; on exit its own come back."""
        backup = [t.detach().clone() for t in self._tensors(self.model)]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for live, b in zip(self._tensors(self.model), backup):
                    live.copy_(b)


class EMAHook(HookBase):
    """Update the EMA after every step; at the last step put the averaged weights into the
    model. Must come before the PeriodicCheckpointer (which saves ``model_final`` after the
    last step) and before the EvalHook."""

    def __init__(self, ema: ModelEMA):
        self.ema = ema

    def after_step(self):
        self.ema.update()
        if self.trainer.iter == self.trainer.max_iter - 1:
            self.ema.copy_to_model()
            logger.info(f"EMA (decay {self.ema.decay}): the averaged weights replace the "
                        "model's for the final checkpoint and evaluation")


def eval_on_average(ema: ModelEMA, trainer, eval_fn):
    """``eval_fn`` wrapped to run on the averaged weights (for an ``EvalHook``).

    ``trainer`` is the detectron2 trainer running the hooks (its ``iter`` and ``max_iter`` are
    read). After the last step the EMAHook has already put the average into the model, so the
    final evaluation runs as it is.
    """
    def run():
        if trainer.iter >= trainer.max_iter - 1:
            return eval_fn()
        with ema.averaged_weights():
            return eval_fn()

    return run
