"""Ablation row A1-demo, the demo recipe (``configs/synthvis/R18_A1_baseline.yaml``), as a
LazyConfig, and ``vis_rcnn_row``, which builds every row's keys from its YAML twin (``A1_paper.py``
builds the paper-faithful A1, on which A2..A5 build, with it).

detectron2's model-zoo Mask R-CNN FPN (``common/models/mask_rcnn_fpn.py``, ViTDet's start too)
made into vis_d2's VideoRCNN. The YAML rows (``configs/synthvis/R18_A*.yaml``) are the source of
truth: a row states the structure and reads the numbers from its YAML twin, where each becomes a
key that ``key=value`` overrides. ``tests/test_ablation.py`` checks that the rows build the same
model, tracker, schedule and data settings as their YAML twins. Keys: detectron2's ``model``,
``dataloader`` (train, test, evaluator), ``optimizer``, ``lr_multiplier``, ``train``,
``tracker``, the tracking of video inference, and ``test``, its scales (multi-scale testing).
"""
import dataclasses
import os

import torch
from fvcore.common.param_scheduler import MultiStepParamScheduler

import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params

from vis_d2.config import get_vis_cfg
from vis_d2.data import (CopyPaste, InstanceRecolor, PairDatasetMapper, PseudoPairDatasetMapper,
                         VideoPairDatasetMapper, VideoTestDatasetMapper, build_vis_test_loader,
                         build_vis_train_loader, get_vis_train_dataset_dicts)
from vis_d2.data.augmentation import RandomChannelPermutation
from vis_d2.data.pseudo_pair_mapper import RandomAffine
from vis_d2.evaluation import YTVISEvaluator
from vis_d2.modeling import MaskClassHead, TrackHead, VideoRCNN, VISROIHeads
from vis_d2.modeling.fpn import make_basic_block_stages
from vis_d2.tracking import VideoTracker


def yaml_config(name):
    """The yacs config of ``configs/synthvis/<name>``, with MODEL.DEVICE cpu (never read here:
    a LazyConfig's device is ``train.device``)."""
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    return get_vis_cfg(os.path.join(repo, "configs", "synthvis", name), ["MODEL.DEVICE", "cpu"])


def from_yaml(cls, cfg, *args, **given):
    """``L(cls)`` with the arguments ``cls.from_config(cfg, *args)`` reads (the fields of the
    dataclass it returns, for ``VideoTracker``), then ``given``."""
    found = cls.from_config(cfg, *args)
    found = dataclasses.asdict(found) if dataclasses.is_dataclass(found) else found
    return L(cls)(**{**found, **given})


def roi_shape(size):
    """A pooled RoI feature (FPN channels x size x size), seen from a head of model.roi_heads."""
    return ShapeSpec(channels="${....backbone.out_channels}", height=size, width=size)


