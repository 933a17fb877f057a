#!/usr/bin/env python
"""Train / evaluate a vis_d2 LazyConfig (the ablation rows of ``configs/``), detectron2 style.

Run from the repository root (datasets resolve against ./datasets, outputs go to ./output):

    python projects/VIS_Ablation/train_net.py \\
        --config-file projects/VIS_Ablation/configs/A1_baseline.py
    python projects/VIS_Ablation/train_net.py --config-file ... train.max_iter=100 train.device=cpu
    python projects/VIS_Ablation/train_net.py --config-file ... --resume
    python projects/VIS_Ablation/train_net.py --config-file .../A5_bitrack.py --eval-only \\
        train.init_checkpoint=output/vis_ablation/A4_msd/model_final.pth
    python projects/VIS_Ablation/train_net.py --config-file ... --num-gpus 2   # DDP, gloo on CPU

The config provides ``model``, ``dataloader.{train,test,evaluator}``, ``optimizer``,
``lr_multiplier``, ``train``, ``tracker`` and, optionally, ``test`` (``scales``, multi-scale
testing as ``TEST.VIS.SCALES``; see ``configs/A1_baseline.py``). Training runs detectron2's
SimpleTrainer (AMPTrainer with ``train.amp.enabled`` on CUDA, bfloat16 autocast with
``train.cpu_bf16`` on a CPU that has it) with atomic checkpoints, within ``train.max_train_minutes``
of wall time where that is > 0 (``vis_d2.engine.cpu_short_run``), with the hooks of the YAML
trainer (``vis_d2.engine.hooks.build_vis_hooks``) and its gradient clipping; evaluation
tracks every test video (``vis_d2.engine.video_inference.inference_on_videos`` with the
``tracker`` settings) and scores it with ``YTVISEvaluator``, which writes ``results.json`` under
``<train.output_dir>/inference/<test set>/``.
"""
import contextlib
import logging
import os
from typing import Mapping, Optional

from torch import nn

# vis_d2's first: they register its datasets and model components, and import detectron2
# without the FutureWarnings of its import-time torch.jit.script calls (vis_d2/quiet_import.py).
import vis_d2.data  # noqa: F401
import vis_d2.modeling  # noqa: F401
import detectron2.data.transforms as T
from detectron2.config import CfgNode, LazyConfig, instantiate
from detectron2.engine import default_argument_parser, default_setup, default_writers, launch
from detectron2.evaluation import print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from vis_d2.env import resolve_device
from vis_d2.data.build import check_num_classes
from vis_d2.engine.checkpoint import AtomicCheckpointer, check_weights_path
from vis_d2.engine.cpu_short_run import run_training, select_step_trainer
from vis_d2.engine.ema import ModelEMA
from vis_d2.engine.frame_fusion import FusedFrameModel, FusionMember, check_scales
from vis_d2.engine.grad_clip import maybe_add_per_parameter_clipping
from vis_d2.engine.hooks import build_vis_hooks
from vis_d2.engine.output_dir import (
    check_new_training, claim_output_dir, keep_earlier_config, unused_results_dir,
)
from vis_d2.engine.trainer import create_ddp_model
from vis_d2.engine.video_inference import inference_on_videos

logger = logging.getLogger("vis_d2.lazy_train_net")

REQUIRED_KEYS = ("model", "dataloader", "optimizer", "lr_multiplier", "train", "tracker")


def check_config(cfg, config_file: str) -> None:
    """Fail early, naming the file, when a top-level key the trainer needs is missing."""
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise KeyError(f"{config_file}: the LazyConfig has no {missing} (needs {REQUIRED_KEYS})")
    for k in ("test", "evaluator"):
        if k not in cfg.dataloader:
            raise KeyError(f"{config_file}: the LazyConfig has no dataloader.{k}")


