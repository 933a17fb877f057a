"""VideoRCNN: track head loss on a hand-made case, the 6-level FPN, a training step on frame
pairs (with and without masks) and per-frame inference outputs."""
import math

import pytest
import torch

from detectron2.modeling import build_backbone, build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from helpers import training_pair
import vis_d2  # noqa: F401
from vis_d2.config import get_vis_cfg
from vis_d2.modeling.track_head import track_embedding_loss, track_logits, track_targets


def test_track_targets_and_logits():
    key_ids = torch.tensor([5, 7, 9])
    ref_ids = torch.tensor([7, 5])
    # slot j >= 1 <=> reference instance j-1; 9 is not in the reference frame -> slot 0
    assert track_targets(key_ids, ref_ids).tolist() == [2, 1, 0]
    assert track_targets(key_ids, torch.tensor([], dtype=torch.long)).tolist() == [0, 0, 0]
    logits = track_logits(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0], [2.0, 0.0]]))
    assert logits.tolist() == [[0.0, 0.0, 2.0]]


def test_track_loss_hand_computed():
    key = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ref = torch.tensor([[0.0, 3.0], [2.0, 0.0]])  # ids 7, 5
    loss = track_embedding_loss([key], [torch.tensor([5, 7, 9])], [ref], [torch.tensor([7, 5])])
    # e1 -> logits [0, 0, 2], target 2; e2 -> [0, 3, 0], target 1; e3 -> [0, 3, 2], target 0
    l1 = math.log(2 + math.e ** 2) - 2
    l2 = math.log(2 + math.e ** 3) - 3
    l3 = math.log(1 + math.e ** 3 + math.e ** 2) - 0
    assert loss.item() == pytest.approx((l1 + l2 + l3) / 3, rel=1e-6)


def test_track_loss_is_mean_per_pair_then_mean_over_pairs():
    """MaskTrack R-CNN's reduction. Pair A: one positive, CE a; pair B: three positives, CE b
    each; pair C: none. Per pair then over the 3 pairs: (a + b + 0) / 3; one mean over the 4
    positives would give (a + 3b) / 4."""
    key_a, ref_a = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]])   # logits [0, 2]
    key_b, ref_b = torch.zeros(3, 2), torch.tensor([[1.0, 0.0]])            # logits [0, 0]
    key_c, ref_c = torch.zeros(0, 2), torch.tensor([[1.0, 1.0]])
    loss = track_embedding_loss(
        [key_a, key_b, key_c], [torch.tensor([5]), torch.tensor([5, 6, 7]),
                                torch.zeros(0, dtype=torch.long)],
        [ref_a, ref_b, ref_c], [torch.tensor([5]), torch.tensor([5]), torch.tensor([1])])
    a = math.log(1 + math.e ** 2) - 2     # target slot 1 (id 5)
    b = math.log(2)                       # targets 1, 0, 0: each log 2
    assert loss.item() == pytest.approx((a + b + 0.0) / 3, rel=1e-6)
    assert loss.item() != pytest.approx((a + 3 * b) / 4, rel=1e-3)


def test_track_loss_without_positives_is_zero_with_gradient():
    key = torch.zeros(0, 4, requires_grad=True)
    ref = torch.randn(2, 4, requires_grad=True)
    loss = track_embedding_loss([key], [torch.zeros(0, dtype=torch.long)], [ref], [torch.tensor([1, 2])])
    assert loss.item() == 0.0
    loss.backward()
    assert ref.grad is not None and float(ref.grad.abs().sum()) == 0.0


def _cfg(*opts):
    return get_vis_cfg("configs/synthvis/R18_demo.yaml", ["MODEL.DEVICE", "cpu", *opts])


@pytest.mark.parametrize("p7,levels", [(True, ["p2", "p3", "p4", "p5", "p6", "p7"]),
                                       (False, ["p2", "p3", "p4", "p5", "p6"])])
