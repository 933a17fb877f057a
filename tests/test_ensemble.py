"""Model ensembles (paper Sec. 3.5.2): the box rule (max score, per class, normalised
coordinates), the greedy model selection, two tiny models end to end through
``python -m vis_d2.ensemble``, and the models it refuses."""
import json
import os

import numpy as np
import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from vis_d2.config import get_vis_cfg
from vis_d2.engine.box_fusion import fuse_boxes
from vis_d2.engine.frame_fusion import FusedFrameModel, FusionMember
from vis_d2.ensemble import (ModelSpec, build_ensemble, format_path, greedy_selection,
                             load_members, parse_model_spec)
from vis_d2.ensemble import __main__ as command
from vis_d2.ensemble.__main__ import main

from helpers import TINY_OPTS

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "synthvis", "R18_demo.yaml")
OPTS = TINY_OPTS + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    """In-process runs: detectron2's setup_logger would stop vis_d2's log propagation for later
    tests."""
    monkeypatch.setattr(command, "setup_logger", lambda *a, **k: None)


# ---- the box rule ------------------------------------------------------------------------------
def test_merged_score_is_the_max_not_the_mean():
    a = np.array([[10.0, 10, 50, 50]])
    b = np.array([[12.0, 10, 52, 50]])
    boxes, scores, labels = fuse_boxes([a, b], [np.array([0.9]), np.array([0.5])],
                                       [np.array([2]), np.array([2])], (200, 300))
    assert scores.tolist() == pytest.approx([0.9])  # the mean would be 0.7
    assert labels.tolist() == [2]
    # coordinates: the score-weighted mean of the two boxes
    x1 = (10 * 0.9 + 12 * 0.5) / 1.4
    np.testing.assert_allclose(boxes, [[x1, 10, x1 + 40, 50]], rtol=1e-5)


def test_only_boxes_of_one_class_merge():
    same = np.array([[20.0, 20, 80, 90]])
    boxes, scores, labels = fuse_boxes([same, same, same], [np.array([0.4]), np.array([0.7]),
                                                             np.array([0.6])],
                                       [np.array([0]), np.array([1]), np.array([0])], (100, 100))
    assert labels.tolist() == [1, 0] and scores.tolist() == pytest.approx([0.7, 0.6])
    np.testing.assert_allclose(boxes, np.repeat(same, 2, 0), rtol=1e-6)


def test_disjoint_boxes_stay_apart_and_come_back_in_pixels():
    """Normalising to [0, 1] for ensemble-boxes and back gives the frame's pixel coordinates;
    a box past the border is clipped to it, a zero-area box left out."""
    h, w = 360, 640
    a = np.array([[0.0, 0, 64, 36], [600.5, 300.25, 700, 400]])  # the second crosses the border
    b = np.array([[300.0, 100, 301.5, 220.75], [5.0, 5, 5, 40]])  # the second has no area
    boxes, scores, labels = fuse_boxes([a, b], [np.array([0.8, 0.3]), np.array([0.5, 0.9])],
                                       [np.array([0, 0]), np.array([0, 0])], (h, w))
    assert scores.tolist() == pytest.approx([0.8, 0.5, 0.3])
    np.testing.assert_allclose(boxes, [[0, 0, 64, 36], [300, 100, 301.5, 220.75],
                                       [600.5, 300.25, 640, 360]], atol=1e-4)
    assert labels.dtype == np.int64 and boxes.dtype == np.float32


def test_the_iou_threshold_decides_what_merges():
    a, b = np.array([[0.0, 0, 100, 100]]), np.array([[0.0, 0, 100, 60]])  # IoU 0.6
    args = ([a, b], [np.array([0.9]), np.array([0.8])], [np.array([0]), np.array([0])], (100, 100))
    assert len(fuse_boxes(*args, iou_thresh=0.55)[0]) == 1
    assert len(fuse_boxes(*args, iou_thresh=0.65)[0]) == 2


def test_fusion_of_nothing_and_bad_sets():
    empty = fuse_boxes([np.zeros((0, 4))] * 2, [np.zeros(0)] * 2, [np.zeros(0, int)] * 2, (10, 10))
    assert [x.shape for x in empty] == [(0, 4), (0,), (0,)]
    with pytest.raises(ValueError, match="model 'b' at scale 0.7 has 2 boxes, 1 scores"):
        fuse_boxes([np.zeros((1, 4)), np.ones((2, 4))], [np.ones(1), np.ones(1)],
                   [np.zeros(1), np.zeros(2)], (10, 10), names=["a", "model 'b' at scale 0.7"])
    with pytest.raises(ValueError, match="set 0 has scores outside"):
        fuse_boxes([np.ones((1, 4))], [np.array([1.5])], [np.zeros(1)], (10, 10))


