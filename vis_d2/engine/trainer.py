"""``VISTrainer``: detectron2's DefaultTrainer for video instance segmentation.

What differs from DefaultTrainer:
- the train loader yields frame pairs (``vis_d2.data.build_vis_train_loader``);
- the test loader yields whole videos and ``test`` runs the tracker over them;
- the evaluator is the YouTube-VIS metric;
- DDP works on CPU too (gloo, no ``device_ids``), so multi-process training can be tested on
  machines without GPUs; AMP is switched off, with a warning, where there is no CUDA;
- optionally (``SOLVER.CPU_BF16``) CPU training runs its forward pass in bfloat16 autocast,
  where the CPU has bfloat16 instructions (:mod:`vis_d2.engine.cpu_short_run`);
- checkpoints are written atomically and the best model by ``TEST.VIS.BEST_METRIC`` is kept;
  ``.pkl`` weights are opened only with ``MODEL.VIS.CHECKPOINT.TRUST_PKL``; ``resume_or_load``
  removes the temporary files of an interrupted save and falls back from an unreadable last
  checkpoint to the newest readable one (:mod:`vis_d2.engine.checkpoint`);
- optionally (``SOLVER.EMA``) the weights are averaged over training (:mod:`vis_d2.engine.ema`);
- optionally (``SOLVER.MAX_TRAIN_MINUTES``) training ends within a wall-clock budget, on a
  shortened schedule (:mod:`vis_d2.engine.cpu_short_run`).
"""
import logging
import os
import weakref
from collections import OrderedDict

import torch
from torch.nn.parallel import DistributedDataParallel

from detectron2.engine import DefaultTrainer, hooks
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import print_csv_format, verify_results
from detectron2.solver.build import get_default_optimizer_params
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from fvcore.nn.precise_bn import get_bn_modules

from ..data.build import build_vis_test_loader, build_vis_train_loader
from ..evaluation import YTVISEvaluator
from ..tracking import VideoTracker
from .checkpoint import AtomicCheckpointer
from .cpu_short_run import run_training, select_step_trainer, set_detectron2_private, step_precision
from .ema import ModelEMA
from .grad_clip import maybe_add_per_parameter_clipping
from .hooks import build_vis_hooks
from .frame_fusion import FusedFrameModel
from .video_inference import inference_on_videos

__all__ = ["VISTrainer", "create_ddp_model"]

logger = logging.getLogger(__name__)


