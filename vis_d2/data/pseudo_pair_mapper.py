"""Pseudo (key, reference) pairs from single images: semi-supervised tracking (paper 3.2).

Image datasets (COCO, OpenImages) have no track ids. The reference "frame" is the key image
under a random shift, rotation, scale and horizontal flip, so every object keeps its identity
and gets the same track id in both. The paper's data-efficiency experiment (3.1, Fig. 2b) uses the
same pseudo reference for video key frames (see :class:`VideoPairDatasetMapper`).
"""
import logging
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .frames import read_image_file
from .pair_transform import assign_track_ids, pair_mapper_common_config, transform_pair

__all__ = [
    "AffineTransform",
    "RandomAffine",
    "build_pseudo_reference_augmentation",
    "PseudoPairDatasetMapper",
]

logger = logging.getLogger(__name__)


class AffineTransform(T.Transform):
    """
    A 2D affine map of the image plane that keeps the image size (content leaving the image is
    cut, uncovered pixels become 0).

    ``matrix`` (2x3) maps a point (x, y) in detectron2's continuous pixel coordinates (pixel i
    covers [i, i+1)) to ``matrix @ (x, y, 1)``. cv2 samples at integer pixel *centres*, so the
    image matrix is the same map conjugated by the half-pixel shift, which keeps warped images,
    masks, polygons and boxes aligned.
    """

    def __init__(self, matrix: np.ndarray, h: int, w: int, interp: int = cv2.INTER_LINEAR):
        """
        Args:
            matrix: 2x3 affine matrix in continuous pixel coordinates.
            h, w: image size (input and output).
            interp: cv2 interpolation for images (segmentations always use nearest).
        """
        super().__init__()
        matrix = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
        self._set_attributes(locals())

    def _image_matrix(self) -> np.ndarray:
        m = self.matrix.copy()
        # p_center' = A (p_center + 0.5) + b - 0.5
        m[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
        return m

    def apply_image(self, img: np.ndarray, interp: Optional[int] = None) -> np.ndarray:
        """img: HxW or HxWxC (C <= 4) array of this transform's size; returns the same shape."""
        if tuple(img.shape[:2]) != (self.h, self.w):
            raise ValueError(
                f"AffineTransform built for {self.h}x{self.w} (HxW) got an image of "
                f"{img.shape[0]}x{img.shape[1]}"
            )
        is_bool = img.dtype == bool
        src = img.astype(np.uint8) if is_bool else img
        out = cv2.warpAffine(
            src,
            self._image_matrix(),
            (self.w, self.h),
            flags=self.interp if interp is None else interp,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        if img.ndim == 3 and out.ndim == 2:  # cv2 drops a trailing channel of size 1
            out = out[:, :, None]
        return out.astype(bool) if is_bool else out

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp=cv2.INTER_NEAREST)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """coords: Nx2 (x, y) in continuous pixel coordinates."""
        coords = np.asarray(coords, dtype=np.float64)
        return coords @ self.matrix[:, :2].T + self.matrix[:, 2]

    def inverse(self) -> "AffineTransform":
        return AffineTransform(cv2.invertAffineTransform(self.matrix), self.h, self.w, self.interp)


class RandomAffine(T.Augmentation):
    """
    Random rotation and scaling about the image centre followed by a random shift.

    angle ~ U(-max_rotate, max_rotate) degrees (counter-clockwise), scale ~ U(*scale_range),
    shift ~ U(-max_shift, max_shift) * (W, H).
    """

    def __init__(
        self,
        max_shift: float = 0.1,
        max_rotate: float = 10.0,
        scale_range: Tuple[float, float] = (0.9, 1.1),
    ):
        super().__init__()
        scale_range = tuple(float(s) for s in scale_range)
        if not 0.0 <= max_shift < 1.0:
            raise ValueError(f"RandomAffine: max_shift must be in [0, 1), got {max_shift}")
        if max_rotate < 0:
            raise ValueError(f"RandomAffine: max_rotate must be >= 0, got {max_rotate}")
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"RandomAffine: scale_range must be (lo, hi), 0<lo<=hi: {scale_range}")
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        angle = self._rand_range(-self.max_rotate, self.max_rotate) if self.max_rotate else 0.0
        lo, hi = self.scale_range
        scale = self._rand_range(lo, hi) if hi > lo else lo
        sx, sy = (
            self._rand_range(-self.max_shift, self.max_shift, size=2) if self.max_shift else (0, 0)
        )
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(angle), float(scale))
        matrix[:, 2] += (sx * w, sy * h)
        if np.allclose(matrix, [[1, 0, 0], [0, 1, 0]]):
            return T.NoOpTransform()
        return AffineTransform(matrix, h, w)


