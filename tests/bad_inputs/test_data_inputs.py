"""Bad training/evaluation data: dataset jsons, frame files and the datasets a config names.

Each row: the input (a change to a tiny valid json, a damaged frame file, a config), the
exception it must raise or the outcome it is handled with, and a fragment of the message, which
names the file and the video / annotation / frame / key at fault.
"""
import json
import logging
import os
import re
import struct
import zlib

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from omegaconf import OmegaConf

from detectron2.data import DatasetCatalog, MetadataCatalog

from vis_d2.config import get_vis_cfg
from vis_d2.data import register_ytvis_instances
from vis_d2.data.build import get_vis_train_sources, verify_datasets
from vis_d2.data.frames import read_frame
from vis_d2.data.video_record import annotated_frame_indices
from vis_d2.data.ytvis import YTVISFormatError, load_ytvis_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H, W = 10, 12
MASK = np.zeros((H, W), np.uint8)
MASK[2:5, 3:7] = 1  # box [3, 2, 4, 3]
COUNTS = mask_util.encode(np.asfortranarray(MASK))["counts"].decode("ascii")


def valid_json():
    """One video of 2 frames, two categories, annotation 5 (a mask and a box in frame 0, a box
    in frame 1) and annotation 6 (a mask in frame 1)."""
    return {
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "videos": [{"id": 1, "height": H, "width": W, "length": 2,
                    "file_names": ["v1/0.png", "v1/1.png"]}],
        "annotations": [
            {"id": 5, "video_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentations": [{"size": [H, W], "counts": COUNTS}, None],
             "bboxes": [[3, 2, 4, 3], [1, 1, 5, 5]]},
            {"id": 6, "video_id": 1, "category_id": 2, "iscrowd": 0,
             "segmentations": [None, [[1, 1, 6, 1, 6, 4, 1, 4]]],
             "bboxes": [None, None]},
        ],
    }


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f)
    return str(path)


