"""The ablation rows (paper Table 1): LazyConfig rows build the same model and tracker as their
YAML twins, every YAML row loads and builds, the sweep's table writer, the explicit-argument
loaders and tracker settings of the LazyConfig path, and the sweep end to end on tiny data."""
import csv
import importlib.util
import io
import json
import numbers
import os
import shutil
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.transforms import ResizeShortestEdge
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler
from detectron2.solver.lr_scheduler import LRMultiplier

import vis_d2  # noqa: F401
from helpers import TINY_OPTS, flat_config
from vis_d2.config import get_vis_cfg
from vis_d2.data.augmentation import build_pair_augmentation
from vis_d2.data.build import build_vis_test_loader, build_vis_train_loader
from vis_d2.data.build import get_vis_train_dataset_dicts
from vis_d2.data.synthetic import SynthConfig, generate
from vis_d2.data.ytvis import categories_to_metadata, register_ytvis_instances
from vis_d2.evaluation import evaluate_ytvis
from vis_d2.tracking import FrameDetections, VideoTracker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.path.join(REPO, "projects", "VIS_Ablation")
LAZY = os.path.join(PROJECT, "configs")


def load_script(name):
    """The module of ``projects/VIS_Ablation/<name>.py`` (a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location(f"vis_ablation_{name}",
                                                  os.path.join(PROJECT, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ablation_sweep = load_script("sweep")
TWINS = {  # LazyConfig row -> YAML row of the synthetic benchmark
    "A1_baseline": "configs/synthvis/R18_A1_baseline.yaml",
    "A1_paper": "configs/synthvis/R18_A1_paper.yaml",
    "A2_tcis": "configs/synthvis/R18_A2_tcis.yaml",
    "A3_multitask": "configs/synthvis/R18_A3_multitask.yaml",
    "A4_msd": "configs/synthvis/R18_A4_msd.yaml",
    "A5_bitrack": "configs/synthvis/R18_A5_bitrack.yaml",
    "A5_lv": "configs/synthvis/R18_A5_lv.yaml",
    "A5_disjoint": "configs/synthvis/R18_A5_disjoint.yaml",
}


def load_lazy(row, overrides=()):
    cfg = LazyConfig.load(os.path.join(LAZY, f"{row}.py"))
    return LazyConfig.apply_overrides(cfg, list(overrides))


def yacs(path, opts=()):
    return get_vis_cfg(os.path.join(REPO, path), ["MODEL.DEVICE", "cpu", *opts])


# ---------------------------------------------------------------------------------------------
# LazyConfig rows == YAML rows
# ---------------------------------------------------------------------------------------------
def _plain(v):
    """Comparable form of a module attribute: numbers, strings, and containers of them."""
    if isinstance(v, (list, tuple, ListConfig)):
        out = tuple(_plain(x) for x in v)
        return None if any(o is None for o in out) else out
    if isinstance(v, (dict, DictConfig)):
        out = tuple(sorted((str(k), _plain(x)) for k, x in v.items()))
        return None if any(o is None for _, o in out) else out
    if v is None or isinstance(v, (bool, numbers.Number, str)):
        return v
    return None


def hyper_parameters(model):
    """Every plain attribute of every submodule (thresholds, top-k, loss weights, strides...)."""
    out = {}
    for name, mod in model.named_modules():
        for k, v in vars(mod).items():
            p = _plain(v)
            if not k.startswith("_") and k != "training" and p is not None:
                out[f"{name}.{k}"] = p
    return out


@pytest.mark.parametrize("row", ["A1_baseline", "A1_paper", "A3_multitask", "A4_msd"])
def test_lazy_and_yacs_rows_build_the_same_model(row):
    torch.manual_seed(0)
    lazy_model = instantiate(load_lazy(row).model)
    yacs_model = build_model(yacs(TWINS[row]))

    lazy_sd, yacs_sd = lazy_model.state_dict(), yacs_model.state_dict()
    assert {k: tuple(v.shape) for k, v in lazy_sd.items()} == \
        {k: tuple(v.shape) for k, v in yacs_sd.items()}
    # buffers that are not learned (pixel mean/std) have the same values
    for name, buf in yacs_model.named_buffers():
        if name in yacs_sd and not name.endswith(("running_mean", "running_var")):
            assert torch.equal(lazy_sd[name], buf), name
    assert str(lazy_model) == str(yacs_model)
    assert hyper_parameters(lazy_model) == hyper_parameters(yacs_model)
    for a, b in zip(lazy_model.proposal_generator.anchor_generator.cell_anchors,
                    yacs_model.proposal_generator.anchor_generator.cell_anchors):
        assert torch.equal(a, b)
    frozen = [n for n, p in lazy_model.named_parameters() if not p.requires_grad]
    assert frozen == [n for n, p in yacs_model.named_parameters() if not p.requires_grad] == []

    # the concrete model of each row; A2..A5 build on the paper-faithful A1, "A1_baseline" is
    # the demo recipe
    demo = row == "A1_baseline"
    shapes = {k: tuple(v.shape) for k, v in lazy_sd.items()}
    assert shapes["backbone.top_block.p7.weight"] == (64, 64, 3, 3)   # P7 from P6, 64 ch
    k = 2 if row == "A4_msd" else 0  # MODEL.VIS.MSD.NUM_AUX_CLASSES
    assert lazy_model.roi_heads.num_aux_classes == yacs_model.roi_heads.num_aux_classes == k
    # 4 classes + K auxiliary + background
    assert shapes["roi_heads.box_predictor.cls_score.weight"] == (5 + k, 512)
    assert shapes["roi_heads.track_head.fcs.1.weight"] == (256, 256)
    assert lazy_model.proposal_generator.anchor_generator.strides == [4, 8, 16, 32, 64, 128]
    assert lazy_model.roi_heads.box_predictor.test_topk_per_image == 20
    assert shapes["roi_heads.mask_head.mask_fcn4.weight"] == (64, 64, 3, 3)  # NUM_CONV 4
    assert "roi_heads.mask_head.mask_fcn5.weight" not in shapes
    if demo:  # the demo's extras
        assert shapes["roi_heads.mask_class_head.predictor.weight"] == (4, 256)  # MASK_CLASS
        assert shapes["roi_heads.mask_class_head.convs.2.weight"] == (64, 32, 3, 3)
        assert lazy_model.roi_heads.mask_class_on_gt_masks            # TRAIN_ON_GT_MASKS
        assert lazy_model.roi_heads.mask_class_score_weight == 0.75
        # class-agnostic boxes and masks
        assert shapes["roi_heads.box_predictor.bbox_pred.weight"] == (4, 512)
        assert shapes["roi_heads.mask_head.predictor.weight"] == (1, 64, 1, 1)
    else:  # the paper's Mask R-CNN: no mask-shape classifier, a box and a mask per class
        assert lazy_model.roi_heads.mask_class_head is None
        assert not any(n.startswith("roi_heads.mask_class_head") for n in shapes)
        assert shapes["roi_heads.box_predictor.bbox_pred.weight"] == (4 * (4 + k), 512)
        assert shapes["roi_heads.mask_head.predictor.weight"] == (4 + k, 64, 1, 1)
    # MODEL.VIS.TRACK_HEAD.DETACH_ITERS, REF_BACKBONE_GRAD, MASK_NMS_THRESH, SCORE_THRESH_TEST
    assert lazy_model.roi_heads.track_detach_iters == yacs_model.roi_heads.track_detach_iters \
        == (600 if demo else 0)
    assert lazy_model.ref_backbone_grad == yacs_model.ref_backbone_grad == (not demo)
    assert lazy_model.mask_nms_thresh == yacs_model.mask_nms_thresh == (0.3 if demo else 0.0)
    assert lazy_model.roi_heads.box_predictor.test_score_thresh == (0.01 if demo else 0.05)
    if row in ("A1_baseline", "A1_paper"):
        assert len(shapes) == (130 if demo else 122)
        assert lazy_model.roi_heads.tcis is None and lazy_model.semseg_head is None
    else:
        assert len(shapes) == 159
        assert shapes["roi_heads.tcis.deform_conv.weight"] == (64, 64, 3, 3)
        assert shapes["roi_heads.maskiou_head.predictor.weight"] == (4 + k, 512)
        # the image-level heads keep the video set's 4 classes (+ background for SemSeg)
        assert shapes["semseg_head.predictor.weight"] == (5, 128, 1, 1)
        assert shapes["multilabel_head.fc.weight"] == (4, 256)


def test_lazy_row_overrides_reach_every_head_that_reads_them():
    lazy = load_lazy("A3_multitask", ["model.backbone.out_channels=32",
                                      "model.roi_heads.num_classes=2", "tracker.score_thresh=0.0"])
    shapes = {k: tuple(v.shape) for k, v in instantiate(lazy.model).state_dict().items()}
    assert shapes["backbone.fpn_output5.weight"] == (32, 32, 3, 3)
    assert shapes["proposal_generator.rpn_head.conv.weight"] == (64, 32, 3, 3)
    assert shapes["roi_heads.box_head.fc1.weight"] == (512, 32 * 7 * 7)
    assert shapes["roi_heads.track_head.fcs.0.weight"] == (256, 32 * 7 * 7)
    assert shapes["roi_heads.mask_head.mask_fcn1.weight"] == (64, 32, 3, 3)
    assert shapes["roi_heads.tcis.deform_conv.weight"] == (32, 32, 3, 3)
    assert shapes["roi_heads.maskiou_head.predictor.weight"] == (2, 512)
    assert shapes["roi_heads.mask_head.predictor.weight"] == (2, 64, 1, 1)  # one mask per class
    assert shapes["roi_heads.box_predictor.cls_score.weight"] == (3, 512)
    assert shapes["semseg_head.convs.0.weight"] == (128, 32, 3, 3)
    assert shapes["semseg_head.predictor.weight"] == (3, 128, 1, 1)
    assert shapes["multilabel_head.fc.weight"] == (2, 256)
    assert instantiate(lazy.tracker).score_thresh == 0.0


def test_lazy_rows_read_their_numbers_from_the_yaml_twins(tmp_path):
    """A copy of the repository's configs with an edited A1 YAML: the copied LazyConfig rows
    (which find the YAMLs from their own location) follow the edit, down to A5."""
    shutil.copytree(os.path.join(REPO, "configs"), tmp_path / "configs")
    shutil.copytree(LAZY, tmp_path / "projects" / "VIS_Ablation" / "configs")
    a1_yaml = tmp_path / "configs" / "synthvis" / "R18_A1_paper.yaml"
    a1_yaml.write_text(a1_yaml.read_text() + "MODEL:\n  FPN:\n    OUT_CHANNELS: 48\n"
                       "  VIS:\n    TRACKER:\n      SCORE_THRESH: 0.2\n"
                       "SOLVER:\n  BASE_LR: 0.001\n")
    lazy = LazyConfig.load(str(tmp_path / "projects" / "VIS_Ablation" / "configs" / "A5_bitrack.py"))
    assert lazy.model.backbone.out_channels == 48 and lazy.optimizer.lr == 0.001
    tracker = instantiate(lazy.tracker)
    assert tracker.score_thresh == 0.2 and tracker.bitrack
    assert tracker == VideoTracker.from_config(get_vis_cfg(
        str(tmp_path / "configs" / "synthvis" / "R18_A5_bitrack.yaml")))
    assert load_lazy("A5_bitrack").model.backbone.out_channels == 64  # the repository's own


def test_lazy_rows_match_yaml_tracker_and_schedule():
    for row, path in TWINS.items():
        lazy = load_lazy(row)
        assert instantiate(lazy.tracker) == VideoTracker.from_config(yacs(path)), row
    demo = instantiate(load_lazy("A1_baseline").tracker)
    assert (demo.momentum, demo.track_nms_thresh, demo.distance_weight) == (0.8, 0.3, 2.0)
    # the paper-faithful A1 tracks as MaskTrack R-CNN: the tracker's defaults
    assert instantiate(load_lazy("A1_paper").tracker) == VideoTracker()
    assert instantiate(load_lazy("A4_msd").tracker) == VideoTracker()
    # A5: BiTrack as Algorithm 2 has it, no label voting; A5+LV adds the vote by frequency;
    # A5-disjoint is A5 with the other merge
    a5 = instantiate(load_lazy("A5_bitrack").tracker)
    assert a5 == VideoTracker(bitrack=True, bitrack_merge="paper")
    assert instantiate(load_lazy("A5_lv").tracker) == VideoTracker(
        bitrack=True, bitrack_merge="paper", label_voting=True)
    assert not VideoTracker().label_vote_score_weighted
    assert instantiate(load_lazy("A5_disjoint").tracker) == VideoTracker(
        bitrack=True, bitrack_merge="disjoint")
    # the A5 rows differ from A4 at inference only: same model tree
    a4_model = as_container(load_lazy("A4_msd").model)
    for row in ("A5_bitrack", "A5_lv", "A5_disjoint"):
        assert as_container(load_lazy(row).model) == a4_model, row

    # the LR schedule: same multiplier at every iteration as the YAML's SOLVER settings
    cfg = yacs(TWINS["A1_baseline"])
    lazy = load_lazy("A1_baseline")
    opt_y = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.SOLVER.BASE_LR)
    opt_l = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lazy.optimizer.lr)
    sched_y = build_lr_scheduler(cfg, opt_y)
    sched_l = LRMultiplier(opt_l, instantiate(lazy.lr_multiplier), lazy.train.max_iter)
    lrs_y, lrs_l = [], []
    for _ in range(cfg.SOLVER.MAX_ITER):
        lrs_y.append(opt_y.param_groups[0]["lr"])
        lrs_l.append(opt_l.param_groups[0]["lr"])
        sched_y.step()
        sched_l.step()
    np.testing.assert_allclose(lrs_l, lrs_y, rtol=1e-9)
    assert lrs_y[2699] == pytest.approx(5e-4) and lrs_y[2700] == pytest.approx(5e-5)
    assert lrs_y[3380] == pytest.approx(5e-6) and lrs_y[0] == pytest.approx(5e-4 * 0.001)


def test_lazy_training_and_data_settings_match_the_yaml():
    """Everything the YAML row sets outside the model, as the LazyConfig row sets it."""
    cfg = yacs(TWINS["A1_baseline"])
    lazy = load_lazy("A1_baseline")
    train, opt, data = lazy.train, lazy.optimizer, lazy.dataloader
    clip = cfg.SOLVER.CLIP_GRADIENTS
    assert dict(train.clip_gradients) == {"enabled": clip.ENABLED, "clip_type": clip.CLIP_TYPE,
                                         "clip_value": clip.CLIP_VALUE,
                                         "norm_type": clip.NORM_TYPE}
    assert (train.max_iter, train.checkpointer.period, train.eval_period) == \
        (cfg.SOLVER.MAX_ITER, cfg.SOLVER.CHECKPOINT_PERIOD, cfg.TEST.EVAL_PERIOD)
    assert cfg.SOLVER.OPTIMIZER == "ADAMW" and opt._target_ is torch.optim.AdamW
    assert (opt.lr, tuple(opt.betas), opt.weight_decay) == \
        (cfg.SOLVER.BASE_LR, tuple(cfg.SOLVER.ADAMW_BETAS), cfg.SOLVER.WEIGHT_DECAY)
    assert opt.params.weight_decay_norm == cfg.SOLVER.WEIGHT_DECAY_NORM
    assert (data.train.total_batch_size, data.train.num_workers) == \
        (cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_WORKERS)
    assert tuple(data.train.dataset.names) == cfg.DATASETS.TRAIN
    assert (data.test.dataset,) == cfg.DATASETS.TEST
    video = data.train.mapper.video_mapper
    assert (video.ref_delta, video.frames_per_video, video.instance_mask_format) == \
        (cfg.INPUT.VIS.REF_DELTA, cfg.INPUT.VIS.FRAMES_PER_VIDEO, cfg.INPUT.MASK_FORMAT)
    resize = video.augmentations[0]
    assert (tuple(resize.short_edge_length), resize.max_size) == \
        (cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN)
    test_resize = data.test.mapper.augmentation
    assert (test_resize.short_edge_length, test_resize.max_size) == \
        (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    affine = video.pseudo_augmentations[0]
    assert (affine.max_shift, affine.max_rotate, list(affine.scale_range)) == \
        (cfg.INPUT.VIS.PSEUDO_SHIFT, cfg.INPUT.VIS.PSEUDO_ROTATE, cfg.INPUT.VIS.PSEUDO_SCALE)
    assert video.pseudo_augmentations[1].prob == cfg.INPUT.VIS.PSEUDO_FLIP
    cp, cp_cfg = data.train.mapper.copy_paste, cfg.INPUT.VIS.COPY_PASTE
    assert cp_cfg.ENABLED and (cp.prob, cp.max_objects, cp.bank_size, cp.min_area) == \
        (cp_cfg.PROB, cp_cfg.MAX_OBJECTS, cp_cfg.BANK_SIZE, cp_cfg.MIN_AREA)
    rc, rc_cfg = data.train.mapper.recolor, cfg.INPUT.VIS.INSTANCE_RECOLOR
    assert rc_cfg.ENABLED and (rc.prob, tuple(rc.gain)) == (rc_cfg.PROB, tuple(rc_cfg.GAIN))
    assert dict(train.ema) == {"enabled": cfg.SOLVER.EMA.ENABLED, "decay": cfg.SOLVER.EMA.DECAY}
    assert train.cpu_bf16 == cfg.SOLVER.CPU_BF16
    assert train.max_train_minutes == cfg.SOLVER.MAX_TRAIN_MINUTES
    assert (train.trust_pkl, train.allow_partial) == \
        (cfg.MODEL.VIS.CHECKPOINT.TRUST_PKL, cfg.MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL) == \
        (False, False)
    assert train.cpu_fallback == cfg.MODEL.VIS.CPU_FALLBACK is True  # a CPU recipe
    # the same training augmentations, in the same order, with the same parameters
    built_y = build_pair_augmentation(cfg, is_train=True)
    built_l = [instantiate(a) for a in video.augmentations]
    assert [type(a) for a in built_l] == [type(a) for a in built_y] and len(built_y) == 6
    for a, b in zip(built_l, built_y):
        assert {k: v for k, v in vars(a).items() if not k.startswith("_")} == \
            {k: v for k, v in vars(b).items() if not k.startswith("_")}, type(a).__name__


def test_a1_paper_is_the_demo_recipe_without_the_extras():
    """The paper-faithful A1 differs from the demo recipe (A1-demo) in exactly the extras the
    paper does not have; the CPU recipe (width, optimiser, clipping, bfloat16, EMA) is the same."""
    demo = flat_config(yacs(TWINS["A1_baseline"]))
    paper = flat_config(yacs(TWINS["A1_paper"]))
    assert set(demo) == set(paper)
    diff = {k: (demo[k], paper[k]) for k in demo if demo[k] != paper[k]}
    assert diff == {
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST": (0.01, 0.05),
        "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": (True, False),
        "MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK": (True, False),
        "MODEL.VIS.REF_BACKBONE_GRAD": (False, True),
        "MODEL.VIS.MASK_NMS_THRESH": (0.3, 0.0),
        "MODEL.VIS.TRACK_HEAD.DETACH_ITERS": (600, 0),
        "MODEL.VIS.MASK_CLASS.ENABLED": (True, False),
        "MODEL.VIS.TRACKER.DISTANCE_WEIGHT": (2.0, 0.0),
        "MODEL.VIS.TRACKER.SCORE_COVERAGE_EXP": (0.5, 0.0),
        "MODEL.VIS.TRACKER.SCORE_THRESH": (0.1, 0.05),
        "MODEL.VIS.TRACKER.TRACK_NMS_THRESH": (0.3, 0.0),
        "MODEL.VIS.TRACKER.MOMENTUM": (0.8, 0.0),
        "INPUT.VIS.VERTICAL_FLIP_PROB": (0.5, 0.0),
        "INPUT.VIS.BRIGHTNESS": ([0.8, 1.2], [1.0, 1.0]),
        "INPUT.VIS.CONTRAST": ([0.8, 1.2], [1.0, 1.0]),
        "INPUT.VIS.CHANNEL_PERMUTATION_PROB": (0.5, 0.0),
        "INPUT.VIS.COPY_PASTE.ENABLED": (True, False),
        "INPUT.VIS.INSTANCE_RECOLOR.ENABLED": (True, False),
        "OUTPUT_DIR": ("output/synthvis_ablation/A1_baseline",
                       "output/synthvis_ablation/A1_paper"),
    }
    # the tracker's remaining settings are its defaults (MaskTrack R-CNN's score)
    assert VideoTracker.from_config(yacs(TWINS["A1_paper"])) == VideoTracker()
    # A2 adds TCIS to the paper-faithful A1, whose reference frames get gradient
    a1, a2 = yacs(TWINS["A1_paper"]), yacs(TWINS["A2_tcis"])
    assert a2.MODEL.VIS.REF_BACKBONE_GRAD and a2.MODEL.VIS.TCIS.ENABLED
    a2.MODEL.VIS.TCIS.ENABLED = False
    assert a1.MODEL == a2.MODEL and a1.INPUT == a2.INPUT and a1.SOLVER == a2.SOLVER

    # the LazyConfig twin: the horizontal flip alone, no copy-paste or recolouring
    cfg, lazy = yacs(TWINS["A1_paper"]), load_lazy("A1_paper")
    mapper = lazy.dataloader.train.mapper
    assert mapper.copy_paste is None and mapper.recolor is None
    built_y = build_pair_augmentation(cfg, is_train=True)
    built_l = [instantiate(a) for a in mapper.video_mapper.augmentations]
    assert [type(a).__name__ for a in built_l] == [type(a).__name__ for a in built_y] == \
        ["ResizeShortestEdge", "RandomFlip"]
    assert dict(lazy.train.ema) == {"enabled": True, "decay": 0.996}
    assert lazy.train.cpu_bf16 and lazy.train.clip_gradients.enabled


def test_a4_rows_are_a3_with_multi_source_data():
    """A4 = A3 + the image sources and K auxiliary classes; the LazyConfig row's data are its
    YAML twin's, and another K reaches the data through the ROI heads."""
    for a3, a4, train in [
            ("configs/synthvis/R18_A3_multitask.yaml", "configs/synthvis/R18_A4_msd.yaml",
             ("synthvis_train", "synthvis_msd_train", "synthvis_msd_weak_train")),
            ("configs/ytvis_2021/R50_FPN_A3_multitask.yaml",
             "configs/ytvis_2021/R50_FPN_A4_msd.yaml",
             ("ytvis_2021_train", "coco_2017_train", "openimages_train_ytvis_2021"))]:
        c3, c4 = yacs(a3), yacs(a4)
        assert c4.DATASETS.TRAIN == train and len(c4.DATALOADER.VIS.SOURCE_WEIGHTS) == 3
        assert c3.MODEL.VIS.MSD.NUM_AUX_CLASSES == 0 < c4.MODEL.VIS.MSD.NUM_AUX_CLASSES
        c3.MODEL.VIS.MSD = c4.MODEL.VIS.MSD
        assert c3.MODEL == c4.MODEL and c3.INPUT == c4.INPUT and c3.SOLVER == c4.SOLVER
    cfg, lazy = yacs(TWINS["A4_msd"]), load_lazy("A4_msd")
    data = lazy.dataloader.train
    assert tuple(data.dataset.names) == cfg.DATASETS.TRAIN and data.dataset.mask_on
    assert list(data.source_weights) == list(cfg.DATALOADER.VIS.SOURCE_WEIGHTS) == [0.5, 0.35, 0.15]
    lazy = load_lazy("A4_msd", ["model.roi_heads.num_aux_classes=1",
                                "model.roi_heads.num_classes=5"])
    assert OmegaConf.to_container(lazy.dataloader.train.dataset, resolve=True)[
        "num_aux_classes"] == 1


