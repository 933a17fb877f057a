"""(key, reference) training pairs from annotated videos (paper section 2, "Training pipeline").

The track head learns from a key frame X_t and a reference frame X'_t sampled in
[t - delta, t + delta]; detection and segmentation losses use the key frame.
"""
import logging
from typing import List, Optional, Sequence, Union

import numpy as np

from detectron2.config import configurable
from detectron2.data import transforms as T

from .frames import read_frame
from .pair_transform import pair_mapper_common_config, transform_pair
from .pseudo_pair_mapper import build_pseudo_reference_augmentation
from .video_record import annotated_frame_indices, check_video_record, video_name

__all__ = ["VideoPairDatasetMapper", "sample_reference_frame", "uniform_frame_subset"]

logger = logging.getLogger(__name__)


def sample_reference_frame(key_idx: int, length: int, delta: int) -> int:
    """
    A frame index uniformly sampled in [key - delta, key + delta] ∩ [0, length-1] \\ {key}.

    When that set is empty (``length == 1`` or ``delta == 0``) the reference is the key frame
    itself: the pair then only teaches the track head that an object matches itself.
    """
    lo, hi = max(0, key_idx - delta), min(length - 1, key_idx + delta)
    candidates = [i for i in range(lo, hi + 1) if i != key_idx]
    if not candidates:
        return key_idx
    return int(candidates[np.random.randint(len(candidates))])


def uniform_frame_subset(frame_indices: Sequence[int], num: int) -> List[int]:
    """
    ``num`` frames uniformly spread over ``frame_indices`` (the paper's Fig. 2b experiment):
    ``frame_indices[round(linspace(0, n-1, num))]``, without duplicates (all when num >= n).
    ``num == 1`` keeps the first frame.
    """
    n = len(frame_indices)
    if num >= n:
        return list(frame_indices)
    picks = np.unique(np.round(np.linspace(0, n - 1, num)).astype(int))
    return [int(frame_indices[i]) for i in picks]


