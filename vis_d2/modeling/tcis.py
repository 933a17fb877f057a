"""Temporally Correlated Instance Segmentation (TCIS, paper Sec. 3.3, Fig. 3).

An auxiliary training task: predict an instance's mask in the *reference* frame from its
key-frame features, its key-frame ground-truth mask and the feature difference between the frames.
For an instance i seen in both frames, with RoI features F_t(i), F_t+d(i) (mask pooler, at the
instance's ground-truth box in each frame) and key-frame ground-truth mask m_t(i):

1. ``M = F_t(i) * m_t(i)`` (attention-masked feature) and
   ``S = CorrelationTransform(F_t+d(i) - F_t(i))`` (deformable offsets: the instance's motion);
2. ``F_corr = DeformConv(M, offsets=S)`` (temporally correlated feature);
3. the (shared) mask head predicts from ``F_corr + F_t+d(i)``; its loss is the usual mask loss
   against the instance's ground-truth mask in the reference frame.

TCIS adds nothing at inference: ``VISROIHeads`` calls it in training only.
"""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import DeformConv2d

import fvcore.nn.weight_init as weight_init
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock
from detectron2.structures import Instances

from .instance_flags import auxiliary_flags, mask_valid_flags

__all__ = ["CorrelationTransform", "TCIS", "tcis_instance_pairs", "tcis_mask_loss"]

_BLOCKS = ("BottleneckBlock", "BasicBlock")


class CorrelationTransform(nn.Module):
    """A standard ResNet block followed by a conv that outputs deformable-conv offsets.

    ``(R, C, S, S)`` feature difference -> ``(R, 2*k*k, S, S)`` offsets (torchvision's
    ``deform_conv2d`` layout: (dy, dx) pairs per kernel tap, row-major over the k x k taps).

    The offsets conv starts at zero, so at initialisation the deformable conv samples the
    regular grid, i.e. it starts as a plain conv of the masked feature.
    """

    def __init__(self, channels: int, *, block: str = "BottleneckBlock",
                 bottleneck_channels: int = 64, deform_kernel: int = 3, norm: str = ""):
        super().__init__()
        if block == "BottleneckBlock":
            self.block = BottleneckBlock(channels, channels,
                                         bottleneck_channels=bottleneck_channels, norm=norm)
        elif block == "BasicBlock":
            self.block = BasicBlock(channels, channels, norm=norm)
        else:
            raise ValueError(f"MODEL.VIS.TCIS.BLOCK must be one of {_BLOCKS}, got {block!r}")
        self.offsets = Conv2d(channels, 2 * deform_kernel * deform_kernel, kernel_size=3,
                              padding=1)
        nn.init.zeros_(self.offsets.weight)
        nn.init.zeros_(self.offsets.bias)

    def forward(self, diff: torch.Tensor) -> torch.Tensor:
        """diff: (R, C, S, S) -> offsets (R, 2*k*k, S, S)."""
        # BottleneckBlock/BasicBlock end in an in-place ReLU on their own output; the input
        # (a difference computed by the caller) is not modified.
        return self.offsets(self.block(diff))


