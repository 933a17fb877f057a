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
from helpers import TINY_OPTS
from vis_d2.config import get_vis_cfg
from vis_d2.data.augmentation import build_pair_augmentation
from vis_d2.data.build import build_vis_test_loader, build_vis_train_loader
from vis_d2.data.build import get_vis_train_dataset_dicts
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
    "A2_tcis": "configs/synthvis/R18_A2_tcis.yaml",
    "A3_multitask": "configs/synthvis/R18_A3_multitask.yaml",
    "A4_msd": "configs/synthvis/R18_A4_msd.yaml",
    "A5_bitrack": "configs/synthvis/R18_A5_bitrack.yaml",
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


@pytest.mark.parametrize("row", ["A1_baseline", "A3_multitask", "A4_msd"])
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

    # the concrete model of each row
    shapes = {k: tuple(v.shape) for k, v in lazy_sd.items()}
    assert shapes["backbone.top_block.p7.weight"] == (64, 64, 3, 3)   # P7 from P6, 64 ch
    k = 2 if row == "A4_msd" else 0  # MODEL.VIS.MSD.NUM_AUX_CLASSES
    assert lazy_model.roi_heads.num_aux_classes == yacs_model.roi_heads.num_aux_classes == k
    # 4 classes + K auxiliary + background
    assert shapes["roi_heads.box_predictor.cls_score.weight"] == (5 + k, 512)
    assert shapes["roi_heads.track_head.fcs.1.weight"] == (256, 256)
    assert lazy_model.proposal_generator.anchor_generator.strides == [4, 8, 16, 32, 64, 128]
    assert lazy_model.roi_heads.box_predictor.test_topk_per_image == 20
    assert shapes["roi_heads.mask_class_head.predictor.weight"] == (4 + k, 256)  # MASK_CLASS
    assert shapes["roi_heads.mask_class_head.convs.2.weight"] == (64, 32, 3, 3)
    assert lazy_model.roi_heads.mask_class_on_gt_masks            # TRAIN_ON_GT_MASKS
    assert lazy_model.roi_heads.mask_class_score_weight == 0.75
    assert lazy_model.roi_heads.track_detach_iters == yacs_model.roi_heads.track_detach_iters \
        == 600  # MODEL.VIS.TRACK_HEAD.DETACH_ITERS
    assert lazy_model.roi_heads.box_predictor.test_score_thresh == 0.01
    assert lazy_model.mask_nms_thresh == yacs_model.mask_nms_thresh == 0.3  # MASK_NMS_THRESH
    assert shapes["roi_heads.mask_head.mask_fcn4.weight"] == (64, 64, 3, 3)  # NUM_CONV 4
    assert "roi_heads.mask_head.mask_fcn5.weight" not in shapes
    if row == "A1_baseline":
        assert len(shapes) == 130
        assert lazy_model.roi_heads.tcis is None and lazy_model.semseg_head is None
    else:
        assert len(shapes) == 167
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
    assert shapes["roi_heads.mask_class_head.predictor.weight"] == (2, 256)
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
    a1_yaml = tmp_path / "configs" / "synthvis" / "R18_A1_baseline.yaml"
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
    a1 = instantiate(load_lazy("A1_baseline").tracker)
    assert (a1.momentum, a1.track_nms_thresh, a1.distance_weight) == (0.8, 0.3, 2.0)
    a5 = instantiate(load_lazy("A5_bitrack").tracker)
    assert a5.bitrack and a5.label_voting and a5.label_voting_weight == 0.0
    assert not instantiate(load_lazy("A3_multitask").tracker).bitrack
    # A5 differs from A3 at inference only: same model tree
    assert as_container(load_lazy("A5_bitrack").model) == \
        as_container(load_lazy("A3_multitask").model)

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


def as_container(node):
    return OmegaConf.to_container(node, resolve=True)


# ---------------------------------------------------------------------------------------------
# YAML rows
# ---------------------------------------------------------------------------------------------
# path: (TCIS, multi-task, BiTrack + label voting, test set)
YAML_ROWS = {
    "configs/synthvis/R18_A1_baseline.yaml": (False, False, False, "synthvis_val"),
    "configs/synthvis/R18_A2_tcis.yaml": (True, False, False, "synthvis_val"),
    "configs/synthvis/R18_A3_multitask.yaml": (True, True, False, "synthvis_val"),
    "configs/synthvis/R18_A4_msd.yaml": (True, True, False, "synthvis_val"),
    "configs/synthvis/R18_A5_bitrack.yaml": (True, True, True, "synthvis_val"),
    "configs/ytvis_2021/R50_FPN_A2_tcis.yaml": (True, False, False, "ytvis_2021_val"),
    "configs/ytvis_2021/R50_FPN_A3_multitask.yaml": (True, True, False, "ytvis_2021_val"),
    "configs/ytvis_2021/R50_FPN_A4_msd.yaml": (True, True, False, "ytvis_2021_val"),
    "configs/ytvis_2021/R50_FPN_A5_noMSD.yaml": (True, True, True, "ytvis_2021_val"),
    "configs/ytvis_2019/R50_FPN_TCIS_MT_BiTrack.yaml": (True, True, True, "ytvis_2019_val"),
}


