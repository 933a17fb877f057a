"""Multi-source data (issue 24): the class maps, mixing sources into the video set's classes, and
the ``gt_aux`` / ``gt_mask_valid`` fields of the training pairs."""
import logging

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.structures import BoxMode

from helpers import boxed_instances
from vis_d2.config import get_vis_cfg
from vis_d2.data import categories as cats
from vis_d2.data.build import build_vis_train_loader, mix_training_sources
from vis_d2.data.copy_paste import CopyPaste
from vis_d2.data.pseudo_pair_mapper import AffineTransform, PseudoPairDatasetMapper
from vis_d2.data.video_pair_mapper import VideoPairDatasetMapper
from vis_d2.data.ytvis import categories_to_metadata

H, W = 24, 32
COCO_THINGS = [c for c in COCO_CATEGORIES if c["isthing"]]
COCO_NAMES = [c["name"] for c in COCO_THINGS]
COCO_ID_MAP = {c["id"]: i for i, c in enumerate(COCO_THINGS)}
Y21 = [c["name"] for c in cats.YTVIS_2021_CATEGORIES]


# ------------------------------------------------------------------------------------------------
# The class maps
# ------------------------------------------------------------------------------------------------
def test_coco_maps_are_detectron2s_coco_categories():
    coco = {c["id"]: c["name"] for c in COCO_THINGS}
    for pairs in (cats.YTVIS_2021_TO_COCO, cats.YTVIS_2019_TO_COCO):
        for ytvis_name, (coco_id, coco_name) in pairs.items():
            assert coco[coco_id] == coco_name, ytvis_name
    # 21 pairs, not the paper's 22: COCO's "mouse" (74) is the computer mouse.
    assert len(cats.YTVIS_2021_TO_COCO) == 21 and coco[74] == "mouse"
    assert "mouse" not in cats.YTVIS_2021_TO_COCO
    assert set(cats.YTVIS_2021_TO_COCO) <= set(Y21)
    assert set(cats.YTVIS_2019_TO_COCO) <= {c["name"] for c in cats.YTVIS_2019_CATEGORIES}
    assert len(cats.YTVIS_2019_TO_COCO) == 18
    m = cats.get_class_map("ytvis_2021", "coco")
    assert m.pairs["flying_disc"] == ((34, "frisbee"),)
    # The 59 COCO classes no pair names are the auxiliary ones.
    assert len(set(coco) - set(m.source_ids)) == 59


def test_openimages_maps():
    m21 = cats.get_class_map("ytvis_2021", "openimages")
    m19 = cats.get_class_map("ytvis_2019", "openimages")
    assert set(m21.pairs) == set(Y21)  # every 2021 class has an OpenImages counterpart
    assert set(m19.pairs) == {c["name"] for c in cats.YTVIS_2019_CATEGORIES} - {"ape", "sedan"}
    assert m21.pairs["mouse"] == (("/m/04rmv", "Mouse"),)  # the animal, not "Computer mouse"
    assert m21.pairs["giant_panda"] == (("/m/03bj1", "Panda"),)
    # Leaf-most boxes: the subclasses map to their parent's YouTube-VIS class ...
    assert ("/m/01dxs", "Brown bear") in m21.pairs["bear"]
    assert ("/m/09csl", "Eagle") in m21.pairs["bird"]
    # ... unless YouTube-VIS names them apart, or they are another thing.
    assert ("/m/09csl", "Eagle") in m19.pairs["eagle"] and "bird" not in m19.pairs
    bear_ids = [i for i, _ in m21.pairs["bear"]]
    assert "/m/0kmg4" not in bear_ids and "/m/03bj1" not in bear_ids  # Teddy bear, Panda
    assert all(mid.startswith("/m/") for mid in m21.source_ids)
    assert len(m21.source_ids) == len(set(m21.source_ids)) == 71


def test_class_map_refuses_a_source_id_mapped_twice_and_a_second_registration():
    with pytest.raises(ValueError, match=r"category id 1 \('a'\) is mapped to both 'x' and 'y'"):
        cats.ClassMap("t", "s", {"x": (1, "a"), "y": ((1, "a"),)})
    m = cats.ClassMap("synthvis", "synthvis_images", {"circle": (9, "o")})
    with pytest.raises(ValueError, match="synthvis <- synthvis_images is already registered"):
        cats.register_class_map(m)