def test_lazy_trainer_clips_gradients_like_the_yaml_trainer():
    train_net = load_script("train_net")

    def step(clip):
        w = torch.nn.Parameter(torch.zeros(4))
        opt = train_net.add_gradient_clipping(torch.optim.SGD([w], lr=0.1), clip)
        w.grad = torch.tensor([30.0, 40.0, 0.0, 0.0])  # norm 50
        opt.step()
        return w.detach()

    clip = dict(load_lazy("A1_baseline").train.clip_gradients)  # norm clipped to 5
    assert torch.allclose(step(clip), torch.tensor([-0.3, -0.4, 0.0, 0.0]))
    assert torch.allclose(step(dict(clip, enabled=False)), torch.tensor([-3.0, -4.0, 0.0, 0.0]))
    with pytest.raises(KeyError, match=r"unknown key\(s\) \['clip_norm'\]"):
        train_net.add_gradient_clipping(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))],
                                                        lr=0.1), dict(clip, clip_norm=1.0))


def test_lazy_trainer_builds_the_weight_average_of_train_ema():
    train_net = load_script("train_net")
    model = torch.nn.Linear(2, 1)
    ema = train_net.build_ema(model, dict(load_lazy("A1_baseline").train.ema))
    assert ema is not None and ema.decay == 0.996 and ema.model is model
    assert train_net.build_ema(model, {"enabled": False, "decay": 0.9}) is None
    assert train_net.build_ema(model, None) is None
    with pytest.raises(KeyError, match=r"train.ema: unknown key\(s\) \['beta'\]"):
        train_net.build_ema(model, {"enabled": True, "beta": 0.9})


