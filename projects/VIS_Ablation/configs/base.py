"""Shared base of the ablation rows (paper Table 1) as a detectron2 LazyConfig.

Row A1: the synthetic benchmark's R18 demo model (``configs/synthvis/R18_demo.yaml``) written
out with explicit arguments: VideoRCNN = ResNet-18 (GroupNorm, trained from scratch) + FPN
P2..P7 with 64 channels (P6/P7 from stride-2 convs on P5) + RPN + box / mask / track heads,
4 classes. ``tests/test_ablation.py`` checks that ``instantiate(model)`` and
``build_model(get_vis_cfg(<the row's YAML>))`` have the same parameters and buffers.

Top-level keys, as detectron2's LazyConfig convention: ``model``, ``dataloader`` (``train``,
``test``, ``evaluator``), ``optimizer``, ``lr_multiplier``, ``train``; plus ``tracker``, the
tracking of video inference (a :class:`vis_d2.tracking.VideoTracker`).
"""
import torch
from fvcore.common.param_scheduler import MultiStepParamScheduler
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import (
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    MaskRCNNConvUpsampleHead,
)
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params

from vis_d2.data.augmentation import RandomChannelPermutation
from vis_d2.data.build import PairDatasetMapper, build_vis_test_loader, build_vis_train_loader
from vis_d2.data.build import get_vis_train_dataset_dicts
from vis_d2.data.copy_paste import CopyPaste
from vis_d2.data.instance_recolor import InstanceRecolor
from vis_d2.data.pseudo_pair_mapper import PseudoPairDatasetMapper, RandomAffine
from vis_d2.data.video_pair_mapper import VideoPairDatasetMapper
from vis_d2.data.video_test_mapper import VideoTestDatasetMapper
from vis_d2.tracking import VideoTracker
from vis_d2.evaluation.evaluator import YTVISEvaluator
from vis_d2.modeling.fpn import make_basic_block_stages
from vis_d2.modeling.mask_class_head import MaskClassHead
from vis_d2.modeling.meta_arch import VideoRCNN
from vis_d2.modeling.roi_heads import VISROIHeads
from vis_d2.modeling.track_head import TrackHead

# Names starting with "_" are not config keys (LazyConfig.load skips them).
_ROI_SCALES = (1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32)  # p2..p5
_MAX_ITER = 3600                        # SOLVER.MAX_ITER of R18_demo.yaml

