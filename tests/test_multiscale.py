"""Multi-scale testing (paper Sec. 3.5.5) through ``FusedFrameModel``: one scale is today's
inference to the bit, several scales fuse boxes and average masks and embeddings, on every
inference path (evaluator, predictor), and bad scales are refused naming the key."""
import os
import sys

import numpy as np
import pytest
import torch

from detectron2.data import transforms as T
from detectron2.layers import paste_masks_in_image
from detectron2.layers.mask_ops import _do_paste_mask
from detectron2.modeling import build_model
from detectron2.structures import Boxes

from vis_d2.config import get_vis_cfg
from vis_d2.data.video_test_mapper import VideoTestDatasetMapper
from vis_d2.engine import VISPredictor, VISTrainer, cache_video_detections
from vis_d2.engine.frame_fusion import FusedFrameModel, FusionMember, average_mask_probs
from vis_d2.tracking import VideoTracker

from helpers import TINY_OPTS

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "synthvis", "R18_demo.yaml")
# Every class hypothesis kept, so a random model detects in every frame.
OPTS = TINY_OPTS + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
THREE = ["TEST.VIS.SCALES", "(0.7, 1.0, 1.3)"]


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.eval()
    return model


@pytest.fixture
def val_video(data_root, restore_catalogs):
    """The first synthvis_val video of the tiny data, mapped for testing."""
    from detectron2.data import DatasetCatalog

    from vis_d2.data.builtin import register_all_ytvis

    register_all_ytvis(str(data_root))
    cfg = get_vis_cfg(CONFIG, OPTS)
    return VideoTestDatasetMapper(cfg)(DatasetCatalog.get("synthvis_val")[0])


def _same(a, b):
    assert len(a) == len(b)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa.boxes, fb.boxes)
        np.testing.assert_array_equal(fa.scores, fb.scores)
        np.testing.assert_array_equal(fa.labels, fb.labels)
        np.testing.assert_array_equal(fa.embeddings, fb.embeddings)
        assert fa.masks == fb.masks


def test_one_scale_is_todays_inference_on_the_evaluator_path(val_video):
    """SCALES (1.0,): the frame read at its size and resized by the FusedFrameModel gives the
    cache of the bare model on the mapper's input, bit for bit."""
    cfg = get_vis_cfg(CONFIG, OPTS)
    assert tuple(cfg.TEST.VIS.SCALES) == (1.0,)
    model = _model(cfg)
    tracker = VideoTracker.from_config(cfg)
    today = cache_video_detections(model, val_video, tracker)
    fused = cache_video_detections(FusedFrameModel.from_config(cfg, model), val_video, tracker)
    assert sum(len(f) for f in today) > 0
    _same(today, fused)


def test_one_scale_is_todays_inference_on_the_predictor_path():
    cfg = get_vis_cfg(CONFIG, OPTS)
    predictor = VISPredictor(cfg)
    frame = np.random.default_rng(0).integers(0, 255, (72, 100, 3), dtype=np.uint8)
    # VISPredictor.predict_frame before multi-scale testing
    img = frame[:, :, ::-1] if cfg.INPUT.FORMAT == "RGB" else frame
    aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    resized = aug.get_transform(img).apply_image(img)
    x = {"image": torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))),
         "height": 72, "width": 100}
    with torch.no_grad():
        expected = predictor.model([x])[0]["instances"]
    got = predictor.predict_frame(frame)
    assert len(got) == len(expected) > 0
    for field in ("scores", "pred_classes", "pred_masks", "pred_embeds"):
        assert torch.equal(got.get(field), expected.get(field)), field
    assert torch.equal(got.pred_boxes.tensor, expected.pred_boxes.tensor)


