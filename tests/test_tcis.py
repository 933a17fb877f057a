"""TCIS (paper Sec. 3.3): module shapes, deform conv with zero offsets == plain conv, gradients,
instance pairing across frames, the mask loss against the reference frame and a training step
(unchanged inference: tests/test_tcis_inference.py)."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads.mask_head import mask_rcnn_loss
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

import vis_d2  # noqa: F401
from vis_d2.config import get_vis_cfg
from vis_d2.modeling.tcis import TCIS, tcis_instance_pairs, tcis_mask_loss

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "synthvis", "R18_demo.yaml")


def _tcis(block="BottleneckBlock", channels=8, kernel=3):
    return TCIS(ShapeSpec(channels=channels, height=14, width=14), block=block,
                bottleneck_channels=4, deform_kernel=kernel, norm="")


@pytest.mark.parametrize("block", ["BottleneckBlock", "BasicBlock"])
def test_shapes(block):
    torch.manual_seed(0)
    m = _tcis(block, kernel=3)
    key, ref = torch.randn(5, 8, 14, 14), torch.randn(5, 8, 14, 14)
    masks = torch.rand(5, 14, 14) > 0.5
    assert m.offsets(key, ref).shape == (5, 2 * 3 * 3, 14, 14)
    assert m(key, ref, masks).shape == (5, 8, 14, 14)
    assert m.deform_conv.weight.shape == (8, 8, 3, 3)
    # k = 5: 50 offset channels, padding 2 keeps 14 x 14
    m5 = _tcis(block, kernel=5)
    assert m5.offsets(key, ref).shape == (5, 50, 14, 14)
    assert m5(key, ref, masks).shape == (5, 8, 14, 14)


def test_runs_under_cpu_bfloat16_autocast():
    """SOLVER.CPU_BF16 trains under CPU bfloat16 autocast, where torchvision's deform_conv2d
    has no kernel: TCIS runs it in float32, with the float32 result and gradients."""
    torch.manual_seed(0)
    m = _tcis()
    key, ref = torch.randn(3, 8, 14, 14), torch.randn(3, 8, 14, 14)
    masks = (torch.rand(3, 14, 14) > 0.5).float()
    offsets = torch.randn(3, 18, 14, 14)
    expected = m.correlated_feature(key * masks[:, None], offsets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m.correlated_feature((key * masks[:, None]).bfloat16(), offsets.bfloat16())
        out = m(key, ref, masks)
    assert got.dtype == torch.float32 and out.dtype == torch.float32
    # only the inputs' rounding to bfloat16 differs (8 mantissa bits)
    assert 0 < ((got - expected).norm() / expected.norm()).item() < 0.02
    out.sum().backward()
    assert float(m.deform_conv.weight.grad.abs().sum()) > 0


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="DEFORM_KERNEL"):
        _tcis(kernel=4)
    with pytest.raises(ValueError, match="TCIS.BLOCK"):
        _tcis(block="ResNeXtBlock")
    with pytest.raises(ValueError, match="key_masks"):
        _tcis()(torch.zeros(2, 8, 14, 14), torch.zeros(2, 8, 14, 14), torch.zeros(2, 7, 7))


def test_zero_offsets_reduce_to_plain_conv_of_masked_feature():
    torch.manual_seed(1)
    m = _tcis()
    key, ref = torch.randn(3, 8, 14, 14), torch.randn(3, 8, 14, 14)
    masks = torch.zeros(3, 14, 14)
    masks[:, 2:9, 4:12] = 1.0
    # the offsets conv starts at exactly zero ...
    offsets = m.offsets(key, ref)
    assert float(offsets.abs().max()) == 0.0
    masked = key * masks[:, None]
    w, b = m.deform_conv.weight, m.deform_conv.bias
    plain = F.conv2d(masked, w, b, padding=1)
    deform = m.correlated_feature(masked, offsets)
    assert float((deform - plain).abs().max()) < 1e-5
    assert float(plain.abs().max()) > 0.1  # a non-trivial comparison
    # ... so the whole module starts as conv(F_t * m_t) + F_t+d
    assert float((m(key, ref, masks) - (plain + ref)).abs().max()) < 1e-5
    # a masked-out pixel does not reach the output beyond the 3x3 receptive field
    key2 = key.clone()
    key2[:, :, 13, 0] += 100.0  # outside the mask
    assert float((m(key2, ref, masks) - m(key, ref, masks)).abs().max()) == 0.0


def test_gradient_reaches_correlation_transform_and_deform_conv():
    torch.manual_seed(2)
    m = _tcis()
    key = torch.randn(4, 8, 14, 14)
    ref = torch.randn(4, 8, 14, 14)
    masks = torch.rand(4, 14, 14) > 0.3
    m(key, ref, masks).pow(2).mean().backward()
    ct = m.correlation_transform
    assert float(m.deform_conv.weight.grad.abs().sum()) > 0
    # at init only the (zero) offsets conv gets gradient from the offsets ...
    assert float(ct.offsets.weight.grad.abs().sum()) > 0
    assert float(ct.offsets.bias.grad.abs().sum()) > 0
    # ... and once it is non-zero the ResNet block gets it too
    m.zero_grad()
    with torch.no_grad():
        ct.offsets.weight.normal_(std=0.01)
    m(key, ref, masks).pow(2).mean().backward()
    for name in ("conv1", "conv2", "conv3"):
        assert float(getattr(ct.block, name).weight.grad.abs().sum()) > 0, name


def _frame(ids, boxes, classes, size=(96, 128), masks="bit"):
    inst = Instances(size)
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    inst.gt_boxes = Boxes(boxes)
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    inst.gt_track_ids = torch.tensor(ids, dtype=torch.long)
    if masks == "bit":
        m = torch.zeros(len(ids), *size, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            m[k, y0:y1, x0:(x0 + x1) // 2] = True  # left half of the box
        inst.gt_masks = BitMasks(m)
    elif masks == "polygon":
        inst.gt_masks = PolygonMasks([
            [[x0, y0, (x0 + x1) / 2, y0, (x0 + x1) / 2, y1, x0, y1]]
            for x0, y0, x1, y1 in boxes.tolist()
        ])
    return inst


def test_pairs_only_instances_present_in_both_frames():
    key = _frame([1, 2, 3, 4], [[0, 0, 10, 10]] * 4, [0, 1, 2, 3])
    ref = _frame([3, 5, 1, 4], [[0, 0, 10, 10]] * 4, [2, 0, 0, 3])
    ref.gt_is_crowd = torch.tensor([False, False, False, True])
    (k, r), = tcis_instance_pairs([key], [ref])
    # 2 is only in the key frame, 5 only in the reference frame, 4 is crowd there
    assert k.tolist() == [0, 2] and r.tolist() == [2, 0]
    assert key.gt_track_ids[k].tolist() == ref.gt_track_ids[r].tolist() == [1, 3]

    # a box-only frame (no gt_masks) gives nothing, an empty frame too
    no_mask = _frame([1, 3], [[0, 0, 10, 10]] * 2, [0, 2], masks=None)
    empty = _frame([], [], [])
    pairs = tcis_instance_pairs([key, key, empty], [no_mask, ref, ref])
    assert [len(p[0]) for p in pairs] == [0, 2, 0]

    dup = _frame([1, 1], [[0, 0, 10, 10]] * 2, [0, 0])
    with pytest.raises(ValueError, match="track id appears twice"):
        tcis_instance_pairs([key], [dup])


def test_pairs_leave_out_weak_masks_and_auxiliary_objects_on_request():
    """An object whose mask is not valid in either frame is no TCIS instance; an auxiliary one
    is, unless ``with_auxiliary`` is False (class-specific masks)."""
    key = _frame([1, 2, 3, 4], [[0, 0, 10, 10]] * 4, [0, 1, 3, 0])
    ref = _frame([4, 3, 2, 1], [[0, 0, 10, 10]] * 4, [0, 3, 1, 0])
    key.gt_mask_valid = torch.tensor([True, False, True, True])  # 2: weak in the key frame
    ref.gt_mask_valid = torch.tensor([False, True, True, True])  # 4: weak in the reference
    key.gt_aux = torch.tensor([False, False, True, False])       # 3: auxiliary (class C = 3)
    ref.gt_aux = torch.tensor([False, True, False, False])
    (k, _), = tcis_instance_pairs([key], [ref])
    assert key.gt_track_ids[k].tolist() == [1, 3]
    (k, r), = tcis_instance_pairs([key], [ref], with_auxiliary=False)
    assert key.gt_track_ids[k].tolist() == [1] and ref.gt_track_ids[r].tolist() == [1]


def test_mask_loss_matches_mask_rcnn_loss_against_reference_gt():
    torch.manual_seed(3)
    ref = _frame([7, 8], [[8, 8, 40, 48], [60, 40, 100, 80]], [1, 3])
    logits = torch.randn(2, 4, 28, 28)
    loss = tcis_mask_loss(logits, [ref])
    # detectron2's mask loss with the reference boxes as the RoIs
    as_props = Instances(ref.image_size, proposal_boxes=ref.gt_boxes,
                         gt_classes=ref.gt_classes, gt_masks=ref.gt_masks)
    with EventStorage(0):
        expected = mask_rcnn_loss(logits, [as_props])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)

    # by hand: class-3 logits all c, gt is the left half of the box -> half softplus(-c),
    # half softplus(c); the other class's logits are ignored
    c = 0.7
    logits = torch.full((1, 4, 28, 28), -50.0)
    logits[0, 3] = c
    one = _frame([8], [[60, 40, 100, 80]], [3])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert tcis_mask_loss(logits, [one]).item() == pytest.approx((sp(-c) + sp(c)) / 2, rel=1e-5)


def _cfg(*opts):
    return get_vis_cfg(CONFIG, ["MODEL.DEVICE", "cpu", *opts])


def _pair(key_ids, ref_ids, masks="bit"):
    img = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    boxes = [[8, 8, 40, 48], [60, 40, 100, 80]]
    ref_boxes = [[12, 8, 44, 48], [60, 44, 100, 84]]
    return {"image": img, "instances": _frame(key_ids, boxes, [1, 2], masks=masks),
            "ref_image": img, "ref_instances": _frame(ref_ids, ref_boxes, [1, 2], masks=masks)}


@pytest.fixture(scope="module")
def tcis_model():
    torch.manual_seed(0)
    model = build_model(_cfg("MODEL.VIS.TCIS.ENABLED", "True"))
    model.train()
    return model


def test_training_step_with_tcis(tcis_model):
    model = tcis_model
    model.zero_grad()
    # pair 1: track 1 in both frames, 2 only in the key, 9 only in the reference -> 1 instance;
    # pair 2 (polygons): both tracks in both frames -> 2; pair 3 is box-only -> 0.
    batch = [_pair([1, 2], [1, 9]), _pair([3, 4], [4, 3], masks="polygon"),
             _pair([5, 6], [5, 6], masks=None)]
    with EventStorage(0) as storage:
        losses = model(batch)
        assert storage.latest()["tcis/num_instances"][0] == 3
    assert "loss_tcis" in losses
    assert math.isfinite(losses["loss_tcis"].item()) and losses["loss_tcis"].item() > 0
    losses["loss_tcis"].backward()
    tcis = model.roi_heads.tcis
    assert float(tcis.deform_conv.weight.grad.abs().sum()) > 0
    assert float(tcis.correlation_transform.offsets.weight.grad.abs().sum()) > 0
    # the mask head is shared: the TCIS loss trains it too
    assert float(model.roi_heads.mask_head.predictor.weight.grad.abs().sum()) > 0


def test_no_qualifying_instance_gives_zero_loss_with_graph(tcis_model):
    model = tcis_model
    model.zero_grad()
    with EventStorage(0) as storage:
        losses = model([_pair([1, 2], [3, 4]), _pair([5, 6], [5, 6], masks=None)])
        assert storage.latest()["tcis/num_instances"][0] == 0
    assert losses["loss_tcis"].item() == 0.0 and losses["loss_tcis"].requires_grad
    losses["loss_tcis"].backward()
    grads = [p.grad for p in model.roi_heads.tcis.parameters()]
    assert grads and all(g is not None and float(g.abs().sum()) == 0.0 for g in grads)
