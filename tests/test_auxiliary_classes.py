"""Algorithm 1 (auxiliary classes, vis_d2.modeling.auxiliary_classes): the relabel rule on hand
cases, the uniform draw's distribution, the C + K class layout of a model's heads, a training
step with auxiliary objects, and no auxiliary class in what the model, the tracker and the
predictor give out."""
import os

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

import vis_d2  # noqa: F401
from helpers import TINY_OPTS, training_pair
from vis_d2.config import get_vis_cfg
from vis_d2.engine import VISPredictor
from vis_d2.modeling.auxiliary_classes import drop_auxiliary_outputs, relabel_auxiliary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every optional head that reads classes, so that each is built for C + K (or C) classes.
ALL_HEADS = ["MODEL.VIS.TCIS.ENABLED", "True", "MODEL.VIS.SEMSEG.ENABLED", "True",
             "MODEL.VIS.MULTILABEL.ENABLED", "True", "MODEL.VIS.MASKIOU.ENABLED", "True",
             "MODEL.VIS.MASK_CLASS.ENABLED", "True"]
CLASS_SPECIFIC = ["MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK", "False",
                  "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", "False"]


def _scores(argmaxes, width):
    """(R, width) logits whose row r peaks at column argmaxes[r]."""
    s = torch.zeros(len(argmaxes), width)
    s[torch.arange(len(argmaxes)), torch.tensor(argmaxes)] = 5.0
    return s


# ---------------------------------------------------------------------------------------------
# The rule
# ---------------------------------------------------------------------------------------------
def test_relabel_hand_cases():
    # C = 3, K = 2: classes 0-2, auxiliary 3-4, background 5.
    gt = torch.tensor([0, 3, 3, 3, 3, 5, 1])
    is_aux = torch.tensor([False, True, True, True, True, False, False])
    #            not aux (peaks at 4) | aux->4 | aux->3 | aux, target peak | aux, bg peak | bg | 1
    scores = _scores([4, 4, 3, 1, 5, 4, 4], 6)
    gen = torch.Generator().manual_seed(7)
    labels, from_scores = relabel_auxiliary(gt, is_aux, scores, 3, 2, generator=gen)
    expected_draw = torch.randint(3, 5, (2,), generator=torch.Generator().manual_seed(7))
    assert labels[[0, 5, 6]].tolist() == [0, 5, 1]       # only auxiliary proposals change
    assert labels[[1, 2]].tolist() == [4, 3]             # their arg-max is auxiliary: kept
    assert labels[[3, 4]].tolist() == expected_draw.tolist()  # else drawn among 3, 4
    assert from_scores.tolist() == [False, True, True, False, False, False, False]
    assert gt.tolist() == [0, 3, 3, 3, 3, 5, 1]          # the input is not modified
    # probabilities and logits give the same labels; the scores are read detached
    probs = scores.softmax(1).requires_grad_()
    labels2, _ = relabel_auxiliary(gt, is_aux, probs, 3, 2,
                                   generator=torch.Generator().manual_seed(7))
    assert labels2.tolist() == labels.tolist() and not labels2.requires_grad


def test_relabel_without_auxiliary_proposals_changes_nothing_and_draws_nothing():
    gt = torch.tensor([0, 2, 3])
    state = torch.get_rng_state()
    for k in (0, 2):  # K = 0, or K > 0 with no auxiliary proposal in the batch
        labels, from_scores = relabel_auxiliary(gt, torch.zeros(3, dtype=torch.bool),
                                                _scores([1, 1, 1], 4 + k), 3, k)
        assert labels.tolist() == [0, 2, 3] and not from_scores.any()
    assert torch.equal(torch.get_rng_state(), state)


def test_relabel_refuses_auxiliary_proposals_without_auxiliary_classes():
    with pytest.raises(ValueError, match="1 proposals are matched to auxiliary objects.*"
                                         "MODEL.VIS.MSD.NUM_AUX_CLASSES is 0"):
        relabel_auxiliary(torch.tensor([3]), torch.tensor([True]), _scores([0], 4), 3, 0)
    with pytest.raises(ValueError, match=r"class scores \(1, 5\) for 1 proposals, expected"):
        relabel_auxiliary(torch.tensor([3]), torch.tensor([True]), _scores([0], 5), 3, 2)


