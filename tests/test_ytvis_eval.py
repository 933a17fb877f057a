"""The YouTube-VIS metric (vis_d2.evaluation.ytvis_eval) on hand-computed cases, on random cases
against pycocotools' COCOeval, and its command line.

Reminders for the hand computations (COCO's rules, which ytvoseval.py keeps):
* a prediction matches at IoU threshold t when its IoU >= t; thresholds 0.50, 0.55, ..., 0.95;
* precision at recall r (r = 0.00, 0.01, ..., 1.00) is the best precision at any recall >= r,
  0 beyond the highest recall reached; AP = mean over the 101 r and the 10 t;
* precision is tp / (tp + fp + eps), so "1" is 1 - 2e-16: compare with a tolerance.
"""
import contextlib
import io
import json
import os
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vis_d2.evaluation import __main__ as cli
from vis_d2.evaluation.ytvis_eval import (
    IOU_THRESHOLDS,
    METRIC_NAMES,
    YTVISEval,
    YTVISFormatError,
    YTVISGroundTruth,
    _video_ious,
    evaluate_ytvis,
    evaluate_ytvis_long_videos,
    format_metrics_table,
    load_predictions,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
approx = lambda x: pytest.approx(x, abs=1e-9)  # noqa: E731


def rect(h, w, y0, y1, x0, x1):
    """Compressed RLE (str counts) of the rectangle rows y0:y1, cols x0:x1."""
    m = np.zeros((h, w), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return encode(m)


def encode(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def uncompressed(mask):
    """Column-major uncompressed RLE {"size", "counts": [int, ...]} of a binary mask."""
    flat = mask.flatten(order="F").astype(np.int64)
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def video(vid, h, w, length):
    return {"id": vid, "height": h, "width": w, "length": length,
            "file_names": [f"v{vid}/{i:05d}.jpg" for i in range(length)]}


def gt_json(videos, annotations, num_categories=2):
    return {"videos": videos,
            "categories": [{"id": c, "name": f"cat{c}"} for c in range(1, num_categories + 1)],
            "annotations": annotations}


def ann(aid, vid, cat, segs, iscrowd=0, areas="auto"):
    if areas == "auto":
        areas = [None if s is None else int(mask_util.area(s)) for s in segs]
    return {"id": aid, "video_id": vid, "category_id": cat, "iscrowd": iscrowd,
            "segmentations": segs, "areas": areas}


def pred(vid, cat, score, segs):
    return {"video_id": vid, "category_id": cat, "score": score, "segmentations": segs}


def run(gt, preds, **kw):
    return YTVISEval(YTVISGroundTruth(gt, source="gt.json"), preds, source="res.json",
                     **kw).evaluate()


# --------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------

def test_perfect_predictions_score_one():
    h, w = 20, 30
    m = lambda *b: rect(h, w, *b)  # noqa: E731
    anns = [
        ann(1, 1, 1, [m(0, 5, 0, 5), m(1, 6, 1, 6), None]),
        ann(2, 1, 2, [m(10, 20, 10, 30), m(10, 20, 12, 30), m(11, 20, 12, 30)]),
        ann(3, 2, 1, [None, m(2, 8, 2, 8)]),
    ]
    gt = gt_json([video(1, h, w, 3), video(2, h, w, 2)], anns)
    preds = [pred(a["video_id"], a["category_id"], 0.9, a["segmentations"]) for a in anns]
    res = run(gt, preds)
    assert list(res) == list(METRIC_NAMES)
    for k in ("AP", "AP50", "AP75", "AR1", "AR10", "APs"):
        assert res[k] == approx(1.0), k
    # Every track is small (< 128^2 pixels): no medium / large ground truth at all.
    assert res["APm"] == -1 and res["APl"] == -1


def test_iou_exactly_0_6_over_three_frames_with_one_sided_frames():
    # Frame 0: gt = pred = 30 px          -> inter 30, union 30
    # Frame 1: gt 10 px, no prediction     -> union += 10
    # Frame 2: no gt, prediction 10 px     -> union += 10
    # Track IoU = 30 / 50 = 0.6 exactly (a mean of per-frame IoUs would be 1/3).
    h, w = 10, 10
    gt = gt_json([video(1, h, w, 3)],
                 [ann(1, 1, 1, [rect(h, w, 0, 3, 0, 10), rect(h, w, 0, 1, 0, 10), None])])
    preds = [pred(1, 1, 0.8, [rect(h, w, 0, 3, 0, 10), None, rect(h, w, 5, 6, 0, 10)])]
    g = YTVISGroundTruth(gt)
    tracks = load_predictions(preds, g)
    iou = _video_ious(tracks[1], g.tracks[1], g.videos[1])
    assert iou.tolist() == [[0.6]]
    # IoU >= t for t = 0.50, 0.55, 0.60 (inclusive; IOU_THRESHOLDS[2] is exactly 0.6) and
    # not for 0.65 ... 0.95: a perfect precision-recall curve at 3 of the 10 thresholds,
    # nothing at the other 7. AP = 3/10, AP50 = 1, AP75 = 0, recall 1 at 3/10 thresholds.
    assert IOU_THRESHOLDS[2] == 0.6
    res = run(gt, preds)
    assert res["AP"] == approx(0.3)
    assert res["AP50"] == approx(1.0)
    assert res["AP75"] == approx(0.0)
    assert res["AR1"] == approx(0.3) and res["AR10"] == approx(0.3)
    # The gt's size is the mean of its non-empty frames (30 + 10) / 2 = 20 px: small.
    assert res["APs"] == approx(0.3) and res["APm"] == -1 and res["APl"] == -1


def test_maxdets_and_101_point_interpolation():
    # One video, one category, two gt tracks A and B; predictions by score:
    # 0.9 = A (TP), 0.8 = nowhere near (FP), 0.7 = B (TP), at every threshold (IoUs 1 or 0).
    # tp = [1, 1, 2], fp = [0, 1, 1], recall = [.5, .5, 1], precision = [1, .5, 2/3]
    # -> interpolated [1, 2/3, 2/3]: r = 0.00..0.50 (51 points) -> 1, r = 0.51..1.00 (50) -> 2/3.
    # AP = (51 + 50 * 2/3) / 101.  AR10 = 1; AR1 keeps the 0.9 prediction only: recall 1/2.
    h, w = 12, 12
    a = [rect(h, w, 0, 4, 0, 4), rect(h, w, 1, 5, 0, 4)]
    b = [rect(h, w, 6, 12, 6, 12), rect(h, w, 6, 12, 5, 11)]
    fp = [rect(h, w, 0, 3, 8, 12), rect(h, w, 0, 3, 8, 12)]
    gt = gt_json([video(1, h, w, 2)], [ann(1, 1, 1, a), ann(2, 1, 1, b)])
    preds = [pred(1, 1, 0.7, b), pred(1, 1, 0.9, a), pred(1, 1, 0.8, fp)]
    res = run(gt, preds)
    expected = (51 + 50 * 2 / 3) / 101
    assert res["AP"] == approx(expected) and res["AP50"] == approx(expected)
    assert res["AP75"] == approx(expected)
    assert res["AR10"] == approx(1.0)
    assert res["AR1"] == approx(0.5)


def test_maxdets_100_per_video_and_category():
    # 99 (or 100) empty predictions scored 0.9 before the only true one scored 0.1.
    # With 100 predictions the true one is kept: recall jumps to 1 at the 100th prediction,
    # where precision is 1/100, so every recall point gets 0.01: AP = 0.01.
    # With 101, it is the 101st and dropped: AP = 0, AR10 = 0.
    h, w = 4, 4
    mask = rect(h, w, 0, 2, 0, 2)
    gt = gt_json([video(1, h, w, 1)], [ann(1, 1, 1, [mask])])
    true = pred(1, 1, 0.1, [mask])
    res = run(gt, [pred(1, 1, 0.9, [None]) for _ in range(99)] + [true])
    assert res["AP"] == approx(0.01) and res["AR10"] == approx(0.0)
    res = run(gt, [pred(1, 1, 0.9, [None]) for _ in range(100)] + [true])
    assert res["AP"] == approx(0.0)
    # ... but per category: the same 100 in another category do not push it out.
    res = run(gt, [pred(1, 2, 0.9, [None]) for _ in range(100)] + [true])
    assert res["AP"] == approx(1.0)


def test_equal_scores_keep_file_order():
    # Same score: the file order decides. FP then TP: precision .5 at recall 1 -> AP .5.
    h, w = 6, 6
    mask = rect(h, w, 0, 3, 0, 3)
    gt = gt_json([video(1, h, w, 1)], [ann(1, 1, 1, [mask])])
    tp, fp = pred(1, 1, 0.5, [mask]), pred(1, 1, 0.5, [rect(h, w, 4, 6, 4, 6)])
    assert run(gt, [fp, tp])["AP"] == approx(0.5)
    assert run(gt, [tp, fp])["AP"] == approx(1.0)


def test_iou_ties_go_to_the_later_ground_truth():
    # gt A = cols 0:10, gt B = cols 2:12 (10 rows each, json order A, B).
    # p1 (0.9) = cols 1:11: IoU 90/110 with both A and B -> COCO's loop gives the tie to the
    # later gt, B. p2 (0.8) = A exactly: IoU 1 with A, 80/120 with B.
    # t <= 0.80: p1 -> B, p2 -> A: two TPs, AP_t = 1 (7 thresholds).
    # t >= 0.85: p1 unmatched (FP) then p2 -> A: precision 1/2 up to recall 1/2 -> 25.5 / 101.
    # (Were the tie given to A, p2 would be a FP at t = 0.70 .. 0.80: AP75 = 51/101.)
    h, w = 10, 12
    a, b, p1 = rect(h, w, 0, 10, 0, 10), rect(h, w, 0, 10, 2, 12), rect(h, w, 0, 10, 1, 11)
    gt = gt_json([video(1, h, w, 1)], [ann(1, 1, 1, [a]), ann(2, 1, 1, [b])])
    res = run(gt, [pred(1, 1, 0.9, [p1]), pred(1, 1, 0.8, [a])])
    assert res["AP75"] == approx(1.0) and res["AP50"] == approx(1.0)
    assert res["AP"] == approx((7 + 3 * 25.5 / 101) / 10)


def test_crowd_ground_truth():
    h, w = 20, 20
    person = [rect(h, w, 0, 5, 0, 5), rect(h, w, 0, 5, 1, 6)]
    crowd = [rect(h, w, 10, 20, 0, 20), rect(h, w, 10, 20, 0, 20)]   # 200 px per frame
    inside1 = [rect(h, w, 10, 15, 0, 10), None]                    # 50 px in the crowd
    inside2 = [rect(h, w, 15, 20, 5, 15), rect(h, w, 16, 20, 0, 10)]  # 50 + 40 px in it
    gt = gt_json([video(1, h, w, 2)], [ann(1, 1, 1, person), ann(2, 1, 1, crowd, iscrowd=1)])
    g = YTVISGroundTruth(gt)
    tracks = load_predictions([pred(1, 1, 0.9, inside1), pred(1, 1, 0.9, inside2)], g)
    # The official's IoU with a crowd is the plain one: 50 / 400 and 90 / 400 ...
    ious = _video_ious(tracks[1], g.tracks[1], g.videos[1])
    assert ious.tolist() == [[0.0, 0.125], [0.0, 0.225]]
    # ... COCO's (coco_crowd) is sum_f |d ∩ g| / sum_f |d|: 1 for a prediction inside it.
    ious = _video_ious(tracks[1], g.tracks[1], g.videos[1], coco_crowd=True)
    assert ious.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    # Officially the predictions inside the crowd match nothing and, scored above the true one,
    # are false positives: precision 1/3 at recall 1, AP 1/3. COCO's way they match the crowd,
    # which is ignored and takes any number of them: AP 1.
    preds = [pred(1, 1, 0.95, inside1), pred(1, 1, 0.9, inside2), pred(1, 1, 0.8, person)]
    assert run(gt, preds)["AP"] == approx(1 / 3)
    assert run(gt, preds, coco_crowd=True)["AP"] == approx(1.0)
    # Both ways, predictions that cover the crowd match it, as many as there are, and are
    # ignored: AP 1.
    preds2 = [pred(1, 1, 0.95, crowd), pred(1, 1, 0.9, crowd), pred(1, 1, 0.8, person)]
    assert run(gt, preds2)["AP"] == approx(1.0)
    assert run(gt, preds2, coco_crowd=True)["AP"] == approx(1.0)
    # The crowd is no target: nothing matched to it counts as found.
    for kw in ({}, {"coco_crowd": True}):
        res = run(gt, preds2[:2], **kw)
        assert res["AP"] == approx(0.0) and res["AR10"] == approx(0.0)


def test_annotation_id_0_as_the_official(caplog):
    """The official stores the matched annotation's id, 0 meaning "none": a prediction matched
    to annotation 0 takes it from the others and counts as a false positive."""
    h, w = 10, 10
    a, b = [rect(h, w, 0, 5, 0, 5)], [rect(h, w, 5, 10, 5, 10)]
    preds = [pred(1, 1, 0.9, a), pred(1, 1, 0.8, a), pred(1, 1, 0.7, b)]
    with caplog.at_level("WARNING", logger="vis_d2.evaluation"):
        res = run(gt_json([video(1, h, w, 1)], [ann(0, 1, 1, a), ann(1, 1, 1, b)]), preds)
    assert "annotation id 0" in caplog.text
    # FP (matched to annotation 0), FP (unmatched: 0 is taken), TP of 2: recall 1/2 at
    # precision 1/3, so AP = 51 * (1/3) / 101 at every threshold.
    assert res["AP"] == approx(51 * (1 / 3) / 101) and res["AR10"] == approx(0.5)
    res = run(gt_json([video(1, h, w, 1)], [ann(2, 1, 1, a), ann(1, 1, 1, b)]), preds)
    # Numbered from 1: TP, FP (a duplicate), TP: precision 1 up to recall 1/2, then 2/3.
    assert res["AP"] == approx((51 + 50 * 2 / 3) / 101)


def test_area_ranges():
    # One 500x500 frame, one category: a small (100 px), a medium (150^2 = 22500) and a large
    # (300^2 = 90000) object. Predictions: FP of medium size (0.95), small exact (0.9),
    # large exact (0.8); the medium object is missed.
    h, w = 500, 500
    small, medium, large = rect(h, w, 480, 490, 0, 10), rect(h, w, 300, 450, 300, 450), \
        rect(h, w, 0, 300, 0, 300)
    fp = rect(h, w, 0, 150, 320, 470)
    gt = gt_json([video(1, h, w, 1)], [ann(1, 1, 1, [small]), ann(2, 1, 1, [medium]),
                                       ann(3, 1, 1, [large])])
    preds = [pred(1, 1, 0.95, [fp]), pred(1, 1, 0.9, [small]), pred(1, 1, 0.8, [large])]
    res = run(gt, preds)
    # all: FP, TP, TP of 3 -> recall [0, 1/3, 2/3], precision [0, 1/2, 2/3], interpolated 2/3
    # up to recall 2/3: r = 0.00 .. 0.66 (67 points) -> AP = 67 * (2/3) / 101.
    assert res["AP"] == approx(67 * (2 / 3) / 101)
    # small: the large prediction matches an ignored (out of range) gt -> ignored; the FP is
    # unmatched and outside the range -> ignored: only the TP is left.
    assert res["APs"] == approx(1.0)
    # medium: the FP (22500 px) counts, the others match ignored gts: no TP.
    assert res["APm"] == approx(0.0)
    # large: the FP is outside the range -> ignored; the small prediction matched an ignored gt.
    assert res["APl"] == approx(1.0)
    # AR1 keeps only the highest-scored prediction, the FP.
    assert res["AR1"] == approx(0.0) and res["AR10"] == approx(2 / 3)


def test_area_range_bounds_are_inclusive_and_json_areas_decide():
    h, w = 300, 300
    sq128 = rect(h, w, 0, 128, 0, 128)   # exactly 128^2: both small and medium
    gt = gt_json([video(1, h, w, 1)], [ann(1, 1, 1, [sq128])])
    res = run(gt, [pred(1, 1, 0.9, [sq128])])
    assert res["APs"] == approx(1.0) and res["APm"] == approx(1.0) and res["APl"] == -1
    # The gt's size comes from the json "areas" (70000: large), not from its 100 px mask.
    tiny = rect(h, w, 0, 10, 0, 10)
    gt = gt_json([video(1, h, w, 1)], [ann(1, 1, 1, [tiny], areas=[70000])])
    res = run(gt, [pred(1, 1, 0.9, [tiny])])
    assert res["APl"] == approx(1.0) and res["APs"] == -1 and res["APm"] == -1


def test_track_area_is_mean_of_nonempty_frames():
    h, w = 30, 30
    segs = [rect(h, w, 0, 10, 0, 10), None, rect(h, w, 0, 10, 0, 30), rect(h, w, 0, 0, 0, 0)]
    gt = gt_json([video(1, h, w, 4)], [
        ann(1, 1, 1, segs),                                  # areas [100, None, 300, 0]
        ann(2, 1, 1, segs, areas=None),                      # no json areas: from the masks
        ann(3, 1, 1, segs, areas=[50, None, None, None]),    # null entries skipped, masks or not
        ann(4, 1, 1, segs, areas=[None, 7, None, None]),     # the json's number, even without mask
    ])
    g = YTVISGroundTruth(gt)
    assert [t.area for t in g.tracks[1]] == [200.0, 200.0, 50.0, 7.0]
    tracks = load_predictions([pred(1, 1, 0.5, segs)], g)
    assert tracks[1][0].area == 200.0
    assert tracks[1][0].frame_areas.tolist() == [100, 0, 300, 0]


def test_polygon_uncompressed_and_compressed_gt_agree():
    h, w = 40, 50
    poly = [[5.0, 5.0, 30.0, 5.0, 30.0, 25.0, 5.0, 25.0], [35.0, 30.0, 45.0, 30.0, 40.0, 38.0]]
    poly_mask = mask_util.decode(mask_util.merge(mask_util.frPyObjects(poly, h, w)))
    assert poly_mask.sum() > 500
    other = np.zeros((h, w), np.uint8)
    other[8:30, 10:40] = 1
    gts = {
        "polygon": [poly, None],
        "uncompressed": [uncompressed(poly_mask), None],
        "compressed": [encode(poly_mask), None],
    }
    preds = [pred(1, 1, 0.9, [encode(poly_mask), None]), pred(1, 1, 0.8, [encode(other), None])]
    inter = np.logical_and(poly_mask, other).sum()
    union = np.logical_or(poly_mask, other).sum()
    for name, segs in gts.items():
        g = YTVISGroundTruth(gt_json([video(1, h, w, 2)], [ann(1, 1, 1, segs, areas=None)]))
        ious = _video_ious(load_predictions(preds, g)[1], g.tracks[1], g.videos[1])
        assert ious[:, 0].tolist() == [1.0, inter / union], name
        assert run(gt_json([video(1, h, w, 2)], [ann(1, 1, 1, segs, areas=None)]),
                   preds[:1])["AP"] == approx(1.0), name


def test_video_ious_match_numpy_on_random_masks():
    rng = np.random.default_rng(3)
    h, w, T = 15, 17, 5

    def rand_track():
        return [(rng.random((h, w)) < 0.4) if rng.random() < 0.8 else None for _ in range(T)]

    gts = [rand_track() for _ in range(3)]
    dets = [rand_track() for _ in range(4)]
    crowd = [0, 1, 0]
    gt = gt_json([video(1, h, w, T)], [
        ann(i + 1, 1, 1, [None if m is None else encode(m) for m in t], iscrowd=c)
        for i, (t, c) in enumerate(zip(gts, crowd))])
    g = YTVISGroundTruth(gt)
    tracks = load_predictions([pred(1, 1, 0.5, [None if m is None else encode(m) for m in t])
                               for t in dets], g)
    z = np.zeros((h, w), bool)
    for coco_crowd in (False, True):
        ious = _video_ious(tracks[1], g.tracks[1], g.videos[1], coco_crowd=coco_crowd)
        for i, d in enumerate(dets):
            for j, gm in enumerate(gts):
                dd = [z if m is None else m for m in d]
                gg = [z if m is None else m for m in gm]
                inter = sum(int((a & b).sum()) for a, b in zip(dd, gg))
                denom = (sum(int(a.sum()) for a in dd) if crowd[j] and coco_crowd
                         else sum(int((a | b).sum()) for a, b in zip(dd, gg)))
                assert ious[i, j] == (inter / denom if denom else 0.0)


def test_category_without_gt_and_video_without_predictions():
    h, w = 8, 8
    m = rect(h, w, 0, 4, 0, 4)
    gt = gt_json([video(1, h, w, 1), video(2, h, w, 1)],
                 [ann(1, 1, 1, [m]), ann(2, 2, 1, [m])], num_categories=3)
    # Video 2's object is missed; a category-3 prediction has no gt anywhere.
    res = run(gt, [pred(1, 1, 0.9, [m]), pred(1, 3, 0.99, [m])])
    # Category 1: TP then nothing, recall 1/2 -> precision 1 up to r = 0.50 (51 points).
    # Categories 2 and 3 have no gt and do not count.
    assert res["AP"] == approx(51 / 101) and res["AR10"] == approx(0.5)
    # No predictions at all: 0, not -1 (there is ground truth).
    assert run(gt, [])["AP"] == 0.0


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

def _small_gt():
    h, w = 6, 7
    return gt_json([video(7, h, w, 3)], [ann(1, 7, 1, [rect(h, w, 0, 2, 0, 2)] * 3)])


def test_segmentations_length_mismatch_is_an_error_naming_the_video():
    gt = _small_gt()
    m = rect(6, 7, 0, 2, 0, 2)
    for segs in ([m, m], [m, m, m, m]):
        with pytest.raises(YTVISFormatError, match=r"res\.json.*video 7.*has 3 frames"):
            run(gt, [pred(7, 1, 0.5, segs)])
    bad = _small_gt()
    bad["annotations"][0]["segmentations"].pop()
    with pytest.raises(YTVISFormatError, match=r"gt\.json: annotation 1.*video 7 has 3 frames"):
        YTVISGroundTruth(bad, source="gt.json")


@pytest.mark.parametrize("p, message", [
    (pred(8, 1, 0.5, [None] * 3), r"res\.json: prediction #0: video_id 8 is not in gt\.json"),
    (pred(7, 5, 0.5, [None] * 3), r"prediction #0 \(video 7\): category_id 5 is not in gt\.json"),
    (pred(7, 1, 0.5, [None, rect(7, 6, 0, 1, 0, 1), None]),
     r"video 7\) frame 1: mask size \[7, 6\] differs from the video's \[6, 7\]"),
    (pred(7, 1, float("nan"), [None] * 3), r"'score' must be a finite number"),
    ({"video_id": 7, "category_id": 1, "score": 0.5}, r"missing field 'segmentations'"),
    (pred(7, 1, 0.5, [None, [[1, 2, 3]], None]), r"frame 1: a segmentation must be null or an RLE"),
])
def test_bad_predictions_raise(p, message):
    with pytest.raises(YTVISFormatError, match=message):
        run(_small_gt(), [p])


def test_bad_ground_truth_raises():
    gt = _small_gt()
    gt["annotations"][0]["segmentations"][1] = rect(5, 7, 0, 1, 0, 1)
    with pytest.raises(YTVISFormatError, match=r"annotation 1 \(video 7\) frame 1: mask size"):
        YTVISGroundTruth(gt, source="gt.json")
    gt = _small_gt()
    gt["annotations"][0]["video_id"] = 99
    with pytest.raises(YTVISFormatError, match="annotation 1: unknown video_id 99"):
        YTVISGroundTruth(gt)
    gt = _small_gt()
    gt["annotations"] = None
    with pytest.raises(YTVISFormatError, match="has no 'annotations'"):
        YTVISGroundTruth(gt)


# --------------------------------------------------------------------------------------------
# Random cases against pycocotools' COCOeval, with coco_crowd (COCO's crowd rule). A video of
# T frames of h x w is an image of h x (w*T) (frames side by side): the spatio-temporal IoU is
# that image's mask IoU (crowd included). Giving COCO each track's YouTube-VIS size as its
# "area" makes every metric identical, bit for bit.
# --------------------------------------------------------------------------------------------

def _random_case(seed, h=9, w=11, num_videos=10, num_categories=3):
    rng = np.random.default_rng(seed)

    def rand_mask(base=None):
        if base is not None and rng.random() < 0.8:
            return base ^ (rng.random((h, w)) < 0.04)
        m = np.zeros((h, w), bool)
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        m[y0:y0 + rng.integers(1, h), x0:x0 + rng.integers(1, w)] = True
        return m

    videos, anns, preds, aid = [], [], [], 1
    for v in range(1, num_videos + 1):
        T = int(rng.integers(1, 5))
        videos.append(video(v * 2, h, w, T))
        for _ in range(int(rng.integers(0, 4))):
            c = int(rng.integers(1, num_categories + 1))
            frames = [rand_mask() if rng.random() < 0.8 else None for _ in range(T)]
            as_list = rng.random() < 0.5
            segs = [None if m is None else (uncompressed(m) if as_list else encode(m))
                    for m in frames]
            areas = None if rng.random() < 0.3 else [None if m is None else int(m.sum())
                                                     for m in frames]
            anns.append(ann(aid, v * 2, c, segs, iscrowd=int(rng.random() < 0.15), areas=areas))
            aid += 1
            for _ in range(int(rng.integers(0, 3))):
                pc = c if rng.random() < 0.85 else int(rng.integers(1, num_categories + 1))
                preds.append(pred(v * 2, pc, float(np.round(rng.random(), 1)), [
                    encode(rand_mask(f)) if rng.random() < 0.9 else None for f in frames]))
        many = 105 if (seed % 2 == 0 and v == 1) else int(rng.integers(0, 3))
        for _ in range(many):
            preds.append(pred(v * 2, 1 if many > 100 else int(rng.integers(1, num_categories + 1)),
                              float(np.round(rng.random(), 2)),
                              [encode(rand_mask()) if rng.random() < 0.8 else None
                               for _ in range(T)]))
    order = rng.permutation(len(preds))
    return gt_json(videos, anns, num_categories), [preds[i] for i in order]


def _coco_reference(gt, preds, area_ranges):
    vids = {v["id"]: v for v in gt["videos"]}

    def side_by_side(segs, v):
        h, w = v["height"], v["width"]
        frames = []
        for s in segs:
            if s is None:
                frames.append(np.zeros((h, w), np.uint8))
            else:
                s = mask_util.frPyObjects(s, h, w) if isinstance(s["counts"], list) else s
                frames.append(mask_util.decode(s))
        return encode(np.concatenate(frames, axis=1)), [int(f.sum()) for f in frames]

    def mean_nonzero(a):
        a = [x for x in a if x]
        return float(np.mean(a)) if a else 0.0

    images = [{"id": v["id"], "height": v["height"], "width": v["width"] * v["length"]}
              for v in gt["videos"]]
    coco_anns = []
    for a in gt["annotations"]:
        seg, frame_areas = side_by_side(a["segmentations"], vids[a["video_id"]])
        coco_anns.append({
            "id": a["id"], "image_id": a["video_id"], "category_id": a["category_id"],
            "iscrowd": a["iscrowd"], "segmentation": seg, "bbox": list(mask_util.toBbox(seg)),
            "area": mean_nonzero(a["areas"] if a["areas"] is not None else frame_areas)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": coco_anns,
                           "categories": gt["categories"]}
        coco_gt.createIndex()
        results, sizes = [], []
        for p in preds:
            seg, frame_areas = side_by_side(p["segmentations"], vids[p["video_id"]])
            results.append({"image_id": p["video_id"], "category_id": p["category_id"],
                            "score": p["score"], "segmentation": seg})
            sizes.append(mean_nonzero(frame_areas))
        coco_dt = coco_gt.loadRes(results)
        for r, size in zip(results, sizes):
            coco_dt.anns[r["id"]]["area"] = size
        E = COCOeval(coco_gt, coco_dt, "segm")
        E.params.areaRng = [list(r) for r in area_ranges.values()]
        E.params.areaRngLbl = list(area_ranges)
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E.stats[:8]


@pytest.mark.parametrize("seed", [0, 1, 2, 4, 6, 8, 10, 11])
def test_matches_cocoeval_on_side_by_side_frames(seed):
    # Small masks: shrink the area ranges so that all three classes occur.
    ranges = OrderedDict([("all", (0, 1e10)), ("small", (0, 15)), ("medium", (15, 35)),
                          ("large", (35, 1e10))])
    gt, preds = _random_case(seed)
    ours = np.array(list(run(gt, preds, area_ranges=ranges, coco_crowd=True).values()))
    reference = _coco_reference(gt, preds, ranges)
    assert ours.tolist() == reference.tolist()
    assert ours[0] > 0  # a case with some matches, not a vacuous one
    if seed in (8, 11):
        assert ours[5] > 0  # ... and large objects found


# --------------------------------------------------------------------------------------------
# Random sets against the official ytvoseval.py. Its code is not in this repository: the
# expected numbers (OFFICIAL_STATS) were computed once by running it (youtubevos/cocoapi
# PythonAPI/pycocotools/ytvos.py and ytvoseval.py at f3f9948, changed only for today's numpy:
# np.float -> np.float64, int(np.round(...))) on official_case(seed) written to json files:
# YTVOS(gt.json), loadRes(results.json), YTVOSeval(gt, res, "segm"), evaluate(), accumulate(),
# summarize(), stats[:8]. The sets hold crowds (with predictions inside them), absent frames
# (null segmentations), null json areas next to masks and json areas on one frame only,
# polygon / uncompressed / compressed RLE ground truth, four frame sizes (all three area
# ranges), category ids that are not 1..K (one never annotated), a video without ground truth,
# tied scores, empty predicted masks, annotations without any mask (seeds 0, 1, 3, 4), an
# annotation id 0 (seed 3) and 105 predictions of one category in one video (seed 0).
# --------------------------------------------------------------------------------------------

FRAME_SIZES = [(36, 48), (64, 40), (180, 240), (360, 640)]
CATEGORY_IDS = [3, 7, 8, 12]  # 12: only ever predicted


def _ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.ogrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _ellipse_polygon(h, w, cy, cx, ry, rx, n=10):
    """One polygon (clipped to the frame) approximating the ellipse."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    xs = np.clip(cx + rx * np.cos(t), 0, w)
    ys = np.clip(cy + ry * np.sin(t), 0, h)
    return [np.round(np.stack([xs, ys], axis=1).ravel(), 2).tolist()]


def official_case(seed):
    """(ground truth, predictions) as parsed json, drawn with np.random.RandomState(seed)
    (whose stream numpy keeps fixed)."""
    rs = np.random.RandomState(seed)
    videos, anns, preds = [], [], []
    aid = 0 if seed == 3 else 1
    vids = 5 * rs.permutation(8) + 2    # ids out of file order
    for v, vid in enumerate(vids.tolist()):
        h, w = FRAME_SIZES[rs.randint(len(FRAME_SIZES))]
        T = int(rs.randint(1, 7))
        videos.append(video(vid, h, w, T))
        num_objects = 0 if v == 2 else int(rs.randint(1, 5))
        for o in range(num_objects):
            crowd = rs.rand() < 0.2
            cat = CATEGORY_IDS[rs.randint(3)]
            frac = rs.uniform(0.3, 0.5) if crowd else rs.uniform(0.06, 0.45)
            ry, rx = frac * h * rs.uniform(0.7, 1.1), frac * w * rs.uniform(0.7, 1.1)
            cy, cx = rs.uniform(0.25, 0.75) * h, rs.uniform(0.25, 0.75) * w
            vy, vx = rs.normal(0, 0.04 * h), rs.normal(0, 0.04 * w)
            present = rs.rand(T) < 0.8
            if seed == 1 and v == 0 and o == 0:
                present[:] = False      # an annotation without any mask
            fmt = rs.choice(["rle", "rle", "uncompressed", "polygon"])
            masks, segs, areas = [], [], []
            for f in range(T):
                fy, fx = cy + vy * f, cx + vx * f
                if not present[f]:
                    masks.append(None)
                    segs.append(None)
                    areas.append(None)
                    continue
                if fmt == "polygon":
                    seg = _ellipse_polygon(h, w, fy, fx, ry, rx)
                    m = mask_util.decode(mask_util.merge(mask_util.frPyObjects(seg, h, w)))
                else:
                    m = _ellipse(h, w, fy, fx, ry, rx).astype(np.uint8)
                    seg = uncompressed(m) if fmt == "uncompressed" else encode(m)
                masks.append(m.astype(bool))
                segs.append(seg)
                r = rs.rand()
                areas.append(None if r < 0.1 else round(1.37 * int(m.sum()), 1) if r < 0.2
                             else int(m.sum()))
            if present.any() and rs.rand() < 0.25:
                # A json area on one frame only, of any size class: the others are null.
                areas = [None] * T
                areas[int(np.flatnonzero(present)[0])] = float(rs.choice([900, 3e4, 9e4]))
            anns.append(ann(aid, vid, cat, segs, iscrowd=int(crowd), areas=areas))
            aid += 1
            for _ in range(int(rs.randint(0, 4))):
                score = float(rs.randint(0, 21)) / 20   # ties
                if crowd:   # a prediction inside the crowd region
                    sy, sx = rs.uniform(0.2, 0.6) * ry, rs.uniform(0.2, 0.6) * rx
                    dy, dx = rs.uniform(-0.3, 0.3) * ry, rs.uniform(-0.3, 0.3) * rx
                    pcat = cat
                else:
                    sy, sx = ry * rs.uniform(0.8, 1.2), rx * rs.uniform(0.8, 1.2)
                    dy, dx = rs.normal(0, 0.15 * ry), rs.normal(0, 0.15 * rx)
                    pcat = cat if rs.rand() < 0.8 else CATEGORY_IDS[rs.randint(4)]
                psegs = []
                for f in range(T):
                    keep = rs.rand() < (0.9 if present[f] else 0.3)
                    if not keep:
                        psegs.append(None)
                    elif rs.rand() < 0.03:
                        psegs.append(encode(np.zeros((h, w), np.uint8)))  # an empty mask
                    else:
                        psegs.append(encode(_ellipse(h, w, cy + vy * f + dy, cx + vx * f + dx,
                                                     sy, sx)))
                preds.append(pred(vid, pcat, score, psegs))
        num_fp = 105 if (seed == 0 and v == 0) else int(rs.randint(0, 3))
        fp_cat = CATEGORY_IDS[rs.randint(4)]
        for _ in range(num_fp):
            sy, sx = rs.uniform(0.05, 0.4) * h, rs.uniform(0.05, 0.4) * w
            py, px = rs.uniform(0, h), rs.uniform(0, w)
            preds.append(pred(vid, fp_cat if num_fp > 100 else CATEGORY_IDS[rs.randint(4)],
                              float(rs.randint(0, 21)) / 20,
                              [encode(_ellipse(h, w, py, px, sy, sx)) if rs.rand() < 0.8
                               else None for _ in range(T)]))
    order = rs.permutation(len(preds))
    gt = {"videos": videos, "annotations": anns,
          "categories": [{"id": c, "name": f"cat{c}"} for c in CATEGORY_IDS]}
    return gt, [preds[i] for i in order]


# official_case(seed) -> the official's stats[:8] (AP, AP50, AP75, APs, APm, APl, AR1, AR10).
OFFICIAL_STATS = {
    0: [0.13426009133315767, 0.39182251558489173, 0.03621101906108978, 0.05733144743045732,
        0.5169416941694169, 0.2524752475247524, 0.16666666666666666, 0.33333333333333326],
    1: [0.017801030103010297, 0.07315731573157315, 0.007013201320132013, 0.012875287528752874,
        0.5999999999999999, -1.0, 0.008333333333333333, 0.0972222222222222],
    2: [0.061274163130598774, 0.2466996699669967, 0.03547854785478547, 0.048597359735973594,
        0.4039603960396039, -1.0, 0.08666666666666666, 0.1480952380952381],
    3: [0.043495599559955994, 0.08553355335533554, 0.01801430143014301, 0.02636963696369637,
        0.1127062706270627, 0.29999999999999993, 0.08396825396825397, 0.14873015873015874],
    4: [0.13450795079507952, 0.2755775577557755, 0.08465346534653467, 0.09443777711104442,
        0.5999999999999999, 0.5499999999999999, 0.16000000000000003, 0.26],
    5: [0.10847084708470846, 0.2596259625962596, 0.0429042904290429, 0.10676567656765674,
        0.2524752475247524, -1.0, 0.08333333333333333, 0.18055555555555552],
}

@pytest.mark.parametrize("seed", sorted(OFFICIAL_STATS))
def test_equals_the_official_on_random_sets(seed):
    gt, preds = official_case(seed)
    gt, preds = json.loads(json.dumps(gt)), json.loads(json.dumps(preds))  # as read from files
    ours = list(run(gt, preds).values())
    assert ours == pytest.approx(OFFICIAL_STATS[seed], abs=1e-9)
    # The sets are not vacuous: COCO's crowd rule changes the numbers on most of them.
    if seed in (1, 2, 3):
        assert run(gt, preds, coco_crowd=True)["AP"] > ours[0] + 1e-3


# The YouTube-VIS 2022 scorer's numbers (its yt2022_evaluate.py: results loaded against gt.json,
# YTVOSeval against gt_short.json and gt_long.json, each holding its videos' ground truth) for
# official_case(5) with the long videos every third id: computed once as OFFICIAL_STATS were.
OFFICIAL_2022_CASE5 = {
    "short": [0.05891089108910891, 0.12623762376237624, 0.0, 0.05891089108910891, -1.0, -1.0,
              0.0, 0.125],
    "long": [0.17854785478547855, 0.38943894389438943, 0.16831683168316827, 0.20099009900990095,
             0.2524752475247524, -1.0, 0.13333333333333333, 0.18888888888888886],
}


def test_long_video_protocol_equals_the_2022_scorer(tmp_path):
    gt, preds = official_case(5)
    long_ids = sorted(v["id"] for v in gt["videos"])[::3]
    res = evaluate_ytvis_long_videos(gt, preds, long_ids)
    assert list(res) == ["AP", "short", "long"]
    for split in ("short", "long"):
        assert list(res[split].values()) == pytest.approx(OFFICIAL_2022_CASE5[split], abs=1e-9)
    assert res["AP"] == approx((OFFICIAL_2022_CASE5["short"][0]
                                + OFFICIAL_2022_CASE5["long"][0]) / 2)
    # The long videos given as a YouTube-VIS json (the server's gt_long.json) or a list of ids.
    (tmp_path / "gt_long.json").write_text(json.dumps(
        {"videos": [v for v in gt["videos"] if v["id"] in long_ids], "annotations": []}))
    (tmp_path / "long.json").write_text(json.dumps(long_ids[::-1]))
    for path in ("gt_long.json", "long.json"):
        assert evaluate_ytvis_long_videos(gt, preds, str(tmp_path / path)) == res
    table = format_metrics_table(res).splitlines()
    assert table[0].split(" | ")[:2] == ["videos", "    AP"]
    assert table[2].startswith("short  | 0.0589 | 0.1262 |")
    assert table[3].startswith("long   | 0.1785 | 0.3894 |")
    assert table[4] == "mean AP of short and long (the 2022 server's mAP): 0.1187"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def _write_case(tmp_path):
    h, w = 10, 10
    gt = gt_json([video(1, h, w, 3)],
                 [ann(1, 1, 1, [rect(h, w, 0, 3, 0, 10), rect(h, w, 0, 1, 0, 10), None])])
    preds = [pred(1, 1, 0.8, [rect(h, w, 0, 3, 0, 10), None, rect(h, w, 5, 6, 0, 10)])]
    gt_file, res_file = tmp_path / "gt.json", tmp_path / "results.json"
    gt_file.write_text(json.dumps(gt))
    res_file.write_text(json.dumps(preds))
    return str(gt_file), str(res_file)


def test_cli_json_subprocess(tmp_path):
    gt_file, res_file = _write_case(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "vis_d2.evaluation", "--gt", gt_file, "--results", res_file,
         "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert list(metrics) == list(METRIC_NAMES)
    assert metrics["AP"] == approx(0.3) and metrics["AP50"] == approx(1.0)
    assert metrics["APm"] == -1
    assert evaluate_ytvis(gt_file, res_file) == metrics


def test_cli_table_and_error(tmp_path, capsys):
    gt_file, res_file = _write_case(tmp_path)
    assert cli.main(["--gt", gt_file, "--results", res_file]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == "AP | AP50 | AP75 | APs | APm | APl | AR1 | AR10".split()
    assert lines[2].split(" | ")[:3] == ["0.3000", "1.0000", "0.0000"]
    assert lines[2].split(" | ")[4].strip() == "-"
    # A truncated prediction: exit status 2 and a message naming the file and video.
    bad = json.loads(open(res_file).read())
    bad[0]["segmentations"] = bad[0]["segmentations"][:2]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert cli.main(["--gt", gt_file, "--results", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "bad.json: prediction #0 (video 1)" in err and "has 3 frames" in err


def test_cli_class_agnostic(tmp_path, capsys):
    """A perfect mask track with the wrong category scores AP 0, and AP 1 class-agnostic."""
    h, w = 10, 10
    segs = [rect(h, w, 0, 3, 0, 10), rect(h, w, 2, 6, 1, 9)]
    gt = gt_json([video(1, h, w, 2)], [ann(1, 1, 1, segs)], num_categories=2)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps([pred(1, 2, 0.9, segs)]))
    args = ["--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "res.json"), "--json"]
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["AP"] == 0.0
    assert cli.main(args + ["--class-agnostic"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["AP"] == approx(1.0) and metrics["AR1"] == approx(1.0)
    (tmp_path / "broken.json").write_text("[{")
    assert cli.main(["--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "broken.json"),
                     "--class-agnostic"]) == 2
    assert "broken.json: not valid json" in capsys.readouterr().err
    # the ground truth keeps its file name in errors
    (tmp_path / "nocats.json").write_text(json.dumps(dict(gt, categories=[])))
    assert cli.main(["--gt", str(tmp_path / "nocats.json"), "--results", str(tmp_path / "res.json"),
                     "--class-agnostic"]) == 2
    assert "nocats.json: class-agnostic scoring needs a non-empty 'categories'" in capsys.readouterr().err


def test_cli_long_videos_and_coco_crowd(tmp_path, capsys):
    gt, preds = official_case(5)
    long_ids = sorted(v["id"] for v in gt["videos"])[::3]
    for name, data in (("gt.json", gt), ("res.json", preds), ("long.json", long_ids)):
        (tmp_path / name).write_text(json.dumps(data))
    args = ["--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "res.json")]
    assert cli.main(args + ["--long-videos", str(tmp_path / "long.json"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res == json.loads(json.dumps(evaluate_ytvis_long_videos(gt, preds, long_ids)))
    assert cli.main(args + ["--long-videos", str(tmp_path / "long.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(" | ")[0] for ln in lines[2:4]] == ["short ", "long  "]
    assert lines[4].endswith(": 0.1187")
    # --coco-crowd: case 1 has a crowd that predictions inside it match COCO's way only.
    gt, preds = official_case(1)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(preds))
    assert cli.main(args + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["AP"] == approx(OFFICIAL_STATS[1][0])
    assert cli.main(args + ["--json", "--coco-crowd"]) == 0
    assert json.loads(capsys.readouterr().out)["AP"] == approx(
        evaluate_ytvis(gt, preds, coco_crowd=True)["AP"])
    assert evaluate_ytvis(gt, preds, coco_crowd=True)["AP"] > OFFICIAL_STATS[1][0] + 1e-3
