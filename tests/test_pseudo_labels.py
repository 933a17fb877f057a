"""Pseudo labels (paper Sec. 3.5.3): which tracks are kept, the box-only json and its
registration as a weakly segmented training set, the leak warning, the command end to end on a
tiny random model, and a training step on train + pseudo labels with no mask loss from them."""
import json
import logging
import os

import numpy as np
import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from vis_d2.config import get_vis_cfg
from vis_d2.data import VideoPairDatasetMapper, mix_training_sources
from vis_d2.data.builtin import builtin_pseudo_label_name, register_all_ytvis
from vis_d2.data.synthetic import SynthConfig, generate
from vis_d2.data.ytvis import register_pseudo_labels
from vis_d2.file_io import atomic_write_json
from vis_d2.pseudo_labels import (PseudoLabelFilter, PseudoTrack, pseudo_label_json,
                                  read_split_json, warn_if_leaks)
from vis_d2.pseudo_labels import __main__ as command
from vis_d2.pseudo_labels.unlabeled import strip_annotations
from vis_d2.tracking import TrackedDetection, Tracklet, VideoTracker

from helpers import TINY_OPTS, flat_config

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "synthvis", "R18_demo.yaml")
MASK_LOSSES = ("loss_mask", "loss_mask_dice", "loss_maskiou", "loss_mask_cls", "loss_tcis",
               "loss_semseg")


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    """In-process runs: detectron2's setup_logger would stop vis_d2's log propagation."""
    monkeypatch.setattr(command, "setup_logger", lambda *a, **k: None)


def _track(track_id, frames, scores, labels=None, dets=None, box=(10.0, 10.0, 30.0, 40.0)):
    labels = labels or [1] * len(frames)
    dets = dets or [0] * len(frames)
    return Tracklet(track_id, {t: TrackedDetection(d, np.array(box, np.float32) + t, s, lab)
                               for t, s, lab, d in zip(frames, scores, labels, dets)})


# ---- which tracks are kept ---------------------------------------------------------------------
def test_tracks_are_kept_by_length_and_score():
    tracks = [
        _track(0, [0, 1, 2], [0.9, 0.8, 0.7]),          # 3 frames, mean 0.8: kept
        _track(1, [0, 1], [0.95, 0.95], dets=[3, 3]),   # 2 frames: too short
        _track(2, [0, 2, 5], [0.5, 0.5, 0.5], dets=[1, 1, 1]),  # frames, not span; mean 0.5: kept
        _track(3, [0, 1, 2, 3], [0.6, 0.4, 0.4, 0.3], dets=[2] * 4),  # mean 0.425: too low
    ]
    kept = PseudoLabelFilter(3, 0.5, 0.0).select(tracks, VideoTracker())
    assert [k.score for k in kept] == pytest.approx([0.8, 0.5])
    assert [sorted(k.boxes) for k in kept] == [[0, 1, 2], [0, 2, 5]]
    np.testing.assert_allclose(kept[1].boxes[5], [15, 15, 35, 45])
    assert kept[0].box_scores == pytest.approx({0: 0.9, 1: 0.8, 2: 0.7})
    # the thresholds move the decision both ways
    assert len(PseudoLabelFilter(2, 0.5, 0.0).select(tracks, VideoTracker())) == 3
    assert len(PseudoLabelFilter(3, 0.4, 0.0).select(tracks, VideoTracker())) == 3
    assert len(PseudoLabelFilter(4, 0.0, 0.0).select(tracks, VideoTracker())) == 1


def test_box_floor_and_label_voting():
    tracks = [_track(0, [0, 1, 2, 3], [0.9, 0.2, 0.9, 0.9], labels=[2, 2, 1, 1])]
    kept = PseudoLabelFilter(3, 0.5, 0.3).select(tracks, VideoTracker())
    # the score is the track's (0.725, all frames); the floor drops frame 1's box
    assert sorted(kept[0].boxes) == [0, 2, 3] and kept[0].score == pytest.approx(0.725)
    # with the floor the track keeps 3 frames: a length of 4 then drops it
    assert PseudoLabelFilter(4, 0.5, 0.3).select(tracks, VideoTracker()) == []
    # label voting by summed score: label 1 has 1.8, label 2 has 1.1
    voted = PseudoLabelFilter(3, 0.5, 0.0).select(
        tracks, VideoTracker(label_voting=True, label_vote_score_weighted=True))
    assert voted[0].category == 1


