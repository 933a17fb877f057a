"""Machinery for short training runs on a CPU (the demo): a wall-clock time budget, a bfloat16
training step, and the one door through which they reach detectron2's private attributes.

**Time budget** (``SOLVER.MAX_TRAIN_MINUTES``, ``train.max_train_minutes`` in a LazyConfig): a
schedule sized for one machine can take twice as long on a slower or busier one, and the CPU
demo promises to train within 15 minutes; :class:`TrainingTimeBudget` keeps that promise on
whatever machine runs it. Every ``check_period`` steps it projects the end of training
from the steps' recent pace; where that falls past the budget, it lowers the last iteration to
the one the pace reaches with a margin to spare (so that the noise of the pace does not trigger
a cut after every check). Where the pace picks up again (the first few hundred steps of a
detector are slower than the rest), a cut is given back, up to the schedule the run started
with, but only while that leaves the current LR as it is (before the first LR drop, after the
warm-up): a step schedule never goes back up. The LR schedule (a detectron2 ``LRMultiplier``,
which reads training progress as ``iteration / max_iter``) is compressed with it, so the LR
drops still come, earlier; the final checkpoint, the EMA's final copy and the final evaluation
follow ``trainer.max_iter``. The budget never lengthens a run beyond the schedule it started
with. The decision is part of the trainer's checkpointed state (with the training seconds spent
so far), so a resumed run keeps the shortened schedule and counts the time already spent. With
several processes (DDP) the ranks take the smallest proposed end, so they stop together. Use
:func:`run_training` instead of ``TrainerBase.train``: detectron2's loop fixes its bound when it
starts, this one reads ``trainer.max_iter`` after every step.

**bfloat16 step** (``SOLVER.CPU_BF16``, ``train.cpu_bf16``): :func:`select_step_trainer` picks
detectron2's step class for the precision settings, :class:`CPUBFloat16Trainer` where the CPU
has bfloat16 instructions.

**detectron2 private attributes**: shortening a run in flight has to change what detectron2
keeps in private attributes (the LR multiplier's and the metric printer's ``_max_iter``) and
read some (the trainer's hook list); ``VISTrainer`` sets DefaultTrainer's step (``_trainer``).
Every such access goes through :func:`detectron2_private` / :func:`set_detectron2_private`,
which name the class, the attribute and the installed detectron2 version where an upgrade
removed one; :data:`DETECTRON2_PRIVATE` lists them all and ``tests/test_cpu_short_run.py``
checks each on real detectron2 objects.
"""
import logging
import math
import time
from collections import deque
from typing import Any, Callable, Optional

import numpy as np
import torch
from fvcore.common.param_scheduler import ParamScheduler

import detectron2
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, hooks
from detectron2.engine.train_loop import HookBase, TrainerBase
from detectron2.solver import LRMultiplier
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, EventStorage

__all__ = [
    "DETECTRON2_PRIVATE",
    "detectron2_has",
    "detectron2_private",
    "set_detectron2_private",
    "cpu_has_bf16",
    "CPUBFloat16Trainer",
    "select_step_trainer",
    "step_precision",
    "run_training",
    "TrainingTimeBudget",
]

logger = logging.getLogger(__name__)

# (detectron2 class, private attribute) for every one that vis_d2 reads or writes.
DETECTRON2_PRIVATE = (
    (TrainerBase, "_hooks"),  # read: the hooks whose bound the budget moves
    (LRMultiplier, "_max_iter"),  # read and written: the bound of the LR schedule
    (LRMultiplier, "_multiplier"),  # read: the LR factor at a given progress
    (hooks.PeriodicWriter, "_writers"),  # read: to find the metric printer
    (CommonMetricPrinter, "_max_iter"),  # written: the bound of the logged ETA
    (DefaultTrainer, "_trainer"),  # written by VISTrainer.__init__: the step that run_step runs
)


def detectron2_has(obj: Any, name: str) -> bool:
    """Whether ``obj`` has the attribute ``name``, or, where ``obj``'s class replaces the
    ``__init__`` of a detectron2 base class (as ``VISTrainer`` does DefaultTrainer's), that
    ``__init__`` assigns it."""
    if hasattr(obj, name):
        return True
    own_init = type(obj).__init__
    return any(cls.__module__.startswith("detectron2.") and "__init__" in vars(cls)
               and cls.__init__ is not own_init and name in cls.__init__.__code__.co_names
               for cls in type(obj).__mro__)


