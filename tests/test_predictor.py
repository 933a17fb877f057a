"""VISPredictor (notebook inference) and the video renderer."""
import os
import weakref
from unittest import mock

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

import vis_d2  # noqa: F401
from vis_d2 import visualization
from vis_d2.config import get_vis_cfg
from vis_d2.data.frames import VideoFrames
from vis_d2.engine import VISPredictor
from vis_d2.visualization import (contact_sheet, draw_tracks, group_objects, render_video,
                                  track_colour)

TINY = ["MODEL.DEVICE", "cpu", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
        "MODEL.ROI_MASK_HEAD.CONV_DIM", "32", "MODEL.VIS.TRACK_HEAD.FC_DIM", "32",
        "MODEL.VIS.TRACK_HEAD.EMBED_DIM", "32", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.VIS.TRACKER.SCORE_THRESH", "0.0",
        "TEST.VIS.PREDICT_SCORE_THRESH", "0.0"]


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    # A test set no checkout registers, so that the ids are the class indices even where
    # datasets/synthvis exists (make data).
    return VISPredictor(get_vis_cfg("configs/synthvis/R18_demo.yaml",
                                    TINY + ["DATASETS.TEST", "('vis_d2_unregistered_val',)"]))


def _frames(n=3, h=72, w=96):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_predictor_tracks_a_list_of_frames(predictor):
    preds = predictor(_frames())
    assert len(preds) > 0  # score thresholds are 0, so a random model still detects
    for p in preds:
        assert len(p["segmentations"]) == 3
        # no dataset registered: the ids are the class indices, named by them
        assert 0 <= p["category_id"] < 4
        assert p["category_name"] == f"category {p['category_id']}"
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
    assert [f.shape for f in VideoFrames(tmp_path)] == [(72, 96, 3)] * 2
    assert preds == predictor(frames) == predictor(iter(frames))


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
    m[20:30, 5:25] = 1  # room above for its label
    rle = mask_util.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode()
    return m.astype(bool), [{"category_id": 1, "score": 0.9, "segmentations": [rle, None]}]


def _shared(preds, categories):
    """``preds[0]`` again in each of ``categories`` (name, score): track NMS's output for one
    object (the same segmentations list)."""
    return [dict(preds[0], category_id=c, category_name=n, score=s) for c, (n, s) in
            enumerate(categories)]


def test_one_label_per_object():
    _, preds = _square_prediction()
    star_square = _shared(preds, [("star", 0.67), ("square", 0.54)])
    other = dict(preds[0], segmentations=[None, preds[0]["segmentations"][0]], category_id=3,
                 category_name="circle", score=0.9)
    preds = star_square + [other]
    assert group_objects(preds) == [[2], [0, 1]]
    img = np.zeros((40, 60, 3), np.uint8)
    with mock.patch.object(visualization.cv2, "putText") as put:
        draw_tracks(img, 0, preds)
    assert [c.args[1] for c in put.call_args_list] == ["#1 star 0.67", "square 0.54"]
    with mock.patch.object(visualization.cv2, "putText") as put:
        draw_tracks(img, 1, preds)
    assert [c.args[1] for c in put.call_args_list] == ["#0 circle 0.90"]
    # a results json read back has equal, not identical, segmentations: still one object
    assert group_objects([dict(p, segmentations=list(p["segmentations"])) for p in preds]) \
        == [[2], [0, 1]]


def test_labels_stay_inside_the_frame():
    """An object in the top-right corner gets its label inside the frame, over a filled box."""
    m = np.zeros((60, 80), np.uint8)
    m[0:10, 70:80] = 1
    rle = mask_util.encode(np.asfortranarray(m))
    preds = [{"category_id": 0, "category_name": "star", "score": 0.5, "segmentations": [rle]}]
    with mock.patch.object(visualization.cv2, "putText") as put:
        draw_tracks(np.zeros((60, 80, 3), np.uint8), 0, preds)
    (call,) = put.call_args_list
    (tw, th), _ = cv2.getTextSize(call.args[1], call.args[3], call.args[4], call.args[6])
    x, y = call.args[2]
    assert 0 <= x and x + tw <= 80 and y - th >= 0 and y <= 60
    out = draw_tracks(np.zeros((60, 80, 3), np.uint8), 0, preds)
    assert (out[y - th:y, x - 1] == track_colour(0)).all()  # the label's box, left of the text


def test_draw_tracks_colours_only_the_mask():
    mask, preds = _square_prediction()
    img = np.zeros((40, 60, 3), np.uint8)
    out = draw_tracks(img, 0, preds, class_names=["a", "b"], alpha=0.5)
    colour = np.array(track_colour(0), np.float32) * 0.5
    assert np.array_equal(out[25, 15], colour.astype(np.uint8))  # inside the mask, below the label
    assert out[35, 55].sum() == 0  # far outside: untouched
    assert np.array_equal(draw_tracks(img, 1, preds), img)  # track absent in frame 1