def test_check_source_and_target_name_the_closest_classes():
    m = cats.get_class_map("ytvis_2021", "coco")
    m.check_source(COCO_NAMES, COCO_ID_MAP, "coco_like")  # detectron2's list passes
    names = [n if n != "tennis racket" else "tennis-racket" for n in COCO_NAMES]
    with pytest.raises(ValueError, match=r"'coco_like' \(x.json\): .* maps 'tennis_racket' to "
                       r"COCO category id 43 'tennis racket', but its COCO category id 43 is "
                       r"'tennis-racket'; closest names in its category list: \['tennis-racket'"):
        m.check_source(names, COCO_ID_MAP, "coco_like", "x.json")
    with pytest.raises(ValueError, match="maps onto class 'flying_disc', which training set "
                                         r"'v' .* closest names: \['flying_disk'\]"):
        m.check_target([n if n != "flying_disc" else "flying_disk" for n in Y21], "v")


# ------------------------------------------------------------------------------------------------
# Mixing
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def registered():
    names = []

    def register(name, dicts, **meta):
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(**meta)
        names.append(name)

    yield register
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def _anno(category_id, box=(2, 2, 10, 10), crowd=0, **extra):
    m = np.zeros((H, W), np.uint8, order="F")
    m[box[1]:box[3], box[0]:box[2]] = 1
    rle = mask_util.encode(m)
    rle["counts"] = rle["counts"].decode("ascii")
    return dict({"category_id": category_id, "bbox": list(box), "bbox_mode": BoxMode.XYXY_ABS,
                 "iscrowd": crowd, "segmentation": rle}, **extra)


def _video_set(registered, name="msdtest_videos"):
    """A YouTube-VIS 2021 video set: one 2-frame video with a person (26) and a dog (9)."""
    record = {"video_id": 1, "file_names": ["a.jpg", "b.jpg"], "height": H, "width": W,
              "length": 2, "has_gt": True,
              "annotations": [[_anno(Y21.index("person"), track_id=1)],
                              [_anno(Y21.index("person"), track_id=1),
                               _anno(Y21.index("dog"), (12, 4, 20, 12), track_id=2)]]}
    registered(name, [record], evaluator_type="ytvis", taxonomy="ytvis_2021",
               **categories_to_metadata(cats.YTVIS_2021_CATEGORIES))
    return record


def _coco_images():
    """COCO-shaped image dicts (contiguous ids): a dog, a frisbee, a computer mouse, a teddy
    bear and a crowd of persons; a second image with only a teddy bear."""
    c = COCO_ID_MAP
    first = {"image_id": 1, "file_name": "1.jpg", "height": H, "width": W,
             "annotations": [_anno(c[18], id=1), _anno(c[34], id=2), _anno(c[74], id=3),
                             _anno(c[88], id=4), _anno(c[1], crowd=1, id=5)]}
    second = {"image_id": 2, "file_name": "2.jpg", "height": H, "width": W,
              "annotations": [_anno(c[88], id=6)]}
    return [first, second]


def _coco_meta(**extra):
    return dict(thing_classes=COCO_NAMES, thing_dataset_id_to_contiguous_id=COCO_ID_MAP,
                taxonomy="coco", json_file="instances_tiny.json", **extra)


