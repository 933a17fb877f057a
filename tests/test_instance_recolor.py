"""Per-object recolouring of training pairs (vis_d2.data.instance_recolor)."""
import pytest
import torch

from helpers import boxed_instances
from vis_d2.config import get_vis_cfg
from vis_d2.data.build import PairDatasetMapper
from vis_d2.data.instance_recolor import InstanceRecolor


def _pair():
    """Two objects of colours (10, 20, 30) and (100, 150, 200) on a (50, 50, 50) background;
    in the reference frame they have moved and are listed in the other order."""
    size = (20, 30)

    def frame(boxes):
        img = torch.full((3,) + size, 50, dtype=torch.uint8)
        for (x0, y0, x1, y1), col in zip(boxes, [(10, 20, 30), (100, 150, 200)]):
            img[:, y0:y1, x0:x1] = torch.tensor(col, dtype=torch.uint8)[:, None, None]
        return img

    key_boxes, ref_boxes = [(0, 0, 5, 5), (10, 10, 20, 16)], [(2, 1, 7, 6), (12, 10, 22, 16)]
    return {"image": frame(key_boxes), "ref_image": frame(ref_boxes),
            "instances": boxed_instances(size, key_boxes, [0, 0], [1, 2]),
            "ref_instances": boxed_instances(size, ref_boxes[::-1], [0, 0], [2, 1]),
            "has_mask": True}


def _colour(image, box):
    x0, y0, x1, y1 = box
    region = image[:, y0:y1, x0:x1].reshape(3, -1)
    assert (region == region[:, :1]).all()  # one colour over the whole object
    return tuple(region[:, 0].tolist())


def test_each_object_gets_one_transform_in_both_frames():
    pair = _pair()
    out = InstanceRecolor(prob=1.0, gain=(0.5, 0.5), seed=0)(pair)
    a_key, b_key = _colour(out["image"], (0, 0, 5, 5)), _colour(out["image"], (10, 10, 20, 16))
    # The same object, the same new colour in the reference frame (listed in the other order).
    assert _colour(out["ref_image"], (2, 1, 7, 6)) == a_key
    assert _colour(out["ref_image"], (12, 10, 22, 16)) == b_key
    # Half the intensity, channels reordered (never left in the original order).
    assert sorted(a_key) == [5, 10, 15] and a_key != (5, 10, 15)
    assert sorted(b_key) == [50, 75, 100] and b_key != (50, 75, 100)
    # Background, boxes, masks and ids untouched; the input pair is not modified.
    for img in (out["image"], out["ref_image"]):
        assert int(img[0, 19, 0]) == int(img[2, 0, 29]) == 50
    assert out["instances"] is pair["instances"] and out["ref_instances"] is pair["ref_instances"]
    assert _colour(pair["image"], (0, 0, 5, 5)) == (10, 20, 30)


def test_probability_and_bright_gain_clamps():
    pair = _pair()
    assert InstanceRecolor(prob=0.0, seed=0)(pair) is pair
    out = InstanceRecolor(prob=1.0, gain=(2.0, 2.0), seed=1)(pair)
    assert sorted(_colour(out["image"], (10, 10, 20, 16))) == [200, 255, 255]
    # Over many objects, about half are recoloured at prob 0.5.
    rec = InstanceRecolor(prob=0.5, seed=3)
    changed = sum(_colour(rec(_pair())["image"], (0, 0, 5, 5)) != (10, 20, 30) for _ in range(400))
    assert 160 < changed < 240


def test_box_only_pairs_pass_and_bad_settings_are_named():
    pair = dict(_pair(), has_mask=False)
    assert InstanceRecolor(prob=1.0, seed=0)(pair) is pair
    with pytest.raises(ValueError, match="INSTANCE_RECOLOR.PROB"):
        InstanceRecolor(prob=1.5)
    with pytest.raises(ValueError, match="INSTANCE_RECOLOR.GAIN"):
        InstanceRecolor(gain=(0.0, 1.0))


def test_config_switches_it_on_after_copy_paste():
    cfg = get_vis_cfg(None, ["MODEL.DEVICE", "cpu", "INPUT.VIS.INSTANCE_RECOLOR.ENABLED", "True",
                             "INPUT.VIS.INSTANCE_RECOLOR.PROB", "0.25",
                             "INPUT.VIS.INSTANCE_RECOLOR.GAIN", "[0.8, 1.2]"])
    mapper = PairDatasetMapper(cfg)
    assert isinstance(mapper.recolor, InstanceRecolor)
    assert (mapper.recolor.prob, mapper.recolor.gain) == (0.25, (0.8, 1.2))
    assert PairDatasetMapper(get_vis_cfg(None, ["MODEL.DEVICE", "cpu"])).recolor is None
