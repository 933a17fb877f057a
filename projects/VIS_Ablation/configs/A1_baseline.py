"""Ablation row A1 (paper Table 1), the baseline, as a LazyConfig; the other rows build on it.

detectron2's model-zoo Mask R-CNN FPN (``common/models/mask_rcnn_fpn.py``, ViTDet's start too)
made into vis_d2's VideoRCNN. The YAML rows (``configs/synthvis/R18_A*.yaml``) are the source of
truth: a row states the structure and reads the numbers from its YAML twin, where each becomes a
key that ``key=value`` overrides. ``tests/test_ablation.py`` checks that the rows build the same
model, tracker, schedule and data settings as their YAML twins. Keys: detectron2's ``model``,
``dataloader`` (train, test, evaluator), ``optimizer``, ``lr_multiplier``, ``train``, and
``tracker``, the tracking of video inference.
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


# Names starting with "_" are not config keys (LazyConfig.load skips them).
_cfg = yaml_config("R18_A1_baseline.yaml")
_M, _IN, _S = _cfg.MODEL, _cfg.INPUT, _cfg.SOLVER

# ---- model ---------------------------------------------------------------------------------
model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.update(_target_=VideoRCNN, pixel_mean=_M.PIXEL_MEAN, pixel_std=_M.PIXEL_STD,
             input_format=_IN.FORMAT, ref_backbone_grad=_M.VIS.REF_BACKBONE_GRAD,
             mask_nms_thresh=_M.VIS.MASK_NMS_THRESH)
# A basic-block ResNet at any width (make_basic_block_stages), then the paper's P2..P7 FPN.
_R = _M.RESNETS
model.backbone.bottom_up.stem.update(out_channels=_R.STEM_OUT_CHANNELS, norm=_R.NORM)
model.backbone.bottom_up.stages = L(make_basic_block_stages)(
    depth=_R.DEPTH, in_channels="${..stem.out_channels}", width=_R.RES2_OUT_CHANNELS, norm=_R.NORM)
model.backbone.bottom_up.freeze_at = _M.BACKBONE.FREEZE_AT
model.backbone.update(out_channels=_M.FPN.OUT_CHANNELS, norm=_M.FPN.NORM)
model.backbone.top_block = L(LastLevelP6P7)(
    in_channels="${..out_channels}", out_channels="${..out_channels}", in_feature="p5")
_RPN = _M.RPN
model.proposal_generator.update(
    in_features=_RPN.IN_FEATURES,
    pre_nms_topk=(_RPN.PRE_NMS_TOPK_TRAIN, _RPN.PRE_NMS_TOPK_TEST),
    post_nms_topk=(_RPN.POST_NMS_TOPK_TRAIN, _RPN.POST_NMS_TOPK_TEST))
model.proposal_generator.head.update(in_channels="${...backbone.out_channels}",
                                     conv_dims=_RPN.CONV_DIMS)
model.proposal_generator.anchor_generator.update(
    sizes=_M.ANCHOR_GENERATOR.SIZES, aspect_ratios=_M.ANCHOR_GENERATOR.ASPECT_RATIOS,
    strides=[4, 8, 16, 32, 64, 128])  # P2..P7

_BOX, _MASK, _VIS = _M.ROI_BOX_HEAD, _M.ROI_MASK_HEAD, _M.VIS
_ROI = model.roi_heads
_ROI.box_head.update(input_shape=roi_shape(7), fc_dims=[_BOX.FC_DIM] * _BOX.NUM_FC)
_ROI.box_predictor.update(
    input_shape=ShapeSpec(channels=_BOX.FC_DIM), cls_agnostic_bbox_reg=_BOX.CLS_AGNOSTIC_BBOX_REG,
    test_score_thresh=_M.ROI_HEADS.SCORE_THRESH_TEST, test_nms_thresh=_M.ROI_HEADS.NMS_THRESH_TEST,
    test_topk_per_image=_cfg.TEST.DETECTIONS_PER_IMAGE,
    loss_weight={"loss_box_reg": _BOX.BBOX_REG_LOSS_WEIGHT})
_ROI.mask_head.update(
    input_shape=roi_shape(14), num_classes=1 if _MASK.CLS_AGNOSTIC_MASK else "${..num_classes}",
    conv_dims=[_MASK.CONV_DIM] * (_MASK.NUM_CONV + 1), conv_norm=_MASK.NORM)
_ROI.update(
    _target_=VISROIHeads, num_classes=_M.ROI_HEADS.NUM_CLASSES,
    batch_size_per_image=_M.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
    # MaskTrack R-CNN's track head on the box pooler's RoI features
    track_head=from_yaml(TrackHead, _cfg, roi_shape(7)),
    track_loss_weight=_VIS.TRACK_HEAD.LOSS_WEIGHT, track_detach_iters=_VIS.TRACK_HEAD.DETACH_ITERS,
    # MODEL.VIS.MASK_CLASS: each detection is classified from its predicted mask too
    mask_class_head=from_yaml(MaskClassHead, _cfg, num_classes="${..num_classes}"),
    mask_class_loss_weight=_VIS.MASK_CLASS.LOSS_WEIGHT,
    mask_class_score_weight=_VIS.MASK_CLASS.SCORE_WEIGHT,
    mask_class_on_gt_masks=_VIS.MASK_CLASS.TRAIN_ON_GT_MASKS)

# ---- data ----------------------------------------------------------------------------------
# In the order vis_d2.data.augmentation.build_pair_augmentation builds them from INPUT.
_V = _IN.VIS
_train_augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=_IN.MIN_SIZE_TRAIN, max_size=_IN.MAX_SIZE_TRAIN,
                            sample_style=_IN.MIN_SIZE_TRAIN_SAMPLING),
    L(T.RandomFlip)(horizontal=True),
    L(T.RandomFlip)(prob=_V.VERTICAL_FLIP_PROB, horizontal=False, vertical=True),
    L(T.RandomBrightness)(intensity_min=_V.BRIGHTNESS[0], intensity_max=_V.BRIGHTNESS[1]),
    L(T.RandomContrast)(intensity_min=_V.CONTRAST[0], intensity_max=_V.CONTRAST[1]),
    L(RandomChannelPermutation)(prob=_V.CHANNEL_PERMUTATION_PROB),
]
_pair_mapper_args = dict(  # what the video and the pseudo pair mapper share
    is_train=True, augmentations=_train_augmentations, image_format=_IN.FORMAT,
    use_instance_mask=_M.MASK_ON, instance_mask_format=_IN.MASK_FORMAT,
    # INPUT.VIS.PSEUDO_*: a pseudo pair's reference is the key image moved by a random affine.
    pseudo_augmentations=[
        L(RandomAffine)(max_shift=_V.PSEUDO_SHIFT, max_rotate=_V.PSEUDO_ROTATE,
                        scale_range=_V.PSEUDO_SCALE),
        L(T.RandomFlip)(prob=_V.PSEUDO_FLIP, horizontal=True, vertical=False)])

dataloader = dict(
    train=L(build_vis_train_loader)(
        dataset=L(get_vis_train_dataset_dicts)(names=_cfg.DATASETS.TRAIN),
        mapper=L(PairDatasetMapper)(
            video_mapper=L(VideoPairDatasetMapper)(
                **_pair_mapper_args, ref_delta=_V.REF_DELTA,
                frames_per_video=_V.FRAMES_PER_VIDEO),
            image_mapper=L(PseudoPairDatasetMapper)(**_pair_mapper_args),
            copy_paste=from_yaml(CopyPaste, _cfg) if _V.COPY_PASTE.ENABLED else None,
            recolor=from_yaml(InstanceRecolor, _cfg) if _V.INSTANCE_RECOLOR.ENABLED else None),
        total_batch_size=_S.IMS_PER_BATCH,  # pairs per iteration
        aspect_ratio_grouping=_cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=_cfg.DATALOADER.NUM_WORKERS),
    test=L(build_vis_test_loader)(
        dataset=_cfg.DATASETS.TEST[0],
        mapper=L(VideoTestDatasetMapper)(
            augmentation=L(T.ResizeShortestEdge)(short_edge_length=_IN.MIN_SIZE_TEST,
                                                 max_size=_IN.MAX_SIZE_TEST, sample_style="choice"),
            image_format=_IN.FORMAT),
        num_workers=_cfg.DATALOADER.NUM_WORKERS),
    evaluator=L(YTVISEvaluator)(
        dataset_name="${..test.dataset}",
        output_dir="${train.output_dir}/inference/${..test.dataset}"),
)

# ---- tracking (video inference): every field of MODEL.VIS.TRACKER --------------------------
tracker = from_yaml(VideoTracker, _cfg)

# ---- optimisation --------------------------------------------------------------------------
optimizer = L(torch.optim.AdamW)(  # SOLVER.OPTIMIZER "ADAMW"
    # params.model is set to the model by the trainer before instantiating
    params=L(get_default_optimizer_params)(weight_decay_norm=_S.WEIGHT_DECAY_NORM),
    lr=_S.BASE_LR, betas=_S.ADAMW_BETAS, weight_decay=_S.WEIGHT_DECAY)
# SOLVER.STEPS and warm-up as fractions of MAX_ITER: a shorter train.max_iter keeps the shape.
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[_S.GAMMA ** k for k in range(len(_S.STEPS) + 1)], milestones=_S.STEPS,
        num_updates=_S.MAX_ITER),
    warmup_length=_S.WARMUP_ITERS / _S.MAX_ITER, warmup_method=_S.WARMUP_METHOD,
    warmup_factor=_S.WARMUP_FACTOR)

_CLIP = _S.CLIP_GRADIENTS
train = dict(
    output_dir="output/vis_ablation/A1_baseline", init_checkpoint=_M.WEIGHTS, max_iter=_S.MAX_ITER,
    amp=dict(enabled=_S.AMP.ENABLED), cpu_bf16=_S.CPU_BF16,
    max_train_minutes=_S.MAX_TRAIN_MINUTES,  # > 0 ends training within that wall time
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False), log_period=20,
    checkpointer=dict(period=_S.CHECKPOINT_PERIOD, max_to_keep=100),
    # MODEL.VIS.CHECKPOINT: open .pkl weights; evaluate with weights that do not fit the model
    trust_pkl=_M.VIS.CHECKPOINT.TRUST_PKL, allow_partial=_M.VIS.CHECKPOINT.ALLOW_PARTIAL,
    clip_gradients=dict(enabled=_CLIP.ENABLED, clip_type=_CLIP.CLIP_TYPE,
                        clip_value=_CLIP.CLIP_VALUE, norm_type=_CLIP.NORM_TYPE),
    ema=dict(enabled=_S.EMA.ENABLED, decay=_S.EMA.DECAY),  # the final model is the average
    eval_period=_cfg.TEST.EVAL_PERIOD,  # 0: evaluate once, after training
    best_metric=_cfg.TEST.VIS.BEST_METRIC,  # with eval_period > 0: what model_best.pth is by
    device="cuda",
    cpu_fallback=_M.VIS.CPU_FALLBACK,  # True: cpu (with a warning) where CUDA does not work
    seed=_cfg.SEED,
)