# ---- model ---------------------------------------------------------------------------------
model = L(VideoRCNN)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            # Half-width R18 (stages of 32/64/128/256 channels), as R18_demo.yaml.
            stem=L(BasicStem)(in_channels=3, out_channels=32, norm="GN"),
            stages=L(make_basic_block_stages)(depth=18, in_channels=32, width=32, norm="GN"),
            out_features=["res2", "res3", "res4", "res5"],
            freeze_at=0,  # trained from scratch: nothing frozen
        ),
        in_features=["res2", "res3", "res4", "res5"],
        out_channels=64,  # every FPN level; the heads below read it through "${...}"
        norm="GN",
        # The paper's 6-level FPN: P6 and P7 from stride-2 3x3 convs on P5.
        top_block=L(LastLevelP6P7)(
            in_channels="${..out_channels}", out_channels="${..out_channels}", in_feature="p5"
        ),
        fuse_type="sum",
    ),
    proposal_generator=L(RPN)(
        in_features=["p2", "p3", "p4", "p5", "p6", "p7"],
        # MODEL.RPN.CONV_DIMS [64] of R18_demo.yaml
        head=L(StandardRPNHead)(in_channels="${...backbone.out_channels}", num_anchors=3,
                                conv_dims=[64]),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[16], [32], [64], [128], [256], [512]],
            aspect_ratios=[[0.5, 1.0, 2.0]],
            strides=[4, 8, 16, 32, 64, 128],
            offset=0.0,
        ),
        anchor_matcher=L(Matcher)(
            thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True
        ),
        box2box_transform=L(Box2BoxTransform)(weights=(1.0, 1.0, 1.0, 1.0)),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(300, 500),    # (train, test)
        post_nms_topk=(300, 100),
        nms_thresh=0.7,
    ),
    roi_heads=L(VISROIHeads)(
        num_classes=4,
        batch_size_per_image=64,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(thresholds=[0.5], labels=[0, 1],
                                    allow_low_quality_matches=False),
        box_in_features=["p2", "p3", "p4", "p5"],
        box_pooler=L(ROIPooler)(
            output_size=7, scales=_ROI_SCALES, sampling_ratio=0, pooler_type="ROIAlignV2"
        ),
        box_head=L(FastRCNNConvFCHead)(
            input_shape=ShapeSpec(channels="${....backbone.out_channels}", height=7, width=7),
            conv_dims=[],
            fc_dims=[512, 512],
        ),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=ShapeSpec(channels=512),  # the box head's last FC
            box2box_transform=L(Box2BoxTransform)(weights=(10.0, 10.0, 5.0, 5.0)),
            num_classes="${..num_classes}",
            cls_agnostic_bbox_reg=True,  # one box regressor for all classes
            test_score_thresh=0.01,  # weak class hypotheses, rescored by the mask classifier
            test_nms_thresh=0.5,
            test_topk_per_image=20,  # TEST.DETECTIONS_PER_IMAGE
            loss_weight={"loss_box_reg": 1.0},  # MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT
        ),
        mask_in_features=["p2", "p3", "p4", "p5"],
        mask_pooler=L(ROIPooler)(
            output_size=14, scales=_ROI_SCALES, sampling_ratio=0, pooler_type="ROIAlignV2"
        ),
        mask_head=L(MaskRCNNConvUpsampleHead)(
            input_shape=ShapeSpec(channels="${....backbone.out_channels}", height=14, width=14),
            num_classes=1,  # MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK: one mask for all classes
            # NUM_CONV=4 convs of CONV_DIM, then the deconv's width
            conv_dims=[64, 64, 64, 64, 64],
            conv_norm="GN",
        ),
        # MaskTrack R-CNN track head on the box pooler's 7x7 RoI features.
        track_head=L(TrackHead)(
            input_shape=ShapeSpec(channels="${....backbone.out_channels}", height=7, width=7),
            num_fc=2,
            fc_dim=256,
            embed_dim=256,
        ),
        track_loss_weight=1.0,
        # MODEL.VIS.TRACK_HEAD.DETACH_ITERS: the first 600 steps loss_track trains the track
        # head only, not the features it reads (the demo recipe, round 15)
        track_detach_iters=600,
        # MODEL.VIS.MASK_CLASS: classify each detection from its predicted 28x28 mask too
        mask_class_head=L(MaskClassHead)(
            num_classes="${..num_classes}", mask_size=28, conv_dims=[32, 64], fc_dim=256
        ),
        mask_class_loss_weight=1.0,
        mask_class_score_weight=0.75,
        mask_class_on_gt_masks=True,  # MODEL.VIS.MASK_CLASS.TRAIN_ON_GT_MASKS
    ),
    pixel_mean=[110.0, 110.0, 110.0],
    pixel_std=[60.0, 60.0, 60.0],
    input_format="BGR",
    ref_backbone_grad=False,  # MODEL.VIS.REF_BACKBONE_GRAD of R18_demo.yaml
    mask_nms_thresh=0.3,  # MODEL.VIS.MASK_NMS_THRESH of R18_demo.yaml
)

# ---- data ----------------------------------------------------------------------------------
# INPUT.VIS.VERTICAL_FLIP_PROB, BRIGHTNESS, CONTRAST and CHANNEL_PERMUTATION_PROB of
# R18_demo.yaml, in the order vis_d2.data.augmentation.build_pair_augmentation builds them.
_train_augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=[192], max_size=352, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
    L(T.RandomFlip)(prob=0.5, horizontal=False, vertical=True),
    L(T.RandomBrightness)(intensity_min=0.8, intensity_max=1.2),
    L(T.RandomContrast)(intensity_min=0.8, intensity_max=1.2),
    L(RandomChannelPermutation)(prob=0.5),
]
# INPUT.VIS.PSEUDO_*: the reference of a pseudo pair is the key image moved by a random affine.
_pseudo_augmentations = [
    L(RandomAffine)(max_shift=0.1, max_rotate=10.0, scale_range=(0.9, 1.1)),
    L(T.RandomFlip)(prob=0.5, horizontal=True, vertical=False),
]

