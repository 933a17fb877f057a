"""Bottom-up backbones beyond detectron2's ResNets (paper Sec. 4.1: ResNeSt, Swin, from ``timm``).

Importing this package registers their builders in ``BACKBONE_REGISTRY``; ``timm`` itself is
imported only when one is built, so vis_d2 works without it.
"""
from .timm_backbone import TimmBackbone, build_vis_timm_fpn_backbone
from .timm_weights import load_timm_weights

__all__ = ["TimmBackbone", "build_vis_timm_fpn_backbone", "load_timm_weights"]
