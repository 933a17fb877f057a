"""Auxiliary heads (paper 3.5.1): semantic-map and multi-hot targets on hand-made frames,
training with both heads on VideoRCNN (losses, key frames only, box-only pairs, gradients),
inference unchanged without rescoring, and score rescoring by the class probabilities."""
import math

import pytest
import torch
import torch.nn.functional as F

from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling import (
    build_backbone,
    build_model,
    build_proposal_generator,
    build_roi_heads,
)
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

import vis_d2  # noqa: F401
from helpers import gt_instances
from vis_d2.config import get_vis_cfg
from vis_d2.modeling.aux_heads import (
    MultiLabelHead,
    SemSegAuxHead,
    multilabel_targets,
    semantic_targets,
)
from vis_d2.modeling.meta_arch import VideoRCNN

IGN = -1
# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------
# Frame 10x12 (HxW), padded batch 12x16, stride 4 -> feature 3x4; cell (i, j) reads pixel
# (4i + 2, 4j + 2): rows 2, 6, (10 = padding), cols 2, 6, 10, (14 = padding).
# A: class 2, rows 0-7 x cols 0-7 (area 64). B: class 0, rows 4-9 x cols 4-11 (area 48).
# They overlap on rows 4-7 x cols 4-7, where the smaller B wins. Background = 3.
EXPECTED = [[2, 2, 3, IGN],
            [2, 0, 0, IGN],
            [IGN, IGN, IGN, IGN]]