def test_a_shared_detection_goes_to_the_better_track():
    """BiTrack's "paper" merge can put one detection into two tracks: the pseudo labels hold it
    once, in the better track; the other track is judged without it."""
    best = _track(0, [0, 1, 2], [0.9, 0.9, 0.9], dets=[0, 0, 0])
    shares = _track(1, [1, 2, 3, 4], [0.9, 0.9, 0.8, 0.8], dets=[0, 0, 1, 1])
    kept = PseudoLabelFilter(2, 0.5, 0.0).select([shares, best], VideoTracker())
    assert [sorted(k.boxes) for k in kept] == [[0, 1, 2], [3, 4]]
    assert PseudoLabelFilter(3, 0.5, 0.0).select([shares, best], VideoTracker())[1:] == []


@pytest.mark.parametrize("args,key", [((0, 0.5, 0.0), "MIN_TRACK_LENGTH"),
                                      ((2.5, 0.5, 0.0), "MIN_TRACK_LENGTH"),
                                      ((3, 1.5, 0.0), "MIN_TRACK_SCORE"),
                                      ((3, 0.5, float("nan")), "MIN_BOX_SCORE")])
def test_bad_thresholds_name_their_key(args, key):
    with pytest.raises(ValueError, match=f"TEST.VIS.PSEUDO.{key}"):
        PseudoLabelFilter(*args)


def test_thresholds_come_from_the_config():
    cfg = get_vis_cfg(CONFIG, ["TEST.VIS.PSEUDO.MIN_TRACK_LENGTH", "5"])
    f = PseudoLabelFilter.from_config(cfg)
    assert (f.min_track_length, f.min_track_score, f.min_box_score) == (5, 0.5, 0.0)


# ---- the json and its registration -------------------------------------------------------------
def _gt_tracks(split):
    """Pseudo tracks that copy a split's ground-truth boxes (category = contiguous index)."""
    ids = sorted(c["id"] for c in split["categories"])
    out = {}
    for a in split["annotations"]:
        boxes = {t: np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]], np.float32)
                 for t, b in enumerate(a["bboxes"]) if b is not None}
        out.setdefault(a["video_id"], []).append(PseudoTrack(
            ids.index(a["category_id"]), 0.9, boxes, {t: 0.9 for t in boxes}))
    return out, ids


@pytest.fixture
def scripted_pseudo(data_root, restore_catalogs, tmp_path):
    """synthvis_val's ground-truth boxes written as pseudo labels, registered."""
    register_all_ytvis(str(data_root))
    split = read_split_json(str(data_root / "synthvis" / "valid.json"))
    tracks, ids = _gt_tracks(split)
    data = pseudo_label_json(split, tracks, ids, {"models": ["m.yaml:m.pth"]})
    path = str(tmp_path / "pseudo.json")
    atomic_write_json(path, data)
    register_pseudo_labels("pseudotest_val", path, str(data_root / "synthvis" / "JPEGImages"),
                           {"taxonomy": "synthvis"})
    return path, split, data


