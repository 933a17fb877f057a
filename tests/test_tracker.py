"""Online tracker, label voting and track -> prediction conversion on scripted detections."""
import math

import numpy as np
import pycocotools.mask as mask_util
import pytest

from vis_d2.tracking import (
    FrameDetections,
    TrackedDetection,
    Tracklet,
    TrackingInputError,
    VideoTracker,
    vote_label,
)

H, W = 60, 200


def rle_of_box(box):
    m = np.zeros((H, W), dtype=np.uint8, order="F")
    x1, y1, x2, y2 = [int(round(v)) for v in box]
    m[max(y1, 0):min(y2, H), max(x1, 0):min(x2, W)] = 1
    rle = mask_util.encode(m)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _run_lengths(mask):
    """Uncompressed COCO RLE counts (column-major runs, starting with zeros)."""
    flat = np.asarray(mask).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] == 1 else runs


def onehot(k, dim=4, scale=10.0):
    e = np.zeros(dim, np.float32)
    e[k] = scale
    return e


def frame(dets, dim=4):
    """dets: list of (box xyxy, score, label, embedding) -> FrameDetections."""
    if not dets:
        return FrameDetections.empty(dim)
    boxes, scores, labels, embs = zip(*dets)
    return FrameDetections(
        boxes=np.array(boxes, np.float32), scores=np.array(scores, np.float32),
        labels=np.array(labels, np.int64), embeddings=np.stack(embs).astype(np.float32),
        masks=[rle_of_box(b) for b in boxes])


def track_ids_by_frame(tracklets):
    """{track id: sorted list of (frame, det)}"""
    return {t.track_id: [(f, t.det_index(f)) for f in t.frames()] for t in tracklets}


# --------------------------------------------------------------------------- FrameDetections
def test_frame_detections_empty_and_dtypes():
    e = FrameDetections.empty(7)
    assert len(e) == 0 and e.embed_dim == 7
    assert e.boxes.shape == (0, 4) and e.boxes.dtype == np.float32
    assert e.scores.shape == (0,) and e.labels.dtype == np.int64
    assert e.embeddings.shape == (0, 7) and e.masks == []
    f = frame([([0, 0, 10, 10], 0.9, 2.0, onehot(0))])   # float label 2.0 -> int64 2
    assert f.labels.dtype == np.int64 and f.labels.tolist() == [2]
    assert f.boxes.dtype == np.float32 and f.embeddings.dtype == np.float32


@pytest.mark.parametrize("field,value,msg", [
    ("boxes", np.zeros((2, 5)), "'boxes' must have shape (N, 4)"),
    ("scores", np.zeros(3), "'scores' must have shape (2,)"),
    ("labels", np.zeros((2, 1)), "'labels' must have shape (2,)"),
    ("labels", np.array([0.5, 1.0]), "'labels' must hold integer"),
    ("embeddings", np.zeros((3, 4)), "'embeddings' must have shape (2, D)"),
    ("masks", [{"size": [H, W], "counts": ""}], "'masks' must be a list of 2 RLE dicts"),
    ("masks", [{"size": [H, W], "counts": ""}, "x"], "'masks'[1] must be an RLE dict"),
    ("boxes", np.array([[0, 0, 10, 10], [5, 5, 3, 9]]),
     "'boxes'[1] = [5.0, 5.0, 3.0, 9.0] is not XYXY"),
    ("scores", np.array([0.5, np.nan]), "'scores' has NaN"),
    ("scores", np.array([0.5, -0.1]), "'scores' has negative"),
])
def test_frame_detections_validation(field, value, msg):
    good = dict(boxes=np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32),
                scores=np.array([0.9, 0.8], np.float32), labels=np.array([0, 1]),
                embeddings=np.zeros((2, 4), np.float32),
                masks=[{"size": [H, W], "counts": ""}] * 2)
    FrameDetections(**good)
    good[field] = value
    with pytest.raises(TrackingInputError) as exc:
        FrameDetections(**good, source="video 7, frame 3")
    assert msg in str(exc.value)
    assert "video 7, frame 3" in str(exc.value)


