"""Ablation row A3 (paper Table 1): A2 + multi-task learning (paper Sec. 3.5.1).

* semantic segmentation on P3 (``SemSegAuxHead``, training only, ``loss_semseg``);
* multi-label classification on C5 (``MultiLabelHead``, training only, ``loss_multilabel``);
* mask scoring (``MaskIoUHead``): ``loss_maskiou`` in training, and at inference a detection's
  score is multiplied by its predicted mask IoU.

The LazyConfig twin of ``configs/synthvis/R18_A3_multitask.yaml``.
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from vis_d2.modeling.aux_heads import MultiLabelHead, SemSegAuxHead
from vis_d2.modeling.mask_iou_head import MaskIoUHead

from .A2_tcis import dataloader, lr_multiplier, model, optimizer, tracker, train

model.semseg_head = L(SemSegAuxHead)(
    input_shape=ShapeSpec(channels="${...backbone.out_channels}", stride=8),  # FPN level P3
    in_feature="p3",
    num_classes="${..roi_heads.num_classes}",
    num_convs=4,
    conv_dim=128,
    norm="GN",
    loss_weight=0.5,
)
model.multilabel_head = L(MultiLabelHead)(
    input_shape=ShapeSpec(channels=256, stride=32),  # C5 (res5) of the half-width ResNet-18
    in_feature="res5",
    num_classes="${..roi_heads.num_classes}",
    loss_weight=0.5,
)
model.roi_heads.maskiou_head = L(MaskIoUHead)(
    # the mask pooler's output: FPN channels x 14 x 14
    input_shape=ShapeSpec(channels="${....backbone.out_channels}", height=14, width=14),
    num_classes="${..num_classes}",
    conv_dim=128,
    fc_dim=512,
)
model.roi_heads.maskiou_loss_weight = 1.0

train.output_dir = "output/vis_ablation/A3_multitask"
