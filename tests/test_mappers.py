"""Tests of the training pair mappers, the test-time video mapper and the vis_d2 loaders.

Every test writes its own tiny frames/images (PNG, lossless) and records in tmp_path.
"""
import json
import logging
import os
import pickle
import re

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils
from detectron2.data.datasets import load_coco_json
from detectron2.structures import BitMasks, BoxMode, PolygonMasks

from vis_d2.config import add_vis_config
from vis_d2.data.build import (
    PairDatasetMapper,
    UnknownDatasetError,
    build_vis_test_loader,
    build_vis_train_loader,
    get_vis_train_dataset_dicts,
    get_vis_train_sources,
    source_repeat_factors,
)
from vis_d2.data.pseudo_pair_mapper import AffineTransform, PseudoPairDatasetMapper
from vis_d2.data.video_pair_mapper import VideoPairDatasetMapper, uniform_frame_subset
from vis_d2.data.video_test_mapper import LazyVideoFrames, VideoTestDatasetMapper

H, W = 32, 48  # video size
T_LEN = 8


def make_cfg(mask_format="bitmask", flip="none", min_size=H, max_size=W):
    cfg = get_cfg()
    add_vis_config(cfg)
    cfg.MODEL.MASK_ON = True
    cfg.INPUT.MASK_FORMAT = mask_format
    cfg.INPUT.FORMAT = "BGR"
    cfg.INPUT.MIN_SIZE_TRAIN = (min_size,)
    cfg.INPUT.MAX_SIZE_TRAIN = max_size
    cfg.INPUT.MIN_SIZE_TEST = min_size
    cfg.INPUT.MAX_SIZE_TEST = max_size
    cfg.INPUT.RANDOM_FLIP = flip
    cfg.INPUT.VIS.REF_DELTA = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    return cfg


def box_a(t):
    """Object A (track 11): 8x6 box moving 2 px right per frame, XYXY."""
    return [4 + 2 * t, 4, 12 + 2 * t, 10]


def box_b(t):
    """Object B (track 22), frames >= 2: 6x10 box moving down."""
    return [30, 10 + t, 36, 20 + t]


def rect_rle(box, h=H, w=W):
    m = np.zeros((h, w), dtype=np.uint8, order="F")
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = 1
    rle = mask_util.encode(m)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rect_polygon(box):
    x1, y1, x2, y2 = box
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def xywh(box):
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def frame_image(t, h=H, w=W):
    """Frame t: the top-left 4x4 patch holds 10*t+5 (identifies the frame), objects drawn."""
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[0:4, 0:4] = 10 * t + 5
    x1, y1, x2, y2 = box_a(t)
    img[y1:y2, x1:x2] = (0, 0, 255)
    if t >= 2:
        x1, y1, x2, y2 = box_b(t)
        img[y1:y2, x1:x2] = (0, 255, 0)
    return img


def write_video(root, video_id=7, length=T_LEN, with_masks=True, crowd_only_first=False):
    """Write `length` frames and return their video record."""
    os.makedirs(root, exist_ok=True)
    file_names, annotations = [], []
    for t in range(length):
        fn = os.path.join(root, f"{video_id}_{t:03d}.png")
        cv2.imwrite(fn, frame_image(t))
        file_names.append(fn)
        annos = []
        if crowd_only_first and t == 0:
            annos.append(
                {"track_id": 99, "category_id": 0, "iscrowd": 1, "bbox": xywh(box_a(t)),
                 "bbox_mode": BoxMode.XYWH_ABS}
            )
        else:
            a = {"track_id": 11, "category_id": 1, "iscrowd": 0, "bbox": xywh(box_a(t)),
                 "bbox_mode": BoxMode.XYWH_ABS}
            if with_masks:
                a["segmentation"] = rect_rle(box_a(t))
            annos.append(a)
            if t >= 2:
                b = {"track_id": 22, "category_id": 3, "iscrowd": 0, "bbox": xywh(box_b(t)),
                     "bbox_mode": BoxMode.XYWH_ABS}
                if with_masks:
                    b["segmentation"] = rect_polygon(box_b(t))
                annos.append(b)
        annotations.append(annos)
    return {
        "video_id": video_id,
        "file_names": file_names,
        "height": H,
        "width": W,
        "length": length,
        "annotations": annotations,
        "json_file": os.path.join(root, "fake.json"),
    }