def test_inconsistent_embedding_dims_named():
    frames = [frame([([0, 0, 10, 10], 0.9, 0, onehot(0, dim=4))]),
              frame([([0, 0, 10, 10], 0.9, 0, onehot(0, dim=3))], dim=3)]
    with pytest.raises(TrackingInputError, match="frame 1 .* dimension 3 but frame 0 has 4"):
        VideoTracker().online().track(frames)


# --------------------------------------------------------------------------- association
def crossing_video(embeddings):
    """A moves right (x = 10t), B moves left (x = 90 - 10t); they cross between t=4 and 5."""
    frames = []
    for t in range(10):
        a = [10 * t, 0, 10 * t + 20, 20]
        b = [90 - 10 * t, 0, 110 - 10 * t, 20]
        frames.append(frame([(a, 0.9, 0, embeddings[0]), (b, 0.9, 0, embeddings[1])]))
    return frames


def test_crossing_objects_keep_ids():
    frames = crossing_video([onehot(0), onehot(1)])
    tracks = VideoTracker().online().track(frames)
    assert track_ids_by_frame(tracks) == {
        0: [(t, 0) for t in range(10)],
        1: [(t, 1) for t in range(10)],
    }


def test_crossing_objects_swap_without_embeddings():
    # Same video, uninformative embeddings: IoU alone swaps the ids at the crossing, which is
    # what the embedding term prevents above.
    frames = crossing_video([np.zeros(4, np.float32), np.zeros(4, np.float32)])
    tracks = VideoTracker().online().track(frames)
    by_id = track_ids_by_frame(tracks)
    assert len(by_id) == 2
    assert by_id[0][:5] == [(t, 0) for t in range(5)]
    assert by_id[0][5:] == [(t, 1) for t in range(5, 10)]


def vanishing_video():
    """One object at a fixed place in frames 0-2 and 6-9, missing in frames 3, 4, 5."""
    box = [50, 10, 80, 40]
    return [frame([] if 3 <= t <= 5 else [(box, 0.9, 1, onehot(2))]) for t in range(10)]


@pytest.mark.parametrize("max_age,expected", [
    (3, {0: [0, 1, 2, 6, 7, 8, 9]}),
    (10, {0: [0, 1, 2, 6, 7, 8, 9]}),
    (2, {0: [0, 1, 2], 1: [6, 7, 8, 9]}),
    (1, {0: [0, 1, 2], 1: [6, 7, 8, 9]}),
])
def test_vanish_and_return(max_age, expected):
    tracks = VideoTracker(max_age=max_age).online().track(vanishing_video())
    assert {t.track_id: t.frames() for t in tracks} == expected


def leaving_video():
    """Object A (label 1) in frames 0-2 at the left, then gone; from frame 3 a detection of the
    same label far to the right (another object, or a blob), 7.5 of A's box sizes away, whose
    embedding resembles A's a little (dot product 5 with A's memory)."""
    a = ([10, 10, 30, 30], 0.9, 1, onehot(2))
    far = ([160, 20, 180, 40], 0.3, 1, onehot(2, scale=0.5))
    return [frame([a] if t < 3 else [far]) for t in range(6)]


@pytest.mark.parametrize("distance_weight,expected", [
    # joining scores log_softmax([0, 5])[1] + 10 - d * 7.5 against "new" log_softmax(...)[0] + 10
    (0.0, {0: [0, 1, 2, 3, 4, 5]}),        # MaskTrack R-CNN's score: 9.99 > 4.99, the track jumps
    (0.2, {0: [0, 1, 2, 3, 4, 5]}),        # 8.49 > 4.99: still jumps
    (2.0, {0: [0, 1, 2], 1: [3, 4, 5]}),  # -5.01 < 4.99: a new track
])
def test_distance_term_keeps_a_track_from_jumping(distance_weight, expected):
    tracks = VideoTracker(distance_weight=distance_weight).online().track(leaving_video())
    assert {t.track_id: t.frames() for t in tracks} == expected


