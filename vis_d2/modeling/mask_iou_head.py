"""Mask scoring (Mask Scoring R-CNN; paper Sec. 3.5.1): regress the IoU of each predicted mask.

The MaskIoU head reads the mask branch's RoI features together with the mask predicted for one
class, and regresses, per class, the IoU between that predicted mask (binarised at logit 0)
and the object's whole ground-truth mask. At inference the detection score becomes
``classification score x predicted mask IoU`` of the predicted class, so that detections with
poor masks rank lower.

The target is Mask Scoring R-CNN's: the predicted mask lives inside the proposal box, but the
ground truth counts with its full area, the part outside the box included
(:func:`gt_area_outside_boxes`), so a box that cuts off half of the object has a target near 0.5
even where its mask is perfect inside the box; an IoU measured inside the box only would rate
such truncated boxes near 1 and the rescoring would favour them.
"""
from typing import List, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from torch import nn

import fvcore.nn.weight_init as weight_init
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.structures import BitMasks, Instances, PolygonMasks

__all__ = ["MaskIoUHead", "gt_area_outside_boxes", "mask_iou_targets", "mask_iou_loss",
           "mask_iou_inference", "outputs_of_predicted_classes"]


class MaskIoUHead(nn.Module):
    """Four 3x3 convs (ReLU; the last with stride 2) -> two FCs (ReLU) -> one IoU per class.

    Input: RoI features (R, C, S, S) and the predicted mask probabilities (R, 1, 2S, 2S) of one
    class each; the mask is max-pooled 2x2 (stride 2) to S x S and concatenated to the
    features, giving (R, C + 1, S, S). Output: (R, num_classes) predicted mask IoUs.
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, num_classes: int, conv_dim: int = 256,
                 fc_dim: int = 1024, num_conv: int = 4):
        """
        Args:
            input_shape: shape of the mask pooler output (channels C, height = width = S, S even).
            num_classes: number of foreground classes K (one IoU output each).
            conv_dim: channels of the convs.
            fc_dim: width of the two FCs.
            num_conv: number of 3x3 convs (the last has stride 2).
        """
        super().__init__()
        side = input_shape.height
        if not side or side != input_shape.width or side % 2:
            raise ValueError("MaskIoUHead needs square RoI features with an even side "
                             f"(MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION), got "
                             f"{input_shape.height}x{input_shape.width}")
        if num_conv < 1:
            raise ValueError(f"MaskIoUHead needs at least one conv, got num_conv={num_conv}")
        self.feature_side = side
        convs = []
        in_ch = input_shape.channels + 1
        for i in range(num_conv):
            stride = 2 if i == num_conv - 1 else 1
            conv = Conv2d(in_ch, conv_dim, kernel_size=3, stride=stride, padding=1,
                          activation=nn.ReLU())
            weight_init.c2_msra_fill(conv)
            convs.append(conv)
            in_ch = conv_dim
        self.convs = nn.Sequential(*convs)
        out_side = (side + 1) // 2
        self.fc1 = nn.Linear(conv_dim * out_side * out_side, fc_dim)
        self.fc2 = nn.Linear(fc_dim, fc_dim)
        for fc in (self.fc1, self.fc2):
            weight_init.c2_xavier_fill(fc)
        self.predictor = nn.Linear(fc_dim, num_classes)
        # Small outputs at the start: IoU targets are in [0, 1].
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    @classmethod
    def from_config(cls, cfg, input_shape):
        c = cfg.MODEL.VIS.MASKIOU
        return {"input_shape": input_shape, "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                "conv_dim": c.CONV_DIM, "fc_dim": c.FC_DIM}

    def forward(self, features: torch.Tensor, mask_probs: torch.Tensor) -> torch.Tensor:
        """
        Args:
            features: (R, C, S, S) mask-pooler RoI features.
            mask_probs: (R, 1, 2S, 2S) predicted mask probabilities (sigmoid of the logits)
                of one class per RoI; callers detach it so that this head does not train the
                mask head.
        Returns:
            (R, num_classes) predicted mask IoUs.
        """
        side = self.feature_side
        if features.shape[-2:] != (side, side) or mask_probs.shape[-2:] != (2 * side, 2 * side) \
                or mask_probs.shape[:2] != (features.shape[0], 1):
            raise ValueError(f"MaskIoUHead: expected features (R, C, {side}, {side}) and masks "
                             f"(R, 1, {2 * side}, {2 * side}), got {tuple(features.shape)} and "
                             f"{tuple(mask_probs.shape)}")
        mask = F.max_pool2d(mask_probs.to(features.dtype), kernel_size=2, stride=2)
        x = self.convs(torch.cat([features, mask], dim=1)).flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.predictor(x)


def _pixel_coverage(lo: torch.Tensor, hi: torch.Tensor, size: int) -> torch.Tensor:
    """(R, size): the length of [lo_r, hi_r] inside pixel j = [j, j + 1), in [0, 1]."""
    j = torch.arange(size, device=lo.device, dtype=torch.float32)
    return (torch.minimum(hi[:, None], j + 1) - torch.maximum(lo[:, None], j)).clamp(0.0, 1.0)


def _pixel_areas(masks, boxes: torch.Tensor,
                 image_size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(R,) whole areas and (R,) areas inside the boxes, in image pixels, of R masks."""
    if isinstance(masks, BitMasks):
        m = masks.tensor.to(torch.float32)
        boxes = boxes.to(device=m.device, dtype=torch.float32)
        cover_x = _pixel_coverage(boxes[:, 0], boxes[:, 2], m.shape[2])
        cover_y = _pixel_coverage(boxes[:, 1], boxes[:, 3], m.shape[1])
        inside = (torch.bmm(m, cover_x[:, :, None])[:, :, 0] * cover_y).sum(1)
        return m.sum((1, 2)), inside
    if isinstance(masks, PolygonMasks):
        h, w = image_size
        full, inside = [], []
        for polys, (x0, y0, x1, y1) in zip(masks.polygons, boxes.tolist()):
            rle = mask_util.merge(mask_util.frPyObjects(
                [np.asarray(p, dtype=np.float64).tolist() for p in polys], h, w))
            box = mask_util.frPyObjects(np.array([[x0, y0, x1 - x0, y1 - y0]], np.float64),
                                        h, w)[0]
            full.append(float(mask_util.area(rle)))
            inside.append(float(mask_util.area(mask_util.merge([rle, box], intersect=True))))
        as_tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=boxes.device)  # noqa
        return as_tensor(full), as_tensor(inside)
    raise TypeError(f"gt_area_outside_boxes: gt_masks must be BitMasks or PolygonMasks, got "
                    f"{type(masks).__name__}")