class VideoPairDatasetMapper:
    """
    Map a video record (from ``load_ytvis_json``) to one training pair.

    * Key frame t: uniform among the frames with at least one non-crowd instance.
    * Reference: :func:`sample_reference_frame` with ``ref_delta`` (the key itself for a
      one-frame video).
    * The key-frame ``augmentations`` (ResizeShortestEdge(INPUT.MIN_SIZE_TRAIN,
      INPUT.MAX_SIZE_TRAIN) + RandomFlip; the paper trains at 360x640) are sampled once on the
      key frame and the same transform is applied to the reference.
    * ``frames_per_video = N > 0`` (INPUT.VIS.FRAMES_PER_VIDEO, paper Fig. 2b): the key frame is
      one of N annotated frames (:func:`uniform_frame_subset`) and, as in the paper, the reference
      is a PSEUDO reference: the key frame under ``pseudo_augmentations`` (random affine + flip,
      see :mod:`vis_d2.data.pseudo_pair_mapper`); the other frames of the video are never read.
    * Crowd instances are dropped; instances whose box is empty after the transforms are removed
      from each frame (track ids keep the correspondence). Frames are read by
      :func:`vis_d2.data.frames.read_frame` (its size policy: resized to the video's size).

    Output dict:
        "image", "ref_image": uint8 tensors CxHxW in ``image_format``;
        "instances", "ref_instances": Instances with gt_boxes (Boxes), gt_classes (long),
            gt_track_ids (long: the json annotation id, same object => same id), gt_aux (bool:
            auxiliary objects, all False for a video set), gt_mask_valid (bool: False where the
            mask must not train) and gt_masks (PolygonMasks or BitMasks per
            ``instance_mask_format``; an empty placeholder where gt_mask_valid is False);
        "height", "width": the video's size; "video_id"; "file_name" (key frame);
        "frame_idx", "ref_frame_idx"; "pseudo_ref" (bool);
        "has_mask": whether gt_masks is present: ``use_instance_mask`` and some instance of the
            two frames has a usable mask (see :func:`~vis_d2.data.pair_transform.mask_is_usable`).
    """

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: Sequence[Union[T.Augmentation, T.Transform]],
        image_format: str,
        use_instance_mask: bool = True,
        instance_mask_format: str = "bitmask",
        ref_delta: int = 5,
        frames_per_video: int = 0,
        pseudo_augmentations: Optional[Sequence[Union[T.Augmentation, T.Transform]]] = None,
    ):
        """
        Args:
            is_train: kept for detectron2's mapper signature; pairs are for training.
            augmentations: key-frame augmentations, also applied to the reference.
            image_format: see :func:`detectron2.data.detection_utils.read_image`.
            use_instance_mask: build gt_masks.
            instance_mask_format: "polygon" or "bitmask" (YouTube-VIS RLE needs "bitmask").
            ref_delta: the reference frame is within this many frames of the key frame.
            frames_per_video: 0 uses every annotated frame as a key frame; N > 0 only N of
                them, with pseudo references.
            pseudo_augmentations: makes the pseudo reference; required when frames_per_video > 0.
        """
        if ref_delta < 0:
            raise ValueError(f"INPUT.VIS.REF_DELTA must be >= 0, got {ref_delta}")
        if frames_per_video < 0:
            raise ValueError(f"INPUT.VIS.FRAMES_PER_VIDEO must be >= 0, got {frames_per_video}")
        if frames_per_video > 0 and pseudo_augmentations is None:
            raise ValueError("frames_per_video > 0 needs pseudo_augmentations for the references")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(list(augmentations))
        self.image_format = image_format
        self.use_instance_mask = use_instance_mask
        self.instance_mask_format = instance_mask_format
        self.ref_delta = int(ref_delta)
        self.frames_per_video = int(frames_per_video)
        self.pseudo_augmentations = (
            T.AugmentationList(list(pseudo_augmentations)) if frames_per_video > 0 else None
        )
        logger.info(
            f"[VideoPairDatasetMapper] augmentations: {augmentations}; ref_delta={ref_delta}; "
            f"frames_per_video={frames_per_video}"
            + (f" (pseudo references: {pseudo_augmentations})" if frames_per_video > 0 else "")
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            **pair_mapper_common_config(cfg, is_train),
            "ref_delta": cfg.INPUT.VIS.REF_DELTA,
            "frames_per_video": cfg.INPUT.VIS.FRAMES_PER_VIDEO,
            "pseudo_augmentations": build_pseudo_reference_augmentation(cfg),
        }

    def key_frame_candidates(self, record: dict) -> List[int]:
        """The frames the key frame is drawn from (annotated frames, or N of them)."""
        annotated = annotated_frame_indices(record)
        if not annotated:
            raise ValueError(
                f"{video_name(record)} has no frame with a non-crowd instance; it cannot give a "
                "training pair (build_vis_train_loader filters such videos out)"
            )
        if self.frames_per_video > 0:
            return uniform_frame_subset(annotated, self.frames_per_video)
        return annotated

    def __call__(self, record: dict) -> dict:
        length = check_video_record(record)
        candidates = self.key_frame_candidates(record)
        key_idx = int(candidates[np.random.randint(len(candidates))])
        pseudo = self.frames_per_video > 0
        ref_idx = key_idx if pseudo else sample_reference_frame(key_idx, length, self.ref_delta)

        key_image = read_frame(record, key_idx, self.image_format)
        ref_image = key_image if ref_idx == key_idx else read_frame(
            record, ref_idx, self.image_format
        )
        pair = transform_pair(
            key_image,
            record["annotations"][key_idx],
            ref_image,
            record["annotations"][ref_idx],
            augmentations=self.augmentations,
            ref_augmentations=self.pseudo_augmentations if pseudo else None,
            use_instance_mask=self.use_instance_mask,
            mask_format=self.instance_mask_format,
            source=f"{video_name(record)}, frames {key_idx}/{ref_idx}",
        )
        pair.update(
            {
                "video_id": record["video_id"],
                "file_name": record["file_names"][key_idx],
                "height": int(record["height"]),
                "width": int(record["width"]),
                "frame_idx": key_idx,
                "ref_frame_idx": ref_idx,
                "pseudo_ref": pseudo,
            }
        )
        return pair