def _frame(order=(0, 1), polygons=False):
    rects = [(0, 0, 8, 8), (4, 4, 12, 10)]  # x0, y0, x1, y1 (exclusive)
    classes = [2, 0]
    rects, classes = [rects[i] for i in order], [classes[i] for i in order]
    inst = Instances((10, 12))
    inst.gt_boxes = Boxes(torch.tensor(rects, dtype=torch.float32))
    inst.gt_classes = torch.tensor(classes)
    if polygons:
        inst.gt_masks = PolygonMasks([[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in rects])
    else:
        m = torch.zeros(2, 10, 12, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(rects):
            m[k, y0:y1, x0:x1] = True
        inst.gt_masks = BitMasks(m)
    return inst


def test_semantic_targets_hand_made_frame():
    sem = semantic_targets([_frame()], [(10, 12)], [True], (3, 4), stride=4, num_classes=3)
    assert sem.dtype == torch.int64 and sem.tolist() == [EXPECTED]
    # the overlap rule depends on areas, not on the order of the instances
    sem = semantic_targets([_frame(order=(1, 0))], [(10, 12)], [True], (3, 4), 4, 3)
    assert sem.tolist() == [EXPECTED]
    # polygon masks give the same map
    sem = semantic_targets([_frame(polygons=True)], [(10, 12)], [True], (3, 4), 4, 3)
    assert sem.tolist() == [EXPECTED]


def test_semantic_targets_exclude_box_only_images():
    no_masks = _frame()
    no_masks.remove("gt_masks")
    empty = Instances((10, 12), gt_classes=torch.zeros(0, dtype=torch.long),
                      gt_masks=BitMasks(torch.zeros(0, 10, 12, dtype=torch.bool)))
    sem = semantic_targets(
        [_frame(), _frame(), no_masks, empty], [(10, 12)] * 4, [True, False, True, True],
        (3, 4), stride=4, num_classes=3,
    )
    assert sem[0].tolist() == EXPECTED
    all_ignored = [[IGN] * 4] * 3
    assert sem[1].tolist() == all_ignored  # has_mask False (box-only source)
    assert sem[2].tolist() == all_ignored  # instances without gt_masks
    # a mask-annotated frame with no object is all background (it does carry a loss)
    assert sem[3].tolist() == [[3, 3, 3, IGN], [3, 3, 3, IGN], [IGN] * 4]


def test_semantic_targets_of_auxiliary_and_weakly_segmented_objects():
    """An auxiliary object's pixels are ignored, whatever its class id (C, one past the video
    set's); a frame with a mask that is not valid gets no map at all."""
    aux = _frame()
    aux.gt_aux = torch.tensor([False, True])  # B (the smaller, painted over A) is auxiliary
    aux.gt_classes = torch.tensor([2, 3])
    weak = _frame()
    weak.gt_mask_valid = torch.tensor([True, False])
    valid = _frame()
    valid.gt_mask_valid = torch.tensor([True, True])
    valid.gt_aux = torch.tensor([False, False])
    sem = semantic_targets([aux, weak, valid], [(10, 12)] * 3, [True] * 3, (3, 4), 4, 3)
    assert sem[0].tolist() == [[2, 2, 3, IGN], [2, IGN, IGN, IGN], [IGN] * 4]
    assert sem[1].tolist() == [[IGN] * 4] * 3
    assert sem[2].tolist() == EXPECTED  # the video set's defaults change nothing
    # the class check still holds for the objects that are not auxiliary
    aux.gt_aux = torch.tensor([False, False])
    with pytest.raises(ValueError, match=r"gt_classes \[2, 3\] outside \[0, 3\) on an object that "
                                         r"is not auxiliary \(gt_aux \[False, False\]\)"):
        semantic_targets([aux], [(10, 12)], [True], (3, 4), 4, 3)


def test_multilabel_head_leaves_auxiliary_objects_out():
    """An auxiliary object (class id C) adds no label: the frame's labels are its other
    objects' classes; a weakly segmented object counts (the target is class-level)."""
    head = MultiLabelHead(ShapeSpec(channels=4), in_feature="res5", num_classes=3)
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]])
    frames = [Instances((8, 8), gt_classes=torch.tensor([2, 3]),
                        gt_aux=torch.tensor([False, True]),
                        gt_mask_valid=torch.tensor([False, True])),
              Instances((8, 8), gt_classes=torch.tensor([3]), gt_aux=torch.tensor([True]))]
    expected = F.binary_cross_entropy_with_logits(
        logits, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    assert head.losses(logits, frames)["loss_multilabel"].item() == pytest.approx(expected.item())


def test_semantic_targets_errors():
    with pytest.raises(ValueError, match=r"gt_classes \[2, 0\] outside \[0, 2\)"):
        semantic_targets([_frame()], [(10, 12)], [True], (3, 4), 4, num_classes=2)
    with pytest.raises(ValueError, match=r"gt_masks are \(10, 12\).*image is \(10, 14\)"):
        semantic_targets([_frame()], [(10, 14)], [True], (3, 4), 4, num_classes=3)


def test_multilabel_targets():
    t = multilabel_targets([torch.tensor([2, 0, 2]), torch.zeros(0, dtype=torch.long),
                            torch.tensor([3])], num_classes=4)
    assert t.dtype == torch.float32
    assert t.tolist() == [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    with pytest.raises(ValueError, match=r"gt_classes \[4\] of image 0 outside \[0, 4\)"):
        multilabel_targets([torch.tensor([4])], num_classes=4)


def test_builders_reject_unknown_features():
    cfg = _cfg("MODEL.VIS.SEMSEG.IN_FEATURE", "p9", "MODEL.VIS.MULTILABEL.IN_FEATURE", "res6")
    with pytest.raises(ValueError, match=r"SEMSEG.IN_FEATURE='p9'.*\['p2', 'p3'\]"):
        SemSegAuxHead(cfg, {"p2": ShapeSpec(channels=8, stride=4),
                            "p3": ShapeSpec(channels=8, stride=8)})
    with pytest.raises(ValueError, match=r"MULTILABEL.IN_FEATURE='res6'.*OUT_FEATURES.*\['res5'\]"):
        MultiLabelHead(cfg, {"res5": ShapeSpec(channels=8, stride=32)})
    with pytest.raises(ValueError, match="RESCORE_TEST needs the multi-label head"):
        build_model(_cfg("MODEL.VIS.MULTILABEL.RESCORE_TEST", "True"))


# ---------------------------------------------------------------------------------------------
# VideoRCNN with the heads
# ---------------------------------------------------------------------------------------------
def _cfg(*opts):
    return get_vis_cfg("configs/synthvis/R18_demo.yaml", ["MODEL.DEVICE", "cpu", *opts])


HEADS_ON = ("MODEL.VIS.SEMSEG.ENABLED", "True", "MODEL.VIS.MULTILABEL.ENABLED", "True")


def _instances(classes, with_masks=True, size=(96, 128)):
    return gt_instances(0, [1, 2], classes, with_masks, size)


def _pair(seed, with_masks=True):
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8, generator=g)
    ref = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8, generator=g)
    # the reference frame has other classes, so a head fed the reference frames would differ
    return {"image": img, "instances": _instances([1, 2], with_masks), "ref_image": ref,
            "ref_instances": _instances([3, 0], with_masks), "has_mask": with_masks}