def create_ddp_model(model: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """Wrap in DDP when there are several processes; CPU models get no ``device_ids``
    (detectron2's version always passes the local rank, which only works on GPUs)."""
    if comm.get_world_size() == 1:
        return model
    if next(model.parameters()).device.type == "cuda":
        kwargs.setdefault("device_ids", [comm.get_local_rank()])
    return DistributedDataParallel(model, **kwargs)


class VISTrainer(DefaultTrainer):
    """Train VideoRCNN on frame pairs; evaluate by tracking whole videos."""

    def __init__(self, cfg):
        # DefaultTrainer.__init__, piece by piece in its order, with the four differences
        # marked below: it cannot be called, as it wraps CPU models in a DDP with GPU device
        # ids and its hooks capture the checkpointer it builds before it could be replaced.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        # (1) The step class covers CPU bfloat16, and AMP goes off where there is no CUDA.
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
        # (2) The weight average, taken over the unwrapped model before DDP wraps it.
        self.ema = ModelEMA(model, cfg.SOLVER.EMA.DECAY) if cfg.SOLVER.EMA.ENABLED else None
        # (3) DDP without device ids for CPU models.
        model = create_ddp_model(model, broadcast_buffers=False)
        set_detectron2_private(self, "_trainer", trainer_type(model, data_loader, optimizer))
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        # (4) Atomic saves and safe loads, with the weight average as a checkpointable.
        extra = {"model_ema": self.ema.averaged} if self.ema is not None else {}
        self.checkpointer = AtomicCheckpointer(
            model, cfg.OUTPUT_DIR, trust_pkl=cfg.MODEL.VIS.CHECKPOINT.TRUST_PKL,
            trainer=weakref.proxy(self), **extra
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.last_eval_results = None
        self.register_hooks(self.build_hooks())

    @property
    def precision(self) -> str:
        """The precision the steps train in (:func:`~vis_d2.engine.cpu_short_run.step_precision`),
        which the demo reports: a time budget trains fewer steps in float32 than in bfloat16."""
        return step_precision(type(self._trainer))

    def build_hooks(self):
        """DefaultTrainer's hooks and vis_d2's (:func:`~vis_d2.engine.hooks.build_vis_hooks`)."""
        cfg = self.cfg
        precise_bn = None
        if cfg.TEST.PRECISE_BN.ENABLED and get_bn_modules(self.model):
            loader_cfg = cfg.clone()
            loader_cfg.defrost()
            loader_cfg.DATALOADER.NUM_WORKERS = 0  # as DefaultTrainer: PreciseBN's own loader
            precise_bn = hooks.PreciseBN(cfg.TEST.EVAL_PERIOD, self.model,
                                         self.build_train_loader(loader_cfg),
                                         cfg.TEST.PRECISE_BN.NUM_ITER)

        def test_and_save_results():
            self.last_eval_results = self.test(self.cfg, self.model)
            return self.last_eval_results

        return build_vis_hooks(
            self,
            checkpointer=self.checkpointer,
            eval_function=test_and_save_results,
            eval_period=cfg.TEST.EVAL_PERIOD,
            checkpoint_period=cfg.SOLVER.CHECKPOINT_PERIOD,
            build_writers=self.build_writers,
            max_train_minutes=cfg.SOLVER.MAX_TRAIN_MINUTES,
            ema=self.ema,
            best_metric=cfg.TEST.VIS.BEST_METRIC,
            precise_bn=precise_bn,
        )

    def resume_or_load(self, resume=True):
        """DefaultTrainer's, after removing the temporary files a kill during a checkpoint save
        left in OUTPUT_DIR (logged by name)."""
        self.checkpointer.remove_stale_temp_files()
        super().resume_or_load(resume=resume)

    def train(self):
        """DefaultTrainer.train on :func:`~vis_d2.engine.cpu_short_run.run_training`'s loop,
        which ends at ``self.max_iter`` as the time budget may lower it during the run.
        Returns the results of the last evaluation (None where none ran)."""
        run_training(self, self.start_iter, self.max_iter)
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            assert self.last_eval_results is not None, \
                "No evaluation results obtained during training!"
            verify_results(self.cfg, self.last_eval_results)
        return self.last_eval_results

    @classmethod
    def build_optimizer(cls, cfg, model):
        """detectron2's SGD for ``SOLVER.OPTIMIZER`` "SGD"; AdamW (same parameter groups,
        same gradient clipping, :mod:`vis_d2.engine.grad_clip`) for "ADAMW"."""
        name = cfg.SOLVER.OPTIMIZER.upper()
        if name == "SGD":
            return super().build_optimizer(cfg, model)
        if name != "ADAMW":
            raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'ADAMW', got {cfg.SOLVER.OPTIMIZER!r}")
        # Parameters a backbone excludes from weight decay (Swin's position bias tables), as
        # its own training recipe does.
        no_decay = {n for m in model.modules() if hasattr(m, "no_weight_decay_names")
                    for n in m.no_weight_decay_names()}
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
            overrides={n: {"weight_decay": 0.0} for n in no_decay} or None,
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
            # FusedFrameModel: TEST.VIS.SCALES (one scale: the model alone, as before)
            res = inference_on_videos(FusedFrameModel.from_config(cfg, model), loader, evaluator,
                                      VideoTracker.from_config(cfg))
            results[name] = res
            if comm.is_main_process() and res:
                logger.info(f"Evaluation results for {name} in csv format:")
                print_csv_format(res)
        if len(results) == 1:
            results = list(results.values())[0]
        return results