@pytest.mark.parametrize("k", [1, 5])
def test_uniform_draw_distribution(k):
    """40 000 auxiliary proposals whose arg-max is never auxiliary (a video-set class or the
    background): all drawn, none outside [C, C + K), each count within 5 binomial standard
    deviations of n / K and the counts uniform by a chi-square test at the 0.1% level (a draw
    that missed one class, or favoured one by a few percent, gives p < 1e-6)."""
    c, n = 40, 40000
    argmax = torch.randint(0, c + 1, (n,), generator=torch.Generator().manual_seed(1))
    argmax[argmax == c] = c + k  # the background column
    scores = _scores(argmax.tolist(), c + k + 1)
    labels, from_scores = relabel_auxiliary(
        torch.full((n,), c), torch.ones(n, dtype=torch.bool), scores, c, k,
        generator=torch.Generator().manual_seed(0))
    assert not from_scores.any()
    counts = np.bincount(labels.numpy(), minlength=c + k)
    assert counts[:c].sum() == 0 and counts.sum() == n
    aux = counts[c:]
    sd = (n * (1 / k) * (1 - 1 / k)) ** 0.5
    assert np.all(np.abs(aux - n / k) <= 5 * sd), aux
    if k > 1:
        assert chisquare(aux).pvalue > 0.001, aux


def test_drop_auxiliary_outputs():
    # C = 2, K = 1: probabilities [c0, c1, aux, bg], boxes of 3 classes x 4
    probs = torch.tensor([[0.1, 0.2, 0.6, 0.1], [0.5, 0.1, 0.1, 0.3]])
    boxes = torch.arange(24.0).reshape(2, 12)
    b, p = drop_auxiliary_outputs([boxes], [probs], 2, 1)
    assert torch.equal(p[0], probs[:, [0, 1, 3]])  # not renormalised
    assert torch.equal(b[0], boxes[:, :8])
    agnostic = torch.arange(8.0).reshape(2, 4)
    b, _ = drop_auxiliary_outputs([agnostic], [probs], 2, 1)
    assert torch.equal(b[0], agnostic)
    b, p = drop_auxiliary_outputs([boxes], [probs], 3, 0)
    assert b[0] is boxes and p[0] is probs
    with pytest.raises(ValueError, match="boxes of width 8, expected 12"):
        drop_auxiliary_outputs([boxes[:, :8]], [probs], 2, 1)


# ---------------------------------------------------------------------------------------------
# In the model
# ---------------------------------------------------------------------------------------------
def _cfg(k, *opts):
    return get_vis_cfg(os.path.join(REPO, "configs/synthvis/R18_demo.yaml"),
                       TINY_OPTS + ["MODEL.VIS.MSD.NUM_AUX_CLASSES", str(k), *opts])


def _aux_pair(c, seed):
    """A training pair whose object of track id 2 is auxiliary (label C) in both frames."""
    torch.manual_seed(seed)
    pair = training_pair()
    for name in ("instances", "ref_instances"):
        inst = pair[name]
        aux = inst.gt_track_ids == 2
        inst.gt_aux = aux
        inst.gt_mask_valid = torch.ones(len(inst), dtype=torch.bool)
        inst.gt_classes = torch.where(aux, torch.full_like(inst.gt_classes, c), inst.gt_classes)
    return pair


@pytest.mark.parametrize("masks", ["agnostic", "specific"])
def test_class_layout_of_the_heads(masks):
    k = 3
    cfg = _cfg(k, *ALL_HEADS, *(CLASS_SPECIFIC if masks == "specific" else []))
    c = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    model = build_model(cfg)
    roi = model.roi_heads
    assert (roi.num_classes, roi.num_target_classes, roi.num_aux_classes) == (c + k, c, k)
    assert roi.box_predictor.cls_score.out_features == c + k + 1
    assert roi.box_predictor.bbox_pred.out_features == (4 * (c + k) if masks == "specific" else 4)
    assert roi.mask_head.predictor.out_channels == (c + k if masks == "specific" else 1)
    assert roi.class_agnostic_mask == (masks == "agnostic")
    assert roi.maskiou_head.predictor.out_features == c + k
    assert roi.mask_class_head.predictor.out_features == c + k
    # the image-level heads keep the video set's classes (Algorithm 1 labels proposals only)
    assert model.semseg_head.predictor.out_channels == c + 1
    assert model.multilabel_head.fc.out_features == c
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == c  # the config is not changed