def _expected_aux_losses(model, pairs):
    """The two losses recomputed by hand from the KEY frames alone."""
    images = model.preprocess_image([{"image": p["image"]} for p in pairs])
    with torch.no_grad():
        p3 = model.backbone(images.tensor)["p3"]
        c5 = model.backbone.bottom_up(images.tensor)["res5"]
        head = model.semseg_head
        logits = head.layers(p3)
        sem = semantic_targets([p["instances"] for p in pairs], images.image_sizes,
                               [p["has_mask"] for p in pairs], logits.shape[-2:], 8, 4)
        semseg = F.cross_entropy(logits, sem, ignore_index=-1) * 0.5
        labels = multilabel_targets([p["instances"].gt_classes for p in pairs], 4)
        ml = F.binary_cross_entropy_with_logits(model.multilabel_head(c5), labels) * 0.5
    return semseg.item(), ml.item()


def test_training_step_with_both_heads():
    torch.manual_seed(0)
    model = build_model(_cfg(*HEADS_ON))
    model.train()
    pairs = [_pair(1), _pair(2, with_masks=False)]
    with EventStorage(0):
        losses = model(pairs)
    assert {"loss_semseg", "loss_multilabel", "loss_mask", "loss_track"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    # near-uniform initial predictions: 0.5 * log(5) over 4 classes + background, 0.5 * log(2)
    assert losses["loss_semseg"].item() == pytest.approx(0.5 * math.log(5), rel=0.05)
    assert losses["loss_multilabel"].item() == pytest.approx(0.5 * math.log(2), rel=0.1)
    # exactly the key frames' losses; the box-only pair is left out of the semantic loss
    semseg, ml = _expected_aux_losses(model, pairs)
    assert losses["loss_semseg"].item() == pytest.approx(semseg, rel=1e-4)
    assert losses["loss_multilabel"].item() == pytest.approx(ml, rel=1e-4)
    semseg_first_only, _ = _expected_aux_losses(model, pairs[:1])
    assert semseg == pytest.approx(semseg_first_only, rel=1e-4)
    assert model._bottom_up_out is None  # C5 is not kept after the step

    # gradients: P3 branch -> semantic head and the whole bottom-up (P3 has the top-down path)
    model.zero_grad()
    losses["loss_semseg"].backward(retain_graph=True)
    assert model.semseg_head.predictor.weight.grad.abs().sum() > 0
    assert model.backbone.bottom_up.res3[0].conv1.weight.grad.abs().sum() > 0
    assert model.backbone.bottom_up.res5[0].conv1.weight.grad.abs().sum() > 0
    assert model.multilabel_head.fc.weight.grad is None
    # C5 branch -> multi-label head and the ResNet, not the FPN's output convs
    model.zero_grad(set_to_none=True)
    losses["loss_multilabel"].backward()
    assert model.multilabel_head.fc.weight.grad.abs().sum() > 0
    assert model.backbone.bottom_up.res5[0].conv1.weight.grad.abs().sum() > 0
    assert model.backbone.bottom_up.stem.conv1.weight.grad.abs().sum() > 0
    assert model.backbone.fpn_output3.weight.grad is None
    assert model.semseg_head.predictor.weight.grad is None

    # a batch of box-only pairs: an exact zero semantic loss that still reaches the head
    with EventStorage(0):
        losses = model([_pair(3, with_masks=False)])
    assert losses["loss_semseg"].item() == 0.0 and losses["loss_semseg"].requires_grad
    model.zero_grad(set_to_none=True)
    losses["loss_semseg"].backward()
    assert model.semseg_head.predictor.weight.grad is not None


def _eval_frame(model):
    g = torch.Generator().manual_seed(7)
    img = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8, generator=g)
    model.eval()
    with torch.no_grad():
        return model([{"image": img, "height": 192, "width": 256}])[0]["instances"], img


