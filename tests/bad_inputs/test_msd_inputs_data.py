"""Bad multi-source training data (issue 24, the data part): sources whose classes cannot be
mapped, auxiliary ids where the model's classes are defined, OpenImages files in the official
layout with a missing column, file or mask, and the synthetic second source's arguments.

Each row: the input (a change to a tiny valid source), the exception it must raise, and a fragment
of the message, which names the dataset / file / row / key at fault.
"""
import os
import re

import cv2
import numpy as np
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.structures import BoxMode

from openimages_layout import BOX_HEADER, MASK_HEADER, all_classes, write_openimages
from vis_d2.data.build import mix_training_sources
from vis_d2.data.categories import YTVIS_2021_CATEGORIES
from vis_d2.data.openimages import load_openimages
from vis_d2.data.synthetic import generate
from vis_d2.data.ytvis import categories_to_metadata

COCO = [c for c in COCO_CATEGORIES if c["isthing"]]
Y21 = [c["name"] for c in YTVIS_2021_CATEGORIES]


# ------------------------------------------------------------------------------------------------
# Mixing sources: class maps, auxiliary ids, K
# ------------------------------------------------------------------------------------------------
def _anno(category_id, **extra):
    return dict({"category_id": category_id, "bbox": [1, 1, 6, 6],
                 "bbox_mode": BoxMode.XYXY_ABS, "iscrowd": 0}, **extra)


def _videos(annotation=None):
    """A YouTube-VIS 2021 video: frame 0 holds a dog (track 3), frame 1 ``annotation``."""
    second = [] if annotation is None else [annotation]
    return [{"video_id": 7, "file_names": ["0.jpg", "1.jpg"], "height": 8, "width": 8,
             "length": 2, "has_gt": True,
             "annotations": [[_anno(Y21.index("dog"), track_id=3)], second]}]


def _coco_images(category_id=None):
    c = {cat["id"]: i for i, cat in enumerate(COCO)}
    cid = c[18] if category_id is None else category_id
    return [{"image_id": 1, "file_name": "1.jpg", "height": 8, "width": 8,
             "annotations": [_anno(cid, id=11)]}]


def _coco_meta(rename=None, drop=None):
    cats = [dict(c, name=(rename or {}).get(c["id"], c["name"])) for c in COCO
            if c["id"] != drop]
    return dict(categories_to_metadata(cats), taxonomy="coco", json_file="tiny_coco.json")


def _y21_meta(rename=None):
    cats = [dict(c, name=(rename or {}).get(c["name"], c["name"])) for c in YTVIS_2021_CATEGORIES]
    return dict(categories_to_metadata(cats), taxonomy="ytvis_2021")


# id: (video records, video metadata, source records, source metadata, K, error, fragment)
MIX_ROWS = [
    ("coco-renames-a-mapped-class", _videos(), _y21_meta(), _coco_images(),
     _coco_meta(rename={34: "frizbee"}), 0, ValueError,
     "training set 'bad_msd_source' (tiny_coco.json): the class map ytvis_2021 <- coco maps "
     "'flying_disc' to COCO category id 34 'frisbee', but its COCO category id 34 is 'frizbee'; "
     "closest names in its category list: ['frizbee'"),
    ("coco-lacks-a-mapped-class", _videos(), _y21_meta(), _coco_images(),
     _coco_meta(drop=43), 0, ValueError,
     "maps 'tennis_racket' to COCO category id 43 'tennis racket', but it has no COCO category "
     "id 43; closest names in its category list: ["),
    ("video-set-lacks-a-mapped-class", _videos(), _y21_meta({"flying_disc": "frisbee_disc"}),
     _coco_images(), _coco_meta(), 0, ValueError,
     "class map ytvis_2021 <- coco maps onto class 'flying_disc', which training set "
     "'bad_msd_videos' (taxonomy ytvis_2021) does not have; closest names: ['frisbee_disc']"),
    ("no-class-map-and-no-opt-in", _videos(), _y21_meta(), _coco_images(),
     dict(_coco_meta(), taxonomy="my_coco"), 0, ValueError,
     "training set 'bad_msd_source' (taxonomy 'my_coco') has other classes than the first "
     "training set 'bad_msd_videos' (taxonomy 'ytvis_2021') and no class map links the two"),
    ("source-category-id-outside-its-classes", _videos(), _y21_meta(), _coco_images(99),
     _coco_meta(), 0, ValueError,
     "training set 'bad_msd_source', image 1 ('1.jpg'), annotation 11: category_id 99 is not an "
     "index into its 80 thing_classes"),
    ("auxiliary-id-in-the-video-set", _videos(_anno(40, track_id=4)), _y21_meta(),
     _coco_images(), _coco_meta(), 2, ValueError,
     "training set 'bad_msd_videos', video 7 frame 1, annotation (track 4): category_id 40 is "
     "not one of its 40 classes (0..39); an auxiliary class id belongs to later training "
     "sources only"),
    ("auxiliary-flag-in-the-video-set", _videos(_anno(2, track_id=5, aux=True)), _y21_meta(),
     _coco_images(), _coco_meta(), 2, ValueError,
     "training set 'bad_msd_videos', video 7 frame 1, annotation (track 5): marked auxiliary"),
    ("negative-num-aux-classes", _videos(), _y21_meta(), _coco_images(), _coco_meta(), -1,
     ValueError, "MODEL.VIS.MSD.NUM_AUX_CLASSES must be an int >= 0, got -1"),
]


