"""Tests of the synthetic YouTube-VIS benchmark generator (vis_d2.data.synthetic)."""
import json
import os

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

from vis_d2.data import synthetic as synth

VIDEO_NAMES = [c["name"] for c in synth.VIDEO_CATEGORIES]


def _tree_bytes(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def _load(path):
    with open(path) as f:
        return json.load(f)


def _decode(rle):
    return mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})


@pytest.fixture(scope="module")
def moderate(tmp_path_factory):
    """A moderately sized set shared by the content tests: 12 train + 4 val videos, 30 images."""
    out = str(tmp_path_factory.mktemp("synth_moderate"))
    paths = synth.generate(out, train_videos=12, val_videos=4, seed=0, image_set_size=30)
    return paths


def test_written_paths(moderate):
    for key in ("train_json", "valid_json", "images_json", "images_boxonly_json", "msd_json",
                "msd_weak_json", "stats_json"):
        assert os.path.isfile(moderate[key]), key
    for key in ("video_root", "image_root", "msd_image_root"):
        assert os.path.isdir(moderate[key]), key
    assert len(_load(moderate["train_json"])["videos"]) == 12
    assert len(_load(moderate["valid_json"])["videos"]) == 4
    assert len(_load(moderate["images_json"])["images"]) == 30
    # no temp files left behind by the atomic writes
    assert not [f for f in os.listdir(moderate["root"]) if f.startswith(".tmp_")]


def test_determinism(tmp_path):
    kw = dict(train_videos=3, val_videos=2, image_set_size=4)
    a = _tree_bytes(synth.generate(str(tmp_path / "a"), seed=0, **kw)["root"])
    b = _tree_bytes(synth.generate(str(tmp_path / "b"), seed=0, **kw)["root"])
    assert a.keys() == b.keys()
    assert len([k for k in a if k.endswith(".jpg")]) >= 3 * 10 + 2 * 10 + 4
    for k in a:
        assert a[k] == b[k], k

    c = _tree_bytes(synth.generate(str(tmp_path / "c"), seed=1, **kw)["root"])
    for name in ("train.json", "valid.json", "images_train.json"):
        assert a[name] != c[name], name
    common = [k for k in a if k.endswith(".jpg") and k in c]
    assert common and all(a[k] != c[k] for k in common)


def test_splits_use_different_streams_and_prefixes_are_stable(tmp_path):
    full = synth.generate(str(tmp_path / "full"), 3, 1, seed=0, image_set_size=1)
    one = synth.generate(str(tmp_path / "one"), 1, 1, seed=0, image_set_size=1)
    tr, va = _load(full["train_json"]), _load(full["valid_json"])
    f_train = os.path.join(full["video_root"], tr["videos"][0]["file_names"][0])
    f_val = os.path.join(full["video_root"], va["videos"][0]["file_names"][0])
    assert open(f_train, "rb").read() != open(f_val, "rb").read()
    # per-video sub-seeds: adding videos does not change the earlier ones
    tr_one = _load(one["train_json"])
    assert tr_one["videos"][0] == tr["videos"][0]
    v0 = [a for a in tr["annotations"] if a["video_id"] == 1]
    assert [a["segmentations"] for a in tr_one["annotations"]] == [a["segmentations"] for a in v0]


def test_ytvis_format(moderate):
    cfg = synth.SynthConfig()
    for key in ("train_json", "valid_json"):
        data = _load(moderate[key])
        assert data["categories"] == synth.VIDEO_CATEGORIES
        videos = {v["id"]: v for v in data["videos"]}
        assert len({v["file_names"][0].split("/")[0] for v in data["videos"]}) == len(videos)
        ann_ids = [a["id"] for a in data["annotations"]]
        assert len(set(ann_ids)) == len(ann_ids)
        per_video = {vid: 0 for vid in videos}
        for v in data["videos"]:
            assert cfg.length_range[0] <= v["length"] <= cfg.length_range[1]
            assert cfg.width_range[0] <= v["width"] <= cfg.width_range[1]
            assert cfg.height_range[0] <= v["height"] <= cfg.height_range[1]
            assert len(v["file_names"]) == v["length"]
            for fn in v["file_names"]:
                assert os.path.isfile(os.path.join(moderate["video_root"], fn)), fn
            img = cv2.imread(os.path.join(moderate["video_root"], v["file_names"][-1]))
            assert img.shape == (v["height"], v["width"], 3)
        for a in data["annotations"]:
            v = videos[a["video_id"]]
            per_video[a["video_id"]] += 1
            assert a["category_id"] in (1, 2, 3, 4) and a["iscrowd"] == 0
            assert (a["height"], a["width"], a["length"]) == (v["height"], v["width"], v["length"])
            assert len(a["segmentations"]) == len(a["bboxes"]) == len(a["areas"]) == v["length"]
            n_present = 0
            for seg, box, area in zip(a["segmentations"], a["bboxes"], a["areas"]):
                if seg is None:
                    assert box is None and area is None
                    continue
                n_present += 1
                assert seg["size"] == [v["height"], v["width"]]
                assert isinstance(seg["counts"], str)
                m = _decode(seg)
                ys, xs = np.nonzero(m)
                assert box == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                assert area == int(m.sum()) >= cfg.min_visible_area
            assert n_present >= 1
        assert all(1 <= n <= cfg.objects_range[1] for n in per_video.values())