def test_distance_term_arithmetic_and_near_return():
    from vis_d2.tracking.online_tracker import center_distance

    # centres (20, 20) and (170, 30): distance sqrt(150^2 + 10^2) / sqrt(20 * 20)
    d = center_distance(np.array([[160, 20, 180, 40]]), np.array([[10, 10, 30, 30]]))
    assert d.shape == (1, 1) and d[0, 0] == pytest.approx(math.hypot(150, 10) / 20)
    # a zero-area track box counts as 1 pixel^2
    assert center_distance(np.array([[3, 4, 3, 4]]), np.array([[0, 0, 0, 0]]))[0, 0] == 5.0
    tracker = VideoTracker(distance_weight=2.0).online()
    frames = leaving_video()
    tracker.step(0, frames[0])
    s = tracker.association_scores(frames[3])
    ls = -np.log1p(np.exp(5.0))           # log_softmax([0, 5])[0]; [1] = ls + 5
    a_term = math.log(0.3)
    assert s[0, 0] == pytest.approx(ls + a_term + 10.0, abs=1e-6)
    assert s[0, 1] == pytest.approx(ls + 5.0 + a_term + 0.0 + 10.0 - 2.0 * d[0, 0], abs=1e-6)
    # An object that comes back near where it was hidden still gets its track: the vanishing
    # video's object, shifted by half its size while it was away.
    back = vanishing_video()
    for t in range(6, 10):
        back[t] = frame([([65, 10, 95, 40], 0.9, 1, onehot(2))])
    tracks = VideoTracker(distance_weight=2.0).online().track(back)
    assert {t.track_id: t.frames() for t in tracks} == {0: [0, 1, 2, 6, 7, 8, 9]}
    with pytest.raises(TrackingInputError, match="DISTANCE_WEIGHT"):
        VideoTracker(distance_weight=-1.0).online()
    with pytest.raises(TrackingInputError, match="DISTANCE_WEIGHT"):
        VideoTracker(distance_weight=float("nan"))


def test_retired_track_leaves_memory():
    tracker = VideoTracker(max_age=1).online()
    frames = vanishing_video()
    for t in range(5):
        tracker.step(t, frames[t])
    assert tracker.active_track_ids() == [0]   # at frame 4, unseen 1 frame (3): could match
    tracker.step(5, frames[5])
    assert tracker.active_track_ids() == []    # at frame 5, unseen 2 frames > max_age: retired
    with pytest.raises(KeyError, match="track 0 is not active"):
        tracker.memory_embedding(0)
    assert [t.track_id for t in tracker.tracklets()] == [0]


def test_new_object_mid_video():
    frames = []
    for t in range(8):
        dets = [([10, 10, 40, 40], 0.9, 0, onehot(0))]
        if t >= 4:
            dets.append(([100, 10, 140, 50], 0.8, 3, onehot(1)))
        frames.append(frame(dets))
    tracks = VideoTracker().online().track(frames)
    assert track_ids_by_frame(tracks) == {
        0: [(t, 0) for t in range(8)],
        1: [(t, 1) for t in range(4, 8)],
    }
    assert tracks[1].label(4) == 3 and tracks[1].score(5) == pytest.approx(0.8)
    np.testing.assert_allclose(tracks[1].box(6), [100, 10, 140, 50])


def test_empty_video_gives_no_tracks_and_no_predictions():
    frames = [FrameDetections.empty(16) for _ in range(5)]
    tracker = VideoTracker().online()
    assert tracker.track(frames) == []
    assert tracker.track(frames, reverse=True) == []
    assert VideoTracker().predictions([], frames, 3) == []
    assert VideoTracker().predict(frames, video_id=3) == []
    assert VideoTracker(bitrack=True).predict(frames, video_id=3) == []
    assert VideoTracker().online().track([]) == []