def record_reads(monkeypatch):
    """Patch detectron2's read_image; returns the list of file names it is called with."""
    reads = []
    real_read = detection_utils.read_image

    def read(file_name, format=None):
        reads.append(file_name)
        return real_read(file_name, format)

    monkeypatch.setattr(detection_utils, "read_image", read)
    return reads


def boxes_by_track(instances):
    return {
        int(t): [float(v) for v in b]
        for t, b in zip(instances.gt_track_ids, instances.gt_boxes.tensor)
    }


# ------------------------------------------------------------------------------------------------
# VideoPairDatasetMapper
# ------------------------------------------------------------------------------------------------


def test_video_pair_track_ids_and_reference_window(tmp_path):
    record = write_video(str(tmp_path / "v"))
    mapper = VideoPairDatasetMapper(make_cfg(), is_train=True)
    offsets = set()
    for seed in range(40):
        np.random.seed(seed)
        out = mapper(record)
        t, r = out["frame_idx"], out["ref_frame_idx"]
        assert r != t and abs(r - t) <= 2 and 0 <= r < T_LEN
        offsets.add(r - t)
        # the images are the frames t and r (frame marker in the top-left patch)
        assert out["image"].shape == (3, H, W) and out["image"].dtype == torch.uint8
        assert int(out["image"][0, 1, 1]) == 10 * t + 5
        assert int(out["ref_image"][0, 1, 1]) == 10 * r + 5
        # each track id carries the box of that object in that frame
        for inst, f in ((out["instances"], t), (out["ref_instances"], r)):
            expected = {11: [float(v) for v in box_a(f)]}
            if f >= 2:
                expected[22] = [float(v) for v in box_b(f)]
            assert boxes_by_track(inst) == expected
            assert inst.gt_track_ids.dtype == torch.int64
            assert inst.gt_classes.tolist() == [1] + ([3] if f >= 2 else [])
            assert isinstance(inst.gt_masks, BitMasks)
            # masks agree with the boxes (RLE for A, polygon for B)
            assert torch.equal(inst.gt_masks.get_bounding_boxes().tensor, inst.gt_boxes.tensor)
        assert out["has_mask"] is True and out["pseudo_ref"] is False
        assert (out["height"], out["width"], out["video_id"]) == (H, W, 7)
    assert offsets == {-2, -1, 1, 2}


def test_video_pair_single_frame_reference_is_key(tmp_path):
    record = write_video(str(tmp_path / "v"), length=1)
    out = VideoPairDatasetMapper(make_cfg())(record)
    assert out["frame_idx"] == out["ref_frame_idx"] == 0
    assert boxes_by_track(out["ref_instances"]) == boxes_by_track(out["instances"])


def test_video_pair_same_flip_and_resize_on_both_frames(tmp_path):
    record = write_video(str(tmp_path / "v"))
    cfg = make_cfg(flip="horizontal", min_size=2 * H, max_size=2 * W)  # x2 resize
    mapper = VideoPairDatasetMapper(cfg)
    seen = set()
    for seed in range(30):
        np.random.seed(seed)
        out = mapper(record)
        t, r = out["frame_idx"], out["ref_frame_idx"]
        img, ref = out["image"], out["ref_image"]
        assert img.shape == ref.shape == (3, 2 * H, 2 * W)
        # the frame marker is top-left unless flipped (then top-right), in BOTH frames
        flipped = int(img[0, 2, -3]) == 10 * t + 5
        assert flipped != (int(img[0, 2, 2]) == 10 * t + 5)
        col = -3 if flipped else 2
        assert int(ref[0, 2, col]) == 10 * r + 5
        seen.add(flipped)
        for inst, f in ((out["instances"], t), (out["ref_instances"], r)):
            x1, y1, x2, y2 = [2 * v for v in box_a(f)]
            if flipped:
                x1, x2 = 2 * W - x2, 2 * W - x1
            assert boxes_by_track(inst)[11] == [x1, y1, x2, y2]
    assert seen == {True, False}


def test_video_pair_box_only_and_crowd(tmp_path):
    record = write_video(str(tmp_path / "v"), with_masks=False, crowd_only_first=True)
    mapper = VideoPairDatasetMapper(make_cfg())
    keys = set()
    for seed in range(30):
        np.random.seed(seed)
        out = mapper(record)
        keys.add(out["frame_idx"])
        assert out["has_mask"] is False
        assert not out["instances"].has("gt_masks") and not out["ref_instances"].has("gt_masks")
        assert 99 not in out["ref_instances"].gt_track_ids.tolist()  # crowd dropped
    assert 0 not in keys  # frame 0 has only a crowd instance: never a key frame