def check_datasets(cfg) -> None:
    """The datasets of ``dataloader.train.dataset.names`` and ``dataloader.test.dataset`` are
    registered and have ``model.roi_heads.num_classes`` categories (``check_num_classes``)."""
    train = cfg.dataloader.train.dataset
    names = train.get("names", ()) if hasattr(train, "get") else ()
    test = cfg.dataloader.test.dataset
    check_num_classes(cfg.model.roi_heads.num_classes, [names] if isinstance(names, str) else names,
                      [test] if isinstance(test, str) else [], key="model.roi_heads.num_classes")


def add_gradient_clipping(optimizer, clip: Optional[Mapping]):
    """The optimizer, clipping gradients before each step when ``clip`` (``train.clip_gradients``:
    enabled, clip_type "norm" | "value", clip_value, norm_type) says so: the YAML trainer's
    ``SOLVER.CLIP_GRADIENTS`` clipping (``vis_d2.engine.grad_clip``), so both clip alike."""
    if not clip or not clip.get("enabled", False):
        return optimizer
    unknown = sorted(set(clip) - {"enabled", "clip_type", "clip_value", "norm_type"})
    if unknown:
        raise KeyError(f"train.clip_gradients: unknown key(s) {unknown}")
    node = CfgNode({"SOLVER": {"CLIP_GRADIENTS": {
        "ENABLED": True,
        "CLIP_TYPE": str(clip.get("clip_type", "value")),
        "CLIP_VALUE": float(clip.get("clip_value", 1.0)),
        "NORM_TYPE": float(clip.get("norm_type", 2.0)),
    }}})
    return maybe_add_per_parameter_clipping(node, optimizer)


def build_ema(model, ema: Optional[Mapping]) -> Optional[ModelEMA]:
    """The weight average of ``train.ema`` (enabled, decay), as ``SOLVER.EMA`` of the YAML
    trainer, or None when it is off."""
    if not ema or not ema.get("enabled", False):
        return None
    unknown = sorted(set(ema) - {"enabled", "decay"})
    if unknown:
        raise KeyError(f"train.ema: unknown key(s) {unknown}")
    return ModelEMA(model, float(ema.get("decay", 0.998)))


def frame_model(cfg, model):
    """What runs on each test frame: ``model`` itself at one scale (the test mapper resizes), or,
    with several ``test.scales``, a FusedFrameModel of ``model`` at each factor of the test
    mapper's size (a ``ResizeShortestEdge`` of one short edge)."""
    test = cfg.get("test") or {}
    scales = check_scales(test.get("scales", (1.0,)), key="test.scales")
    if scales == (1.0,):
        return model
    mapper = cfg.dataloader.test.mapper
    aug = mapper.get("augmentation")
    short = aug.get("short_edge_length") if aug is not None else None
    if isinstance(short, (list, tuple)) and len(short) == 1:
        short = short[0]
    if aug is None or aug.get("_target_") is not T.ResizeShortestEdge \
            or not isinstance(short, int):
        raise ValueError("test.scales multiplies the test size, so dataloader.test.mapper."
                         "augmentation must be a ResizeShortestEdge with one short_edge_length; "
                         f"got {aug!r}")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    member = FusionMember(name="model", model=model, input_format=mapper.image_format,
                          min_size=short, max_size=int(aug.max_size))
    given = {arg: test[key] for key, arg in (("fusion_iou_thresh", "iou_thresh"),
                                             ("detections_per_image", "max_detections"))
             if key in test}  # else FusedFrameModel's defaults
    return FusedFrameModel([member], scales, **given)


def do_test(cfg, model):
    """Track and score the videos of ``dataloader.test`` at ``test.scales``; returns
    ``{"segm": {...}}`` (or {})."""
    loader = instantiate(cfg.dataloader.test)
    evaluator = instantiate(cfg.dataloader.evaluator)
    tracker = instantiate(cfg.tracker)
    logger.info(f"Video inference with {tracker}")
    results = inference_on_videos(frame_model(cfg, model), loader, evaluator, tracker)
    if comm.is_main_process() and results:
        logger.info(f"Evaluation results for {cfg.dataloader.test.dataset} in csv format:")
        print_csv_format(results)
    return results