def test_three_scales_run_every_pass_and_fuse(val_video, monkeypatch):
    """Each frame: the backbone and the given-box heads run once per scale, at 0.7/1.0/1.3 x the
    test size; the cached frame holds the fused detections at the video's size."""
    cfg = get_vis_cfg(CONFIG, OPTS + THREE)
    model = _model(cfg)
    fused = FusedFrameModel.from_config(cfg, model)
    assert fused.scales == (0.7, 1.0, 1.3) and fused.num_passes == 3
    sizes, given = [], []
    model.backbone.register_forward_pre_hook(lambda m, i: sizes.append(tuple(i[0].shape[-2:])))
    real = model.roi_heads.forward_with_given_boxes
    monkeypatch.setattr(model.roi_heads, "forward_with_given_boxes",
                        lambda f, inst: given.append(len(inst[0])) or real(f, inst))
    frames = val_video["frames"]
    with torch.no_grad():
        inst = fused(frames.read(0), frames.image_format)
    h, w = val_video["height"], val_video["width"]
    assert inst.image_size == (h, w) and inst.pred_masks.shape == (len(inst), h, w)
    assert inst.pred_embeds.shape == (len(inst), 32) and len(inst) > 0
    # the test size is a 96 short side (max 160); each pass's input is a multiple of it
    # (the backbone pads to a multiple of its size divisibility, 32 or 64)
    short = [round(96 * s) for s in (0.7, 1.0, 1.3)]
    assert len(sizes) == 3 and all(min(sz) >= s for sz, s in zip(sizes, short))
    # each pass's own inference calls the given-box heads too; then the merged boxes go to
    # each pass
    assert len(given) == 6 and given[3:] == [len(inst)] * 3
    assert len(inst) <= cfg.TEST.DETECTIONS_PER_IMAGE
    assert torch.all(inst.scores[:-1] >= inst.scores[1:])  # sorted by the merged score


def test_three_scales_evaluate_end_to_end(data_root, restore_catalogs, tmp_path):
    """--eval-only's path (VISTrainer.test) with three scales: scored, results written."""
    from vis_d2.data.builtin import register_all_ytvis

    register_all_ytvis(str(data_root))
    cfg = get_vis_cfg(CONFIG, OPTS + THREE + ["OUTPUT_DIR", str(tmp_path),
                                              "DATASETS.TEST", "('synthvis_val',)"])
    res = VISTrainer.test(cfg, _model(cfg))
    assert 0.0 <= res["segm"]["AP"] <= 1.0
    assert os.path.isfile(tmp_path / "inference" / "synthvis_val" / "results.json")


def test_predictor_tracks_at_three_scales():
    cfg = get_vis_cfg(CONFIG, OPTS + THREE + ["TEST.VIS.PREDICT_SCORE_THRESH", "0.0"])
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (72, 96, 3), dtype=np.uint8) for _ in range(3)]
    preds = VISPredictor(cfg)(frames)
    assert len(preds) > 0
    assert all(len(p["segmentations"]) == 3 for p in preds)
    assert all(s is None or tuple(s["size"]) == (72, 96) for p in preds for s in p["segmentations"])


def _constant_heads(monkeypatch, model, mask_prob, embed):
    """Make the model's given-box heads output ``mask_prob`` everywhere and ``embed`` for
    every box (the boxes, classes and scores pass through)."""
    real = model.roi_heads.forward_with_given_boxes

    def constant(features, instances):
        out = real(features, instances)
        for inst in out:
            inst.pred_masks = torch.full_like(inst.pred_masks, mask_prob)
            inst.pred_embeds = torch.as_tensor(embed, dtype=torch.float32).repeat(len(inst), 1)
        return out

    monkeypatch.setattr(model.roi_heads, "forward_with_given_boxes", constant)


@pytest.mark.parametrize("probs, inside", [((0.3, 0.8), True), ((0.3, 0.6), False)])
def test_masks_and_embeddings_are_averaged_over_passes(monkeypatch, probs, inside):
    """Two models at one scale: the mask of each merged box is the mean of the two models'
    probabilities (0.55 >= 0.5: the whole box; 0.45: nothing), its embedding their mean."""
    cfg = get_vis_cfg(CONFIG, OPTS)
    a, b = _model(cfg, 0), _model(cfg, 1)
    ea, eb = torch.zeros(32), torch.zeros(32)
    ea[0], eb[0], eb[1] = 2.0, 4.0, 6.0
    _constant_heads(monkeypatch, a, probs[0], ea)
    _constant_heads(monkeypatch, b, probs[1], eb)
    fused = FusedFrameModel([FusionMember.from_config(cfg, a, "a", with_classes=False),
                             FusionMember.from_config(cfg, b, "b", with_classes=False)])
    frame = np.random.default_rng(2).integers(0, 255, (80, 120, 3), dtype=np.uint8)
    inst = fused(frame)
    assert len(inst) > 0
    expected = torch.zeros(32)
    expected[0], expected[1] = 3.0, 3.0
    assert torch.allclose(inst.pred_embeds, expected.expand(len(inst), 32))
    areas = inst.pred_masks.flatten(1).sum(1)
    if inside:
        # a constant mask pasted in its box covers the box's pixels (up to the border pixels)
        boxes = inst.pred_boxes.tensor
        outer = ((boxes[:, 2:].ceil() - boxes[:, :2].floor()) + 1).prod(1)
        inner = ((boxes[:, 2:].floor() - boxes[:, :2].ceil()) - 1).clamp(min=0).prod(1)
        assert torch.all(areas <= outer) and torch.all(areas >= inner)
        assert areas.sum() > 0
    else:
        assert torch.all(areas == 0)


