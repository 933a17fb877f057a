"""``VISTrainer``: detectron2's DefaultTrainer for video instance segmentation.

What differs from DefaultTrainer:
- the train loader yields frame pairs (``vis_d2.data.build_vis_train_loader``);
- the test loader yields whole videos and ``test`` runs the tracker over them;
- the evaluator is the YouTube-VIS metric;
- DDP works on CPU too (gloo, no ``device_ids``), so multi-process training can be tested on
  machines without GPUs; AMP is switched off, with a warning, where there is no CUDA;
- optionally (``SOLVER.CPU_BF16``) CPU training runs its forward pass in bfloat16 autocast,
  where the CPU has bfloat16 instructions (:class:`CPUBFloat16Trainer`);
- checkpoints are written atomically and the best model by ``TEST.VIS.BEST_METRIC`` is kept;
- optionally (``SOLVER.EMA``) the weights are averaged over training (:mod:`vis_d2.engine.ema`);
- optionally (``SOLVER.MAX_TRAIN_MINUTES``) training ends within a wall-clock budget, on a
  shortened schedule (:mod:`vis_d2.engine.time_budget`).
"""
import logging
import os
import weakref
from collections import OrderedDict

import torch
from torch.nn.parallel import DistributedDataParallel

from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, hooks
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import print_csv_format, verify_results
from detectron2.solver.build import get_default_optimizer_params
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..data.build import build_vis_test_loader, build_vis_train_loader
from ..evaluation import YTVISEvaluator
from ..tracking import VideoTracker
from .checkpoint import AtomicCheckpointer
from .ema import EMAHook, ModelEMA, eval_on_average
from .grad_clip import maybe_add_per_parameter_clipping
from .time_budget import TrainingTimeBudget, run_training
from .video_inference import inference_on_videos

__all__ = ["VISTrainer", "CPUBFloat16Trainer", "cpu_has_bf16", "step_precision", "create_ddp_model",
           "select_step_trainer"]

logger = logging.getLogger(__name__)