def test_masks_are_visible_parts(moderate):
    """No two instances share a pixel in any frame: occluders cut the occluded masks."""
    data = _load(moderate["train_json"])
    touching = 0
    kernel = np.ones((3, 3), np.uint8)
    for v in data["videos"]:
        anns = [a for a in data["annotations"] if a["video_id"] == v["id"]]
        for t in range(v["length"]):
            masks = [_decode(a["segmentations"][t]) for a in anns
                     if a["segmentations"][t] is not None]
            if len(masks) < 2:
                continue
            assert np.stack(masks).sum(axis=0).max() == 1, (v["id"], t)
            for i in range(len(masks)):
                grown = cv2.dilate(masks[i], kernel)
                touching += sum(int((grown & masks[j]).any()) for j in range(len(masks)) if j != i)
    # occlusion happens: cut masks share a border with their occluder in many frames
    assert touching >= 10
    stats = _load(moderate["stats_json"])["train"]
    assert stats["occluded_instance_frames"] >= 10
    assert stats["heavily_occluded_instances"] <= 0.3 * stats["instances"]


def test_occlusion_semantics_unit():
    """A front square over a back circle: the circle's visible mask is its shape minus the square,
    and an object hidden entirely is absent (zero visible area)."""
    def obj(cat, x, y, r):
        return synth._Object(cat, synth._CATEGORY_SHAPE[cat], r, 1.0, np.array([x, y], float),
                             np.zeros(2), np.zeros(2), (0.0, 0.3, 0.0), 0.0, 0.0, (0.0, 0.1, 0.0),
                             (0.0, 0.1, 0.0), "inside")
    back, front, hidden = obj(1, 40, 40, 20), obj(2, 60, 40, 20), obj(1, 60, 40, 5)
    lay = synth._layout([back, front, hidden], [2, 0, 1], np.zeros(1), np.zeros((1, 2)), 80, 120)
    full_back = np.zeros((80, 120), bool)
    x0, y0, x1, y1 = lay.rois[0][0]
    full_back[y0:y1, x0:x1] = lay.full[0][0].astype(bool)
    full_front = np.zeros((80, 120), bool)
    x0, y0, x1, y1 = lay.rois[1][0]
    full_front[y0:y1, x0:x1] = lay.full[1][0].astype(bool)
    assert np.array_equal(lay.visible[1][0], full_front)
    assert np.array_equal(lay.visible[0][0], full_back & ~full_front)
    assert 0 < lay.visible_area[0, 0] < lay.full_area[0, 0]
    assert lay.full_area[2, 0] > 0 and lay.visible_area[2, 0] == 0
    # the circle of radius 20 covers pi * 20^2 pixels, plus the boundary pixels fillPoly includes
    assert np.pi * 20 ** 2 < lay.full_area[0, 0] < np.pi * 21 ** 2


def test_gap_and_static_stretch(moderate):
    data = _load(moderate["train_json"])
    gaps = 0
    for a in data["annotations"]:
        idx = [t for t, s in enumerate(a["segmentations"]) if s is not None]
        gaps += int(idx[-1] - idx[0] + 1 > len(idx))  # null frames between non-null ones
    assert gaps >= 1
    # near-duplicate consecutive frames (static objects + static camera) exist
    near_dup = 0
    for v in data["videos"]:
        frames = [cv2.imread(os.path.join(moderate["video_root"], f)).astype(np.int16)
                  for f in v["file_names"]]
        near_dup += sum(np.abs(frames[t] - frames[t + 1]).mean() < 3.0
                        for t in range(len(frames) - 1))
    stats = _load(moderate["stats_json"])["train"]
    assert stats["static_repeat_frames"] >= 1
    assert near_dup >= stats["static_repeat_frames"]