def test_mixing_maps_coco_by_the_class_map_and_counts_each_source(registered, caplog):
    video = _video_set(registered)
    images = _coco_images()
    registered("msdtest_coco", images, **_coco_meta())
    names = ["msdtest_videos", "msdtest_coco"]

    with caplog.at_level(logging.INFO, logger="vis_d2.data.build"):
        (videos, coco), (vstats, cstats) = mix_training_sources(names, num_aux_classes=0)
    assert videos == [video]
    # K = 0: dog -> 8, frisbee -> flying_disc (13); mouse and teddy bear dropped; the crowd
    # person mapped (the mapper drops crowds); the teddy-bear-only image removed.
    assert [a["category_id"] for a in coco[0]["annotations"]] == [
        Y21.index("dog"), Y21.index("flying_disc"), Y21.index("person")]
    assert len(coco) == 1 and not any(a.get("aux") for a in coco[0]["annotations"])
    assert (cstats.records, cstats.kept, cstats.mapped, cstats.auxiliary, cstats.dropped) == (
        2, 1, 2, 0, 3)
    assert cstats.auxiliary_classes == {"mouse": 1, "teddy bear": 2}
    assert (vstats.kept, vstats.mapped) == (1, 3)
    assert [a["category_id"] for a in images[0]["annotations"]][:2] == [
        COCO_ID_MAP[18], COCO_ID_MAP[34]]  # the catalog's dicts are not modified
    line = next(m for m in caplog.messages if "'msdtest_coco'" in m)
    assert ("Training source 'msdtest_coco' (class map ytvis_2021 <- coco): kept 1 of 2 images; "
            "5 instances: 2 mapped, 0 auxiliary, 3 dropped") in line
    assert "teddy bear (2), mouse (1)" in line
    assert any("'msdtest_videos' (the video set's classes): kept 1 of 1 videos; 3 instances "
               "(per frame): 3 mapped" in m for m in caplog.messages)

    # K = 2: the auxiliary objects stay, with category id C = 40 and "aux".
    (_, coco), (_, cstats) = mix_training_sources(names, num_aux_classes=2)
    assert [(a["category_id"], a.get("aux", False)) for a in coco[0]["annotations"]] == [
        (8, False), (13, False), (40, True), (40, True), (25, False)]
    assert [(a["category_id"], a["aux"]) for a in coco[1]["annotations"]] == [(40, True)]
    assert (cstats.kept, cstats.mapped, cstats.auxiliary, cstats.dropped) == (2, 2, 3, 0)

    with pytest.raises(ValueError, match="MODEL.VIS.MSD.NUM_AUX_CLASSES must be an int >= 0"):
        mix_training_sources(names, num_aux_classes=-1)


def test_weak_segmentation_source_keeps_boxes_and_marks_masks(registered, caplog):
    _video_set(registered)
    registered("msdtest_weak", _coco_images(), **_coco_meta(weak_segmentation=True))
    with caplog.at_level(logging.INFO, logger="vis_d2.data.build"):
        (_, weak), (_, stats) = mix_training_sources(["msdtest_videos", "msdtest_weak"],
                                                     mask_on=True, num_aux_classes=1)
    assert all(a["mask_valid"] is False for d in weak for a in d["annotations"])
    assert all("bbox" in a for d in weak for a in d["annotations"])
    assert stats.weak_segmentation and stats.without_mask == 5
    assert any("weak segmentation: no instance trains a mask" in m for m in caplog.messages)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # by design
    # A weak source alone gives no mask to train: refused with MASK_ON.
    registered("msdtest_weak_alone", _coco_images(), **_coco_meta(weak_segmentation=True))
    with pytest.raises(ValueError, match="no instance of the training sets .* has a mask"):
        mix_training_sources(["msdtest_weak_alone"], mask_on=True)


def test_train_loader_reads_num_aux_classes(registered, tmp_path):
    """build_vis_train_loader(cfg): K from MODEL.VIS.MSD.NUM_AUX_CLASSES reaches the pairs."""
    for name in ("a.jpg", "b.jpg", "1.jpg", "2.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((H, W, 3), np.uint8))
    video = _video_set(registered, "msdtest_loader_videos")
    video["file_names"] = [str(tmp_path / f) for f in video["file_names"]]
    images = _coco_images()
    for d in images:
        d["file_name"] = str(tmp_path / d["file_name"])
    registered("msdtest_loader_coco", images, **_coco_meta())
    cfg = get_vis_cfg(None, ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", "40",
                             "MODEL.MASK_ON", "True", "INPUT.MASK_FORMAT", "bitmask",
                             "MODEL.VIS.MSD.NUM_AUX_CLASSES", "2", "INPUT.MIN_SIZE_TRAIN", "(24,)",
                             "INPUT.MAX_SIZE_TRAIN", "32", "SOLVER.IMS_PER_BATCH", "8",
                             "DATALOADER.NUM_WORKERS", "0",
                             "DATALOADER.ASPECT_RATIO_GROUPING", "False"])
    cfg.DATASETS.TRAIN = ("msdtest_loader_videos", "msdtest_loader_coco")
    batch = next(iter(build_vis_train_loader(cfg)))
    pseudo = [p for p in batch if p["pseudo_ref"]]
    assert pseudo, "no image pair in 8 draws of 3 records"
    for p in batch:
        for inst in (p["instances"], p["ref_instances"]):
            assert inst.gt_aux.dtype == torch.bool and inst.gt_mask_valid.dtype == torch.bool
            assert inst.gt_classes[inst.gt_aux].eq(40).all()
            assert inst.gt_classes[~inst.gt_aux].lt(40).all()
    assert any(p["instances"].gt_aux.any() for p in pseudo)


