"""Wiring of the paper's components inside the model, with key and reference frames that differ.

The building blocks have their own numeric tests; these pin what connects them, each with
inputs where a mix-up changes the numbers:

* TCIS (Sec. 3.3) pools the key boxes on the key features and the reference boxes on the
  reference features; its offsets read ``F_ref - F_key``; ``loss_tcis`` is against the
  reference frame's masks.
* Mask scoring (Sec. 3.5.1): the MaskIoU head reads the predicted masks, and its target counts
  the object outside the proposal.
* Pseudo reference frames (Sec. 3.2): ``INPUT.VIS.PSEUDO_SHIFT`` is a fraction of the image size.
"""
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from detectron2.data import transforms as T
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, ImageList, Instances
from detectron2.utils.events import EventStorage

from helpers import TINY_OPTS
import vis_d2.modeling.roi_heads as roi_heads_module
from vis_d2.config import get_vis_cfg
from vis_d2.data.pseudo_pair_mapper import build_pseudo_reference_augmentation
from vis_d2.modeling.tcis import TCIS

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "synthvis", "R18_demo.yaml")
SIZE = (96, 128)  # (H, W) of both frames
SIDE = 28         # mask head output side
KEY_BOXES = [[8, 8, 40, 48], [60, 40, 100, 80]]      # track ids 1, 2
REF_BOXES = [[56, 30, 96, 70], [20, 12, 52, 52]]     # track ids 2, 1: moved and listed swapped


