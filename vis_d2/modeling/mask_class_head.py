"""Mask-shape classification: classify each detection from its predicted mask as well.

The box head classifies from 7x7 RoI features; when categories differ mostly by outline (on the
synthetic benchmark: circle / square / triangle / star), that grid blurs the difference, while
the mask branch already draws the outline at 28x28. On a demo model a small CNN on the
predicted masks of ground-truth boxes told the four shapes apart far more often than the box
head did.

``MaskClassHead`` reads the predicted mask probabilities (detached: it must not train the mask
branch) and outputs one logit per foreground class. Training: cross-entropy against the
ground-truth class of the foreground proposals the mask loss uses (``loss_mask_cls``); with
``MODEL.VIS.MASK_CLASS.TRAIN_ON_GT_MASKS`` the head also reads those proposals' ground-truth mask
crops (the mask loss's targets), so that it learns the outlines while the predicted masks are
still blobs: without them its loss stays at chance while the mask branch is still learning.
Inference: a detection of class c with box score s gets the score ``s^(1-w) * p_c^w``, with p
the head's softmax and w = ``MODEL.VIS.MASK_CLASS.SCORE_WEIGHT`` (a weighted geometric mean of
the two classifiers' beliefs in c).
"""
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import fvcore.nn.weight_init as weight_init
from detectron2.config import configurable
from detectron2.layers import Conv2d
from detectron2.structures import Instances

from .mask_iou_head import outputs_of_predicted_classes

__all__ = ["MaskClassHead", "mask_class_loss", "mask_class_inference"]


class MaskClassHead(nn.Module):
    """(3x3 conv + ReLU + 2x2 max-pool) per entry of ``conv_dims`` -> FC + ReLU -> K logits.

    Input: mask probabilities (R, 1, M, M) (M = 28 for Mask R-CNN). Output: (R, K) logits.
    """

    @configurable
    def __init__(self, *, num_classes: int, mask_size: int = 28,
                 conv_dims: Sequence[int] = (16, 32), fc_dim: int = 128):
        """
        Args:
            num_classes: number of foreground classes K.
            mask_size: side M of the predicted masks (twice the mask pooler's resolution).
            conv_dims: output channels of the conv stages; each halves the side.
            fc_dim: width of the hidden FC layer.
        """
        super().__init__()
        if not conv_dims:
            raise ValueError("MaskClassHead: MODEL.VIS.MASK_CLASS.CONV_DIMS must not be empty")
        side = int(mask_size)
        if side >> len(conv_dims) < 1:
            raise ValueError(f"MaskClassHead: {len(conv_dims)} conv stages halve a {side}x{side} "
                             "mask to nothing (MODEL.VIS.MASK_CLASS.CONV_DIMS)")
        self.mask_size = side
        layers, in_ch = [], 1
        for dim in conv_dims:
            conv = Conv2d(in_ch, int(dim), kernel_size=3, padding=1, activation=nn.ReLU())
            weight_init.c2_msra_fill(conv)
            layers += [conv, nn.MaxPool2d(2)]
            in_ch, side = int(dim), side // 2
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(in_ch * side * side, fc_dim)
        weight_init.c2_xavier_fill(self.fc)
        self.predictor = nn.Linear(fc_dim, num_classes)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.VIS.MASK_CLASS
        return {"num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                "mask_size": 2 * cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION,
                "conv_dims": tuple(c.CONV_DIMS), "fc_dim": c.FC_DIM}

    def forward(self, mask_probs: torch.Tensor) -> torch.Tensor:
        """mask_probs: (R, 1, M, M) in [0, 1] -> (R, K) class logits."""
        if mask_probs.dim() != 4 or mask_probs.shape[1] != 1 or \
                tuple(mask_probs.shape[2:]) != (self.mask_size, self.mask_size):
            raise ValueError(f"MaskClassHead expects (R, 1, {self.mask_size}, {self.mask_size}) "
                             f"mask probabilities, got {tuple(mask_probs.shape)}")
        x = self.convs(mask_probs).flatten(1)
        return self.predictor(F.relu(self.fc(x)))


def mask_class_loss(logits: torch.Tensor, gt_classes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (R, K) logits against (R,) ground-truth classes in [0, K)."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits, gt_classes.to(device=logits.device, dtype=torch.long))


def mask_class_inference(logits: torch.Tensor, pred_instances: List[Instances],
                         score_weight: float) -> None:
    """Rescore detections in place: ``scores = scores^(1-w) * p^w``.

    Each image's ``Instances`` (``pred_classes``, ``scores``) gets ``pred_mask_class_prob``
    (R_i,), the head's probability of the detection's class.

    Args:
        logits: (sum_i R_i, K) head outputs, images concatenated in order.
        pred_instances: per image, the detections the outputs belong to.
        score_weight: w in [0, 1]; 0 leaves the scores as they are.
    """
    if not pred_instances:
        return
    picked = outputs_of_predicted_classes(logits.softmax(dim=1), pred_instances,
                                          "mask_class_inference")
    for inst, p in zip(pred_instances, picked):
        inst.pred_mask_class_prob = p
        inst.scores = inst.scores.pow(1.0 - score_weight) * p.pow(score_weight)
