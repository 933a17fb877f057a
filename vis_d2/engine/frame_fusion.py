"""``FusedFrameModel``: one frame's detections from several passes, for multi-scale testing
(paper Sec. 3.5.5) and model ensembles (Sec. 3.5.2); the per-frame step of every inference path
(the evaluator's :func:`~vis_d2.engine.video_inference.inference_on_videos`, ``VISPredictor``,
``python -m vis_d2.predict`` and ``python -m vis_d2.ensemble``).

A *pass* is one model at one scale (a factor of its test size, ``TEST.VIS.SCALES``). For a
frame:

1. every pass detects as the model alone does (its NMS, thresholds and rescoring);
2. their boxes are merged per class with the paper's rule, score = max of the merged boxes
   (:func:`~vis_d2.engine.box_fusion.fuse_boxes`);
3. the merged boxes go back to every pass as given boxes (the ROI heads'
   ``forward_with_given_boxes`` on that pass's own backbone features, boxes rescaled to its
   input), and the passes' mask probabilities and track embeddings are averaged;
4. the averaged masks are pasted at the frame's size and thresholded at 0.5, as detectron2's
   postprocessing does.

The merged score and class are kept: the MaskIoU / mask-class rescoring of step 3 is not applied
a second time. Step 3 averages each box's M x M mask probabilities in the box's own frame
before pasting; pasting is bilinear interpolation, linear in the mask, so this equals averaging
the pasted soft masks at the frame's size, without R full-size float masks in memory. Passes
whose mask heads differ in resolution M are bilinearly resized to the largest M first.

With one pass (one model, ``TEST.VIS.SCALES`` (1.0,)) the frame runs through the model exactly
as before multi-scale testing existed: no fusion and no ``ensemble-boxes`` import. The backbone
features of every pass are held until step 3, so memory grows with the number of passes.
"""
import contextlib
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.data import transforms as T
from detectron2.layers import paste_masks_in_image
from detectron2.structures import Boxes, Instances

from .box_fusion import DEFAULT_IOU_THRESH, fuse_boxes
from .model_categories import model_categories

__all__ = ["FusionMember", "FusedFrameModel", "average_mask_probs", "check_compatible",
           "check_scales"]

# detectron2's threshold for pasting mask probabilities (detector_postprocess's default).
MASK_THRESHOLD = 0.5


@dataclass(eq=False)
class FusionMember:
    """One model of a :class:`FusedFrameModel` with what it needs to read a frame.

    Attributes:
        name: names the model in messages (e.g. its config file).
        model: a ``VideoRCNN`` (or any GeneralizedRCNN whose ROI heads give ``pred_embeds``) in
            eval mode.
        input_format: "BGR" or "RGB", the model's ``INPUT.FORMAT``.
        min_size, max_size: its ``INPUT.MIN_SIZE_TEST`` and ``INPUT.MAX_SIZE_TEST``, the test
            size the scales multiply.
        classes: (class names or None, dataset category ids) by contiguous index, the class list
            members must share; None skips that check.
    """

    name: str
    model: nn.Module
    input_format: str
    min_size: int
    max_size: int
    classes: Optional[Tuple[Optional[Tuple[str, ...]], Tuple[int, ...]]] = None

    def __post_init__(self):
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"model '{self.name}': INPUT.FORMAT must be RGB or BGR, got "
                             f"{self.input_format!r}")
        if int(self.min_size) <= 0 or int(self.max_size) <= 0:
            raise ValueError(f"model '{self.name}': INPUT.MIN_SIZE_TEST and MAX_SIZE_TEST must be "
                             f"> 0, got {self.min_size} and {self.max_size}")

    @classmethod
    def from_config(cls, cfg, model: nn.Module, name: str = "model",
                    with_classes: bool = True) -> "FusionMember":
        """The member of ``model`` built from ``cfg``; ``with_classes`` reads its class list
        (:func:`~vis_d2.engine.model_categories.model_categories`)."""
        classes = None
        if with_classes:
            names, ids = model_categories(cfg)
            classes = (tuple(names) if names is not None else None, tuple(ids))
        return cls(name=name, model=model, input_format=cfg.INPUT.FORMAT,
                   min_size=int(cfg.INPUT.MIN_SIZE_TEST), max_size=int(cfg.INPUT.MAX_SIZE_TEST),
                   classes=classes)

    @property
    def embed_dim(self) -> int:
        """D of the model's track embeddings."""
        try:
            return int(self.model.roi_heads.track_head.embed_dim)
        except AttributeError:
            raise ValueError(f"model '{self.name}' has no track head "
                             "(roi_heads.track_head.embed_dim)") from None

    def model_input(self, image: np.ndarray, image_format: str, scale: float) -> dict:
        """The detectron2 input of ``image`` (H, W, 3) uint8 in ``image_format`` for this model at
        ``scale`` x its test size: ``{"image": (3, H', W') uint8, "height": H, "width": W}``."""
        img = image if image_format == self.input_format else image[:, :, ::-1]
        short = int(round(self.min_size * scale))
        aug = T.ResizeShortestEdge([short, short], int(round(self.max_size * scale)))
        resized = aug.get_transform(img).apply_image(img)
        return {"image": torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))),
                "height": image.shape[0], "width": image.shape[1]}