def test_inference_unchanged_without_rescoring_and_rescored_with_it():
    torch.manual_seed(0)
    thresh = ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    off = build_model(_cfg(*thresh))
    on = build_model(_cfg(*thresh, *HEADS_ON))
    missing, unexpected = on.load_state_dict(off.state_dict(), strict=False)
    assert unexpected == [] and missing
    assert all(k.startswith(("semseg_head.", "multilabel_head.")) for k in missing)

    ref, img = _eval_frame(off)
    out, _ = _eval_frame(on)
    assert len(ref) > 0 and len(out) == len(ref)
    for field in ("pred_boxes", "scores", "pred_classes", "pred_masks", "pred_embeds"):
        a, b = ref.get(field), out.get(field)
        a, b = (a.tensor, b.tensor) if isinstance(a, Boxes) else (a, b)
        assert torch.equal(a, b), field
    assert on._bottom_up_out is None  # heads on, rescoring off: C5 not even kept

    # RESCORE_TEST: the same detections, each score times p(its class | frame)
    rescore = build_model(_cfg(*thresh, *HEADS_ON, "MODEL.VIS.MULTILABEL.RESCORE_TEST", "True"))
    rescore.load_state_dict(on.state_dict())
    with torch.no_grad():  # make the probabilities clearly different per class
        rescore.multilabel_head.fc.bias.copy_(torch.tensor([-2.0, -0.5, 0.5, 2.0]))
    out, _ = _eval_frame(rescore)
    images = rescore.preprocess_image([{"image": img}])
    with torch.no_grad():
        c5 = rescore.backbone.bottom_up(images.tensor)["res5"]
        probs = torch.sigmoid(rescore.multilabel_head(c5))[0]
    assert probs.argsort().tolist() == [0, 1, 2, 3]
    assert len(out) == len(ref)
    assert torch.equal(out.pred_classes, ref.pred_classes)
    assert torch.equal(out.pred_boxes.tensor, ref.pred_boxes.tensor)
    torch.testing.assert_close(out.scores, ref.scores * probs[ref.pred_classes])
    assert not torch.allclose(out.scores, ref.scores)
    assert rescore._bottom_up_out is None


def test_explicit_arguments_build_lazyconfig_style():
    cfg = _cfg()
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    model = instantiate(L(VideoRCNN)(
        backbone=backbone,
        proposal_generator=build_proposal_generator(cfg, shapes),
        roi_heads=build_roi_heads(cfg, shapes),
        pixel_mean=cfg.MODEL.PIXEL_MEAN, pixel_std=cfg.MODEL.PIXEL_STD,
        semseg_head=L(SemSegAuxHead)(input_shape=shapes["p3"], in_feature="p3", num_classes=4,
                                     num_convs=1, conv_dim=32, norm="GN", loss_weight=2.0),
        multilabel_head=L(MultiLabelHead)(
            input_shape=backbone.bottom_up.output_shape()["res5"], in_feature="res5",
            num_classes=4, loss_weight=1.0),
    ))
    assert len(model.semseg_head.convs) == 1 and model.semseg_head.stride == 8
    model.train()
    with EventStorage(0):
        losses = model([_pair(4)])
    assert losses["loss_semseg"].item() == pytest.approx(2.0 * math.log(5), rel=0.05)
    assert losses["loss_multilabel"].item() == pytest.approx(math.log(2), rel=0.1)
