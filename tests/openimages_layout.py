"""A tiny OpenImages split (validation by default) in the official layout
(vis_d2/data/openimages.py), written into a folder by the tests that need one."""
import csv
import os

import cv2
import numpy as np

from vis_d2.data.categories import YTVIS_2019_TO_OPENIMAGES, YTVIS_2021_TO_OPENIMAGES

# Classes no map names: "Computer mouse" is the thing COCO's "mouse" is; "Ball" appears twice in
# the official V6 list (/m/018xm is the boxable one).
EXTRA_CLASSES = [("/m/020lf", "Computer mouse"), ("/m/0kmg4", "Teddy bear"),
                 ("/m/018xm", "Ball"), ("/m/0156sn", "Ball")]
BOX_HEADER = ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
              "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"]
MASK_HEADER = ["MaskPath", "ImageID", "LabelName", "BoxID", "BoxXMin", "BoxXMax", "BoxYMin",
               "BoxYMax", "PredictedIoU", "Clicks"]
# ImageID: (height, width) of the jpg.
IMAGES = {"0a1": (20, 40), "0b2": (30, 30), "0c3": (16, 24)}


def all_classes():
    """(MID, name) of every class the two YouTube-VIS maps name, then the extra ones."""
    seen = {}
    for m in (YTVIS_2021_TO_OPENIMAGES, YTVIS_2019_TO_OPENIMAGES):
        for pairs in m.values():
            for mid, name in pairs:
                seen[mid] = name
    return list(seen.items()) + EXTRA_CLASSES


def box_rows():
    """Rows of validation-annotations-bbox.csv: image 0a1 holds a dog and a computer mouse,
    0b2 only a computer mouse, 0c3 a group of brown bears; 0d4 has no image file."""
    rows = [
        ("0a1", "/m/0bt9lr", 0.25, 0.75, 0.1, 0.6, 0),   # Dog, x 10..30, y 2..12
        ("0a1", "/m/020lf", 0.0, 0.1, 0.5, 1.0, 0),      # Computer mouse
        ("0b2", "/m/020lf", 0.2, 0.4, 0.2, 0.4, 0),
        ("0c3", "/m/01dxs", 0.0, 0.5, 0.25, 0.75, 1),    # Brown bear, a group box
        ("0d4", "/m/0bt9lr", 0.1, 0.2, 0.1, 0.2, 0),
    ]
    return [[i, "xclick", mid, "1", repr(x0), repr(x1), repr(y0), repr(y1), "0", "0",
             str(group), "0", "0"] for i, mid, x0, x1, y0, y1, group in rows]


def mask_rows():
    """Rows of validation-annotations-object-segmentation.csv: the dog of 0a1 (its box to 6
    digits, as the official csv prints it) and an extra cat of 0b2 without a box row."""
    return [
        ["0a1_m0bt9lr_aaaa0001.png", "0a1", "/m/0bt9lr", "aaaa0001", "0.250000", "0.750000",
         "0.100000", "0.600000", "0.9", ""],
        ["0b2_m01yrx_bbbb0002.png", "0b2", "/m/01yrx", "bbbb0002", "0.500000", "1.000000",
         "0.500000", "1.000000", "0.8", ""],
    ]


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if header is not None:
            w.writerow(header)
        w.writerows(rows)
    return str(path)


# The official file names per split folder ("validation" or "train").
BOX_CSV = {"validation": "validation-annotations-bbox.csv",
           "train": "oidv6-train-annotations-bbox.csv"}


def write_openimages(root, class_file="oidv6-class-descriptions.csv", box_header=None,
                     mask_header=None, classes=None, masks=True, split="validation"):
    """Write the tiny split (``split``: "validation" or "train") under ``root``; the other
    arguments change one part (a bad input).

    The masks are PNGs at twice the image resolution (as the official ones have another
    resolution than the images): the dog's mask is its box's left half.
    """
    os.makedirs(os.path.join(root, split), exist_ok=True)
    header = None if class_file == "class-descriptions-boxable.csv" else ["LabelName",
                                                                          "DisplayName"]
    _write_csv(os.path.join(root, class_file), header, classes or all_classes())
    _write_csv(os.path.join(root, BOX_CSV[split]), box_header or BOX_HEADER, box_rows())
    _write_csv(os.path.join(root, f"{split}-annotations-object-segmentation.csv"),
               mask_header or MASK_HEADER, mask_rows())
    for image_id, (h, w) in IMAGES.items():
        cv2.imwrite(os.path.join(root, split, f"{image_id}.jpg"),
                    np.full((h, w, 3), 128, np.uint8))
    if masks:
        mask_dir = os.path.join(root, f"{split}-masks")
        os.makedirs(mask_dir, exist_ok=True)
        dog = np.zeros((40, 80), np.uint8)
        dog[4:24, 20:40] = 255  # image pixels x 10..20, y 2..12
        cv2.imwrite(os.path.join(mask_dir, "0a1_m0bt9lr_aaaa0001.png"), dog)
        cat = np.zeros((60, 60), np.uint8)
        cat[30:60, 30:60] = 255
        cv2.imwrite(os.path.join(mask_dir, "0b2_m01yrx_bbbb0002.png"), cat)
    return str(root)
