"""Mask scoring (Mask Scoring R-CNN, paper Sec. 3.5.1): IoU targets on hand-made masks (against
the object's full area, the part outside the proposal included), the MaskIoU head's input and
output shapes, its loss over the positive RoIs only (and where its gradient goes) in a training
step, and inference rescoring ``score x predicted mask IoU``."""
import math
import os

import pytest
import torch
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

from helpers import training_pair
import vis_d2  # noqa: F401
from vis_d2.config import get_vis_cfg
from vis_d2.modeling.mask_iou_head import (
    MaskIoUHead,
    gt_area_outside_boxes,
    mask_iou_inference,
    mask_iou_loss,
    mask_iou_targets,
)

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "synthvis", "R18_demo.yaml")


def test_iou_target_of_two_squares():
    pred = torch.full((1, 28, 28), -3.0)
    pred[0, 0:14, 0:14] = 2.0                  # 14 x 14 = 196 pixels
    gt = torch.zeros(1, 28, 28, dtype=torch.bool)
    gt[0, 7:21, 7:21] = True                   # 196 pixels, overlap 7 x 7 = 49
    iou = mask_iou_targets(pred, gt, torch.zeros(1))
    assert iou.tolist() == [pytest.approx(49 / (196 + 196 - 49))]  # = 1/7

    # identical -> 1, disjoint -> 0, both empty -> 0, logit exactly 0 counts as background,
    # float gt masks are binarised at 0.5
    preds = torch.full((4, 28, 28), -1.0)
    gts = torch.zeros(4, 28, 28)
    preds[0, 3:10, 3:10] = 1.0
    gts[0, 3:10, 3:10] = 0.9
    preds[1, 0:5, 0:5] = 1.0
    gts[1, 20:28, 20:28] = 1.0
    preds[3, 0:4, 0:4] = 0.0
    gts[3, 0:2, 0:4] = 1.0
    gts[3, 2:4, 0:4] = 0.4
    assert mask_iou_targets(preds, gts, torch.zeros(4)).tolist() == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="differ in shape"):
        mask_iou_targets(pred, gt[:, :14, :14], torch.zeros(1))
    with pytest.raises(ValueError, match="one area per mask"):
        mask_iou_targets(pred, gt, torch.zeros(2))


def _square_object(kind):
    """A 40 x 40 object at x, y in [20, 60) of a 80 x 100 (H x W) image, as BitMasks or as
    PolygonMasks."""
    if kind == "bit":
        m = torch.zeros(1, 80, 100, dtype=torch.bool)
        m[0, 20:60, 20:60] = True
        return BitMasks(m)
    return PolygonMasks([[[20.0, 20.0, 60.0, 20.0, 60.0, 60.0, 20.0, 60.0]]])


@pytest.mark.parametrize("kind", ["bit", "polygon"])
def test_target_counts_the_part_of_the_object_outside_the_box(kind):
    """A box holding the left half of the object, its mask perfect inside the box: Mask Scoring
    R-CNN's target is 0.5 (the object's other half is missed), not 1 (the IoU inside the box)."""
    gt = _square_object(kind)
    half, whole, wider = [20.0, 20.0, 40.0, 60.0], [20.0, 20.0, 60.0, 60.0], [0.0, 20.0, 80.0, 60.0]
    boxes = torch.tensor([half, whole, wider])
    masks = gt[[0, 0, 0]]
    side = 28
    outside = gt_area_outside_boxes(masks, boxes, side, (80, 100))
    # half: 800 px outside, a cell of the 20 x 40 px box is (20/28) x (40/28) px -> 784 cells;
    # whole and wider: the object lies inside
    assert outside.tolist() == pytest.approx([784.0, 0.0, 0.0], abs=1e-3)
    crops = masks.crop_and_resize(boxes, side)
    perfect = torch.where(crops, 5.0, -5.0)          # the prediction is the ground truth's crop
    iou = mask_iou_targets(perfect, crops, outside)
    assert iou.tolist() == pytest.approx([0.5, 1.0, 1.0])
    # a prediction filling the wider box: IoU 1600 / 3200 px
    full = torch.full((1, side, side), 5.0)
    assert mask_iou_targets(full, crops[2:], outside[2:]).item() == pytest.approx(0.5)
    # a fractional box edge: x in [20, 30.5) holds 10.5 x 40 = 420 px of the 1600
    frac = torch.tensor([[20.0, 20.0, 30.5, 60.0]])
    assert gt_area_outside_boxes(gt[[0]], frac, side, (80, 100)).item() == pytest.approx(
        1180 * side * side / (10.5 * 40), rel=1e-4 if kind == "bit" else 0.03)
    with pytest.raises(ValueError, match="2 masks for 1 boxes"):
        gt_area_outside_boxes(gt[[0, 0]], frac, side, (80, 100))