def check_scales(scales, key: str = "TEST.VIS.SCALES") -> Tuple[float, ...]:
    """``scales`` as a tuple of floats, or a ValueError naming ``key`` unless each is a finite
    number > 0 and there is at least one."""
    if isinstance(scales, (int, float)):
        scales = (scales,)
    # any sequence: a LazyConfig gives its tuples as OmegaConf ListConfigs
    if isinstance(scales, str) or not isinstance(scales, Sequence) or not scales:
        raise ValueError(f"{key} must be a non-empty list of factors of the test size, e.g. "
                         f"(0.7, 1.0, 1.3), got {scales!r}")
    out = []
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) \
                or s <= 0:
            raise ValueError(f"{key}: every scale must be a number > 0, got {s!r} in {scales!r}")
        out.append(float(s))
    return tuple(out)


def average_mask_probs(probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The mean of P passes' mask probabilities of the same R boxes.

    Args:
        probs: P tensors (R, 1, M_p, M_p) in [0, 1], each box's mask in the box's frame.

    Returns:
        (R, 1, M, M) float32, M the largest M_p; smaller ones are resized bilinearly first.
    """
    side = max(p.shape[-1] for p in probs)
    total = None
    for p in probs:
        p = p.float()
        if p.shape[-1] != side and p.shape[0] > 0:
            p = F.interpolate(p, size=(side, side), mode="bilinear", align_corners=False)
        total = p if total is None else total + p
    return total / len(probs)


@contextlib.contextmanager
def _backbone_features(model: nn.Module, out: dict):
    """Within: ``out`` receives the features of the model's latest backbone pass."""
    handle = model.backbone.register_forward_hook(lambda m, i, o: out.update(o))
    try:
        yield out
    finally:
        handle.remove()


class FusedFrameModel:
    """Per-frame detections of one or more models at one or more scales (module doc).

    Attributes:
        members: the models (:class:`FusionMember`), all with one class list and one
            embedding size.
        scales: factors of each member's test size; every member runs at each.
        iou_thresh: IoU above which boxes of one class merge (``TEST.VIS.FUSION_IOU_THRESH``).
        max_detections: at most this many merged boxes per frame, the best
            (``TEST.DETECTIONS_PER_IMAGE``), as one model keeps at most that many.
    """

    def __init__(self, members: Sequence[FusionMember], scales=(1.0,),
                 iou_thresh: float = DEFAULT_IOU_THRESH, max_detections: int = 100):
        self.members: List[FusionMember] = list(members)
        if not self.members:
            raise ValueError("FusedFrameModel needs at least one model")
        self.scales = check_scales(scales)
        if not 0.0 < float(iou_thresh) < 1.0:
            raise ValueError(f"TEST.VIS.FUSION_IOU_THRESH must be in (0, 1), got {iou_thresh}")
        self.iou_thresh = float(iou_thresh)
        if int(max_detections) <= 0:
            raise ValueError(f"TEST.DETECTIONS_PER_IMAGE must be > 0, got {max_detections}")
        self.max_detections = int(max_detections)
        for m in self.members[1:]:
            check_compatible(self.members[0], m)

    @classmethod
    def from_config(cls, cfg, model: nn.Module, name: str = "model") -> "FusedFrameModel":
        """``model`` alone at the scales of ``cfg.TEST.VIS.SCALES`` (a DistributedDataParallel
        model is unwrapped: the fusion calls its backbone and ROI heads)."""
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        # One model has no other's class list to match, so its categories are not read here.
        member = FusionMember.from_config(cfg, model, name, with_classes=False)
        return cls([member], check_scales(cfg.TEST.VIS.SCALES), cfg.TEST.VIS.FUSION_IOU_THRESH,
                   cfg.TEST.DETECTIONS_PER_IMAGE)

    @property
    def models(self) -> List[nn.Module]:
        return [m.model for m in self.members]

    @property
    def embed_dim(self) -> int:
        return self.members[0].embed_dim

    @property
    def num_passes(self) -> int:
        return len(self.members) * len(self.scales)

    @torch.no_grad()
    def __call__(self, image: np.ndarray, image_format: str = "BGR") -> Instances:
        """One frame -> its detections.

        Args:
            image: (H, W, 3) uint8 frame at its own size.
            image_format: "BGR" or "RGB", the channel order of ``image``.

        Returns:
            Instances of size (H, W) with ``pred_boxes`` (XYXY pixels), ``scores``,
            ``pred_classes``, ``pred_masks`` (R, H, W) bool and ``pred_embeds`` (R, D) float32;
            one pass: the model's own outputs.
        """
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"FusedFrameModel: image_format must be RGB or BGR, got "
                             f"{image_format!r}")
        if self.num_passes == 1:
            member = self.members[0]
            return member.model([member.model_input(image, image_format, self.scales[0])])[0][
                "instances"]
        height, width = image.shape[:2]
        passes = []  # (member, scale, input (h', w'), features, detections)
        for member in self.members:
            for scale in self.scales:
                inp = member.model_input(image, image_format, scale)
                with _backbone_features(member.model, {}) as feats:
                    inst = member.model([inp])[0]["instances"]
                passes.append((member, scale, tuple(inp["image"].shape[1:]), feats, inst))
        boxes, scores, labels = fuse_boxes(
            [p[4].pred_boxes.tensor.cpu().numpy() for p in passes],
            [p[4].scores.cpu().numpy() for p in passes],
            [p[4].pred_classes.cpu().numpy() for p in passes],
            (height, width), self.iou_thresh,
            names=[f"model '{p[0].name}' at scale {p[1]:g}" for p in passes])
        boxes, scores, labels = (boxes[:self.max_detections], scores[:self.max_detections],
                                 labels[:self.max_detections])
        # The result lives on the first model's device, as its own outputs do.
        out_device = self.members[0].model.device
        result = Instances((height, width))
        result.pred_boxes = Boxes(torch.as_tensor(boxes, device=out_device))
        result.scores = torch.as_tensor(scores, device=out_device)
        result.pred_classes = torch.as_tensor(labels, device=out_device)
        if len(boxes) == 0:
            result.pred_masks = torch.zeros((0, height, width), dtype=torch.bool,
                                            device=out_device)
            result.pred_embeds = torch.zeros((0, self.embed_dim), device=out_device)
            return result
        probs, embeds = [], []
        for member, _, (h_in, w_in), feats, _ in passes:
            device = member.model.device
            given = Instances((h_in, w_in))
            factor = torch.tensor([w_in / width, h_in / height] * 2, dtype=torch.float32)
            given.pred_boxes = Boxes((torch.as_tensor(boxes) * factor).to(device))
            given.pred_classes = torch.as_tensor(labels, device=device)
            given.scores = torch.as_tensor(scores, device=device)
            out = member.model.roi_heads.forward_with_given_boxes(feats, [given])[0]
            if not out.has("pred_masks"):
                raise ValueError(f"model '{member.name}' predicts no masks (MODEL.MASK_ON)")
            probs.append(out.pred_masks.float().to(out_device))
            embeds.append(out.pred_embeds.float().to(out_device))
        result.pred_masks = paste_masks_in_image(
            average_mask_probs(probs)[:, 0], result.pred_boxes, (height, width),
            threshold=MASK_THRESHOLD)
        result.pred_embeds = torch.stack(embeds).mean(dim=0)
        return result