# ------------------------------------------------------------------------------------------------
# The pair mappers' gt_aux / gt_mask_valid
# ------------------------------------------------------------------------------------------------
def _mapper_cfg():
    return get_vis_cfg(None, ["MODEL.DEVICE", "cpu", "MODEL.MASK_ON", "True",
                              "INPUT.MASK_FORMAT", "bitmask", "INPUT.MIN_SIZE_TRAIN", f"({H},)",
                              "INPUT.MAX_SIZE_TRAIN", str(W), "INPUT.RANDOM_FLIP", "none"])


def _frames(tmp_path, n):
    paths = []
    for t in range(n):
        p = str(tmp_path / f"f{t}.png")
        cv2.imwrite(p, np.full((H, W, 3), 20 * t, np.uint8))
        paths.append(p)
    return paths


def test_video_pair_flags_and_placeholder_masks(tmp_path):
    frames = [[_anno(0, (2, 2, 10, 10), track_id=1),
               _anno(1, (12, 4, 20, 12), track_id=2, mask_valid=False),
               _anno(2, (22, 2, 30, 20), track_id=3, aux=True)]] * 2
    record = {"video_id": 3, "file_names": _frames(tmp_path, 2), "height": H, "width": W,
              "length": 2, "annotations": frames}
    out = VideoPairDatasetMapper(_mapper_cfg())(record)
    assert out["has_mask"] is True
    for inst in (out["instances"], out["ref_instances"]):
        assert inst.gt_track_ids.tolist() == [1, 2, 3]
        assert inst.gt_aux.tolist() == [False, False, True]
        assert inst.gt_mask_valid.tolist() == [True, False, True]
        # The weak instance keeps its box; its mask is an empty placeholder, never its RLE.
        assert inst.gt_boxes.tensor[1].tolist() == [12.0, 4.0, 20.0, 12.0]
        assert inst.gt_masks.tensor.flatten(1).sum(1).tolist() == [64, 0, 144]

    # No usable mask in the pair: box-only, both fields present.
    weak = [[dict(a, mask_valid=False) for a in f] for f in frames]
    out = VideoPairDatasetMapper(_mapper_cfg())(dict(record, annotations=weak))
    assert out["has_mask"] is False and not out["instances"].has("gt_masks")
    assert out["instances"].gt_mask_valid.tolist() == [False] * 3
    assert out["instances"].gt_aux.tolist() == [False, False, True]


def test_pseudo_pair_recomputes_only_valid_boxes(tmp_path):
    """A rotated pseudo reference takes tight boxes from the masks; a weak instance keeps the
    rotated box corners instead of vanishing with its empty placeholder."""
    (path,) = _frames(tmp_path, 1)
    d = {"file_name": path, "image_id": 9, "height": H, "width": W,
         "annotations": [_anno(0, (8, 6, 14, 12), id=1),
                         _anno(1, (14, 6, 22, 14), id=2, mask_valid=False, aux=True)]}
    rot = AffineTransform(cv2.getRotationMatrix2D((W / 2, H / 2), 90, 1.0), H, W)
    mapper = PseudoPairDatasetMapper(_mapper_cfg(), pseudo_augmentations=[rot])
    out = mapper(d)
    ref = out["ref_instances"]
    assert ref.gt_track_ids.tolist() == [1, 2]
    assert ref.gt_mask_valid.tolist() == [True, False] and ref.gt_aux.tolist() == [False, True]
    # (x, y) -> (16 + (y - 12), 12 - (x - 16)): box (14, 6, 22, 14) -> (10, 6, 18, 14), and
    # the valid instance's tight box is its rotated mask's, (8, 6, 14, 12) -> (10, 14, 16, 20).
    assert np.allclose(ref.gt_boxes.tensor[1].tolist(), [10, 6, 18, 14], atol=1e-4)
    assert np.allclose(ref.gt_boxes.tensor[0].tolist(), [10, 14, 16, 20], atol=1e-4)
    assert int(ref.gt_masks.tensor[0].sum()) == 36 and int(ref.gt_masks.tensor[1].sum()) == 0


