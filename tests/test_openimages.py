"""The OpenImages loader (vis_d2/data/openimages.py) on a tiny split in the official layout."""
import logging

import numpy as np
import pycocotools.mask as mask_util
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog

from openimages_layout import all_classes, write_openimages
from vis_d2.data import builtin
from vis_d2.data.build import mix_training_sources
from vis_d2.data.categories import YTVIS_2021_CATEGORIES
from vis_d2.data.openimages import load_openimages, read_class_descriptions
from vis_d2.data.ytvis import categories_to_metadata

Y21 = [c["name"] for c in YTVIS_2021_CATEGORIES]


@pytest.fixture
def oi_root(tmp_path):
    return write_openimages(tmp_path / "openimages")


def _by_image(records):
    return {r["oid_image_id"]: r for r in records}


def test_boxes_classes_and_missing_images(oi_root, caplog):
    mids = [m for m, _ in all_classes()]
    with caplog.at_level(logging.INFO, logger="vis_d2.data.openimages"):
        records = load_openimages(oi_root, "val", "oitest_val")
    assert [r["oid_image_id"] for r in records] == ["0a1", "0b2", "0c3"]  # 0d4: no jpg
    assert [r["image_id"] for r in records] == [1, 2, 3]
    assert any("Loaded 3 OpenImages validation images (4 boxes)" in m
               and "1 images of" in m for m in caplog.messages)
    dog, mouse = _by_image(records)["0a1"]["annotations"]
    assert (_by_image(records)["0a1"]["height"], _by_image(records)["0a1"]["width"]) == (20, 40)
    assert dog["bbox"] == [10.0, 2.0, 30.0, 12.0] and dog["iscrowd"] == 0
    assert dog["category_id"] == mids.index("/m/0bt9lr")
    assert mouse["category_id"] == mids.index("/m/020lf")
    assert "segmentation" not in dog  # weak segmentation: masks are not read
    (bears,) = _by_image(records)["0c3"]["annotations"]
    assert bears["iscrowd"] == 1 and bears["bbox"] == [0.0, 4.0, 12.0, 12.0]
    assert bears["category_id"] == mids.index("/m/01dxs")  # Brown bear: "bear" in the map
    meta = MetadataCatalog.get("oitest_val")
    assert meta.thing_mids == mids and meta.thing_classes[mids.index("/m/020lf")] == \
        "Computer mouse"
    assert meta.thing_dataset_id_to_contiguous_id["/m/0bt9lr"] == mids.index("/m/0bt9lr")
    MetadataCatalog.remove("oitest_val")


def test_shared_class_subset(oi_root):
    """Only the images holding a class shared with YouTube-VIS 2021 (the paper's subset)."""
    records = load_openimages(oi_root, "val", shared_with="ytvis_2021")
    assert [r["oid_image_id"] for r in records] == ["0a1", "0c3"]  # 0b2: a computer mouse only
    # An image kept keeps all its boxes, auxiliary ones too.
    assert len(_by_image(records)["0a1"]["annotations"]) == 2


def test_masks_are_matched_resized_and_encoded(oi_root):
    records = _by_image(load_openimages(oi_root, "val", weak_segmentation=False))
    dog, mouse = records["0a1"]["annotations"]
    mask = mask_util.decode({"size": dog["segmentation"]["size"],
                             "counts": dog["segmentation"]["counts"].encode("ascii")})
    expected = np.zeros((20, 40), np.uint8)
    expected[2:12, 10:20] = 1  # the 2x-resolution PNG, resized to the image
    assert np.array_equal(mask, expected)
    assert "segmentation" not in mouse  # no mask row
    # The cat's mask row has no box row: it adds an instance with the mask's box.
    _, cat = records["0b2"]["annotations"]
    assert cat["bbox"] == [15.0, 15.0, 30.0, 30.0] and "segmentation" in cat
    assert cat["category_id"] == [m for m, _ in all_classes()].index("/m/01yrx")


def test_v5_boxable_and_v7_class_files(tmp_path):
    v5 = write_openimages(tmp_path / "v5", class_file="class-descriptions-boxable.csv")
    assert read_class_descriptions(f"{v5}/class-descriptions-boxable.csv")[0][0] == \
        all_classes()[0][0]  # no header row to skip
    assert len(load_openimages(v5, "val")) == 3
    v7 = write_openimages(tmp_path / "v7")
    # The V7 file is preferred when both are there.
    with open(f"{v7}/oidv7-class-descriptions.csv", "w") as f:
        f.write("LabelName,DisplayName\n" + "".join(f"{m},{n}\n" for m, n in all_classes()[::-1]))
    (first, *_) = load_openimages(v7, "val", "oitest_v7")
    assert MetadataCatalog.get("oitest_v7").thing_mids[0] == all_classes()[-1][0]
    MetadataCatalog.remove("oitest_v7")


def test_registered_and_mixed_into_a_ytvis_2021_video_set(tmp_path, restore_catalogs, caplog):
    write_openimages(tmp_path / "openimages")
    names = builtin.register_all_openimages(str(tmp_path))
    assert names == ["openimages_train", "openimages_val", "openimages_train_ytvis_2021",
                     "openimages_train_ytvis_2019", "openimages_val_ytvis_2021",
                     "openimages_val_ytvis_2019"]
    meta = MetadataCatalog.get("openimages_val_ytvis_2021")
    assert (meta.taxonomy, meta.weak_segmentation, meta.split) == ("openimages", True, "val")
    assert builtin.register_all_openimages(str(tmp_path)) == names  # idempotent

    record = {"video_id": 1, "file_names": ["a.jpg"], "height": 8, "width": 8, "length": 1,
              "has_gt": True, "annotations": [[{"track_id": 1, "category_id": 0, "iscrowd": 0,
                                                "bbox": [0, 0, 4, 4], "bbox_mode": 0}]]}
    DatasetCatalog.register("oitest_videos", lambda: [record])
    MetadataCatalog.get("oitest_videos").set(taxonomy="ytvis_2021",
                                             **categories_to_metadata(YTVIS_2021_CATEGORIES))
    with caplog.at_level(logging.INFO, logger="vis_d2.data.build"):
        (_, oi), (_, stats) = mix_training_sources(["oitest_videos", "openimages_val_ytvis_2021"],
                                                   num_aux_classes=1)
    # 0c3 holds only a group box (a crowd): no instance to train, so it is not kept.
    (dog_and_mouse,) = oi
    assert [(a["category_id"], a.get("aux", False), a["mask_valid"])
            for a in dog_and_mouse["annotations"]] == [(Y21.index("dog"), False, False),
                                                       (40, True, False)]
    assert (stats.records, stats.kept, stats.mapped, stats.auxiliary, stats.dropped) == (
        2, 1, 1, 1, 0)
    assert any("'openimages_val_ytvis_2021' (class map ytvis_2021 <- openimages)" in m
               and "weak segmentation" in m for m in caplog.messages)