def test_two_detections_never_share_a_track():
    # Frame 0: one object. Frame 1: two detections that both prefer that track (same
    # embedding, both overlapping it); MaskTrack R-CNN's per-detection argmax gives both
    # the same id, the assignment gives the better one the track and the other a new track.
    frames = [
        frame([([0, 0, 20, 20], 0.9, 0, onehot(0))]),
        frame([([2, 0, 22, 20], 0.9, 0, onehot(0)), ([0, 0, 20, 20], 0.9, 0, onehot(0))]),
    ]
    tracker = VideoTracker().online()
    assert tracker.step(0, frames[0]) == [0]
    scores = tracker.association_scores(frames[1])
    assert scores.shape == (2, 2)
    assert scores.argmax(axis=1).tolist() == [1, 1]        # both rows pick track 0
    ids = tracker.step(1, frames[1])
    assert ids == [1, 0]        # detection 1 has IoU 1 with the track, detection 0 only 0.818
    tracks = tracker.tracklets()
    assert track_ids_by_frame(tracks) == {0: [(0, 0), (1, 1)], 1: [(1, 0)]}


def test_reverse_processes_from_the_end():
    frames = []
    for t in range(6):
        dets = [([10, 10, 40, 40], 0.9, 0, onehot(0))]
        if t <= 2:       # second object only in the first three frames
            dets.append(([100, 10, 140, 50], 0.8, 1, onehot(1)))
        frames.append(frame(dets))
    tracks = VideoTracker().online().track(frames, reverse=True)
    assert track_ids_by_frame(tracks) == {
        0: [(t, 0) for t in range(6)],
        1: [(t, 1) for t in range(3)],
    }
    # track 0 was created at frame T-1, track 1 at frame 2 (its first frame going backward)
    tracker = VideoTracker().online()
    tracker.reset(reverse=True)
    assert tracker.step(5, frames[5]) == [0]
    with pytest.raises(TrackingInputError, match="frame 5 after frame 5 in a backward run"):
        tracker.step(5, frames[5])
    fwd = VideoTracker().online()
    fwd.step(3, frames[3])
    with pytest.raises(TrackingInputError, match="frame 2 after frame 3 in a forward run"):
        fwd.step(2, frames[2])


def test_score_threshold():
    f = frame([([0, 0, 10, 10], 0.04, 0, onehot(0)), ([20, 0, 30, 10], 0.05, 0, onehot(1)),
               ([40, 0, 50, 10], 0.5, 0, onehot(2))])
    assert VideoTracker(score_thresh=0.05).online().step(0, f) == [-1, 0, 1]
    assert VideoTracker(score_thresh=0.3).online().step(0, f) == [-1, -1, 0]
    assert VideoTracker(score_thresh=0.0).online().step(0, f) == [0, 1, 2]


def test_momentum_and_score_arithmetic():
    e1 = np.array([10.0, 0.0], np.float32)
    e2 = np.array([0.0, 10.0], np.float32)
    box = [0, 0, 10, 10]
    tracker = VideoTracker(momentum=0.5).online()
    tracker.step(0, frame([(box, 0.9, 0, e1)], dim=2))
    np.testing.assert_allclose(tracker.memory_embedding(0), [10, 0])
    # frame 1: det with embedding e2, box IoU 0.5 with the track, same label
    f1 = frame([([0, 0, 10, 5], 0.8, 0, e2)], dim=2)
    s = tracker.association_scores(f1)
    # logits [0, e2.e1 = 0] -> log_softmax = [-log 2, -log 2]
    a_term = 1.0 * math.log(0.8)
    assert s[0, 0] == pytest.approx(-math.log(2) + a_term + 10.0, abs=1e-6)
    assert s[0, 1] == pytest.approx(-math.log(2) + a_term + 2.0 * 0.5 + 10.0, abs=1e-6)
    assert tracker.step(1, f1) == [0]
    np.testing.assert_allclose(tracker.memory_embedding(0), [5, 5])   # 0.5*e1 + 0.5*e2
    # frame 2: det with embedding (2, 0) -> dot with memory = 10
    f2 = frame([([0, 0, 10, 5], 0.8, 1, np.array([2.0, 0.0]))], dim=2)
    s = tracker.association_scores(f2)
    ls = -np.log1p(np.exp(10.0))          # log_softmax([0, 10])[0]
    assert s[0, 0] == pytest.approx(ls + a_term + 10.0, abs=1e-6)
    assert s[0, 1] == pytest.approx(ls + 10.0 + a_term + 2.0 * 1.0 + 0.0, abs=1e-6)  # label differs
    # momentum 0 keeps the latest embedding
    t0 = VideoTracker(momentum=0.0).online()
    t0.step(0, frame([(box, 0.9, 0, e1)], dim=2))
    t0.step(1, f1)
    np.testing.assert_allclose(t0.memory_embedding(0), [0, 10])


