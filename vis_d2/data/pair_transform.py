"""A training pair's shared transform: the one implementation of "augment a (key, reference)
pair with the same transform", used by :class:`VideoPairDatasetMapper` and
:class:`PseudoPairDatasetMapper`, and the tracked ``Instances`` of each frame it gives.

* :func:`transform_pair`: sample the augmentations once on the key frame, apply them to both.
* :func:`annotations_to_tracked_instances`: detectron2 ``Instances`` (boxes, classes, masks,
  track ids, auxiliary and mask-valid flags) from one frame's annotations after that frame's
  transforms.
* :func:`assign_track_ids`: give every annotation of a frame/image a ``"track_id"``.
* :func:`pair_mapper_common_config`: the ``from_config`` arguments both pair mappers share.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks

from .augmentation import build_pair_augmentation

__all__ = [
    "assign_track_ids",
    "annotations_to_tracked_instances",
    "tight_boxes_from_masks",
    "mask_is_usable",
    "transform_pair",
    "pair_mapper_common_config",
]


def assign_track_ids(annos: Sequence[dict]) -> List[dict]:
    """
    Shallow copies of ``annos`` that all have a "track_id".

    Kept as is when present (video annotations); otherwise the annotation's COCO "id" when
    present, else its index in ``annos`` + 1 (images: each object is its own track, so a pseudo
    reference made from the image keeps every object's id).
    """
    out = []
    for i, a in enumerate(annos):
        a = dict(a)
        if "track_id" not in a:
            a["track_id"] = int(a["id"]) if "id" in a else i + 1
        out.append(a)
    return out


def tight_boxes_from_masks(masks, image_size) -> Boxes:
    """
    Tight XYXY boxes of the part of each mask that lies inside the image.

    Args:
        masks: BitMasks (N,H,W) or PolygonMasks (N instances, coordinates may leave the image).
        image_size: (H, W) of the image the masks belong to.

    Returns:
        Boxes (N,4); all-zero (hence empty) for a mask with no pixel inside the image.
    """
    if isinstance(masks, BitMasks):
        return masks.get_bounding_boxes()
    h, w = image_size
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, polygons in enumerate(masks.polygons):
        # Rasterising clips to the image, unlike PolygonMasks.get_bounding_boxes().
        rle = mask_util.merge(mask_util.frPyObjects([p.tolist() for p in polygons], h, w))
        if mask_util.area(rle) > 0:
            x, y, bw, bh = mask_util.toBbox(rle)
            boxes[i] = (x, y, x + bw, y + bh)
    return Boxes(torch.from_numpy(boxes))


def mask_is_usable(anno: dict) -> bool:
    """Whether an annotation's mask may train: it has a "segmentation" and is not marked
    ``"mask_valid": False`` (a weakly segmented source, :mod:`vis_d2.data.mixing`)."""
    return "segmentation" in anno and anno.get("mask_valid", True) is not False


def _empty_masks(image_size, mask_format):
    if mask_format == "polygon":
        return PolygonMasks([])
    return BitMasks(torch.zeros((0, *image_size), dtype=torch.bool))


def annotations_to_tracked_instances(
    annos: Sequence[dict],
    transforms: T.Transform,
    image_size,
    *,
    use_mask: bool,
    mask_format: str,
    recompute_boxes: bool = False,
) -> Instances:
    """
    Instances of one frame from its non-crowd annotations (each with "track_id").

    Args:
        annos: annotation dicts in the frame's original coordinates (not modified).
        transforms: the transforms that took the original frame to the output image.
        image_size: (H, W) of the output image.
        use_mask: build ``gt_masks``; an annotation whose mask is not usable
            (:func:`mask_is_usable`) gets an empty placeholder mask.
        mask_format: "polygon" (PolygonMasks) or "bitmask" (BitMasks).
        recompute_boxes: replace the transformed boxes of the instances with a usable mask by
            the tight boxes of their transformed masks (after a rotation the transformed box
            corners are no longer tight).

    Returns:
        Instances with gt_boxes (Boxes, N), gt_classes (N, long), gt_track_ids (N, long),
        gt_aux (N, bool: an auxiliary object, ``"aux"`` of the annotation), gt_mask_valid
        (N, bool: its mask may train; all False without ``use_mask``) and, with ``use_mask``,
        gt_masks (N masks, present even when N == 0). Instances whose box, or usable mask, is
        empty after the transforms are removed.
    """
    transformed = []
    for a in annos:
        a = dict(a)  # transform_instance_annotations writes into its argument
        if not use_mask:
            a.pop("segmentation", None)
        elif not mask_is_usable(a):
            a["segmentation"] = []  # no polygon: an empty mask in either mask format
        transformed.append(utils.transform_instance_annotations(a, transforms, image_size))
    instances = utils.annotations_to_instances(transformed, image_size, mask_format=mask_format)
    instances.gt_track_ids = torch.tensor(
        [int(a["track_id"]) for a in transformed], dtype=torch.int64
    )
    instances.gt_aux = torch.tensor([bool(a.get("aux", False)) for a in transformed],
                                    dtype=torch.bool)
    instances.gt_mask_valid = torch.tensor(
        [bool(use_mask) and mask_is_usable(a) for a in annos], dtype=torch.bool)
    keep = instances.gt_boxes.nonempty(threshold=1e-5)
    if use_mask:
        if not instances.has("gt_masks"):  # no annotation in this frame
            instances.gt_masks = _empty_masks(image_size, mask_format)
        valid = instances.gt_mask_valid
        if recompute_boxes and valid.any():
            tight = tight_boxes_from_masks(instances.gt_masks[valid], image_size).tensor
            boxes = instances.gt_boxes.tensor.clone()
            boxes[valid] = tight
            instances.gt_boxes = Boxes(boxes)
            keep = instances.gt_boxes.nonempty(threshold=1e-5)
        if len(instances):
            keep &= ~valid | instances.gt_masks.nonempty()
    return instances[keep]


def _prepare_annotations(annos, frame_size, use_mask, mask_format, source) -> List[dict]:
    """Non-crowd copies; uncompressed RLE compressed (detectron2 only decodes compressed RLE);
    the mask of an annotation marked ``"mask_valid": False`` dropped unread."""
    out = []
    for a in annos:
        if a.get("iscrowd", 0) != 0:
            continue
        if "track_id" not in a:
            raise ValueError(
                f"{source}: an annotation (category_id {a.get('category_id')}, bbox "
                f"{a.get('bbox')}) has no 'track_id'"
            )
        a = dict(a)
        if not mask_is_usable(a):
            a.pop("segmentation", None)
        segm = a.get("segmentation")
        if use_mask and isinstance(segm, dict):
            if mask_format == "polygon":
                raise ValueError(
                    f"{source}: instance {a.get('track_id')} has an RLE segmentation, which "
                    "needs INPUT.MASK_FORMAT='bitmask' (it is 'polygon')"
                )
            if list(segm.get("size", ())) != list(frame_size):
                raise ValueError(
                    f"{source}: segmentation of instance {a.get('track_id')} has size "
                    f"{segm.get('size')} but the frame is {list(frame_size)} (HxW)"
                )
            if isinstance(segm["counts"], list):
                a["segmentation"] = mask_util.frPyObjects(segm, *segm["size"])
        out.append(a)
    return out


def transform_pair(
    key_image: np.ndarray,
    key_annos: Sequence[dict],
    ref_image: np.ndarray,
    ref_annos: Sequence[dict],
    *,
    augmentations: T.AugmentationList,
    ref_augmentations: Optional[T.AugmentationList] = None,
    use_instance_mask: bool,
    mask_format: str,
    source: str,
) -> Dict[str, object]:
    """
    Augment a (key, reference) pair so that both frames see the same geometry.

    ``augmentations`` is sampled once, on the key frame, and the resulting transform is applied
    to the reference too. With ``ref_augmentations`` (pseudo pairs), the reference first goes
    through them alone (e.g. a random affine); its boxes are then recomputed from its masks.

    Args:
        key_image, ref_image: HxWxC arrays of the same size (video size for videos).
        key_annos, ref_annos: the frames' annotations (dicts with "track_id"), original coords.
            Crowd annotations are dropped.
        use_instance_mask: cfg.MODEL.MASK_ON. Masks are used when some non-crowd annotation of
            the two frames has a usable one (:func:`mask_is_usable`); the others get an empty
            placeholder mask and ``gt_mask_valid`` False.
        mask_format: cfg.INPUT.MASK_FORMAT.
        source: names the video/image in error messages.

    Returns:
        dict with "image", "ref_image" (uint8 tensors CxH'xW'), "instances", "ref_instances"
        (see :func:`annotations_to_tracked_instances`) and "has_mask" (bool: whether gt_masks
        are present, i.e. some instance of the pair has a usable mask).
    """
    if key_image.shape[:2] != ref_image.shape[:2]:
        raise ValueError(
            f"{source}: key frame is {key_image.shape[:2]} but reference is {ref_image.shape[:2]}"
        )
    frame_size = key_image.shape[:2]
    key_annos = _prepare_annotations(key_annos, frame_size, use_instance_mask, mask_format, source)
    ref_annos = _prepare_annotations(ref_annos, frame_size, use_instance_mask, mask_format, source)
    # A pair without any usable mask (box-only data, a weakly segmented source) trains
    # detection and tracking only.
    has_mask = bool(use_instance_mask) and any(
        mask_is_usable(a) for a in key_annos + ref_annos
    )

    ref_pre = None
    if ref_augmentations is not None:
        ref_input = T.AugInput(ref_image)
        ref_pre = ref_augmentations(ref_input)
        ref_image = ref_input.image

    key_input = T.AugInput(key_image)
    transforms = augmentations(key_input)
    key_image = key_input.image
    ref_image = transforms.apply_image(ref_image)
    image_size = key_image.shape[:2]

    instances = annotations_to_tracked_instances(
        key_annos, transforms, image_size, use_mask=has_mask, mask_format=mask_format
    )
    ref_transforms = transforms if ref_pre is None else ref_pre + transforms
    ref_instances = annotations_to_tracked_instances(
        ref_annos,
        ref_transforms,
        image_size,
        use_mask=has_mask,
        mask_format=mask_format,
        recompute_boxes=ref_pre is not None and has_mask,
    )
    return {
        "image": torch.as_tensor(np.ascontiguousarray(key_image.transpose(2, 0, 1))),
        "instances": instances,
        "ref_image": torch.as_tensor(np.ascontiguousarray(ref_image.transpose(2, 0, 1))),
        "ref_instances": ref_instances,
        "has_mask": has_mask,
    }


def pair_mapper_common_config(cfg, is_train: bool) -> Dict:
    """The ``from_config`` arguments both pair mappers share (augmentations, image and mask
    format), after rejecting INPUT.CROP, which pairs do not support."""
    if cfg.INPUT.CROP.ENABLED:
        raise ValueError(
            "INPUT.CROP.ENABLED is not supported by the vis_d2 pair mappers (the paper "
            "resizes to 360x640 without cropping); set it to False"
        )
    return {
        "is_train": is_train,
        "augmentations": build_pair_augmentation(cfg, is_train),
        "image_format": cfg.INPUT.FORMAT,
        "use_instance_mask": cfg.MODEL.MASK_ON,
        "instance_mask_format": cfg.INPUT.MASK_FORMAT,
    }
