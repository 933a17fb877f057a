"""Per-object recolouring of training pairs: each object's pixels get a colour transform of
their own, the same in both frames of the pair.

Why: the synthetic classes are shapes, and the objects' colours and textures are random, but
with 80 training videos (about 200 objects) a model can still tie a class to the colours of the
few objects it saw with it: trained longer, it gains far more on its training videos than on
unseen ones. The frame-level colour augmentations
(``INPUT.VIS.CHANNEL_PERMUTATION_PROB``, brightness, contrast) change every object of a frame
alike; this one changes each object on its own, so one frame shows objects in combinations of
colours no training video has. An object keeps its new colours across the pair, so the track
head still learns to follow it by its appearance.

Only the object's visible pixels (its ground-truth mask in that frame, after copy-paste) change;
boxes, masks and ids are kept.
"""
from typing import Dict, Optional

from detectron2.config import configurable

from .augmentation import (
    CHANNEL_ORDERS,
    WorkerSeededRandom,
    check_prob,
    check_range,
    pair_has_bitmasks,
)

__all__ = ["InstanceRecolor"]


class InstanceRecolor(WorkerSeededRandom):
    """``__call__(pair) -> pair`` on the pair mappers' dicts ("image", "ref_image": uint8
    (3, H, W); "instances", "ref_instances": Instances with gt_track_ids and BitMasks gt_masks).

    Each object (track id) of the pair, with probability ``prob``, gets one of the five
    non-identity channel orders and an intensity gain drawn from ``gain`` (uniform), applied to
    its mask's pixels in both frames. A pair without masks is returned as it is.
    """

    @configurable
    def __init__(self, *, prob: float = 0.5, gain=(1.0, 1.0), seed: Optional[int] = None):
        """
        Args:
            prob: probability that an object is recoloured.
            gain: [low, high] range of the intensity factor of a recoloured object (0 < low).
            seed: seeds this object's random generator (None: drawn from numpy's global state
                on first use, which detectron2 seeds per data-loader worker).
        """
        self.prob = check_prob("INPUT.VIS.INSTANCE_RECOLOR.PROB", prob)
        self.gain = tuple(check_range("INPUT.VIS.INSTANCE_RECOLOR.GAIN", gain))
        self._seed = seed

    @classmethod
    def from_config(cls, cfg):
        c = cfg.INPUT.VIS.INSTANCE_RECOLOR
        return {"prob": c.PROB, "gain": tuple(c.GAIN)}

    def __call__(self, pair: Dict) -> Dict:
        if not pair_has_bitmasks(pair):
            return pair
        key, ref = pair["instances"], pair["ref_instances"]
        if pair["image"].shape[0] != 3:
            raise ValueError(f"InstanceRecolor needs 3-channel images, got {tuple(pair['image'].shape)}")
        ids = sorted(set(key.gt_track_ids.tolist()) | set(ref.gt_track_ids.tolist()))
        changes = {}
        for tid in ids:
            if self._rng.random() < self.prob:
                order = CHANNEL_ORDERS[int(self._rng.integers(len(CHANNEL_ORDERS)))]
                changes[tid] = (list(order), float(self._rng.uniform(*self.gain)))
        if not changes:
            return pair
        out = dict(pair)
        for img_key, inst in (("image", key), ("ref_image", ref)):
            image = pair[img_key].clone()
            for k, tid in enumerate(inst.gt_track_ids.tolist()):
                if tid not in changes:
                    continue
                order, gain = changes[tid]
                m = inst.gt_masks.tensor[k]
                pix = image[:, m]  # (3, P): the visible pixels of this object
                new = pix[order].float() * gain
                image[:, m] = new.round_().clamp_(0, 255).to(image.dtype)
            out[img_key] = image
        return out