class TCIS(nn.Module):
    """Correlation Transform + deformable conv producing the mask-head input of the TCIS task.

    Inputs are mask-pooler RoI features of the same instances in the two frames, so the module
    works at the mask pooler's resolution S and channel count C.
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, block: str = "BottleneckBlock",
                 bottleneck_channels: int = 64, deform_kernel: int = 3, norm: str = ""):
        """
        Args:
            input_shape: shape of the mask pooler output (channels C, height = width = S).
            block: the Correlation Transform's ResNet block, "BottleneckBlock" or "BasicBlock".
            bottleneck_channels: BottleneckBlock's inner width.
            deform_kernel: k, the deformable conv's (odd) kernel size.
            norm: normalisation of the block's convs ("" for none, "GN", "BN", ...).
        """
        super().__init__()
        if deform_kernel < 1 or deform_kernel % 2 == 0:
            # padding k // 2 keeps the S x S size only for odd k
            raise ValueError(
                f"MODEL.VIS.TCIS.DEFORM_KERNEL must be odd and >= 1, got {deform_kernel}"
            )
        channels = input_shape.channels
        self.correlation_transform = CorrelationTransform(
            channels, block=block, bottleneck_channels=bottleneck_channels,
            deform_kernel=deform_kernel, norm=norm,
        )
        self.deform_conv = DeformConv2d(channels, channels, kernel_size=deform_kernel,
                                        padding=deform_kernel // 2)
        weight_init.c2_msra_fill(self.deform_conv)

    @classmethod
    def from_config(cls, cfg, input_shape):
        c = cfg.MODEL.VIS.TCIS
        return {"input_shape": input_shape, "block": c.BLOCK,
                "bottleneck_channels": c.BOTTLENECK_CHANNELS, "deform_kernel": c.DEFORM_KERNEL,
                "norm": c.NORM}

    def offsets(self, key_feats: torch.Tensor, ref_feats: torch.Tensor) -> torch.Tensor:
        """Spatial shift ``CorrelationTransform(F_ref - F_key)``.

        (R, C, S, S), (R, C, S, S) -> (R, 2*k*k, S, S).
        """
        return self.correlation_transform(ref_feats - key_feats)

    def correlated_feature(self, masked_key_feats: torch.Tensor,
                           offsets: torch.Tensor) -> torch.Tensor:
        """F_corr = DeformConv(M, offsets): (R, C, S, S), (R, 2k^2, S, S) -> (R, C, S, S).

        In float32 under autocast: torchvision's CPU ``deform_conv2d`` has no bfloat16 kernel
        and no CPU autocast rule of its own (``SOLVER.CPU_BF16`` would fail here otherwise).
        """
        device = masked_key_feats.device.type
        if not torch.is_autocast_enabled(device):
            return self.deform_conv(masked_key_feats, offsets)
        with torch.autocast(device, enabled=False):
            return self.deform_conv(masked_key_feats.float(), offsets.float())

    def forward(self, key_feats: torch.Tensor, ref_feats: torch.Tensor,
                key_masks: torch.Tensor) -> torch.Tensor:
        """
        Args:
            key_feats: (R, C, S, S) F_t, key-frame RoI features at the key ground-truth boxes.
            ref_feats: (R, C, S, S) F_t+d, reference-frame RoI features at the reference boxes.
            key_masks: (R, S, S) key-frame ground-truth masks cropped to the key boxes
                (bool or float in [0, 1]).
        Returns:
            (R, C, S, S) mask-head input ``F_corr + F_t+d``.
        """
        if key_masks.shape != key_feats.shape[:1] + key_feats.shape[2:]:
            raise ValueError(f"TCIS: key_masks {tuple(key_masks.shape)} do not match the RoI "
                             f"features {tuple(key_feats.shape)} (expected (R, S, S))")
        masked = key_feats * key_masks[:, None].to(key_feats.dtype)
        return self.correlated_feature(masked, self.offsets(key_feats, ref_feats)) + ref_feats


def _not_crowd(inst: Instances) -> torch.Tensor:
    """(N,) bool: True for the instances not marked ``gt_is_crowd``."""
    if inst.has("gt_is_crowd"):
        return ~inst.gt_is_crowd.bool()
    return torch.ones_like(inst.gt_track_ids, dtype=torch.bool)


def tcis_instance_pairs(targets: List[Instances], ref_targets: List[Instances],
                        with_auxiliary: bool = True) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The ground-truth instances TCIS trains on, per training pair.

    An instance qualifies when its ``gt_track_ids`` is in both frames, neither frame marks it as
    crowd (optional bool field ``gt_is_crowd``; the pair mappers already drop crowd
    annotations), both frames have ``gt_masks`` (box-only sources give no mask target), and
    neither frame marks its mask as not valid (optional ``gt_mask_valid``: weak segmentation).
    With ``with_auxiliary`` False, auxiliary objects (optional ``gt_aux``) do not qualify:
    a class-specific mask head has no mask for their class (Algorithm 1 labels proposals, not
    ground truth).

    Returns:
        one ``(key_idx, ref_idx)`` pair of (P_k,) long tensors per training pair:
        ``targets[k][key_idx[j]]`` and ``ref_targets[k][ref_idx[j]]`` are the same instance.
    Raises:
        ValueError: a track id appears twice in one frame (the pairing would be ambiguous).
    """
    if len(targets) != len(ref_targets):
        raise ValueError(
            f"TCIS: {len(targets)} key targets but {len(ref_targets)} reference targets"
        )
    out = []
    for k, (key, ref) in enumerate(zip(targets, ref_targets)):
        device = key.gt_track_ids.device if key.has("gt_track_ids") else torch.device("cpu")
        empty = torch.zeros(0, dtype=torch.long, device=device)
        if not (key.has("gt_masks") and ref.has("gt_masks")) or len(key) == 0 or len(ref) == 0:
            out.append((empty, empty))
            continue
        for name, inst in (("key", key), ("reference", ref)):
            ids = inst.gt_track_ids
            if ids.unique().numel() != ids.numel():
                raise ValueError(f"TCIS: pair {k}: a track id appears twice in the {name} frame "
                                 f"(gt_track_ids {ids.tolist()})")
        ref_ids = ref.gt_track_ids.to(device)
        same = key.gt_track_ids[:, None] == ref_ids[None, :]
        key_ok = _not_crowd(key) & mask_valid_flags(key)
        ref_ok = _not_crowd(ref) & mask_valid_flags(ref)
        if not with_auxiliary:
            key_ok, ref_ok = key_ok & ~auxiliary_flags(key), ref_ok & ~auxiliary_flags(ref)
        same &= key_ok[:, None] & ref_ok.to(device)[None, :]
        key_idx, ref_idx = same.nonzero(as_tuple=True)
        out.append((key_idx, ref_idx))
    return out


