"""Track NMS (vis_d2.tracking.track_nms): duplicate tracks of one object are grouped, each group
keeps its best track's masks once per category, and the stIoU is the metric's."""
import numpy as np
import pycocotools.mask as mask_util
import pytest

from vis_d2.tracking import (
    FrameDetections,
    TrackingInputError,
    VideoTracker,
    spatio_temporal_iou,
    track_nms,
)

H, W = 40, 100


def rle(x1, y1, x2, y2):
    m = np.zeros((H, W), dtype=np.uint8, order="F")
    m[y1:y2, x1:x2] = 1
    r = mask_util.encode(m)
    r["counts"] = r["counts"].decode("ascii")
    return r


def test_spatio_temporal_iou_matches_a_hand_count():
    a = [rle(0, 0, 10, 10), rle(0, 0, 10, 10), None]          # 100 + 100 pixels
    b = [rle(5, 0, 15, 10), None, rle(50, 0, 60, 10)]         # 100 + 100 pixels
    ious = spatio_temporal_iou([a, b, [None] * 3])
    # frame 0: 50 shared of 150; frame 1: a alone (100); frame 2: b alone (100)
    assert ious[0, 1] == pytest.approx(50 / 350) and ious[1, 0] == pytest.approx(50 / 350)
    assert ious[0, 0] == pytest.approx(1.0) and ious[1, 1] == pytest.approx(1.0)
    assert ious[2, 2] == 0.0 and ious[0, 2] == 0.0          # an empty track overlaps nothing
    assert spatio_temporal_iou([]).shape == (0, 0)
    with pytest.raises(TrackingInputError, match="same number of frames"):
        spatio_temporal_iou([a, a[:2]])


def _pred(cat, score, segs):
    return {"video_id": 3, "category_id": cat, "score": score, "segmentations": segs}


def test_duplicates_are_grouped_and_keep_the_best_masks_per_category():
    obj = [rle(0, 0, 20, 20)] * 4
    shifted = [rle(2, 0, 22, 20)] * 4                           # stIoU 360/440 = 0.82 with obj
    fragment = [rle(0, 0, 20, 20), None, None, None]            # stIoU 1/4 with obj
    other = [rle(60, 0, 80, 20)] * 4
    preds = [
        _pred(1, 0.5, shifted),      # the object as class 1, lower score
        _pred(0, 0.9, obj),          # the object as class 0: the group's lead
        _pred(2, 0.7, other),        # another object
        _pred(0, 0.4, fragment),     # a fragment of the object, class 0 again
        _pred(1, 0.3, shifted),      # a worse duplicate of class 1
    ]
    out = track_nms(preds, 0.2)
    assert [(p["category_id"], p["score"]) for p in out] == [(0, 0.9), (2, 0.7), (1, 0.5)]
    # the class-1 hypothesis of the object carries the lead's masks, not its own
    assert out[2]["segmentations"] is obj and out[1]["segmentations"] is other
    # a higher threshold leaves the fragment (stIoU 0.25) in a group of its own
    out = track_nms(preds, 0.3)
    assert [(p["category_id"], p["score"]) for p in out] == [(0, 0.9), (2, 0.7), (1, 0.5),
                                                            (0, 0.4)]
    assert out[3]["segmentations"] is fragment
    assert track_nms([], 0.5) == []


def test_bad_arguments_are_named():
    p = _pred(0, 0.9, [rle(0, 0, 5, 5)])
    with pytest.raises(TrackingInputError, match="TRACK_NMS_THRESH"):
        track_nms([p], 1.0)
    with pytest.raises(TrackingInputError, match=r"one video.*\[3, 4\]"):
        track_nms([p, dict(p, video_id=4)], 0.5)
    with pytest.raises(TrackingInputError, match="TRACK_NMS_THRESH"):
        VideoTracker(track_nms_thresh=-0.1)


def test_tracker_output_and_config_go_through_track_nms():
    # Each frame: one object detected twice, class 0 (0.8) and class 1 (0.6, its mask one pixel
    # wider), as per-class NMS leaves it; the label term gives one track per class.
    frames = []
    for t in range(5):
        box = [10 + 2 * t, 5, 30 + 2 * t, 25]
        wider = [box[0], box[1], box[2] + 1, box[3]]
        frames.append(FrameDetections(
            boxes=np.array([box, box], np.float32), scores=np.array([0.8, 0.6], np.float32),
            labels=np.array([0, 1]), embeddings=np.ones((2, 4), np.float32),
            masks=[rle(*box), rle(*wider)]))
    tracks = VideoTracker().online().track(frames)
    plain = VideoTracker().predictions(tracks, frames, 3)
    assert sorted((p["category_id"], round(p["score"], 3)) for p in plain) == [(0, 0.8), (1, 0.6)]
    merged = VideoTracker(track_nms_thresh=0.5).predictions(tracks, frames, 3)
    # both hypotheses stay (the metric scores each class), with the lead's masks
    assert [(p["category_id"], round(p["score"], 3)) for p in merged] == [(0, 0.8), (1, 0.6)]
    lead = next(p for p in plain if p["category_id"] == 0)
    own = next(p for p in plain if p["category_id"] == 1)
    assert own["segmentations"] != lead["segmentations"]
    assert all(p["segmentations"] == lead["segmentations"] for p in merged)

    from detectron2.config import get_cfg
    from vis_d2.config import add_vis_config

    cfg = add_vis_config(get_cfg())
    assert VideoTracker.from_config(cfg).track_nms_thresh == 0.0   # off by default
    cfg.MODEL.VIS.TRACKER.TRACK_NMS_THRESH = 0.3
    assert VideoTracker.from_config(cfg).track_nms_thresh == 0.3
