"""Copy-paste augmentation of training pairs (vis_d2.data.copy_paste)."""
import numpy as np
import pytest
import torch

from helpers import boxed_instances
from vis_d2.data.copy_paste import CopyPaste


def _pair(size, key_boxes, ref_boxes, classes, ids, value):
    return {
        "image": torch.full((3,) + size, value, dtype=torch.uint8),
        "ref_image": torch.full((3,) + size, value + 1, dtype=torch.uint8),
        "instances": boxed_instances(size, key_boxes, classes, ids),
        "ref_instances": boxed_instances(size, ref_boxes, classes, ids),
        "has_mask": True,
    }


def test_paste_moves_pixels_masks_and_ids_consistently():
    # Donor: one 10x10 object (class 3, id 7) that moves 2 px right between its two frames.
    donor_pair = _pair((40, 50), [(5, 5, 15, 15)], [(7, 5, 17, 15)], [3], [7], value=200)
    cp = CopyPaste(prob=1.0, max_objects=1, bank_size=4, min_area=4, seed=0)
    assert cp(donor_pair) is donor_pair  # empty bank: nothing pasted, the pair becomes a donor
    # Target: a 30x30 frame with one instance (id 7 too: the same annotation id must not match)
    # covering the left half.
    target = _pair((30, 30), [(0, 0, 15, 30)], [(0, 0, 15, 30)], [1], [7], value=10)
    out = cp(target)
    key, ref = out["instances"], out["ref_instances"]
    assert key.gt_classes.tolist()[-1] == 3 and ref.gt_classes.tolist()[-1] == 3
    new_id = key.gt_track_ids.tolist()[-1]
    assert new_id == ref.gt_track_ids.tolist()[-1] == 8  # fresh: above every id of the pair
    # The pasted key mask is a 10x10 square; the reference one is the same square 2 px right.
    kx0, ky0, kx1, ky1 = key.gt_boxes.tensor[-1].tolist()
    assert (kx1 - kx0, ky1 - ky0) == (10, 10)
    rx0, ry0, rx1, ry1 = ref.gt_boxes.tensor[-1].tolist()
    assert (rx0 - kx0, ry0 - ky0) == (2, 0)
    # Pixels under the pasted masks are the donor's (200 key / 201 reference), the rest untouched.
    km, rm = key.gt_masks.tensor[-1], ref.gt_masks.tensor[-1]
    assert int(km.sum()) == 100 and torch.all(out["image"][:, km] == 200)
    assert torch.all(out["image"][:, ~km] == 10)
    assert torch.all(out["ref_image"][:, rm] == 201) and torch.all(out["ref_image"][:, ~rm] == 11)
    # The target's own instance lost exactly the pixels now covered by the pasted object.
    own = key.gt_masks.tensor[0]
    assert int(own.sum()) == 15 * 30 - int((km[:, :15]).sum())
    assert not torch.any(own & km)
    # The input pair is not modified.
    assert torch.all(target["image"] == 10) and len(target["instances"]) == 1


def test_fully_covered_instance_is_dropped_and_small_paste_skipped():
    donor_pair = _pair((20, 20), [(0, 0, 20, 20)], [(0, 0, 20, 20)], [2], [1], value=50)
    cp = CopyPaste(prob=1.0, max_objects=1, min_area=10, seed=1)
    cp(donor_pair)
    # The donor object covers the whole 20x20 target frame, so the target's 3x3 instance
    # (area 9 < min_area anyway once covered) disappears from both frames.
    target = _pair((20, 20), [(2, 2, 5, 5)], [(3, 3, 6, 6)], [0], [5], value=0)
    out = cp(target)
    for inst in (out["instances"], out["ref_instances"]):
        assert inst.gt_track_ids.tolist() == [6]
        assert inst.gt_classes.tolist() == [2]
        assert inst.gt_boxes.tensor.tolist() == [[0.0, 0.0, 20.0, 20.0]]


def test_box_only_pairs_and_probability_zero_pass_through():
    cp = CopyPaste(prob=1.0, seed=0)
    box_only = _pair((20, 20), [(0, 0, 5, 5)], [(0, 0, 5, 5)], [0], [1], value=0)
    box_only["has_mask"] = False
    assert cp(box_only) is box_only
    assert len(cp._bank) == 0  # not kept as a donor either
    never = CopyPaste(prob=0.0, seed=0)
    a = _pair((20, 20), [(0, 0, 5, 5)], [(0, 0, 5, 5)], [0], [1], value=0)
    b = _pair((20, 20), [(10, 10, 15, 15)], [(10, 10, 15, 15)], [1], [2], value=0)
    assert never(a) is a and never(b) is b


def test_pasted_object_absent_from_donor_reference_stays_absent():
    donor_pair = _pair((20, 20), [(0, 0, 6, 6)], [(0, 0, 6, 6)], [1], [4], value=90)
    donor_pair["ref_instances"] = boxed_instances((20, 20), [], [], [])  # the object left the frame
    cp = CopyPaste(prob=1.0, min_area=4, seed=3)
    cp(donor_pair)
    out = cp(_pair((20, 20), [(14, 14, 20, 20)], [(14, 14, 20, 20)], [0], [1], value=0))
    assert len(out["instances"]) >= 1 and out["instances"].gt_track_ids.tolist()[-1] == 2
    assert 2 not in out["ref_instances"].gt_track_ids.tolist()
    assert torch.all(out["ref_image"] == 1)  # nothing pasted into the reference


@pytest.mark.parametrize("kwargs, field", [
    ({"prob": 1.5}, "PROB"), ({"max_objects": 0}, "MAX_OBJECTS"),
    ({"bank_size": 0}, "BANK_SIZE"), ({"min_area": 0}, "MIN_AREA"),
])
def test_bad_settings_name_the_config_key(kwargs, field):
    with pytest.raises(ValueError, match=f"INPUT.VIS.COPY_PASTE.{field}"):
        CopyPaste(**kwargs)


def test_config_builds_it_into_the_pair_mapper():
    from vis_d2.config import add_vis_config
    from detectron2.config import get_cfg
    from vis_d2.data.build import PairDatasetMapper

    cfg = add_vis_config(get_cfg())
    cfg.INPUT.MASK_FORMAT = "bitmask"
    assert PairDatasetMapper(cfg).copy_paste is None
    cfg.INPUT.VIS.COPY_PASTE.ENABLED = True
    cfg.INPUT.VIS.COPY_PASTE.MAX_OBJECTS = 2
    mapper = PairDatasetMapper(cfg)
    assert isinstance(mapper.copy_paste, CopyPaste) and mapper.copy_paste.max_objects == 2
