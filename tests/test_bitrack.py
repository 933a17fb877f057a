"""BiTrack (paper 3.4, Algorithm 2 as written and vis_d2's disjoint variant) on scripted
detections."""
import numpy as np
import pytest

from vis_d2.tracking import (
    FrameDetections,
    TrackedDetection,
    Tracklet,
    TrackingInputError,
    VideoTracker,
    bitrack,
    merge_bidirectional,
)

RLE = {"size": [10, 10], "counts": "PP1"}   # masks are only passed through here


def frame(dets, dim=2):
    """dets: list of (box xyxy, score, label, embedding) -> FrameDetections."""
    if not dets:
        return FrameDetections.empty(dim)
    boxes, scores, labels, embs = zip(*dets)
    return FrameDetections(
        boxes=np.array(boxes, np.float32), scores=np.array(scores, np.float32),
        labels=np.array(labels, np.int64), embeddings=np.stack(embs).astype(np.float32),
        masks=[dict(RLE) for _ in boxes])


def tracklet(frames, track_id, dets_by_frame):
    """A hand-made tracklet {frame: det index} reading box/score/label from ``frames``."""
    trk = Tracklet(track_id)
    for t, d in dets_by_frame.items():
        f = frames[t]
        trk.add(t, TrackedDetection(d, f.boxes[d], float(f.scores[d]), int(f.labels[d])))
    return trk


def layout(tracks):
    return {t.track_id: [(f, t.det_index(f)) for f in t.frames()] for t in tracks}


def broken_forward_video():
    """One object, same box in all 10 frames; its embedding is u (frames 0-4), v (frame 5),
    w (frames 6-9). With momentum 0.5, forward compares v with u (u.v = -10: new track) while
    backward compares v with w (95) and u with 0.5 w + 0.5 v (20): one track."""
    u = np.array([10.0, 0.0])
    v = np.array([-1.0, 10.0])
    w = np.array([5.0, 10.0])
    embs = [u] * 5 + [v] + [w] * 4
    return [frame([([20, 20, 60, 60], 0.9, 0, e)]) for e in embs]


def test_forward_break_is_repaired():
    frames = broken_forward_video()
    tracker = VideoTracker(momentum=0.5).online()
    assert {t.track_id: t.frames() for t in tracker.track(frames)} == {
        0: [0, 1, 2, 3, 4], 1: [5, 6, 7, 8, 9]}
    assert {t.track_id: t.frames() for t in tracker.track(frames, reverse=True)} == {
        0: list(range(10))}
    merged = bitrack(frames, tracker, iou_thresh=0.5, mode="disjoint")
    # The paper's Algorithm 2 would also output forward tracklet 1 (frames 5-9) next to the
    # merge, duplicating those detections; here it is emptied and dropped.
    assert layout(merged) == {0: [(t, 0) for t in range(10)]}
    preds = VideoTracker(momentum=0.5, bitrack=True, bitrack_merge="disjoint").predict(
        frames, video_id=5)
    assert len(preds) == 1 and all(s is not None for s in preds[0]["segmentations"])
    # Algorithm 2 as written: the merged track, and forward tracklet 1 once more
    preds = VideoTracker(momentum=0.5, bitrack=True, bitrack_merge="paper").predict(
        frames, video_id=5)
    assert sorted(sum(s is not None for s in p["segmentations"]) for p in preds) == [5, 10]
    assert len(VideoTracker(momentum=0.5).predict(frames, video_id=5)) == 2


def test_bitrack_config_switch():
    from detectron2.config import get_cfg
    from vis_d2.config import add_vis_config

    cfg = add_vis_config(get_cfg())
    cfg.MODEL.VIS.TRACKER.MOMENTUM = 0.5
    cfg.MODEL.VIS.TRACKER.BITRACK_MERGE = "disjoint"
    frames = broken_forward_video()

    def num_tracks():
        return len(VideoTracker.from_config(cfg).track(frames))

    assert num_tracks() == 2                                      # BITRACK off by default
    cfg.MODEL.VIS.TRACKER.BITRACK = True
    assert num_tracks() == 1
    cfg.MODEL.VIS.TRACKER.BITRACK_IOU_THRESH = 1.0                # mean IoU 1.0 is not > 1.0
    assert num_tracks() == 2
    assert len(VideoTracker.from_config(cfg).predict(frames, video_id=1)) == 2
    with pytest.raises(TrackingInputError, match="BITRACK_IOU_THRESH"):
        VideoTracker(bitrack_iou_thresh=1.5)