def test_lazy_test_scales_run_the_fused_frame_model(monkeypatch):
    """``test.scales`` is the LazyConfig twin of TEST.VIS.SCALES: one scale evaluates the model
    itself, several a FusedFrameModel at those factors of the test mapper's size."""
    from vis_d2.engine.frame_fusion import FusedFrameModel

    train_net = load_script("train_net")
    for row in ("A1_baseline", "A1_paper", "A5_bitrack"):
        cfg = load_lazy(row)
        yaml_cfg = yacs(TWINS[row])
        assert tuple(cfg.test.scales) == tuple(yaml_cfg.TEST.VIS.SCALES) == (1.0,), row
        assert cfg.test.fusion_iou_thresh == yaml_cfg.TEST.VIS.FUSION_IOU_THRESH, row
    model = torch.nn.Linear(2, 1)
    assert train_net.frame_model(load_lazy("A1_baseline"), model) is model
    cfg = load_lazy("A1_baseline", ["test.scales=[0.7,1.3]", "test.fusion_iou_thresh=0.6",
                                    "test.detections_per_image=7"])
    fused = train_net.frame_model(cfg, model)
    assert isinstance(fused, FusedFrameModel) and fused.scales == (0.7, 1.3)
    assert fused.iou_thresh == 0.6 and fused.max_detections == 7
    (member,) = fused.members
    aug = cfg.dataloader.test.mapper.augmentation
    assert member.model is model and (member.min_size, member.max_size) == (
        aug.short_edge_length, aug.max_size)
    with pytest.raises(ValueError, match=r"test\.scales: every scale must be a number > 0"):
        train_net.frame_model(load_lazy("A1_baseline", ["test.scales=[0.0,1.0]"]), model)
    seen = []  # do_test tracks with that frame model
    monkeypatch.setattr(train_net, "instantiate", lambda node: None)
    monkeypatch.setattr(train_net, "inference_on_videos", lambda m, *a: seen.append(m) or {})
    train_net.do_test(cfg, model)
    assert isinstance(seen[0], FusedFrameModel) and seen[0].scales == (0.7, 1.3)
    cfg.dataloader.test.mapper.augmentation.short_edge_length = (300, 400)
    with pytest.raises(ValueError, match="ResizeShortestEdge with one short_edge_length"):
        train_net.frame_model(cfg, model)