def do_train(args, cfg, device: str):
    """A SimpleTrainer (or the step class of ``train.amp`` / ``train.cpu_bf16``) with the hooks
    of the YAML trainer: LR schedule, time budget, weight average (``train.ema``), atomic
    periodic checkpoints, evaluation every ``train.eval_period`` iterations and after training
    (0: after training only), the best checkpoint by ``train.best_metric``, and detectron2's
    writers."""
    model = instantiate(cfg.model)
    model.to(device)
    logger.info("Model:\n{}".format(model))

    cfg.optimizer.params.model = model
    optimizer = add_gradient_clipping(instantiate(cfg.optimizer), cfg.train.get("clip_gradients"))
    train_loader = instantiate(cfg.dataloader.train)

    ema = build_ema(model, cfg.train.get("ema"))
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer_type, _ = select_step_trainer(device, bool(cfg.train.amp.enabled),
                                          bool(cfg.train.get("cpu_bf16", False)),
                                          keys=("train.amp.enabled", "train.cpu_bf16"))
    trainer = trainer_type(model, train_loader, optimizer)
    extra = {"model_ema": ema.averaged} if ema is not None else {}
    checkpointer = AtomicCheckpointer(model, cfg.train.output_dir, trainer=trainer,
                                      trust_pkl=cfg.train.get("trust_pkl", False), **extra)
    trainer.register_hooks(build_vis_hooks(
        trainer,
        checkpointer=checkpointer,
        eval_function=lambda: do_test(cfg, model),
        eval_period=int(cfg.train.eval_period),
        checkpoint_period=cfg.train.checkpointer.period,
        max_to_keep=cfg.train.checkpointer.get("max_to_keep"),
        build_writers=lambda: default_writers(cfg.train.output_dir, cfg.train.max_iter),
        log_period=cfg.train.log_period,
        lr_scheduler=instantiate(cfg.lr_multiplier),
        max_train_minutes=cfg.train.get("max_train_minutes", 0),
        ema=ema,
        best_metric=cfg.train.get("best_metric", ""),
    ))

    checkpointer.remove_stale_temp_files()  # of a save that a kill interrupted
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    run_training(trainer, start_iter, cfg.train.max_iter)  # ends early if the time budget says so


def main(args):
    if not os.path.isfile(args.config_file):
        raise FileNotFoundError(f"config file not found: {args.config_file}")
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    check_config(cfg, args.config_file)
    if args.eval_only and not args.resume and not cfg.train.init_checkpoint:
        # Without weights the model would be evaluated randomly initialised.
        raise ValueError("--eval-only needs the weights to evaluate: give "
                         "train.init_checkpoint=<checkpoint.pth> (or --resume to evaluate "
                         "train.output_dir's last checkpoint)")
    main_process = comm.is_main_process()
    if main_process:  # one run per folder; a new training run does not overwrite an earlier one
        claim_output_dir(cfg.train.output_dir)
        if not args.eval_only:
            check_new_training(cfg.train.output_dir, args.resume)
    with keep_earlier_config(cfg.train.output_dir) if main_process else contextlib.nullcontext():
        default_setup(cfg, args)
    # vis_d2's own loggers (video inference progress, the evaluator's tables) into log.txt too
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="vis_d2")
    check_datasets(cfg)
    device = resolve_device(str(cfg.train.device), bool(cfg.train.get("cpu_fallback", False)),
                            keys=("train.device", "train.cpu_fallback"))
    if not args.resume:
        check_weights_path(cfg.train.init_checkpoint)

    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(device)
        model = create_ddp_model(model)
        # strict: weights that do not fit the model would be scored as a partly random model
        AtomicCheckpointer(
            model, save_dir=cfg.train.output_dir, trust_pkl=cfg.train.get("trust_pkl", False),
            strict=not cfg.train.get("allow_partial", False),
        ).resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
        if cfg.dataloader.evaluator.get("output_dir"):
            # An earlier evaluation's results are kept: this one goes beside them.
            cfg.dataloader.evaluator.output_dir = unused_results_dir(
                cfg.dataloader.evaluator.output_dir)
        return do_test(cfg, model)
    do_train(args, cfg, device)


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
