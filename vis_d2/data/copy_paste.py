"""Copy-paste augmentation for training pairs (Ghiasi et al., "Simple Copy-Paste", CVPR 2021).

Objects cut out (by their ground-truth masks) of earlier training pairs are pasted into the key
and reference frames of the current pair, at one random offset for both frames. A pasted object
keeps its own key/reference appearance, so it moves, turns and changes between the two frames as
it did in its own video (or pseudo pair), and it gets one fresh track id in both frames: the track
head learns from it like from any other object. Pasted objects occlude what lies under them: the
masks of the pair's own instances lose the covered pixels, their boxes are recomputed from the
masks, and an instance with fewer than ``min_area`` visible pixels left is removed from that frame.

Why: a model trained from scratch on short schedules sees few objects per step (YouTube-VIS and
the synthetic benchmark have 1-4 per frame). Pasting raises the objects per frame, hence the
box, mask and track samples per step, at the cost of a few array copies and no extra image
reads: the donors come from a small bank of recently mapped pairs.

Donors and targets need masks: a pair with an instance without a usable mask (box-only data, a
weakly segmented source: ``has_mask`` False or ``gt_mask_valid`` not all True) is neither pasted
into nor kept as a donor. A pasted object keeps its ``gt_aux`` flag (an auxiliary object stays
one).
"""
import collections
from typing import Deque, Dict, List, Optional, Tuple

import torch

from detectron2.config import configurable
from detectron2.structures import BitMasks, Instances

from .augmentation import WorkerSeededRandom, pair_has_bitmasks

__all__ = ["CopyPaste"]


class _Donor:
    """The objects of one mapped pair that can be pasted: per object its class, its auxiliary
    flag, its key-frame mask and pixels, and (if it is in the reference frame) its reference mask
    and pixels, all cropped to their boxes (small arrays, so the bank stays small)."""

    __slots__ = ("objects",)

    def __init__(self, pair: Dict):
        key, ref = pair["instances"], pair["ref_instances"]
        key_img, ref_img = pair["image"], pair["ref_image"]
        ref_ids = ref.gt_track_ids.tolist()
        aux = key.gt_aux.tolist() if key.has("gt_aux") else [False] * len(key)
        self.objects = []
        for k in range(len(key)):
            key_part = _crop(key_img, key.gt_masks.tensor[k])
            if key_part is None:
                continue
            tid = int(key.gt_track_ids[k])
            ref_part = None
            if tid in ref_ids:
                ref_part = _crop(ref_img, ref.gt_masks.tensor[ref_ids.index(tid)])
            self.objects.append((int(key.gt_classes[k]), bool(aux[k]), key_part, ref_part))


def _crop(image: torch.Tensor, mask: torch.Tensor) -> Optional[Tuple[int, int, torch.Tensor, torch.Tensor]]:
    """(x0, y0, mask crop (h, w) bool, pixel crop (C, h, w)) of a mask's bounding box, or None
    for an empty mask."""
    ys = torch.nonzero(mask.any(dim=1)).flatten()
    xs = torch.nonzero(mask.any(dim=0)).flatten()
    if len(ys) == 0:
        return None
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    return x0, y0, mask[y0:y1, x0:x1].clone(), image[:, y0:y1, x0:x1].clone()


def _placement(part, dx: int, dy: int, height: int, width: int):
    """Where a cropped part moved by (dx, dy) lands in a (height, width) frame: the
    (destination, source) pairs of (row, column) slices of its clipped rectangle, or None when
    nothing of it falls inside."""
    x0, y0, m, _ = part
    h, w = m.shape
    tx0, ty0 = x0 + dx, y0 + dy
    cx0, cy0 = max(tx0, 0), max(ty0, 0)
    cx1, cy1 = min(tx0 + w, width), min(ty0 + h, height)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    return ((slice(cy0, cy1), slice(cx0, cx1)),
            (slice(cy0 - ty0, cy1 - ty0), slice(cx0 - tx0, cx1 - tx0)))


def _place(part, dx: int, dy: int, height: int, width: int) -> Optional[torch.Tensor]:
    """Paste a cropped mask at offset (dx, dy) on an empty (height, width) canvas; None when
    nothing of it falls inside."""
    where = _placement(part, dx, dy, height, width)
    if where is None:
        return None
    dst, src = where
    canvas = torch.zeros((height, width), dtype=torch.bool)
    canvas[dst] = part[2][src]
    return canvas if canvas.any() else None


def _paste_pixels(image: torch.Tensor, part, canvas: torch.Tensor, dx: int, dy: int) -> None:
    """Write the part's pixels where ``canvas`` (its placed mask, from :func:`_place`) is set,
    in place."""
    dst, src = _placement(part, dx, dy, *canvas.shape)
    visible = canvas[dst]
    region = image[(slice(None),) + dst]  # a view: writing into it writes into the image
    region[:, visible] = part[3][(slice(None),) + src][:, visible]