def as_container(node):
    return OmegaConf.to_container(node, resolve=True)


# ---------------------------------------------------------------------------------------------
# YAML rows
# ---------------------------------------------------------------------------------------------
# path: (TCIS, multi-task, MSD, BiTrack, label voting, test set)
YAML_ROWS = {
    "configs/synthvis/R18_A1_paper.yaml": (False, False, False, False, False, "synthvis_val"),
    "configs/synthvis/R18_A1_baseline.yaml": (False, False, False, False, False, "synthvis_val"),
    "configs/synthvis/R18_A2_tcis.yaml": (True, False, False, False, False, "synthvis_val"),
    "configs/synthvis/R18_A3_multitask.yaml": (True, True, False, False, False, "synthvis_val"),
    "configs/synthvis/R18_A4_msd.yaml": (True, True, True, False, False, "synthvis_val"),
    "configs/synthvis/R18_A5_bitrack.yaml": (True, True, True, True, False, "synthvis_val"),
    "configs/synthvis/R18_A5_lv.yaml": (True, True, True, True, True, "synthvis_val"),
    "configs/synthvis/R18_A5_disjoint.yaml": (True, True, True, True, False, "synthvis_val"),
    "configs/ytvis_2021/R50_FPN_A2_tcis.yaml": (True, False, False, False, False, "ytvis_2021_val"),
    "configs/ytvis_2021/R50_FPN_A3_multitask.yaml": (True, True, False, False, False,
                                                     "ytvis_2021_val"),
    "configs/ytvis_2021/R50_FPN_A4_msd.yaml": (True, True, True, False, False, "ytvis_2021_val"),
    "configs/ytvis_2021/R50_FPN_A5_bitrack.yaml": (True, True, True, True, False,
                                                   "ytvis_2021_val"),
    "configs/ytvis_2021/R50_FPN_A5_lv.yaml": (True, True, True, True, True, "ytvis_2021_val"),
    "configs/ytvis_2021/R50_FPN_A5_disjoint.yaml": (True, True, True, True, False,
                                                    "ytvis_2021_val"),
    "configs/ytvis_2021/R50_FPN_A5_noMSD.yaml": (True, True, False, True, True, "ytvis_2021_val"),
    "configs/ytvis_2019/R50_FPN_TCIS_MT_BiTrack.yaml": (True, True, False, True, True,
                                                        "ytvis_2019_val"),
}


@pytest.mark.parametrize("path", sorted(YAML_ROWS))
def test_yaml_row_loads_and_builds(path):
    tcis, multitask, msd, bitrack, label_voting, test_set = YAML_ROWS[path]
    cfg = yacs(path)
    vis = cfg.MODEL.VIS
    assert vis.TCIS.ENABLED == tcis
    assert vis.SEMSEG.ENABLED == vis.MULTILABEL.ENABLED == vis.MASKIOU.ENABLED == multitask
    assert vis.TRACKER.BITRACK == bitrack and vis.TRACKER.LABEL_VOTING == label_voting
    assert not vis.TRACKER.LABEL_VOTE_SCORE_WEIGHTED  # the paper's vote: by frequency
    if bitrack and "A5" in path and "noMSD" not in path:  # Table 1's A5: Algorithm 2
        assert vis.TRACKER.BITRACK_MERGE == ("disjoint" if "disjoint" in path else "paper")
    assert cfg.DATASETS.TEST == (test_set,)
    assert cfg.MODEL.RESNETS.DEPTH == (18 if "synthvis" in path else 50)
    stem = os.path.splitext(os.path.basename(path))[0]
    assert cfg.OUTPUT_DIR.endswith(stem.replace("R18_", ""))  # each row its own folder

    model = build_model(cfg)
    assert (model.roi_heads.tcis is not None) == tcis
    assert (model.roi_heads.maskiou_head is not None) == multitask
    assert (model.semseg_head is not None) == (model.multilabel_head is not None) == multitask
    num_classes = 4 if "synthvis" in path else 40
    k = cfg.MODEL.VIS.MSD.NUM_AUX_CLASSES
    assert (k > 0) == msd  # Multi-Source Data with auxiliary classes from row A4 on
    assert model.roi_heads.box_predictor.cls_score.out_features == num_classes + k + 1


def test_inference_only_rows_share_their_checkpoint_rows_model_config():
    """A5, A5+LV and A5-disjoint reuse A4's checkpoint (R50_FPN_A5_noMSD A3's): everything but the
    tracker must be that row's."""
    pairs = [("configs/ytvis_2021/R50_FPN_A3_multitask.yaml",
              "configs/ytvis_2021/R50_FPN_A5_noMSD.yaml")]
    for name in ("A5", "A5+LV", "A5-disjoint"):
        spec = ablation_sweep.ROWS[name]
        assert spec.checkpoint_from == "A4"
        for bench, path in spec.yaml.items():
            pairs.append((ablation_sweep.ROWS["A4"].yaml[bench], path))
    assert len(pairs) == 7
    for a4, a5 in pairs:
        c4, c5 = yacs(a4), yacs(a5)
        assert c4.MODEL.VIS.TRACKER != c5.MODEL.VIS.TRACKER
        c4.MODEL.VIS.TRACKER = c5.MODEL.VIS.TRACKER
        assert c4.MODEL == c5.MODEL and c4.INPUT == c5.INPUT and c4.SOLVER == c5.SOLVER
        assert c4.DATASETS == c5.DATASETS and c4.DATALOADER == c5.DATALOADER


