"""Image-level auxiliary heads of the paper's multi-task learning (Sec. 3.5.1).

* ``SemSegAuxHead``: FPN level P3 -> stacked 3x3 convs -> 1x1 conv with ``num_classes + 1``
  channels (background last, as detectron2's class convention) -> per-pixel cross-entropy
  against the semantic map painted from the frame's instance masks. Training only: it gives the
  features a global, image-wide notion of "what is where" that the RoI mask head never sees.

  Channels: 41 for YouTube-VIS where the paper says 40. The paper names neither the loss nor
  what becomes of background pixels; with 40 channels under a softmax cross-entropy every
  pixel would have to be one of the 40 classes, so background could only be ignored, and the
  head would never learn where objects are not, which is the part of "what is where" the RoI
  heads lack most (most of a frame is background). The extra background channel keeps that
  signal with the standard per-pixel softmax; a 40-channel sigmoid (background = all zeros)
  would keep it too, at the cost of 40 independent binary losses that need not sum to one.
* ``MultiLabelHead``: backbone stage C5 (``res5``) -> global average pooling -> FC ->
  ``num_classes`` logits, trained with binary cross-entropy against "which classes are in this
  frame". Training only, unless its probabilities rescore the detections at inference.

Both heads are built from the ``MODEL.VIS.SEMSEG`` / ``MODEL.VIS.MULTILABEL`` config groups
(``from_config``) or from explicit arguments (LazyConfig); ``VideoRCNN`` owns and runs them.

Multi-source data (paper Sec. 3.2, :mod:`vis_d2.modeling.instance_flags`): both heads keep the
video set's C classes whatever the number K of auxiliary classes, since Algorithm 1 labels
proposals and these heads see none.

* An auxiliary object (``gt_aux``) is none of the C classes: the multi-label targets are exact
  without it, so it adds no label; in the semantic map its pixels are ignored, because painting
  them background would teach the shared features the very "other classes are background" that
  the box head's auxiliary classes avoid.
* A weakly segmented object (``gt_mask_valid`` False) still counts for the multi-label head
  (a class-level target); a frame holding one gets no semantic map at all (every cell ignored),
  as a box-only frame: where its mask is missing, its pixels would be painted background.
"""
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

import fvcore.nn.weight_init as weight_init
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.structures import BitMasks, Instances, PolygonMasks

from .instance_flags import auxiliary_flags, mask_valid_flags

__all__ = [
    "SemSegAuxHead",
    "MultiLabelHead",
    "semantic_targets",
    "multilabel_targets",
]

# Ignored target value. Negative so it can never collide with a class index, whatever the
# number of classes (detectron2's 255 would be a real class of a 1203-class LVIS model).
SEMSEG_IGNORE_VALUE = -1


def _mask_tensor(instances: Instances, image_size: Tuple[int, int]) -> torch.Tensor:
    """(K, H, W) bool masks of ``instances.gt_masks`` (BitMasks or PolygonMasks)."""
    masks = instances.gt_masks
    if isinstance(masks, PolygonMasks):
        masks = BitMasks.from_polygon_masks(masks, image_size[0], image_size[1])
    if not isinstance(masks, BitMasks):
        raise TypeError(f"gt_masks must be BitMasks or PolygonMasks, got {type(masks).__name__}")
    t = masks.tensor
    if len(t) > 0 and tuple(t.shape[-2:]) != tuple(image_size):
        raise ValueError(
            f"gt_masks are {tuple(t.shape[-2:])} (HxW) but the image is {tuple(image_size)}"
        )
    return t.bool()