def test_head_shapes_and_mask_max_pool():
    torch.manual_seed(0)
    head = MaskIoUHead(ShapeSpec(channels=256, height=14, width=14), num_classes=40,
                       conv_dim=32, fc_dim=64)
    feats, masks = torch.randn(3, 256, 14, 14), torch.rand(3, 1, 28, 28)
    assert head(feats, masks).shape == (3, 40)
    # four 3x3 convs, the last with stride 2: 14 x 14 -> 7 x 7 into the first FC
    assert len(head.convs) == 4 and head.convs[-1].stride == (2, 2)
    assert head.convs[0].in_channels == 257 and head.fc1.in_features == 32 * 7 * 7
    with pytest.raises(ValueError, match="expected features"):
        head(feats, torch.rand(3, 1, 14, 14))

    # what the convs see: the features with the 2x2-max-pooled mask as the last channel
    seen = []

    class Record(nn.Module):
        def forward(self, x):
            seen.append(x)
            return torch.zeros(x.shape[0], 32, 7, 7)

    head.convs = Record()
    masks = torch.zeros(1, 1, 28, 28)
    masks[0, 0, 3, 5] = 0.8
    masks[0, 0, 2, 4] = 0.3  # same 2x2 cell as (3, 5): the max wins
    masks[0, 0, 27, 27] = 0.6
    head(feats[:1], masks)
    x = seen[0]
    assert x.shape == (1, 257, 14, 14) and torch.equal(x[:, :256], feats[:1])
    expected = torch.zeros(14, 14)
    expected[1, 2] = 0.8
    expected[13, 13] = 0.6
    assert torch.equal(x[0, 256], expected)


def test_loss_hand_computed():
    pred = torch.tensor([[0.1, 0.2, 0.3], [0.7, 0.8, 0.9], [0.4, 0.5, 0.6]], requires_grad=True)
    loss = mask_iou_loss(pred, torch.tensor([2, 0, 1]), torch.tensor([0.5, 1.0, 0.0]))
    # the third RoI's target is 0: not positive, left out of the mean (Mask Scoring R-CNN)
    assert loss.item() == pytest.approx(((0.3 - 0.5) ** 2 + (0.7 - 1.0) ** 2) / 2)
    loss.backward()
    # only the gt class's output of the positive RoIs is trained
    assert pred.grad[0, :2].tolist() == [0.0, 0.0] and pred.grad[1, 1:].tolist() == [0.0, 0.0]
    assert pred.grad[2].tolist() == [0.0, 0.0, 0.0]
    # no positive RoI: a zero that keeps the graph
    zero = mask_iou_loss(pred, torch.tensor([2, 0, 1]), torch.zeros(3))
    assert zero.item() == 0.0 and zero.requires_grad
    empty = torch.zeros(0, 3, requires_grad=True)
    zero = mask_iou_loss(empty, torch.zeros(0, dtype=torch.long), torch.zeros(0))
    assert zero.item() == 0.0 and zero.requires_grad