def _frame(boxes, ids, left_half_masks=False):
    """Instances of one frame: classes 1, 2 by track id, box-shaped masks (or only the left
    half of each box)."""
    inst = Instances(SIZE)
    m = torch.zeros((len(boxes),) + SIZE, dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        m[k, y0:y1, x0:(x0 + x1) // 2 if left_half_masks else x1] = True
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.gt_classes = torch.tensor(ids, dtype=torch.int64)
    inst.gt_track_ids = torch.tensor(ids, dtype=torch.int64)
    inst.gt_masks = BitMasks(m)
    return inst


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = get_vis_cfg(CONFIG, TINY_OPTS + [
        "MODEL.VIS.TCIS.ENABLED", "True", "MODEL.VIS.TCIS.BOTTLENECK_CHANNELS", "16",
        "MODEL.VIS.MASKIOU.ENABLED", "True", "MODEL.VIS.MASKIOU.CONV_DIM", "16",
        "MODEL.VIS.MASKIOU.FC_DIM", "32"])
    model = build_model(cfg)
    model.train()
    return model


def _features(model, seed):
    """Random FPN features of one frame, every level the backbone outputs."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(1, s.channels, SIZE[0] // s.stride, SIZE[1] // s.stride,
                              generator=g)
            for name, s in model.backbone.output_shape().items()}


def _run_roi_heads(model, proposal_boxes=()):
    """One training forward of the ROI heads on a key and a reference frame with different
    features, boxes and masks. Returns (losses, key features, reference features, key targets,
    reference targets)."""
    feats, ref_feats = _features(model, 1), _features(model, 2)
    key = _frame(KEY_BOXES, [1, 2])
    ref = _frame(REF_BOXES, [2, 1], left_half_masks=True)
    proposals = Instances(SIZE)
    boxes = torch.tensor(list(proposal_boxes) or [[0.0, 0.0, 20.0, 20.0]], dtype=torch.float32)
    proposals.proposal_boxes = Boxes(boxes)
    proposals.objectness_logits = torch.zeros(len(boxes))
    images = ImageList(torch.zeros(1, 3, *SIZE), [SIZE])
    with EventStorage(0):
        _, losses = model.roi_heads(images, feats, [proposals], [key], ref_features=ref_feats,
                                    ref_targets=[ref])
    return losses, feats, ref_feats, key, ref


class _RecordTCIS(nn.Module):
    """Stands in for TCIS: records its inputs, returns the reference features."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, key_feats, ref_feats, key_masks):
        self.seen.append((key_feats, ref_feats, key_masks))
        return ref_feats


def test_tcis_pools_key_boxes_on_key_features_and_reference_boxes_on_reference(
        model, monkeypatch):
    heads = model.roi_heads
    recorder = _RecordTCIS()
    monkeypatch.setattr(heads, "tcis", recorder)
    _, feats, ref_feats, key, ref = _run_roi_heads(model)
    (key_in, ref_in, masks_in), = recorder.seen
    levels = heads.mask_in_features
    # pairs in key order: track 1 (key row 0, reference row 1), track 2 (key 1, reference 0)
    expect_key = heads.mask_pooler([feats[f] for f in levels], [key.gt_boxes])
    expect_ref = heads.mask_pooler([ref_feats[f] for f in levels], [ref.gt_boxes[[1, 0]]])
    assert torch.allclose(key_in, expect_key) and torch.allclose(ref_in, expect_ref)
    # the two frames' poolings do differ: a swap of features or boxes would show
    assert not torch.allclose(expect_key, heads.mask_pooler([ref_feats[f] for f in levels],
                                                            [key.gt_boxes]))
    # the masked input is the key frame's ground truth at the key boxes (all ones here)
    side = key_in.shape[-1]
    assert torch.equal(masks_in.bool(), key.gt_masks.crop_and_resize(key.gt_boxes.tensor, side))


def test_tcis_offsets_read_reference_minus_key():
    torch.manual_seed(0)
    tcis = TCIS(ShapeSpec(channels=8, height=14, width=14), block="BasicBlock")
    seen = []

    def record(diff):
        seen.append(diff)
        return torch.zeros(diff.shape[0], 18, 14, 14)

    tcis.correlation_transform.forward = record
    key, ref = torch.randn(2, 8, 14, 14), torch.randn(2, 8, 14, 14)
    tcis(key, ref, torch.ones(2, 14, 14))
    assert len(seen) == 1 and torch.equal(seen[0], ref - key)


def test_loss_tcis_is_against_the_reference_frames_masks(model, monkeypatch):
    """Constant mask logits c: against the reference masks (the left half of each box) the
    per-pixel BCE is (softplus(-c) + softplus(c)) / 2; against the key frame's box-shaped
    masks it would be softplus(-c)."""
    c = 0.7
    heads = model.roi_heads
    monkeypatch.setattr(heads.mask_head, "layers",
                        lambda x: torch.full((x.shape[0], 1, SIDE, SIDE), c))
    losses, *_ = _run_roi_heads(model)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert losses["loss_tcis"].item() == pytest.approx(
        heads.tcis_loss_weight * (sp(-c) + sp(c)) / 2, rel=1e-5)


class _RecordIoU(nn.Module):
    """Stands in for the MaskIoU head: records the mask input, predicts 0 for every class."""

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.seen = []

    def forward(self, features, mask_probs):
        self.seen.append(mask_probs)
        return torch.zeros(features.shape[0], self.num_classes)


def test_maskiou_head_reads_the_predicted_masks(model, monkeypatch):
    heads = model.roi_heads
    ramp = torch.linspace(-3.0, 3.0, SIDE * SIDE).reshape(1, 1, SIDE, SIDE)
    monkeypatch.setattr(heads.mask_head, "layers", lambda x: ramp.expand(x.shape[0], -1, -1, -1))
    recorder = _RecordIoU(heads.num_classes)
    monkeypatch.setattr(heads, "maskiou_head", recorder)
    _run_roi_heads(model)
    probs, = recorder.seen
    # the sigmoid of the predicted logits, not a binary ground-truth crop
    assert probs.shape[1:] == (1, SIDE, SIDE) and probs.shape[0] >= 2
    assert torch.allclose(probs, ramp.sigmoid().expand_as(probs))


def test_maskiou_target_in_training_counts_the_object_outside_the_proposal(model, monkeypatch):
    """A perfect mask (it fills its box, as the box-shaped objects do) on the two ground-truth
    boxes (detectron2 adds them as proposals) gets target 1; on a proposal holding the left
    60 % of object 1 it gets 0.6: 768 of the object's 1280 pixels."""
    heads = model.roi_heads
    monkeypatch.setattr(heads.mask_head, "layers",
                        lambda x: torch.full((x.shape[0], 1, SIDE, SIDE), 10.0))
    seen = []
    real_loss = roi_heads_module.mask_iou_loss

    def record(pred, gt_classes, targets):
        seen.append(targets)
        return real_loss(pred, gt_classes, targets)

    monkeypatch.setattr(roi_heads_module, "mask_iou_loss", record)
    x0, y0, x1, y1 = KEY_BOXES[0]
    partial = [x0, y0, x0 + 0.6 * (x1 - x0), y1]
    losses, *_ = _run_roi_heads(model, [partial])
    targets, = seen
    assert sorted(targets.tolist()) == pytest.approx([0.6, 1.0, 1.0], abs=1e-4)
    assert losses["loss_maskiou"].item() > 0


def test_pseudo_reference_shift_is_a_fraction_of_the_image():
    """PSEUDO_SHIFT 0.1 on a 100 x 200 (H x W) image: shifts up to 20 px across, 10 px down."""
    cfg = get_vis_cfg(opts=["MODEL.DEVICE", "cpu", "INPUT.VIS.PSEUDO_SHIFT", "0.1",
                            "INPUT.VIS.PSEUDO_ROTATE", "0.0", "INPUT.VIS.PSEUDO_SCALE", "[1.0, 1.0]"])
    affine = build_pseudo_reference_augmentation(cfg)[0]
    image = np.zeros((100, 200, 3), np.uint8)
    np.random.seed(0)
    shifts = []
    for _ in range(40):
        t = affine.get_transform(image)
        origin = np.zeros((1, 2)) if isinstance(t, T.NoOpTransform) else t.apply_coords(
            np.zeros((1, 2)))
        shifts.append(origin[0])
    dx, dy = np.abs(np.array(shifts)).T
    assert dx.max() <= 20.0 + 1e-6 and dy.max() <= 10.0 + 1e-6
    # 40 uniform draws: the largest reaches well past half the range
    assert dx.max() > 10.0 and dy.max() > 5.0
