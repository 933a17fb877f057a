"""Ablation row A4 (paper Table 1): A3 + Multi-Source Data (paper Sec. 3.2), the LazyConfig twin of
``configs/synthvis/R18_A4_msd.yaml``: the synthetic second source (its own taxonomy, mapped by
``vis_d2.data.categories``) joins the videos as pseudo pairs, drawn by per-source weights; its
unshared classes train K auxiliary classes (Algorithm 1) and its weak split trains no mask.

The ROI heads' classes are the video set's C plus the K auxiliary ones (what ``VISROIHeads``'s
``from_config`` builds from ``MODEL.ROI_HEADS.NUM_CLASSES`` and ``MODEL.VIS.MSD.NUM_AUX_CLASSES``);
the semantic-segmentation and multi-label heads keep the video set's C. Another K is two
overrides, ``model.roi_heads.num_aux_classes=K model.roi_heads.num_classes=C+K``; the data reads
K from the ROI heads.
"""
from detectron2.config import LazyCall as L

from vis_d2.data.build import get_vis_train_sources

from .A1_baseline import yaml_config
from .A3_multitask import dataloader, lr_multiplier, model, optimizer, test, tracker, train

_cfg = yaml_config("R18_A4_msd.yaml")
_C, _K = _cfg.MODEL.ROI_HEADS.NUM_CLASSES, _cfg.MODEL.VIS.MSD.NUM_AUX_CLASSES
model.roi_heads.num_aux_classes = _K
model.roi_heads.num_classes = _C + _K
model.semseg_head.num_classes = _C
model.multilabel_head.num_classes = _C

dataloader.train.dataset = L(get_vis_train_sources)(
    names=_cfg.DATASETS.TRAIN, mask_on=_cfg.MODEL.MASK_ON,
    num_aux_classes="${....model.roi_heads.num_aux_classes}")
dataloader.train.source_weights = list(_cfg.DATALOADER.VIS.SOURCE_WEIGHTS)

train.output_dir = "output/vis_ablation/A4_msd"