@pytest.mark.parametrize("masks", ["agnostic", "specific"])
def test_training_step_relabels_auxiliary_proposals(masks, monkeypatch):
    """Proposals matched to the auxiliary object reach the box loss with a label in
    [C, C + K), the others with theirs; every head trains; Algorithm 1 is logged."""
    k = 2
    cfg = _cfg(k, *ALL_HEADS, *(CLASS_SPECIFIC if masks == "specific" else []))
    c = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    seen = []
    losses_fn = model.roi_heads.box_predictor.losses

    def spy(predictions, proposals):
        seen.extend((p.gt_classes.clone(), p.gt_aux.clone() if p.has("gt_aux") else None)
                    for p in proposals)
        return losses_fn(predictions, proposals)

    monkeypatch.setattr(model.roi_heads.box_predictor, "losses", spy)
    with EventStorage(0) as storage:
        losses = model([_aux_pair(c, 1), _aux_pair(c, 2)])
        logged = storage.latest()
    assert all(torch.isfinite(v) for v in losses.values())
    labels = torch.cat([s[0] for s in seen])
    aux = torch.cat([s[1] for s in seen]) & (labels != c + k)
    assert aux.sum() > 0 and ((labels[aux] >= c) & (labels[aux] < c + k)).all()
    fg = ~aux & (labels != c + k)
    assert fg.sum() > 0 and (labels[fg] < c).all()
    assert logged["msd/aux_proposals"][0] == int(aux.sum())
    assert 0.0 <= logged["msd/aux_label_from_scores"][0] <= 1.0
    sum(losses.values()).backward()
    roi = model.roi_heads
    assert roi.box_predictor.cls_score.weight.grad[c:c + k].abs().sum() > 0
    if masks == "specific":  # the auxiliary objects' masks train the auxiliary mask outputs
        assert roi.mask_head.predictor.weight.grad[c:c + k].abs().sum() > 0
    assert losses["loss_tcis"].item() > 0


def _aux_biased(model, c, k):
    """The model with its auxiliary class outputs far ahead of every other: left to itself,
    every detection would be of an auxiliary class."""
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[c:c + k] += 20.0
    return model


@pytest.mark.parametrize("masks", ["agnostic", "specific"])
def test_inference_output_classes_are_all_video_set_classes(masks):
    k = 2
    cfg = _cfg(k, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.VIS.MASKIOU.ENABLED", "True",
               "MODEL.VIS.MASK_CLASS.ENABLED", "True",
               *(CLASS_SPECIFIC if masks == "specific" else []))
    c = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    torch.manual_seed(0)
    model = _aux_biased(build_model(cfg), c, k).eval()
    image = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    with torch.no_grad():
        inst = model([{"image": image}])[0]["instances"]
        # what the box predictor says on its own: auxiliary everywhere
        feats = model.backbone(model.preprocess_image([{"image": image}]).tensor)
        x = model.roi_heads.box_head(model.roi_heads.box_pooler(
            [feats[f] for f in model.roi_heads.box_in_features],
            [inst.pred_boxes]))
        raw = model.roi_heads.box_predictor(x)[0]
    assert (raw.argmax(1) >= c).all() and (raw.argmax(1) < c + k).all()
    assert len(inst) > 0
    assert inst.pred_classes.max() < c
    # the scores are the full softmax's: tiny beside the auxiliary classes'
    assert inst.scores.max() < 1e-3


def test_tracker_and_predictor_never_give_an_auxiliary_class():
    k = 2
    cfg = _cfg(k, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.VIS.TRACKER.SCORE_THRESH",
               "0.0", "TEST.VIS.PREDICT_SCORE_THRESH", "0.0")
    c = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    torch.manual_seed(0)
    predictor = VISPredictor(cfg)
    _aux_biased(predictor.model, c, k)
    frames = [np.random.default_rng(i).integers(0, 255, (72, 96, 3), dtype=np.uint8)
              for i in range(3)]
    tracks = predictor(frames)
    # the predictor gives the dataset's ids: the C video-set categories, no auxiliary one
    assert len(predictor.category_names) == c
    assert tracks and {t["category_id"] for t in tracks} <= set(predictor.category_names)
    for inst in predictor.track_stream(frames):
        assert len(inst) > 0 and inst.pred_classes.max() < c
