"""Mask scoring (Mask Scoring R-CNN; paper Sec. 3.5.1): regress the IoU of each predicted mask.

The MaskIoU head reads the mask branch's RoI features together with the mask predicted for one
class, and regresses, per class, the IoU between that predicted mask (binarised at logit 0)
and the ground-truth mask. At inference the detection score becomes
``classification score x predicted mask IoU`` of the predicted class, so that detections with
poor masks rank lower.
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

import fvcore.nn.weight_init as weight_init
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.structures import Instances

__all__ = ["MaskIoUHead", "mask_iou_targets", "mask_iou_loss", "mask_iou_inference",
           "outputs_of_predicted_classes"]


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


@torch.no_grad()
def mask_iou_targets(pred_mask_logits: torch.Tensor, gt_masks: torch.Tensor) -> torch.Tensor:
    """IoU between binarised predicted masks and ground-truth masks, on the same RoI grid.

    Args:
        pred_mask_logits: (R, M, M) mask logits of the ground-truth class; binarised at 0.
        gt_masks: (R, M, M) ground-truth masks cropped to the same RoIs (bool, or float
            binarised at 0.5).
    Returns:
        (R,) float IoU in [0, 1]; 0 where both masks are empty.
    """
    if pred_mask_logits.shape != gt_masks.shape:
        raise ValueError(f"mask_iou_targets: predicted masks {tuple(pred_mask_logits.shape)} "
                         f"and ground truth {tuple(gt_masks.shape)} differ in shape")
    pred = (pred_mask_logits > 0).flatten(1)
    gt = (gt_masks > 0.5 if gt_masks.dtype != torch.bool else gt_masks).flatten(1)
    inter = (pred & gt).sum(1).float()
    union = (pred | gt).sum(1).float()
    return inter / union.clamp(min=1.0)


def mask_iou_loss(pred_maskiou: torch.Tensor, gt_classes: torch.Tensor,
                  targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the ground-truth class's output, over positive RoIs.

    Args:
        pred_maskiou: (R, K) head outputs for R positive (foreground) RoIs.
        gt_classes: (R,) long ground-truth classes in [0, K).
        targets: (R,) IoU targets from :func:`mask_iou_targets`.
    Returns:
        scalar loss; with R == 0 a zero that keeps the graph.
    """
    if pred_maskiou.shape[0] == 0:
        return pred_maskiou.sum() * 0.0
    picked = pred_maskiou[torch.arange(len(gt_classes), device=pred_maskiou.device), gt_classes]
    return F.mse_loss(picked, targets.to(picked.dtype), reduction="mean")


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