def test_separate_objects_stay_apart():
    frames = [frame([([0, 0, 20, 20], 0.9, 0, np.array([10.0, 0])),
                     ([100, 0, 120, 20], 0.8, 0, np.array([0, 10.0]))]) for _ in range(8)]
    merged = bitrack(frames, VideoTracker().online(), iou_thresh=0.5, mode="disjoint")
    assert layout(merged) == {0: [(t, 0) for t in range(8)], 1: [(t, 1) for t in range(8)]}


def test_pair_without_valid_frame_never_merges():
    frames = [frame([([0, 0, 20, 20], 0.9, 0, np.array([10.0, 0]))]) for _ in range(6)]
    f = tracklet(frames, 0, {0: 0, 1: 0, 2: 0})
    b = tracklet(frames, 0, {3: 0, 4: 0, 5: 0})
    out = merge_bidirectional([f], [b], frames, iou_thresh=0.0, mode="disjoint")
    assert layout(out) == {0: [(0, 0), (1, 0), (2, 0)], 1: [(3, 0), (4, 0), (5, 0)]}


def threshold_frames():
    # frame 0: one box; frame 1: det 0 = the same box (score 0.7), det 1 = its top half
    # (IoU 0.5, score 0.9). Forward takes det 0 twice, backward det 0 then det 1:
    # mean IoU over the two valid frames = (1 + 0.5) / 2 = 0.75.
    e = np.array([1.0, 0.0])
    return [frame([([0, 0, 10, 10], 0.8, 0, e)]),
            frame([([0, 0, 10, 10], 0.7, 0, e), ([0, 0, 10, 5], 0.9, 0, e)])]


@pytest.mark.parametrize("thresh,expected", [
    # merged; frame 1 keeps the higher-scoring backward detection (det 1)
    (0.74, {0: [(0, 0), (1, 1)]}),
    # kept apart; backward's frame-0 detection is already forward's, so only det 1 is left
    (0.75, {0: [(0, 0), (1, 0)], 1: [(1, 1)]}),
    (0.76, {0: [(0, 0), (1, 0)], 1: [(1, 1)]}),
])
def test_mean_iou_threshold(thresh, expected):
    frames = threshold_frames()
    f = tracklet(frames, 0, {0: 0, 1: 0})
    b = tracklet(frames, 0, {0: 0, 1: 1})
    out = merge_bidirectional([f], [b], frames, iou_thresh=thresh, mode="disjoint")
    assert layout(out) == expected


def test_absorbs_backward_tracklets_against_the_growing_merge():
    # f covers frames 0-4; b1 frames 0-7 (agrees with f on 0-4); b2 frames 6-9 on a second
    # detection with the same box as b1's in frames 6-7. b2 has no valid frame with f alone,
    # but two with f + b1, so all three end up in one track.
    e = np.array([1.0, 0.0])
    frames = []
    for t in range(10):
        dets = [([0, 0, 10, 10], 0.8, 0, e)]
        if t in (6, 7):
            dets.append(([0, 0, 10, 10], 0.85, 0, e))
        frames.append(frame(dets))
    f = tracklet(frames, 0, {t: 0 for t in range(5)})
    b1 = tracklet(frames, 0, {t: 0 for t in range(8)})
    b2 = tracklet(frames, 1, {6: 1, 7: 1, 8: 0, 9: 0})
    out = merge_bidirectional([f], [b1, b2], frames, iou_thresh=0.5, mode="disjoint")
    assert layout(out) == {0: [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 1), (7, 1),
                               (8, 0), (9, 0)]}
    # checked against f alone (no growth) b2 would stay a separate track
    out = merge_bidirectional([f], [b2], frames, iou_thresh=0.5, mode="disjoint")
    assert len(out) == 2