def test_inference_rescoring_in_place():
    a, b = Instances((10, 10)), Instances((10, 10))
    a.scores, a.pred_classes = torch.tensor([0.9, 0.5]), torch.tensor([1, 0])
    b.scores, b.pred_classes = torch.tensor([0.8]), torch.tensor([2])
    pred = torch.tensor([[0.1, 0.6, 0.3], [0.4, 0.9, 0.9], [1.3, 0.0, -0.2]])
    mask_iou_inference(pred, [a, b])
    assert a.pred_maskiou.tolist() == pytest.approx([0.6, 0.4])
    assert a.scores.tolist() == pytest.approx([0.9 * 0.6, 0.5 * 0.4])
    # raw output kept; the score uses it clamped to [0, 1]
    assert b.pred_maskiou.tolist() == pytest.approx([-0.2]) and b.scores.tolist() == [0.0]


def _cfg(*opts):
    return get_vis_cfg(CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.VIS.MASKIOU.ENABLED", "True",
                                "MODEL.VIS.MASKIOU.CONV_DIM", "64", "MODEL.VIS.MASKIOU.FC_DIM",
                                "128", *opts])


_pair = training_pair


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(_cfg("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"))


def test_training_loss_trains_head_not_mask_head(model):
    model.train()
    model.zero_grad()
    with EventStorage(0):
        losses = model([_pair(), _pair(with_masks=False)])
    assert {"loss_mask", "loss_maskiou"} <= set(losses)
    assert math.isfinite(losses["loss_maskiou"].item()) and losses["loss_maskiou"].item() > 0
    losses["loss_maskiou"].backward()
    head = model.roi_heads.maskiou_head
    assert float(head.predictor.weight.grad.abs().sum()) > 0
    assert float(head.convs[0].weight.grad.abs().sum()) > 0
    # the predicted mask is detached: nothing flows back into the mask head
    for name, p in model.roi_heads.mask_head.named_parameters():
        assert p.grad is None or float(p.grad.abs().sum()) == 0.0, name

    # no image with masks: zero losses that keep the graph (DDP)
    model.zero_grad()
    with EventStorage(0):
        losses = model([_pair(with_masks=False)])
    assert losses["loss_maskiou"].item() == 0.0 and losses["loss_maskiou"].requires_grad
    losses["loss_maskiou"].backward()
    assert all(p.grad is not None for p in model.roi_heads.maskiou_head.parameters())


class _StubIoU(nn.Module):
    """Predicts IoU 0.1 * (c + 1) for class c, whatever the input; records the mask input."""

    def __init__(self, num_classes):
        super().__init__()
        self.values = 0.1 * torch.arange(1, num_classes + 1, dtype=torch.float32)
        self.seen = []

    def forward(self, features, mask_probs):
        self.seen.append((features.shape, mask_probs.shape))
        return self.values.expand(features.shape[0], -1).clone()


def test_inference_score_is_cls_score_times_maskiou(model):
    model.eval()
    img = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    real_head = model.roi_heads.maskiou_head
    try:
        model.roi_heads.maskiou_head = None  # plain Mask R-CNN scoring, same weights
        with torch.no_grad():
            plain = model([{"image": img}])[0]["instances"]
        stub = _StubIoU(4)
        model.roi_heads.maskiou_head = stub
        with torch.no_grad():
            scored = model([{"image": img}])[0]["instances"]
    finally:
        model.roi_heads.maskiou_head = real_head
    assert len(plain) > 0 and len(scored) == len(plain)
    fpn_channels = model.backbone.output_shape()["p2"].channels  # the mask pooler reads P2..P5
    assert stub.seen[0][0][1:] == (fpn_channels, 14, 14) and stub.seen[0][1][1:] == (1, 28, 28)
    assert torch.equal(scored.pred_classes, plain.pred_classes)
    expected_iou = 0.1 * (plain.pred_classes.float() + 1)
    assert torch.allclose(scored.pred_maskiou, expected_iou)
    assert torch.allclose(scored.scores, plain.scores * expected_iou)
    assert torch.equal(scored.pred_masks, plain.pred_masks)

    # the real head adds pred_maskiou too
    with torch.no_grad():
        real = model([{"image": img}])[0]["instances"]
    assert real.pred_maskiou.shape == (len(real),)


def test_needs_the_mask_branch():
    with pytest.raises(ValueError, match="MASK_ON"):
        build_model(_cfg("MODEL.MASK_ON", "False"))