def semantic_targets(
    targets: Sequence[Instances],
    image_sizes: Sequence[Tuple[int, int]],
    has_mask: Sequence[bool],
    feature_size: Tuple[int, int],
    stride: int,
    num_classes: int,
    ignore_value: int = SEMSEG_IGNORE_VALUE,
) -> torch.Tensor:
    """Semantic maps at feature resolution painted from instance masks.

    The full-resolution map (pixel = class of the instance covering it, ``num_classes`` =
    background elsewhere) is sampled with nearest neighbour at the centre pixel of every
    ``stride`` x ``stride`` cell, i.e. pixel ``(stride*i + stride//2, stride*j + stride//2)``
    for feature cell (i, j) -- the same sampling as ``F.interpolate(mode="nearest-exact")``.
    Only those pixels of the masks are read, so the full-res map is never materialised.
    Where instances overlap, the one with the smaller mask area wins: in a frame the smaller
    object is usually the occluder, and painting the larger one last would erase the smaller
    entirely.

    Args:
        targets: per image, ``Instances`` with ``gt_classes`` (K,) and, for mask-annotated
            images, ``gt_masks`` (K masks at ``image_sizes[i]``); optional bool ``gt_aux``
            (auxiliary objects: their pixels get ``ignore_value``) and ``gt_mask_valid``.
        image_sizes: per image, (H, W) of the real image inside the padded batch.
        has_mask: per image, False for box-only sources. Those images, images whose
            instances have no ``gt_masks`` and images with an instance whose ``gt_mask_valid``
            is False get an all-``ignore_value`` map (left out of the loss).
        feature_size: (h, w) of the feature map the logits live on (padded batch / stride).
        stride: the feature map's stride in image pixels.
        num_classes: number of foreground classes; background is ``num_classes``.
        ignore_value: label of pixels that carry no loss (padding, box-only images).
    Returns:
        (N, h, w) int64 labels in ``[0, num_classes]`` or ``ignore_value``.
    """
    if not (len(targets) == len(image_sizes) == len(has_mask)):
        raise ValueError(
            f"semantic_targets: {len(targets)} targets, {len(image_sizes)} image sizes and "
            f"{len(has_mask)} has_mask flags; they must be one per image"
        )
    h, w = feature_size
    offset = stride // 2
    out = []
    for inst, (img_h, img_w), with_mask in zip(targets, image_sizes, has_mask):
        device = inst.gt_classes.device
        sem = torch.full((h, w), ignore_value, dtype=torch.int64, device=device)
        if not (with_mask and inst.has("gt_masks") and bool(mask_valid_flags(inst).all())):
            out.append(sem)
            continue
        ys = torch.arange(h, device=device) * stride + offset
        xs = torch.arange(w, device=device) * stride + offset
        ys, xs = ys[ys < img_h], xs[xs < img_w]  # cells centred in the padding stay ignored
        region = torch.full((len(ys), len(xs)), num_classes, dtype=torch.int64, device=device)
        masks = _mask_tensor(inst, (img_h, img_w))
        classes = inst.gt_classes.to(torch.int64)
        if len(classes) > 0:
            aux = auxiliary_flags(inst)
            target = classes[~aux]
            if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
                raise ValueError(
                    f"semantic_targets: gt_classes {classes.tolist()} outside [0, {num_classes}) "
                    f"on an object that is not auxiliary (gt_aux {aux.tolist()})"
                )
            labels = torch.where(aux, torch.full_like(classes, ignore_value), classes)
            areas = masks.flatten(1).sum(dim=1)
            sampled = masks[:, ys][:, :, xs]
            # Largest first, so smaller instances are painted over it (stable: ties keep order).
            for k in torch.sort(areas, descending=True, stable=True).indices.tolist():
                region[sampled[k]] = labels[k]
        sem[: len(ys), : len(xs)] = region
        out.append(sem)
    if not out:
        return torch.zeros((0, h, w), dtype=torch.int64)
    return torch.stack(out)


