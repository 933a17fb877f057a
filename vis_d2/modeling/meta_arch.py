"""``VideoRCNN``: the paper's baseline VIS model (Sec. 2, Fig. 1) as a detectron2 meta-arch.

Training input: pairs (key frame, reference frame) of the same video, as produced by
``vis_d2.data.VideoPairDatasetMapper`` / ``PseudoPairDatasetMapper``. Inference: one frame at a
time, returning detectron2 ``Instances`` with boxes, scores, classes, masks and a track embedding
per detection; linking frames into tracks is the tracker's job (``vis_d2.tracking``).

Optional image-level auxiliary heads (paper Sec. 3.5.1, ``vis_d2.modeling.aux_heads``): semantic
segmentation on P3 and multi-label classification on C5, trained on the key frames.
"""
from contextlib import contextmanager
from typing import Dict, List, Optional

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList, Instances

from .aux_heads import MultiLabelHead, SemSegAuxHead
from .mask_nms import mask_nms

__all__ = ["VideoRCNN"]


def _split_features(features: Dict[str, torch.Tensor], n: int):
    """Split a backbone output over 2n images into (first n, last n)."""
    return ({k: v[:n] for k, v in features.items()}, {k: v[n:] for k, v in features.items()})


def _bottom_up(backbone: nn.Module) -> nn.Module:
    """The module computing the ResNet stages: an FPN's ``bottom_up``, else the backbone."""
    return getattr(backbone, "bottom_up", backbone)