def build_pseudo_reference_augmentation(cfg) -> List[T.Augmentation]:
    """The pseudo-reference augmentations from ``cfg.INPUT.VIS.PSEUDO_*``: affine, then h-flip."""
    vis = cfg.INPUT.VIS
    if not 0.0 <= vis.PSEUDO_FLIP <= 1.0:
        raise ValueError(f"INPUT.VIS.PSEUDO_FLIP must be a probability, got {vis.PSEUDO_FLIP}")
    if len(vis.PSEUDO_SCALE) != 2:
        raise ValueError(f"INPUT.VIS.PSEUDO_SCALE must be [lo, hi], got {vis.PSEUDO_SCALE}")
    return [
        RandomAffine(vis.PSEUDO_SHIFT, vis.PSEUDO_ROTATE, tuple(vis.PSEUDO_SCALE)),
        T.RandomFlip(prob=vis.PSEUDO_FLIP, horizontal=True, vertical=False),
    ]


class PseudoPairDatasetMapper:
    """
    Map a COCO-format image dict (``load_coco_json``) to a training pair whose reference is a
    randomly transformed copy of the image.

    Steps: read the image; reference = ``pseudo_augmentations`` applied to it (masks warped with
    nearest interpolation, reference boxes recomputed from the warped masks when there are masks,
    else from the warped box corners); then the key-frame ``augmentations`` (resize/flip) sampled
    once and applied to both. Track id of an object = its annotation "id" if the dict keeps it,
    else its index in the image's annotations + 1 (same in both images).

    Output (same keys as :class:`VideoPairDatasetMapper`):
        "image", "ref_image": uint8 tensors CxHxW in ``image_format``;
        "instances", "ref_instances": Instances(gt_boxes, gt_classes, gt_track_ids, gt_aux,
            gt_mask_valid[, gt_masks]) (see :class:`VideoPairDatasetMapper`);
        "height", "width" (original image size), "video_id" (= "image_id"), "image_id",
        "file_name", "frame_idx" = "ref_frame_idx" = 0, "pseudo_ref": True,
        "has_mask": False when no instance has a usable mask (box-only images, a weakly
        segmented source): gt_masks is then absent and the model skips the mask loss for the
        pair.
    """

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: Sequence[Union[T.Augmentation, T.Transform]],
        pseudo_augmentations: Sequence[Union[T.Augmentation, T.Transform]],
        image_format: str,
        use_instance_mask: bool = True,
        instance_mask_format: str = "polygon",
    ):
        """
        Args:
            is_train: kept for detectron2's mapper signature; pairs are for training.
            augmentations: key-frame augmentations, also applied to the reference.
            pseudo_augmentations: augmentations making the reference from the key image
                (applied first, reference only); e.g. :func:`build_pseudo_reference_augmentation`
                or fixed transforms (a deterministic ``AffineTransform``) in tests.
            image_format: see :func:`detectron2.data.detection_utils.read_image`.
            use_instance_mask: build gt_masks when the annotations have them.
            instance_mask_format: "polygon" or "bitmask".
        """
        self.is_train = is_train
        self.augmentations = T.AugmentationList(list(augmentations))
        self.pseudo_augmentations = T.AugmentationList(list(pseudo_augmentations))
        self.image_format = image_format
        self.use_instance_mask = use_instance_mask
        self.instance_mask_format = instance_mask_format
        logger.info(
            f"[PseudoPairDatasetMapper] key augmentations: {augmentations}; "
            f"pseudo reference: {pseudo_augmentations}"
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            **pair_mapper_common_config(cfg, is_train),
            "pseudo_augmentations": build_pseudo_reference_augmentation(cfg),
        }

    def __call__(self, dataset_dict: dict) -> dict:
        file_name = dataset_dict["file_name"]
        image_id = dataset_dict.get("image_id")
        image = read_image_file(file_name, self.image_format, f"image {image_id}")
        utils.check_image_size(dataset_dict, image)
        annos = assign_track_ids(dataset_dict.get("annotations", []))
        pair = transform_pair(
            image,
            annos,
            image,
            annos,
            augmentations=self.augmentations,
            ref_augmentations=self.pseudo_augmentations,
            use_instance_mask=self.use_instance_mask,
            mask_format=self.instance_mask_format,
            source=f"image {image_id} ('{file_name}')",
        )
        pair.update(
            {
                "file_name": file_name,
                "image_id": image_id,
                "video_id": image_id,
                "height": int(dataset_dict.get("height", image.shape[0])),
                "width": int(dataset_dict.get("width", image.shape[1])),
                "frame_idx": 0,
                "ref_frame_idx": 0,
                "pseudo_ref": True,
            }
        )
        return pair