def multilabel_targets(gt_classes: Sequence[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Multi-hot "which classes are in this frame": per image (K_i,) labels -> (N, num_classes).

    Crowd annotations are not in the training Instances (the pair mappers drop them), so every
    listed class is a real, countable object of the frame.
    """
    out = torch.zeros((len(gt_classes), num_classes), dtype=torch.float32)
    for i, c in enumerate(gt_classes):
        c = c.to(torch.int64).cpu()
        if c.numel() == 0:
            continue
        if int(c.min()) < 0 or int(c.max()) >= num_classes:
            raise ValueError(
                f"multilabel_targets: gt_classes {c.tolist()} of image {i} outside "
                f"[0, {num_classes})"
            )
        out[i, c] = 1.0
    if gt_classes:
        out = out.to(gt_classes[0].device)
    return out


def _head_args_from_config(cfg, group: str, input_shape: Dict[str, ShapeSpec], what: str):
    """The arguments both heads read from ``cfg.MODEL.VIS.<group>``: their input feature (which
    must be in ``input_shape``, else a ValueError saying it must be ``what``), the number of
    classes and the loss weight."""
    c = cfg.MODEL.VIS[group]
    if c.IN_FEATURE not in input_shape:
        raise ValueError(
            f"MODEL.VIS.{group}.IN_FEATURE={c.IN_FEATURE!r} is not {what}; the backbone has "
            f"{sorted(input_shape)}"
        )
    return {
        "input_shape": input_shape[c.IN_FEATURE],
        "in_feature": c.IN_FEATURE,
        "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
        "loss_weight": c.LOSS_WEIGHT,
    }


class SemSegAuxHead(nn.Module):
    """FPN level -> ``num_convs`` x (3x3 conv, norm, ReLU) -> 1x1 conv -> (N, K+1, h, w).

    The loss is computed at the feature's resolution (targets sampled down, see
    :func:`semantic_targets`) rather than on logits upsampled to the image: at P3 the
    (K+1)-channel logits are 64x smaller than at full resolution (41 x 360 x 640 floats per
    image for YouTube-VIS, plus the interpolation's backward), while the sampled target costs
    one integer per cell; P3's 8-pixel cells are fine enough for a global, auxiliary signal.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        in_feature: str,
        num_classes: int,
        num_convs: int,
        conv_dim: int,
        norm: str = "",
        loss_weight: float = 1.0,
        ignore_value: int = SEMSEG_IGNORE_VALUE,
    ):
        """
        Args:
            input_shape: channels and stride of the input feature ``in_feature``.
            num_classes: foreground classes; the predictor has ``num_classes + 1`` channels.
            num_convs, conv_dim, norm: the stacked 3x3 convs (norm as ``get_norm``: "", "GN",
                "BN", "SyncBN", ...).
            loss_weight: multiplies the cross-entropy, reported as ``loss_semseg``.
        """
        super().__init__()
        if num_convs < 0:
            raise ValueError(f"MODEL.VIS.SEMSEG.NUM_CONVS must be >= 0, got {num_convs}")
        if not input_shape.stride:
            raise ValueError(f"SemSegAuxHead: input feature {in_feature!r} has no stride")
        self.in_feature = in_feature
        self.num_classes = num_classes
        self.stride = int(input_shape.stride)
        self.loss_weight = loss_weight
        self.ignore_value = ignore_value

        convs = []
        in_ch = input_shape.channels
        for _ in range(num_convs):
            conv = Conv2d(
                in_ch, conv_dim, kernel_size=3, padding=1, bias=not norm,
                norm=get_norm(norm, conv_dim), activation=F.relu,
            )
            weight_init.c2_msra_fill(conv)
            convs.append(conv)
            in_ch = conv_dim
        self.convs = nn.Sequential(*convs)
        self.predictor = Conv2d(in_ch, num_classes + 1, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """``input_shape``: the FPN's output shapes."""
        c = cfg.MODEL.VIS.SEMSEG
        return {
            **_head_args_from_config(cfg, "SEMSEG", input_shape, "a backbone output"),
            "num_convs": c.NUM_CONVS,
            "conv_dim": c.CONV_DIM,
            "norm": c.NORM,
        }

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) feature -> (N, num_classes + 1, h, w) logits."""
        return self.predictor(self.convs(x))

    def forward(
        self,
        features: Dict[str, torch.Tensor],
        targets: Sequence[Instances],
        image_sizes: Sequence[Tuple[int, int]],
        has_mask: Sequence[bool],
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            features: backbone outputs of the N (key) images; reads ``self.in_feature``.
            targets, image_sizes, has_mask: per image, see :func:`semantic_targets`.
        Returns:
            {"loss_semseg": scalar}: mean cross-entropy over the non-ignored cells of the
            batch, times ``loss_weight``. With no mask-annotated image it is an exact zero that
            still depends on every parameter (DDP needs them all in the graph).
        """
        logits = self.layers(features[self.in_feature])
        sem = semantic_targets(
            targets, image_sizes, has_mask, tuple(logits.shape[-2:]), self.stride,
            self.num_classes, self.ignore_value,
        )
        loss = F.cross_entropy(logits, sem, ignore_index=self.ignore_value, reduction="sum")
        # Normalise by the labelled cells of the whole batch, so an image's weight is its
        # labelled area (as a "mean" over one big image would), and box-only images add nothing.
        count = (sem != self.ignore_value).sum().clamp(min=1)
        return {"loss_semseg": loss / count * self.loss_weight}


class MultiLabelHead(nn.Module):
    """Global average pooling -> FC -> (N, num_classes) logits; BCE against multi-hot labels."""

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, in_feature: str, num_classes: int,
                 loss_weight: float = 1.0):
        """
        Args:
            input_shape: channels of the input stage ``in_feature`` (``res5`` of the ResNet).
            num_classes: one logit per class.
            loss_weight: multiplies the BCE, reported as ``loss_multilabel``.
        """
        super().__init__()
        self.in_feature = in_feature
        self.num_classes = num_classes
        self.loss_weight = loss_weight
        self.fc = nn.Linear(input_shape.channels, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """``input_shape``: the bottom-up (ResNet) backbone's output shapes."""
        return _head_args_from_config(
            cfg, "MULTILABEL", input_shape,
            "an output of the bottom-up backbone (add it to MODEL.RESNETS.OUT_FEATURES)",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) backbone stage -> (N, num_classes) logits.

        The pooling averages over the whole padded map: padding is at most one size-divisibility
        block per side, and the head learns on the same padding it is tested with.
        """
        return self.fc(x.mean(dim=(2, 3)))

    def losses(self, logits: torch.Tensor, targets: Sequence[Instances]) -> Dict[str, torch.Tensor]:
        """{"loss_multilabel": mean BCE over (N, num_classes), times ``loss_weight``}; the
        labels are the classes of each frame's objects that are not auxiliary (``gt_aux``)."""
        labels = multilabel_targets([t.gt_classes[~auxiliary_flags(t)] for t in targets],
                                    self.num_classes)
        loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.device))
        return {"loss_multilabel": loss * self.loss_weight}
