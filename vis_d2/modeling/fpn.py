"""The paper's 6-level FPN (P2..P7) on a detectron2 ResNet (paper Sec. 2, Fig. 1).

detectron2's ``build_resnet_fpn_backbone`` stops at P6 (a max-pool of P5). The paper adds P7, so
P6 and P7 here come from stride-2 3x3 convs on P5 (``LastLevelP6P7(in_feature="p5")``).
``MODEL.VIS.FPN_P7 = False`` gives the standard 5 levels (P2..P6).
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7
from detectron2.modeling.backbone.resnet import build_resnet_backbone

__all__ = ["build_vis_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_vis_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """ResNet (any depth detectron2 supports: 18/34/50/101/152) + FPN.

    Returns a detectron2 ``Backbone`` whose outputs are ``p2..p7`` (strides 4..128) with
    ``MODEL.VIS.FPN_P7`` (default) or ``p2..p6`` without. Every level has
    ``MODEL.FPN.OUT_CHANNELS`` channels.
    """
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    if cfg.MODEL.VIS.FPN_P7:
        top_block = LastLevelP6P7(out_channels, out_channels, in_feature="p5")
    else:
        top_block = LastLevelMaxPool()
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