@META_ARCH_REGISTRY.register()
class VideoRCNN(GeneralizedRCNN):
    """GeneralizedRCNN whose ROI heads also learn a track embedding from frame pairs.

    Training ``batched_inputs[i]`` (one pair): ``image`` (C,H,W) and ``instances`` of the key
    frame, ``ref_image`` and ``ref_instances`` of the reference frame; ``instances`` carry
    ``gt_boxes``, ``gt_classes``, ``gt_track_ids`` and (unless the source is box-only)
    ``gt_masks``; optional ``has_mask`` (bool, default True) marks box-only pairs. Key and
    reference frames go through the backbone in one batch. Multi-source data adds the bool
    fields ``gt_aux`` (auxiliary objects, Algorithm 1) and ``gt_mask_valid`` (False: weakly
    segmented, no mask loss), read as all False / all True where missing
    (:mod:`vis_d2.modeling.instance_flags`).

    Inference ``batched_inputs[i]``: ``image`` (+ ``height``/``width``), as detectron2's
    GeneralizedRCNN; output ``instances`` gain ``pred_embeds`` (R, D); their ``pred_classes``
    are the video set's, in [0, C): the ROI heads drop the auxiliary classes.
    """

    @configurable
    def __init__(
        self,
        *,
        semseg_head: Optional[nn.Module] = None,
        multilabel_head: Optional[nn.Module] = None,
        multilabel_rescore_test: bool = False,
        ref_backbone_grad: bool = True,
        mask_nms_thresh: float = 0.0,
        **kwargs,
    ):
        """
        Args:
            semseg_head: a ``SemSegAuxHead`` (or None): training-only semantic segmentation
                loss ``loss_semseg`` on the key frames' FPN features.
            multilabel_head: a ``MultiLabelHead`` (or None): ``loss_multilabel`` on the key
                frames' bottom-up stage ``multilabel_head.in_feature`` (C5). That stage is
                captured by a forward hook on the backbone's ``bottom_up``, so the backbone
                still runs once.
            multilabel_rescore_test: at inference, multiply each detection's score by the
                frame's predicted probability of its class (needs ``multilabel_head``).
            ref_backbone_grad: back-propagate through the backbone from the reference frames
                too (True, MaskTrack R-CNN's way). False runs the reference frames through the
                backbone without gradient: the track head still learns from both frames and
                the backbone from the key frames, and a training step costs about a quarter
                less (used by the CPU demo).
            mask_nms_thresh: > 0 runs per-class NMS on the pasted masks of each frame's
                detections at this IoU, after all rescoring (:mod:`vis_d2.modeling.mask_nms`);
                0 (the default) leaves detectron2's box NMS alone.
            kwargs: GeneralizedRCNN's arguments (backbone, proposal_generator, roi_heads, ...).
        """
        super().__init__(**kwargs)
        if multilabel_rescore_test and multilabel_head is None:
            raise ValueError(
                "MODEL.VIS.MULTILABEL.RESCORE_TEST needs the multi-label head "
                "(MODEL.VIS.MULTILABEL.ENABLED)"
            )
        self.semseg_head = semseg_head
        self.multilabel_head = multilabel_head
        self.multilabel_rescore_test = multilabel_rescore_test
        self.ref_backbone_grad = ref_backbone_grad
        if not 0.0 <= mask_nms_thresh <= 1.0:
            raise ValueError(f"VideoRCNN: MODEL.VIS.MASK_NMS_THRESH must be in [0, 1] (0: off), "
                             f"got {mask_nms_thresh}")
        if mask_nms_thresh > 0 and not getattr(self.roi_heads, "mask_on", False):
            raise ValueError("VideoRCNN: MODEL.VIS.MASK_NMS_THRESH > 0 needs the mask branch "
                             "(MODEL.MASK_ON True)")
        self.mask_nms_thresh = float(mask_nms_thresh)
        self._bottom_up_out: Optional[Dict[str, torch.Tensor]] = None
        self._capturing = False
        if multilabel_head is not None:
            bottom_up = _bottom_up(self.backbone)
            stage = multilabel_head.in_feature
            if stage not in bottom_up.output_shape():
                raise ValueError(
                    f"multi-label head reads {stage!r}, which the bottom-up backbone does not "
                    f"output (it has {sorted(bottom_up.output_shape())})"
                )
            # FPN.forward computes bottom_up(x) internally and keeps only the P-levels; the
            # hook keeps C5 from that same pass instead of running the ResNet twice.
            bottom_up.register_forward_hook(self._capture_bottom_up)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        backbone = ret["backbone"]
        vis = cfg.MODEL.VIS
        if vis.SEMSEG.ENABLED:
            ret["semseg_head"] = SemSegAuxHead(cfg, backbone.output_shape())
        if vis.MULTILABEL.ENABLED:
            ret["multilabel_head"] = MultiLabelHead(cfg, _bottom_up(backbone).output_shape())
        ret["multilabel_rescore_test"] = bool(vis.MULTILABEL.RESCORE_TEST)
        ret["ref_backbone_grad"] = bool(vis.REF_BACKBONE_GRAD)
        ret["mask_nms_thresh"] = float(vis.MASK_NMS_THRESH)
        return ret

    # ------------------------------------------------------------------------------------------
    def _capture_bottom_up(self, module, inputs, output):
        # Only inside this model's own forward: other callers of the backbone (feature
        # extraction, tests, ...) must not leave a C5 map pinned in memory here.
        if self._capturing:
            self._bottom_up_out = output

    @contextmanager
    def _capturing_bottom_up(self):
        """Within: the hook keeps the bottom-up outputs; on exit they are dropped."""
        self._capturing = True
        try:
            yield
        finally:
            self._capturing = False
            self._bottom_up_out = None

    def _multilabel_input(self) -> torch.Tensor:
        """The C5 map (of every image of the batch) captured during the latest backbone pass."""
        if self._bottom_up_out is None:
            raise RuntimeError("VideoRCNN: the backbone's bottom_up did not run in this pass")
        return self._bottom_up_out[self.multilabel_head.in_feature]

    def forward(self, batched_inputs: List[Dict]):
        if not self.training:
            return self.inference(batched_inputs)
        if self.multilabel_head is None:
            return self._forward_train(batched_inputs)
        with self._capturing_bottom_up():
            return self._forward_train(batched_inputs)

    def _forward_train(self, batched_inputs: List[Dict]):
        n = len(batched_inputs)
        gt = [x["instances"].to(self.device) for x in batched_inputs]
        ref_gt = [x["ref_instances"].to(self.device) for x in batched_inputs]
        if self.ref_backbone_grad:
            # Key and reference frames are padded to one size and run through the backbone
            # together: one pass, and both sets of features share the same padding.
            images = self.preprocess_image(
                [{"image": x["image"]} for x in batched_inputs]
                + [{"image": x["ref_image"]} for x in batched_inputs]
            )
            key_images = ImageList(images.tensor[:n], images.image_sizes[:n])
            features, ref_features = _split_features(self.backbone(images.tensor), n)
        else:
            ref_images = self.preprocess_image([{"image": x["ref_image"]} for x in batched_inputs])
            with torch.no_grad():
                ref_features = self.backbone(ref_images.tensor)
            # The key pass comes last so that a captured C5 (multi-label head) is the key's.
            key_images = self.preprocess_image([{"image": x["image"]} for x in batched_inputs])
            features = self.backbone(key_images.tensor)
        proposals, proposal_losses = self.proposal_generator(key_images, features, gt)
        _, detector_losses = self.roi_heads(
            key_images, features, proposals, gt, ref_features=ref_features, ref_targets=ref_gt
        )
        losses = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        # The auxiliary heads see the key frames only (the first n images of the batch).
        if self.semseg_head is not None:
            has_mask = [bool(x.get("has_mask", True)) for x in batched_inputs]
            losses.update(self.semseg_head(features, gt, key_images.image_sizes, has_mask))
        if self.multilabel_head is not None:
            c5 = self._multilabel_input()[:n]
            losses.update(self.multilabel_head.losses(self.multilabel_head(c5), gt))
        return losses

    def inference(
        self,
        batched_inputs: List[Dict[str, torch.Tensor]],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        """GeneralizedRCNN's inference, then two optional steps.

        * ``multilabel_rescore_test``: each detection's score is multiplied by the frame's
          predicted probability of its class, after the ROI heads' NMS, score threshold and
          top-k: it changes the kept detections' scores and ranking, not which are kept (the
          tracker's own score threshold then sees the rescaled scores).
        * ``mask_nms_thresh`` > 0: per-class mask NMS (:func:`vis_d2.modeling.mask_nms.mask_nms`)
          of the postprocessed detections (masks pasted at the input's ``height`` x ``width``),
          after every rescoring. Without ``do_postprocess`` the masks are not pasted yet and
          the step is left to the caller.
        """
        results = self._inference(batched_inputs, detected_instances, do_postprocess)
        if self.mask_nms_thresh > 0 and do_postprocess:
            results = [dict(r, instances=mask_nms(r["instances"], self.mask_nms_thresh))
                       for r in results]
        return results

    def _inference(self, batched_inputs, detected_instances, do_postprocess):
        if not self.multilabel_rescore_test:
            return super().inference(batched_inputs, detected_instances, do_postprocess)
        with self._capturing_bottom_up():
            results = super().inference(batched_inputs, detected_instances, do_postprocess=False)
            probs = self.multilabel_head(self._multilabel_input()).sigmoid()
        for inst, p in zip(results, probs):
            if inst.has("scores"):
                inst.scores = inst.scores * p[inst.pred_classes]
        if do_postprocess:
            # Instances are created at the ImageList's per-image (unpadded) size.
            return GeneralizedRCNN._postprocess(
                results, batched_inputs, [r.image_size for r in results]
            )
        return results
