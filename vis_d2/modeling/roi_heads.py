"""``VISROIHeads``: Mask R-CNN's box and mask heads plus the track head (paper Fig. 1).

Training takes a key frame and a reference frame of the same video; the box and mask losses
use the key frame only (the two frames overlap, so one is enough, paper Sec. 2), the track loss
pairs key-frame proposals with the reference frame's ground truth.

Optional components, each off by default:

* TCIS (``MODEL.VIS.TCIS.ENABLED``, paper Sec. 3.3): an auxiliary training loss ``loss_tcis``
  predicting each instance's reference-frame mask from its key-frame features and mask
  (:mod:`vis_d2.modeling.tcis`). Inference does not run it.
* Mask scoring (``MODEL.VIS.MASKIOU.ENABLED``, paper Sec. 3.5.1): a MaskIoU head trained with
  ``loss_maskiou``; at inference scores become ``score x predicted mask IoU``
  (:mod:`vis_d2.modeling.mask_iou_head`).
* Mask-shape classification (``MODEL.VIS.MASK_CLASS.ENABLED``): a small CNN classifies each
  detection from its predicted mask, trained with ``loss_mask_cls``; at inference it rescores
  the box head's classes (:mod:`vis_d2.modeling.mask_class_head`).
* A Dice loss on the masks (``MODEL.VIS.MASK_DICE_WEIGHT``): ``loss_mask_dice`` beside the
  per-pixel BCE, on the same 28x28 targets (:func:`mask_dice_loss`).

Multi-source data (paper Sec. 3.2; the fields are read by :mod:`vis_d2.modeling.instance_flags`):

* Auxiliary classes (``MODEL.VIS.MSD.NUM_AUX_CLASSES`` = K, Algorithm 1,
  :mod:`vis_d2.modeling.auxiliary_classes`): every per-class output of the ROI heads spans
  C + K classes (box predictor, class-specific mask head, MaskIoU and mask-class heads), and a
  proposal matched to an auxiliary object (``gt_aux``) carries its Algorithm-1 label of this
  step through all of them: with class-agnostic masks its mask trains the one mask like any
  other, with class-specific ones the mask of that auxiliary class. TCIS pairs ground-truth
  instances, which have no such label, so it takes auxiliary objects with class-agnostic masks
  only. At inference the auxiliary classes are dropped before NMS: no detection of one leaves.
* Weak segmentation (``gt_mask_valid`` False): the object trains the box, class and track
  losses; its proposals never reach the mask head's losses (mask, Dice, MaskIoU, mask-class)
  and it never enters TCIS.
"""
from typing import Dict, List, Optional

import torch

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.modeling.roi_heads.mask_head import mask_rcnn_inference, mask_rcnn_loss
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage

from .auxiliary_classes import (
    NUM_AUX_CLASSES_KEY,
    check_num_aux_classes,
    drop_auxiliary_outputs,
    relabel_auxiliary,
)
from .instance_flags import auxiliary_flags, mask_valid_flags
from .mask_class_head import MaskClassHead, mask_class_inference, mask_class_loss
from .mask_iou_head import (
    MaskIoUHead,
    gt_area_outside_boxes,
    mask_iou_inference,
    mask_iou_loss,
    mask_iou_targets,
)
from .tcis import TCIS, tcis_instance_pairs, tcis_mask_loss
from .track_head import TrackHead, track_embedding_loss

__all__ = ["VISROIHeads"]


def _zero_loss(module: torch.nn.Module) -> torch.Tensor:
    """A zero that depends on every parameter of ``module`` (DDP needs each one in the graph)."""
    return sum(p.sum() for p in module.parameters()) * 0.0