@pytest.mark.parametrize("path", sorted(YAML_ROWS))
def test_yaml_row_loads_and_builds(path):
    tcis, multitask, bitrack, test_set = YAML_ROWS[path]
    cfg = yacs(path)
    vis = cfg.MODEL.VIS
    assert vis.TCIS.ENABLED == tcis
    assert vis.SEMSEG.ENABLED == vis.MULTILABEL.ENABLED == vis.MASKIOU.ENABLED == multitask
    assert vis.TRACKER.BITRACK == vis.TRACKER.LABEL_VOTING == bitrack
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
    assert (k > 0) == ("A4" in path)  # Multi-Source Data with auxiliary classes in row A4
    assert model.roi_heads.box_predictor.cls_score.out_features == num_classes + k + 1


def test_a5_rows_share_a3s_model_config():
    """A5 reuses A3's checkpoint: everything but the tracker must be A3's."""
    for a3, a5 in [("configs/synthvis/R18_A3_multitask.yaml",
                    "configs/synthvis/R18_A5_bitrack.yaml"),
                   ("configs/ytvis_2021/R50_FPN_A3_multitask.yaml",
                    "configs/ytvis_2021/R50_FPN_A5_noMSD.yaml")]:
        c3, c5 = yacs(a3), yacs(a5)
        c3.MODEL.VIS.TRACKER = c5.MODEL.VIS.TRACKER
        assert c3.MODEL == c5.MODEL and c3.INPUT == c5.INPUT and c3.SOLVER == c5.SOLVER


# ---------------------------------------------------------------------------------------------
# Sweep: table writer
# ---------------------------------------------------------------------------------------------
PAPER = {  # paper Table 1 (A5 there also has MSD)
    "A1": (0.309, 0.501, 0.338, 0.269, 0.346),
    "A2": (0.331, 0.535, 0.354, 0.285, 0.368),
    "A3": (0.338, 0.546, 0.356, 0.287, 0.374),
    "A5": (0.388, 0.589, 0.438, 0.320, 0.436),
}


def fake_results(rows=("A1", "A2", "A3", "A5")):
    return [ablation_sweep.RowResult(
        ablation_sweep.ROWS[r], dict(zip(ablation_sweep.TABLE_METRICS, PAPER[r]), APs=0.1),
        config=f"cfg_{r}.yaml", dataset="synthvis_val", trained=r != "A5") for r in rows]