def random_video(seed, num_frames=20, num_objects=6, dim=8):
    """Objects with random-walk boxes, appearing and vanishing at random, noisy embeddings
    (sometimes very noisy, to break tracks), plus random false positives."""
    rng = np.random.RandomState(seed)
    centers = rng.uniform(20, 180, size=(num_objects, 2))
    sizes = rng.uniform(15, 40, size=(num_objects, 2))
    protos = rng.randn(num_objects, dim) * 3
    frames = []
    for _ in range(num_frames):
        centers += rng.randn(num_objects, 2) * 6
        dets = []
        for k in range(num_objects):
            if rng.rand() < 0.2:
                continue
            c, s = centers[k], sizes[k]
            noise = 6.0 if rng.rand() < 0.15 else 0.5
            dets.append(([c[0] - s[0], c[1] - s[1], c[0] + s[0], c[1] + s[1]],
                         float(rng.uniform(0.1, 1.0)), int(rng.randint(3)),
                         protos[k] + rng.randn(dim) * noise))
        for _ in range(rng.randint(3)):
            x, y = rng.uniform(0, 200, 2)
            dets.append(([x, y, x + 20, y + 20], float(rng.uniform(0.05, 0.5)),
                         int(rng.randint(3)), rng.randn(dim) * 3))
        order = rng.permutation(len(dets))
        frames.append(frame([dets[i] for i in order], dim=dim))
    return frames


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_detection_in_two_tracks(seed):
    frames = random_video(seed)
    tracker = VideoTracker(max_age=3).online()
    fwd = tracker.track(frames)
    bwd = tracker.track(frames, reverse=True)

    def parts(tracks):
        return {frozenset((t, d) for t, d in layout([x])[x.track_id]) for x in tracks}

    # The two directions disagree, so merging and de-duplication are exercised.
    assert parts(fwd) != parts(bwd)
    fwd_dets = set().union(*parts(fwd))
    assert fwd_dets == set().union(*parts(bwd))      # both directions track every detection

    merged = bitrack(frames, tracker, iou_thresh=0.5, mode="disjoint")
    seen = set()
    for i, trk in enumerate(merged):
        assert trk.track_id == i and len(trk) > 0
        for t in trk.frames():
            key = (t, trk.det_index(t))
            assert key not in seen, f"detection {key} in two tracks"
            seen.add(key)
            f = frames[t]
            np.testing.assert_array_equal(trk.box(t), f.boxes[key[1]])
            assert trk.score(t) == pytest.approx(float(f.scores[key[1]]))
    assert seen <= fwd_dets
    assert len(merged) <= len(fwd) + len(bwd)


def test_empty_video():
    assert bitrack([], VideoTracker().online(), 0.5, mode="disjoint") == []
    frames = [FrameDetections.empty(4) for _ in range(6)]
    assert bitrack(frames, VideoTracker().online(), 0.5, mode="disjoint") == []
    assert merge_bidirectional([], [], frames, 0.5, mode="disjoint") == []


def test_bad_inputs():
    frames = threshold_frames()
    with pytest.raises(TrackingInputError, match="BITRACK_IOU_THRESH"):
        bitrack(frames, VideoTracker().online(), iou_thresh=1.5, mode="disjoint")
    bad = tracklet(frames + frames, 3, {3: 0})
    with pytest.raises(TrackingInputError, match="forward tracklet 3 has frames 3..3 outside"):
        merge_bidirectional([bad], [], frames, 0.5, mode="disjoint")
    with pytest.raises(TrackingInputError, match="frame 1 is a dict"):
        bitrack([frames[0], {}], VideoTracker().online(), 0.5, mode="disjoint")


def figure4_video():
    """The paper's Fig. 4: two objects, A (top) and B (bottom), 10 frames, one detection each
    (A = det 0, B = det 1). The forward pass loses A at frame 5 (tracklets A 0-4 and A 5-9), the
    backward pass loses B at frame 4 (B 0-3 and B 4-9)."""
    e = np.array([1.0, 0.0])
    frames = [frame([([10, 0, 30, 20], 0.9, 0, e), ([10, 60, 30, 80], 0.8, 1, e)])
              for _ in range(10)]
    forward = [tracklet(frames, 0, {t: 0 for t in range(5)}),
               tracklet(frames, 1, {t: 0 for t in range(5, 10)}),
               tracklet(frames, 2, {t: 1 for t in range(10)})]
    backward = [tracklet(frames, 0, {t: 0 for t in range(10)}),
                tracklet(frames, 1, {t: 1 for t in range(4)}),
                tracklet(frames, 2, {t: 1 for t in range(4, 10)})]
    return frames, forward, backward


def test_figure4_each_direction_repairs_the_other():
    frames, fwd, bwd = figure4_video()
    a, b = [(t, 0) for t in range(10)], [(t, 1) for t in range(10)]
    # Algorithm 2 as written: f0 + b0 = A; f1 meets no unmatched backward tracklet and is output
    # as it is (A 5-9 twice); f2 merges with b1 and with b2, one output each (B three times
    # over, counting the detections).
    paper = merge_bidirectional(fwd, bwd, frames, 0.5, mode="paper")
    assert layout(paper) == {0: a, 1: b, 2: b, 3: a[5:]}
    # vis_d2's variant: one track per object
    assert layout(merge_bidirectional(fwd, bwd, frames, 0.5, mode="disjoint")) == {0: a, 1: b}


