#!/usr/bin/env python
"""Train / evaluate vis_d2 models, in detectron2's usual form.

    python train_net.py --config-file configs/synthvis/R18_demo.yaml
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/demo/model_final.pth
    python train_net.py --config-file ... --resume
    python train_net.py --config-file ... --num-gpus 8                  # DDP through detectron2's launch
    python train_net.py --config-file ... --num-gpus 2 MODEL.DEVICE cpu  # 2 CPU processes (gloo)
"""
import contextlib
import logging
import os

# vis_d2's first: they register its datasets and model components, and import detectron2
# without the FutureWarnings of its import-time torch.jit.script calls (vis_d2/quiet_import.py).
import vis_d2.data  # noqa: F401
import vis_d2.modeling  # noqa: F401
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from vis_d2.config import get_vis_cfg
from vis_d2.data.build import verify_datasets
from vis_d2.engine import AtomicCheckpointer, VISTrainer, check_weights_path
from vis_d2.engine.output_dir import (
    check_new_training, claim_output_dir, keep_earlier_config, unused_results_dir,
)


def setup(args):
    cfg = get_vis_cfg(args.config_file, args.opts)
    cfg.freeze()
    main_process = comm.is_main_process()
    if main_process:  # one run per folder; a new training run does not overwrite an earlier one
        claim_output_dir(cfg.OUTPUT_DIR)
        if not args.eval_only:
            check_new_training(cfg.OUTPUT_DIR, args.resume)
    with keep_earlier_config(cfg.OUTPUT_DIR) if main_process else contextlib.nullcontext():
        default_setup(cfg, args)
    # detectron2 sets up its own loggers only; vis_d2's (inference progress, evaluation) too.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="vis_d2")
    verify_datasets(cfg)
    if args.eval_only and not args.resume and not cfg.MODEL.WEIGHTS:
        # Without weights detectron2 would evaluate a randomly initialised model.
        raise ValueError("--eval-only needs the weights to evaluate: give MODEL.WEIGHTS "
                         "<checkpoint.pth> (or --resume to evaluate OUTPUT_DIR's last checkpoint)")
    if not args.resume:
        check_weights_path(cfg.MODEL.WEIGHTS)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = VISTrainer.build_model(cfg)
        # strict: weights that do not fit the model would be scored as a partly random model
        AtomicCheckpointer(
            model, save_dir=cfg.OUTPUT_DIR, trust_pkl=cfg.MODEL.VIS.CHECKPOINT.TRUST_PKL,
            strict=not cfg.MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL,
        ).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        # An earlier evaluation's results in OUTPUT_DIR are kept: this one goes beside them.
        folder = unused_results_dir(os.path.join(cfg.OUTPUT_DIR, "inference"))
        evaluators = [VISTrainer.build_evaluator(cfg, name, os.path.join(folder, name))
                      for name in cfg.DATASETS.TEST]
        res = VISTrainer.test(cfg, model, evaluators)
        if comm.is_main_process():
            logging.getLogger("vis_d2").info(f"Results: {res}")
        return res
    trainer = VISTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


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