def test_sweep_rows_point_at_their_configs():
    rows = ablation_sweep.ROWS
    assert list(rows) == ["A1", "A2", "A3", "A4", "A5", "A5+LV", "A5-disjoint", "A1-demo"]
    for spec in rows.values():
        for bench, path in spec.yaml.items():
            cfg = yacs(path)
            assert cfg.MODEL.VIS.TCIS.ENABLED == spec.tcis, spec.name
            assert cfg.MODEL.VIS.MASKIOU.ENABLED == spec.multitask, spec.name
            assert (cfg.MODEL.VIS.MSD.NUM_AUX_CLASSES > 0) == spec.msd, spec.name
            assert cfg.MODEL.VIS.TRACKER.BITRACK == spec.bitrack, spec.name
            assert cfg.MODEL.VIS.TRACKER.LABEL_VOTING == spec.label_voting, spec.name
        assert os.path.isfile(os.path.join(REPO, spec.lazy)), spec.lazy
        twin = TWINS[os.path.splitext(os.path.basename(spec.lazy))[0]]
        assert twin == spec.yaml["synthvis"], spec.name
        assert spec.base is None or list(rows).index(spec.base) < list(rows).index(spec.name)
    # the demo recipe exists for the synthetic benchmark only
    assert ablation_sweep.default_rows("ytvis_2021") == list(rows)[:-1]
    assert ablation_sweep.default_rows("synthvis") == list(rows)


# ---------------------------------------------------------------------------------------------
# Sweep: table writer
# ---------------------------------------------------------------------------------------------
PAPER = {  # paper Table 1
    "A1": (0.309, 0.501, 0.338, 0.269, 0.346),
    "A2": (0.331, 0.535, 0.354, 0.285, 0.368),
    "A3": (0.338, 0.546, 0.356, 0.287, 0.374),
    "A4": (0.364, 0.570, 0.402, 0.299, 0.397),
    "A5": (0.388, 0.589, 0.438, 0.320, 0.436),
}


def fake_results(rows=("A1", "A2", "A3", "A4", "A5"), seeds=(0, 1), splits=("synthvis_val",)):
    """Paper Table 1 as seed 0, seed 1 = seed 0 + 0.01 * (row index + 1) on every metric, and
    each further split 0.1 below the first."""
    out = []
    for s_i, split in enumerate(splits):
        for seed in seeds:
            for i, r in enumerate(rows):
                vals = [v + seed * 0.01 * (i + 1) - 0.1 * s_i for v in PAPER[r]]
                out.append(ablation_sweep.RowResult(
                    ablation_sweep.ROWS[r], dict(zip(ablation_sweep.TABLE_METRICS, vals), APs=0.1),
                    config=f"cfg_{r}.yaml", dataset="synthvis_val", trained=r != "A5",
                    seed=seed, split=split))
    return out


def test_table_summary_mean_spread_and_deltas():
    summary = ablation_sweep.summarize(fake_results(splits=("synthvis_val", "s11")))
    assert list(summary) == ["synthvis_val", "s11"]
    rows = summary["synthvis_val"]
    assert [s.spec.name for s in rows] == ["A1", "A2", "A3", "A4", "A5"]
    a1, a2, a5 = rows[0], rows[1], rows[4]
    assert a1.seeds == [0, 1] and a1.aps == [pytest.approx(0.309), pytest.approx(0.319)]
    assert a1.mean["AP"] == pytest.approx(0.314) and a1.half_range("AP") == pytest.approx(0.005)
    assert (a5.low["AR10"], a5.high["AR10"]) == (pytest.approx(0.436), pytest.approx(0.486))
    assert a5.mean["AR10"] == pytest.approx(0.461) and a5.half_range("AR10") == pytest.approx(0.025)
    # ΔAP on the means, in points: A2 (0.331 + 0.341) / 2 - (0.309 + 0.319) / 2 = 0.022 + 0.005
    assert a1.delta_ap is None and a2.delta_vs == "A1"
    assert a2.delta_ap == pytest.approx(2.7)
    assert summary["s11"][0].mean["AP"] == pytest.approx(0.214)
    assert summary["s11"][1].delta_ap == pytest.approx(2.7)

    # ΔAP against the row a row builds on, where that row is in the table
    res = fake_results(rows=("A1", "A4", "A5"))
    demo = ablation_sweep.RowSpec("A1-demo", "demo", False, False, False, {}, "", base="A1")
    res.append(ablation_sweep.RowResult(demo, dict(zip(ablation_sweep.TABLE_METRICS,
                                                       PAPER["A1"])), seed=0, split="synthvis_val"))
    got = {s.spec.name: s for s in ablation_sweep.summarize(res)["synthvis_val"]}
    # A4's base A3 is not in the table: the row above (A1)
    assert got["A4"].delta_vs == "A1" and got["A5"].delta_vs == "A4"
    assert got["A1-demo"].delta_vs == "A1" and got["A1-demo"].seeds == [0]
    assert got["A1-demo"].delta_ap == pytest.approx((0.309 - 0.314) * 100)
    assert got["A1-demo"].half_range("AP") == 0.0

    bad = fake_results(rows=("A1",), seeds=(0,))
    del bad[0].metrics["AR10"]
    with pytest.raises(ablation_sweep.SweepError, match=r"row A1: metrics \['AR10'\] missing"):
        ablation_sweep.format_csv(bad)
    with pytest.raises(ablation_sweep.SweepError, match="seed listed twice"):
        ablation_sweep.summarize(fake_results(rows=("A1",), seeds=(0, 0)))