def test_render_video_and_contact_sheet(tmp_path):
    import av

    _, preds = _square_prediction()
    frames = [np.full((40, 60, 3), 30, np.uint8) for _ in range(2)]
    mp4 = render_video(iter(frames), preds, str(tmp_path / "v.mp4"))
    with av.open(mp4) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert [f.to_ndarray(format="bgr24").shape for f in container.decode(stream)] == \
            [(40, 60, 3)] * 2
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
    MetadataCatalog.get(name).set(thing_classes=["a", "b", "c", "d"])
    try:
        p = VISPredictor(cfg)
        assert p.class_names == ["a", "b", "c", "d"]
        assert p.category_ids == [0, 1, 2, 3]  # no id map: the class indices
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture
def registered_dataset():
    """A dataset whose json ids 1, 3, 5, 7 are the model's classes 0..3."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = "predictortest_ids"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(thing_classes=["w", "x", "y", "z"],
                                  thing_dataset_id_to_contiguous_id={1: 0, 3: 1, 5: 2, 7: 3})
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_outputs_carry_the_dataset_ids_and_names(registered_dataset):
    torch.manual_seed(0)
    predictor = VISPredictor(get_vis_cfg("configs/synthvis/R18_demo.yaml", TINY + [
        "DATASETS.TEST", f"('{registered_dataset}',)"]))
    names = {1: "w", 3: "x", 5: "y", 7: "z"}
    assert predictor.category_names == names
    preds = predictor(_frames())
    assert preds and {p["category_id"] for p in preds} <= {1, 3, 5, 7}
    assert all(p["category_name"] == names[p["category_id"]] for p in preds)
    for inst in predictor.track_stream(_frames()):
        assert inst.category_ids.tolist() == [[1, 3, 5, 7][c] for c in inst.pred_classes.tolist()]


def test_score_threshold_drops_low_tracks(predictor, monkeypatch):
    tracks = predictor.tracker.predict(predictor.detect(_frames()), 0)
    everything = predictor.dataset_predictions(tracks)
    assert len(everything) == len(tracks)  # the threshold is 0 in TINY
    thresh = float(np.median([p["score"] for p in everything]))
    monkeypatch.setattr(predictor, "score_thresh", thresh)
    kept = predictor.dataset_predictions(tracks)
    assert kept == [p for p in everything if p["score"] >= thresh]
    assert 0 < len(kept) < len(everything)
    assert get_vis_cfg("configs/synthvis/R18_demo.yaml").TEST.VIS.PREDICT_SCORE_THRESH == 0.3


def test_frames_are_not_all_held(predictor):
    """Frames come one at a time from a generator, and none outlives its model pass (numpy
    frames hold no reference cycles: they are freed as soon as nothing refers to them)."""
    alive = []
    seen = []

    def frames():
        rng = np.random.default_rng(0)
        for _ in range(4):
            f = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            alive.append(weakref.ref(f))
            yield f

    real = predictor.predict_frame

    def counting(image):
        seen.append(sum(r() is not None for r in alive))
        return real(image)

    with mock.patch.object(predictor, "predict_frame", counting):
        preds = predictor(frames())
    assert seen == [1, 1, 1, 1]  # the frame in the model, no earlier one
    assert all(len(p["segmentations"]) == 4 for p in preds)


def test_cache_without_untracked_detections_gives_the_same_tracks(predictor, monkeypatch):
    """detect() leaves out detections below the tracker's score threshold: the tracks are those
    of the whole cache (as video inference builds it)."""
    import dataclasses

    from vis_d2.engine.video_inference import instances_to_frame_detections

    frames = _frames(4)
    full = [instances_to_frame_detections(predictor.predict_frame(f), predictor.tracker)[1]
            for f in frames]
    thresh = float(np.median(np.concatenate([d.scores for d in full])))
    tracker = dataclasses.replace(predictor.tracker, score_thresh=thresh)
    monkeypatch.setattr(predictor, "tracker", tracker)
    cached = predictor.detect(frames)
    assert all((d.scores >= thresh).all() for d in cached)
    assert sum(map(len, cached)) < sum(map(len, full))
    assert tracker.predict(cached, 0) == tracker.predict(full, 0)


def test_frame_cache_reads_back_what_was_cached(predictor):
    from vis_d2.engine.predictor import FrameCache

    cache = predictor.detect(iter(_frames(3)))
    assert isinstance(cache, FrameCache) and len(cache) == 3
    small = FrameCache(recent=1)
    for frame in cache:
        small.append(frame)
    for t in (2, 0, 1, -1):  # read back from the file: only one frame is kept in memory
        a, b = cache[t], small[t]
        assert b is not a and b.masks == a.masks and b.source == a.source
        for field in ("boxes", "scores", "labels", "embeddings"):
            assert np.array_equal(getattr(b, field), getattr(a, field))
    with pytest.raises(IndexError):
        small[3]
    small.close()


def test_threshold_before_track_nms_gives_the_same_predictions(predictor, monkeypatch):
    """__call__ gathers masks and runs track NMS only for the tracks at or above the threshold:
    the predictions are those of all tracks, filtered."""
    import dataclasses

    tracker = dataclasses.replace(predictor.tracker, track_nms_thresh=0.1)
    monkeypatch.setattr(predictor, "tracker", tracker)
    frames = _frames(4)
    everything = predictor.dataset_predictions(tracker.predict(list(predictor.detect(frames)), 7))
    scores = sorted({p["score"] for p in everything})
    for thresh in (scores[len(scores) // 2], scores[-1]):
        monkeypatch.setattr(predictor, "score_thresh", thresh)
        assert predictor(frames, 7) == [p for p in everything if p["score"] >= thresh]