def tcis_mask_loss(mask_logits: torch.Tensor, ref_instances: List[Instances]) -> torch.Tensor:
    """Mask R-CNN's mask loss against the reference frame's ground truth.

    Same semantics as detectron2's ``mask_rcnn_loss`` (per-class logits picked by the gt class,
    mean BCE against the gt mask cropped to the box at the logits' resolution), with the
    reference ground-truth box as the RoI; it does not write the ``mask_rcnn/*`` training
    statistics, which belong to the main mask branch.

    Args:
        mask_logits: (R, K, M, M) or class-agnostic (R, 1, M, M) logits, one per instance of
            ``ref_instances`` in order.
        ref_instances: per training pair, the reference-frame instances (``gt_boxes``,
            ``gt_classes``, ``gt_masks``) the logits predict.
    Returns:
        scalar loss.
    """
    side = mask_logits.shape[-1]
    gt_masks, gt_classes = [], []
    for inst in ref_instances:
        if len(inst) == 0:
            continue
        gt_masks.append(inst.gt_masks.crop_and_resize(inst.gt_boxes.tensor, side)
                        .to(mask_logits.device))
        gt_classes.append(inst.gt_classes.to(mask_logits.device, torch.long))
    if not gt_masks:
        return mask_logits.sum() * 0.0
    gt_masks = torch.cat(gt_masks).to(torch.float32)
    if gt_masks.shape[0] != mask_logits.shape[0]:
        raise ValueError(f"TCIS: {mask_logits.shape[0]} mask predictions for "
                         f"{gt_masks.shape[0]} reference instances")
    if mask_logits.shape[1] == 1:
        logits = mask_logits[:, 0]
    else:
        logits = mask_logits[torch.arange(len(gt_masks), device=mask_logits.device),
                             torch.cat(gt_classes)]
    return F.binary_cross_entropy_with_logits(logits, gt_masks, reduction="mean")