def test_image_set_loads_with_detectron2(moderate):
    from detectron2.data.datasets import load_coco_json

    full = load_coco_json(moderate["images_json"], moderate["image_root"], "synth_test_images_full")
    box = load_coco_json(moderate["images_boxonly_json"], moderate["image_root"],
                         "synth_test_images_box")
    assert len(full) == len(box) == 30
    n_ann = 0
    for df, db in zip(full, box):
        assert df["file_name"] == db["file_name"] and os.path.isfile(df["file_name"])
        assert len(df["annotations"]) == len(db["annotations"]) >= 1
        for af, ab in zip(df["annotations"], db["annotations"]):
            n_ann += 1
            assert "segmentation" not in ab
            assert af["bbox"] == ab["bbox"] and af["category_id"] == ab["category_id"]
            m = _decode(af["segmentation"])
            assert m.shape == (df["height"], df["width"])
            ys, xs = np.nonzero(m)
            assert af["bbox"] == [xs.min(), ys.min(),
                                  xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert n_ann >= 30
    with open(moderate["images_boxonly_json"]) as f:
        assert '"segmentation"' not in f.read()


def test_categories_shared_by_name_and_id(moderate):
    video = _load(moderate["train_json"])
    images = _load(moderate["images_json"])
    vcats = {c["id"]: c["name"] for c in video["categories"]}
    icats = {c["id"]: c["name"] for c in images["categories"]}
    assert vcats == {1: "circle", 2: "square", 3: "triangle", 4: "star"}
    assert all(icats[k] == v for k, v in vcats.items())
    extra = {k: v for k, v in icats.items() if k not in vcats}
    assert 2 <= len(extra) <= 3 and min(extra) > max(vcats)
    assert not set(extra.values()) & set(vcats.values())
    used_img = {a["category_id"] for a in images["annotations"]}
    used_vid = {a["category_id"] for s in ("train_json", "valid_json")
                for a in _load(moderate[s])["annotations"]}
    assert used_img & set(extra) and used_img & set(vcats)
    assert not used_vid & set(extra)


def test_second_source_has_its_own_taxonomy_and_weak_masks(moderate):
    """The second source: the video shapes under other names and ids (the class map's table),
    three shapes the videos lack, and a split of images with noisy or missing masks."""
    from detectron2.data.datasets import load_coco_json

    from vis_d2.data.categories import get_class_map

    exact, weak = _load(moderate["msd_json"]), _load(moderate["msd_weak_json"])
    stats = _load(moderate["stats_json"])["msd"]
    assert exact["categories"] == weak["categories"] == synth.MSD_CATEGORIES
    names = [c["name"] for c in synth.MSD_CATEGORIES]
    id_map = {c["id"]: i for i, c in enumerate(synth.MSD_CATEGORIES)}
    class_map = get_class_map("synthvis", "synthvis_msd")
    class_map.check_source(names, id_map, "msd")  # the table names this taxonomy's classes
    assert set(class_map.pairs) == set(VIDEO_NAMES)
    auxiliary = set(id_map) - set(class_map.source_ids)
    assert {names[id_map[i]] for i in auxiliary} == {"hexagon", "ring", "crescent"}
    used = {a["category_id"] for d in (exact, weak) for a in d["annotations"]}
    assert used & auxiliary and used & set(class_map.source_ids)

    # 30 images (the image set's size by default), split by a 0.3 coin per image.
    ids = sorted(i["id"] for d in (exact, weak) for i in d["images"])
    assert ids == list(range(1, 31)) and stats["images"] == 30
    assert 3 <= len(weak["images"]) == stats["weak_images"] <= 18
    assert stats["instances"] == len(exact["annotations"]) + len(weak["annotations"])
    assert all("segmentation" in a for a in exact["annotations"])
    without = [a for a in weak["annotations"] if "segmentation" not in a]
    assert len(without) == stats["weak_missing_masks"] >= 1
    assert len(weak["annotations"]) - len(without) == stats["weak_noisy_masks"] >= 1
    # Exact masks fit their boxes; a noisy mask was shifted, dilated or eroded: it does not.
    records = load_coco_json(moderate["msd_weak_json"], moderate["msd_image_root"],
                             "synth_test_msd_weak")
    off = 0
    for d in records:
        assert os.path.isfile(d["file_name"])
        for a in d["annotations"]:
            if "segmentation" in a:
                ys, xs = np.nonzero(_decode(a["segmentation"]))
                off += a["bbox"] != [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                     ys.max() - ys.min() + 1]
    assert off >= 1
    for a in exact["annotations"][:20]:
        ys, xs = np.nonzero(_decode(a["segmentation"]))
        assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_second_source_weak_share(tmp_path):
    kw = dict(train_videos=0, val_videos=0, image_set_size=0, msd_set_size=3)
    none = synth.generate(str(tmp_path / "a"), msd_weak_share=0.0, **kw)
    assert len(_load(none["msd_json"])["images"]) == 3
    assert not _load(none["msd_weak_json"])["images"]
    every = synth.generate(str(tmp_path / "b"), msd_weak_share=1.0, **kw)
    assert not _load(every["msd_json"])["images"]
    assert len(_load(every["msd_weak_json"])["images"]) == 3


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="train_videos"):
        synth.generate(str(tmp_path / "x"), train_videos=-1)
    with pytest.raises(ValueError, match="image_set_size"):
        synth.generate(str(tmp_path / "x"), image_set_size=2.5)
    with pytest.raises(ValueError, match=r"msd_weak_share must lie in \[0, 1\], got 1.5"):
        synth.generate(str(tmp_path / "x"), msd_weak_share=1.5)
    with pytest.raises(ValueError, match="msd_set_size"):
        synth.generate(str(tmp_path / "x"), msd_set_size=-1)
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(NotADirectoryError, match="file"):
        synth.generate(str(f), 1, 1, image_set_size=1)
    with pytest.raises(ValueError, match="length_range"):
        synth.SynthConfig(length_range=(5, 2))
    with pytest.raises(SystemExit):
        synth.main(["--out", str(tmp_path / "y"), "--val-videos", "-2"])