def _check_private(obj: Any, name: str) -> None:
    if not any(isinstance(obj, cls) and name == attr for cls, attr in DETECTRON2_PRIVATE):
        raise ValueError(f"{type(obj).__name__}.{name} is not listed in "
                         "vis_d2.engine.cpu_short_run.DETECTRON2_PRIVATE, which the tests check")
    if not detectron2_has(obj, name):
        raise AttributeError(
            f"{type(obj).__name__} has no attribute {name!r} in the installed detectron2 "
            f"{detectron2.__version__}, and vis_d2 relies on it: install the detectron2 "
            "version vis_d2 is tested with, or update DETECTRON2_PRIVATE in "
            "vis_d2/engine/cpu_short_run.py and the code that uses it")


def detectron2_private(obj: Any, name: str) -> Any:
    """``getattr(obj, name)`` for a private attribute of a detectron2 object listed in
    :data:`DETECTRON2_PRIVATE`; a clear AttributeError where the installed detectron2 has none."""
    _check_private(obj, name)
    return getattr(obj, name)


def set_detectron2_private(obj: Any, name: str, value: Any) -> None:
    """``setattr(obj, name, value)`` for a private attribute of a detectron2 object listed in
    :data:`DETECTRON2_PRIVATE`, after checking that detectron2 has it (:func:`detectron2_has`);
    an AttributeError naming the class, the attribute and the detectron2 version otherwise."""
    _check_private(obj, name)
    setattr(obj, name, value)


# ---- bfloat16 step ----------------------------------------------------------------------------
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX-BF16), from the
    ``flags`` of ``cpuinfo`` (Linux); False where that file does not exist."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


class CPUBFloat16Trainer(SimpleTrainer):
    """SimpleTrainer whose steps run under ``torch.autocast("cpu", torch.bfloat16)``.

    Autocast runs convolutions and matrix products in bfloat16 (on a CPU with AVX512-BF16 the
    demo's training step takes ~0.8x the time, ``tools/benchmark.py bf16``); the weights, their
    gradients and the optimizer stay float32, and the losses (cross-entropy, BCE) are computed
    in float32 by autocast's own rules. bfloat16 has float32's exponent range, so no gradient
    scaling is needed (unlike CUDA's float16 AMP). The backward pass inside the context runs
    each op in its forward's dtype, the same gradients as autocasting the forward alone
    (tests/test_trainer_bf16.py checks it).
    """

    def run_step(self):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            super().run_step()


def select_step_trainer(device: str, amp: bool, cpu_bf16: bool,
                        keys=("SOLVER.AMP.ENABLED", "SOLVER.CPU_BF16")):
    """The detectron2 step class for the precision settings, and whether AMP stays on.

    AMP (float16 with a gradient scaler, detectron2's AMPTrainer) needs CUDA; elsewhere it is
    switched off with a warning. ``cpu_bf16`` on a CPU device gives :class:`CPUBFloat16Trainer`
    where the CPU has bfloat16 instructions, else a warning and float32. ``keys`` name the two
    settings in the messages (the yacs keys, or the LazyConfig's ``train.*``).
    Returns (AMPTrainer | CPUBFloat16Trainer | SimpleTrainer, amp).
    """
    amp_key, bf16_key = keys
    if amp and not (device.startswith("cuda") and torch.cuda.is_available()):
        logger.warning("%s needs CUDA; training in fp32 on %s", amp_key, device)
        amp = False
    # Only on CPU, where AMP is off by now: the two never meet.
    bf16 = bool(cpu_bf16) and device.startswith("cpu")
    if bf16 and not cpu_has_bf16():
        logger.warning("%s: this CPU has no bfloat16 instructions (avx512_bf16 / amx_bf16 in "
                       "/proc/cpuinfo), where bfloat16 would be emulated and slower; training "
                       "in float32", bf16_key)
        bf16 = False
    if bf16:
        logger.info("%s: training steps run in bfloat16 autocast", bf16_key)
    if amp:
        return AMPTrainer, True
    return (CPUBFloat16Trainer if bf16 else SimpleTrainer), False


def step_precision(trainer_type) -> str:
    """What precision a step class of :func:`select_step_trainer` trains in, for logs and
    reports: "float16 AMP", "bfloat16 autocast" or "float32"."""
    if issubclass(trainer_type, AMPTrainer):
        return "float16 AMP"
    if issubclass(trainer_type, CPUBFloat16Trainer):
        return "bfloat16 autocast"
    return "float32"