@pytest.mark.parametrize("videos,video_meta,source,source_meta,k,error,fragment",
                         [r[1:] for r in MIX_ROWS], ids=[r[0] for r in MIX_ROWS])
def test_bad_training_source_is_refused(restore_catalogs, videos, video_meta, source,
                                        source_meta, k, error, fragment):
    for name, dicts, meta in (("bad_msd_videos", videos, video_meta),
                              ("bad_msd_source", source, source_meta)):
        DatasetCatalog.register(name, lambda d=dicts: d)
        MetadataCatalog.get(name).set(**meta)
    with pytest.raises(error, match=re.escape(fragment)):
        mix_training_sources(["bad_msd_videos", "bad_msd_source"], num_aux_classes=k)


# ------------------------------------------------------------------------------------------------
# OpenImages in the official layout
# ------------------------------------------------------------------------------------------------
def _without(header, column):
    return [c for c in header if c != column]


def _rename_flying_disc(root):
    classes = [(m + "x", "Flying disk") if m == "/m/02wmf" else (m, n) for m, n in all_classes()]
    write_openimages(root, classes=classes)


def _delete(relative):
    def damage(root):
        write_openimages(root)
        path = os.path.join(root, relative)
        if os.path.isdir(path):
            for f in os.listdir(path):
                os.remove(os.path.join(path, f))
            os.rmdir(path)
        else:
            os.remove(path)
    return damage


def _replace_in_box_csv(old, new):
    def damage(root):
        write_openimages(root)
        path = os.path.join(root, "validation-annotations-bbox.csv")
        text = open(path).read()
        assert old in text
        with open(path, "w") as f:
            f.write(text.replace(old, new, 1))
    return damage


def _dog_mask(pixels):
    def damage(root):
        write_openimages(root)
        path = os.path.join(root, "validation-masks", "0a1_m0bt9lr_aaaa0001.png")
        if isinstance(pixels, bytes):
            with open(path, "wb") as f:
                f.write(pixels)
        else:
            cv2.imwrite(path, pixels)
    return damage