def test_video_pair_empty_box_is_filtered_per_frame(tmp_path):
    record = write_video(str(tmp_path / "v"))
    for t in range(T_LEN):  # polygons only (RLE needs bitmask); a zero-width 3rd object
        record["annotations"][t][0]["segmentation"] = rect_polygon(box_a(t))
        record["annotations"][t].append(
            {"track_id": 33, "category_id": 2, "iscrowd": 0, "bbox": [20, 20, 0, 5],
             "bbox_mode": BoxMode.XYWH_ABS, "segmentation": rect_polygon([20, 20, 21, 25])}
        )
    out = VideoPairDatasetMapper(make_cfg(mask_format="polygon"))(record)
    for inst in (out["instances"], out["ref_instances"]):
        assert 33 not in inst.gt_track_ids.tolist() and 11 in inst.gt_track_ids.tolist()
        assert isinstance(inst.gt_masks, PolygonMasks)
        assert len(inst.gt_masks) == len(inst)


def uncompressed_rle(box):
    """COCO uncompressed RLE: run lengths of the column-major mask, starting with a 0-run."""
    flat = np.zeros((H, W), dtype=np.uint8)
    flat[box[1] : box[3], box[0] : box[2]] = 1
    flat = flat.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": [H, W], "counts": counts}


def test_video_pair_uncompressed_rle_and_polygon_format_error(tmp_path):
    record = write_video(str(tmp_path / "v"), length=2)
    for t in range(2):
        record["annotations"][t][0]["segmentation"] = uncompressed_rle(box_a(t))
    out = VideoPairDatasetMapper(make_cfg())(record)
    t, r = out["frame_idx"], out["ref_frame_idx"]
    for inst, f in ((out["instances"], t), (out["ref_instances"], r)):
        assert np.array_equal(inst.gt_masks.tensor[0].numpy(), rect_mask(box_a(f), H, W))
    with pytest.raises(ValueError, match=r"video 7 .*RLE segmentation.*MASK_FORMAT='bitmask'"):
        VideoPairDatasetMapper(make_cfg(mask_format="polygon"))(record)


def test_video_without_annotated_frame_raises(tmp_path):
    record = write_video(str(tmp_path / "v"), length=2)
    record["annotations"] = [[], []]
    with pytest.raises(ValueError, match=r"video 7 .*no frame with a non-crowd instance"):
        VideoPairDatasetMapper(make_cfg())(record)


def test_frames_per_video_restricts_keys_and_uses_pseudo_reference(tmp_path, monkeypatch):
    record = write_video(str(tmp_path / "v"), crowd_only_first=True)  # annotated: frames 1..7
    assert uniform_frame_subset(list(range(1, 8)), 2) == [1, 7]
    assert uniform_frame_subset(list(range(1, 8)), 3) == [1, 4, 7]
    cfg = make_cfg()
    cfg.INPUT.VIS.FRAMES_PER_VIDEO = 2
    cfg.INPUT.VIS.PSEUDO_SHIFT = 0.0
    cfg.INPUT.VIS.PSEUDO_ROTATE = 0.0
    cfg.INPUT.VIS.PSEUDO_SCALE = [1.0, 1.0]
    cfg.INPUT.VIS.PSEUDO_FLIP = 1.0  # the pseudo reference is the mirrored key frame
    mapper = VideoPairDatasetMapper(cfg)
    reads = record_reads(monkeypatch)
    keys = set()
    for seed in range(20):
        np.random.seed(seed)
        out = mapper(record)
        t = out["frame_idx"]
        keys.add(t)
        assert out["ref_frame_idx"] == t and out["pseudo_ref"] is True
        assert int(out["ref_image"][0, 1, -2]) == 10 * t + 5  # mirrored marker
        x1, y1, x2, y2 = box_a(t)
        assert boxes_by_track(out["ref_instances"])[11] == [W - x2, y1, W - x1, y2]
        assert sorted(out["ref_instances"].gt_track_ids.tolist()) == sorted(
            out["instances"].gt_track_ids.tolist()
        )
    assert keys == {1, 7}
    assert len(reads) == 20  # only the key frame is read