def test_from_config_and_arguments():
    from detectron2.config import get_cfg
    from vis_d2.config import add_vis_config

    cfg = add_vis_config(get_cfg())
    tr = VideoTracker.from_config(cfg)
    assert tr == VideoTracker()            # the config's defaults are the dataclass's
    assert (tr.score_weight, tr.iou_weight, tr.label_weight, tr.label_term_weight) == \
        (1.0, 2.0, 10.0, 10.0)
    assert (tr.score_thresh, tr.max_age, tr.momentum, tr.max_dets_per_frame) == (0.05, 10, 0.0, 20)
    assert tr.distance_weight == 0.0   # MaskTrack R-CNN's score unless a config asks
    cfg.MODEL.VIS.TRACKER.LABEL_VOTING = True
    cfg.MODEL.VIS.TRACKER.LABEL_VOTING_WEIGHT = 0.5
    cfg.MODEL.VIS.TRACKER.MAX_AGE = 3
    cfg.MODEL.VIS.TRACKER.DISTANCE_WEIGHT = 1.5
    tr = VideoTracker.from_config(cfg)
    assert tr.label_term_weight == 0.5 and tr.max_age == 3 and tr.label_voting
    assert tr.distance_weight == 1.5
    with pytest.raises(TrackingInputError, match="add_vis_config"):
        VideoTracker.from_config(get_cfg())
    with pytest.raises(TrackingInputError, match="MOMENTUM"):
        VideoTracker(momentum=1.0)
    with pytest.raises(TrackingInputError, match="MAX_AGE"):
        VideoTracker(max_age=-1)
    with pytest.raises(TrackingInputError, match=r"MAX_AGE\) must be an integer, got 2.5"):
        VideoTracker(max_age=2.5)
    with pytest.raises(TrackingInputError, match=r"BITRACK\) must be True or False, got 1"):
        VideoTracker(bitrack=1)
    with pytest.raises(TrackingInputError, match=r"IOU_WEIGHT\) must be a number, got '2'"):
        VideoTracker(iou_weight="2")
    with pytest.raises(TrackingInputError, match=r"LABEL_WEIGHT\) must be finite"):
        VideoTracker(label_weight=float("inf"))


def test_config_node_is_derived_from_the_dataclass():
    import dataclasses

    from detectron2.config import get_cfg
    from vis_d2.config import add_vis_config

    node = add_vis_config(get_cfg()).MODEL.VIS.TRACKER
    fields = dataclasses.fields(VideoTracker)
    assert sorted(node.keys()) == sorted(f.name.upper() for f in fields)
    for f in fields:
        value = node[f.name.upper()]
        assert value == f.default and type(value) is type(f.default), f.name


def test_retired_match_coeffs_key_names_the_new_keys(tmp_path):
    from vis_d2.config import get_vis_cfg

    yaml = tmp_path / "old.yaml"
    yaml.write_text("MODEL:\n  VIS:\n    TRACKER:\n      MATCH_COEFFS: [1.0, 2.0, 5.0]\n")
    for kwargs in ({"config_file": str(yaml)},
                   {"opts": ["MODEL.VIS.TRACKER.MATCH_COEFFS", "[1.0, 2.0, 5.0]"]}):
        with pytest.raises(KeyError) as exc:
            get_vis_cfg(**kwargs)
        for key in ("SCORE_WEIGHT", "IOU_WEIGHT", "LABEL_WEIGHT"):
            assert f"MODEL.VIS.TRACKER.{key}" in str(exc.value)
    assert "old.yaml" in str(pytest.raises(KeyError, get_vis_cfg, str(yaml)).value)
    cfg = get_vis_cfg(opts=["MODEL.DEVICE", "cpu", "MODEL.VIS.TRACKER.LABEL_WEIGHT", "5.0"])
    assert VideoTracker.from_config(cfg).label_weight == 5.0