dataloader = OmegaConf.create()
dataloader.train = L(build_vis_train_loader)(
    dataset=L(get_vis_train_dataset_dicts)(names=["synthvis_train"]),
    mapper=L(PairDatasetMapper)(
        video_mapper=L(VideoPairDatasetMapper)(
            is_train=True,
            augmentations=_train_augmentations,
            image_format="BGR",
            use_instance_mask=True,
            instance_mask_format="bitmask",
            ref_delta=5,
            frames_per_video=0,
            pseudo_augmentations=_pseudo_augmentations,
        ),
        image_mapper=L(PseudoPairDatasetMapper)(
            is_train=True,
            augmentations=_train_augmentations,
            pseudo_augmentations=_pseudo_augmentations,
            image_format="BGR",
            use_instance_mask=True,
            instance_mask_format="bitmask",
        ),
        # INPUT.VIS.COPY_PASTE: objects of a recent pair pasted into both frames of a pair
        copy_paste=L(CopyPaste)(prob=0.5, max_objects=3, bank_size=16, min_area=16),
        recolor=L(InstanceRecolor)(prob=0.5, gain=(0.8, 1.2)),  # INPUT.VIS.INSTANCE_RECOLOR
    ),
    total_batch_size=2,  # pairs per iteration
    aspect_ratio_grouping=True,
    num_workers=0,
)
dataloader.test = L(build_vis_test_loader)(
    dataset="synthvis_val",
    mapper=L(VideoTestDatasetMapper)(
        augmentation=L(T.ResizeShortestEdge)(
            short_edge_length=192, max_size=352, sample_style="choice"
        ),
        image_format="BGR",
    ),
    num_workers=0,
)
dataloader.evaluator = L(YTVISEvaluator)(
    dataset_name="${..test.dataset}",
    output_dir="${train.output_dir}/inference/${..test.dataset}",
)

# ---- tracking (video inference) ------------------------------------------------------------
tracker = L(VideoTracker)(
    score_weight=1.0,
    iou_weight=2.0,
    label_weight=10.0,
    distance_weight=2.0,
    score_thresh=0.1,
    max_age=10,
    momentum=0.8,
    label_voting=False,
    label_voting_weight=0.0,
    label_vote_score_weighted=True,
    bitrack=False,
    bitrack_iou_thresh=0.5,
    max_dets_per_frame=20,
    score_coverage_exp=0.5,
    track_nms_thresh=0.3,
)

# ---- optimisation --------------------------------------------------------------------------
# SOLVER.OPTIMIZER "ADAMW" of R18_demo.yaml: from scratch on a short schedule AdamW learns in far
# fewer steps than SGD.
optimizer = L(torch.optim.AdamW)(
    # params.model is set to the model by the trainer before instantiating
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.0005,
    betas=(0.9, 0.999),
    weight_decay=0.01,
)
# x0.1 at iterations 2700 and 3380 of 3600 after a 100-iteration linear warm-up. A ParamScheduler
# sees training progress as a fraction, so a shorter train.max_iter keeps the same shape.
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[2700, 3380], num_updates=_MAX_ITER
    ),
    warmup_length=100 / _MAX_ITER,
    warmup_method="linear",
    warmup_factor=0.001,
)

train = dict(
    output_dir="output/vis_ablation/base",
    init_checkpoint="",
    max_iter=_MAX_ITER,
    amp=dict(enabled=False),
    cpu_bf16=True,  # SOLVER.CPU_BF16: bfloat16 autocast for CPU training, where the CPU has it
    max_train_minutes=0.0,  # SOLVER.MAX_TRAIN_MINUTES: > 0 ends training within that wall time
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False),
    checkpointer=dict(period=500, max_to_keep=100),
    # Clipping keeps from-scratch training stable (an unclipped SGD run at lr 0.02 diverged): each
    # parameter's gradient norm is clipped to clip_value (SOLVER.CLIP_GRADIENTS; the trainer wraps the optimizer).
    clip_gradients=dict(enabled=True, clip_type="norm", clip_value=5.0, norm_type=2.0),
    # SOLVER.EMA: the final model is the moving average of the weights (vis_d2.engine.ema)
    ema=dict(enabled=True, decay=0.996),
    eval_period=0,  # 0: evaluate once, after training
    best_metric="segm/AP",  # with eval_period > 0: keep model_best.pth by this metric
    log_period=20,
    device="cuda",  # falls back to cpu (with a warning) where CUDA is not available
    seed=-1,
)