def check_compatible(a: FusionMember, b: FusionMember) -> None:
    """A ValueError naming both models unless their embeddings have one size and they predict
    the same classes (names and dataset ids by contiguous index, where both know them)."""
    if a.embed_dim != b.embed_dim:
        raise ValueError(
            f"ensemble: model '{b.name}' has track embeddings of size {b.embed_dim} but "
            f"'{a.name}' has {a.embed_dim} (MODEL.VIS.TRACK_HEAD.EMBED_DIM): their embeddings "
            "cannot be averaged")
    if a.classes is None or b.classes is None:
        return
    (names_a, ids_a), (names_b, ids_b) = a.classes, b.classes
    if len(ids_a) != len(ids_b):
        raise ValueError(f"ensemble: model '{a.name}' has {len(ids_a)} classes but '{b.name}' has "
                         f"{len(ids_b)}: models trained on different class lists cannot be merged")
    for k in range(len(ids_a)):
        name_a = names_a[k] if names_a is not None else None
        name_b = names_b[k] if names_b is not None else None
        if ids_a[k] != ids_b[k] or (name_a is not None and name_b is not None
                                    and name_a != name_b):
            raise ValueError(
                f"ensemble: models '{a.name}' and '{b.name}' have different class lists: class "
                f"{k} is {name_a!r} (dataset id {ids_a[k]}) in the first and {name_b!r} (dataset "
                f"id {ids_b[k]}) in the second; models trained on different class lists cannot "
                "be merged")