def test_top_k_is_the_one_per_frame_cap():
    scores = np.array([0.3, 0.9, 0.3, 0.5], np.float32)
    assert VideoTracker(max_dets_per_frame=0).top_k(scores).tolist() == [0, 1, 2, 3]
    assert VideoTracker(max_dets_per_frame=4).top_k(scores).tolist() == [0, 1, 2, 3]  # as is
    # best first; equal scores keep the lower index first
    assert VideoTracker(max_dets_per_frame=3).top_k(scores).tolist() == [1, 3, 0]
    assert VideoTracker(max_dets_per_frame=1).top_k(scores).tolist() == [1]
    assert VideoTracker().top_k(np.zeros(0)).tolist() == []


# --------------------------------------------------------------------------- label voting
def test_vote_label_count_vs_score_weighted():
    labels = [0, 0, 1, 1, 1]
    scores = [0.9, 0.8, 0.3, 0.2, 0.3]
    assert vote_label(labels, scores, score_weighted=False) == 1      # 3 votes vs 2
    assert vote_label(labels, scores, score_weighted=True) == 0       # 1.7 vs 0.8
    # ties: equal counts -> larger total score; then the smaller label
    assert vote_label([0, 1], [0.3, 0.5], score_weighted=False) == 1
    assert vote_label([2, 1], [0.5, 0.5], score_weighted=False) == 1
    assert vote_label([2, 1], [0.5, 0.5], score_weighted=True) == 1
    with pytest.raises(TrackingInputError):
        vote_label([], [], score_weighted=False)


def mislabelled_video():
    """One object, label 1 in frame 2 only; small embeddings so the label term matters."""
    labels = [0, 0, 1, 0, 0]
    return [frame([([10, 10, 50, 50], 0.9, lab, onehot(0, scale=1.0))]) for lab in labels]


def test_relaxed_label_term_links_a_mislabelled_detection():
    frames = mislabelled_video()
    # default c = 10: "new" (-1.31 + 10) beats the mislabelled match (-0.31 + 2 + 0)
    split = VideoTracker().online().track(frames)
    assert {t.track_id: t.frames() for t in split} == {0: [0, 1, 3, 4], 1: [2]}
    voting = VideoTracker(label_voting=True, label_voting_weight=0.0).online().track(frames)
    assert {t.track_id: t.frames() for t in voting} == {0: [0, 1, 2, 3, 4]}
    assert voting[0].labels().tolist() == [0, 0, 1, 0, 0]
    preds = VideoTracker(label_voting=True).predictions(voting, frames, 1)
    assert len(preds) == 1 and preds[0]["category_id"] == 0
    preds = VideoTracker().predictions(split, frames, 1)
    assert sorted(p["category_id"] for p in preds) == [0, 1]