# ---- greedy selection --------------------------------------------------------------------------
def test_greedy_adds_models_while_ap_improves():
    ap = {("A",): 0.40, ("B",): 0.42, ("C",): 0.30,
          ("B", "A"): 0.45, ("B", "C"): 0.43,
          ("B", "A", "C"): 0.44}
    calls = []

    def score(models):
        calls.append(models)
        return ap[models]

    selected, best, path = greedy_selection(["A", "B", "C"], score)
    assert selected == ("B", "A") and best == 0.45
    assert [(s.models, s.ap, s.kept) for s in path] == [
        (("A",), 0.40, False), (("B",), 0.42, True), (("C",), 0.30, False),
        (("B", "A"), 0.45, True), (("B", "C"), 0.43, False),
        (("B", "A", "C"), 0.44, False)]
    assert len(calls) == len(set(calls)) == 6  # every subset scored once
    text = format_path(path)
    assert "+ AP 0.4500  B + A" in text and "- AP 0.4400  B + A + C" in text


def test_greedy_keeps_one_model_when_no_addition_helps_and_breaks_ties_in_order():
    ap = {("A",): 0.5, ("B",): 0.5, ("A", "B"): 0.5}
    selected, best, path = greedy_selection(["A", "B"], lambda m: ap[m])
    assert selected == ("A",) and best == 0.5  # equal AP is no improvement
    assert [s.kept for s in path] == [True, False, False]
    with pytest.raises(ValueError, match="named twice"):
        greedy_selection(["A", "A"], lambda m: 0.0)


# ---- two tiny models end to end -----------------------------------------------------------------
@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """Weights of two tiny models of the demo's config, drawn with seeds 0 and 1."""
    out = tmp_path_factory.mktemp("ensemble_weights")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(get_vis_cfg(CONFIG, TINY_OPTS))
        DetectionCheckpointer(model, save_dir=str(out)).save(f"model_{seed}")
        paths.append(str(out / f"model_{seed}.pth"))
    return paths


def test_parse_model_spec():
    assert parse_model_spec("a/b.yaml:w/c.pth") == ModelSpec("a/b.yaml", "w/c.pth")
    assert parse_model_spec("a/b.yaml") == ModelSpec("a/b.yaml", None)
    assert parse_model_spec("a.yaml:") == ModelSpec("a.yaml", "")  # random initialisation
    assert parse_model_spec("x.yaml:s3:bucket/w.pth").weights == "s3:bucket/w.pth"
    with pytest.raises(ValueError, match="expected CONFIG.yaml"):
        parse_model_spec("weights.pth")


def test_ensemble_of_two_models_evaluates_end_to_end(data_root, restore_catalogs, two_checkpoints,
                                                     tmp_path):
    from vis_d2.data.builtin import register_all_ytvis

    register_all_ytvis(str(data_root))
    models = [f"{CONFIG}:{w}" for w in two_checkpoints]
    res = main(["--models", *models, "--dataset", "synthvis_val", "--output", str(tmp_path),
                *OPTS])
    assert 0.0 <= res["segm"]["AP"] <= 1.0
    results = json.loads((tmp_path / "synthvis_val" / "results.json").read_text())
    assert len(results) > 0 and {r["video_id"] for r in results} <= {1, 2}


def test_greedy_command_writes_its_path(data_root, restore_catalogs, two_checkpoints, tmp_path,
                                       capsys):
    from vis_d2.data.builtin import register_all_ytvis

    register_all_ytvis(str(data_root))
    models = [f"{CONFIG}:{w}" for w in two_checkpoints]
    res = main(["--models", *models, "--dataset", "synthvis_val", "--greedy",
                "--output", str(tmp_path), *OPTS])
    saved = json.loads((tmp_path / "synthvis_val" / "greedy.json").read_text())
    assert saved == res
    tried = [tuple(s["models"]) for s in saved["path"]]
    assert tried[:2] == [(models[0],), (models[1],)] and len(tried) == 3
    assert set(tried[2]) == set(models)  # the best single model, then the other one added
    kept = [s for s in saved["path"] if s["kept"]]
    assert tuple(saved["selected"]) == tuple(kept[-1]["models"]) and saved["ap"] == kept[-1]["ap"]
    assert "Greedy ensemble on synthvis_val" in capsys.readouterr().out


def test_ensemble_predicts_a_folder_of_frames(two_checkpoints, tmp_path):
    import cv2

    folder = tmp_path / "clip"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for t in range(3):
        cv2.imwrite(str(folder / f"{t:05d}.png"), rng.integers(0, 255, (64, 96, 3), np.uint8))
    done = main(["--models", *[f"{CONFIG}:{w}" for w in two_checkpoints], "--input", str(folder),
                 "--output", str(tmp_path / "out"), "--confidence-threshold", "0", *OPTS])
    video, json_path, n = done[0]
    preds = json.loads(open(json_path).read())
    assert n == len(preds) > 0 and os.path.getsize(video) > 0
    assert all(len(p["segmentations"]) == 3 for p in preds)