def test_json_is_box_only_and_the_loader_reads_it_back(scripted_pseudo):
    path, split, data = scripted_pseudo
    assert data["videos"] == split["videos"] and data["categories"] == split["categories"]
    assert data["info"]["models"] == ["m.yaml:m.pth"] and "date_created" in data["info"]
    assert len(data["annotations"]) == len(split["annotations"])
    for a, gt in zip(data["annotations"], split["annotations"]):
        assert a["segmentations"] == [None] * len(gt["segmentations"])
        assert a["category_id"] == gt["category_id"] and a["score"] == 0.9
        for b, g, area in zip(a["bboxes"], gt["bboxes"], a["areas"]):
            assert (b is None) == (g is None)
            if b is not None:
                np.testing.assert_allclose(b, g, atol=0.01)
                assert area == pytest.approx(b[2] * b[3], abs=0.01)
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp")]
    records = DatasetCatalog.get("pseudotest_val")
    annos = [a for r in records for frame in r["annotations"] for a in frame]
    assert len(annos) == sum(b is not None for a in split["annotations"] for b in a["bboxes"])
    assert annos and not any("segmentation" in a for a in annos)
    meta = MetadataCatalog.get("pseudotest_val")
    assert meta.weak_segmentation is True and meta.pseudo_labels is True
    assert meta.thing_classes == MetadataCatalog.get("synthvis_val").thing_classes


def test_boxes_are_clipped_to_the_frame_and_unknown_videos_refused():
    split = {"videos": [{"id": 4, "file_names": ["a", "b"], "height": 50, "width": 80,
                         "length": 2}], "categories": [{"id": 3, "name": "x"}]}
    trk = PseudoTrack(0, 0.7, {0: np.array([-5, 10, 90, 20], np.float32),
                               1: np.array([80, 10, 95, 20], np.float32)}, {0: 0.7, 1: 0.7})
    data = pseudo_label_json(split, {4: [trk]}, [3], {})
    assert data["annotations"][0]["bboxes"] == [[0.0, 10.0, 80.0, 10.0], None]
    with pytest.raises(ValueError, match=r"videos \[9\]"):
        pseudo_label_json(split, {9: [trk]}, [3], {})


def test_train_plus_pseudo_labels_trains_no_mask_from_them(scripted_pseudo):
    """Mixed with synthvis_train, every pseudo instance is mask_valid False; its training pair
    has gt_mask_valid False, and a step on it gives mask losses of exactly zero with no gradient
    while the box, class and track losses train."""
    sources, stats = mix_training_sources(["synthvis_train", "pseudotest_val"], mask_on=True)
    assert stats[1].weak_segmentation and stats[1].without_mask == stats[1].mapped > 0
    assert not any(a.get("mask_valid") is False for r in sources[0] for f in r["annotations"]
                   for a in f)
    cfg = get_vis_cfg(CONFIG, TINY_OPTS + ["INPUT.MASK_FORMAT", "bitmask",
                                           "MODEL.VIS.TCIS.ENABLED", "True",
                                           "MODEL.VIS.SEMSEG.ENABLED", "True"])
    torch.manual_seed(0)
    mapper = VideoPairDatasetMapper(cfg)
    pair = mapper(sources[1][0])
    for name in ("instances", "ref_instances"):
        assert len(pair[name]) > 0 and not pair[name].gt_mask_valid.any()
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    with EventStorage(0):
        losses = model([pair, pair])
    present = [k for k in MASK_LOSSES if k in losses]
    assert {"loss_mask", "loss_tcis", "loss_semseg"} <= set(present)
    for k in present:
        assert losses[k].item() == 0.0, k
    sum(losses[k] for k in present).backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert losses["loss_cls"].item() > 0 and losses["loss_box_reg"].item() > 0


# ---- the leak warning and the command ----------------------------------------------------------
def test_a_split_with_ground_truth_is_warned_about(data_root, restore_catalogs, caplog):
    register_all_ytvis(str(data_root))
    with caplog.at_level(logging.WARNING, logger="vis_d2.pseudo_labels"):
        assert warn_if_leaks("synthvis_val", DatasetCatalog.get("synthvis_val"))
    assert "dataset 'synthvis_val'" in caplog.text and "would leak" in caplog.text
    caplog.clear()
    unlabeled = [dict(r, has_gt=False) for r in DatasetCatalog.get("synthvis_val")]
    with caplog.at_level(logging.WARNING, logger="vis_d2.pseudo_labels"):
        assert not warn_if_leaks("synthvis_val", unlabeled)
    assert caplog.text == ""