def test_paper_merge_keeps_the_forward_detection_where_both_have_one():
    frames = threshold_frames()   # frame 1: det 0 (score 0.7) and its top half det 1 (0.9)
    f = tracklet(frames, 0, {0: 0, 1: 0})
    b = tracklet(frames, 0, {0: 0, 1: 1})
    assert layout(merge_bidirectional([f], [b], frames, 0.5, mode="paper")) == {
        0: [(0, 0), (1, 0)]}
    assert layout(merge_bidirectional([f], [b], frames, 0.5, mode="disjoint")) == {
        0: [(0, 0), (1, 1)]}
    # the paper's IsOverlap is the same test: no merge at mean IoU 0.75 with threshold 0.75
    assert layout(merge_bidirectional([f], [b], frames, 0.75, mode="paper")) == {
        0: [(0, 0), (1, 0)], 1: [(0, 0), (1, 1)]}


def test_paper_merge_matches_each_backward_tracklet_once():
    # two forward tracklets on the same detections: the first takes the backward tracklet,
    # the second is output unmerged (Algorithm 2's B^ check), duplicating the detections
    frames = [frame([([0, 0, 20, 20], 0.9, 0, np.array([1.0, 0]))]) for _ in range(4)]
    f0 = tracklet(frames, 0, {0: 0, 1: 0})
    f1 = tracklet(frames, 1, {0: 0, 1: 0, 2: 0})
    b = tracklet(frames, 0, {t: 0 for t in range(4)})
    out = merge_bidirectional([f1, f0], [b], frames, 0.5, mode="paper")  # sorted by id
    assert layout(out) == {0: [(t, 0) for t in range(4)], 1: [(0, 0), (1, 0), (2, 0)]}


def test_merge_mode_setting():
    from detectron2.config import get_cfg
    from vis_d2.config import add_vis_config

    cfg = add_vis_config(get_cfg())
    # it measured best with the default tracker, which has no track NMS (bitrack.py)
    assert cfg.MODEL.VIS.TRACKER.BITRACK_MERGE == "disjoint"
    cfg.MODEL.VIS.TRACKER.BITRACK_MERGE = "paper"
    assert VideoTracker.from_config(cfg).bitrack_merge == "paper"
    with pytest.raises(TrackingInputError, match=r"BITRACK_MERGE\) must be one of \['paper', "
                       r"'disjoint'\], got 'Paper'"):
        VideoTracker(bitrack_merge="Paper")
    with pytest.raises(TrackingInputError, match=r"BITRACK_MERGE\) must be a string, got 1"):
        VideoTracker(bitrack_merge=1)
    frames, _, _ = figure4_video()
    with pytest.raises(TrackingInputError, match="mode .*BITRACK_MERGE.* got 'both'"):
        merge_bidirectional([], [], frames, 0.5, mode="both")


@pytest.mark.parametrize("seed", [0, 1])
def test_disjoint_merge_compares_only_tracklets_that_meet(seed, monkeypatch):
    """Tracklets whose frame spans do not meet are never compared: the merge's work follows
    the overlapping pairs, not tracks x frames (long fragmented videos)."""
    import importlib

    bt = importlib.import_module("vis_d2.tracking.bitrack")  # the package exports a function

    calls = []
    real = bt._mean_iou
    monkeypatch.setattr(bt, "_mean_iou", lambda a, b: calls.append(1) or real(a, b))
    rng = np.random.RandomState(seed)
    n = 300  # frames; one detection per frame, tracklets of 3 frames in both directions
    frames = [frame([([0, 0, 10, 10], 0.5, 0, np.array([1.0, 0]))]) for _ in range(n)]
    shift = int(rng.randint(1, 3))
    fwd = [tracklet(frames, i, {t: 0 for t in range(s, min(s + 3, n))})
           for i, s in enumerate(range(0, n, 3))]
    bwd = [tracklet(frames, i, {t: 0 for t in range(s, min(s + 3, n))})
           for i, s in enumerate(range(-shift, n, 3)) if s + 3 > 0]
    for trk in bwd:
        trk._dets = {t: d for t, d in trk._dets.items() if t >= 0}
    out = merge_bidirectional(fwd, bwd, frames, 0.5, mode="disjoint")
    assert sorted(p for trk in out for p in layout([trk])[trk.track_id]) == \
        [(t, 0) for t in range(n)]                              # every detection once
    assert len(out) == len(fwd)         # every backward tracklet absorbed by a forward one
    # each growth step compares the merge with the few unused tracklets its span meets (the
    # dense version compared every forward with every backward tracklet: ~100 x 100)
    assert len(calls) < 4 * len(bwd)
