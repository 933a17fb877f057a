"""Ablation row A3 (paper Table 1): A2 + multi-task learning (paper Sec. 3.5.1), the LazyConfig
twin of ``configs/synthvis/R18_A3_multitask.yaml``: semantic segmentation on P3 and multi-label
classification on C5 (training only: ``loss_semseg``, ``loss_multilabel``), and mask scoring
(``loss_maskiou``; at inference a detection's score is multiplied by its predicted mask IoU).
"""
from detectron2.layers import ShapeSpec

from vis_d2.modeling import MaskIoUHead, MultiLabelHead, SemSegAuxHead

from .A1_baseline import from_yaml, roi_shape, yaml_config
from .A2_tcis import dataloader, lr_multiplier, model, optimizer, test, tracker, train

_cfg = yaml_config("R18_A3_multitask.yaml")
_VIS = _cfg.MODEL.VIS
model.semseg_head = from_yaml(
    SemSegAuxHead, _cfg, {"p3": ShapeSpec(channels="${...backbone.out_channels}", stride=8)},
    num_classes="${..roi_heads.num_classes}")
_c5 = ShapeSpec(channels=8 * _cfg.MODEL.RESNETS.RES2_OUT_CHANNELS, stride=32)  # basic blocks
model.multilabel_head = from_yaml(MultiLabelHead, _cfg, {"res5": _c5},
                                  num_classes="${..roi_heads.num_classes}")
model.multilabel_rescore_test = _VIS.MULTILABEL.RESCORE_TEST
model.roi_heads.maskiou_head = from_yaml(MaskIoUHead, _cfg, roi_shape(14),
                                         num_classes="${..num_classes}")
model.roi_heads.maskiou_loss_weight = _VIS.MASKIOU.LOSS_WEIGHT

train.output_dir = "output/vis_ablation/A3_multitask"