def test_table_writer_on_fake_metrics(tmp_path):
    cmd = "python projects/VIS_Ablation/sweep.py --seeds 0 1"
    paths = ablation_sweep.write_tables(fake_results(splits=("synthvis_val", "s11")),
                                        str(tmp_path), "Paper Table 1", cmd)
    assert set(paths) == {"md", "csv", "png"}

    md = (tmp_path / "ablation.md").read_text(encoding="utf-8")
    lines = md.splitlines()
    assert lines[0] == "# Paper Table 1"
    assert lines.index("## synthvis_val") < lines.index("## s11")
    table = [ln for ln in lines if ln.startswith("| A")]
    assert len(table) == 10  # 5 rows x 2 splits
    assert table[0] == ("| A1 | baseline (paper-faithful) |  |  |  |  |  | 0.314 ±0.005 | "
                        "0.506 ±0.005 | 0.343 ±0.005 | 0.274 ±0.005 | 0.351 ±0.005 | - | "
                        "0.309 / 0.319 |  |")
    assert table[1].startswith("| A2 | + TCIS | x |  |  |  |  | 0.341 ±0.010 |")
    assert "| +2.7 (A1) | 0.331 / 0.351 |" in table[1]
    assert table[4].startswith("| A5 | + BiTrack | x | x | x | x |  | 0.413 ±0.025 |")
    assert table[4].endswith("| +2.9 (A4) | 0.388 / 0.438 | not trained: A4's checkpoint "
                             "(inference-only change) |")
    assert table[5].startswith("| A1 | baseline (paper-faithful) |  |  |  |  |  | 0.214 ±0.005 |")
    assert "Seeds 0, 1: each cell is the mean over seeds ± half the range" in md
    assert md.rstrip().endswith(f"```bash\n{cmd}\n```")

    rows = list(csv.DictReader(io.StringIO((tmp_path / "ablation.csv").read_text())))
    assert len(rows) == 20  # every (row, seed, split)
    got = {(r["row"], r["seed"], r["split"]): r for r in rows}
    assert float(got[("A2", "1", "synthvis_val")]["AP"]) == pytest.approx(0.351)
    assert float(got[("A2", "1", "s11")]["AP"]) == pytest.approx(0.251)
    assert float(got[("A2", "0", "s11")]["delta_AP"]) == pytest.approx(2.7)
    assert got[("A2", "0", "s11")]["delta_vs"] == "A1"
    assert got[("A1", "0", "synthvis_val")]["delta_AP"] == ""
    assert got[("A5", "0", "s11")]["msd"] == got[("A5", "0", "s11")]["bitrack"] == "1"
    assert got[("A5", "0", "s11")]["checkpoint_from"] == "A4"
    assert got[("A5", "0", "s11")]["trained"] == "0" and got[("A4", "0", "s11")]["trained"] == "1"

    png = (tmp_path / "ablation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(str(tmp_path / "ablation.png"))
    # 2 split groups of 5 bars: 1 + 2 * (0.6 + 0.45 * 5) = 6.7 in wide at 100 dpi
    assert img.shape[:2] == (420, 670)


def test_sweep_schedule_scaling_and_arguments(tmp_path):
    assert ablation_sweep.scale_schedule(1500, (1100, 1350), 100, 300) == ((220, 270), 20)
    assert ablation_sweep.scale_schedule(1500, (1100, 1350), 100, 1) == ((), 0)
    assert ablation_sweep.scale_schedule(1500, (1100, 1350), 100, 4) == ((3,), 0)
    args = ablation_sweep.parse_args(["--rows", "A5", "A1", "--max-iter", "2", "--",
                                      "MODEL.DEVICE", "cpu"])
    assert args.rows == ["A5", "A1"] and args.opts == ["MODEL.DEVICE", "cpu"]
    assert args.seeds == [0] and args.unseen_split == []
    assert args.output_dir == os.path.join("output", "ablation_synthvis")
    assert ablation_sweep.parse_args([]).rows == list(ablation_sweep.ROWS)
    assert "A1-demo" not in ablation_sweep.parse_args(["--benchmark", "ytvis_2021"]).rows
    args = ablation_sweep.parse_args(["--seeds", "0", "1", "--unseen-split", f"s11={tmp_path}@11",
                                      "--unseen-split", "dev=rel/dev"])
    assert args.seeds == [0, 1]
    assert args.unseen_split == [
        ablation_sweep.UnseenSplit("s11", str(tmp_path), 11),
        ablation_sweep.UnseenSplit("dev", os.path.abspath("rel/dev"), None)]
    assert ablation_sweep.reproduce_command(args) == (
        f"python projects/VIS_Ablation/sweep.py --seeds 0 1 --unseen-split s11={tmp_path}@11 "
        "--unseen-split dev=rel/dev")
    for bad in (["--rows", "A6"], ["--rows", "A1", "A1"], ["--seeds", "0", "0"],
                ["--seeds", "-1"], ["--benchmark", "ytvis_2021", "--rows", "A1-demo"],
                ["--lazy", "--benchmark", "ytvis_2021"], ["--unseen-split", "s11"],
                ["--unseen-split", "s 11=x"], ["--unseen-split", "s11=x@eleven"],
                ["--unseen-split", "s11=x@0"], ["--unseen-split", "a=x", "--unseen-split", "a=y"]):
        with pytest.raises(SystemExit):
            ablation_sweep.parse_args(bad)
    with pytest.raises(ValueError, match="SEED must be >= 0 and not 0"):
        ablation_sweep.parse_unseen_split("s0=x@0")


# ---------------------------------------------------------------------------------------------
# LazyConfig path: tracker settings and explicit-argument loaders
# ---------------------------------------------------------------------------------------------
def _rle(box, h=40, w=60):
    m = np.zeros((h, w), dtype=np.uint8, order="F")
    x1, y1, x2, y2 = [int(v) for v in box]
    m[y1:y2, x1:x2] = 1
    r = mask_util.encode(m)
    r["counts"] = r["counts"].decode("ascii")
    return r


def _frames():
    """Two objects over 6 frames; object 1 is missed by the detector in frame 2 and its label
    flips in frame 4. The embeddings are weak (dot product 2 with the own track, 0 with the
    other), so the label term decides whether the flipped detection joins its track."""
    out = []
    e = 2.0 ** 0.5
    for t in range(6):
        boxes, labels, emb = [[5 + t, 5, 20 + t, 20]], [0], [[e, 0.0]]
        if t != 2:
            boxes.append([35, 10 + t, 55, 30 + t])
            labels.append(2 if t == 4 else 1)
            emb.append([0.0, e])
        out.append(FrameDetections(
            boxes=np.array(boxes, np.float32), scores=np.full(len(boxes), 0.9, np.float32),
            labels=np.array(labels), embeddings=np.array(emb, np.float32),
            masks=[_rle(b) for b in boxes]))
    return out


def test_video_tracker_from_yacs_and_lazy_agree():
    default = get_vis_cfg(opts=["MODEL.DEVICE", "cpu"])
    assert VideoTracker() == VideoTracker.from_config(default)
    cfg = get_vis_cfg(opts=["MODEL.DEVICE", "cpu", "MODEL.VIS.TRACKER.BITRACK", "True",
                            "MODEL.VIS.TRACKER.LABEL_VOTING", "True",
                            "MODEL.VIS.TRACKER.LABEL_WEIGHT", "5.0"])
    tracker = VideoTracker(bitrack=True, label_voting=True, label_weight=5.0)
    assert VideoTracker.from_config(cfg) == tracker
    assert instantiate(L(VideoTracker)(bitrack=True, label_voting=True, label_weight=5)) == tracker

    frames = _frames()
    by_cfg = VideoTracker.from_config(cfg).predict(frames, 7)
    assert by_cfg == tracker.predict(frames, 7)

    def summary(preds):  # (category, number of frames) per track
        return sorted((p["category_id"], sum(s is not None for s in p["segmentations"]))
                      for p in preds)

    # label voting: object 1 is one track of its 5 frames, voted label 1
    assert summary(by_cfg) == [(0, 6), (1, 5)]
    # without it, the flipped frame starts a track of its own
    assert summary(VideoTracker().predict(frames, 7)) == [(0, 6), (1, 4), (2, 1)]

    with pytest.raises(TypeError, match="bitrak"):
        VideoTracker(bitrak=True)
    from detectron2.config import get_cfg

    with pytest.raises(ValueError, match="the config has no MODEL.VIS.TRACKER"):
        VideoTracker.from_config(get_cfg())  # detectron2's defaults without add_vis_config


@pytest.fixture
def registered_synthvis(data_root):
    names = {"train": "ablationtest_synthvis_train", "val": "ablationtest_synthvis_val"}
    for split, json_name in (("train", "train.json"), ("val", "valid.json")):
        json_file = data_root / "synthvis" / json_name
        cats = json.loads(json_file.read_text())["categories"]
        register_ytvis_instances(names[split], dict(categories_to_metadata(cats), has_gt=True),
                                 json_file, data_root / "synthvis" / "JPEGImages")
    yield names
    for n in names.values():
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def test_lazy_loaders_with_explicit_arguments(registered_synthvis, tmp_path):
    names = registered_synthvis
    lazy = load_lazy("A1_baseline", [
        f"dataloader.train.dataset.names=[{names['train']}]",
        "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
        "dataloader.train.aspect_ratio_grouping=False",
        f"dataloader.test.dataset={names['val']}", "dataloader.test.num_workers=0",
        f"train.output_dir={tmp_path}",
    ])
    batch = next(iter(instantiate(lazy.dataloader.train)))
    assert len(batch) == 2
    for pair in batch:
        # ResizeShortestEdge(192, max_size=352) of the video's frames
        assert tuple(pair["image"].shape[1:]) == ResizeShortestEdge.get_output_shape(
            pair["height"], pair["width"], 192, 352)
        assert pair["ref_image"].shape == pair["image"].shape
        assert set(pair["instances"].get_fields()) >= {"gt_boxes", "gt_classes", "gt_track_ids",
                                                       "gt_masks"}
    videos = list(instantiate(lazy.dataloader.test))
    records = DatasetCatalog.get(names["val"])
    assert [(v["video_id"], v["length"]) for v in videos] == \
        [(r["video_id"], r["length"]) for r in records]
    assert tuple(videos[0]["frames"][0]["image"].shape[1:]) == ResizeShortestEdge.get_output_shape(
        records[0]["height"], records[0]["width"], 192, 352)
    evaluator = instantiate(lazy.dataloader.evaluator)
    assert evaluator._output_dir == os.path.join(str(tmp_path), "inference", names["val"])

    # the cfg forms are unchanged; explicit forms check their inputs
    assert len(get_vis_train_dataset_dicts([names["train"]])) == 3
    with pytest.raises(ValueError, match="the given test records are empty"):
        build_vis_test_loader(dataset=[], mapper=lambda r: r)
    with pytest.raises(ValueError, match=r"test record #0 \(video_id 3\) is not a video record"):
        build_vis_test_loader(dataset=[{"video_id": 3}], mapper=lambda r: r)
    with pytest.raises(ValueError, match="the training dataset has no record"):
        build_vis_train_loader(dataset=[], mapper=lambda r: r, total_batch_size=2)


class FakeRunSweep(ablation_sweep.Sweep):
    """The sweep's logic with the subprocesses replaced: a "training" writes model_final.pth and,
    like the real one, ends with an evaluation; every evaluation writes the results.json given
    by ``predictions(row, seed, split)``; the generator copies ``split_gt`` to its output."""

    def __init__(self, args, predictions, split_gt):
        super().__init__(args)
        self.predictions, self.split_gt = predictions, split_gt
        self.calls = []

    def run_command(self, cmd, log_path, what, env=None):
        if "vis_d2.data.synthetic" in cmd:
            out = cmd[cmd.index("--out") + 1]
            os.makedirs(out)
            shutil.copy(self.split_gt, os.path.join(out, "valid.json"))
            self.calls.append(("generate", None, "generate", None, cmd, env))
            return
        out_dir = cmd[cmd.index("OUTPUT_DIR") + 1]
        parts = os.path.relpath(out_dir, self.out_dir).split(os.sep)
        row, seed = parts[0], int(parts[1][len("seed"):])
        split = parts[2][len("unseen_"):] if len(parts) == 3 else "val"
        kind = "eval" if "--eval-only" in cmd else ("resume" if "--resume" in cmd else "train")
        self.calls.append((row, seed, kind, split, cmd, env))
        test_set = cmd[cmd.index("DATASETS.TEST") + 1].strip("(),'\"")
        res = os.path.join(out_dir, "inference", test_set, "results.json")
        os.makedirs(os.path.dirname(res), exist_ok=True)
        with open(res, "w") as f:
            json.dump(self.predictions(row, seed, split), f)
        if kind != "eval":
            open(os.path.join(out_dir, "model_final.pth"), "wb").close()


def test_sweep_seeds_splits_and_checkpoint_reuse(registered_synthvis, data_root, tmp_path,
                                                 monkeypatch):
    """Rows A1 and A5 over seeds 0 and 1, scored on the config's test set and on an unseen split
    that the sweep generates: the commands per (row, seed), A5 evaluating A4's checkpoint of the
    same seed, the unseen split's environment, the tables' means, and --skip-existing."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(data_root))  # where the test set's json lies
    gt = json.loads((data_root / "synthvis" / "valid.json").read_text())
    tracks = [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 1.0,
               "segmentations": a["segmentations"]} for a in gt["annotations"]]
    # on the test set: A1 finds one object with seed 0 and every one with seed 1, A5 every one;
    # on the unseen split every model finds two
    predictions = lambda row, seed, split: (  # noqa: E731
        tracks[:2] if split == "s11" else tracks[:1] if (row, seed) == ("A1", 0) else tracks)
    ap = {k: evaluate_ytvis(gt, tracks[:k])["AP"] for k in (1, 2)}
    assert ap[1] < ap[2] < 1.0
    split_root = tmp_path / "splits" / "s11"
    out = tmp_path / "sweep"
    opts = ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", f"('{registered_synthvis['train']}',)",
            "DATASETS.TEST", f"('{registered_synthvis['val']}',)"]

    def sweep(*extra, max_iter="2"):
        args = ablation_sweep.parse_args([
            "--rows", "A1", "A5", "--seeds", "0", "1", "--max-iter", max_iter, "--output-dir",
            str(out), "--unseen-split", f"s11={split_root}@11", *extra, "--", *opts])
        fake = FakeRunSweep(args, predictions, str(data_root / "synthvis" / "valid.json"))
        ablation_sweep.run_sweep(args, fake)
        return [c[:4] for c in fake.calls], fake.calls

    calls, full = sweep()
    per_seed = lambda k: [("A1", k, "train", "val"), ("A1", k, "eval", "s11"),  # noqa: E731
                          ("A4", k, "train", "val"), ("A5", k, "eval", "val"),
                          ("A5", k, "eval", "s11")]
    # the split first (before any training), then seed by seed; A4 trained for A5
    assert calls == [("generate", None, "generate", None)] + per_seed(0) + per_seed(1)
    gen = full[0][4]
    assert gen[1:] == ["-m", "vis_d2.data.synthetic", "--out", str(split_root / "synthvis"),
                       "--train-videos", "0", "--val-videos", "40", "--seed", "11",
                       "--image-set-size", "0", "--msd-set-size", "0"]
    by = {c[:4]: c for c in full}
    for k in (0, 1):
        a1 = by[("A1", k, "train", "val")][4]
        assert a1[3].endswith("configs/synthvis/R18_A1_paper.yaml")
        assert a1[a1.index("SEED") + 1] == str(k)
        assert a1[a1.index("OUTPUT_DIR") + 1] == str(out / "A1" / f"seed{k}")
        # --max-iter 2: both LR steps land on the last iteration (dropped), no warm-up
        assert a1[-6:] == ["SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()",
                           "SOLVER.WARMUP_ITERS", "0"]
        a5 = by[("A5", k, "eval", "val")][4]
        assert a5[3].endswith("configs/synthvis/R18_A5_bitrack.yaml")
        assert a5[-2:] == ["MODEL.WEIGHTS", str(out / "A4" / f"seed{k}" / "model_final.pth")]
        assert a5[a5.index("SEED") + 1] == str(k) and "SOLVER.MAX_ITER" not in a5
        assert by[("A5", k, "eval", "val")][5] is None  # this process's environment
        for row, owner in (("A1", "A1"), ("A5", "A4")):
            cmd, env = by[(row, k, "eval", "s11")][4:]
            assert env["DETECTRON2_DATASETS"] == str(split_root)
            assert cmd[cmd.index("OUTPUT_DIR") + 1] == str(out / row / f"seed{k}" / "unseen_s11")
            assert cmd[-4:] == ["DATASETS.TRAIN", "()", "MODEL.WEIGHTS",
                                str(out / owner / f"seed{k}" / "model_final.pth")]
            assert "--eval-only" in cmd and "SOLVER.MAX_ITER" not in cmd

    rows = list(csv.DictReader(io.StringIO((out / "ablation.csv").read_text())))
    got = {(r["row"], r["seed"], r["split"]): float(r["AP"]) for r in rows}
    val = registered_synthvis["val"]
    assert got == {("A1", "0", val): pytest.approx(ap[1]), ("A1", "1", val): 1.0,
                   ("A5", "0", val): 1.0, ("A5", "1", val): 1.0,
                   ("A1", "0", "s11"): pytest.approx(ap[2]), ("A1", "1", "s11"): pytest.approx(ap[2]),
                   ("A5", "0", "s11"): pytest.approx(ap[2]), ("A5", "1", "s11"): pytest.approx(ap[2])}
    md = (out / "ablation.md").read_text(encoding="utf-8")
    mean, half = (ap[1] + 1.0) / 2, (1.0 - ap[1]) / 2
    assert f"| A1 | baseline (paper-faithful) |  |  |  |  |  | {mean:.3f} ±{half:.3f} |" in md
    assert f"| {(1.0 - mean) * 100:+.1f} (A1) | 1.000 / 1.000 |" in md  # A5 against A1
    assert f"| {ap[2]:.3f} ±0.000 |" in md and f"## {val}" in md and "## s11" in md
    assert f"--unseen-split s11={split_root}@11" in md
    saved = json.loads((out / "A5" / "seed1" / "unseen_s11" / "row_metrics.json").read_text())
    assert saved["metrics"]["AP"] == pytest.approx(ap[2]) and saved["root"] == str(split_root)

    # --skip-existing with everything done: nothing runs, not even the generator
    assert sweep("--skip-existing")[0] == []
    # A4 seed 1's metrics lost: it resumes, and A5 seed 1 is evaluated again on both splits
    os.remove(out / "A4" / "seed1" / "row_metrics.json")
    assert sweep("--skip-existing")[0] == [("A4", 1, "resume", "val"), ("A5", 1, "eval", "val"),
                                           ("A5", 1, "eval", "s11")]
    # one unseen result lost: that evaluation alone
    os.remove(out / "A1" / "seed0" / "unseen_s11" / "row_metrics.json")
    assert sweep("--skip-existing")[0] == [("A1", 0, "eval", "s11")]
    # other settings (--max-iter): nothing on disk is reused
    resumed = [(r, k, "resume" if kind == "train" else kind, split)
               for r, k, kind, split in per_seed(0) + per_seed(1)]
    assert sweep("--skip-existing", max_iter="3")[0] == resumed
    # without --skip-existing a trained (row, seed)'s checkpoints are not overwritten
    (out / "A1" / "seed0" / "last_checkpoint").write_text("model_final.pth")
    with pytest.raises(ablation_sweep.SweepError, match="row A1 seed 0: .* holds the checkpoints"):
        sweep()


def test_sweep_unseen_split_errors(registered_synthvis, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(data_root))
    opts = ["--", "MODEL.DEVICE", "cpu", "DATASETS.TEST", f"('{registered_synthvis['val']}',)"]

    def prepare(split):
        args = ablation_sweep.parse_args(["--rows", "A1", "--output-dir", str(tmp_path / "o"),
                                          "--unseen-split", split, *opts])
        sweep = ablation_sweep.Sweep(args)
        sweep.prepare_splits(sweep.rows["A1"])

    # no generator seed: the missing json is named, with the command that writes it
    with pytest.raises(ablation_sweep.SweepError,
                       match=r"split s11: .*/none/synthvis/valid.json is missing.*--seed 11"):
        prepare(f"s11={tmp_path / 'none'}")
    with pytest.raises(ablation_sweep.SweepError, match="is the config's own test set"):
        prepare(f"own={data_root}")
    with pytest.raises(ablation_sweep.SweepError, match="the config's test set has that name"):
        prepare(f"{registered_synthvis['val']}={tmp_path}@3")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "elsewhere"))
    with pytest.raises(ablation_sweep.SweepError, match="is not under the datasets root"):
        prepare(f"s11={tmp_path}@3")
    assert not (tmp_path / "o").exists()  # nothing trained


# ---------------------------------------------------------------------------------------------
# Sweep end to end
# ---------------------------------------------------------------------------------------------
TINY = TINY_OPTS
LAZY_TINY = [
    "model.backbone.out_channels=32",
    "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "dataloader.test.mapper.augmentation.short_edge_length=96",
    "dataloader.test.mapper.augmentation.max_size=160",
    "tracker.score_thresh=0.0",
    "train.cpu_bf16=False",  # float32 on every CPU, as TINY_OPTS
]


def run_sweep(data_root, *args):
    env = dict(os.environ, DETECTRON2_DATASETS=str(data_root), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, os.path.join(PROJECT, "sweep.py"), *args],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    return log


@pytest.fixture(scope="module")
def unseen_root(tmp_path_factory):
    """A DETECTRON2_DATASETS root whose synthvis_val is 2 videos of another generator seed."""
    root = tmp_path_factory.mktemp("unseen")
    generate(str(root / "synthvis"), train_videos=0, val_videos=2, seed=6, image_set_size=0,
             config=SynthConfig(length_range=(4, 6)))
    return root


def test_sweep_end_to_end_yaml_row_a5_on_two_splits(data_root, unseen_root, tmp_path):
    """A5 trains A4 (on the videos alone: the tiny set has no second source) and evaluates its
    checkpoint, on synthvis_val and on the unseen split, with the real trainer processes."""
    out = tmp_path / "sweep"
    args = ["--rows", "A5", "--max-iter", "1", "--output-dir", str(out), "--unseen-split",
            f"s6={unseen_root}", "--", *TINY, "DATASETS.TRAIN", "('synthvis_train',)",
            "DATALOADER.VIS.SOURCE_WEIGHTS", "[]"]
    log = run_sweep(data_root, *args)
    for name in ("ablation.md", "ablation.csv", "ablation.png"):
        assert (out / name).is_file(), name
    # A4 trained (seed 0) for A5, which evaluated A4's checkpoint and was not trained
    a4, a5 = out / "A4" / "seed0", out / "A5" / "seed0"
    assert (a4 / "model_final.pth").is_file() and not (a5 / "model_final.pth").exists()
    assert not (a4 / "unseen_s6").exists()  # A4 is not in the table
    config = (a5 / "config.yaml").read_text()
    assert "BITRACK: true" in config and "SEED: 0" in config  # A5's tracker, the seed
    assert f"MODEL.WEIGHTS {a4 / 'model_final.pth'}" in log
    # the unseen split's evaluation read its own videos (DETECTRON2_DATASETS=unseen_root)
    unseen_json = unseen_root / "synthvis" / "valid.json"
    assert f"from {unseen_json}" in (a5 / "unseen_s6" / "log.txt").read_text()
    assert f"from {data_root / 'synthvis' / 'valid.json'}" in (a5 / "log.txt").read_text()

    rows = list(csv.DictReader(io.StringIO((out / "ablation.csv").read_text())))
    assert [(r["row"], r["seed"], r["split"]) for r in rows] == [("A5", "0", "synthvis_val"),
                                                                ("A5", "0", "s6")]
    for r, gt, res in [(rows[0], data_root, a5 / "inference"),
                       (rows[1], unseen_root, a5 / "unseen_s6" / "inference")]:
        # the table's numbers are the YouTube-VIS metric of the run's results.json
        metrics = evaluate_ytvis(str(gt / "synthvis" / "valid.json"),
                                 str(res / "synthvis_val" / "results.json"))
        for m in ablation_sweep.TABLE_METRICS:
            assert float(r[m]) == pytest.approx(metrics[m])
    assert rows[0]["checkpoint_from"] == "A4" and rows[0]["trained"] == "0"
    saved = json.loads((a5 / "row_metrics.json").read_text())
    assert saved["dataset"] == "synthvis_val" and saved["settings"]["seed"] == 0
    assert "A4's checkpoint" in (out / "ablation.md").read_text(encoding="utf-8")

    # --skip-existing: nothing is rerun, the metrics files are untouched
    files = [a4 / "row_metrics.json", a5 / "row_metrics.json",
             a5 / "unseen_s6" / "row_metrics.json"]
    mtimes = [f.stat().st_mtime_ns for f in files]
    log = run_sweep(data_root, "--skip-existing", *args)
    assert "row A5 seed 0: metrics exist, skipped" in log
    assert "row A5 seed 0 on s6: metrics exist, skipped" in log
    assert "train + evaluate:" not in log and ": evaluate:" not in log
    assert mtimes == [f.stat().st_mtime_ns for f in files]


def test_sweep_lazy_row(data_root, tmp_path):
    out = tmp_path / "lazy"
    run_sweep(data_root, "--lazy", "--rows", "A2", "--max-iter", "1", "--output-dir", str(out),
              "--", *LAZY_TINY)
    a2 = out / "A2" / "seed0"
    saved = json.loads((a2 / "row_metrics.json").read_text())
    assert saved["config"] == "projects/VIS_Ablation/configs/A2_tcis.py"
    assert saved["settings"]["mode"] == "lazy" and saved["settings"]["max_iter"] == 1
    assert saved["settings"]["seed"] == 0
    assert (a2 / "model_final.pth").is_file()
    # train.ema of the base row: the average is checkpointed with the model
    final = torch.load(a2 / "model_final.pth", weights_only=False)
    assert int(final["model_ema"]["n_averaged"]) == 1
    assert (a2 / "inference" / "synthvis_val" / "results.json").is_file()
    assert "loss_tcis" in (a2 / "train.log").read_text()
    assert "seed: 0" in (a2 / "config.yaml").read_text()  # train.seed=0
    rows = list(csv.DictReader(io.StringIO((out / "ablation.csv").read_text())))
    assert [(r["row"], r["seed"]) for r in rows] == [("A2", "0")] and rows[0]["delta_AP"] == ""
