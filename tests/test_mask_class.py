"""Mask-shape classification (vis_d2.modeling.mask_class_head): the head tells hand-drawn
silhouettes apart, its loss trains it and not the mask branch, and inference rescores
``s^(1-w) * p^w``."""
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from detectron2.modeling import build_model
from detectron2.structures import Instances
from detectron2.utils.events import EventStorage

from helpers import training_pair
import vis_d2  # noqa: F401
from vis_d2.config import get_vis_cfg
from vis_d2.modeling.mask_class_head import (
    MaskClassHead,
    mask_class_inference,
    mask_class_loss,
)

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "synthvis", "R18_demo.yaml")


def _silhouettes(n, rng):
    """n filled discs (class 0) and n filled triangles (class 1), 28x28, random size/place."""
    yy, xx = np.mgrid[0:28, 0:28]
    masks, labels = [], []
    for k in range(2 * n):
        cls = k % 2
        r = rng.uniform(7, 12)
        cy, cx = rng.uniform(12, 16, size=2)
        if cls == 0:
            m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:  # apex up: inside when below the two slanted edges and above the base
            m = (yy <= cy + r * 0.8) & (np.abs(xx - cx) <= (yy - (cy - r)) * 0.6)
        masks.append(m.astype(np.float32))
        labels.append(cls)
    return torch.from_numpy(np.stack(masks))[:, None], torch.tensor(labels)


def test_head_learns_to_tell_discs_from_triangles():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = _silhouettes(32, rng)
    x_test, y_test = _silhouettes(16, rng)
    head = MaskClassHead(num_classes=2)
    assert head(x_test).shape == (32, 2)
    before = (head(x_test).argmax(1) == y_test).float().mean().item()
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3)
    for _ in range(60):
        loss = mask_class_loss(head(x_train), y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (head(x_test).argmax(1) == y_test).float().mean().item()
    assert loss.item() < 0.1 and acc == 1.0 and before <= 0.75
    # an untrained head has near-uniform outputs: the loss starts at ~log(2)
    fresh = MaskClassHead(num_classes=2)
    assert mask_class_loss(fresh(x_train), y_train).item() == pytest.approx(math.log(2), abs=0.05)
    assert mask_class_loss(fresh(x_train[:0]), y_train[:0]).item() == 0.0


def test_head_checks_its_input_and_arguments():
    head = MaskClassHead(num_classes=3, mask_size=28, conv_dims=(8,), fc_dim=16)
    assert head(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"expects \(R, 1, 28, 28\).*\(2, 3, 28, 28\)"):
        head(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="CONV_DIMS must not be empty"):
        MaskClassHead(num_classes=3, conv_dims=())
    with pytest.raises(ValueError, match="halve a 4x4 mask to nothing"):
        MaskClassHead(num_classes=3, mask_size=4, conv_dims=(8, 8, 8))


def test_inference_rescoring_numbers():
    a, b = Instances((10, 10)), Instances((10, 10))
    a.scores, a.pred_classes = torch.tensor([0.64, 0.25]), torch.tensor([1, 0])
    b.scores, b.pred_classes = torch.tensor([0.5]), torch.tensor([2])
    # softmax rows: [1/4, 1/4, 1/2] (log 1, 1, 2), [1/4, 1/2, 1/4], [1/3, 1/3, 1/3]
    logits = torch.log(torch.tensor([[1.0, 1.0, 2.0], [1.0, 2.0, 1.0], [1.0, 1.0, 1.0]]))
    mask_class_inference(logits, [a, b], score_weight=0.5)
    assert a.pred_mask_class_prob.tolist() == pytest.approx([0.25, 0.25])
    assert a.scores.tolist() == pytest.approx([math.sqrt(0.64 * 0.25), math.sqrt(0.25 * 0.25)])
    assert b.scores.tolist() == pytest.approx([math.sqrt(0.5 / 3)])
    c = Instances((10, 10))
    c.scores, c.pred_classes = torch.tensor([0.3]), torch.tensor([0])
    mask_class_inference(torch.zeros(1, 2), [c], score_weight=0.0)  # w = 0: scores unchanged
    assert c.scores.tolist() == pytest.approx([0.3]) and c.pred_mask_class_prob.item() == 0.5
    with pytest.raises(ValueError, match="2 outputs for 1 detections"):
        mask_class_inference(torch.zeros(2, 2), [c], score_weight=0.5)


def _cfg(*opts):
    return get_vis_cfg(CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.VIS.MASK_CLASS.ENABLED", "True",
                                *opts])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(_cfg("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"))


