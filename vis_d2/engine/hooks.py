"""The training hooks of vis_d2, in the one order both trainers use (``VISTrainer`` for the
yacs configs, ``projects/VIS_Ablation/train_net.py`` for the LazyConfig rows)."""
from typing import Callable, List, Optional

from detectron2.engine import HookBase, hooks
from detectron2.utils import comm

from .cpu_short_run import TrainingTimeBudget
from .ema import EMAHook, ModelEMA, eval_on_average

__all__ = ["build_vis_hooks"]


def build_vis_hooks(
    trainer,
    *,
    checkpointer,
    eval_function: Callable[[], dict],
    eval_period: int,
    checkpoint_period: int,
    build_writers: Callable[[], list],
    log_period: int = 20,
    lr_scheduler=None,
    max_to_keep: Optional[int] = None,
    max_train_minutes: float = 0.0,
    ema: Optional[ModelEMA] = None,
    best_metric: str = "",
    precise_bn: Optional[HookBase] = None,
) -> List[Optional[HookBase]]:
    """detectron2's default hooks plus vis_d2's, for ``trainer.register_hooks``.

    Args:
        trainer: the trainer the hooks will run in (its ``iter``/``max_iter`` decide whether an
            evaluation runs on the averaged weights).
        checkpointer: the checkpointer of the periodic and the best checkpoints.
        eval_function: no arguments -> the nested metrics dict (``{"segm": {"AP": ...}}``).
        eval_period: evaluate every this many iterations (0: after training only).
        checkpoint_period, max_to_keep: of the ``PeriodicCheckpointer``.
        build_writers: no arguments -> detectron2's event writers, written every
            ``log_period`` iterations (called on the main process only: writers open files).
        lr_scheduler: given to detectron2's ``LRScheduler`` hook (None: the trainer's own).
        max_train_minutes: > 0 adds the :class:`TrainingTimeBudget`.
        ema: the weight average; adds the :class:`EMAHook` and evaluates on the average.
        best_metric: with ``eval_period`` > 0, keep ``model_best`` by this metric (max).
        precise_bn: detectron2's ``PreciseBN`` hook, or None.

    Returns the hooks in order (None where one is off; ``register_hooks`` skips those):
    IterationTimer, TrainingTimeBudget, LRScheduler, PreciseBN, EMAHook, PeriodicCheckpointer,
    EvalHook, BestCheckpointer, PeriodicWriter. The checkpointers and the writer are on the
    main process only.
    """
    main = comm.is_main_process()
    if ema is not None:
        eval_function = eval_on_average(ema, trainer, eval_function)
    return [
        hooks.IterationTimer(),
        # Before the LR scheduler, EMA, checkpointer and evaluation: they must see a lowered
        # max_iter in the same step.
        TrainingTimeBudget(max_train_minutes) if max_train_minutes > 0 else None,
        hooks.LRScheduler(scheduler=lr_scheduler),
        precise_bn,
        # Before the checkpointer and the evaluation, so that model_final and the final
        # evaluation hold the averaged weights.
        EMAHook(ema) if ema is not None else None,
        hooks.PeriodicCheckpointer(checkpointer, checkpoint_period, max_to_keep=max_to_keep)
        if main else None,
        hooks.EvalHook(eval_period, eval_function),
        # After EvalHook, which puts the metrics into the event storage.
        hooks.BestCheckpointer(eval_period, checkpointer, best_metric, mode="max")
        if main and eval_period > 0 and best_metric else None,
        hooks.PeriodicWriter(build_writers(), period=log_period) if main else None,
    ]