def test_fpn_levels(p7, levels):
    cfg = _cfg("MODEL.VIS.FPN_P7", str(p7))
    backbone = build_backbone(cfg)
    out = backbone(torch.zeros(1, 3, 128, 128))
    assert sorted(out) == levels
    strides = {k: 128 // v.shape[-1] for k, v in out.items()}
    assert strides == {f"p{i}": 2 ** i for i in range(2, 2 + len(levels))}


def test_narrow_basic_block_resnet():
    """R18 at width 32: stages 32/64/128/256 (a quarter of the weights of width 64); width 64
    is detectron2's own R18, parameter for parameter."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import ResNet, build_resnet_backbone

    from vis_d2.modeling.fpn import build_vis_resnet, make_basic_block_stages

    cfg = _cfg("MODEL.RESNETS.STEM_OUT_CHANNELS", "32", "MODEL.RESNETS.RES2_OUT_CHANNELS", "32")
    narrow = build_vis_resnet(cfg, ShapeSpec(channels=3))
    assert {k: v.channels for k, v in narrow.output_shape().items()} == {
        "res2": 32, "res3": 64, "res4": 128, "res5": 256}
    out = narrow(torch.zeros(1, 3, 64, 96))
    assert out["res5"].shape == (1, 256, 2, 3)
    cfg64 = _cfg("MODEL.RESNETS.STEM_OUT_CHANNELS", "64", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64")
    ref = build_resnet_backbone(cfg64, ShapeSpec(channels=3))
    ours = make_basic_block_stages(18, 64, 64, "GN")
    assert sum(p.numel() for s in ours for b in s for p in b.parameters()) == sum(
        p.numel() for n, p in ref.named_parameters() if not n.startswith("stem"))
    n_narrow = sum(p.numel() for p in narrow.parameters())
    assert n_narrow < 0.26 * sum(p.numel() for p in ref.parameters())
    with pytest.raises(ValueError, match="depth must be 18 or 34"):
        make_basic_block_stages(50, 64, 64)
    with pytest.raises(ValueError, match="NUM_GROUPS"):
        build_vis_resnet(_cfg("MODEL.RESNETS.RES2_OUT_CHANNELS", "32", "MODEL.RESNETS.NUM_GROUPS", "2"),
                         ShapeSpec(channels=3))
    assert isinstance(narrow, ResNet)


_pair = training_pair


def test_training_step_and_inference_outputs():
    torch.manual_seed(0)
    cfg = _cfg()
    model = build_model(cfg)
    model.train()
    with EventStorage(0):
        losses = model([_pair(), _pair(with_masks=False)])
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_track", "loss_rpn_cls", "loss_rpn_loc"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_heads.track_head.fcs[0].weight.grad.abs().sum() > 0

    # a batch whose images all lack masks still gives a (zero) mask loss with a graph
    with EventStorage(0):
        losses = model([_pair(with_masks=False)])
    assert losses["loss_mask"].item() == 0.0 and losses["loss_mask"].requires_grad

    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8),
                      "height": 192, "width": 256}])
    inst = out[0]["instances"]
    assert inst.image_size == (192, 256)
    assert inst.pred_embeds.shape == (len(inst), cfg.MODEL.VIS.TRACK_HEAD.EMBED_DIM)
    assert inst.pred_masks.shape[1:] == (192, 256)


def test_reference_frames_without_backbone_gradient_same_losses():
    """REF_BACKBONE_GRAD only changes where gradients flow: same weights and inputs give the
    same losses, and the backbone gets less gradient when the reference pass has none."""
    torch.manual_seed(0)
    models, grads, losses = {}, {}, {}
    for flag in (True, False):
        torch.manual_seed(0)
        # DETACH_ITERS 0: loss_track reaches the backbone through the key frames at step 0
        models[flag] = build_model(_cfg("MODEL.VIS.REF_BACKBONE_GRAD", str(flag),
                                        "MODEL.VIS.TRACK_HEAD.DETACH_ITERS", "0"))
    models[False].load_state_dict(models[True].state_dict())
    torch.manual_seed(1)
    batch = [_pair()]
    # different key and reference images, so the reference pass matters
    batch[0]["ref_image"] = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    for flag, model in models.items():
        model.train()
        torch.manual_seed(2)  # same proposal / ROI sampling in both runs
        with EventStorage(0):
            out = model(batch)
        losses[flag] = {k: float(v) for k, v in out.items()}
        out["loss_track"].backward()
        grads[flag] = model.backbone.bottom_up.stem.conv1.weight.grad.clone()
    for k in losses[True]:
        assert losses[True][k] == pytest.approx(losses[False][k], rel=1e-4, abs=1e-6), k
    assert not torch.allclose(grads[True], grads[False])


def test_track_detach_iters_keeps_loss_track_off_the_backbone_until_that_iteration():
    """MODEL.VIS.TRACK_HEAD.DETACH_ITERS 5: at iteration 4 loss_track trains the track head and
    nothing it reads, through neither the key nor the reference frame (whose pass has gradient
    here); at iteration 5 the same loss reaches the FPN and the stem. The forward pass is the
    same at both."""
    torch.manual_seed(0)
    model = build_model(_cfg("MODEL.VIS.TRACK_HEAD.DETACH_ITERS", "5",
                             "MODEL.VIS.REF_BACKBONE_GRAD", "True"))
    model.train()
    batch = [_pair()]
    track_loss, grads = {}, {}
    for it in (4, 5):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(2)  # same proposal / ROI sampling at both iterations
        with EventStorage(it):
            out = model(batch)
        track_loss[it] = float(out["loss_track"])
        out["loss_track"].backward()
        grads[it] = {name: (0.0 if p.grad is None else float(p.grad.abs().sum()))
                     for name, p in (("stem", model.backbone.bottom_up.stem.conv1.weight),
                                     ("fpn", model.backbone.fpn_output2.weight),
                                     ("head", model.roi_heads.track_head.fcs[0].weight))}
    assert track_loss[4] == pytest.approx(track_loss[5], rel=1e-6) and track_loss[4] > 0
    assert grads[4]["stem"] == 0.0 and grads[4]["fpn"] == 0.0 and grads[4]["head"] > 0
    assert grads[5]["stem"] > 0 and grads[5]["fpn"] > 0
    assert grads[5]["head"] == pytest.approx(grads[4]["head"], rel=1e-5)


def test_track_detach_iters_must_be_a_count():
    with pytest.raises(ValueError, match="MODEL.VIS.TRACK_HEAD.DETACH_ITERS"):
        build_model(_cfg("MODEL.VIS.TRACK_HEAD.DETACH_ITERS", "-1"))


def _empty_instances(size=(96, 128)):
    """A frame without ground truth, with the fields the pair mappers give it."""
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.zeros(0, 4))
    inst.gt_classes = torch.zeros(0, dtype=torch.int64)
    inst.gt_track_ids = torch.zeros(0, dtype=torch.int64)
    inst.gt_masks = BitMasks(torch.zeros(0, *size, dtype=torch.bool))
    return inst


@pytest.mark.parametrize("opts", [
    [], ["MODEL.VIS.TCIS.ENABLED", "True"],
    ["MODEL.VIS.SEMSEG.ENABLED", "True", "MODEL.VIS.MULTILABEL.ENABLED", "True",
     "MODEL.VIS.MASKIOU.ENABLED", "True"]], ids=["demo", "tcis", "multitask"])
def test_training_step_with_a_key_frame_without_instances(opts):
    """A key frame left with no instance (cropped away, or a video's empty frame): detectron2
    gives its proposals no ``gt_*`` field, and the track loss must not read one."""
    torch.manual_seed(0)
    model = build_model(_cfg(*opts))
    model.train()
    empty_key = dict(_pair(), instances=_empty_instances())
    empty_both = dict(empty_key, ref_instances=_empty_instances())
    with EventStorage(0):
        losses = model([_pair(), empty_key])
        assert all(torch.isfinite(v) for v in losses.values())
        assert losses["loss_track"].item() > 0   # the other pair's instances still count
        sum(losses.values()).backward()
        losses = model([empty_both])
    assert losses["loss_track"].item() == 0.0
    assert all(torch.isfinite(v) for v in losses.values())


# ---------------------------------------------------------------------------------------------
# Multi-source data: weak segmentation, and the video-only path unchanged
# ---------------------------------------------------------------------------------------------
# Every loss that reads masks (mask, Dice, MaskIoU, mask-class on ground-truth crops, TCIS,
# semantic segmentation), beside the class-level multi-label head.
ALL_MASK_HEADS = ["MODEL.VIS.TCIS.ENABLED", "True", "MODEL.VIS.SEMSEG.ENABLED", "True",
                  "MODEL.VIS.MULTILABEL.ENABLED", "True", "MODEL.VIS.MASKIOU.ENABLED", "True",
                  "MODEL.VIS.MASK_CLASS.ENABLED", "True",
                  "MODEL.VIS.MASK_CLASS.TRAIN_ON_GT_MASKS", "True",
                  "MODEL.VIS.MASK_DICE_WEIGHT", "0.5"]
CLASS_SPECIFIC = ["MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK", "False",
                  "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", "False"]
MASK_LOSSES = ("loss_mask", "loss_mask_dice", "loss_maskiou", "loss_mask_cls", "loss_tcis",
               "loss_semseg")


def _tiny_model(*opts):
    from helpers import TINY_OPTS
    torch.manual_seed(0)
    model = build_model(get_vis_cfg("configs/synthvis/R18_demo.yaml",
                                    TINY_OPTS + ALL_MASK_HEADS + list(opts)))
    model.train()
    return model


def _step(model, batch, seed=2):
    """Losses (floats) and gradients of their sum, per parameter, of one training step."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # same proposal / ROI sampling in every run
    with EventStorage(0):
        losses = model(batch)
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: float(v) for k, v in losses.items()}, grads


def _weak_pairs(weak_id, garbage_id=None):
    """Two training pairs; the object of track id ``weak_id`` (None: none) has
    ``gt_mask_valid`` False in both frames, the object of ``garbage_id`` its mask inverted."""
    torch.manual_seed(1)
    batch = [_pair(), _pair()]
    for pair in batch:
        for name in ("instances", "ref_instances"):
            inst = pair[name]
            inst.gt_mask_valid = inst.gt_track_ids != (weak_id or -1)
            inst.gt_aux = torch.zeros(len(inst), dtype=torch.bool)
            masks = inst.gt_masks.tensor.clone()
            garbage = inst.gt_track_ids == (garbage_id or -1)
            masks[garbage] = ~masks[garbage]
            inst.gt_masks = BitMasks(masks)
    return batch


@pytest.mark.parametrize("masks", ["agnostic", "specific"])
def test_weakly_segmented_objects_give_no_mask_loss_gradient(masks):
    """An object with gt_mask_valid False: whatever its mask, every loss and every gradient of
    the step is the same (so none comes from its mask), while the same change to a valid
    object's mask moves the mask losses; and it still trains the class loss."""
    model = _tiny_model(*(CLASS_SPECIFIC if masks == "specific" else []))
    base, base_grads = _step(model, _weak_pairs(2))
    garbage, garbage_grads = _step(model, _weak_pairs(2, garbage_id=2))
    assert base == garbage
    assert base_grads.keys() == garbage_grads.keys()
    assert all(torch.equal(base_grads[n], garbage_grads[n]) for n in base_grads)
    # the same garbage mask on a valid object moves every mask loss: the check can fail
    valid, _ = _step(model, _weak_pairs(None))
    valid_garbage, _ = _step(model, _weak_pairs(None, garbage_id=2))
    for k in ("loss_mask", "loss_mask_dice", "loss_tcis", "loss_semseg"):
        assert valid[k] != valid_garbage[k], k
    # weak or not, the object is in the box, class and track losses alike
    for k in ("loss_cls", "loss_box_reg", "loss_track", "loss_multilabel"):
        assert base[k] == pytest.approx(valid[k], rel=1e-6), k


def test_only_weakly_segmented_objects_train_box_class_and_track_only():
    """A batch whose every object has gt_mask_valid False: each mask loss is an exact zero
    whose gradient is zero everywhere; the box, class and track losses train as usual."""
    model = _tiny_model()
    batch = _weak_pairs(1)
    for pair in batch:
        for name in ("instances", "ref_instances"):
            pair[name].gt_mask_valid[:] = False
    torch.manual_seed(2)
    with EventStorage(0):
        losses = model(batch)
    for k in MASK_LOSSES:
        assert losses[k].item() == 0.0, k
    sum(losses[k] for k in MASK_LOSSES).backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    for k in ("loss_cls", "loss_box_reg", "loss_track", "loss_multilabel"):
        assert losses[k].item() > 0, k
    sum(losses[k] for k in ("loss_cls", "loss_box_reg", "loss_track")).backward()
    roi = model.roi_heads
    assert roi.box_predictor.cls_score.weight.grad.abs().sum() > 0
    assert roi.track_head.fcs[0].weight.grad.abs().sum() > 0
    mask_grad = roi.mask_head.predictor.weight.grad
    assert mask_grad is None or not mask_grad.any()


# One fixed-seed training step of a tiny model with every optional head, as main computed it
# before multi-source data (commit daec447): a video-only batch with K = 0 must give the same.
# loss_maskiou is that of the full-area IoU target over positive RoIs (Mask Scoring R-CNN's).
MAIN_LOSSES = {
    "agnostic": {
        "loss_box_reg": 0.2293788194656372, "loss_cls": 1.6568905115127563,
        "loss_mask": 0.6932281255722046, "loss_mask_cls": 1.3950730562210083,
        "loss_mask_dice": 0.17785975337028503, "loss_maskiou": 0.12910088896751404,
        "loss_multilabel": 0.33926698565483093, "loss_rpn_cls": 0.6953561902046204,
        "loss_rpn_loc": 0.007448338437825441, "loss_semseg": 0.8229950070381165,
        "loss_tcis": 0.6932656168937683, "loss_track": 1.1027686595916748},
    "specific": {
        "loss_box_reg": 0.22931981086730957, "loss_cls": 1.6231557130813599,
        "loss_mask": 0.6932313442230225, "loss_mask_cls": 1.389032006263733,
        "loss_mask_dice": 0.17785780131816864, "loss_maskiou": 0.12531962990760803,
        "loss_multilabel": 0.352354496717453, "loss_rpn_cls": 0.6953561902046204,
        "loss_rpn_loc": 0.007448338437825441, "loss_semseg": 0.8403167128562927,
        "loss_tcis": 0.6932748556137085, "loss_track": 1.10060715675354},
}


@pytest.mark.parametrize("fields", ["missing", "video-set defaults"])
@pytest.mark.parametrize("masks", ["agnostic", "specific"])
def test_video_only_step_has_main_losses(masks, fields):
    """K = 0 (the default) and a batch without gt_aux / gt_mask_valid, or with them all False /
    all True: the losses main gave, to float32 rounding across machines."""
    model = _tiny_model(*(CLASS_SPECIFIC if masks == "specific" else []))
    torch.manual_seed(1)
    batch = [_pair(), _pair()]
    if fields != "missing":
        for pair in batch:
            for name in ("instances", "ref_instances"):
                n = len(pair[name])
                pair[name].gt_aux = torch.zeros(n, dtype=torch.bool)
                pair[name].gt_mask_valid = torch.ones(n, dtype=torch.bool)
    torch.manual_seed(2)
    with EventStorage(0):
        losses = {k: float(v) for k, v in model(batch).items()}
    assert losses == pytest.approx(MAIN_LOSSES[masks], rel=1e-5, abs=1e-7)