@torch.no_grad()
def gt_area_outside_boxes(gt_masks, boxes: torch.Tensor, side: int,
                          image_size: Tuple[int, int]) -> torch.Tensor:
    """The area of each ground-truth mask that lies outside its proposal box, in cells of the
    box's ``side`` x ``side`` grid (the unit of the cropped masks :func:`mask_iou_targets` reads).

    A box of w x h pixels has cells of (w / side) x (h / side) pixels, so an area of ``a`` pixels
    outside it counts ``a * side**2 / (w * h)`` cells. Mask Scoring R-CNN divides the in-box
    area by the share of the object inside the box; adding the outside part instead gives the
    same full area without dividing by an in-box area that may be 0.

    Args:
        gt_masks: R ground-truth masks (BitMasks or PolygonMasks at ``image_size``), the one
            matched to each box.
        boxes: (R, 4) proposal boxes (x0, y0, x1, y1) in image pixels.
        side: M, the side of the cropped masks.
        image_size: (H, W) of the image the masks are drawn on.
    Returns:
        (R,) float32 >= 0, on ``boxes``' device.
    """
    if len(gt_masks) != boxes.shape[0]:
        raise ValueError(f"gt_area_outside_boxes: {len(gt_masks)} masks for "
                         f"{boxes.shape[0]} boxes")
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.float32, device=boxes.device)
    full, inside = _pixel_areas(gt_masks, boxes, image_size)
    b = boxes.to(device=full.device, dtype=torch.float32)
    box_area = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).clamp(min=1e-6)
    outside = (full - inside).clamp(min=0.0) * (side * side) / box_area
    return outside.to(boxes.device)