def test_strip_annotations(data_root, tmp_path):
    src = str(data_root / "synthvis" / "valid.json")
    out = strip_annotations(src, str(tmp_path / "u.json"))
    saved = json.loads((tmp_path / "u.json").read_text())
    assert saved == out and "annotations" not in saved
    assert saved["videos"] == read_split_json(src)["videos"]
    with pytest.raises(ValueError, match="replace its own source"):
        strip_annotations(src, src)


@pytest.fixture(scope="module")
def unlabeled_root(data_root):
    """<data_root>/synthvis_unlabeled: 2 videos of another seed without annotations, as the
    synthetic demo makes them (docs/INFERENCE.md)."""
    out = data_root / "synthvis_unlabeled"
    generate(str(out), train_videos=2, val_videos=0, seed=3, image_set_size=0, msd_set_size=0,
             config=SynthConfig(length_range=(4, 5)))
    strip_annotations(str(out / "train.json"), str(out / "unlabeled.json"))
    return data_root


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    out = tmp_path_factory.mktemp("pseudo_weights")
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(get_vis_cfg(CONFIG, TINY_OPTS)), save_dir=str(out)).save("m")
    return str(out / "m.pth")


def test_command_labels_an_unlabeled_split_end_to_end(unlabeled_root, random_weights,
                                                      restore_catalogs, monkeypatch, caplog):
    """A tiny random model, the tracker and the thresholds over synthvis_unlabeled; the json at
    the conventional path registers as synthvis_unlabeled_pseudo, weakly segmented."""
    root = str(unlabeled_root)
    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    register_all_ytvis(root)
    assert MetadataCatalog.get("synthvis_unlabeled").has_gt is False
    output = os.path.join(root, "synthvis_unlabeled", "pseudo_unlabeled.json")
    assert builtin_pseudo_label_name(output, root) == "synthvis_unlabeled_pseudo"
    with caplog.at_level(logging.WARNING):
        data = command.main(["--models", f"{CONFIG}:{random_weights}",
                             "--dataset", "synthvis_unlabeled", "--output", output, *TINY_OPTS,
                             "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                             "TEST.VIS.PSEUDO.MIN_TRACK_LENGTH", "2",
                             "TEST.VIS.PSEUDO.MIN_TRACK_SCORE", "0.0"])
    assert "would leak" not in caplog.text
    assert json.loads(open(output).read()) == data
    info = data["info"]
    assert info["source_dataset"] == "synthvis_unlabeled"
    assert info["models"] == [f"{CONFIG}:{random_weights}"] and info["scales"] == [1.0]
    assert info["thresholds"] == {"TEST.VIS.PSEUDO.MIN_TRACK_LENGTH": 2,
                                  "TEST.VIS.PSEUDO.MIN_TRACK_SCORE": 0.0,
                                  "TEST.VIS.PSEUDO.MIN_BOX_SCORE": 0.0}
    assert info["stats"]["videos"] == 2 and info["stats"]["kept_tracks"] == len(data["annotations"])
    assert len(data["annotations"]) > 0
    for a in data["annotations"]:
        assert sum(b is not None for b in a["bboxes"]) >= 2
        assert all(s is None for s in a["segmentations"])
    register_all_ytvis(root)
    assert MetadataCatalog.get("synthvis_unlabeled_pseudo").weak_segmentation is True
    records = DatasetCatalog.get("synthvis_unlabeled_pseudo")
    assert sum(len(f) for r in records for f in r["annotations"]) == info["stats"]["boxes"]
    assert records[0]["file_names"][0].startswith(os.path.join(root, "synthvis_unlabeled",
                                                               "JPEGImages"))
    # the same model with the defaults (length 3, score 0.5) keeps fewer of its random tracks
    strict = command.main(["--models", f"{CONFIG}:{random_weights}", "--dataset",
                           "synthvis_unlabeled", "--output", os.path.join(root, "strict.json"),
                           *TINY_OPTS, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    assert strict["info"]["stats"]["kept_tracks"] < info["stats"]["kept_tracks"]


def test_command_warns_on_a_split_with_ground_truth_and_refuses_bad_input(
        data_root, random_weights, restore_catalogs, tmp_path, caplog, capsys):
    register_all_ytvis(str(data_root))
    with caplog.at_level(logging.WARNING):
        command.main(["--models", f"{CONFIG}:{random_weights}", "--dataset", "synthvis_val",
                      "--output", str(tmp_path / "p.json"), *TINY_OPTS])
    assert "dataset 'synthvis_val'" in caplog.text and "would leak" in caplog.text
    with pytest.raises(SystemExit):
        command.main(["--models", CONFIG, "--dataset", "no_such_split", "--output", "p.json"])
    assert "'no_such_split' is not registered" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        command.main(["--models", CONFIG, "--dataset", "synthvis_val", "--output", "p.txt"])
    assert "are a json file" in capsys.readouterr().err


# ---- the configs that train on pseudo labels ---------------------------------------------------
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINING_KEYS = ("DATASETS.TRAIN", "DATALOADER.VIS.SOURCE_WEIGHTS", "OUTPUT_DIR")


@pytest.mark.parametrize("config, base", [
    ("ytvis_2021/B4_S101_FPN_pseudo.yaml", "ytvis_2021/B1_S101_FPN.yaml"),
    ("ytvis_2021/B5_SwinS_FPN_pseudo.yaml", "ytvis_2021/B2_SwinS_FPN.yaml"),
    ("synthvis/R18_demo_pseudo.yaml", "synthvis/R18_demo.yaml"),
])
def test_pseudo_label_configs_are_their_base_plus_the_pseudo_set(config, base):
    """B4 / B5 retrain B1 / B2 (same model, schedule and inference) with the pseudo-labelled set
    added to the training data; nothing else changes."""
    cfg = get_vis_cfg(os.path.join(REPO, "configs", config), ["MODEL.DEVICE", "cpu"])
    ref = get_vis_cfg(os.path.join(REPO, "configs", base), ["MODEL.DEVICE", "cpu"])
    a, b = flat_config(cfg), flat_config(ref)
    assert {k for k in a if a[k] != b[k]} <= set(TRAINING_KEYS)
    assert cfg.DATASETS.TRAIN[:-1] == ref.DATASETS.TRAIN
    assert cfg.DATASETS.TRAIN[-1].endswith("_pseudo") and cfg.OUTPUT_DIR != ref.OUTPUT_DIR
    weights = cfg.DATALOADER.VIS.SOURCE_WEIGHTS
    assert not weights or (len(weights) == len(cfg.DATASETS.TRAIN)
                           and list(weights[:-1]) == list(ref.DATALOADER.VIS.SOURCE_WEIGHTS))


def test_b4_builds_and_its_pseudo_set_registers_when_the_file_exists(tmp_path, restore_catalogs):
    pytest.importorskip("timm")
    cfg = get_vis_cfg(os.path.join(REPO, "configs/ytvis_2021/B4_S101_FPN_pseudo.yaml"),
                      TINY_OPTS + ["MODEL.WEIGHTS", ""])
    assert sum(p.numel() for p in build_model(cfg).parameters()) > 0
    assert "ytvis_2021_val_pseudo" not in register_all_ytvis(str(tmp_path))
    from vis_d2.data.categories import YTVIS_2021_CATEGORIES
    path = tmp_path / "ytvis_2021" / "pseudo_valid.json"
    atomic_write_json(str(path), {"videos": [], "categories": YTVIS_2021_CATEGORIES,
                                  "annotations": []})
    assert "ytvis_2021_val_pseudo" in register_all_ytvis(str(tmp_path))
    meta = MetadataCatalog.get("ytvis_2021_val_pseudo")
    assert meta.image_root == str(tmp_path / "ytvis_2021" / "valid" / "JPEGImages")
    assert meta.weak_segmentation is True and meta.taxonomy == "ytvis_2021"
    assert meta.thing_classes == MetadataCatalog.get("ytvis_2021_train").thing_classes