def test_video_pair_missing_frame_and_size_mismatch(tmp_path, caplog):
    record = write_video(str(tmp_path / "v"), length=2)
    cv2.imwrite(record["file_names"][1], cv2.resize(frame_image(1), (W // 2, H // 2)))
    mapper = VideoPairDatasetMapper(make_cfg())
    with caplog.at_level(logging.WARNING, logger="vis_d2.data.frames"):
        out = mapper(record)  # 2 frames, delta 2: key and ref are frames 0 and 1
    assert out["image"].shape == out["ref_image"].shape == (3, H, W)
    assert any("video 7" in m and "frame 1" in m and "resizing" in m for m in caplog.messages)
    os.remove(record["file_names"][1])
    with pytest.raises(FileNotFoundError) as e:
        mapper(record)
    msg = str(e.value)
    assert record["file_names"][1] in msg and "video 7" in msg and "frame 1" in msg


# ------------------------------------------------------------------------------------------------
# PseudoPairDatasetMapper
# ------------------------------------------------------------------------------------------------

IH, IW = 40, 60
OBJ1, OBJ2 = [10, 8, 30, 20], [36, 22, 50, 34]  # XYXY


def write_coco(tmp_path, with_masks=True, name="coco.json"):
    img = np.zeros((IH, IW, 3), dtype=np.uint8)
    img[:, : IW // 3] = 200  # left third bright: asymmetric
    cv2.imwrite(str(tmp_path / "img.png"), img)
    annos = []
    for i, (box, cat) in enumerate(((OBJ1, 1), (OBJ2, 2))):
        a = {"id": 100 + i, "image_id": 1, "category_id": cat, "bbox": xywh(box), "iscrowd": 0,
             "area": (box[2] - box[0]) * (box[3] - box[1])}
        if with_masks:
            a["segmentation"] = rect_polygon(box)
        annos.append(a)
    crowd = {"id": 200, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1,
             "area": 25}
    if with_masks:
        crowd["segmentation"] = rect_polygon([0, 0, 5, 5])
    coco = {
        "images": [{"id": 1, "file_name": "img.png", "height": IH, "width": IW}],
        "annotations": annos + [crowd],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
    }
    path = tmp_path / name
    path.write_text(json.dumps(coco))
    return load_coco_json(str(path), str(tmp_path))


def pseudo_mapper(pseudo_augs, mask_format="bitmask", flip="none"):
    cfg = make_cfg(mask_format=mask_format, flip=flip, min_size=IH, max_size=IW)
    return PseudoPairDatasetMapper(cfg, pseudo_augmentations=pseudo_augs)


def rect_mask(box, h=IH, w=IW):
    m = np.zeros((h, w), dtype=bool)
    m[box[1] : box[3], box[0] : box[2]] = True
    return m


@pytest.mark.parametrize("mask_format", ["bitmask", "polygon"])
def test_pseudo_pair_known_shift(tmp_path, mask_format):
    (d,) = write_coco(tmp_path)
    shift = AffineTransform([[1, 0, 5], [0, 1, 3]], IH, IW)
    out = pseudo_mapper([shift], mask_format)(d)
    key, ref = out["instances"], out["ref_instances"]
    assert key.gt_track_ids.tolist() == ref.gt_track_ids.tolist() == [1, 2]  # index + 1
    assert key.gt_classes.tolist() == ref.gt_classes.tolist()
    assert boxes_by_track(key) == {1: OBJ1, 2: OBJ2}
    moved = lambda b: [b[0] + 5, b[1] + 3, b[2] + 5, b[3] + 3]  # noqa: E731
    assert boxes_by_track(ref) == {1: moved(OBJ1), 2: moved(OBJ2)}
    assert out["has_mask"] is True and out["pseudo_ref"] is True
    # the image moved by the same shift: bright columns 0..19 -> 5..24, rows 0..2 black
    ref_img = out["ref_image"][0].numpy()
    assert (ref_img[3:, 5:25] == 200).all() and (ref_img[3:, 25:] == 0).all()
    assert (ref_img[:3] == 0).all() and (ref_img[:, :5] == 0).all()
    if mask_format == "bitmask":
        assert np.array_equal(ref.gt_masks.tensor[0].numpy(), rect_mask(moved(OBJ1)))
        assert np.array_equal(ref.gt_masks.tensor[1].numpy(), rect_mask(moved(OBJ2)))
    else:
        assert isinstance(ref.gt_masks, PolygonMasks)
        assert ref.gt_masks.polygons[0][0].tolist() == rect_polygon(moved(OBJ1))[0]


def test_pseudo_pair_flip_from_config(tmp_path):
    (d,) = write_coco(tmp_path)
    cfg = make_cfg(min_size=IH, max_size=IW)
    cfg.INPUT.VIS.PSEUDO_SHIFT = 0.0
    cfg.INPUT.VIS.PSEUDO_ROTATE = 0.0
    cfg.INPUT.VIS.PSEUDO_SCALE = [1.0, 1.0]
    cfg.INPUT.VIS.PSEUDO_FLIP = 1.0
    out = PseudoPairDatasetMapper(cfg)(d)
    mirror = lambda b: [IW - b[2], b[1], IW - b[0], b[3]]  # noqa: E731
    assert boxes_by_track(out["ref_instances"]) == {1: mirror(OBJ1), 2: mirror(OBJ2)}
    assert np.array_equal(out["ref_image"].numpy(), out["image"].numpy()[:, :, ::-1])
    key_masks = out["instances"].gt_masks.tensor.numpy()
    assert np.array_equal(out["ref_instances"].gt_masks.tensor.numpy(), key_masks[:, :, ::-1])


def test_pseudo_pair_rotation_keeps_masks_and_boxes_aligned(tmp_path):
    (d,) = write_coco(tmp_path)
    # 180 degrees about the centre: (x, y) -> (W - x, H - y); checks the half-pixel convention
    rot = AffineTransform(cv2.getRotationMatrix2D((IW / 2, IH / 2), 180, 1.0), IH, IW)
    out = pseudo_mapper([rot])(d)
    ref = out["ref_instances"]
    point = lambda b: [IW - b[2], IH - b[3], IW - b[0], IH - b[1]]  # noqa: E731
    assert boxes_by_track(ref) == {1: point(OBJ1), 2: point(OBJ2)}
    key_masks = out["instances"].gt_masks.tensor.numpy()
    assert np.array_equal(ref.gt_masks.tensor.numpy(), key_masks[:, ::-1, ::-1])
    assert np.array_equal(out["ref_image"].numpy(), out["image"].numpy()[:, ::-1, ::-1])

    # a 30 degree rotation + scale: the ref boxes are the tight boxes of the warped masks
    rot30 = AffineTransform(cv2.getRotationMatrix2D((IW / 2, IH / 2), 30, 1.1), IH, IW)
    ref = pseudo_mapper([rot30])(d)["ref_instances"]
    assert torch.equal(ref.gt_boxes.tensor, ref.gt_masks.get_bounding_boxes().tensor)
    # polygons are warped as coordinates, then rasterised: same region as the warped raster
    # mask up to edge pixels
    warped = rot30.apply_segmentation(rect_mask(OBJ1).astype(np.uint8)).astype(bool)
    got = ref.gt_masks.tensor[0].numpy()
    assert (got & warped).sum() / (got | warped).sum() > 0.97
    # RLE masks are warped as rasters (nearest): exactly the warped key mask
    for a, box in zip(d["annotations"], (OBJ1, OBJ2, [0, 0, 5, 5])):
        a["segmentation"] = rect_rle(box, IH, IW)
    ref = pseudo_mapper([rot30])(d)["ref_instances"]
    assert np.array_equal(ref.gt_masks.tensor[0].numpy(), warped)
    assert torch.equal(ref.gt_boxes.tensor, ref.gt_masks.get_bounding_boxes().tensor)
    # area preserved up to the 1.1^2 scale and rasterisation (240 px -> ~290)
    assert 270 <= int(ref.gt_masks.tensor[0].sum()) <= 310


def test_pseudo_pair_box_only(tmp_path):
    (d,) = write_coco(tmp_path, with_masks=False)
    assert all("segmentation" not in a for a in d["annotations"])
    rot = AffineTransform(cv2.getRotationMatrix2D((IW / 2, IH / 2), 90, 1.0), IH, IW)
    out = pseudo_mapper([rot])(d)
    assert out["has_mask"] is False
    assert not out["instances"].has("gt_masks") and not out["ref_instances"].has("gt_masks")
    # 90 deg CCW about (30, 20): (x, y) -> (30 + (y - 20), 20 - (x - 30)); box from corners
    x1, y1, x2, y2 = OBJ1
    expected = [30 + y1 - 20, 20 - (x2 - 30), 30 + y2 - 20, 20 - (x1 - 30)]
    got = boxes_by_track(out["ref_instances"])[1]
    assert np.allclose(got, expected, atol=1e-4)
    # OBJ2 rotates to y in [-6, 8]: clipped at 0
    x1, y1, x2, y2 = OBJ2
    got2 = boxes_by_track(out["ref_instances"])[2]
    assert np.allclose(got2, [30 + y1 - 20, 0, 30 + y2 - 20, 20 - (x1 - 30)], atol=1e-4)


def test_pseudo_pair_uses_annotation_ids_and_random_defaults(tmp_path):
    (d,) = write_coco(tmp_path)
    for a, i in zip(d["annotations"], (100, 101, 200)):
        a["id"] = i
    cfg = make_cfg(min_size=IH, max_size=IW, flip="horizontal")
    mapper = PseudoPairDatasetMapper(cfg)  # paper-style random shift/rotate/scale/flip
    for seed in range(10):
        np.random.seed(seed)
        out = mapper(d)
        assert out["instances"].gt_track_ids.tolist() == [100, 101]  # crowd 200 dropped
        assert set(out["ref_instances"].gt_track_ids.tolist()) <= {100, 101}
        ref = out["ref_instances"]
        assert torch.equal(ref.gt_boxes.tensor, ref.gt_masks.get_bounding_boxes().tensor)
        assert out["ref_image"].shape == out["image"].shape == (3, IH, IW)


# ------------------------------------------------------------------------------------------------
# Test-time mapper
# ------------------------------------------------------------------------------------------------


def test_lazy_video_frames_reads_on_access_forward_and_backward(tmp_path, monkeypatch):
    record = write_video(str(tmp_path / "v"), length=5)
    reads = record_reads(monkeypatch)
    cfg = make_cfg(min_size=2 * H, max_size=4 * W)  # test scale x2
    out = VideoTestDatasetMapper(cfg)(record)
    assert reads == []
    assert (out["video_id"], out["height"], out["width"], out["length"]) == (7, H, W, 5)
    frames = out["frames"]
    assert isinstance(frames, LazyVideoFrames) and len(frames) == 5
    f3 = frames[3]
    assert reads == [record["file_names"][3]]
    assert f3["image"].shape == (3, 2 * H, 2 * W) and (f3["height"], f3["width"]) == (H, W)
    assert int(f3["image"][0, 2, 2]) == 35
    markers = [int(f["image"][0, 2, 2]) for f in reversed(frames)]
    assert markers == [45, 35, 25, 15, 5]
    assert reads[1:] == record["file_names"][::-1]
    assert int(frames[-1]["image"][0, 2, 2]) == 45
    with pytest.raises(IndexError):
        frames[5]
    # travels through DataLoader workers: picklable, still lazy
    n_reads = len(reads)
    copy = pickle.loads(pickle.dumps(frames))
    assert len(reads) == n_reads and len(copy) == 5 and int(copy[1]["image"][0, 2, 2]) == 15


def test_video_test_mapper_errors_and_size_mismatch(tmp_path, caplog):
    record = write_video(str(tmp_path / "v"), length=3)
    mapper = VideoTestDatasetMapper(make_cfg())
    empty = dict(record, file_names=[], length=0, annotations=[])
    with pytest.raises(ValueError, match="video 7 .* has no frames"):
        mapper(empty)
    cv2.imwrite(record["file_names"][2], cv2.resize(frame_image(2), (W * 2, H * 2)))
    frames = mapper(record)["frames"]
    with caplog.at_level(logging.WARNING, logger="vis_d2.data.frames"):
        f2 = frames[2]
    assert f2["image"].shape == (3, H, W)
    assert any("video 7" in m and "frame 2" in m for m in caplog.messages)
    os.remove(record["file_names"][1])
    message = r"video 7.*frame 1: file '.*_001\.png' does not exist"
    with pytest.raises(FileNotFoundError, match=message):
        frames[1]


# ------------------------------------------------------------------------------------------------
# Loaders
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def registered():
    names = []

    def register(name, dicts, **meta):
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(**meta)
        names.append(name)

    yield register
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def test_train_loader_errors(tmp_path, registered):
    record = write_video(str(tmp_path / "v"), length=2)
    registered("vistest_tiny_train", [record], evaluator_type="ytvis")
    cfg = make_cfg()
    cfg.DATASETS.TRAIN = ("vistest_tiny_trian",)
    with pytest.raises(UnknownDatasetError, match="vistest_tiny_train") as e:
        build_vis_train_loader(cfg)
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)

    no_gt = dict(record, annotations=[[], []], has_gt=False)
    registered("vistest_tiny_valid", [no_gt], evaluator_type="ytvis")
    cfg.DATASETS.TRAIN = ("vistest_tiny_train", "vistest_tiny_valid")
    message = (f"training set 'vistest_tiny_valid' ({record['json_file']}) has no annotations: "
               "cannot train on it")
    with pytest.raises(ValueError, match=re.escape(message)):
        build_vis_train_loader(cfg)

    crowd_only = dict(record, annotations=[[dict(a, iscrowd=1) for a in f]
                                           for f in record["annotations"]])
    registered("vistest_tiny_crowd", [crowd_only], evaluator_type="ytvis")
    cfg.DATASETS.TRAIN = ("vistest_tiny_train", "vistest_tiny_crowd")
    with pytest.raises(ValueError, match="training set 'vistest_tiny_crowd' has no annotated"):
        build_vis_train_loader(cfg)


def test_train_loader_mixes_video_and_image_pairs(tmp_path, registered, caplog):
    record = write_video(str(tmp_path / "v"))
    unannotated = dict(write_video(str(tmp_path / "u"), video_id=8, length=2), annotations=[[], []])
    registered("vistest_mix_videos", [record, unannotated], evaluator_type="ytvis")
    registered("vistest_mix_images", write_coco(tmp_path, name="img.json"))
    cfg = make_cfg()
    cfg.DATASETS.TRAIN = ("vistest_mix_videos", "vistest_mix_images")
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    with caplog.at_level(logging.INFO, logger="vis_d2.data.build"):
        dicts = get_vis_train_dataset_dicts(cfg.DATASETS.TRAIN)
    assert len(dicts) == 2
    assert any("'vistest_mix_videos'" in m and "kept 1 of 2 videos" in m for m in caplog.messages)
    mapper = PairDatasetMapper(cfg)
    assert mapper(dicts[1])["pseudo_ref"] is True and mapper(dicts[0])["pseudo_ref"] is False
    batch = next(iter(build_vis_train_loader(cfg)))
    assert len(batch) == 4  # IMS_PER_BATCH counts pairs
    for item in batch:
        assert {"image", "instances", "ref_image", "ref_instances", "has_mask"} <= set(item)
        assert item["video_id"] in (7, 1)


def test_later_training_sets_match_names_only_when_opted_in(tmp_path, registered, caplog):
    record = write_video(str(tmp_path / "v"))  # its instances are of contiguous classes 1, 3
    registered("vistest_names_videos", [record], evaluator_type="ytvis",
               thing_classes=["b", "a", "x", "y"])
    (img,) = write_coco(tmp_path, name="img.json")
    # Contiguous ids in the image set's own classes ["a", "b", "c"]: a, c, and a crowd "a".
    img["annotations"] = [dict(a, category_id=c) for a, c in zip(img["annotations"], (0, 2, 0))]
    only_c = dict(img, image_id=2, annotations=[dict(img["annotations"][1])])
    registered("vistest_names_images", [img, only_c], thing_classes=["a", "b", "c"])
    names = ["vistest_names_videos", "vistest_names_images"]
    # No class map links the two and no opt-in: names are not matched silently.
    with pytest.raises(ValueError, match=r"'vistest_names_images' \(taxonomy None\) has other "
                       r"classes .* no class map .*match_classes_by_name=True"):
        get_vis_train_sources(names)

    MetadataCatalog.get("vistest_names_images").match_classes_by_name = True
    with caplog.at_level(logging.INFO, logger="vis_d2.data.build"):
        videos, images = get_vis_train_sources(names)
    assert videos == [record]  # the first set's classes are the model's: unchanged
    # "a" -> 1; "c" has no counterpart: auxiliary, dropped with K = 0 (and so is the image
    # holding only a "c").
    assert [[a["category_id"] for a in d["annotations"]] for d in images] == [[1, 1]]
    assert [a["iscrowd"] for a in images[0]["annotations"]] == [0, 1]
    assert [a["category_id"] for a in img["annotations"]] == [0, 2, 0]  # the catalog's dicts kept
    assert any("'vistest_names_images' (classes matched by name" in m and "kept 1 of 2 images"
               in m and "1 mapped, 0 auxiliary, 2 dropped" in m for m in caplog.messages)

    registered("vistest_names_other", [img], thing_classes=["p", "q", "r"],
               match_classes_by_name=True)
    message = "'vistest_names_other' and 'vistest_names_videos' share no"
    with pytest.raises(ValueError, match=message):
        get_vis_train_sources(["vistest_names_videos", "vistest_names_other"])
    bad_id = dict(img, annotations=[dict(img["annotations"][0], category_id=5)])
    registered("vistest_names_bad_id", [bad_id], thing_classes=["a", "c"],
               match_classes_by_name=True)
    with pytest.raises(ValueError, match=r"'vistest_names_bad_id', image 1 .* category_id 5 is "
                                         "not an index"):
        get_vis_train_sources(["vistest_names_videos", "vistest_names_bad_id"])
    registered("vistest_names_unnamed", [img])
    with pytest.raises(ValueError, match="'vistest_names_unnamed' has no 'thing_classes'"):
        get_vis_train_sources(["vistest_names_videos", "vistest_names_unnamed"])


def test_source_weights_set_the_share_of_pairs(tmp_path, registered):
    factors = source_repeat_factors([2, 6], [1.0, 1.0])
    assert factors.tolist() == [3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert source_repeat_factors([4, 4], [3, 1]).tolist() == [3.0] * 4 + [1.0] * 4
    with pytest.raises(ValueError, match="has 1 weights for 2 training sets"):
        source_repeat_factors([2, 6], [1.0])
    with pytest.raises(ValueError, match="must all be > 0"):
        source_repeat_factors([2, 6], [1.0, 0.0])

    record = write_video(str(tmp_path / "v"))
    registered("vistest_share_videos", [record], evaluator_type="ytvis")
    registered("vistest_share_images", write_coco(tmp_path, name="img.json") * 4)
    cfg = make_cfg()
    cfg.DATASETS.TRAIN = ("vistest_share_videos", "vistest_share_images")
    cfg.SOLVER.IMS_PER_BATCH = 10
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    shares = {}
    for weights in ([], [1.0, 1.0]):
        cfg.DATALOADER.VIS.SOURCE_WEIGHTS = weights
        it = iter(build_vis_train_loader(cfg))
        pairs = [p for _ in range(20) for p in next(it)]
        shares[len(weights)] = sum(not p["pseudo_ref"] for p in pairs) / len(pairs)
    # 1 video among 5 records: 20% of the pairs by default, half of them with equal weights.
    assert abs(shares[0] - 0.2) < 0.07 and abs(shares[2] - 0.5) < 0.09, shares

    # The explicit (LazyConfig) form: one list of records per source.
    sources = get_vis_train_sources(cfg.DATASETS.TRAIN)
    loader = build_vis_train_loader(dataset=sources, source_weights=[3, 1],
                                    mapper=PairDatasetMapper(cfg), total_batch_size=10,
                                    aspect_ratio_grouping=False)
    it = iter(loader)
    pairs = [p for _ in range(20) for p in next(it)]
    assert abs(sum(not p["pseudo_ref"] for p in pairs) / len(pairs) - 0.75) < 0.09
    with pytest.raises(TypeError, match="one list of records per source"):
        build_vis_train_loader(dataset=sources[1], source_weights=[1],
                               mapper=PairDatasetMapper(cfg), total_batch_size=2)
    cfg.DATALOADER.VIS.SOURCE_WEIGHTS = [1.0, 1.0]
    with pytest.raises(ValueError, match=r"SOURCE_WEIGHTS\) and a sampler exclude each other"):
        build_vis_train_loader(cfg, sampler=list(range(5)))
    cfg.DATALOADER.VIS.SOURCE_WEIGHTS = [1.0]
    with pytest.raises(ValueError, match="has 1 weights for 2 training sets"):
        build_vis_train_loader(cfg)


def test_test_loader_honours_dataset_name(tmp_path, registered):
    v1 = write_video(str(tmp_path / "a"), video_id=1, length=2)
    v2 = write_video(str(tmp_path / "b"), video_id=2, length=3)
    v3 = write_video(str(tmp_path / "c"), video_id=3, length=1)
    registered("vistest_test_a", [v1, v2], evaluator_type="ytvis")
    registered("vistest_test_b", [v3], evaluator_type="ytvis")
    cfg = make_cfg()
    items = list(build_vis_test_loader(cfg, "vistest_test_a"))
    assert [(d["video_id"], d["length"], len(d["frames"])) for d in items] == [(1, 2, 2), (2, 3, 3)]
    items = list(build_vis_test_loader(cfg, "vistest_test_b"))
    assert [d["video_id"] for d in items] == [3]
    assert items[0]["frames"][0]["image"].shape == (3, H, W)
    with pytest.raises(UnknownDatasetError, match="vistest_test_b"):
        build_vis_test_loader(cfg, "vistest_test_bb")
