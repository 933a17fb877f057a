"""Short CPU runs (vis_d2.engine.cpu_short_run): the private detectron2 attributes it relies on
exist, with a clear error where one does not; the hook order of both trainers; and the
training time budget: a run that would overrun its wall-clock budget ends early, on a
compressed LR schedule, with its final checkpoint; a resumed run keeps the shortened schedule
and counts the time already spent. A fake clock advances a set number of seconds per step, so
the numbers are exact."""
import collections
import os

import pytest
import torch
from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.checkpoint import DetectionCheckpointer
import detectron2
from detectron2.engine import DefaultTrainer, SimpleTrainer, hooks
from detectron2.engine.train_loop import TrainerBase
from detectron2.solver import LRMultiplier
from detectron2.utils.events import CommonMetricPrinter

from vis_d2.engine.cpu_short_run import (
    DETECTRON2_PRIVATE,
    TrainingTimeBudget,
    detectron2_has,
    detectron2_private,
    run_training,
    set_detectron2_private,
)
from vis_d2.engine.ema import EMAHook, ModelEMA
from vis_d2.engine.hooks import build_vis_hooks
from vis_d2.engine.trainer import VISTrainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BASE_LR = 0.1


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class ToyModel(torch.nn.Module):
    """A linear layer whose every forward pass takes ``seconds(step)`` on the fake clock."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
        self.clock, self.seconds, self.calls = clock, seconds, 0

    def forward(self, x):
        self.clock.t += self.seconds(self.calls)
        self.calls += 1
        return {"loss": (self.lin(x) ** 2).mean()}


def _batches():
    while True:
        yield torch.ones(2, 3)


def build(tmp_path, clock, seconds, *, minutes=1.0, max_iter=200, checkpoint_period=1000):
    """A SimpleTrainer with detectron2's LRScheduler (milestones at 60% and 90% of max_iter),
    the budget right after the IterationTimer, and a PeriodicCheckpointer into ``tmp_path``."""
    model = ToyModel(clock, seconds)
    opt = torch.optim.SGD(model.parameters(), lr=BASE_LR)
    trainer = SimpleTrainer(model, _batches(), opt)
    sched = LRMultiplier(opt, MultiStepParamScheduler(
        [1.0, 0.1, 0.01], milestones=[int(0.6 * max_iter), int(0.9 * max_iter)],
        num_updates=max_iter), max_iter=max_iter)
    budget = TrainingTimeBudget(minutes, clock=clock)
    ckpt = DetectionCheckpointer(model, str(tmp_path), trainer=trainer)
    trainer.register_hooks([
        hooks.IterationTimer(), budget, hooks.LRScheduler(scheduler=sched),
        hooks.PeriodicCheckpointer(ckpt, checkpoint_period),
    ])
    return trainer, budget, sched, ckpt


def _toy_trainer():
    model = ToyModel(FakeClock(), lambda i: 0.0)
    return SimpleTrainer(model, _batches(), torch.optim.SGD(model.parameters(), lr=BASE_LR))


def test_every_detectron2_private_attribute_used_exists_and_means_what_vis_d2_assumes():
    """Fails on a detectron2 upgrade that renames or drops one of DETECTRON2_PRIVATE."""
    trainer = _toy_trainer()
    timer = hooks.IterationTimer()
    trainer.register_hooks([timer])
    multiplier = MultiStepParamScheduler([1.0, 0.1], milestones=[5], num_updates=10)
    sched = LRMultiplier(trainer.optimizer, multiplier, max_iter=10)
    printer = CommonMetricPrinter(max_iter=10)
    writer = hooks.PeriodicWriter([printer])
    built = {TrainerBase: trainer, LRMultiplier: sched, hooks.PeriodicWriter: writer,
             CommonMetricPrinter: printer,
             # built without a dataset: VISTrainer.__init__ replaces DefaultTrainer's, which
             # is where detectron2 defines _trainer
             DefaultTrainer: VISTrainer.__new__(VISTrainer)}
    version = detectron2.__version__
    assert {cls for cls, _ in DETECTRON2_PRIVATE} == set(built)
    for cls, name in DETECTRON2_PRIVATE:
        assert detectron2_has(built[cls], name), f"detectron2 {version}: no {cls.__name__}.{name}"
    assert detectron2_private(trainer, "_hooks") == [timer]
    assert detectron2_private(sched, "_max_iter") == 10
    assert detectron2_private(sched, "_multiplier")(0.6) == pytest.approx(0.1)
    assert detectron2_private(writer, "_writers") == [printer]
    set_detectron2_private(printer, "_max_iter", 7)
    assert printer._max_iter == 7
    # DefaultTrainer runs its steps, and saves their state, through _trainer
    assert "_trainer" in DefaultTrainer.run_step.__code__.co_names
    assert "_trainer" in DefaultTrainer.state_dict.__code__.co_names


def test_a_private_attribute_detectron2_lacks_is_a_clear_error():
    printer = CommonMetricPrinter(max_iter=10)
    del printer._max_iter  # as after an upgrade that renamed it
    with pytest.raises(AttributeError, match=rf"CommonMetricPrinter has no attribute '_max_iter' in "
                                             rf"the installed detectron2 {detectron2.__version__}"):
        set_detectron2_private(printer, "_max_iter", 5)
    with pytest.raises(ValueError, match="CommonMetricPrinter._window_size is not listed"):
        set_detectron2_private(printer, "_window_size", 5)


def test_vis_hooks_order_and_the_evaluation_on_the_average():
    trainer = _toy_trainer()
    ema = ModelEMA(trainer.model, 0.5)
    ckpt = DetectionCheckpointer(trainer.model)
    weights = []
    built = build_vis_hooks(
        trainer, checkpointer=ckpt, eval_function=lambda: weights.append(
            trainer.model.lin.weight.detach().clone()) or {"segm": {"AP": 1.0}},
        eval_period=2, checkpoint_period=100, build_writers=list, max_train_minutes=5.0, ema=ema,
        best_metric="segm/AP")
    assert [type(h) for h in built] == [
        hooks.IterationTimer, TrainingTimeBudget, hooks.LRScheduler, type(None), EMAHook,
        hooks.PeriodicCheckpointer, hooks.EvalHook, hooks.BestCheckpointer, hooks.PeriodicWriter]
    plain = build_vis_hooks(trainer, checkpointer=ckpt, eval_function=dict, eval_period=0,
                            checkpoint_period=100, build_writers=list, best_metric="segm/AP")
    assert [type(h) for h in plain if h is not None] == [
        hooks.IterationTimer, hooks.LRScheduler, hooks.PeriodicCheckpointer, hooks.EvalHook,
        hooks.PeriodicWriter]
    # The periodic evaluation (after step 2 of 3) runs on the average; the final one on the
    # model, which holds the average by then.
    sched = LRMultiplier(trainer.optimizer, MultiStepParamScheduler([1.0], num_updates=3),
                         max_iter=3)
    trainer.register_hooks([h for h in build_vis_hooks(
        trainer, checkpointer=ckpt, eval_function=lambda: weights.append(
            trainer.model.lin.weight.detach().clone()) or {}, eval_period=2, checkpoint_period=100,
        build_writers=list, lr_scheduler=sched, ema=ema)])
    weights.clear()
    run_training(trainer, 0, 3)
    assert len(weights) == 2
    average = ema.averaged.module.lin.weight
    assert torch.equal(weights[1], average) and torch.equal(trainer.model.lin.weight, average)
    assert not torch.equal(weights[0], weights[1])


def test_overrunning_run_ends_within_budget_on_compressed_schedule(tmp_path):
    clock = FakeClock()
    # 400 s of steps, a 180 s budget
    trainer, budget, sched, _ = build(tmp_path, clock, lambda i: 1.0, minutes=3.0, max_iter=400)
    run_training(trainer, 0, 400)
    # First decision after the 50 warm-up steps and half a window (25) more, at the check of
    # step 80: 80 s spent, 320 steps would take 320 s; room for floor(100 / 1.05) = 95 more,
    # so 175. As the pace holds, later checks give back what the margin no longer needs while
    # the LR stays as it is: 176 at step 100 (100 + floor(80 / 1.05)), ..., 179 at step 170.
    assert trainer.iter == trainer.max_iter == 179
    assert clock.t == pytest.approx(179.0) and clock.t <= 180.0
    assert sched._max_iter == 179
    # Both LR drops came, at 60% and 90% of the shortened run.
    assert opt_lr(trainer) == pytest.approx(BASE_LR * 0.01)
    assert os.path.isfile(tmp_path / "model_final.pth")
    state = torch.load(tmp_path / "model_final.pth", weights_only=False)["trainer"]["hooks"]
    assert state["TrainingTimeBudget"] == {"elapsed_seconds": pytest.approx(179.0), "max_iter": 179}


def opt_lr(trainer):
    return trainer.optimizer.param_groups[0]["lr"]


def test_fast_run_is_not_touched(tmp_path):
    clock = FakeClock()
    trainer, _, sched, _ = build(tmp_path, clock, lambda i: 0.25, minutes=3.0, max_iter=400)
    run_training(trainer, 0, 400)  # 100 s of steps
    assert trainer.iter == trainer.max_iter == 400 and sched._max_iter == 400
    assert clock.t == pytest.approx(100.0)


def test_slowdown_mid_run_is_caught(tmp_path):
    clock = FakeClock()
    # 0.3 s a step, then 0.6 s from step 200 on: 60 + 200 * 0.6 = 180 s without the budget.
    trainer, _, _, _ = build(tmp_path, clock, lambda i: 0.3 if i < 200 else 0.6,
                             minutes=2.5, max_iter=400)
    run_training(trainer, 0, 400)
    assert 200 < trainer.iter < 400
    # Within the 150 s, and not much earlier than it needed to stop.
    assert 0.95 * 150.0 <= clock.t <= 150.0


def test_a_cut_for_slow_first_steps_is_given_back_while_the_lr_is_flat(tmp_path, caplog):
    clock = FakeClock()
    # 0.45 s a step for the first 100 steps, then 0.3 s: 135 s in all, within 150.
    trainer, _, sched, _ = build(tmp_path, clock, lambda i: 0.45 if i < 100 else 0.3,
                                 minutes=2.5, max_iter=400)
    with caplog.at_level("INFO", logger="vis_d2.engine.cpu_short_run"):
        run_training(trainer, 0, 400)
    # At step 80 the slow pace projects 36 + 320 * 0.45 = 180 s: cut to 80 + floor(114 / 0.4725).
    assert "at iteration 80" in caplog.text and "ends at iteration 321 instead of 400" in caplog.text
    # As the window fills with 0.3 s steps the cut is given back, before the first LR drop
    # (60% of 321 = step 193): 341, 361, 383, then the whole schedule.
    assert "ends at iteration 400 instead of 383: the pace has picked up" in caplog.text
    assert trainer.iter == sched._max_iter == 400 and clock.t == pytest.approx(135.0)


def test_one_slow_step_is_not_a_pace(tmp_path):
    clock = FakeClock()
    # A 30 s step (an evaluation, say) in a run of 0.1 s steps: 69.9 s in all, within 180.
    trainer, _, _, _ = build(tmp_path, clock, lambda i: 30.0 if i == 100 else 0.1,
                             minutes=3.0, max_iter=400)
    run_training(trainer, 0, 400)
    assert trainer.iter == 400


def test_resumed_run_keeps_the_shortened_schedule_and_the_time_spent(tmp_path):
    clock = FakeClock()
    trainer, _, _, _ = build(tmp_path, clock, lambda i: 1.0, minutes=3.0, max_iter=400,
                             checkpoint_period=100)
    run_training(trainer, 0, 400)
    assert trainer.iter == 179
    # Start over from the checkpoint after step 100 (iteration 99), as after a crash: the
    # decision of that step (176) was saved with it.
    clock2 = FakeClock()
    trainer2, budget2, sched2, ckpt2 = build(tmp_path, clock2, lambda i: 1.0, minutes=3.0,
                                             max_iter=400)
    ckpt2.load(str(tmp_path / "model_0000099.pth"))  # the model and the trainer state
    assert trainer2.iter == 99
    run_training(trainer2, trainer2.iter + 1, 400)
    # The resumed run warms up again (75 steps) and ends before its first decision.
    assert trainer2.iter == trainer2.max_iter == 176 and sched2._max_iter == 176
    # 100 s before the checkpoint and 76 steps after it.
    assert budget2.elapsed_seconds() == pytest.approx(176.0)
    assert opt_lr(trainer2) == pytest.approx(BASE_LR * 0.01)


def test_bad_budget_is_refused():
    with pytest.raises(ValueError, match="MAX_TRAIN_MINUTES"):
        TrainingTimeBudget(0.0)


def test_vis_trainer_ends_within_solver_max_train_minutes(data_root, tmp_path, restore_catalogs):
    """SOLVER.MAX_TRAIN_MINUTES puts the budget into VISTrainer's hooks; the run ends with the
    averaged weights in model_final, its scheduler compressed."""
    from detectron2.engine import HookBase

    from vis_d2.config import get_vis_cfg
    from vis_d2.data.builtin import register_all_ytvis
    from vis_d2.engine import VISTrainer

    from helpers import TINY_OPTS

    register_all_ytvis(str(data_root))
    cfg = get_vis_cfg(os.path.join(REPO, "configs/synthvis/R18_demo.yaml"), TINY_OPTS + [
        "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "(30,)", "SOLVER.MAX_ITER", "40",
        "SOLVER.MAX_TRAIN_MINUTES", "0.5", "SOLVER.EMA.ENABLED", "True",
        "SOLVER.CHECKPOINT_PERIOD", "1000", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path)])
    clock = FakeClock()

    class TwoSecondSteps(HookBase):  # every step takes 2 s on the fake clock
        def after_step(self):
            clock.t += 2.0

    class Trainer(VISTrainer):
        def build_hooks(self):
            return [TwoSecondSteps()] + super().build_hooks()  # before the budget sees the step

    trainer = Trainer(cfg)
    registered = detectron2_private(trainer, "_hooks")
    budget = next(h for h in registered if isinstance(h, TrainingTimeBudget))
    assert isinstance(registered[1], hooks.IterationTimer) and registered[2] is budget
    budget._clock, budget.warmup_steps, budget.check_period = clock, 0, 2
    budget._durations = collections.deque(maxlen=4)  # decisions from the 2nd step on
    trainer.train()
    # After 2 steps: 4 s spent, 2.1 s a step projected, floor(26 / 2.1) = 12 more steps.
    assert trainer.iter == trainer.max_iter == 14 and trainer.scheduler._max_iter == 14
    assert clock.t == pytest.approx(28.0)
    final = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert final["iteration"] == 13 and int(final["model_ema"]["n_averaged"]) == 14
    assert final["trainer"]["hooks"]["TrainingTimeBudget"]["max_iter"] == 14
