"""VISPredictor (notebook inference) and the video renderer."""
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

import vis_d2  # noqa: F401
from vis_d2.config import get_vis_cfg
from vis_d2.engine import VISPredictor
from vis_d2.engine.predictor import read_video_frames
from vis_d2.visualization import contact_sheet, draw_tracks, render_video, track_colour

TINY = ["MODEL.DEVICE", "cpu", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
        "MODEL.ROI_MASK_HEAD.CONV_DIM", "32", "MODEL.VIS.TRACK_HEAD.FC_DIM", "32",
        "MODEL.VIS.TRACK_HEAD.EMBED_DIM", "32", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.VIS.TRACKER.SCORE_THRESH", "0.0"]


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return VISPredictor(get_vis_cfg("configs/synthvis/R18_demo.yaml", TINY))


def _frames(n=3, h=72, w=96):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_predictor_tracks_a_list_of_frames(predictor):
    preds = predictor(_frames())
    assert len(preds) > 0  # score thresholds are 0, so a random model still detects
    for p in preds:
        assert len(p["segmentations"]) == 3
        assert 0 <= p["category_id"] < 4
        for rle in p["segmentations"]:
            assert rle is None or tuple(rle["size"]) == (72, 96)
    scores = [p["score"] for p in preds]
    assert scores == sorted(scores, reverse=True)


def test_predictor_reads_a_folder(predictor, tmp_path):
    """A folder of frames is tracked as the list of its frames (bad inputs:
    tests/bad_inputs/test_predictor_inputs.py)."""
    frames = _frames(2)
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i:05d}.png"), f)
    preds = predictor(str(tmp_path))
    assert all(len(p["segmentations"]) == 2 for p in preds)
    assert [f.shape for f in read_video_frames(str(tmp_path))] == [(72, 96, 3)] * 2
    assert preds == predictor(frames)


def test_missing_weights_named(tmp_path):
    cfg = get_vis_cfg("configs/synthvis/R18_demo.yaml", TINY + ["MODEL.WEIGHTS", str(tmp_path / "w.pth")])
    with pytest.raises(FileNotFoundError, match="w.pth"):
        VISPredictor(cfg)


def test_track_stream_gives_track_ids(predictor):
    outs = list(predictor.track_stream(_frames(3)))
    assert len(outs) == 3
    for inst in outs:
        assert inst.track_ids.shape == (len(inst),)
        kept = inst.track_ids[inst.track_ids >= 0]
        assert len(set(kept.tolist())) == len(kept)  # one detection per track per frame


def _square_prediction(h=40, w=60):
    m = np.zeros((h, w), np.uint8)
    m[10:20, 5:25] = 1
    rle = mask_util.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode()
    return m.astype(bool), [{"category_id": 1, "score": 0.9, "segmentations": [rle, None]}]


def test_draw_tracks_colours_only_the_mask():
    mask, preds = _square_prediction()
    img = np.zeros((40, 60, 3), np.uint8)
    out = draw_tracks(img, 0, preds, class_names=["a", "b"], alpha=0.5)
    colour = np.array(track_colour(0), np.float32) * 0.5
    assert np.array_equal(out[15, 15], colour.astype(np.uint8))  # inside the mask, away from text
    assert out[35, 55].sum() == 0  # far outside: untouched
    assert np.array_equal(draw_tracks(img, 1, preds), img)  # track absent in frame 1


def test_render_video_and_contact_sheet(tmp_path):
    _, preds = _square_prediction()
    frames = [np.full((40, 60, 3), 30, np.uint8) for _ in range(2)]
    gif = render_video(frames, preds, str(tmp_path / "v.gif"))
    sheet = contact_sheet(frames, preds, str(tmp_path / "s.png"), num=2, cols=2)
    assert os.path.getsize(gif) > 0
    img = cv2.imread(sheet)
    assert img.shape == (40, 120, 3)
    with pytest.raises(ValueError, match="unsupported animation format"):
        render_video(frames, preds, str(tmp_path / "v.avi"))


def test_predictor_names_classes_without_creating_catalog_entries():
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = "predictortest_unregistered"
    cfg = get_vis_cfg("configs/synthvis/R18_demo.yaml", TINY)
    cfg.DATASETS.TEST = (name,)
    assert VISPredictor(cfg).class_names is None
    assert name not in MetadataCatalog  # a later registration of `name` must not meet stale metadata
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(thing_classes=["a", "b"])
    try:
        assert VISPredictor(cfg).class_names == ["a", "b"]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
