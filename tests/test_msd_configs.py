"""The YouTube-VIS 2021 A4 config (paper Table 1, Multi-Source Data) builds and trains one step on
tiny fixtures in the layouts of YouTube-VIS, COCO and OpenImages."""
import json
import logging
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES, _get_builtin_metadata
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from openimages_layout import write_openimages
from vis_d2.config import get_vis_cfg
from vis_d2.data.build import PairDatasetMapper, build_vis_train_loader, get_vis_train_sources
from vis_d2.data.builtin import register_all_openimages, register_all_ytvis
from vis_d2.data.categories import YTVIS_2021_CATEGORIES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 48, 64


def _rle(x0, y0, x1, y1):
    m = np.zeros((H, W), np.uint8, order="F")
    m[y0:y1, x0:x1] = 1
    rle = mask_util.encode(m)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _write_ytvis_2021(root):
    """ytvis_2021/train.json: one video of two frames, a dog moving right."""
    frames = [f"v1/{t:05d}.jpg" for t in range(2)]
    os.makedirs(os.path.join(root, "ytvis_2021/train/JPEGImages/v1"))
    for f in frames:
        cv2.imwrite(os.path.join(root, "ytvis_2021/train/JPEGImages", f),
                    np.full((H, W, 3), 90, np.uint8))
    boxes = [(8, 8, 30, 40), (12, 8, 34, 40)]
    dog = next(c["id"] for c in YTVIS_2021_CATEGORIES if c["name"] == "dog")
    data = {
        "videos": [{"id": 1, "width": W, "height": H, "length": 2, "file_names": frames}],
        "categories": [dict(c) for c in YTVIS_2021_CATEGORIES],
        "annotations": [{
            "id": 1, "video_id": 1, "category_id": dog, "iscrowd": 0, "width": W, "height": H,
            "segmentations": [_rle(*b) for b in boxes],
            "bboxes": [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in boxes],
            "areas": [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]}],
    }
    with open(os.path.join(root, "ytvis_2021/train.json"), "w") as f:
        json.dump(data, f)


def _write_coco(root):
    """coco/annotations/instances_train2017.json (COCO's 80 categories): one image with a dog
    (shared with YouTube-VIS 2021) and a tv (auxiliary)."""
    os.makedirs(os.path.join(root, "coco/annotations"))
    os.makedirs(os.path.join(root, "coco/train2017"))
    cv2.imwrite(os.path.join(root, "coco/train2017/000000000001.jpg"),
                np.full((H, W, 3), 120, np.uint8))
    anns = []
    for i, (cat, box) in enumerate([("dog", (4, 4, 28, 30)), ("tv", (34, 10, 60, 40))]):
        cid = next(c["id"] for c in COCO_CATEGORIES if c.get("isthing") and c["name"] == cat)
        x0, y0, x1, y1 = box
        anns.append({"id": i + 1, "image_id": 1, "category_id": cid, "iscrowd": 0,
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                     "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
    data = {"images": [{"id": 1, "file_name": "000000000001.jpg", "height": H, "width": W}],
            "annotations": anns,
            "categories": [{"id": c["id"], "name": c["name"]} for c in COCO_CATEGORIES
                           if c.get("isthing")]}
    with open(os.path.join(root, "coco/annotations/instances_train2017.json"), "w") as f:
        json.dump(data, f)


@pytest.fixture
def msd_root(tmp_path, restore_catalogs):
    root = str(tmp_path)
    _write_ytvis_2021(root)
    _write_coco(root)
    write_openimages(os.path.join(root, "openimages"), split="train")
    register_all_ytvis(root)
    register_all_openimages(root)
    # detectron2's own registration of coco_2017_train, under this root
    DatasetCatalog.remove("coco_2017_train")
    MetadataCatalog.remove("coco_2017_train")
    register_coco_instances("coco_2017_train", _get_builtin_metadata("coco"),
                            os.path.join(root, "coco/annotations/instances_train2017.json"),
                            os.path.join(root, "coco/train2017"))
    MetadataCatalog.get("coco_2017_train").set(taxonomy="coco")
    return root


def test_ytvis_2021_a4_config_trains_one_step_on_three_sources(msd_root, caplog):
    cfg = get_vis_cfg(os.path.join(REPO, "configs/ytvis_2021/R50_FPN_A4_msd.yaml"), [
        "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TRAIN", "(48,)", "INPUT.MAX_SIZE_TRAIN", "64",
        "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "SOLVER.CPU_BF16", "False"])
    c, k = cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.MODEL.VIS.MSD.NUM_AUX_CLASSES
    assert (c, k) == (40, 8)
    with caplog.at_level(logging.INFO, logger="vis_d2.data.build"):
        sources = get_vis_train_sources(cfg.DATASETS.TRAIN, cfg.MODEL.MASK_ON, k)
    # per source: 1 video; COCO's one image (dog mapped, tv auxiliary); of OpenImages' images
    # that hold a YouTube-VIS 2021 class, 0a1 (a dog and a computer mouse; 0c3 holds only a
    # group box, which trains nothing)
    assert [len(s) for s in sources] == [1, 1, 1]
    coco = sources[1][0]["annotations"]
    assert sorted((a["category_id"], bool(a.get("aux"))) for a in coco) == \
        [(8, False), (c, True)]  # dog is the 9th YouTube-VIS 2021 class; tv gets id C
    assert all(a.get("mask_valid") is False for r in sources[2] for a in r["annotations"])
    log = caplog.text
    assert "'coco_2017_train' (class map ytvis_2021 <- coco): kept 1 of 1 images" in log
    assert "1 mapped, 1 auxiliary" in log and "weak segmentation: no instance trains a mask" in log

    torch.manual_seed(0)
    loader = iter(build_vis_train_loader(cfg))
    assert len(next(loader)) == 2  # the config's loader draws pairs by SOURCE_WEIGHTS
    model = build_model(cfg)
    assert model.roi_heads.box_predictor.cls_score.out_features == c + k + 1
    assert model.semseg_head.predictor.out_channels == c + 1
    model.train()
    mapper = PairDatasetMapper(cfg, True)
    batch = [mapper(s[0]) for s in sources]  # one pair of each source
    assert [bool(p["instances"].gt_aux.any()) for p in batch] == [False, True, True]
    assert [bool(p["instances"].gt_mask_valid.all()) for p in batch] == [True, True, False]
    with EventStorage(0):
        losses = model(batch)
    assert {"loss_cls", "loss_mask", "loss_tcis", "loss_track", "loss_semseg",
            "loss_multilabel", "loss_maskiou"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grad = model.roi_heads.box_predictor.cls_score.weight.grad
    assert grad is not None and float(grad[c:c + k].abs().sum()) > 0  # the auxiliary outputs train
