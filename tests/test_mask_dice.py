"""Dice loss on the mask head (MODEL.VIS.MASK_DICE_WEIGHT): its numbers, and that it trains the
mask head from the mask loss's own targets."""
import os

import pytest
import torch

from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from helpers import training_pair
import vis_d2  # noqa: F401
from vis_d2.config import get_vis_cfg
from vis_d2.modeling.roi_heads import mask_dice_loss

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "synthvis", "R18_demo.yaml")


def test_dice_loss_numbers():
    big = 30.0  # sigmoid(30) == 1 and sigmoid(-30) == 0 in float32 up to 1e-13
    g = torch.zeros(2, 4, 4)
    g[:, :2] = 1.0  # 8 target pixels per RoI
    perfect = torch.where(g > 0, big, -big)
    assert mask_dice_loss(perfect, g).item() == pytest.approx(1.0 - 17.0 / 17.0, abs=1e-6)
    # RoI 0 predicts all 16 pixels: 1 - (2*8 + 1) / (16 + 8 + 1); RoI 1 predicts none:
    # 1 - 1 / (0 + 8 + 1). The loss is their mean.
    logits = torch.stack([torch.full((4, 4), big), torch.full((4, 4), -big)])
    expected = ((1 - 17 / 25) + (1 - 1 / 9)) / 2
    assert mask_dice_loss(logits, g).item() == pytest.approx(expected, rel=1e-6)
    # Soft predictions: p = 0.5 everywhere against the same target.
    half = torch.zeros(1, 4, 4)
    assert mask_dice_loss(half, g[:1]).item() == pytest.approx(1 - 9 / 17, rel=1e-6)
    # No RoI: a zero that keeps the graph.
    empty = torch.zeros(0, 4, 4, requires_grad=True)
    out = mask_dice_loss(empty, torch.zeros(0, 4, 4))
    assert out.item() == 0.0 and out.requires_grad


def _model(*opts):
    torch.manual_seed(0)
    return build_model(get_vis_cfg(CONFIG, ["MODEL.DEVICE", "cpu", *opts]))


def test_training_adds_the_weighted_dice_loss_on_the_mask_targets(monkeypatch):
    import vis_d2.modeling.roi_heads as roi_heads_mod

    m = _model("MODEL.VIS.MASK_DICE_WEIGHT", "2.0")
    m.train()
    seen = {}

    def recording(logits, targets):
        seen.update(logits=logits.detach(), targets=targets)
        return mask_dice_loss(logits, targets)

    monkeypatch.setattr(roi_heads_mod, "mask_dice_loss", recording)
    with EventStorage(0):
        losses = m([training_pair()])
    logits, targets = seen["logits"], seen["targets"]
    # one (M, M) mask per foreground proposal: the class-agnostic head's only mask, against
    # the binary crops of each proposal's ground truth (every one holds part of its object)
    assert logits.dim() == 3 and logits.shape[1:] == (28, 28) and logits.shape[0] > 0
    assert set(targets.unique().tolist()) <= {0.0, 1.0}
    assert (targets.flatten(1).sum(1) > 0).all()
    expected = 2.0 * mask_dice_loss(logits, targets)
    assert losses["loss_mask_dice"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0.0 < losses["loss_mask_dice"].item() < 2.0
    # it trains the mask head
    m.zero_grad()
    losses["loss_mask_dice"].backward()
    assert float(m.roi_heads.mask_head.predictor.weight.grad.abs().sum()) > 0

    # without masks in the batch: a zero loss that keeps the mask head in the graph (DDP)
    with EventStorage(0):
        losses = m([training_pair(with_masks=False)])
    assert losses["loss_mask_dice"].item() == 0.0 and losses["loss_mask_dice"].requires_grad


def test_off_by_default_and_checked():
    m = _model()
    m.train()
    with EventStorage(0):
        assert "loss_mask_dice" not in m([training_pair()])
    with pytest.raises(ValueError, match="MASK_DICE_WEIGHT must be >= 0"):
        _model("MODEL.VIS.MASK_DICE_WEIGHT", "-1.0")
