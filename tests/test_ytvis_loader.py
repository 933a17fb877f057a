"""YouTube-VIS loader, read_frame, registration and builtin datasets, on hand-made jsons."""
import importlib
import json
import logging
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from vis_d2.data import builtin, ytvis
from vis_d2.data.categories import (
    OVIS_CATEGORIES,
    YTVIS_2019_CATEGORIES,
    YTVIS_2021_CATEGORIES,
    YTVIS_2021_TO_COCO,
)
from vis_d2.data.frames import read_frame
from vis_d2.data.ytvis import YTVISFormatError, load_ytvis_json, register_ytvis_instances

H1, W1 = 10, 12  # video 1
H2, W2 = 6, 5  # video 2


def _rect_mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _compressed_rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(mask):
    """COCO uncompressed RLE: run lengths of the column-major flattening, starting with zeros."""
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


# Masks used in the valid json, and their bboxes [x, y, w, h].
MASK_A1 = _rect_mask(H1, W1, 2, 5, 3, 7)  # bbox [3, 2, 4, 3]
MASK_B0 = _rect_mask(H1, W1, 0, 4, 0, 2)  # bbox [0, 0, 2, 4]
MASK_B1 = _rect_mask(H1, W1, 5, 10, 6, 12)  # bbox [6, 5, 6, 5]


def _valid_json():
    return {
        "info": {"description": "hand-made"},
        # Deliberately not sorted by id: contiguous ids follow the json id order (3, 7, 9).
        "categories": [
            {"id": 9, "name": "nine"}, {"id": 3, "name": "three"}, {"id": 7, "name": "seven"}
        ],
        "videos": [
            {"id": 1, "height": H1, "width": W1, "length": 3,
             # Not in lexical order: frames must stay in json order.
             "file_names": ["vid1/00002.png", "vid1/00000.png", "vid1/00001.png"]},
            {"id": 2, "height": H2, "width": W2, "length": 2,
             "file_names": ["vid2/a.png", "vid2/b.png"]},
        ],
        "annotations": [
            {"id": 101, "video_id": 1, "category_id": 7, "iscrowd": 0,
             "segmentations": [[[1, 1, 4, 1, 4, 3, 1, 3]], _compressed_rle(MASK_A1), None],
             "bboxes": [[1, 1, 3, 2], None, None],
             "areas": [6, 12, None]},
            {"id": 102, "video_id": 1, "category_id": 9, "iscrowd": 1,
             "segmentations": [_uncompressed_rle(MASK_B0), _uncompressed_rle(MASK_B1), None],
             "bboxes": [[0, 0, 2, 4], None, None],
             "areas": [8, 30, None]},
            {"id": 205, "video_id": 2, "category_id": 3, "iscrowd": 0,
             "segmentations": [None, [[0, 0, 3, 0, 3, 2, 0, 2]]],
             "bboxes": [None, None],
             "areas": [None, 6]},
        ],
    }


def _write_frames(root, data):
    for v in data["videos"]:
        for i, fn in enumerate(v["file_names"]):
            path = os.path.join(root, fn)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            img = np.zeros((v["height"], v["width"], 3), dtype=np.uint8)
            img[:] = (10 * i, 20, 30 + v["id"])  # BGR
            assert cv2.imwrite(path, img)


def _write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f)
    return str(path)


@pytest.fixture
def dataset(tmp_path):
    data = _valid_json()
    root = tmp_path / "frames"
    _write_frames(str(root), data)
    return _write_json(tmp_path / "train.json", data), str(root), data