def test_average_mask_probs_numbers_and_resolution():
    p1 = torch.full((2, 1, 4, 4), 0.2)
    p2 = torch.full((2, 1, 4, 4), 0.6)
    assert torch.allclose(average_mask_probs([p1, p2]), torch.full((2, 1, 4, 4), 0.4))
    small = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # (1, 1, 2, 2): left 0, right 1
    out = average_mask_probs([small, torch.full((1, 1, 4, 4), 0.5)])
    assert out.shape == (1, 1, 4, 4)
    # bilinear 2 -> 4 (align_corners False): columns 0, 0.25, 0.75, 1, then mean with 0.5
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.25, 0.375, 0.625, 0.75]))


def test_averaging_in_the_box_equals_averaging_pasted_masks():
    """Pasting is linear: averaging the M x M probabilities then pasting gives the mean of the
    pasted soft masks, so the fused mask is the average of the masks at the frame's size."""
    gen = torch.Generator().manual_seed(0)
    probs = [torch.rand((3, 28, 28), generator=gen) for _ in range(3)]
    boxes = torch.tensor([[5.0, 7.0, 60.0, 41.5], [0.0, 0.0, 99.0, 63.0], [30.2, 10.7, 51.9, 33.3]])
    pasted = [_do_paste_mask(p[:, None], boxes, 64, 100, skip_empty=False)[0] for p in probs]
    mean_of_pasted = torch.stack(pasted).mean(0)
    avg = average_mask_probs([p[:, None] for p in probs])[:, 0]
    pasted_mean = _do_paste_mask(avg[:, None], boxes, 64, 100, skip_empty=False)[0]
    assert torch.allclose(pasted_mean, mean_of_pasted, atol=1e-5)
    binary = paste_masks_in_image(avg, Boxes(boxes), (64, 100), threshold=0.5)
    assert torch.equal(binary, mean_of_pasted >= 0.5)


@pytest.mark.parametrize("scales", ["(0.0, 1.0)", "(-0.7,)", "()"])
def test_bad_scales_are_refused_naming_the_key(scales):
    cfg = get_vis_cfg(CONFIG, OPTS + ["TEST.VIS.SCALES", scales])
    with pytest.raises(ValueError, match=r"TEST\.VIS\.SCALES"):
        VISPredictor(cfg)


def test_multiscale_without_ensemble_boxes_names_the_extra(monkeypatch):
    """One scale needs no ensemble-boxes; several say which extra installs it."""
    monkeypatch.setitem(sys.modules, "ensemble_boxes", None)  # import ensemble_boxes fails
    frame = np.random.default_rng(3).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    cfg = get_vis_cfg(CONFIG, OPTS)
    model = _model(cfg)
    assert len(FusedFrameModel.from_config(cfg, model)(frame)) > 0
    cfg3 = get_vis_cfg(CONFIG, OPTS + THREE)
    with pytest.raises(ImportError, match=r"pip install 'vis_d2\[ensemble\]'"):
        FusedFrameModel.from_config(cfg3, model)(frame)


def test_predict_command_takes_scales(tmp_path, monkeypatch, capsys):
    """python -m vis_d2.predict --scales: the same per-frame fusion; a bad scale is refused."""
    import cv2

    from vis_d2 import predict

    monkeypatch.setattr(predict, "setup_logger", lambda *a, **k: None)
    folder = tmp_path / "clip"
    folder.mkdir()
    rng = np.random.default_rng(6)
    for t in range(2):
        cv2.imwrite(str(folder / f"{t:05d}.png"), rng.integers(0, 255, (64, 96, 3), np.uint8))
    seen = []
    real = FusedFrameModel.__call__
    monkeypatch.setattr(FusedFrameModel, "__call__",
                        lambda self, *a: seen.append(self.scales) or real(self, *a))
    args = ["--config-file", CONFIG, "--input", str(folder), "--output", str(tmp_path / "out"),
            "--confidence-threshold", "0", *OPTS, "MODEL.WEIGHTS", ""]
    (video, json_path, n), = predict.main(args[:6] + ["--scales", "0.7", "1.3"] + args[6:])
    assert seen == [(0.7, 1.3)] * 2 and n > 0 and os.path.isfile(json_path)
    with pytest.raises(SystemExit):
        predict.main(args[:6] + ["--scales", "0"] + args[6:])
    assert "--scales: every scale must be a number > 0" in capsys.readouterr().err