def create_ddp_model(model: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """Wrap in DDP when there are several processes; CPU models get no ``device_ids``
    (detectron2's version always passes the local rank, which only works on GPUs)."""
    if comm.get_world_size() == 1:
        return model
    if next(model.parameters()).device.type == "cuda":
        kwargs.setdefault("device_ids", [comm.get_local_rank()])
    return DistributedDataParallel(model, **kwargs)


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
    demo's training step takes ~0.8x the time: docs/BENCHMARKS.md); the weights, their
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


class VISTrainer(DefaultTrainer):
    """Train VideoRCNN on frame pairs; evaluate by tracking whole videos."""

    def __init__(self, cfg):
        # DefaultTrainer.__init__ is replaced (not extended) because it hard-wires GPU-only DDP
        # and a non-atomic checkpointer; the order of construction is the same as detectron2's.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        trainer_type, amp = select_step_trainer(
            cfg.MODEL.DEVICE, cfg.SOLVER.AMP.ENABLED, cfg.SOLVER.CPU_BF16)
        if amp != cfg.SOLVER.AMP.ENABLED:  # switched off: build_optimizer must see it off too
            cfg = cfg.clone()
            cfg.defrost()
            cfg.SOLVER.AMP.ENABLED = False
            cfg.freeze()

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        # The average is taken over the unwrapped model, before DDP wraps it.
        self.ema = ModelEMA(model, cfg.SOLVER.EMA.DECAY) if cfg.SOLVER.EMA.ENABLED else None
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = trainer_type(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        extra = {"model_ema": self.ema.averaged} if self.ema is not None else {}
        self.checkpointer = AtomicCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self), **extra
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @property
    def precision(self) -> str:
        """The precision the steps train in (:func:`step_precision`). The demo reports it: a
        CPU without bfloat16 instructions trains in float32 at ~1.3x the step time, so a time
        budget trains fewer steps (docs/BENCHMARKS.md, round 11)."""
        return step_precision(type(self._trainer))

    def build_hooks(self):
        ret = super().build_hooks()
        if self.cfg.SOLVER.MAX_TRAIN_MINUTES > 0:
            # Right after the IterationTimer: the LR scheduler, EMA, checkpointer and evaluation
            # hooks after it must see a lowered max_iter in the same step.
            ret.insert(1, TrainingTimeBudget(self.cfg.SOLVER.MAX_TRAIN_MINUTES))
        if self.ema is not None:
            # Before the checkpointer, so that model_final holds the averaged weights; periodic
            # evaluations run on the averaged weights too.
            ckpt_idx = next((i for i, h in enumerate(ret)
                             if isinstance(h, hooks.PeriodicCheckpointer)), len(ret))
            ret.insert(ckpt_idx, EMAHook(self.ema))
            eval_hook = next(h for h in ret if isinstance(h, hooks.EvalHook))
            eval_hook._func = eval_on_average(self.ema, self, eval_hook._func)
        metric = self.cfg.TEST.VIS.BEST_METRIC
        if comm.is_main_process() and self.cfg.TEST.EVAL_PERIOD > 0 and metric:
            # After EvalHook (which puts the metrics into the event storage), before the writer.
            eval_idx = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
            ret.insert(eval_idx + 1, hooks.BestCheckpointer(
                self.cfg.TEST.EVAL_PERIOD, self.checkpointer, metric, mode="max"))
        return ret

    def train(self):
        """DefaultTrainer.train on :func:`run_training`'s loop, which ends at ``self.max_iter`` as
        the time budget may lower it during the run."""
        run_training(self, self.start_iter, self.max_iter)
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            assert hasattr(self, "_last_eval_results"), "No evaluation results obtained during training!"
            verify_results(self.cfg, self._last_eval_results)
            return self._last_eval_results

    @classmethod
    def build_optimizer(cls, cfg, model):
        """detectron2's SGD for ``SOLVER.OPTIMIZER`` "SGD"; AdamW (same parameter groups,
        same gradient clipping, :mod:`vis_d2.engine.grad_clip`) for "ADAMW"."""
        name = cfg.SOLVER.OPTIMIZER.upper()
        if name == "SGD":
            return super().build_optimizer(cfg, model)
        if name != "ADAMW":
            raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'ADAMW', got {cfg.SOLVER.OPTIMIZER!r}")
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        # detectron2's clipping, with the per-parameter norms computed in one pass (grad_clip.py).
        optimizer_type = maybe_add_per_parameter_clipping(cfg, torch.optim.AdamW)
        # The fused kernel updates all parameters in one pass: on the CPU demo the step takes
        # about a quarter of the time of the per-parameter loop. Not with AMP: GradScaler hands
        # a fused optimizer still-scaled gradients (it unscales inside the kernel), so the
        # clipping wrapper, which runs first, would clip the scaled values.
        fused = not cfg.SOLVER.AMP.ENABLED
        return optimizer_type(
            params, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.SOLVER.ADAMW_BETAS),
            weight_decay=cfg.SOLVER.WEIGHT_DECAY, fused=fused,
        )

    @classmethod
    def build_train_loader(cls, cfg):
        return build_vis_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_vis_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return YTVISEvaluator(dataset_name, output_dir=output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Track and evaluate every dataset in ``cfg.DATASETS.TEST``.

        Returns ``{dataset_name: {"segm": {...}}}`` (or the inner dict when there is one test
        set, as DefaultTrainer does, so EvalHook/BestCheckpointer see ``segm/AP``).
        """
        if isinstance(evaluators, (list, tuple)) and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(f"{len(evaluators)} evaluators for {len(cfg.DATASETS.TEST)} test sets")
        results = OrderedDict()
        for idx, name in enumerate(cfg.DATASETS.TEST):
            loader = cls.build_test_loader(cfg, name)
            evaluator = evaluators[idx] if evaluators is not None else cls.build_evaluator(cfg, name)
            res = inference_on_videos(model, loader, evaluator, VideoTracker.from_config(cfg))
            results[name] = res
            if comm.is_main_process() and res:
                logger.info(f"Evaluation results for {name} in csv format:")
                print_csv_format(res)
        if len(results) == 1:
            results = list(results.values())[0]
        return results