# id: (writes the split into a folder, load_openimages keyword arguments, error, fragment)
OPENIMAGES_ROWS = [
    ("class-csv-lacks-a-mapped-class", _rename_flying_disc, {"shared_with": "ytvis_2021"},
     ValueError,
     "oidv6-class-descriptions.csv): the class map ytvis_2021 <- openimages maps "
     "'flying_disc' to OpenImages MID '/m/02wmf' 'Flying disc', but it has no OpenImages MID "
     "'/m/02wmf'; closest names in its category list: ['Flying disk'"),
    ("no-class-description-csv", _delete("oidv6-class-descriptions.csv"), {},
     FileNotFoundError,
     "OpenImages class descriptions: none of ['oidv7-class-descriptions.csv', "
     "'oidv6-class-descriptions.csv', 'class-descriptions-boxable.csv'] is in"),
    ("no-box-csv", _delete("validation-annotations-bbox.csv"), {}, FileNotFoundError,
     "OpenImages validation boxes: none of ['validation-annotations-bbox.csv'] is in"),
    ("no-image-folder", _delete("validation"), {}, FileNotFoundError,
     "validation' does not exist"),
    ("box-csv-misses-a-column", lambda r: write_openimages(r, box_header=_without(BOX_HEADER,
                                                                                  "XMax")),
     {}, ValueError, "validation-annotations-bbox.csv: no column 'XMax' (the header has"),
    ("segmentation-csv-misses-a-column",
     lambda r: write_openimages(r, mask_header=_without(MASK_HEADER, "MaskPath")),
     {"weak_segmentation": False}, ValueError,
     "validation-annotations-object-segmentation.csv: no column 'MaskPath'"),
    ("box-label-not-in-the-class-csv", _replace_in_box_csv("/m/0bt9lr", "/m/0zzzz"), {},
     ValueError, "validation-annotations-bbox.csv: row 2 (image 0a1): LabelName '/m/0zzzz' is "
     "not in the class description csv"),
    ("box-coordinate-not-a-number", _replace_in_box_csv(",0.25,", ",abc,"), {}, ValueError,
     "validation-annotations-bbox.csv: row 2: column 'XMin' is not a number: 'abc'"),
    ("mask-png-missing", lambda r: write_openimages(r, masks=False),
     {"weak_segmentation": False}, FileNotFoundError,
     "validation-annotations-object-segmentation.csv: row 2: mask PNG "),
    ("mask-png-of-another-aspect-ratio", _dog_mask(np.zeros((40, 40), np.uint8)),
     {"weak_segmentation": False}, ValueError,
     "0a1_m0bt9lr_aaaa0001.png' is 40x40 (HxW), which is not the 20x40 image at another "
     "resolution"),
    ("mask-png-not-an-image", _dog_mask(b"not a png"), {"weak_segmentation": False},
     ValueError, "0a1_m0bt9lr_aaaa0001.png' is not a readable image"),
]


@pytest.mark.parametrize("write,kwargs,error,fragment", [r[1:] for r in OPENIMAGES_ROWS],
                         ids=[r[0] for r in OPENIMAGES_ROWS])
def test_bad_openimages_files_are_named(tmp_path, write, kwargs, error, fragment):
    root = str(tmp_path / "openimages")
    write(root)
    with pytest.raises(error, match=re.escape(fragment)):
        load_openimages(root, "val", **kwargs)


def test_missing_mask_png_names_the_csv_row_and_file(tmp_path):
    """The missing-mask row, whole: the csv, its row and the path the PNG was looked for at."""
    root = write_openimages(tmp_path / "openimages", masks=False)
    png = os.path.join(root, "validation-masks", "0a1_m0bt9lr_aaaa0001.png")
    with pytest.raises(FileNotFoundError, match=re.escape(f"row 2: mask PNG '{png}' does not "
                                                          "exist")):
        load_openimages(root, "val", weak_segmentation=False)
    # Weak segmentation (the default): masks are never read, so none has to be there.
    assert len(load_openimages(root, "val")) == 3


# ------------------------------------------------------------------------------------------------
# The synthetic second source
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,fragment", [
    ({"msd_weak_share": 1.5}, "msd_weak_share must lie in [0, 1], got 1.5"),
    ({"msd_weak_share": "0.3"}, "msd_weak_share must lie in [0, 1], got '0.3'"),
    ({"msd_set_size": -3}, "msd_set_size must be an int >= 0, got -3"),
], ids=["weak-share-above-one", "weak-share-not-a-number", "negative-set-size"])
def test_bad_second_source_arguments(tmp_path, kwargs, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        generate(str(tmp_path / "s"), train_videos=0, val_videos=0, image_set_size=0, **kwargs)