def test_load_valid_json(dataset):
    json_file, root, _ = dataset
    records = load_ytvis_json(json_file, root)
    assert [r["video_id"] for r in records] == [1, 2]
    v1, v2 = records
    assert (v1["height"], v1["width"], v1["length"]) == (H1, W1, 3)
    frames = ("00002.png", "00000.png", "00001.png")
    assert v1["file_names"] == [os.path.join(root, "vid1", f) for f in frames]
    assert v1["has_gt"] is True and v1["json_file"] == json_file
    assert [len(f) for f in v1["annotations"]] == [2, 2, 0]
    assert [len(f) for f in v2["annotations"]] == [0, 1]

    a0, b0 = v1["annotations"][0]
    a1, b1 = v1["annotations"][1]
    # Track ids are the annotation ids; categories are contiguous in json id order.
    assert [a0["track_id"], a1["track_id"], b0["track_id"], b1["track_id"]] == [101, 101, 102, 102]
    c0 = v2["annotations"][1][0]
    assert (a0["category_id"], b0["category_id"], c0["category_id"]) == (1, 2, 0)
    assert (a0["iscrowd"], b0["iscrowd"]) == (0, 1)
    assert all(o["bbox_mode"] == BoxMode.XYWH_ABS for f in v1["annotations"] for o in f)
    # bboxes from the json, or from the mask when null there.
    assert a0["bbox"] == [1.0, 1.0, 3.0, 2.0]
    assert a1["bbox"] == [3.0, 2.0, 4.0, 3.0]  # compressed RLE
    assert b0["bbox"] == [0.0, 0.0, 2.0, 4.0]
    assert b1["bbox"] == [6.0, 5.0, 6.0, 5.0]  # uncompressed RLE
    assert v2["annotations"][1][0]["bbox"] == [0.0, 0.0, 3.0, 2.0]  # polygon
    # Polygons kept; RLEs (compressed or not) become compressed with str counts, same masks.
    assert a0["segmentation"] == [[1.0, 1.0, 4.0, 1.0, 4.0, 3.0, 1.0, 3.0]]
    for obj, mask in ((a1, MASK_A1), (b0, MASK_B0), (b1, MASK_B1)):
        seg = obj["segmentation"]
        assert isinstance(seg["counts"], str) and seg["size"] == [H1, W1]
        np.testing.assert_array_equal(mask_util.decode(seg), mask)


def test_bbox_without_mask(tmp_path):
    data = _valid_json()
    data["annotations"][0]["bboxes"][2] = [0, 0, 5, 5]  # segmentation stays null
    records = load_ytvis_json(_write_json(tmp_path / "a.json", data), str(tmp_path))
    (obj,) = records[0]["annotations"][2]
    assert obj["track_id"] == 101 and obj["bbox"] == [0.0, 0.0, 5.0, 5.0]
    assert "segmentation" not in obj


def test_bytes_counts_become_str():
    # bytes counts (what pycocotools returns) cannot come from json, but can from Python callers
    # building a dataset dict; they are normalised to str like the rest.
    rle = mask_util.encode(np.asfortranarray(MASK_A1))
    assert isinstance(rle["counts"], bytes)
    out = ytvis._convert_segmentation(rle, H1, W1, "frame 0", "x.json")
    assert out == {"size": [H1, W1], "counts": rle["counts"].decode("ascii")}


def test_metadata_set_from_json(dataset):
    json_file, root, _ = dataset
    name = "test_ytvis_loader_meta"
    try:
        load_ytvis_json(json_file, root, dataset_name=name)
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["three", "seven", "nine"]
        assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1, 9: 2}
        assert (meta.json_file, meta.image_root) == (json_file, root)
        assert meta.evaluator_type == "ytvis" and meta.has_gt is True
    finally:
        MetadataCatalog.remove(name)


@pytest.mark.parametrize("annotations", ["absent", None, []])
def test_test_split_without_annotations(tmp_path, annotations):
    data = _valid_json()
    if annotations == "absent":
        del data["annotations"]
    else:
        data["annotations"] = annotations
    records = load_ytvis_json(_write_json(tmp_path / "test.json", data), str(tmp_path))
    assert [r["annotations"] for r in records] == [[[], [], []], [[], []]]
    assert [r["has_gt"] for r in records] == [False, False]


