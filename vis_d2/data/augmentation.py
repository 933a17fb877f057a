"""Training augmentations of the pair mappers, beyond detectron2's resize and horizontal flip.

The synthetic demo trains on 80 videos, about 200 objects in all, so a longer-trained model
gains far more on its training videos than on unseen ones. These augmentations make new
objects out of the same videos, with the label kept:

* :class:`RandomChannelPermutation`: the colour channels in another order (a red-and-blue
  striped object becomes a green-and-red one); the synthetic classes are shapes, never colours.
* a vertical flip (``INPUT.VIS.VERTICAL_FLIP_PROB``), on top of detectron2's horizontal one;
* brightness and contrast (``INPUT.VIS.BRIGHTNESS``, ``INPUT.VIS.CONTRAST``): detectron2's
  ``RandomBrightness`` / ``RandomContrast``.

The pair mappers sample them once, on the key frame, and apply the same transform to the
reference frame, so an object keeps its (new) appearance across the pair that trains the track
embedding. Colour transforms leave boxes and masks alone.

The augmentations of whole mapped pairs (:class:`CopyPaste`, :class:`InstanceRecolor`) share
:func:`pair_has_bitmasks` and :class:`WorkerSeededRandom` from here.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks

__all__ = [
    "CHANNEL_ORDERS",
    "RandomChannelPermutation",
    "build_pair_augmentation",
    "pair_has_bitmasks",
    "WorkerSeededRandom",
]

# The five orders of (0, 1, 2) other than the identity.
CHANNEL_ORDERS = [(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]


def check_prob(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


class RandomChannelPermutation(T.Augmentation):
    """With probability ``prob``, reorder the channels of an HxWx3 image (one of the five
    non-identity orders, uniformly); otherwise leave it as it is."""

    def __init__(self, prob: float = 0.5):
        super().__init__()
        self.prob = check_prob("RandomChannelPermutation: prob", prob)

    def get_transform(self, image: np.ndarray) -> T.Transform:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"RandomChannelPermutation needs an HxWx3 image, got shape {image.shape}")
        if self._rand_range() >= self.prob:
            return T.NoOpTransform()
        order = list(CHANNEL_ORDERS[np.random.randint(len(CHANNEL_ORDERS))])
        return T.ColorTransform(lambda img: np.ascontiguousarray(img[..., order]))


def check_range(name: str, value: Sequence[float]) -> List[float]:
    if len(value) != 2:
        raise ValueError(f"{name} must be [low, high], got {list(value)}")
    lo, hi = (float(v) for v in value)
    if not 0.0 < lo <= hi:
        raise ValueError(f"{name} must be [low, high] with 0 < low <= high, got {list(value)}")
    return [lo, hi]


def build_pair_augmentation(cfg, is_train: bool = True) -> List[T.Augmentation]:
    """detectron2's augmentations (``utils.build_augmentation``: ``ResizeShortestEdge``, plus
    ``RandomFlip`` in training), then in training the ``INPUT.VIS`` ones that are switched on:
    vertical flip, brightness, contrast, channel permutation (in that order)."""
    augs = list(utils.build_augmentation(cfg, is_train))
    if not is_train:
        return augs
    vis = cfg.INPUT.VIS
    vflip = check_prob("INPUT.VIS.VERTICAL_FLIP_PROB", vis.VERTICAL_FLIP_PROB)
    if vflip > 0:
        augs.append(T.RandomFlip(prob=vflip, horizontal=False, vertical=True))
    brightness = check_range("INPUT.VIS.BRIGHTNESS", vis.BRIGHTNESS)
    if brightness != [1.0, 1.0]:
        augs.append(T.RandomBrightness(*brightness))
    contrast = check_range("INPUT.VIS.CONTRAST", vis.CONTRAST)
    if contrast != [1.0, 1.0]:
        augs.append(T.RandomContrast(*contrast))
    permute = check_prob("INPUT.VIS.CHANNEL_PERMUTATION_PROB", vis.CHANNEL_PERMUTATION_PROB)
    if permute > 0:
        augs.append(RandomChannelPermutation(permute))
    return augs


def pair_has_bitmasks(pair: Dict) -> bool:
    """Whether a mapped pair carries a usable per-pixel mask of every instance of both frames
    (``BitMasks`` gt_masks, ``gt_mask_valid`` all True where present, and not a box-only pair,
    ``has_mask`` False): what the pair augmentations need."""
    return bool(pair.get("has_mask", True)) and all(
        pair[k].has("gt_masks") and isinstance(pair[k].gt_masks, BitMasks)
        and (not pair[k].has("gt_mask_valid") or bool(pair[k].gt_mask_valid.all()))
        for k in ("instances", "ref_instances"))


class WorkerSeededRandom:
    """Mixin: ``self._rng``, a numpy Generator seeded by ``self._seed``, created on first use.

    On first use means inside the data-loader worker: without a seed it is drawn from numpy's
    global state, which detectron2 seeds differently in every worker, so workers do not repeat
    each other's draws.
    """

    _seed: Optional[int] = None
    _generator: Optional[np.random.Generator] = None

    @property
    def _rng(self) -> np.random.Generator:
        if self._generator is None:
            seed = self._seed if self._seed is not None else int(np.random.randint(2**31))
            self._generator = np.random.default_rng(seed)
        return self._generator
