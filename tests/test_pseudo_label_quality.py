"""``python -m vis_d2.pseudo_labels.quality``: box precision and recall of pseudo labels per
(track length, track score) threshold, on hand-made tracks against a hand-made ground truth."""
import json
import math

import pytest

from vis_d2.pseudo_labels.quality import label_quality, main

VIDEOS = [{"id": 1, "length": 3, "width": 100, "height": 80,
           "file_names": ["v/0.jpg", "v/1.jpg", "v/2.jpg"]}]


def _ann(cat, boxes, score=None, crowd=0):
    ann = {"video_id": 1, "category_id": cat, "iscrowd": crowd, "bboxes": boxes,
           "segmentations": [None] * 3}
    if score is not None:
        ann["score"] = score
    return ann


GT = {"videos": VIDEOS, "categories": [{"id": 1}, {"id": 2}], "annotations": [
    _ann(1, [[10, 10, 20, 20], [12, 10, 20, 20], [14, 10, 20, 20]]),
    _ann(2, [[60, 40, 20, 20], [60, 40, 20, 20], None]),
    _ann(1, [[0, 60, 30, 20], None, None], crowd=1)]}
PSEUDO = {"videos": VIDEOS, "categories": GT["categories"], "annotations": [
    # object 1, right class, all 3 frames; frame 2 shifted by 10 px (IoU 1/3: wrong)
    _ann(1, [[10, 10, 20, 20], [12, 10, 20, 20], [24, 10, 20, 20]], score=0.8),
    # object 2 with the wrong class over its 2 frames
    _ann(1, [[60, 40, 20, 20], [61, 40, 20, 20], None], score=0.6),
    # one box of object 2, right class, a short low-score track
    _ann(2, [None, [60, 41, 20, 20], None], score=0.3),
    # on the crowd region: neither right nor wrong
    _ann(1, [[0, 60, 30, 20], None, None], score=0.9)]}


def test_precision_and_recall_per_threshold():
    rows = label_quality(PSEUDO, GT, lengths=[1, 2], scores=[0.0, 0.5])
    by = {(r["min_length"], r["min_score"]): r for r in rows}
    assert all(r["gt_boxes"] == 5 for r in rows)
    # everything: 6 boxes off the crowd, 3 correct (2 of object 1, 1 of object 2)
    r = by[(1, 0.0)]
    assert (r["tracks"], r["boxes"], r["correct"]) == (4, 6, 3)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(3 / 5)
    # score >= 0.5 drops the short right-class track: object 2 is no longer found
    r = by[(1, 0.5)]
    assert (r["tracks"], r["boxes"], r["correct"]) == (3, 5, 2)
    assert r["precision"] == pytest.approx(0.4) and r["recall"] == pytest.approx(2 / 5)
    # length >= 2 drops the short track and the crowd one
    r = by[(2, 0.0)]
    assert (r["tracks"], r["boxes"], r["correct"]) == (2, 5, 2)


def test_nothing_kept_has_no_precision(tmp_path):
    rows = label_quality(PSEUDO, GT, lengths=[5], scores=[0.0])
    assert rows[0]["boxes"] == 0 and math.isnan(rows[0]["precision"]) and rows[0]["recall"] == 0


def test_command_prints_the_table_and_names_a_foreign_video(tmp_path, capsys):
    p, g = tmp_path / "pseudo.json", tmp_path / "gt.json"
    p.write_text(json.dumps(PSEUDO))
    g.write_text(json.dumps(GT))
    rows = main([str(p), str(g), "--lengths", "1", "--scores", "0"])
    out = capsys.readouterr().out
    assert "5 ground-truth boxes" in out and "| 1 | 0 | 4 | 6 | 0.500 | 0.600 |" in out
    assert rows[0]["correct"] == 3
    other = dict(PSEUDO, videos=[dict(VIDEOS[0], id=7)])
    p.write_text(json.dumps(other))
    with pytest.raises(SystemExit):
        main([str(p), str(g)])
    assert "video 7 is not in" in capsys.readouterr().err