def _mutations():
    def drop_video_key(d):
        del d["videos"][0]["length"]

    def drop_anno_key(d):
        del d["annotations"][0]["segmentations"]

    def short_segmentations(d):
        d["annotations"][0]["segmentations"] = d["annotations"][0]["segmentations"][:2]

    def long_bboxes(d):
        d["annotations"][1]["bboxes"].append(None)

    def length_vs_file_names(d):
        d["videos"][0]["length"] = 4

    def unknown_video(d):
        d["annotations"][0]["video_id"] = 99

    def unknown_category(d):
        d["annotations"][0]["category_id"] = 42

    def rle_size(d):
        d["annotations"][1]["segmentations"][0] = _compressed_rle(np.ones((5, 5), np.uint8))

    def uncompressed_sum(d):
        d["annotations"][1]["segmentations"][1]["counts"].append(3)

    def duplicate_annotation(d):
        d["annotations"][2]["id"] = 101

    def odd_polygon(d):
        d["annotations"][2]["segmentations"][1] = [[0, 0, 3, 0, 3]]

    def flat_polygon(d):
        d["annotations"][2]["segmentations"][1] = [0, 0, 3, 0, 3, 2]

    def no_categories(d):
        del d["categories"]

    def bad_bbox(d):
        d["annotations"][0]["bboxes"][0] = [1, 2, 3]

    return [
        (drop_video_key, r"videos\[0\] \(video 1\) has no 'length' key"),
        (drop_anno_key, r"annotations\[0\] \(annotation 101\) has no 'segmentations' key"),
        (short_segmentations,
         r"annotation 101 \(video 1\): 'segmentations' has 2 entries, the video has length 3"),
        (long_bboxes,
         r"annotation 102 \(video 1\): 'bboxes' has 4 entries, the video has length 3"),
        (length_vs_file_names, r"video 1: 'length' is 4 but 'file_names' has 3 entries"),
        (unknown_video, r"annotation 101: unknown video_id 99"),
        (unknown_category, r"annotation 101 \(video 1\): unknown category_id 42"),
        (rle_size,
         r"annotation 102 \(video 1\) frame 0: mask size \[5, 5\] differs from the video size "
         r"\[10, 12\]"),
        (uncompressed_sum,
         r"annotation 102 \(video 1\) frame 1: RLE run lengths cover 123 pixels, the 10x12 "
         r"frame has 120"),
        (duplicate_annotation, r"annotation id 101 appears twice"),
        (odd_polygon, r"annotation 205 \(video 2\) frame 1: a polygon has an odd number \(5\)"),
        (flat_polygon, r"annotation 205 \(video 2\) frame 1: polygons must be a list of"),
        (no_categories, r"the json has no 'categories' key"),
        (bad_bbox, r"annotation 101 \(video 1\) frame 0: bbox must be \[x, y, w, h\]"),
    ]


@pytest.mark.parametrize(
    "mutate,message", _mutations(), ids=lambda x: x.__name__ if callable(x) else None
)
def test_bad_input_errors(tmp_path, mutate, message):
    data = _valid_json()
    mutate(data)
    json_file = _write_json(tmp_path / "bad.json", data)
    with pytest.raises(YTVISFormatError, match=re.escape(json_file) + ": " + message):
        load_ytvis_json(json_file, str(tmp_path))