class CopyPaste(WorkerSeededRandom):
    """Paste objects of earlier pairs into a training pair (see the module docstring).

    ``__call__(pair) -> pair`` takes and returns the pair mappers' dict ("image", "ref_image":
    uint8 (C, H, W); "instances", "ref_instances": Instances with gt_boxes, gt_classes,
    gt_track_ids, BitMasks gt_masks and optionally gt_aux, gt_mask_valid; "has_mask"). The pair
    is first pasted into (when a donor
    is available and the coin flip says so) and then stored as a future donor, unpasted.
    """

    @configurable
    def __init__(self, *, prob: float = 0.5, max_objects: int = 3, bank_size: int = 16,
                 min_area: int = 16, seed: Optional[int] = None):
        """
        Args:
            prob: probability that a pair gets pasted objects.
            max_objects: a pasted pair gets 1..max_objects objects (uniformly), from one donor.
            bank_size: how many recent pairs are kept as donors.
            min_area: an occluded instance keeping fewer visible pixels than this (in the
                augmented frame) is removed from that frame; so is a pasted object that falls
                (almost) outside the frame.
            seed: seeds this object's random generator (None: numpy's global state, which
                detectron2 seeds per data-loader worker).
        """
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"INPUT.VIS.COPY_PASTE.PROB must be in [0, 1], got {prob}")
        if max_objects < 1:
            raise ValueError(f"INPUT.VIS.COPY_PASTE.MAX_OBJECTS must be >= 1, got {max_objects}")
        if bank_size < 1:
            raise ValueError(f"INPUT.VIS.COPY_PASTE.BANK_SIZE must be >= 1, got {bank_size}")
        if min_area < 1:
            raise ValueError(f"INPUT.VIS.COPY_PASTE.MIN_AREA must be >= 1, got {min_area}")
        self.prob = float(prob)
        self.max_objects = int(max_objects)
        self.min_area = int(min_area)
        self._bank: Deque[_Donor] = collections.deque(maxlen=int(bank_size))
        self._seed = seed

    @classmethod
    def from_config(cls, cfg):
        c = cfg.INPUT.VIS.COPY_PASTE
        return {"prob": c.PROB, "max_objects": c.MAX_OBJECTS, "bank_size": c.BANK_SIZE,
                "min_area": c.MIN_AREA}

    def __call__(self, pair: Dict) -> Dict:
        if not pair_has_bitmasks(pair):
            return pair
        donor = _Donor(pair)
        if self._bank and self._rng.random() < self.prob:
            pair = self.paste(pair, self._bank[int(self._rng.integers(len(self._bank)))])
        if donor.objects:
            self._bank.append(donor)
        return pair

    def paste(self, pair: Dict, donor: _Donor) -> Dict:
        """``pair`` with 1..max_objects objects of ``donor`` pasted in (a new dict; the input
        pair's tensors are not modified)."""
        num = int(self._rng.integers(1, min(self.max_objects, len(donor.objects)) + 1))
        chosen = self._rng.choice(len(donor.objects), size=num, replace=False)
        image, ref_image = pair["image"].clone(), pair["ref_image"].clone()
        height, width = image.shape[1:]
        key, ref = pair["instances"], pair["ref_instances"]
        key_masks, ref_masks = list(key.gt_masks.tensor), list(ref.gt_masks.tensor)
        key_cls, ref_cls = key.gt_classes.tolist(), ref.gt_classes.tolist()
        key_ids, ref_ids = key.gt_track_ids.tolist(), ref.gt_track_ids.tolist()
        key_aux = key.gt_aux.tolist() if key.has("gt_aux") else [False] * len(key)
        ref_aux = ref.gt_aux.tolist() if ref.has("gt_aux") else [False] * len(ref)
        # Fresh ids: above every id of the pair, so a pasted object never matches a real one
        # (the donor may be another pair of the same video, with the same annotation ids).
        next_id = max(key_ids + ref_ids + [0]) + 1
        for j in chosen.tolist():
            cls, aux, key_part, ref_part = donor.objects[j]
            x0, y0, m, _ = key_part
            h, w = m.shape
            # New top-left corner of the key-frame object, anywhere that keeps it in the frame
            # (or, for an object larger than the frame, anywhere that overlaps it).
            nx = int(self._rng.integers(min(0, width - w), max(0, width - w) + 1))
            ny = int(self._rng.integers(min(0, height - h), max(0, height - h) + 1))
            dx, dy = nx - x0, ny - y0
            key_canvas = _place(key_part, dx, dy, height, width)
            ref_canvas = _place(ref_part, dx, dy, height, width) if ref_part is not None else None
            if key_canvas is None or int(key_canvas.sum()) < self.min_area:
                continue
            _paste_pixels(image, key_part, key_canvas, dx, dy)
            key_masks = [mk & ~key_canvas for mk in key_masks] + [key_canvas]
            key_cls.append(cls)
            key_aux.append(aux)
            key_ids.append(next_id)
            if ref_canvas is not None and int(ref_canvas.sum()) >= self.min_area:
                _paste_pixels(ref_image, ref_part, ref_canvas, dx, dy)
                ref_masks = [mk & ~ref_canvas for mk in ref_masks] + [ref_canvas]
                ref_cls.append(cls)
                ref_aux.append(aux)
                ref_ids.append(next_id)
            next_id += 1
        out = dict(pair)
        out["image"], out["ref_image"] = image, ref_image
        out["instances"] = self._instances((height, width), key_masks, key_cls, key_ids, key_aux)
        out["ref_instances"] = self._instances((height, width), ref_masks, ref_cls, ref_ids,
                                               ref_aux)
        return out

    def _instances(self, size, masks: List[torch.Tensor], classes: List[int],
                   ids: List[int], aux: List[bool]) -> Instances:
        """Instances from visible masks: tight boxes, every mask usable (``gt_mask_valid``);
        instances under ``min_area`` dropped."""
        inst = Instances(size)
        stack = torch.stack(masks) if masks else torch.zeros((0,) + tuple(size), dtype=torch.bool)
        keep = stack.flatten(1).sum(dim=1) >= self.min_area
        bit = BitMasks(stack[keep])
        inst.gt_boxes = bit.get_bounding_boxes()
        inst.gt_classes = torch.tensor(classes, dtype=torch.int64)[keep]
        inst.gt_track_ids = torch.tensor(ids, dtype=torch.int64)[keep]
        inst.gt_aux = torch.tensor(aux, dtype=torch.bool)[keep]
        inst.gt_mask_valid = torch.ones(int(keep.sum()), dtype=torch.bool)
        inst.gt_masks = bit
        return inst