def test_copy_paste_skips_weak_pairs_and_keeps_the_aux_flag():
    def pair(aux, valid):
        inst = boxed_instances((20, 20), [(0, 0, 6, 6)], [1], [4])
        inst.gt_aux = torch.tensor([aux])
        inst.gt_mask_valid = torch.tensor([valid])
        return {"image": torch.full((3, 20, 20), 90, dtype=torch.uint8),
                "ref_image": torch.full((3, 20, 20), 91, dtype=torch.uint8),
                "instances": inst, "ref_instances": inst, "has_mask": True}

    cp = CopyPaste(prob=1.0, min_area=4, seed=0)
    weak = pair(False, False)
    assert cp(weak) is weak and len(cp._bank) == 0  # neither a donor nor pasted into
    cp(pair(True, True))  # an auxiliary donor
    out = cp(pair(False, True))
    for inst in (out["instances"], out["ref_instances"]):
        assert inst.gt_aux.tolist() == [False, True]
        assert inst.gt_mask_valid.tolist() == [True, True]


# ------------------------------------------------------------------------------------------------
# The synthetic second source: the A4 data path offline
# ------------------------------------------------------------------------------------------------
def test_synthetic_sources_mix_by_their_tables(tmp_path, restore_catalogs, caplog):
    from vis_d2.data.builtin import register_all_ytvis
    from vis_d2.data.synthetic import SynthConfig, generate

    generate(str(tmp_path / "synthvis"), train_videos=2, val_videos=0, seed=1, image_set_size=4,
             msd_set_size=12, msd_weak_share=0.5, config=SynthConfig(length_range=(4, 5)))
    names = register_all_ytvis(str(tmp_path))
    assert {"synthvis_msd_train", "synthvis_msd_weak_train"} <= set(names)
    assert MetadataCatalog.get("synthvis_msd_weak_train").weak_segmentation is True
    assert MetadataCatalog.get("synthvis_msd_train").taxonomy == "synthvis_msd"
    train = ["synthvis_train", "synthvis_images_train", "synthvis_msd_train",
             "synthvis_msd_weak_train"]
    with caplog.at_level(logging.INFO, logger="vis_d2.data.build"):
        sources, stats = mix_training_sources(train, mask_on=True, num_aux_classes=2)
    shapes = {c: i for i, c in enumerate(["circle", "square", "triangle", "star"])}
    msd_to_video = {"disc": "circle", "block": "square", "wedge": "triangle",
                    "pentagram": "star"}
    for name, records, st in zip(train[1:], sources[1:], stats[1:]):
        assert st.mapped > 0 and st.auxiliary > 0 and st.dropped == 0, name
        assert set(st.auxiliary_classes) <= {"hexagon", "ring", "crescent"}
        classes = MetadataCatalog.get(name).thing_classes
        raw = {d["image_id"]: d for d in DatasetCatalog.get(name)}
        for d in records:
            for a, r in zip(d["annotations"], raw[d["image_id"]]["annotations"]):
                own = classes[r["category_id"]]
                if a.get("aux"):
                    assert a["category_id"] == 4 and own in ("hexagon", "ring", "crescent")
                else:  # the same shape: by name for the image set, by the table for msd
                    assert a["category_id"] == shapes[msd_to_video.get(own, own)]
    weak = sources[3]
    assert all(a["mask_valid"] is False for d in weak for a in d["annotations"])
    assert not any("mask_valid" in a for d in sources[2] for a in d["annotations"])
    assert stats[3].weak_segmentation and stats[3].without_mask == stats[3].mapped + \
        stats[3].auxiliary
    assert sum("Training source '" in m for m in caplog.messages) == 4