def test_invalid_json_text(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"videos": [')
    with pytest.raises(YTVISFormatError, match=re.escape(str(path)) + ": not valid json"):
        load_ytvis_json(str(path), str(tmp_path))


def test_read_frame(dataset, caplog):
    json_file, root, _ = dataset
    v1 = load_ytvis_json(json_file, root)[0]
    img = read_frame(v1, 1)  # vid1/00000.png, written second: B = 10 * 1
    assert img.shape == (H1, W1, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [10, 20, 31]
    assert read_frame(v1, 1, format="RGB")[0, 0].tolist() == [31, 20, 10]

    os.remove(v1["file_names"][2])
    missing = v1["file_names"][2]
    message = re.escape(f"video 1 ({json_file}), frame 2: file '{missing}' does not exist")
    with pytest.raises(FileNotFoundError, match=message):
        read_frame(v1, 2)
    with pytest.raises(IndexError, match=r"video 1 \(.*\): frame index 3 out of range \[0, 3\)"):
        read_frame(v1, 3)

    # A frame of another size is resized to the json's size, with a warning naming the file.
    cv2.imwrite(v1["file_names"][0], np.full((4, 4, 3), 7, np.uint8))
    with caplog.at_level(logging.WARNING, logger="vis_d2.data.frames"):
        img = read_frame(v1, 0)
    assert img.shape == (H1, W1, 3) and int(img.min()) == int(img.max()) == 7
    assert any(v1["file_names"][0] in m and "is 4x4 (HxW) but the video is 10x12" in m
               for m in caplog.messages)

    # A truncated file is an error naming it.
    with open(v1["file_names"][1], "rb") as f:
        data = f.read()
    with open(v1["file_names"][1], "wb") as f:
        f.write(data[: len(data) // 2])
    message = re.escape(f"video 1 ({json_file}), frame 1: file '{v1['file_names'][1]}' is not a "
                        "readable image")
    with pytest.raises(ValueError, match=message):
        read_frame(v1, 1)


def test_register_round_trip(dataset, tmp_path):
    json_file, root, _ = dataset
    name, lazy_name, bad_name = "test_ytvis_rt", "test_ytvis_rt_lazy", "test_ytvis_rt_conflict"
    try:
        register_ytvis_instances(name, {}, json_file, root)
        assert MetadataCatalog.get(name).evaluator_type == "ytvis"
        records = DatasetCatalog.get(name)
        assert records == load_ytvis_json(json_file, root)
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["three", "seven", "nine"]
        assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1, 9: 2}
        assert (meta.json_file, meta.image_root, meta.has_gt) == (json_file, root, True)

        # Lazy: registering a missing json is fine, getting it is not.
        missing = str(tmp_path / "missing.json")
        register_ytvis_instances(lazy_name, {}, missing, root)
        with pytest.raises(FileNotFoundError):
            DatasetCatalog.get(lazy_name)

        # Metadata registered in advance that disagrees with the json: a clear error.
        register_ytvis_instances(bad_name, {"thing_classes": ["a", "b", "c"]}, json_file, root)
        message = r"'thing_classes' from this json .* differs from the metadata"
        with pytest.raises(YTVISFormatError, match=message):
            DatasetCatalog.get(bad_name)
    finally:
        for n in (name, lazy_name, bad_name):
            DatasetCatalog.pop(n, None)
            MetadataCatalog.pop(n, None)


def test_categories():
    assert len(YTVIS_2019_CATEGORIES) == 40 and len(YTVIS_2021_CATEGORIES) == 40
    assert [c["id"] for c in YTVIS_2021_CATEGORIES] == list(range(1, 41))
    assert YTVIS_2021_CATEGORIES[13]["name"] == "flying_disc"
    assert len(YTVIS_2021_TO_COCO) == 21
    assert YTVIS_2021_TO_COCO["flying_disc"] == (34, "frisbee")
    assert YTVIS_2021_TO_COCO["motorbike"] == (4, "motorcycle")
    assert "mouse" not in YTVIS_2021_TO_COCO
    names_2021 = {c["name"] for c in YTVIS_2021_CATEGORIES}
    assert set(YTVIS_2021_TO_COCO) <= names_2021
    assert [c["id"] for c in OVIS_CATEGORIES] == list(range(1, 26))
    assert OVIS_CATEGORIES[0]["name"] == "Person" and OVIS_CATEGORIES[24]["name"] == "Vehical"


BUILTIN_VIDEO = {
    # name: (number of classes, has_gt, json file relative to the datasets root)
    "ytvis_2019_train": (40, True, "ytvis_2019/train.json"),
    "ytvis_2019_val": (40, False, "ytvis_2019/valid.json"),
    "ytvis_2021_train": (40, True, "ytvis_2021/train.json"),
    "ytvis_2021_val": (40, False, "ytvis_2021/valid.json"),
    "ytvis_2021_test": (40, False, "ytvis_2021/test.json"),
    "ytvis_2022_val": (40, False, "ytvis_2022/valid.json"),
    "ovis_train": (25, True, "ovis/annotations_train.json"),
    "ovis_val": (25, False, "ovis/annotations_valid.json"),
}


def test_builtin_registered_and_idempotent():
    root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    for name, (num_classes, has_gt, json_rel) in BUILTIN_VIDEO.items():
        assert name in DatasetCatalog.list(), name
        meta = MetadataCatalog.get(name)
        assert len(meta.thing_classes) == num_classes
        assert meta.has_gt is has_gt and meta.evaluator_type == "ytvis"
        assert meta.json_file == os.path.join(root, json_rel)
    names_2021 = [c["name"] for c in YTVIS_2021_CATEGORIES]
    assert MetadataCatalog.get("ytvis_2022_val").thing_classes == names_2021
    assert MetadataCatalog.get("ytvis_2019_val").thing_classes[1] == "giant_panda"
    loader = DatasetCatalog["ytvis_2021_train"]
    importlib.reload(builtin)  # re-import: no "already registered" error, nothing replaced
    assert DatasetCatalog["ytvis_2021_train"] is loader


def _tiny_video_json(categories, with_annotations=True):
    data = {
        "categories": categories,
        "videos": [
            {"id": i, "height": 4, "width": 4, "length": 1, "file_names": [f"v{i}/0.jpg"]}
            for i in (1, 2)
        ],
    }
    if with_annotations:
        data["annotations"] = [
            {"id": 10 + i, "video_id": i, "category_id": categories[0]["id"], "iscrowd": 0,
             "segmentations": [[[0, 0, 2, 0, 2, 2, 0, 2]]], "bboxes": [[0, 0, 2, 2]], "areas": [4]}
            for i in (1, 2)
        ]
    return data


def test_register_all_synthvis_and_sub_splits(tmp_path, restore_catalogs):
    root = tmp_path
    shapes = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    (root / "synthvis").mkdir()
    _write_json(root / "synthvis/train.json", _tiny_video_json(shapes))
    _write_json(root / "synthvis/valid.json", _tiny_video_json(shapes))
    _write_json(root / "synthvis/train_sub.json", _tiny_video_json(shapes))
    _write_json(root / "synthvis/valid_sub.json", _tiny_video_json(shapes))
    coco = {"categories": shapes, "images": [], "annotations": []}
    _write_json(root / "synthvis/images_train.json", coco)
    (root / "synthvis/images_train_boxonly.json").write_text("{not json")  # broken: skipped
    (root / "ytvis_2021").mkdir()
    y21 = _tiny_video_json(YTVIS_2021_CATEGORIES)
    _write_json(root / "ytvis_2021/train_sub.json", y21)
    _write_json(root / "ytvis_2021/valid_sub.json", y21)
    (root / "ytvis_2019").mkdir()
    _write_json(root / "ytvis_2019/train_sub.json", y21)  # valid_sub missing: not registered
    # Metadata left without a dataset (a removed registration, or MetadataCatalog.get asked about
    # the name first) does not block the registration.
    DatasetCatalog.pop("synthvis_val", None)
    MetadataCatalog.pop("synthvis_val", None)
    MetadataCatalog.get("synthvis_val").set(thing_classes=["a", "b", "c", "d"])

    names = builtin.register_all_ytvis(str(root))
    assert names[:8] == list(BUILTIN_VIDEO)
    assert names[8:] == [
        "synthvis_train", "synthvis_val", "synthvis_images_train",
        "ytvis_2021_train_sub", "ytvis_2021_valid_sub", "synthvis_train_sub", "synthvis_valid_sub",
    ]
    # Broken or incomplete: not registered from this root (a registration from the default root,
    # if ./datasets/synthvis exists, is left alone).
    for name in ("synthvis_images_train_boxonly", "ytvis_2019_valid_sub", "ytvis_2019_train_sub"):
        if name in DatasetCatalog:
            assert not MetadataCatalog.get(name).json_file.startswith(str(root))
    # The predefined ones now point at the new root (lazily: their jsons do not exist).
    assert MetadataCatalog.get("ovis_train").json_file == str(root / "ovis/annotations_train.json")

    for name in ("synthvis_train", "synthvis_val", "synthvis_train_sub", "synthvis_valid_sub"):
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["circle", "square"] and meta.has_gt is True
    assert MetadataCatalog.get("synthvis_train").image_root == str(root / "synthvis/JPEGImages")
    assert MetadataCatalog.get("synthvis_valid_sub").image_root == str(root / "synthvis/JPEGImages")
    meta = MetadataCatalog.get("ytvis_2021_valid_sub")
    assert meta.image_root == str(root / "ytvis_2021/train/JPEGImages") and meta.has_gt is True
    assert meta.json_file == str(root / "ytvis_2021/valid_sub.json")
    assert len(meta.thing_classes) == 40
    assert MetadataCatalog.get("synthvis_images_train").evaluator_type == "coco"

    records = DatasetCatalog.get("ytvis_2021_valid_sub")
    assert [r["video_id"] for r in records] == [1, 2]
    assert records[0]["file_names"] == [str(root / "ytvis_2021/train/JPEGImages/v1/0.jpg")]
    assert DatasetCatalog.get("synthvis_images_train") == []

    # Same root again: nothing changes (the registered loader functions are the same objects).
    before = {n: DatasetCatalog[n] for n in names}
    assert builtin.register_all_ytvis(str(root)) == names
    assert all(DatasetCatalog[n] is before[n] for n in names)


def test_detectron2_datasets_env(tmp_path):
    """Importing vis_d2.data registers under $DETECTRON2_DATASETS and never reads the real
    jsons."""
    (tmp_path / "ytvis_2021").mkdir()
    # A broken train.json: registering must not read it.
    (tmp_path / "ytvis_2021/train.json").write_text("{broken")
    code = (
        "import json, vis_d2.data\n"
        "from detectron2.data import MetadataCatalog as M\n"
        "print(json.dumps([M.get(n).json_file for n in ('ytvis_2021_train', 'ovis_val')]))\n"
    )
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        str(tmp_path / "ytvis_2021/train.json"), str(tmp_path / "ovis/annotations_valid.json"),
    ]
