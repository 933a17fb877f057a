"""Bad input to the YouTube-VIS metric (``evaluate_ytvis``, ``YTVISGroundTruth``, ``YTVISEval``,
``YTVISEvaluator`` and ``python -m vis_d2.evaluation``): each fault is an error naming the file,
video, annotation / prediction and frame, raised at once (never a hang inside pycocotools, never
a believable number).

Every case starts from one ground truth (``gt.json``: video 7 of 3 frames of 6x7 pixels, one
annotation with a mask in every frame) and a results file (``res.json``: that track, predicted
exactly), which score AP 1; a row changes one thing in one of them.
"""
import copy
import gzip
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pycocotools.mask as mask_util
import pytest

from detectron2.data import MetadataCatalog

from vis_d2.evaluation import YTVISEvaluator, YTVISFormatError, evaluate_ytvis
from vis_d2.evaluation import __main__ as cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H, W = 6, 7


def _rle(y0, y1, x0, x1):
    """Compressed RLE (str counts) of the rectangle rows y0:y1, cols x0:x1 of a 6x7 frame."""
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    rle = mask_util.encode(np.asfortranarray(m))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


MASKS = [_rle(0, 3, 0, 4), _rle(1, 4, 1, 5), _rle(2, 5, 2, 6)]   # 12 pixels each
FRAME1 = MASKS[1]["counts"]                                      # "73300000;"
# Its last run (33 pixels) takes two characters: dropping one ends the string inside that run.
ENDS_MID_RUN = _rle(0, 3, 0, 2)["counts"][:-1]


def _gt():
    return {
        "videos": [{"id": 7, "height": H, "width": W, "length": 3,
                    "file_names": [f"v7/{i:05d}.jpg" for i in range(3)]}],
        "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}],
        "annotations": [{"id": 1, "video_id": 7, "category_id": 1, "iscrowd": 0,
                         "segmentations": copy.deepcopy(MASKS), "areas": [12, 12, 12],
                         "bboxes": [[0, 0, 4, 3], [1, 1, 4, 3], [2, 2, 4, 3]]}],
    }


def _results():
    return [{"video_id": 7, "category_id": 1, "score": 0.9,
             "segmentations": copy.deepcopy(MASKS)}]


# Row mutations: each changes the parsed ground truth (gt) or results (res) in place.
def gt_ann(**fields):
    return "gt", lambda d: d["annotations"][0].update(fields)


def gt_frame(frame, seg):
    return "gt", lambda d: d["annotations"][0]["segmentations"].__setitem__(frame, seg)


def gt_top(**fields):
    return "gt", lambda d: d.update(fields)


def res_pred(**fields):
    return "res", lambda d: d[0].update(fields)


def res_frame(frame, seg):
    return "res", lambda d: d[0]["segmentations"].__setitem__(frame, seg)


def counts(c):
    return {"size": [H, W], "counts": c}