# ---- time budget ------------------------------------------------------------------------------
def run_training(trainer: TrainerBase, start_iter: int, max_iter: int) -> None:
    """``TrainerBase.train(start_iter, max_iter)``, except that the loop ends when
    ``trainer.iter`` reaches ``trainer.max_iter`` as it is after each step, so a hook (the
    :class:`TrainingTimeBudget`) may end training earlier than ``max_iter``. As detectron2's
    loop: the hooks' ``before_train``/``after_train`` run around it, ``trainer.iter`` equals
    ``trainer.max_iter`` after a complete run, and an exception is logged and re-raised."""
    trainer.iter = trainer.start_iter = start_iter
    trainer.max_iter = max_iter
    logging.getLogger("detectron2.engine.train_loop").info(
        f"Starting training from iteration {start_iter}")
    with EventStorage(start_iter) as trainer.storage:
        try:
            trainer.before_train()
            # before_train may have lowered max_iter (a resumed run keeps its shortened schedule)
            while trainer.iter < trainer.max_iter:
                trainer.before_step()
                trainer.run_step()
                trainer.after_step()
                trainer.iter += 1
        except Exception:
            logger.exception("Exception during training:")
            raise
        finally:
            trainer.after_train()


class TrainingTimeBudget(HookBase):
    """End training within ``minutes`` of training time (see the module docstring).

    Register it right after detectron2's ``IterationTimer``: before the LR scheduler, the EMA,
    the checkpointer and the evaluation hooks, so that they all see a lowered ``max_iter`` in the
    same step. Training time runs from ``before_train`` (model building and data registration
    come before it) and does not include the evaluation after the last step.
    """

    def __init__(self, minutes: float, *, check_period: int = 10, warmup_steps: int = 50,
                 window: int = 50, margin: float = 1.05,
                 clock: Callable[[], float] = time.perf_counter):
        """
        Args:
            minutes: the budget, > 0.
            check_period: project the end every this many steps.
            warmup_steps: the first steps of a (resumed) run are not used for the pace: they
                are slow for reasons of their own (allocations, first reads).
            window: the pace is the mean time of the last ``window`` steps, each capped at 3x
                their median (a checkpoint or a periodic evaluation is a one-off, not a pace).
                No decision is taken before ``window // 2`` steps after the warm-up are in.
            margin: a cut leaves room for steps ``margin`` x the pace: later steps of a detector
                cost a little more than earlier ones (more foreground proposals), and the pace
                is a noisy estimate.
            clock: seconds, monotonic; for tests.
        """
        if not minutes > 0:
            raise ValueError(f"SOLVER.MAX_TRAIN_MINUTES must be > 0 to set a budget, got {minutes}")
        if check_period < 1 or window < 1 or warmup_steps < 0 or margin < 1.0:
            raise ValueError("TrainingTimeBudget: check_period and window must be >= 1, "
                             "warmup_steps >= 0 and margin >= 1")
        self.budget_seconds = float(minutes) * 60.0
        self.check_period = int(check_period)
        self.warmup_steps = int(warmup_steps)
        self.margin = float(margin)
        self._clock = clock
        self._durations = deque(maxlen=int(window))
        self._spent_before = 0.0  # training seconds of earlier attempts (from a checkpoint)
        self._cut_max_iter: Optional[int] = None  # the lowered last iteration + 1, if any
        self._planned: Optional[int] = None  # trainer.max_iter when the run started
        self._t0 = self._last = None
        self._steps_seen = 0
        self._warned = False

    # ---- state ---------------------------------------------------------------------------
    def elapsed_seconds(self) -> float:
        """Training seconds spent so far, earlier attempts of a resumed run included."""
        if self._t0 is None:
            return self._spent_before
        return self._spent_before + (self._clock() - self._t0)

    def state_dict(self):
        return {"elapsed_seconds": self.elapsed_seconds(),
                "max_iter": -1 if self._cut_max_iter is None else int(self._cut_max_iter)}

    def load_state_dict(self, state_dict):
        self._spent_before = float(state_dict.get("elapsed_seconds", 0.0))
        cut = int(state_dict.get("max_iter", -1))
        self._cut_max_iter = cut if cut > 0 else None

    # ---- hook ----------------------------------------------------------------------------
    def before_train(self):
        self._t0 = self._last = self._clock()
        self._durations.clear()
        self._steps_seen = 0
        self._planned = int(self.trainer.max_iter)
        if self._cut_max_iter is not None and self._cut_max_iter < self.trainer.max_iter:
            logger.info(f"Time budget: resuming the shortened schedule of an earlier attempt "
                        f"({self._cut_max_iter} iterations)")
            self._set_max_iter(self._cut_max_iter)

    def after_step(self):
        now = self._clock()
        self._steps_seen += 1
        if self._steps_seen > self.warmup_steps:
            self._durations.append(now - self._last)
        self._last = now
        done = self.trainer.iter + 1  # steps completed, this one included
        if (len(self._durations) < max(1, self._durations.maxlen // 2)
                or self._steps_seen % self.check_period != 0):
            return
        proposed = self.proposed_max_iter(done, self.elapsed_seconds())
        if comm.get_world_size() > 1:  # every rank must stop at the same step
            proposed = min(comm.all_gather(proposed))
        old = self.trainer.max_iter
        if proposed == old or (proposed > old and not self._lr_unchanged(proposed)):
            return
        self._cut_max_iter = proposed if proposed < self._planned else None
        self._set_max_iter(proposed)
        msg = (f"Time budget: at iteration {done}, {self.elapsed_seconds() / 60:.1f} of "
               f"{self.budget_seconds / 60:g} minutes spent at {self.pace():.3f} s/iter; "
               f"training ends at iteration {proposed} instead of {old}")
        # The pace of 50 steps moves by +-15% on a shared 2-core machine, so the end moves
        # often while the LR is flat; only the first cut is worth a warning.
        if proposed < old:
            level = logging.WARNING if not self._warned else logging.INFO
            self._warned = True
            logger.log(level, msg + ", with the LR schedule compressed to match")
        else:
            logger.info(msg + ": the pace has picked up")

    def pace(self) -> float:
        """Mean seconds of the steps in the window, each capped at 3x their median."""
        d = np.asarray(self._durations, dtype=np.float64)
        return float(np.minimum(d, 3.0 * np.median(d)).mean())

    def proposed_max_iter(self, done: int, elapsed: float) -> int:
        """The last iteration (+1) for a run at ``done`` steps after ``elapsed`` seconds.

        Where the rest of ``trainer.max_iter``, at the pace, would overrun the budget: the
        iteration reached within it at pace x margin per further step (``done`` itself when the
        budget is spent). Where it fits: ``trainer.max_iter``, or more where a cut left room
        for more at pace x margin, up to the schedule the run started with."""
        max_iter = self.trainer.max_iter
        pace = self.pace()
        step = pace * self.margin
        fit = math.floor(max(self.budget_seconds - elapsed, 0.0) / step) if step > 0 else 0
        target = min(self._planned if self._planned is not None else max_iter, done + fit)
        if elapsed + (max_iter - done) * pace <= self.budget_seconds:
            return int(max(max_iter, target))
        return int(min(max_iter, target))

    def _hooks_of(self, hook_type):
        return [h for h in detectron2_private(self.trainer, "_hooks") if isinstance(h, hook_type)]

    def _scheduler(self):
        """The LR scheduler that detectron2's LRScheduler hook steps (its own, or the
        trainer's as DefaultTrainer has it), or None."""
        for h in self._hooks_of(hooks.LRScheduler):
            try:
                return h.scheduler
            except AttributeError:  # neither the hook nor the trainer has one
                return None
        return None

    def _lr_unchanged(self, max_iter: int) -> bool:
        """Whether the LR of the coming step stays the same with ``max_iter`` as the bound (so
        giving steps back moves only LR changes still to come)."""
        sched = self._scheduler()
        if not isinstance(sched, LRMultiplier):
            return False
        it = sched.last_epoch
        multiplier = detectron2_private(sched, "_multiplier")
        now = multiplier(it / detectron2_private(sched, "_max_iter"))
        then = multiplier(it / max_iter)
        return abs(now - then) <= 1e-9 * max(abs(now), 1e-12)

    def _set_max_iter(self, max_iter: int) -> None:
        """Set the trainer's last iteration and what reads it: the LR schedule, the periodic
        checkpointer (``model_final``) and the metric printer's ETA."""
        self.trainer.max_iter = max_iter
        sched = self._scheduler()
        if isinstance(sched, LRMultiplier):
            # progress = iteration / _max_iter: a smaller bound compresses the schedule
            set_detectron2_private(sched, "_max_iter", max_iter)
        elif sched is not None and not isinstance(sched, ParamScheduler):
            # (A ParamScheduler: the LazyConfig loop's hook has yet to run its before_train,
            # which builds the LRMultiplier from trainer.max_iter; nothing to change here.)
            logger.warning(f"Time budget: the LR scheduler {type(sched).__name__} is not an "
                           "LRMultiplier; its schedule is not shortened")
        for h in self._hooks_of(hooks.PeriodicCheckpointer):
            h.max_iter = max_iter  # it saves model_final at max_iter - 1
        for h in self._hooks_of(hooks.PeriodicWriter):
            for w in detectron2_private(h, "_writers"):
                if isinstance(w, CommonMetricPrinter):
                    set_detectron2_private(w, "_max_iter", max_iter)  # the ETA in the log lines