def test_training_loss_trains_head_not_mask_head(model):
    model.train()
    model.zero_grad()
    with EventStorage(0):
        losses = model([training_pair(), training_pair(with_masks=False)])
    loss = losses["loss_mask_cls"]
    # four foreground classes, near-uniform at the start: ~log(4)
    assert loss.item() == pytest.approx(math.log(4), abs=0.1)
    loss.backward()
    head = model.roi_heads.mask_class_head
    assert float(head.predictor.weight.grad.abs().sum()) > 0
    assert float(head.convs[0].weight.grad.abs().sum()) > 0
    for name, p in model.roi_heads.mask_head.named_parameters():  # the mask is detached
        assert p.grad is None or float(p.grad.abs().sum()) == 0.0, name

    model.zero_grad()  # no image with masks: a zero loss that keeps the graph (DDP)
    with EventStorage(0):
        losses = model([training_pair(with_masks=False)])
    assert losses["loss_mask_cls"].item() == 0.0 and losses["loss_mask_cls"].requires_grad


class _Stub(nn.Module):
    """Softmax 0.7 for class 0 and 0.1 for the others (4 classes), whatever the mask."""

    def forward(self, mask_probs):
        self.seen = tuple(mask_probs.shape)
        row = torch.log(torch.tensor([0.7, 0.1, 0.1, 0.1]))
        return row.expand(mask_probs.shape[0], -1).clone()


def test_inference_rescores_the_box_head_classes(model):
    model.eval()
    img = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    real_head = model.roi_heads.mask_class_head
    try:
        model.roi_heads.mask_class_head = None  # plain Mask R-CNN scoring, same weights
        with torch.no_grad():
            plain = model([{"image": img}])[0]["instances"]
        model.roi_heads.mask_class_head = stub = _Stub()
        with torch.no_grad():
            scored = model([{"image": img}])[0]["instances"]
    finally:
        model.roi_heads.mask_class_head = real_head
    assert len(plain) > 0 and len(scored) == len(plain)
    assert stub.seen[1:] == (1, 28, 28)
    assert torch.equal(scored.pred_classes, plain.pred_classes)
    p = torch.where(plain.pred_classes == 0, torch.tensor(0.7), torch.tensor(0.1))
    assert torch.allclose(scored.pred_mask_class_prob, p)
    w = model.roi_heads.mask_class_score_weight   # MODEL.VIS.MASK_CLASS.SCORE_WEIGHT
    assert 0 < w < 1
    assert torch.allclose(scored.scores, plain.scores.pow(1 - w) * p.pow(w))


def test_config_checks():
    with pytest.raises(ValueError, match="MASK_ON"):
        build_model(_cfg("MODEL.MASK_ON", "False"))
    with pytest.raises(ValueError, match=r"SCORE_WEIGHT must be in \[0, 1\]"):
        build_model(_cfg("MODEL.VIS.MASK_CLASS.SCORE_WEIGHT", "1.5"))


def test_training_on_gt_masks_adds_the_binary_targets(monkeypatch):
    import vis_d2.modeling.roi_heads as roi_heads_mod

    torch.manual_seed(0)
    m = build_model(_cfg("MODEL.VIS.MASK_CLASS.TRAIN_ON_GT_MASKS", "True"))
    m.train()
    seen = {}
    hook = m.roi_heads.mask_class_head.register_forward_hook(
        lambda mod, inp, out: seen.update(x=inp[0].detach()))

    def recording_loss(logits, gt_classes):
        seen.update(logits=logits.detach(), gt=gt_classes)
        return mask_class_loss(logits, gt_classes)

    monkeypatch.setattr(roi_heads_mod, "mask_class_loss", recording_loss)
    try:
        with EventStorage(0):
            losses = m([training_pair()])
    finally:
        hook.remove()
    x, gt = seen["x"], seen["gt"]
    r = x.shape[0] // 2
    assert x.shape[0] == 2 * r and r > 0 and x.shape[1:] == (1, 28, 28)
    pred_half, gt_half = x[:r, 0], x[r:, 0]
    # the ground-truth half is binary and every foreground proposal's crop holds its object
    assert set(gt_half.unique().tolist()) <= {0.0, 1.0}
    assert (gt_half.flatten(1).sum(1) > 0).all()
    # the predicted half is the (soft) sigmoid of the mask head's output
    assert ((pred_half > 0.01) & (pred_half < 0.99)).float().mean() > 0.5
    # both halves carry the same labels, and the loss is the cross-entropy over all 2R rows
    assert torch.equal(gt[:r], gt[r:])
    expected = torch.nn.functional.cross_entropy(seen["logits"], gt)
    assert losses["loss_mask_cls"].item() == pytest.approx(expected.item(), rel=1e-5)