def _write(tmp_path, target, mutate):
    """gt.json and res.json in ``tmp_path``, one of them changed by ``mutate``; their paths."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    gt, res = _gt(), _results()
    mutate(gt if target == "gt" else res)
    gt_file, res_file = tmp_path / "gt.json", tmp_path / "res.json"
    gt_file.write_text(json.dumps(gt))
    res_file.write_text(json.dumps(res))
    return str(gt_file), str(res_file)


GT_ANN = r"gt\.json: annotation 1 \(video 7\)"
PRED = r"res\.json: prediction #0 \(video 7\)"
NOT_COVER = "RLE run lengths cover"

# (mutation, exception type, message fragment (regex)); ids say what is wrong. "fixed": an error
# since issue 22 (a hang, a wrong number or a bare traceback before); "kept": an error before.
ROWS = [
    # --- RLE run lengths (fixed): pycocotools loops in mask.iou or scores a wrong mask.
    pytest.param(*gt_frame(1, counts(FRAME1[:4])), YTVISFormatError,
                 GT_ANN + rf" frame 1: {NOT_COVER} 16 pixels, the 6x7 frame has 42",
                 id="fixed-gt-rle-cut-in-half-hangs"),
    pytest.param(*gt_frame(1, counts(ENDS_MID_RUN)), YTVISFormatError,
                 GT_ANN + r" frame 1: RLE counts end inside a run length \(cut short\?\)",
                 id="fixed-gt-rle-ends-inside-a-run"),
    pytest.param(*gt_frame(2, counts("0")), YTVISFormatError,
                 GT_ANN + rf" frame 2: {NOT_COVER} 0 pixels", id="fixed-gt-rle-counts-0"),
    pytest.param(*gt_frame(0, counts(MASKS[0]["counts"] + "3")), YTVISFormatError,
                 GT_ANN + rf" frame 0: {NOT_COVER} 48 pixels", id="fixed-gt-rle-covers-more"),
    pytest.param(*gt_frame(1, counts(FRAME1[:-1] + "~")), YTVISFormatError,
                 GT_ANN + r" frame 1: RLE counts hold a character outside the compressed format",
                 id="fixed-gt-rle-bad-character"),
    pytest.param(*res_frame(1, counts(FRAME1[:4])), YTVISFormatError,
                 PRED + rf" frame 1: {NOT_COVER} 16 pixels", id="fixed-res-rle-cut-in-half-hangs"),
    pytest.param(*res_frame(0, counts("0")), YTVISFormatError,
                 PRED + rf" frame 0: {NOT_COVER} 0 pixels", id="fixed-res-rle-counts-0"),
    pytest.param(*res_frame(2, counts(MASKS[2]["counts"] + "3")), YTVISFormatError,
                 PRED + rf" frame 2: {NOT_COVER} 48 pixels", id="fixed-res-rle-covers-more"),
    pytest.param(*res_frame(1, counts(FRAME1[:-1] + "é")), YTVISFormatError,
                 PRED + r" frame 1: RLE counts hold a non-ASCII character",
                 id="fixed-res-rle-non-ascii"),
    # --- uncompressed RLE (kept; now the same check as compressed)
    pytest.param(*gt_frame(1, counts([0, 40])), YTVISFormatError,
                 GT_ANN + rf" frame 1: {NOT_COVER} 40 pixels", id="kept-gt-uncompressed-short"),
    pytest.param(*gt_frame(1, counts([50, -8])), YTVISFormatError,
                 GT_ANN + r" frame 1: RLE counts hold a negative run length",
                 id="kept-gt-uncompressed-negative"),
    pytest.param(*gt_frame(1, counts([0, 42.0])), YTVISFormatError,
                 GT_ANN + r" frame 1: uncompressed RLE counts must be integers",
                 id="kept-gt-uncompressed-float"),
    pytest.param(*gt_frame(1, counts([10 ** 20])), YTVISFormatError,
                 GT_ANN + r" frame 1: RLE counts hold a run length too long to be real",
                 id="kept-gt-uncompressed-huge"),
    pytest.param(*res_frame(1, counts([0, 40])), YTVISFormatError,
                 PRED + rf" frame 1: {NOT_COVER} 40 pixels", id="kept-res-uncompressed-short"),
    # --- scores
    pytest.param(*res_pred(score=True), YTVISFormatError,
                 PRED + r": 'score' must be a finite number, got True", id="fixed-res-score-true"),
    pytest.param(*res_pred(score=float("nan")), YTVISFormatError,
                 PRED + r": 'score' must be a finite number, got nan", id="kept-res-score-nan"),
    pytest.param(*res_pred(score=float("inf")), YTVISFormatError,
                 PRED + r": 'score' must be a finite number, got inf", id="kept-res-score-inf"),
    pytest.param(*res_pred(score="0.9"), YTVISFormatError,
                 PRED + r": 'score' must be a finite number, got '0.9'",
                 id="kept-res-score-string"),
    # --- ground-truth areas (the official uses them for the area ranges)
    pytest.param(*gt_ann(areas=[-1, -1, -1]), YTVISFormatError,
                 GT_ANN + r" frame 0: invalid area -1 \(an 'areas' entry is a non-negative number",
                 id="fixed-gt-areas-minus-one-dropped-the-track"),
    pytest.param(*gt_ann(areas=[12, True, 12]), YTVISFormatError,
                 GT_ANN + r" frame 1: invalid area True", id="fixed-gt-areas-true"),
    pytest.param(*gt_ann(areas=[12, "12", 12]), YTVISFormatError,
                 GT_ANN + r" frame 1: invalid area '12'", id="kept-gt-areas-string"),
    pytest.param(*gt_ann(areas=[12, float("nan"), 12]), YTVISFormatError,
                 GT_ANN + r" frame 1: invalid area nan", id="kept-gt-areas-nan"),
    pytest.param(*gt_ann(areas=[12, 12]), YTVISFormatError,
                 r"gt\.json: annotation 1: 'areas' must be null or a list of 3 entries \(video 7\)",
                 id="kept-gt-areas-length"),
    # --- nothing to score against
    pytest.param(*gt_top(annotations=[]), YTVISFormatError,
                 r"gt\.json: 'annotations' is empty: no ground truth to score against",
                 id="fixed-gt-no-annotations-all-minus-one"),
    pytest.param(*gt_ann(segmentations=[None, [], None]), YTVISFormatError,
                 r"gt\.json: the metric scores masks, and no annotation has a mask in any frame "
                 r"\(annotation 1: .*box-only ground truth\?\)", id="fixed-gt-box-only-ap-0"),
    pytest.param(*gt_ann(iscrowd=1), YTVISFormatError,
                 r"gt\.json: every annotation is a crowd \(iscrowd 1\)",
                 id="fixed-gt-only-crowds-all-minus-one"),
    pytest.param(*gt_top(annotations=None), YTVISFormatError,
                 r"gt\.json: has no 'annotations' \(a split without ground truth",
                 id="kept-gt-annotations-null"),
    # --- polygons (ground truth only): pycocotools walks the outline pixel by pixel
    pytest.param(*gt_frame(1, [[0, 0, float("nan"), 0, 3, 3]]), YTVISFormatError,
                 GT_ANN + r" frame 1: a polygon has a coordinate that is not finite",
                 id="fixed-gt-polygon-nan-33s-wrong-area"),
    pytest.param(*gt_frame(1, [[0, 0, 1e9, 0, 3, 3]]), YTVISFormatError,
                 GT_ANN + r" frame 1: .* lies more than a frame size off the 6x7 frame",
                 id="fixed-gt-polygon-vertex-at-1e9-takes-minutes"),
    pytest.param(*gt_frame(1, [[0, 0, 3, 0, 3]]), YTVISFormatError,
                 GT_ANN + r" frame 1: a polygon must be a list of an even number",
                 id="kept-gt-polygon-odd"),
    pytest.param(*res_frame(1, [[0, 0, 3, 0, 3, 3]]), YTVISFormatError,
                 PRED + r" frame 1: a segmentation must be null or an RLE dict",
                 id="kept-res-polygon"),
    # --- ids, lengths, sizes
    pytest.param(*gt_top(videos=_gt()["videos"] * 2), YTVISFormatError,
                 r"gt\.json: video 7: duplicate video id", id="kept-gt-duplicate-video-id"),
    pytest.param("gt", lambda d: d["annotations"].append(dict(d["annotations"][0])),
                 YTVISFormatError, r"gt\.json: duplicate annotation id 1",
                 id="kept-gt-duplicate-annotation-id"),
    pytest.param(*gt_ann(category_id="1"), YTVISFormatError,
                 r"gt\.json: annotation 1: 'category_id' must be an integer, got '1'",
                 id="kept-gt-category-id-string"),
    pytest.param(*res_pred(category_id="1"), YTVISFormatError,
                 PRED + r": 'category_id' must be an integer, got '1'",
                 id="kept-res-category-id-string"),
    # --- results whose ids are not the dataset's (fixed, issue 23): 0-based class indices
    pytest.param(*res_pred(category_id=1, category_name="square"), YTVISFormatError,
                 PRED + r": category_id 1 is 'circle' in .*gt\.json, but the prediction's "
                 r"category_name is 'square' \(category_id 2 there\): the results' ids are not "
                 r"the dataset's", id="fixed-res-category-ids-shifted"),
    pytest.param(*res_pred(category_id=1, category_name="hexagon"), YTVISFormatError,
                 PRED + r": category_id 1 is 'circle' in .*gt\.json, but the prediction's "
                 r"category_name is 'hexagon'$", id="fixed-res-category-name-unknown"),
    pytest.param(*res_pred(video_id=8), YTVISFormatError,
                 r"res\.json: prediction #0: video_id 8 is not in .*gt\.json",
                 id="kept-res-unknown-video"),
    pytest.param(*gt_ann(segmentations=MASKS[:2]), YTVISFormatError,
                 r"gt\.json: annotation 1: 'segmentations' has 2 entries but video 7 has 3 frames",
                 id="kept-gt-segmentations-length"),
    pytest.param(*res_pred(segmentations=MASKS * 2), YTVISFormatError,
                 PRED + r": 'segmentations' has 6 entries but video 7 has 3 frames",
                 id="kept-res-segmentations-length"),
    pytest.param(*res_frame(0, {"size": [W, H], "counts": MASKS[0]["counts"]}), YTVISFormatError,
                 PRED + r" frame 0: mask size \[7, 6\] differs from the video's \[6, 7\]",
                 id="kept-res-mask-size"),
    pytest.param("res", lambda d: d[0].pop("score"), YTVISFormatError,
                 r"res\.json: prediction #0: missing field 'score'", id="kept-res-missing-score"),
]


@pytest.mark.parametrize("target, mutate, error, message", ROWS)
def test_bad_metric_input_is_an_error_at_once(tmp_path, target, mutate, error, message):
    gt_file, res_file = _write(tmp_path, target, mutate)
    start = time.monotonic()
    with pytest.raises(error, match=message):
        evaluate_ytvis(gt_file, res_file)
    assert time.monotonic() - start < 1.0  # tiny inputs: anything slower is a loop somewhere


def test_the_unchanged_case_scores_one(tmp_path):
    """The rows' starting point is valid: each row's error is its one change."""
    gt_file, res_file = _write(tmp_path, "gt", lambda d: None)
    assert evaluate_ytvis(gt_file, res_file)["AP"] == pytest.approx(1.0, abs=1e-9)
    # the predictor's category_name is accepted where it is the dataset's; class-agnostic
    # scoring has one class and reads no names
    named = _results()
    named[0]["category_name"] = "circle"
    assert evaluate_ytvis(gt_file, named)["AP"] == pytest.approx(1.0, abs=1e-9)
    named[0]["category_name"] = "square"
    assert evaluate_ytvis(gt_file, named, class_agnostic=True)["AP"] == pytest.approx(1.0,
                                                                                     abs=1e-9)


# --- class-agnostic scoring rewrites the categories first: its own faults (fixed: TypeError)
@pytest.mark.parametrize("mutate, message", [
    pytest.param(gt_top(annotations=None)[1], r"gt\.json: has no 'annotations'",
                 id="fixed-agnostic-annotations-null-typeerror"),
    pytest.param(gt_top(categories=[1])[1],
                 r"gt\.json: class-agnostic scoring needs a non-empty 'categories' list",
                 id="fixed-agnostic-categories-not-objects-typeerror"),
    pytest.param(gt_top(annotations=[])[1], r"gt\.json: 'annotations' is empty",
                 id="fixed-agnostic-no-annotations"),
])
def test_bad_ground_truth_class_agnostic(tmp_path, mutate, message):
    gt_file, res_file = _write(tmp_path, "gt", mutate)
    with pytest.raises(YTVISFormatError, match=message):
        evaluate_ytvis(gt_file, res_file, class_agnostic=True)


# --- the command: exit status 2 and one line naming the file, never a traceback or a table
def _gzipped_gt(tmp_path, gt_file, res_file):
    path = tmp_path / "gt.json.gz"
    path.write_bytes(gzip.compress(open(gt_file, "rb").read()))
    return ["--gt", str(path), "--results", res_file]


def _long_videos(text):
    """Command arguments with ``--long-videos long.json`` holding ``text``."""
    def make_args(tmp_path, gt_file, res_file):
        (tmp_path / "long.json").write_text(text)
        return ["--gt", gt_file, "--results", res_file, "--long-videos",
                str(tmp_path / "long.json")]
    return make_args


@pytest.mark.parametrize("target, mutate, make_args, message", [
    pytest.param(*gt_top(annotations=[]),
                 lambda tmp_path, g, r: ["--gt", g, "--results", r, "--json"],
                 r"^error: .*gt\.json: 'annotations' is empty: no ground truth to score against$",
                 id="fixed-cli-no-annotations-exit-0-table-of-minus-one"),
    pytest.param(*gt_ann(segmentations=[None, None, None]),
                 lambda tmp_path, g, r: ["--gt", g, "--results", r],
                 r"^error: .*gt\.json: the metric scores masks, and no annotation has a mask",
                 id="fixed-cli-box-only-ap-0"),
    pytest.param("gt", lambda d: None, _gzipped_gt,
                 r"^error: .*gt\.json\.gz: not valid json: 'utf-8' codec can't decode byte 0x8b",
                 id="fixed-cli-gzip-gt-traceback"),
    pytest.param("gt", lambda d: None,
                 lambda tmp_path, g, r: ["--gt", g, "--results", r + ".missing"],
                 r"^error: .*No such file or directory: '.*res\.json\.missing'",
                 id="kept-cli-missing-results"),
    pytest.param("gt", lambda d: None, lambda tmp_path, g, r: ["--gt", r, "--results", r],
                 r"^error: .*res\.json: expected a json object, got list",
                 id="kept-cli-results-given-as-gt"),
    # --long-videos (YouTube-VIS 2022): the list of long videos.
    pytest.param("gt", lambda d: None, _long_videos("[7, 8]"),
                 r"^error: .*long\.json: video 8 is not in .*gt\.json$",
                 id="long-videos-unknown-id"),
    pytest.param("gt", lambda d: None, _long_videos('["7"]'),
                 r"^error: .*long\.json: entry 0: a video id is an integer, got '7'$",
                 id="long-videos-id-not-int"),
    pytest.param("gt", lambda d: None, _long_videos("[]"),
                 r"^error: .*long\.json: expected a non-empty json list of video ids",
                 id="long-videos-empty"),
    pytest.param("gt", lambda d: None, _long_videos("7\n"),
                 r"^error: .*long\.json: expected a non-empty json list of video ids",
                 id="long-videos-not-a-list"),
    pytest.param("gt", lambda d: None, _long_videos("[7"),
                 r"^error: .*long\.json: not valid json",
                 id="long-videos-not-json"),
    pytest.param("gt", lambda d: None, _long_videos("[7]"),
                 r"^error: .*gt\.json: the long-video protocol needs both short and long videos; "
                 r"1 of its 1 videos are long$",
                 id="long-videos-every-video"),
])
def test_bad_input_to_the_command(tmp_path, capsys, target, mutate, make_args, message):
    gt_file, res_file = _write(tmp_path, target, mutate)
    assert cli.main(make_args(tmp_path, gt_file, res_file)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(message, err.strip()), err


@pytest.mark.slow
def test_cut_rle_cannot_hang_the_command(tmp_path):
    """A cut ``counts`` string made pycocotools' ``mask.iou`` loop for minutes (killed after 120 s
    in issue 22). The command runs in a subprocess, so that a hang fails the test instead of
    stopping the suite; one process (~4 s of imports) tries the cut in the ground truth and in
    the results."""
    cases = []
    for target, mutate in [gt_frame(1, counts(FRAME1[:4])), res_frame(1, counts(FRAME1[:4]))]:
        cases.append(_write(tmp_path / target, target, mutate))
    script = ("import sys; from vis_d2.evaluation.__main__ import main; "
              "print([main(['--gt', g, '--results', r]) for g, r in %r])" % cases)
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[2, 2]", out.stdout + out.stderr
    (gt_file, _), (_, res_file) = cases
    for where in [f"{gt_file}: annotation 1 (video 7) frame 1",
                  f"{res_file}: prediction #0 (video 7) frame 1"]:
        assert f"error: {where}: RLE run lengths cover 16 pixels" in out.stderr, out.stderr
    assert time.monotonic() - start < 30


# --- handled: legitimate input the format allows, scored as the official evaluator does
def test_areas_null_where_there_is_no_mask_is_scored(tmp_path):
    def mutate(d):
        d["annotations"][0]["segmentations"][2] = None
        d["annotations"][0]["areas"] = [12, None, None]  # frame 1: skipped, as the official does
    gt_file, res_file = _write(tmp_path, "gt", mutate)
    res = json.loads(open(res_file).read())
    res[0]["segmentations"][2] = None
    assert evaluate_ytvis(gt_file, res)["AP"] == pytest.approx(1.0, abs=1e-9)


def test_some_annotations_without_a_mask_warn_and_count(tmp_path, capsys):
    """A track with no mask in any frame (the format allows a null per frame) is ground truth no
    prediction can match, as in the official evaluator: recall 1/2, and a warning naming it."""
    def mutate(d):
        d["annotations"].append(dict(d["annotations"][0], id=5, segmentations=[None] * 3,
                                     areas=[None] * 3))
    gt_file, res_file = _write(tmp_path, "gt", mutate)
    assert cli.main(["--gt", gt_file, "--results", res_file, "--json"]) == 0
    out, err = capsys.readouterr()
    metrics = json.loads(out)
    assert metrics["AR10"] == pytest.approx(0.5) and metrics["AP"] == pytest.approx(0.5, abs=0.01)
    assert ("warning: " + gt_file + ": 1 of 2 annotations have no mask in any frame (ids 5)") in err


def test_evaluator_refuses_a_boolean_score(restore_catalogs):
    MetadataCatalog.get("metric_inputs_test").set(thing_dataset_id_to_contiguous_id={1: 0})
    evaluator = YTVISEvaluator("metric_inputs_test", distributed=False)
    pred = {"category_id": 0, "score": True, "segmentations": copy.deepcopy(MASKS)}
    with pytest.raises(YTVISFormatError, match=r"dataset 'metric_inputs_test': video 7, "
                                               r"prediction #0: 'score' must be a finite number, "
                                               r"got True"):
        evaluator.process([{"video_id": 7, "length": 3}], [[pred]])