def vis_rcnn_row(yaml_name, output_dir):
    """The seven config keys of a row whose every number comes from ``configs/synthvis/<yaml_name>``.

    Returns:
        (model, dataloader, tracker, optimizer, lr_multiplier, train), ``train.output_dir`` being
        ``output_dir``. What the YAML switches off is left out, as the yacs builders leave it out:
        the mask-shape classifier (``MODEL.VIS.MASK_CLASS.ENABLED``), the ``INPUT.VIS``
        augmentations at their identity values, copy-paste and recolouring.
    """
    cfg = yaml_config(yaml_name)
    M, IN, S, VIS = cfg.MODEL, cfg.INPUT, cfg.SOLVER, cfg.MODEL.VIS

    # ---- model -----------------------------------------------------------------------------
    model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
    model.update(_target_=VideoRCNN, pixel_mean=M.PIXEL_MEAN, pixel_std=M.PIXEL_STD,
                 input_format=IN.FORMAT, ref_backbone_grad=VIS.REF_BACKBONE_GRAD,
                 mask_nms_thresh=VIS.MASK_NMS_THRESH)
    # A basic-block ResNet at any width (make_basic_block_stages), then the paper's P2..P7 FPN.
    R = M.RESNETS
    model.backbone.bottom_up.stem.update(out_channels=R.STEM_OUT_CHANNELS, norm=R.NORM)
    model.backbone.bottom_up.stages = L(make_basic_block_stages)(
        depth=R.DEPTH, in_channels="${..stem.out_channels}", width=R.RES2_OUT_CHANNELS,
        norm=R.NORM)
    model.backbone.bottom_up.freeze_at = M.BACKBONE.FREEZE_AT
    model.backbone.update(out_channels=M.FPN.OUT_CHANNELS, norm=M.FPN.NORM)
    model.backbone.top_block = L(LastLevelP6P7)(
        in_channels="${..out_channels}", out_channels="${..out_channels}", in_feature="p5")
    RPN = M.RPN
    model.proposal_generator.update(
        in_features=RPN.IN_FEATURES,
        pre_nms_topk=(RPN.PRE_NMS_TOPK_TRAIN, RPN.PRE_NMS_TOPK_TEST),
        post_nms_topk=(RPN.POST_NMS_TOPK_TRAIN, RPN.POST_NMS_TOPK_TEST))
    model.proposal_generator.head.update(in_channels="${...backbone.out_channels}",
                                         conv_dims=RPN.CONV_DIMS)
    model.proposal_generator.anchor_generator.update(
        sizes=M.ANCHOR_GENERATOR.SIZES, aspect_ratios=M.ANCHOR_GENERATOR.ASPECT_RATIOS,
        strides=[4, 8, 16, 32, 64, 128])  # P2..P7

    BOX, MASK = M.ROI_BOX_HEAD, M.ROI_MASK_HEAD
    roi = model.roi_heads
    roi.box_head.update(input_shape=roi_shape(7), fc_dims=[BOX.FC_DIM] * BOX.NUM_FC)
    roi.box_predictor.update(
        input_shape=ShapeSpec(channels=BOX.FC_DIM), cls_agnostic_bbox_reg=BOX.CLS_AGNOSTIC_BBOX_REG,
        test_score_thresh=M.ROI_HEADS.SCORE_THRESH_TEST,
        test_nms_thresh=M.ROI_HEADS.NMS_THRESH_TEST,
        test_topk_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
        loss_weight={"loss_box_reg": BOX.BBOX_REG_LOSS_WEIGHT})
    roi.mask_head.update(
        input_shape=roi_shape(14), num_classes=1 if MASK.CLS_AGNOSTIC_MASK else "${..num_classes}",
        conv_dims=[MASK.CONV_DIM] * (MASK.NUM_CONV + 1), conv_norm=MASK.NORM)
    roi.update(
        _target_=VISROIHeads, num_classes=M.ROI_HEADS.NUM_CLASSES,
        batch_size_per_image=M.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
        # MaskTrack R-CNN's track head on the box pooler's RoI features
        track_head=from_yaml(TrackHead, cfg, roi_shape(7)),
        track_loss_weight=VIS.TRACK_HEAD.LOSS_WEIGHT,
        track_detach_iters=VIS.TRACK_HEAD.DETACH_ITERS)
    if VIS.MASK_CLASS.ENABLED:  # each detection is classified from its predicted mask too
        roi.update(
            mask_class_head=from_yaml(MaskClassHead, cfg, num_classes="${..num_classes}"),
            mask_class_loss_weight=VIS.MASK_CLASS.LOSS_WEIGHT,
            mask_class_score_weight=VIS.MASK_CLASS.SCORE_WEIGHT,
            mask_class_on_gt_masks=VIS.MASK_CLASS.TRAIN_ON_GT_MASKS)

    # ---- data ------------------------------------------------------------------------------
    # What vis_d2.data.augmentation.build_pair_augmentation builds from INPUT, in its order.
    V = IN.VIS
    train_augmentations = [
        L(T.ResizeShortestEdge)(short_edge_length=IN.MIN_SIZE_TRAIN, max_size=IN.MAX_SIZE_TRAIN,
                                sample_style=IN.MIN_SIZE_TRAIN_SAMPLING),
        L(T.RandomFlip)(horizontal=True),
    ]
    if V.VERTICAL_FLIP_PROB > 0:
        train_augmentations.append(
            L(T.RandomFlip)(prob=V.VERTICAL_FLIP_PROB, horizontal=False, vertical=True))
    if list(V.BRIGHTNESS) != [1.0, 1.0]:
        train_augmentations.append(
            L(T.RandomBrightness)(intensity_min=V.BRIGHTNESS[0], intensity_max=V.BRIGHTNESS[1]))
    if list(V.CONTRAST) != [1.0, 1.0]:
        train_augmentations.append(
            L(T.RandomContrast)(intensity_min=V.CONTRAST[0], intensity_max=V.CONTRAST[1]))
    if V.CHANNEL_PERMUTATION_PROB > 0:
        train_augmentations.append(L(RandomChannelPermutation)(prob=V.CHANNEL_PERMUTATION_PROB))
    pair_mapper_args = dict(  # what the video and the pseudo pair mapper share
        is_train=True, augmentations=train_augmentations, image_format=IN.FORMAT,
        use_instance_mask=M.MASK_ON, instance_mask_format=IN.MASK_FORMAT,
        # INPUT.VIS.PSEUDO_*: a pseudo pair's reference is the key image moved by a random affine.
        pseudo_augmentations=[
            L(RandomAffine)(max_shift=V.PSEUDO_SHIFT, max_rotate=V.PSEUDO_ROTATE,
                            scale_range=V.PSEUDO_SCALE),
            L(T.RandomFlip)(prob=V.PSEUDO_FLIP, horizontal=True, vertical=False)])

    dataloader = dict(
        train=L(build_vis_train_loader)(
            dataset=L(get_vis_train_dataset_dicts)(names=cfg.DATASETS.TRAIN),
            mapper=L(PairDatasetMapper)(
                video_mapper=L(VideoPairDatasetMapper)(
                    **pair_mapper_args, ref_delta=V.REF_DELTA,
                    frames_per_video=V.FRAMES_PER_VIDEO),
                image_mapper=L(PseudoPairDatasetMapper)(**pair_mapper_args),
                copy_paste=from_yaml(CopyPaste, cfg) if V.COPY_PASTE.ENABLED else None,
                recolor=from_yaml(InstanceRecolor, cfg) if V.INSTANCE_RECOLOR.ENABLED else None),
            total_batch_size=S.IMS_PER_BATCH,  # pairs per iteration
            aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            num_workers=cfg.DATALOADER.NUM_WORKERS),
        test=L(build_vis_test_loader)(
            dataset=cfg.DATASETS.TEST[0],
            mapper=L(VideoTestDatasetMapper)(
                augmentation=L(T.ResizeShortestEdge)(
                    short_edge_length=IN.MIN_SIZE_TEST, max_size=IN.MAX_SIZE_TEST,
                    sample_style="choice"),
                image_format=IN.FORMAT),
            num_workers=cfg.DATALOADER.NUM_WORKERS),
        evaluator=L(YTVISEvaluator)(
            dataset_name="${..test.dataset}",
            output_dir="${train.output_dir}/inference/${..test.dataset}"),
    )

    # ---- tracking (video inference): every field of MODEL.VIS.TRACKER ----------------------
    tracker = from_yaml(VideoTracker, cfg)
    # ---- multi-scale testing (TEST.VIS.SCALES; one scale: the test mapper's resize alone) ----
    test = dict(scales=tuple(cfg.TEST.VIS.SCALES),
                fusion_iou_thresh=cfg.TEST.VIS.FUSION_IOU_THRESH,
                detections_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)

    # ---- optimisation ----------------------------------------------------------------------
    optimizer = L(torch.optim.AdamW)(  # SOLVER.OPTIMIZER "ADAMW"
        # params.model is set to the model by the trainer before instantiating
        params=L(get_default_optimizer_params)(weight_decay_norm=S.WEIGHT_DECAY_NORM),
        lr=S.BASE_LR, betas=S.ADAMW_BETAS, weight_decay=S.WEIGHT_DECAY)
    # SOLVER.STEPS and warm-up as fractions of MAX_ITER: a shorter train.max_iter keeps the shape.
    lr_multiplier = L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[S.GAMMA ** k for k in range(len(S.STEPS) + 1)], milestones=S.STEPS,
            num_updates=S.MAX_ITER),
        warmup_length=S.WARMUP_ITERS / S.MAX_ITER, warmup_method=S.WARMUP_METHOD,
        warmup_factor=S.WARMUP_FACTOR)

    clip = S.CLIP_GRADIENTS
    train = dict(
        output_dir=output_dir, init_checkpoint=M.WEIGHTS, max_iter=S.MAX_ITER,
        amp=dict(enabled=S.AMP.ENABLED), cpu_bf16=S.CPU_BF16,
        max_train_minutes=S.MAX_TRAIN_MINUTES,  # > 0 ends training within that wall time
        ddp=dict(broadcast_buffers=False, find_unused_parameters=False), log_period=20,
        checkpointer=dict(period=S.CHECKPOINT_PERIOD, max_to_keep=100),
        # MODEL.VIS.CHECKPOINT: open .pkl weights; evaluate with weights that do not fit the model
        trust_pkl=VIS.CHECKPOINT.TRUST_PKL, allow_partial=VIS.CHECKPOINT.ALLOW_PARTIAL,
        clip_gradients=dict(enabled=clip.ENABLED, clip_type=clip.CLIP_TYPE,
                            clip_value=clip.CLIP_VALUE, norm_type=clip.NORM_TYPE),
        ema=dict(enabled=S.EMA.ENABLED, decay=S.EMA.DECAY),  # the final model is the average
        eval_period=cfg.TEST.EVAL_PERIOD,  # 0: evaluate once, after training
        best_metric=cfg.TEST.VIS.BEST_METRIC,  # with eval_period > 0: what model_best.pth is by
        device="cuda",
        cpu_fallback=VIS.CPU_FALLBACK,  # True: cpu (with a warning) where CUDA does not work
        seed=cfg.SEED,
    )
    return model, dataloader, tracker, test, optimizer, lr_multiplier, train


# The demo recipe (row "A1-demo" of the sweep); A1_paper.py is the paper-faithful A1 the chain
# A2..A5 builds on.
model, dataloader, tracker, test, optimizer, lr_multiplier, train = vis_rcnn_row(
    "R18_A1_baseline.yaml", "output/vis_ablation/A1_baseline")