@torch.no_grad()
def mask_iou_targets(pred_mask_logits: torch.Tensor, gt_masks: torch.Tensor,
                     gt_area_outside: torch.Tensor) -> torch.Tensor:
    """IoU between each binarised predicted mask and its object's whole ground-truth mask.

    The intersection and the predicted area are counted on the RoI grid (a predicted mask has
    nothing outside its box); the ground truth's area is its area on the grid plus
    ``gt_area_outside``, the part of the object the box cuts off (:func:`gt_area_outside_boxes`).

    Args:
        pred_mask_logits: (R, M, M) mask logits of the ground-truth class; binarised at 0.
        gt_masks: (R, M, M) ground-truth masks cropped to the same RoIs (bool, or float
            binarised at 0.5).
        gt_area_outside: (R,) ground-truth area outside each RoI, in M x M grid cells.
    Returns:
        (R,) float IoU in [0, 1]; 0 where both masks are empty.
    """
    if pred_mask_logits.shape != gt_masks.shape:
        raise ValueError(f"mask_iou_targets: predicted masks {tuple(pred_mask_logits.shape)} "
                         f"and ground truth {tuple(gt_masks.shape)} differ in shape")
    if gt_area_outside.shape != pred_mask_logits.shape[:1]:
        raise ValueError(f"mask_iou_targets: gt_area_outside {tuple(gt_area_outside.shape)} "
                         f"does not give one area per mask ({pred_mask_logits.shape[0]})")
    pred = (pred_mask_logits > 0).flatten(1)
    gt = (gt_masks > 0.5 if gt_masks.dtype != torch.bool else gt_masks).flatten(1)
    inter = (pred & gt).sum(1).float()
    union = (pred | gt).sum(1).float() + gt_area_outside.to(inter.device, torch.float32)
    return inter / union.clamp(min=1.0)


def mask_iou_loss(pred_maskiou: torch.Tensor, gt_classes: torch.Tensor,
                  targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the ground-truth class's output over the positive RoIs.

    As Mask Scoring R-CNN, a RoI is positive when it is a foreground proposal (matched to a
    ground-truth object of a foreground class with box IoU >= ``MODEL.ROI_HEADS.IOU_THRESHOLDS``
    and a valid mask: the RoIs the mask loss trains on, which the caller passes) *and* its
    target IoU is > 0, as the reference implementation's l2 loss keeps only targets > 0.

    Args:
        pred_maskiou: (R, K) head outputs for R foreground RoIs.
        gt_classes: (R,) long ground-truth classes in [0, K).
        targets: (R,) IoU targets from :func:`mask_iou_targets`.
    Returns:
        scalar loss; with no positive RoI a zero that keeps the graph.
    """
    picked = pred_maskiou[torch.arange(len(gt_classes), device=pred_maskiou.device), gt_classes]
    targets = targets.to(picked.dtype)
    # Weights rather than a boolean index: no host sync, and the graph stays with no positive.
    positive = (targets > 0).to(picked.dtype)
    return (positive * (picked - targets) ** 2).sum() / positive.sum().clamp(min=1.0)


def outputs_of_predicted_classes(outputs: torch.Tensor, pred_instances: List[Instances],
                                 caller: str) -> List[torch.Tensor]:
    """Per image, each detection's entry of per-class head outputs for its ``pred_classes``.

    Args:
        outputs: (sum_i R_i, K), images concatenated in order.
        pred_instances: per image, the R_i detections (``pred_classes``).
        caller: named in the error when the counts differ.
    Returns:
        per image, a (R_i,) tensor.
    """
    classes = torch.cat([x.pred_classes for x in pred_instances])
    if classes.numel() != outputs.shape[0]:
        raise ValueError(f"{caller}: {outputs.shape[0]} outputs for {classes.numel()} detections")
    picked = outputs[torch.arange(classes.numel(), device=outputs.device), classes]
    return list(picked.split([len(x) for x in pred_instances]))


def mask_iou_inference(pred_maskiou: torch.Tensor, pred_instances: List[Instances]) -> None:
    """Rescore detections by their predicted mask IoU, in place.

    Each image's ``Instances`` (with ``pred_classes`` and ``scores``) gets ``pred_maskiou``
    (R_i,), the raw output for its predicted class, and ``scores`` becomes
    ``scores * clamp(pred_maskiou, 0, 1)``. The clamp only matters for the occasional
    regression output outside [0, 1]: a negative score would break consumers that take its log
    (the tracker) and an IoU cannot exceed 1.

    Args:
        pred_maskiou: (sum_i R_i, K) head outputs, images concatenated in order.
        pred_instances: per image, the detections the outputs belong to.
    """
    if not pred_instances:
        return
    picked = outputs_of_predicted_classes(pred_maskiou, pred_instances, "mask_iou_inference")
    for inst, iou in zip(pred_instances, picked):
        inst.pred_maskiou = iou
        inst.scores = inst.scores * iou.clamp(0.0, 1.0)