def test_table_writer_on_fake_metrics(tmp_path):
    paths = ablation_sweep.write_tables(fake_results(), str(tmp_path), "Paper Table 1")
    assert set(paths) == {"md", "csv", "png"}

    md = (tmp_path / "ablation.md").read_text(encoding="utf-8").splitlines()
    assert md[0] == "# Paper Table 1"
    table = [ln for ln in md if ln.startswith("| A")]
    assert table[0] == "| A1 |  |  |  | 0.309 | 0.501 | 0.338 | 0.269 | 0.346 | - |  |"
    assert table[1] == "| A2 | x |  |  | 0.331 | 0.535 | 0.354 | 0.285 | 0.368 | +2.2 |  |"
    assert table[2] == "| A3 | x | x |  | 0.338 | 0.546 | 0.356 | 0.287 | 0.374 | +0.7 |  |"
    assert table[3].startswith("| A5 | x | x | x | 0.388 | 0.589 | 0.438 | 0.320 | 0.436 | +5.0 | "
                               "not trained: A3's checkpoint")

    rows = list(csv.DictReader(io.StringIO((tmp_path / "ablation.csv").read_text())))
    assert [r["row"] for r in rows] == ["A1", "A2", "A3", "A5"]
    assert rows[0]["delta_AP"] == "" and float(rows[1]["delta_AP"]) == pytest.approx(2.2)
    assert float(rows[3]["delta_AP"]) == pytest.approx(5.0)
    assert float(rows[2]["AP75"]) == 0.356 and float(rows[3]["AR10"]) == 0.436
    assert [r["trained"] for r in rows] == ["1", "1", "1", "0"]
    assert rows[3]["checkpoint_from"] == "A3" and rows[0]["checkpoint_from"] == ""

    png = (tmp_path / "ablation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(str(tmp_path / "ablation.png"))
    assert img.shape[0] == 420 and img.shape[1] == 750  # 7.5 x 4.2 in at 100 dpi for 4 rows

    # the delta is against the row above in the table, whichever rows are in it
    md2 = ablation_sweep.format_markdown(fake_results(("A1", "A5")))
    assert "| 0.436 | +7.9 |" in md2
    bad = fake_results(("A1",))
    del bad[0].metrics["AR10"]
    with pytest.raises(ablation_sweep.SweepError, match=r"row A1: metrics \['AR10'\] missing"):
        ablation_sweep.format_csv(bad)


def test_sweep_schedule_scaling_and_arguments():
    assert ablation_sweep.scale_schedule(1500, (1100, 1350), 100, 300) == ((220, 270), 20)
    assert ablation_sweep.scale_schedule(1500, (1100, 1350), 100, 1) == ((), 0)
    assert ablation_sweep.scale_schedule(1500, (1100, 1350), 100, 4) == ((3,), 0)
    args = ablation_sweep.parse_args(["--rows", "A1", "A5", "--max-iter", "2", "--",
                                      "MODEL.DEVICE", "cpu"])
    assert args.rows == ["A1", "A5"] and args.opts == ["MODEL.DEVICE", "cpu"]
    assert args.output_dir == os.path.join("output", "ablation_synthvis")
    with pytest.raises(SystemExit):
        ablation_sweep.parse_args(["--rows", "A4"])
    with pytest.raises(SystemExit):
        ablation_sweep.parse_args(["--lazy", "--benchmark", "ytvis_2021"])


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
    """The sweep's logic with the trainer processes replaced: a "training" writes
    model_final.pth and, like the real one, ends with an evaluation; every evaluation writes the
    results.json given by ``predictions[row]`` (a list of predictions)."""

    def __init__(self, args, predictions):
        super().__init__(args)
        self.predictions = predictions
        self.calls = []

    def run_command(self, cmd, log_path, what):
        out_dir = cmd[cmd.index("OUTPUT_DIR") + 1]
        row = os.path.basename(out_dir)
        kind = "eval" if "--eval-only" in cmd else ("resume" if "--resume" in cmd else "train")
        self.calls.append((row, kind, cmd))
        test_set = cmd[cmd.index("DATASETS.TEST") + 1].strip("(),'\"")
        res = os.path.join(out_dir, "inference", test_set, "results.json")
        os.makedirs(os.path.dirname(res), exist_ok=True)
        with open(res, "w") as f:
            json.dump(self.predictions[row], f)
        if kind != "eval":
            open(os.path.join(out_dir, "model_final.pth"), "wb").close()


def test_sweep_reuses_a3_for_a5_and_skips_finished_rows(registered_synthvis, data_root, tmp_path):
    gt = json.loads((data_root / "synthvis" / "valid.json").read_text())
    tracks = [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 1.0,
               "segmentations": a["segmentations"]} for a in gt["annotations"]]
    predictions = {"A1": tracks, "A3": tracks[:3], "A5": tracks}
    opts = ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", f"('{registered_synthvis['train']}',)",
            "DATASETS.TEST", f"('{registered_synthvis['val']}',)"]

    def sweep(*extra, max_iter="2"):
        args = ablation_sweep.parse_args(["--rows", "A1", "A5", "--max-iter", max_iter,
                                          "--output-dir", str(tmp_path), *extra, "--", *opts])
        fake = FakeRunSweep(args, predictions)
        ablation_sweep.run_sweep(args, fake)
        return [(row, kind) for row, kind, _ in fake.calls], fake.calls

    calls, full = sweep()
    # A3 is trained for A5, which only evaluates A3's checkpoint
    assert calls == [("A1", "train"), ("A3", "train"), ("A5", "eval")]
    a1_cmd, a5_cmd = full[0][2], full[2][2]
    # --max-iter 2: both LR steps of the YAML land on the last iteration (dropped) and the
    # warm-up scales to 0
    assert a1_cmd[-6:] == ["SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()",
                           "SOLVER.WARMUP_ITERS", "0"]
    assert a5_cmd[-2:] == ["MODEL.WEIGHTS", str(tmp_path / "A3" / "model_final.pth")]
    assert "SOLVER.MAX_ITER" not in a5_cmd
    rows = list(csv.DictReader(io.StringIO((tmp_path / "ablation.csv").read_text())))
    assert [(r["row"], float(r["AP"]), r["delta_AP"]) for r in rows] == \
        [("A1", 1.0, ""), ("A5", 1.0, "0.0")]
    a3 = json.loads((tmp_path / "A3" / "row_metrics.json").read_text())
    assert a3["metrics"]["AP"] == pytest.approx(evaluate_ytvis(gt, tracks[:3])["AP"])
    assert a3["metrics"]["AP"] < 1.0

    # --skip-existing with everything done: nothing runs
    assert sweep("--skip-existing")[0] == []
    # A3's metrics lost: A3 resumes, and A5 is evaluated again on the new checkpoint; A1 is kept
    os.remove(tmp_path / "A3" / "row_metrics.json")
    assert sweep("--skip-existing")[0] == [("A3", "resume"), ("A5", "eval")]
    # other settings (--max-iter): the metrics on disk are not reused
    assert sweep("--skip-existing", max_iter="3")[0] == \
        [("A1", "resume"), ("A3", "resume"), ("A5", "eval")]


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