def write_frames(root):
    paths = []
    for i in range(2):
        path = os.path.join(root, "v1", f"{i}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        img = np.full((H, W, 3), 40 * (i + 1), np.uint8)
        assert cv2.imwrite(path, img)
        paths.append(path)
    return paths


def set_path(data, path, value):
    """``data[path[0]][path[1]]... = value``."""
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


SEG0 = ("annotations", 0, "segmentations", 0)
BOX0 = ("annotations", 0, "bboxes", 0)


def _set(path, value):
    return lambda d: set_path(d, path, value)


def _del(*path):
    def mutate(d):
        for key in path[:-1]:
            d = d[key]
        del d[path[-1]]
    return mutate


def _dup_annotation_id(d):
    d["annotations"][1]["id"] = 5


def _top_level_list(d):
    d.clear()  # written as [] below


# (id, change to the valid json, fragment after "<json file>: ")
LOADER_ROWS = [
    # -- fixed here ----------------------------------------------------------------------------
    ("rle_counts_cut_in_half", _set(SEG0, {"size": [H, W], "counts": COUNTS[:len(COUNTS) // 2]}),
     r"annotation 5 (video 1) frame 0: RLE run lengths cover 45 pixels, the 10x12 frame has 120"),
    ("rle_counts_zero", _set(SEG0, {"size": [H, W], "counts": "0"}),
     r"annotation 5 (video 1) frame 0: RLE run lengths cover 0 pixels"),
    ("rle_counts_end_inside_a_run", _set(SEG0, {"size": [H, W], "counts": COUNTS + "P"}),
     r"annotation 5 (video 1) frame 0: RLE counts end inside a run length"),
    ("rle_counts_bad_character", _set(SEG0, {"size": [H, W], "counts": "P1 7"}),
     r"annotation 5 (video 1) frame 0: RLE counts hold a character outside the compressed"),
    ("rle_uncompressed_negative_run", _set(SEG0, {"size": [H, W], "counts": [-5, 125]}),
     r"annotation 5 (video 1) frame 0: RLE counts hold a negative run length"),
    ("rle_size_not_a_list", _set(SEG0, {"size": 120, "counts": COUNTS}),
     r"annotation 5 (video 1) frame 0: mask size 120 differs from the video size [10, 12]"),
    ("bbox_negative_width", _set(BOX0, [3, 2, -4, 3]),
     r"annotation 5 (video 1) frame 0: bbox [3, 2, -4, 3] has a negative width or height"),
    ("bbox_negative_height_no_mask", _set(("annotations", 0, "bboxes", 1), [1, 1, 5, -5]),
     r"annotation 5 (video 1) frame 1: bbox [1, 1, 5, -5] has a negative width or height"),
    ("bbox_nan", _set(BOX0, [3, 2, float("nan"), 3]),
     r"annotation 5 (video 1) frame 0: bbox must hold 4 finite numbers, got [3, 2, nan, 3]"),
    ("bbox_string_coordinate", _set(BOX0, ["3", 2, 4, 3]),
     r"annotation 5 (video 1) frame 0: bbox must hold 4 finite numbers, got ['3', 2, 4, 3]"),
    ("bbox_outside_frame", _set(BOX0, [50, 2, 4, 3]),
     r"annotation 5 (video 1) frame 0: bbox [50, 2, 4, 3] lies outside the 12x10 (WxH) frame"),
    ("category_id_string", _set(("annotations", 0, "category_id"), "1"),
     r"annotations[0] (annotation 5): 'category_id' must be an integer, got '1' (str)"),
    ("video_id_string", _set(("annotations", 1, "video_id"), "1"),
     r"annotations[1] (annotation 6): 'video_id' must be an integer, got '1' (str)"),
    ("annotation_id_string", _set(("annotations", 1, "id"), "6"),
     r"annotations[1] (annotation 6): 'id' must be an integer, got '6' (str)"),
    ("category_list_id_string", _set(("categories", 1, "id"), "2"),
     r"categories[1]: 'id' must be an integer, got '2' (str)"),
    ("video_id_float", _set(("videos", 0, "id"), 1.0),
     r"videos[0] (video 1.0): 'id' must be an integer, got 1.0 (float)"),
    ("iscrowd_not_0_or_1", _set(("annotations", 0, "iscrowd"), "yes"),
     r"annotation 5 (video 1): 'iscrowd' must be 0 or 1, got 'yes'"),
    ("polygon_nan_coordinate", _set(("annotations", 1, "segmentations", 1),
                                    [[1, 1, 6, float("nan"), 6, 4]]),
     r"annotation 6 (video 1) frame 1: polygon coordinates must be finite numbers"),
    ("polygon_far_outside_frame", _set(("annotations", 1, "segmentations", 1),
                                       [[0, 0, 1e8, 0, 1e8, 1e8]]),
     r"annotation 6 (video 1) frame 1: a polygon reaches more than a frame size outside the "
     r"12x10 (WxH) frame"),
    # -- clear before, kept so ------------------------------------------------------------------
    ("top_level_not_a_dict", _top_level_list, r"the top level must be a dict, got list"),
    ("no_videos_key", _del("videos"), r"the json has no 'videos' key"),
    ("no_categories_key", _del("categories"), r"the json has no 'categories' key"),
    ("length_differs_from_file_names", _set(("videos", 0, "length"), 3),
     r"video 1: 'length' is 3 but 'file_names' has 2 entries"),
    ("empty_file_names", lambda d: d["videos"][0].update(file_names=[], length=0),
     r"video 1: 'length' must be a positive int, got 0"),
    ("height_string", _set(("videos", 0, "height"), "10"),
     r"video 1: 'height' must be a positive int, got '10'"),
    ("duplicate_annotation_id", _dup_annotation_id, r"annotation id 5 appears twice"),
    ("annotation_of_unknown_video", _set(("annotations", 1, "video_id"), 9),
     r"annotation 6: unknown video_id 9"),
    ("unknown_category_id", _set(("annotations", 0, "category_id"), 3),
     r"annotation 5 (video 1): unknown category_id 3 (categories: [1, 2])"),
    ("rle_size_differs_from_video", _set(SEG0, {"size": [5, 5], "counts": "0"}),
     r"annotation 5 (video 1) frame 0: mask size [5, 5] differs from the video size [10, 12]"),
    ("segmentations_shorter_than_video", _set(("annotations", 0, "segmentations"), [None]),
     r"annotation 5 (video 1): 'segmentations' has 1 entries, the video has length 2"),
]


@pytest.mark.parametrize("mutate,fragment", [r[1:] for r in LOADER_ROWS],
                         ids=[r[0] for r in LOADER_ROWS])
def test_bad_json_is_refused(tmp_path, mutate, fragment):
    data = valid_json()
    mutate(data)
    json_file = write_json(tmp_path / "train.json", data if data else [])
    with pytest.raises(YTVISFormatError, match=re.escape(f"{json_file}: {fragment}")):
        load_ytvis_json(json_file, str(tmp_path))


def test_json_that_is_not_json_or_missing(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('{"videos": [')
    with pytest.raises(YTVISFormatError, match=re.escape(f"{path}: not valid json")):
        load_ytvis_json(str(path), str(tmp_path))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.json"))):
        load_ytvis_json(str(tmp_path / "nope.json"), str(tmp_path))


def test_zero_size_boxes_are_derived_from_the_mask_or_left_out(tmp_path, caplog):
    """Handled: an empty box next to a mask takes the mask's box; an empty box without a mask,
    or a mask without a pixel, leaves the instance out of that frame (then no key frame)."""
    data = valid_json()
    set_path(data, BOX0, [3, 2, 0, 3])
    set_path(data, ("annotations", 0, "bboxes", 1), [1, 1, 5, 0])
    set_path(data, ("annotations", 1, "segmentations", 0), {"size": [H, W], "counts": [H * W]})
    json_file = write_json(tmp_path / "train.json", data)
    with caplog.at_level(logging.WARNING, logger="vis_d2.data.ytvis"):
        (record,) = load_ytvis_json(json_file, str(tmp_path))
    frame0 = {a["track_id"]: a["bbox"] for a in record["annotations"][0]}
    frame1 = {a["track_id"]: a["bbox"] for a in record["annotations"][1]}
    assert frame0 == {5: [3.0, 2.0, 4.0, 3.0]} and list(frame1) == [6]
    assert f"{json_file}: 1 frame boxes had zero width or height; they were replaced" in caplog.text
    assert f"{json_file}: 2 frame annotations had an empty box and no mask pixel" in caplog.text

    data["annotations"] = data["annotations"][:1]
    json_file = write_json(tmp_path / "one.json", data)
    (record,) = load_ytvis_json(json_file, str(tmp_path))
    assert record["annotations"][1] == [] and annotated_frame_indices(record) == [0]


# ------------------------------------------------------------------------------------------------
# Registration: a split without annotations, box-only annotations, NUM_CLASSES
# ------------------------------------------------------------------------------------------------


def _register(name, tmp_path, data, **metadata):
    write_frames(str(tmp_path))
    json_file = write_json(tmp_path / f"{name}.json", data)
    register_ytvis_instances(name, metadata, json_file, str(tmp_path))
    return json_file


def test_split_without_annotations_registered_with_ground_truth(tmp_path, restore_catalogs,
                                                               caplog):
    """Handled: loads for inference (has_gt follows the json, with a warning naming the file);
    training on it is refused naming the file."""
    data = valid_json()
    del data["annotations"]
    json_file = _register("bad_inputs_test_split", tmp_path, data, has_gt=True)
    with caplog.at_level(logging.WARNING, logger="vis_d2.data.ytvis"):
        records = DatasetCatalog.get("bad_inputs_test_split")
    assert [r["annotations"] for r in records] == [[[], []]]
    assert MetadataCatalog.get("bad_inputs_test_split").has_gt is False
    assert (f"{json_file}: dataset 'bad_inputs_test_split' was registered with has_gt=True, but "
            "the json has no annotations; using has_gt=False") in caplog.text
    message = (f"training set 'bad_inputs_test_split' ({json_file}) has no annotations: "
               "cannot train on it")
    with pytest.raises(ValueError, match=re.escape(message)):
        get_vis_train_sources(["bad_inputs_test_split"])


def _box_only(data, keep_mask_of=()):
    for a in data["annotations"]:
        if a["id"] not in keep_mask_of:
            a["segmentations"] = [None] * len(a["segmentations"])
            a["bboxes"] = [[1, 1, 4, 4]] * len(a["bboxes"])
    return data


def test_box_only_training_set(tmp_path, restore_catalogs, caplog):
    """No mask in any frame with MASK_ON: refused naming the datasets. Some instances without a
    mask: a warning naming the dataset and the count."""
    _register("bad_inputs_box_only", tmp_path, _box_only(valid_json()))
    with pytest.raises(ValueError, match=re.escape(
            "MODEL.MASK_ON is True but no instance of the training sets ['bad_inputs_box_only'] "
            "has a mask")):
        get_vis_train_sources(["bad_inputs_box_only"], mask_on=True)
    # Without a mask head there is nothing to warn about beyond the count.
    get_vis_train_sources(["bad_inputs_box_only"], mask_on=False)

    _register("bad_inputs_some_masks", tmp_path, _box_only(valid_json(), keep_mask_of=(5,)))
    with caplog.at_level(logging.WARNING, logger="vis_d2.data.build"):
        get_vis_train_sources(["bad_inputs_some_masks"], mask_on=True)
    assert ("training set 'bad_inputs_some_masks': 3 of its 4 non-crowd instances (per frame) "
            "have no mask") in caplog.text


def _two_class_cfg(*opts):
    return get_vis_cfg(os.path.join(REPO, "configs/synthvis/R18_demo.yaml"),
                       ["MODEL.DEVICE", "cpu", *opts])


@pytest.mark.parametrize("num_classes,split,fragment", [
    (1, "TRAIN", "MODEL.ROI_HEADS.NUM_CLASSES is 1 but the training set 'bad_inputs_2cls' has 2 "
                 "categories; set MODEL.ROI_HEADS.NUM_CLASSES to 2"),
    (4, "TRAIN", "MODEL.ROI_HEADS.NUM_CLASSES is 4 but the training set 'bad_inputs_2cls' has 2 "
                 "categories"),
    (3, "TEST", "MODEL.ROI_HEADS.NUM_CLASSES is 3 but the test set 'bad_inputs_2cls' has 2 "
                "categories"),
], ids=["num_classes_smaller_train", "num_classes_larger_train", "num_classes_larger_test"])
def test_num_classes_differs_from_the_dataset(tmp_path, restore_catalogs, num_classes, split,
                                              fragment):
    # Registered without thing_classes: verify_datasets learns them by loading the json.
    _register("bad_inputs_2cls", tmp_path, valid_json())
    other = "TEST" if split == "TRAIN" else "TRAIN"
    cfg = _two_class_cfg(f"DATASETS.{split}", "('bad_inputs_2cls',)",
                         f"DATASETS.{other}", "()", "MODEL.ROI_HEADS.NUM_CLASSES", str(num_classes))
    with pytest.raises(ValueError, match=re.escape(fragment)):
        verify_datasets(cfg)
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    verify_datasets(cfg)


def test_lazy_train_net_checks_num_classes(tmp_path, restore_catalogs):
    """projects/VIS_Ablation/train_net.py makes the same check on model.roi_heads.num_classes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bad_inputs_lazy_train_net", os.path.join(REPO, "projects/VIS_Ablation/train_net.py"))
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    _register("bad_inputs_2cls", tmp_path, valid_json())
    cfg = OmegaConf.create({"model": {"roi_heads": {"num_classes": 40}}, "dataloader": {
        "train": {"dataset": {"names": ["bad_inputs_2cls"]}},
        "test": {"dataset": "bad_inputs_2cls"}}})
    with pytest.raises(ValueError, match=re.escape(
            "model.roi_heads.num_classes is 40 but the training set 'bad_inputs_2cls' has 2")):
        train_net.check_datasets(cfg)


# ------------------------------------------------------------------------------------------------
# Frame files
# ------------------------------------------------------------------------------------------------


def _truncate(fraction):
    """A noisy JPEG (its entropy-coded data outweighs its ~600 bytes of headers) cut to
    ``fraction`` of its bytes."""
    def damage(path):
        noise = np.random.default_rng(0).integers(0, 255, (8 * H, 8 * W, 3), dtype=np.uint8)
        data = cv2.imencode(".jpg", noise)[1].tobytes()
        jpg = path[:-4] + ".jpg"
        with open(jpg, "wb") as f:
            f.write(data[:int(len(data) * fraction)])
        return jpg
    return damage


def _broken_png_chunk(path):
    """IDAT's length set to 0: PIL reads a chunk name out of the compressed data and raises
    SyntaxError("broken PNG file") while decoding."""
    img = (np.arange(H * W * 3) % 251).astype(np.uint8).reshape(H, W, 3)
    data = bytearray(cv2.imencode(".png", img)[1].tobytes())
    data[33:37] = struct.pack(">I", 0)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _huge_png_header(path):
    """A PNG header claiming 40000x40000 pixels (PIL's decompression bomb check)."""
    data = bytearray(cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", 40000, 40000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    with open(path, "wb") as f:
        f.write(data)
    return path


def _missing(path):
    os.remove(path)
    return path


def _directory(path):
    os.remove(path)
    os.makedirs(path)
    return path


def _empty(path):
    open(path, "wb").close()
    return path


# (id, damage(frame path) -> path now in the record, exception, fragment after the video)
FRAME_ROWS = [
    ("jpeg_truncated_in_the_data", _truncate(0.6), ValueError, "is not a readable image: image "
                                                               "file is truncated"),
    ("jpeg_truncated_in_the_header", _truncate(0.01), ValueError,
     "is not a readable image: Truncated File Read"),
    ("png_broken_chunk", _broken_png_chunk, ValueError, "is not a readable image: broken PNG"),
    ("png_huge_header", _huge_png_header, ValueError, "is not a readable image: Image size "
                                                      "(1600000000 pixels) exceeds limit"),
    ("frame_missing", _missing, FileNotFoundError, "does not exist"),
    ("frame_is_a_directory", _directory, ValueError, "is not a readable image"),
    ("frame_empty_file", _empty, ValueError, "is not a readable image"),
]


@pytest.mark.parametrize("damage,error,fragment", [r[1:] for r in FRAME_ROWS],
                         ids=[r[0] for r in FRAME_ROWS])
def test_bad_frame_file_is_named(tmp_path, damage, error, fragment):
    write_frames(str(tmp_path))
    json_file = write_json(tmp_path / "train.json", valid_json())
    (record,) = load_ytvis_json(json_file, str(tmp_path))
    path = damage(record["file_names"][1])
    record["file_names"][1] = path
    assert read_frame(record, 0).shape == (H, W, 3)
    with pytest.raises(error, match=re.escape(
            f"video 1 ({json_file}), frame 1: file '{path}' {fragment}")):
        read_frame(record, 1)


def test_frame_of_another_size_is_resized_with_a_warning(tmp_path, caplog):
    """Handled: a frame file of another size than the json's height x width is resized to it
    (annotations are in the json's coordinates), with a warning naming the file."""
    paths = write_frames(str(tmp_path))
    cv2.imwrite(paths[1], np.zeros((2 * H, W, 3), np.uint8))
    json_file = write_json(tmp_path / "train.json", valid_json())
    (record,) = load_ytvis_json(json_file, str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="vis_d2.data.frames"):
        assert read_frame(record, 1).shape == (H, W, 3)
    assert (f"video 1 ({json_file}), frame 1: frame file '{paths[1]}' is 20x12 (HxW) but the "
            "video is 10x12") in caplog.text
