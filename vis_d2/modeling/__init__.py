"""Model components; importing this module registers them in detectron2's registries."""
from ..quiet_import import import_quietly

import_quietly("fvcore.nn", "detectron2.modeling")  # both call torch.jit.script at import

from .aux_heads import (  # noqa: E402
    MultiLabelHead,
    SemSegAuxHead,
    multilabel_targets,
    semantic_targets,
)
from .auxiliary_classes import drop_auxiliary_outputs, relabel_auxiliary
from .backbones import TimmBackbone, build_vis_timm_fpn_backbone
from .fpn import build_vis_resnet_fpn_backbone
from .meta_arch import VideoRCNN
from .mask_class_head import MaskClassHead
from .mask_iou_head import MaskIoUHead
from .roi_heads import VISROIHeads
from .tcis import TCIS, CorrelationTransform
from .track_head import TrackHead, track_embedding_loss

__all__ = [
    "build_vis_resnet_fpn_backbone",
    "build_vis_timm_fpn_backbone",
    "TimmBackbone",
    "VideoRCNN",
    "VISROIHeads",
    "TCIS",
    "CorrelationTransform",
    "MaskIoUHead",
    "MaskClassHead",
    "TrackHead",
    "track_embedding_loss",
    "MultiLabelHead",
    "SemSegAuxHead",
    "multilabel_targets",
    "semantic_targets",
    "relabel_auxiliary",
    "drop_auxiliary_outputs",
]