def test_sweep_end_to_end_yaml_rows_a1_a5(data_root, tmp_path):
    out = tmp_path / "sweep"
    log = run_sweep(data_root, "--rows", "A1", "A5", "--max-iter", "1", "--output-dir", str(out),
                    "--", *TINY)
    for name in ("ablation.md", "ablation.csv", "ablation.png"):
        assert (out / name).is_file(), name
    # A1 and A3 trained (A3 for A5's model); A5 evaluated A3's checkpoint, not trained
    assert (out / "A1" / "model_final.pth").is_file() and (out / "A3" / "model_final.pth").is_file()
    assert not (out / "A5" / "model_final.pth").exists()
    assert "BITRACK: true" in (out / "A5" / "config.yaml").read_text()  # A5's tracker
    assert f"MODEL.WEIGHTS {out / 'A3' / 'model_final.pth'}" in log

    gt = data_root / "synthvis" / "valid.json"
    rows = list(csv.DictReader(io.StringIO((out / "ablation.csv").read_text())))
    assert [r["row"] for r in rows] == ["A1", "A5"]
    for r in rows:
        saved = json.loads((out / r["row"] / "row_metrics.json").read_text())
        assert saved["dataset"] == "synthvis_val" and saved["trained"] == (r["row"] == "A1")
        # the table's numbers are the YouTube-VIS metric of the row's results.json
        metrics = evaluate_ytvis(str(gt), str(out / r["row"] / "inference" / "synthvis_val"
                                            / "results.json"))
        for m in ablation_sweep.TABLE_METRICS:
            assert float(r[m]) == pytest.approx(metrics[m]) == pytest.approx(saved["metrics"][m])
    assert float(rows[1]["delta_AP"]) == pytest.approx((float(rows[1]["AP"])
                                                        - float(rows[0]["AP"])) * 100)
    assert rows[1]["checkpoint_from"] == "A3"
    assert "A3's checkpoint" in (out / "ablation.md").read_text(encoding="utf-8")

    # --skip-existing: nothing is rerun, the metrics files are untouched
    mtimes = {r: (out / r / "row_metrics.json").stat().st_mtime_ns for r in ("A1", "A5")}
    log = run_sweep(data_root, "--rows", "A1", "A5", "--max-iter", "1", "--output-dir", str(out),
                    "--skip-existing", "--", *TINY)
    assert "row A1: metrics exist, skipped" in log and "row A5: metrics exist, skipped" in log
    assert "train + evaluate:" not in log
    assert mtimes == {r: (out / r / "row_metrics.json").stat().st_mtime_ns for r in ("A1", "A5")}


def test_sweep_lazy_row(data_root, tmp_path):
    out = tmp_path / "lazy"
    run_sweep(data_root, "--lazy", "--rows", "A2", "--max-iter", "1", "--output-dir", str(out),
              "--", *LAZY_TINY)
    saved = json.loads((out / "A2" / "row_metrics.json").read_text())
    assert saved["config"] == "projects/VIS_Ablation/configs/A2_tcis.py"
    assert saved["settings"]["mode"] == "lazy" and saved["settings"]["max_iter"] == 1
    assert (out / "A2" / "model_final.pth").is_file()
    # train.ema of the base row: the average is checkpointed with the model
    final = torch.load(out / "A2" / "model_final.pth", weights_only=False)
    assert int(final["model_ema"]["n_averaged"]) == 1
    assert (out / "A2" / "inference" / "synthvis_val" / "results.json").is_file()
    assert "loss_tcis" in (out / "A2" / "train.log").read_text()
    rows = list(csv.DictReader(io.StringIO((out / "ablation.csv").read_text())))
    assert [r["row"] for r in rows] == ["A2"] and rows[0]["delta_AP"] == ""