def test_cli(tmp_path, capsys):
    out = str(tmp_path / "cli")
    paths = synth.main(["--out", out, "--train-videos", "2", "--val-videos", "1", "--seed", "3",
                        "--image-set-size", "2"])
    printed = capsys.readouterr().out
    assert paths["train_json"] in printed and "frames/s" in printed
    stats = _load(paths["stats_json"])
    assert stats["seed"] == 3 and stats["train"]["videos"] == 2 and stats["images"]["images"] == 2
    assert stats["msd"]["images"] == 2 and "second source: 2 images" in printed
    videos = _load(paths["train_json"])["videos"]
    assert stats["train"]["frames"] == sum(v["length"] for v in videos)


def test_cli_frame_and_object_sizes_give_every_area_range(tmp_path):
    """720p-like frames and a wide object-size range: the metric's small, medium and large
    objects (YouTube-VIS's ranges, 128^2 and 256^2 px) all occur (the default set has only small
    ones); a size that cannot fit the frames is refused."""
    from vis_d2.evaluation.ytvis_eval import AREA_RANGES

    out = str(tmp_path / "scales")
    paths = synth.main(["--out", out, "--train-videos", "0", "--val-videos", "12", "--seed", "4",
                        "--image-set-size", "0", "--msd-set-size", "0",
                        "--frame-width", "1024", "1280", "--frame-height", "640", "720",
                        "--object-size", "48", "520"])
    data = _load(paths["valid_json"])
    assert all(1024 <= v["width"] <= 1280 and 640 <= v["height"] <= 720 for v in data["videos"])
    # the metric's area of a track: the mean of its frames' areas where it is present
    areas = [np.mean([a for a in ann["areas"] if a]) for ann in data["annotations"]]
    ranges = {name: sum(lo <= a < hi for a in areas)
              for name, (lo, hi) in AREA_RANGES.items() if name != "all"}
    assert min(ranges.values()) >= 1, ranges
    with pytest.raises(ValueError, match=r"objects up to 300 px do not fit frames from "
                                         r"256x160 px"):
        synth.SynthConfig(size_range=(20.0, 300.0))
    with pytest.raises(SystemExit):
        synth.main(["--out", str(tmp_path / "z"), "--object-size", "20", "300"])
