"""Tests of the pair mappers' extra training augmentations (vis_d2/data/augmentation.py)."""
import numpy as np
import pytest
import torch

from detectron2.data import transforms as T

from vis_d2.data.augmentation import RandomChannelPermutation, build_pair_augmentation
from vis_d2.data.video_pair_mapper import VideoPairDatasetMapper

from test_mappers import H, W, box_a, box_b, boxes_by_track, make_cfg, write_video


def coloured_image():
    """HxWx3 uint8 whose three channels hold 10, 20 and 30 (and a bright square in channel 0)."""
    img = np.empty((H, W, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30
    img[4:8, 4:8, 0] = 200
    return img


def test_channel_permutation_reorders_channels_and_nothing_else():
    img = coloured_image()
    orders = set()
    for seed in range(60):
        np.random.seed(seed)
        tf = RandomChannelPermutation(prob=1.0).get_transform(img)
        out = tf.apply_image(img)
        assert out.shape == img.shape and out.dtype == np.uint8
        order = tuple(int(np.nonzero(img[0, 0] == out[0, 0, c])[0][0]) for c in range(3))
        assert np.array_equal(out, img[..., list(order)])
        orders.add(order)
        # geometry untouched: boxes, coordinates and masks are left as they are
        coords = np.array([[3.5, 7.0], [40.0, 2.0]])
        assert np.array_equal(tf.apply_coords(coords.copy()), coords)
        mask = (img[..., 0] == 200).astype(np.uint8)
        assert np.array_equal(tf.apply_segmentation(mask), mask)
    # all five non-identity orders occur, the identity never
    assert orders == {(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)}


def test_channel_permutation_probability():
    img = coloured_image()
    np.random.seed(0)
    changed = sum(
        not np.array_equal(RandomChannelPermutation(prob=0.3).get_transform(img).apply_image(img), img)
        for _ in range(2000))
    assert 0.26 < changed / 2000 < 0.34
    assert isinstance(RandomChannelPermutation(prob=0.0).get_transform(img), T.NoOpTransform)
    with pytest.raises(ValueError, match="prob"):
        RandomChannelPermutation(prob=1.5)
    with pytest.raises(ValueError, match="HxWx3"):
        RandomChannelPermutation(prob=1.0).get_transform(img[..., 0])


def test_build_pair_augmentation_defaults_are_detectron2s():
    cfg = make_cfg(flip="horizontal")
    augs = build_pair_augmentation(cfg, is_train=True)
    assert [type(a) for a in augs] == [T.ResizeShortestEdge, T.RandomFlip]
    # test-time: resize only, the INPUT.VIS options never apply
    cfg.INPUT.VIS.CHANNEL_PERMUTATION_PROB = 1.0
    assert [type(a) for a in build_pair_augmentation(cfg, is_train=False)] == [T.ResizeShortestEdge]


def test_build_pair_augmentation_options_and_errors():
    cfg = make_cfg(flip="horizontal")
    cfg.INPUT.VIS.VERTICAL_FLIP_PROB = 0.5
    cfg.INPUT.VIS.BRIGHTNESS = [0.8, 1.2]
    cfg.INPUT.VIS.CONTRAST = [0.7, 1.3]
    cfg.INPUT.VIS.CHANNEL_PERMUTATION_PROB = 0.25
    augs = build_pair_augmentation(cfg)
    assert [type(a) for a in augs] == [T.ResizeShortestEdge, T.RandomFlip, T.RandomFlip,
                                       T.RandomBrightness, T.RandomContrast,
                                       RandomChannelPermutation]
    assert augs[2].vertical and not augs[2].horizontal and augs[2].prob == 0.5
    assert (augs[3].intensity_min, augs[3].intensity_max) == (0.8, 1.2)
    assert (augs[4].intensity_min, augs[4].intensity_max) == (0.7, 1.3)
    assert augs[5].prob == 0.25
    for key, value in (("VERTICAL_FLIP_PROB", 1.5), ("BRIGHTNESS", [1.2, 0.8]),
                       ("CONTRAST", [0.0, 1.0]), ("CONTRAST", [1.0]),
                       ("CHANNEL_PERMUTATION_PROB", -0.1)):
        bad = make_cfg()
        setattr(bad.INPUT.VIS, key, value)
        with pytest.raises(ValueError, match=f"INPUT.VIS.{key}"):
            build_pair_augmentation(bad)


def test_pair_mapper_applies_one_colour_and_flip_to_both_frames(tmp_path):
    """Key and reference get the same channel order and the same vertical flip, and the boxes
    of every track follow the flip."""
    record = write_video(str(tmp_path / "v"))
    cfg = make_cfg()
    cfg.INPUT.VIS.VERTICAL_FLIP_PROB = 0.5
    cfg.INPUT.VIS.CHANNEL_PERMUTATION_PROB = 1.0
    mapper = VideoPairDatasetMapper(cfg)
    flipped, red_at = set(), set()
    for seed in range(30):
        np.random.seed(seed)
        out = mapper(record)
        t, r = out["frame_idx"], out["ref_frame_idx"]
        key, ref = out["image"].numpy(), out["ref_image"].numpy()
        # object A is pure red (BGR (0, 0, 255)) in the frames: after the permutation, the
        # channel that holds 255 inside A is the same in both frames
        is_flipped = int(out["instances"].gt_boxes.tensor[0, 1]) != box_a(t)[1]
        flipped.add(is_flipped)
        row = H - 1 - 6 if is_flipped else 6
        key_px, ref_px = key[:, row, box_a(t)[0] + 1], ref[:, row, box_a(r)[0] + 1]
        assert sorted(key_px.tolist()) == [0, 0, 255]
        assert key_px.tolist() == ref_px.tolist()
        red_at.add(int(np.argmax(key_px)))
        for inst, f in ((out["instances"], t), (out["ref_instances"], r)):
            expected = {11: box_a(f)}
            if f >= 2:
                expected[22] = box_b(f)
            if is_flipped:
                expected = {k: [x1, H - y2, x2, H - y1] for k, (x1, y1, x2, y2) in expected.items()}
            assert boxes_by_track(inst) == {k: [float(v) for v in b] for k, b in expected.items()}
            assert torch.equal(inst.gt_masks.get_bounding_boxes().tensor, inst.gt_boxes.tensor)
    assert flipped == {True, False}
    assert red_at == {0, 1, 2}  # the orders differ from pair to pair