def _mask_of_class(mask_logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(R, M, M): each RoI's mask logits for its class from (R, K, M, M), or the one mask of
    class-agnostic (R, 1, M, M) logits."""
    if mask_logits.shape[1] == 1:
        return mask_logits[:, 0]
    return mask_logits[torch.arange(len(classes), device=mask_logits.device), classes]


def mask_dice_loss(mask_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over RoIs of ``1 - (2 |p.g| + 1) / (|p| + |g| + 1)``.

    mask_logits: (R, M, M) logits; targets: (R, M, M) in [0, 1]. The +1 keeps an empty target
    with an empty prediction at zero loss.
    """
    if mask_logits.shape[0] == 0:
        return mask_logits.sum() * 0.0
    p = mask_logits.sigmoid().flatten(1)
    g = targets.to(p.dtype).flatten(1)
    dice = (2.0 * (p * g).sum(1) + 1.0) / (p.sum(1) + g.sum(1) + 1.0)
    return (1.0 - dice).mean()


@ROI_HEADS_REGISTRY.register()
class VISROIHeads(StandardROIHeads):
    """StandardROIHeads + a track head reading the box pooler's RoI features, optionally TCIS
    (training only) and a MaskIoU head.

    Inference adds ``pred_embeds`` (R, D) to each image's predicted ``Instances``, and with the
    MaskIoU head ``pred_maskiou`` (R,) (``scores`` are then rescored by it).
    """

    @configurable
    def __init__(
        self,
        *,
        track_head: torch.nn.Module,
        track_loss_weight: float = 1.0,
        track_detach_iters: int = 0,
        tcis: Optional[torch.nn.Module] = None,
        tcis_loss_weight: float = 1.0,
        maskiou_head: Optional[torch.nn.Module] = None,
        maskiou_loss_weight: float = 1.0,
        mask_class_head: Optional[torch.nn.Module] = None,
        mask_class_loss_weight: float = 1.0,
        mask_class_score_weight: float = 0.5,
        mask_class_on_gt_masks: bool = False,
        mask_dice_weight: float = 0.0,
        num_aux_classes: int = 0,
        **kwargs,
    ):
        """
        Args:
            track_head: RoI features (R, C, S_box, S_box) -> embeddings (R, D).
            track_loss_weight: weight of ``loss_track``.
            track_detach_iters: for this many first training iterations the track head reads
                the key and reference frames' features detached, so ``loss_track`` trains the
                track head only and not the backbone and FPN; 0 never detaches.
            tcis: a :class:`~vis_d2.modeling.tcis.TCIS` over the mask pooler's features, or
                None to disable TCIS.
            tcis_loss_weight: weight of ``loss_tcis``.
            maskiou_head: a :class:`~vis_d2.modeling.mask_iou_head.MaskIoUHead`, or None to
                disable mask scoring.
            maskiou_loss_weight: weight of ``loss_maskiou``.
            mask_class_head: a :class:`~vis_d2.modeling.mask_class_head.MaskClassHead` on the
                predicted masks, or None to disable mask-shape classification.
            mask_class_loss_weight: weight of ``loss_mask_cls``.
            mask_class_score_weight: w of the inference rescoring ``s^(1-w) * p^w``, in [0, 1].
            mask_class_on_gt_masks: train the mask-class head on the ground-truth masks of the
                same proposals as well as on the predicted ones.
            mask_dice_weight: weight of ``loss_mask_dice`` (:func:`mask_dice_loss` of the mask
                logits against the mask loss's targets); 0 disables it.
            num_aux_classes: K, the last K of the ``num_classes`` foreground classes are
                auxiliary (Algorithm 1); ``num_classes`` is then C + K, as the box predictor's
                and every other per-class head's outputs.
            kwargs: StandardROIHeads' arguments.
        """
        super().__init__(**kwargs)
        self.num_aux_classes = check_num_aux_classes(num_aux_classes)
        if self.num_aux_classes >= self.num_classes:
            raise ValueError(f"VISROIHeads: {NUM_AUX_CLASSES_KEY} = {num_aux_classes} leaves none "
                             f"of the {self.num_classes} classes to the video set (num_classes "
                             "counts the video set's classes plus the auxiliary ones)")
        # C: the classes a detection may have.
        self.num_target_classes = self.num_classes - self.num_aux_classes
        predictor = getattr(self.mask_head, "predictor", None) if self.mask_on else None
        # TCIS takes auxiliary objects only where their mask needs no class: one mask output.
        self.class_agnostic_mask = getattr(predictor, "out_channels", None) == 1
        self.track_head = track_head
        self.track_loss_weight = track_loss_weight
        if not (isinstance(track_detach_iters, int) and track_detach_iters >= 0):
            raise ValueError("VISROIHeads: MODEL.VIS.TRACK_HEAD.DETACH_ITERS must be an integer "
                             f">= 0, got {track_detach_iters!r}")
        self.track_detach_iters = track_detach_iters
        if (tcis is not None or maskiou_head is not None or mask_class_head is not None) and (
            not self.mask_on or self.mask_pooler is None
        ):
            raise ValueError(
                "VISROIHeads: MODEL.VIS.TCIS / MODEL.VIS.MASKIOU / MODEL.VIS.MASK_CLASS need the "
                "mask branch with a pooler (MODEL.MASK_ON True and a non-empty "
                "MODEL.ROI_MASK_HEAD.POOLER_TYPE)"
            )
        if not 0.0 <= mask_class_score_weight <= 1.0:
            raise ValueError("VISROIHeads: MODEL.VIS.MASK_CLASS.SCORE_WEIGHT must be in [0, 1], "
                             f"got {mask_class_score_weight}")
        self.tcis = tcis
        self.tcis_loss_weight = tcis_loss_weight
        self.maskiou_head = maskiou_head
        self.maskiou_loss_weight = maskiou_loss_weight
        self.mask_class_head = mask_class_head
        self.mask_class_loss_weight = mask_class_loss_weight
        self.mask_class_score_weight = mask_class_score_weight
        self.mask_class_on_gt_masks = bool(mask_class_on_gt_masks)
        if not mask_dice_weight >= 0.0:
            raise ValueError("VISROIHeads: MODEL.VIS.MASK_DICE_WEIGHT must be >= 0, got "
                             f"{mask_dice_weight}")
        if mask_dice_weight > 0.0 and not self.mask_on:
            raise ValueError("VISROIHeads: MODEL.VIS.MASK_DICE_WEIGHT needs MODEL.MASK_ON True")
        self.mask_dice_weight = float(mask_dice_weight)

    @classmethod
    def from_config(cls, cfg, input_shape):
        k = check_num_aux_classes(cfg.MODEL.VIS.MSD.NUM_AUX_CLASSES)
        if k:
            # Every per-class head is built for the C + K classes of the layout.
            cfg = cfg.clone()
            cfg.defrost()
            cfg.MODEL.ROI_HEADS.NUM_CLASSES += k
        ret = super().from_config(cfg, input_shape)
        ret["num_aux_classes"] = k
        ret.update(cls._init_track_head(cfg, input_shape))
        ret.update(cls._init_tcis_and_maskiou(cfg, input_shape))
        if cfg.MODEL.VIS.MASK_CLASS.ENABLED:
            if not cfg.MODEL.MASK_ON:
                raise ValueError("MODEL.VIS.MASK_CLASS.ENABLED needs MODEL.MASK_ON True")
            c = cfg.MODEL.VIS.MASK_CLASS
            ret.update(mask_class_head=MaskClassHead(cfg), mask_class_loss_weight=c.LOSS_WEIGHT,
                       mask_class_score_weight=c.SCORE_WEIGHT,
                       mask_class_on_gt_masks=c.TRAIN_ON_GT_MASKS)
        ret["mask_dice_weight"] = cfg.MODEL.VIS.MASK_DICE_WEIGHT
        return ret

    @classmethod
    def _init_track_head(cls, cfg, input_shape):
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        res = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        channels = input_shape[in_features[0]].channels
        shape = ShapeSpec(channels=channels, height=res, width=res)
        return {
            "track_head": TrackHead(cfg, shape),
            "track_loss_weight": cfg.MODEL.VIS.TRACK_HEAD.LOSS_WEIGHT,
            "track_detach_iters": cfg.MODEL.VIS.TRACK_HEAD.DETACH_ITERS,
        }

    @classmethod
    def _init_tcis_and_maskiou(cls, cfg, input_shape):
        """TCIS and the MaskIoU head both read the mask pooler's output (C, S, S)."""
        tcis_on, maskiou_on = cfg.MODEL.VIS.TCIS.ENABLED, cfg.MODEL.VIS.MASKIOU.ENABLED
        if not (tcis_on or maskiou_on):
            return {}
        if not cfg.MODEL.MASK_ON:
            raise ValueError("MODEL.VIS.TCIS.ENABLED / MODEL.VIS.MASKIOU.ENABLED need "
                             "MODEL.MASK_ON True")
        channels = input_shape[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]].channels
        res = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
        shape = ShapeSpec(channels=channels, height=res, width=res)
        ret = {}
        if tcis_on:
            ret["tcis"] = TCIS(cfg, shape)
            ret["tcis_loss_weight"] = cfg.MODEL.VIS.TCIS.LOSS_WEIGHT
        if maskiou_on:
            ret["maskiou_head"] = MaskIoUHead(cfg, shape)
            ret["maskiou_loss_weight"] = cfg.MODEL.VIS.MASKIOU.LOSS_WEIGHT
        return ret

    # ------------------------------------------------------------------------------------------
    def embed_boxes(self, features: Dict[str, torch.Tensor], boxes: List) -> torch.Tensor:
        """Embeddings (sum_i R_i, D) of the given per-image Boxes, from the box pooler."""
        feats = [features[f] for f in self.box_in_features]
        return self.track_head(self.box_pooler(feats, boxes))

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
        ref_features: Optional[Dict[str, torch.Tensor]] = None,
        ref_targets: Optional[List[Instances]] = None,
    ):
        """
        Args:
            images, features, proposals, targets: as in ``StandardROIHeads`` (key frame).
                Training targets carry ``gt_track_ids`` (long), which
                ``label_and_sample_proposals`` copies onto the matched proposals.
            ref_features: backbone features of the reference frames (training only).
            ref_targets: ground-truth Instances of the reference frames, with ``gt_boxes`` and
                ``gt_track_ids`` (and ``gt_classes``/``gt_masks`` for TCIS; training only).
                Key and reference targets may carry the bool fields ``gt_aux`` and
                ``gt_mask_valid`` (:mod:`vis_d2.modeling.instance_flags`); an object that is not
                auxiliary must have a class in [0, C).
        Returns:
            training: (proposals, losses) with ``loss_track`` (and ``loss_tcis``,
            ``loss_maskiou`` when enabled) added to the Mask R-CNN losses.
            inference: (instances with pred_boxes/scores/pred_classes/pred_masks/pred_embeds
            [/pred_maskiou], {}).
        """
        if not self.training:
            return super().forward(images, features, proposals, None)
        if ref_features is None or ref_targets is None:
            raise ValueError("VISROIHeads needs ref_features and ref_targets in training")
        self._check_targets(targets, ref_targets)
        proposals, losses = super().forward(images, features, proposals, targets)
        losses.update(self._forward_track(features, proposals, ref_features, ref_targets))
        if self.tcis is not None:
            losses.update(self._forward_tcis(features, targets, ref_features, ref_targets))
        return proposals, losses

    def _check_targets(self, targets: List[Instances], ref_targets: List[Instances]) -> None:
        """A ValueError naming the pair and frame where an auxiliary object comes without
        auxiliary classes (K = 0) or another object has a class outside [0, C)."""
        c, k = self.num_target_classes, self.num_aux_classes
        frames = [(i, name, t) for name, ts in (("key", targets), ("reference", ref_targets))
                  for i, t in enumerate(ts) if len(t) > 0]
        if not frames:
            return
        # One flag per frame, read back once: a frame-by-frame check would wait on the GPU
        # for each frame.
        bad = torch.stack([
            (auxiliary_flags(t) & (k == 0)).any()
            | (~auxiliary_flags(t) & ((t.gt_classes < 0) | (t.gt_classes >= c))).any()
            for _, _, t in frames])
        if not bool(bad.any()):
            return
        i, name, t = frames[int(bad.nonzero()[0])]
        aux = auxiliary_flags(t)
        if k == 0 and bool(aux.any()):
            raise ValueError(
                f"VISROIHeads: pair {i}: the {name} frame has {int(aux.sum())} auxiliary objects "
                f"(gt_aux True) but {NUM_AUX_CLASSES_KEY} is 0; with 0 the data must drop them")
        raise ValueError(
            f"VISROIHeads: pair {i}: the {name} frame's gt_classes {t.gt_classes.tolist()} "
            f"(gt_aux {aux.tolist()}) give an object that is not auxiliary a class outside "
            f"[0, {c}) (MODEL.ROI_HEADS.NUM_CLASSES)")

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """StandardROIHeads' box branch; with K auxiliary classes, training first relabels the
        proposals matched to auxiliary objects (Algorithm 1, in place, so that the mask branch
        reads the same labels) and inference drops the auxiliary classes before the score
        threshold, NMS and top-k. With K = 0 it is detectron2's own."""
        if self.num_aux_classes == 0:
            return super()._forward_box(features, proposals)
        box_features = self.box_pooler([features[f] for f in self.box_in_features],
                                       [x.proposal_boxes for x in proposals])
        predictions = self.box_predictor(self.box_head(box_features))
        del box_features
        predictor = self.box_predictor
        if self.training:
            self._relabel_auxiliary(proposals, predictions[0])
            losses = predictor.losses(predictions, proposals)
            if self.train_on_pred_boxes:  # in place, so after the losses (as detectron2)
                with torch.no_grad():
                    pred_boxes = predictor.predict_boxes_for_gt_classes(predictions, proposals)
                    for p, b in zip(proposals, pred_boxes):
                        p.proposal_boxes = Boxes(b)
            return losses
        boxes, probs = drop_auxiliary_outputs(
            predictor.predict_boxes(predictions, proposals),
            predictor.predict_probs(predictions, proposals),
            self.num_target_classes, self.num_aux_classes,
            box_dim=len(predictor.box2box_transform.weights))
        pred_instances, _ = fast_rcnn_inference(
            boxes, probs, [x.image_size for x in proposals], predictor.test_score_thresh,
            predictor.test_nms_thresh, predictor.test_topk_per_image)
        return pred_instances

    def _relabel_auxiliary(self, proposals: List[Instances], class_scores: torch.Tensor) -> None:
        """Algorithm 1 on the sampled proposals (in place on their ``gt_classes``), given the
        box predictor's (sum_i R_i, C + K + 1) class logits; logs how many proposals it
        relabelled and the share that kept their predicted auxiliary class."""
        is_aux = torch.cat([auxiliary_flags(p) & (p.gt_classes != self.num_classes)
                            for p in proposals])
        labels, from_scores = relabel_auxiliary(
            torch.cat([p.gt_classes for p in proposals]), is_aux, class_scores,
            self.num_target_classes, self.num_aux_classes)
        for p, new in zip(proposals, labels.split([len(p) for p in proposals])):
            p.gt_classes = new
        n = int(is_aux.sum())
        storage = get_event_storage()
        storage.put_scalar("msd/aux_proposals", n)
        if n:
            storage.put_scalar("msd/aux_label_from_scores", float(from_scores.sum()) / n)

    def _forward_track(self, features, proposals, ref_features, ref_targets):
        if self.track_detach_iters > 0 and get_event_storage().iter < self.track_detach_iters:
            # From some initialisations the embedding loss, which wants features that tell
            # instances apart, holds the shared FPN features where the mask head learns slowly,
            # so the box and mask heads shape them first. The reference features too: with
            # REF_BACKBONE_GRAD they carry gradient.
            features = {k: v.detach() for k, v in features.items()}
            ref_features = {k: v.detach() for k, v in ref_features.items()}
        fg, _ = select_foreground_proposals(proposals, self.num_classes)
        key_embeds = self.embed_boxes(features, [p.proposal_boxes for p in fg])
        ref_embeds = self.embed_boxes(ref_features, [t.gt_boxes for t in ref_targets])
        key_embeds = key_embeds.split([len(p) for p in fg])
        ref_embeds = ref_embeds.split([len(t) for t in ref_targets])
        # detectron2 copies gt_* fields onto the proposals of images with ground truth only;
        # an image without any has no foreground proposal, hence no track id to read.
        key_ids = [p.gt_track_ids if p.has("gt_track_ids")
                   else torch.zeros(0, dtype=torch.int64, device=p.proposal_boxes.device)
                   for p in fg]
        loss = track_embedding_loss(
            list(key_embeds), key_ids, list(ref_embeds), [t.gt_track_ids for t in ref_targets])
        return {"loss_track": loss * self.track_loss_weight}

    def _forward_tcis(self, features, targets, ref_features, ref_targets):
        """``loss_tcis``: the shared mask head on ``TCIS(F_t, F_t+d, m_t)`` against the
        reference-frame ground-truth masks, over instances present in both frames."""
        pairs = tcis_instance_pairs(targets, ref_targets,
                                    with_auxiliary=self.class_agnostic_mask)
        num = sum(len(k) for k, _ in pairs)
        get_event_storage().put_scalar("tcis/num_instances", num)
        if num == 0:
            return {"loss_tcis": _zero_loss(self.tcis)}
        key_sel = [t[k] for t, (k, _) in zip(targets, pairs)]
        ref_sel = [t[r] for t, (_, r) in zip(ref_targets, pairs)]
        key_feats = self.mask_pooler([features[f] for f in self.mask_in_features],
                                     [t.gt_boxes for t in key_sel])
        ref_feats = self.mask_pooler([ref_features[f] for f in self.mask_in_features],
                                     [t.gt_boxes for t in ref_sel])
        side = key_feats.shape[-1]
        key_masks = torch.cat([
            t.gt_masks.crop_and_resize(t.gt_boxes.tensor, side).to(key_feats.device)
            for t in key_sel if len(t) > 0  # box-only images have no gt_masks
        ])
        logits = self.mask_head.layers(self.tcis(key_feats, ref_feats, key_masks))
        return {"loss_tcis": tcis_mask_loss(logits, ref_sel) * self.tcis_loss_weight}

    def _forward_mask(self, features: Dict[str, torch.Tensor], instances: List[Instances]):
        """As StandardROIHeads, except that

        * training images without ground-truth masks (box-only datasets such as OpenImages,
          paper Sec. 3.2) and proposals of objects whose mask is not valid (``gt_mask_valid``
          False: weak segmentation) are left out of every mask loss;
        * with the MaskIoU head, training adds ``loss_maskiou`` and inference rescores.

        Returns:
            training: {"loss_mask"[, "loss_maskiou"]}; inference: ``instances`` with
            ``pred_masks`` (R, 1, M, M) probabilities [and ``pred_maskiou``].
        """
        if not self.mask_on:
            return {} if self.training else instances
        if not self.training:
            pooled = self._mask_features(features, [x.pred_boxes for x in instances])
            logits = self.mask_head.layers(pooled)
            mask_rcnn_inference(logits, instances)
            if self.maskiou_head is not None or self.mask_class_head is not None:
                probs = torch.cat([x.pred_masks for x in instances]).detach()  # (R, 1, M, M)
            if self.mask_class_head is not None:
                mask_class_inference(self.mask_class_head(probs), instances,
                                     self.mask_class_score_weight)
            if self.maskiou_head is not None:
                mask_iou_inference(self.maskiou_head(pooled, probs), instances)
            return instances

        fg, _ = select_foreground_proposals(instances, self.num_classes)
        fg = [p[mask_valid_flags(p)] for p in fg]
        keep = [i for i, p in enumerate(fg) if p.has("gt_masks") and len(p) > 0]
        if not keep:
            losses = {"loss_mask": _zero_loss(self.mask_head)}
            if self.maskiou_head is not None:
                losses["loss_maskiou"] = _zero_loss(self.maskiou_head)
            if self.mask_class_head is not None:
                losses["loss_mask_cls"] = _zero_loss(self.mask_class_head)
            if self.mask_dice_weight > 0:
                losses["loss_mask_dice"] = _zero_loss(self.mask_head)
            return losses
        kept = [fg[i] for i in keep]
        pooled = self._mask_features(features, [p.proposal_boxes for p in kept], keep)
        logits = self.mask_head.layers(pooled)
        loss_weight = getattr(self.mask_head, "loss_weight", 1.0)
        vis_period = getattr(self.mask_head, "vis_period", 0)
        losses = {"loss_mask": mask_rcnn_loss(logits, kept, vis_period) * loss_weight}
        # Dice, MaskIoU and the mask classifier read each proposal's mask for its ground-truth
        # class, and the MaskIoU and Dice targets and the classifier's extra inputs are the
        # same ground-truth crops: select and cut once.
        gt_classes = torch.cat([p.gt_classes for p in kept]).to(torch.long)
        gt_logits = _mask_of_class(logits, gt_classes)
        gt_crops = None
        if self.maskiou_head is not None or self.mask_dice_weight > 0 or (
                self.mask_class_head is not None and self.mask_class_on_gt_masks):
            gt_crops = self._gt_mask_crops(kept, logits)
        if self.mask_dice_weight > 0:
            losses["loss_mask_dice"] = self.mask_dice_weight * mask_dice_loss(gt_logits, gt_crops)
        if self.maskiou_head is not None:
            losses["loss_maskiou"] = self._maskiou_loss(pooled, gt_logits, gt_classes,
                                                        gt_crops, kept)
        if self.mask_class_head is not None:
            losses["loss_mask_cls"] = self._mask_class_loss(gt_logits, gt_classes, gt_crops)
        return losses

    def _mask_class_loss(self, gt_logits: torch.Tensor, gt_classes: torch.Tensor,
                         gt_crops: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``loss_mask_cls`` for foreground proposals with masks.

        gt_logits: (R, M, M) each proposal's mask logits for its ground-truth class (the one
        mask when class-agnostic); gt_classes: (R,) long; gt_crops: (R, M, M) from
        :meth:`_gt_mask_crops`, needed with ``mask_class_on_gt_masks``.
        The head reads that mask, detached so that it does not train the mask branch; at
        inference it reads the mask of the predicted class. With ``mask_class_on_gt_masks`` it
        also reads each proposal's ground-truth mask cropped to the proposal box (the mask
        loss's target, binary): the loss is the mean over the 2R inputs.
        """
        inputs = gt_logits.detach().sigmoid()[:, None]
        if self.mask_class_on_gt_masks:
            inputs = torch.cat([inputs, gt_crops[:, None]])
            gt_classes = gt_classes.repeat(2)
        pred = self.mask_class_head(inputs)
        return mask_class_loss(pred, gt_classes) * self.mask_class_loss_weight

    @staticmethod
    def _gt_mask_crops(instances: List[Instances], mask_logits: torch.Tensor) -> torch.Tensor:
        """(R, M, M) float: each proposal's ground-truth mask cropped and resized to its box
        (the target of ``mask_rcnn_loss``), as ``mask_logits`` (R, K or 1, M, M) is laid out."""
        side = mask_logits.shape[-1]
        return torch.cat([
            p.gt_masks.crop_and_resize(p.proposal_boxes.tensor, side).to(mask_logits.device)
            for p in instances
        ]).to(mask_logits.dtype)

    def _mask_features(self, features, boxes: List[Boxes], keep: Optional[List[int]] = None):
        """Mask-branch input for the given per-image boxes: the pooled (R, C, S, S) RoI features
        (or, without a mask pooler, the feature dict), over the images in ``keep`` if given."""
        feats = {f: (features[f] if keep is None else features[f][keep])
                 for f in self.mask_in_features}
        if self.mask_pooler is None:
            return feats
        return self.mask_pooler([feats[f] for f in self.mask_in_features], boxes)

    def _maskiou_loss(self, pooled: torch.Tensor, gt_logits: torch.Tensor,
                      gt_classes: torch.Tensor, gt_crops: torch.Tensor,
                      instances: List[Instances]) -> torch.Tensor:
        """``loss_maskiou`` for foreground proposals with masks.

        pooled: (R, C, S, S) mask RoI features; gt_logits: (R, M, M) each proposal's mask
        logits for its ground-truth class; gt_classes: (R,) long; gt_crops: (R, M, M) their
        ground-truth masks cropped to the proposal boxes (:meth:`_gt_mask_crops`); instances:
        the proposals of those R rows, per image (``proposal_boxes``, ``gt_masks``).
        The head reads the predicted mask, detached: the IoU target and the head's input must
        not train the mask head. The target IoU counts the object's whole ground-truth area,
        the part outside the proposal included (:func:`gt_area_outside_boxes`).
        """
        logits = gt_logits.detach()
        side = logits.shape[-1]
        outside = torch.cat([
            gt_area_outside_boxes(p.gt_masks, p.proposal_boxes.tensor, side, p.image_size)
            for p in instances]).to(logits.device)
        targets = mask_iou_targets(logits, gt_crops, outside)
        pred = self.maskiou_head(pooled, logits.sigmoid()[:, None])
        return mask_iou_loss(pred, gt_classes, targets) * self.maskiou_loss_weight

    def forward_with_given_boxes(self, features, instances):
        instances = super().forward_with_given_boxes(features, instances)
        embeds = self.embed_boxes(features, [x.pred_boxes for x in instances])
        for inst, e in zip(instances, embeds.split([len(x) for x in instances])):
            inst.pred_embeds = e
        return instances
