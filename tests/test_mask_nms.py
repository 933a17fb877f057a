"""Per-class mask NMS (vis_d2/modeling/mask_nms.py, MODEL.VIS.MASK_NMS_THRESH)."""
import pytest
import torch

from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from vis_d2.config import get_vis_cfg
from vis_d2.modeling.mask_nms import mask_nms, pairwise_mask_iou


def _masks(*rects, size=(10, 20)):
    """(N, H, W) bool masks, one filled rectangle (x1, y1, x2, y2), end-exclusive, each."""
    out = torch.zeros(len(rects), *size, dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(rects):
        out[i, y1:y2, x1:x2] = True
    return out


def _instances(masks, scores, classes):
    inst = Instances(tuple(masks.shape[1:]))
    inst.pred_masks = masks
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes, dtype=torch.long)
    inst.pred_boxes = Boxes(torch.zeros(len(scores), 4))
    inst.tag = torch.arange(len(scores))  # any other field follows the kept detections
    return inst


def test_pairwise_mask_iou_hand_counted_and_chunked():
    # A: 10x10 = 100 px; B: 5x10 = 50 px inside A; C: 5x10, 25 px shared with A; D: empty.
    masks = _masks((0, 0, 10, 10), (0, 0, 5, 10), (5, 5, 10, 15), (0, 0, 0, 0), size=(20, 20))
    expected = torch.tensor([
        [1.0, 50 / 100, 25 / 125, 0.0],
        [50 / 100, 1.0, 0 / 100, 0.0],
        [25 / 125, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ])
    assert torch.allclose(pairwise_mask_iou(masks), expected)
    # chunks of 7 pixels (not a divisor of 400) give the same matrix
    assert torch.allclose(pairwise_mask_iou(masks, chunk=7), expected)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        pairwise_mask_iou(masks[0])


def test_mask_nms_drops_same_class_overlaps_in_score_order():
    # 0 and 1: IoU 0.5, same class -> the lower score (0) goes at 0.3, both stay at 0.6.
    # 2: same mask as 1 but another class: never suppressed by 1.
    # 3: A's mask again (IoU 1 with 0, 0.5 with 1), same class, lowest of the three: it goes
    # at any threshold below 1. 4 is far away.
    masks = _masks((0, 0, 10, 10), (0, 0, 5, 10), (0, 0, 5, 10), (0, 0, 10, 10), (15, 0, 20, 5))
    inst = _instances(masks, [0.5, 0.9, 0.8, 0.4, 0.3], [1, 1, 2, 1, 1])
    kept = mask_nms(inst, 0.3)
    assert kept.tag.tolist() == [1, 2, 4]          # input order, all fields kept
    assert kept.scores.tolist() == pytest.approx([0.9, 0.8, 0.3])
    assert mask_nms(inst, 0.6).tag.tolist() == [0, 1, 2, 4]
    # IoU must exceed the threshold: at 1 nothing is dropped
    assert mask_nms(inst, 1.0).tag.tolist() == [0, 1, 2, 3, 4]


def test_mask_nms_edge_cases_and_errors():
    empty = _instances(torch.zeros(0, 4, 4, dtype=torch.bool), [], [])
    assert len(mask_nms(empty, 0.3)) == 0
    one = _instances(_masks((0, 0, 2, 2), size=(4, 4)), [0.1], [0])
    assert len(mask_nms(one, 0.3)) == 1
    two = _instances(_masks((0, 0, 2, 2), (0, 0, 2, 2), size=(4, 4)), [0.1, 0.2], [0, 0])
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="MODEL.VIS.MASK_NMS_THRESH"):
            mask_nms(two, bad)
    unpasted = _instances(torch.rand(2, 1, 28, 28), [0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="pasted"):
        mask_nms(unpasted, 0.3)


def test_video_rcnn_applies_mask_nms_to_its_outputs(monkeypatch):
    """VideoRCNN runs mask NMS on what GeneralizedRCNN's inference returns (pasted masks), at
    MODEL.VIS.MASK_NMS_THRESH; 0 returns the detections untouched."""
    from detectron2.modeling import GeneralizedRCNN

    masks = _masks((0, 0, 10, 10), (0, 0, 5, 10), (15, 0, 20, 5))
    raw = _instances(masks, [0.9, 0.6, 0.5], [0, 0, 0])
    monkeypatch.setattr(GeneralizedRCNN, "inference",
                        lambda self, *a, **k: [{"instances": raw}])
    frame = [{"image": torch.zeros(3, 10, 20, dtype=torch.uint8), "height": 10, "width": 20}]
    for thresh, expected in [(0.3, [0, 2]), (0.0, [0, 1, 2])]:
        cfg = get_vis_cfg("configs/synthvis/R18_demo.yaml",
                          ["MODEL.DEVICE", "cpu", "MODEL.VIS.MASK_NMS_THRESH", str(thresh)])
        model = build_model(cfg).eval()
        assert model.mask_nms_thresh == thresh
        with torch.no_grad():
            out = model(frame)
        assert out[0]["instances"].tag.tolist() == expected
    with pytest.raises(ValueError, match="MASK_NMS_THRESH"):
        build_model(get_vis_cfg("configs/synthvis/R18_demo.yaml",
                                ["MODEL.DEVICE", "cpu", "MODEL.VIS.MASK_NMS_THRESH", "1.5"]))
    with pytest.raises(ValueError, match="MASK_ON"):
        build_model(get_vis_cfg("configs/synthvis/R18_demo.yaml",
                                ["MODEL.DEVICE", "cpu", "MODEL.MASK_ON", "False",
                                 "MODEL.VIS.MASK_CLASS.ENABLED", "False"]))


def test_demo_config_turns_it_on():
    cfg = get_vis_cfg("configs/synthvis/R18_demo.yaml", [])
    assert cfg.MODEL.VIS.MASK_NMS_THRESH == 0.3
    assert get_vis_cfg("configs/ytvis_2021/R50_FPN_baseline.yaml", ["MODEL.DEVICE", "cpu"]).MODEL.VIS.MASK_NMS_THRESH == 0.0