def test_ensemble_averages_both_models_and_merges_their_boxes(two_checkpoints, monkeypatch):
    """Per frame: both models detect once; the output is their merged set, each score the max
    of a cluster (so one of the models' own scores), and each embedding the mean of the two
    models' embeddings of the merged boxes."""
    lead, members = load_members([ModelSpec(CONFIG, w) for w in two_checkpoints], OPTS)
    ensemble = build_ensemble(lead, members)
    assert ensemble.num_passes == 2 and ensemble.scales == (1.0,)
    own, given = [], []
    for m in members:
        m.model.register_forward_hook(lambda mod, i, out: own.append(out[0]["instances"]))
        real = m.model.roi_heads.forward_with_given_boxes

        def record(features, inst, real=real):
            out = real(features, inst)
            given.append(out[0].pred_embeds.clone())
            return out

        monkeypatch.setattr(m.model.roi_heads, "forward_with_given_boxes", record)
    frame = np.random.default_rng(4).integers(0, 255, (72, 96, 3), dtype=np.uint8)
    inst = ensemble(frame)
    n = len(inst)
    assert len(own) == 2 and 0 < n <= len(own[0]) + len(own[1])
    own_scores = torch.cat([o.scores for o in own]).tolist()
    assert all(any(abs(s - o) < 1e-6 for o in own_scores) for s in inst.scores.tolist())
    assert inst.scores.max().item() == pytest.approx(max(own_scores))
    # given-box calls: model 1's own pass, model 2's own pass, then the merged boxes to each
    assert len(given) == 4 and given[2].shape == given[3].shape == (n, 32)
    assert torch.allclose(inst.pred_embeds, (given[2] + given[3]) / 2, atol=1e-6)
    assert inst.pred_masks.shape == (n, 72, 96) and inst.pred_masks.dtype == torch.bool


def test_models_with_different_class_lists_are_refused(two_checkpoints, tmp_path):
    """The second model was trained on YouTube-VIS 2019's 40 classes."""
    other = tmp_path / "ytvis_model.yaml"
    other.write_text(f'_BASE_: "{os.path.abspath(CONFIG)}"\n'
                     "MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 40\n"
                     'DATASETS:\n  TEST: ("ytvis_2019_val",)\n')
    with pytest.raises(ValueError, match=r"ensemble: model '.*R18_demo.yaml:.*model_0.pth' has 4 "
                                         r"classes but '.*ytvis_model.yaml:' has 40"):
        load_members([f"{CONFIG}:{two_checkpoints[0]}", f"{other}:"], OPTS)


def test_same_size_class_lists_with_other_names_are_refused():
    cfg = get_vis_cfg(CONFIG, OPTS)
    model = build_model(cfg).eval()
    a = FusionMember("a.yaml", model, "BGR", 96, 160, (("cat", "dog"), (1, 2)))
    b = FusionMember("b.yaml", model, "BGR", 96, 160, (("cat", "fox"), (1, 2)))
    with pytest.raises(ValueError, match=r"'a.yaml' and 'b.yaml' have different class lists: "
                                         r"class 1 is 'dog' \(dataset id 2\)"):
        FusedFrameModel([a, b])


def test_models_with_different_embedding_sizes_are_refused():
    small = get_vis_cfg(CONFIG, OPTS + ["MODEL.VIS.TRACK_HEAD.EMBED_DIM", "16"])
    big = get_vis_cfg(CONFIG, OPTS)
    members = [FusionMember.from_config(c, build_model(c).eval(), n, with_classes=False)
               for c, n in ((big, "big.yaml"), (small, "small.yaml"))]
    with pytest.raises(ValueError, match=r"'small.yaml' has track embeddings of size 16 but "
                                         r"'big.yaml' has 32"):
        FusedFrameModel(members)


def test_command_line_refusals(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["--models", f"{CONFIG}:", "--input", str(tmp_path), "--greedy", "--output",
              str(tmp_path)])
    assert "--greedy chooses models by their AP on a split" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--models", f"{CONFIG}:", "--dataset", "no_such_split", "--output", str(tmp_path)])
    assert "--dataset 'no_such_split' is not registered" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--models", f"{CONFIG}:", "--dataset", "synthvis_val", "--scales", "0",
              "--output", str(tmp_path)])
    assert "--scales: every scale must be a number > 0" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_members(["missing.yaml:w.pth"])