# --------------------------------------------------------------------------- predictions
def test_predictions_from_tracklets():
    scores = [0.9, 0.8, 0.3, 0.2, 0.3]
    labels = [0, 0, 1, 1, 1]
    frames = []
    for t in range(7):
        dets = [([100, 10, 140, 50], 0.6, 4, onehot(1))]           # track B, all frames
        if t < 5:
            dets.insert(0, ([10, 10, 50, 50], scores[t], labels[t], onehot(0)))
        frames.append(frame(dets))
    # bytes counts in the cache come out as str
    frames[6].masks[0] = dict(frames[6].masks[0], counts=frames[6].masks[0]["counts"].encode())
    tracks = VideoTracker(label_voting=True).online().track(frames)
    assert {t.track_id: t.frames() for t in tracks} == {0: [0, 1, 2, 3, 4], 1: list(range(7))}

    preds = VideoTracker(label_voting=True, label_vote_score_weighted=False).predictions(
        tracks, frames, 42)
    assert [p["score"] for p in preds] == [pytest.approx(0.6), pytest.approx(0.5)]  # sorted
    b, a = preds
    assert a["video_id"] == 42 and b["video_id"] == 42
    assert len(a["segmentations"]) == 7 and len(b["segmentations"]) == 7
    assert a["segmentations"][5:] == [None, None]
    assert a["category_id"] == 1          # count vote
    assert b["category_id"] == 4
    for t in range(5):                    # passthrough: the cached RLE objects themselves
        assert a["segmentations"][t] is frames[t].masks[0]
        assert b["segmentations"][t] is frames[t].masks[1]
    assert isinstance(b["segmentations"][6]["counts"], str)
    assert b["segmentations"][6]["counts"] == frames[5].masks[0]["counts"]
    # an uncompressed (list counts) RLE comes out compressed with str counts, same mask
    box_mask = mask_util.decode(rle_of_box([100, 10, 140, 50]))
    raw = {"size": [H, W], "counts": [int(x) for x in _run_lengths(box_mask)]}
    frames[5].masks[0] = raw
    voting_count = VideoTracker(label_voting=True, label_vote_score_weighted=False)
    p5 = voting_count.predictions(tracks, frames, 42)[0]["segmentations"][5]
    assert isinstance(p5["counts"], str) and p5 is not raw
    np.testing.assert_array_equal(mask_util.decode(p5), box_mask)
    area = mask_util.area(a["segmentations"][0])
    assert area == 40 * 40
    # label voting counts frames by default (the paper's "highest frequency"); the
    # score-weighted vote is an option; without label voting always the count vote
    assert not VideoTracker().label_vote_score_weighted
    a_default = VideoTracker(label_voting=True).predictions(tracks, frames, 42)[1]
    assert a_default["category_id"] == 1   # label 1 in 3 frames, label 0 in 2
    a_w = VideoTracker(label_voting=True, label_vote_score_weighted=True).predictions(
        tracks, frames, 42)[1]
    assert a_w["category_id"] == 0         # summed scores 1.7 vs 0.8
    a_base = VideoTracker().predictions(tracks, frames, 42)[1]
    assert a_base["category_id"] == 1

    stale = Tracklet(9, {0: TrackedDetection(det=3, box=np.zeros(4, np.float32), score=0.5,
                                             label=0)})
    with pytest.raises(TrackingInputError,
                       match="video 42: track 9 refers to detection 3 of frame 0, which has 2"):
        VideoTracker().predictions([stale], frames, 42)


def test_score_coverage_exponent_ranks_fragments_below_whole_tracks():
    # A 2-frame fragment scoring 0.9 and a 10-frame track scoring 0.6 in a 10-frame video.
    frames = []
    for t in range(10):
        dets = [([100, 10, 140, 50], 0.6, 1, onehot(1))]
        if t < 2:
            dets.insert(0, ([10, 10, 50, 50], 0.9, 0, onehot(0)))
        frames.append(frame(dets))
    tracks = VideoTracker().online().track(frames)
    plain = VideoTracker().predictions(tracks, frames, 1)
    assert [round(p["score"], 3) for p in plain] == [0.9, 0.6]  # the baseline: plain mean
    cov = VideoTracker(score_coverage_exp=0.5).predictions(tracks, frames, 1)
    # 0.6 * (10/10) ** 0.5 = 0.6 now ranks above 0.9 * (2/10) ** 0.5 = 0.402
    assert [round(p["score"], 3) for p in cov] == [0.6, 0.402]
    with pytest.raises(TrackingInputError, match="SCORE_COVERAGE_EXP"):
        VideoTracker(score_coverage_exp=-1)
    # the same through the yacs key
    from vis_d2.config import add_vis_config
    from detectron2.config import get_cfg

    cfg = add_vis_config(get_cfg())
    cfg.MODEL.VIS.TRACKER.SCORE_COVERAGE_EXP = 0.5
    assert VideoTracker.from_config(cfg).score_coverage_exp == 0.5
