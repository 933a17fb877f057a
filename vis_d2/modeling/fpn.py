"""The paper's 6-level FPN (P2..P7) on a bottom-up backbone (paper Sec. 2, Fig. 1).

detectron2's ``build_resnet_fpn_backbone`` stops at P6 (a max-pool of P5). The paper adds P7, so
P6 and P7 here come from stride-2 3x3 convs on P5 (``LastLevelP6P7(in_feature="p5")``).
``MODEL.VIS.FPN_P7 = False`` gives the standard 5 levels (P2..P6).
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, ResNet, build_resnet_backbone

__all__ = [
    "build_vis_fpn",
    "build_vis_resnet",
    "build_vis_resnet_fpn_backbone",
    "make_basic_block_stages",
]


def make_basic_block_stages(depth: int, in_channels: int, width: int, norm: str = "GN") -> list:
    """The four stages (res2..res5) of a basic-block ResNet (depth 18 or 34) at any width.

    Args:
        depth: 18 or 34.
        in_channels: channels of the stem's output.
        width: channels of res2; res3..res5 double it each time (64 gives detectron2's R18/R34).
        norm: detectron2 norm name ("GN", "BN", "FrozenBN", "SyncBN", "").
    Returns:
        list of 4 lists of ``BasicBlock`` (what ``ResNet(stem, stages)`` takes).
    """
    if depth not in (18, 34):
        raise ValueError(f"make_basic_block_stages: depth must be 18 or 34, got {depth}")
    stages = []
    for idx, num_blocks in enumerate({18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth]):
        out_channels = width * 2**idx
        stages.append(ResNet.make_stage(
            block_class=BasicBlock, num_blocks=num_blocks,
            stride_per_block=[1 if idx == 0 else 2] + [1] * (num_blocks - 1),
            in_channels=in_channels, out_channels=out_channels, norm=norm))
        in_channels = out_channels
    return stages


def build_vis_resnet(cfg, input_shape: ShapeSpec) -> ResNet:
    """detectron2's ResNet, plus R18/R34 at any width.

    detectron2 fixes R18/R34 at ``RES2_OUT_CHANNELS = 64``. Narrower basic-block ResNets
    (``STEM_OUT_CHANNELS`` and ``RES2_OUT_CHANNELS`` 32: stages of 32/64/128/256 channels)
    take about a third less time per training step on CPU, which is what lets a model trained
    from scratch take enough steps in the CPU demo. Every other setting goes to
    ``build_resnet_backbone`` unchanged.
    """
    r = cfg.MODEL.RESNETS
    if r.DEPTH not in (18, 34) or r.RES2_OUT_CHANNELS == 64:
        return build_resnet_backbone(cfg, input_shape)
    if any(r.DEFORM_ON_PER_STAGE) or r.RES5_DILATION != 1 or r.NUM_GROUPS != 1:
        raise ValueError(f"R{r.DEPTH} supports no MODEL.RESNETS.DEFORM_ON_PER_STAGE, RES5_DILATION "
                         f"or NUM_GROUPS (got {r.DEFORM_ON_PER_STAGE}, {r.RES5_DILATION}, {r.NUM_GROUPS})")
    stem = BasicStem(input_shape.channels, r.STEM_OUT_CHANNELS, norm=r.NORM)
    stages = make_basic_block_stages(r.DEPTH, r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS, r.NORM)
    return ResNet(stem, stages, out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


def build_vis_fpn(cfg, bottom_up) -> FPN:
    """The FPN of ``MODEL.FPN`` and ``MODEL.VIS.FPN_P7`` on any bottom-up ``Backbone`` whose
    outputs include ``MODEL.FPN.IN_FEATURES``.

    Returns a detectron2 ``FPN`` whose outputs are ``p2..p7`` (strides 4..128) with
    ``MODEL.VIS.FPN_P7`` (default) or ``p2..p6`` without, each of ``MODEL.FPN.OUT_CHANNELS``
    channels; it pads inputs to a multiple of its last input's stride (``size_divisibility``).
    """
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


@BACKBONE_REGISTRY.register()
def build_vis_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """ResNet (any depth detectron2 supports: 18/34/50/101/152) + the FPN of
    :func:`build_vis_fpn` (``p2..p7``)."""
    return build_vis_fpn(cfg, build_vis_resnet(cfg, input_shape))
