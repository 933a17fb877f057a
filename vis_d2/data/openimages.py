"""OpenImages V6 / V7 in its official download layout -> detectron2 image dicts.

The paper adds "a subset from OpenImage that has common object categories with YoutubeVOS-VIS2021
... 14k images" (Sec. 3.2), trained for boxes, classes and tracks only: its masks are "no or
noisy" (weak segmentation, the default here).

Layout read under ``root`` (``$DETECTRON2_DATASETS/openimages``); the file names are the official
ones of https://storage.googleapis.com/openimages/web/download_v6.html (V7 keeps V6's boxes and
segmentations and adds ``oidv7-class-descriptions.csv``)::

    oidv7-class-descriptions.csv | oidv6-class-descriptions.csv     LabelName,DisplayName (header)
      | class-descriptions-boxable.csv                               MID,name (no header, V5)
    oidv6-train-annotations-bbox.csv  validation-annotations-bbox.csv  test-annotations-bbox.csv
    train-annotations-object-segmentation.csv  validation-annotations-object-segmentation.csv ...
    train/<ImageID>.jpg  validation/<ImageID>.jpg  test/<ImageID>.jpg
    train-masks/<MaskPath>  validation-masks/<MaskPath>  test-masks/<MaskPath>
                  (the 16 archives <split>-masks-0.zip ... -f.zip unpacked into one folder)

Columns read: the box csv's ``ImageID, LabelName, XMin, XMax, YMin, YMax, IsGroupOf`` (boxes in
[0, 1] image coordinates; a group box becomes a crowd annotation); the segmentation csv's
``MaskPath, ImageID, LabelName, BoxXMin, BoxXMax, BoxYMin, BoxYMax`` (a mask belongs to the box of
the same image and label with the same coordinates, up to the csv's 6 digits; an unmatched mask
row adds an instance with its own box). A mask PNG has the image's aspect ratio but another
resolution (the masks' long side is 1600 px, the images' at most 1024 px:
openimages/dataset issue #92), so it is resized to the image with nearest interpolation.

Only the images present in the image folder are loaded (one usually downloads a subset); the
others are counted in the log. Masks are read only when ``weak_segmentation`` is False.
"""
import csv
import logging
import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
from fvcore.common.timer import Timer
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .categories import get_class_map

__all__ = [
    "OPENIMAGES_SPLITS",
    "CLASS_DESCRIPTION_FILES",
    "read_class_descriptions",
    "load_openimages",
    "register_openimages",
]

logger = logging.getLogger(__name__)

# Registered split name -> the official file prefix.
OPENIMAGES_SPLITS = {"train": "train", "val": "validation", "test": "test"}
# The class description files, in the order they are looked for.
CLASS_DESCRIPTION_FILES = ("oidv7-class-descriptions.csv", "oidv6-class-descriptions.csv",
                           "class-descriptions-boxable.csv")
_BOX_FILES = {"train": ("oidv6-train-annotations-bbox.csv", "train-annotations-bbox.csv"),
              "validation": ("validation-annotations-bbox.csv",),
              "test": ("test-annotations-bbox.csv",)}
_BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf")
_MASK_COLUMNS = ("MaskPath", "ImageID", "LabelName", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax")
# A mask's box equals its annotation box up to the segmentation csv's 6 printed digits.
_BOX_MATCH_TOL = 2e-6
# Pixels a resized mask's side may differ from the image's (rounding of both resolutions).
_MASK_SIZE_TOL = 2.0


def _first_existing(root: str, names: Sequence[str], what: str) -> str:
    for n in names:
        path = os.path.join(root, n)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"OpenImages {what}: none of {list(names)} is in '{root}'")


def read_class_descriptions(path: str) -> Tuple[List[str], List[str]]:
    """(MIDs, display names) of a class description csv, in file order; the V6/V7 files start
    with a ``LabelName,DisplayName`` header, the V5 boxable one has none."""
    mids, names = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f)):
            if i == 0 and row[:2] == ["LabelName", "DisplayName"]:
                continue
            if len(row) < 2 or not row[0]:
                raise ValueError(f"{path}: row {i + 1} is not 'MID,name': {row!r}")
            mids.append(row[0])
            names.append(row[1])
    if not mids:
        raise ValueError(f"{path}: no class")
    return mids, names


def _columns(reader, path: str, required: Sequence[str]) -> Dict[str, int]:
    """The index of each required column of a csv's header; ValueError naming the file and the
    missing columns."""
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{path}: empty file, expected the columns {list(required)}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(repr(c) for c in missing)} (the header "
                         f"has {header}); is it an OpenImages annotation csv?")
    return {c: header.index(c) for c in required}


def _float(row, col: Dict[str, int], name: str, path: str, line: int) -> float:
    try:
        value = float(row[col[name]])
    except (ValueError, IndexError):
        value = float("nan")
    if not np.isfinite(value):
        raise ValueError(f"{path}: row {line}: column '{name}' is not a number: "
                         f"{row[col[name]] if col[name] < len(row) else '(missing)'!r}")
    return value


def _read_boxes(path: str, mid_index: Dict[str, int], keep_image) -> Dict[str, List[dict]]:
    """ImageID -> its boxes ({"mid", "box": (xmin, xmax, ymin, ymax) in [0, 1], "crowd",
    "line"}) for the images ``keep_image(ImageID)`` accepts."""
    boxes = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        col = _columns(reader, path, _BOX_COLUMNS)
        for line, row in enumerate(reader, start=2):
            image_id = row[col["ImageID"]]
            if not keep_image(image_id):
                continue
            mid = row[col["LabelName"]]
            if mid not in mid_index:
                raise ValueError(f"{path}: row {line} (image {image_id}): LabelName {mid!r} is "
                                 "not in the class description csv")
            box = tuple(_float(row, col, k, path, line)
                        for k in ("XMin", "XMax", "YMin", "YMax"))
            boxes[image_id].append({"mid": mid, "box": box, "line": line,
                                    "crowd": row[col["IsGroupOf"]].strip() == "1"})
    return boxes


def _read_mask_rows(path: str, mid_index: Dict[str, int], images) -> Dict[str, List[dict]]:
    """ImageID -> its mask rows ({"mid", "box", "mask_path", "line"}) for ``images``."""
    rows = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        col = _columns(reader, path, _MASK_COLUMNS)
        for line, row in enumerate(reader, start=2):
            image_id = row[col["ImageID"]]
            if image_id not in images:
                continue
            mid = row[col["LabelName"]]
            if mid not in mid_index:
                raise ValueError(f"{path}: row {line} (image {image_id}): LabelName {mid!r} is "
                                 "not in the class description csv")
            box = tuple(_float(row, col, k, path, line)
                        for k in ("BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax"))
            rows[image_id].append({"mid": mid, "box": box, "line": line,
                                   "mask_path": row[col["MaskPath"]]})
    return rows


def _same_box(a, b) -> bool:
    return max(abs(p - q) for p, q in zip(a, b)) <= _BOX_MATCH_TOL


def _image_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image as detectron2's read_image returns it (EXIF rotation
    applied), from its header."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"OpenImages image '{path}' is not a readable image: {e}") from e
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _read_mask(path: str, height: int, width: int, csv_path: str, line: int) -> dict:
    """A mask PNG resized to (height, width), as a compressed RLE with str counts."""
    where = f"{csv_path}: row {line}"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: mask PNG '{path}' does not exist (unpack the "
                                "<split>-masks-*.zip archives into the <split>-masks folder)")
    try:
        with Image.open(path) as im:
            mask = np.asarray(im.convert("L")) > 0
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{where}: mask PNG '{path}' is not a readable image: {e}") from e
    mh, mw = mask.shape
    if (mh, mw) != (height, width):
        if (abs(mw * height / mh - width) > _MASK_SIZE_TOL
                or abs(mh * width / mw - height) > _MASK_SIZE_TOL):
            raise ValueError(
                f"{where}: mask PNG '{path}' is {mh}x{mw} (HxW), which is not the "
                f"{height}x{width} image at another resolution (the aspect ratios differ)")
        mask = cv2.resize(mask.astype(np.uint8), (width, height),
                          interpolation=cv2.INTER_NEAREST).astype(bool)
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def load_openimages(root: str, split: str = "train", dataset_name: Optional[str] = None,
                    shared_with: Optional[str] = None, weak_segmentation: bool = True
                    ) -> List[dict]:
    """
    Load an OpenImages split in the official layout (see the module docstring).

    Args:
        root: the folder holding the csvs and the image folders.
        split: "train", "val" or "test".
        dataset_name: if given, sets its metadata: ``thing_classes`` (display names, in the class
            description csv's order = contiguous order), ``thing_mids``,
            ``thing_dataset_id_to_contiguous_id`` ({MID: contiguous id}),
            ``class_descriptions_csv``.
        shared_with: a video taxonomy ("ytvis_2021", "ytvis_2019"): keep only the images holding
            a box of an OpenImages class the class map ``shared_with <- openimages`` names (the
            paper's subset); the class description csv is checked against that map first.
        weak_segmentation: True: no mask is read (the source trains no mask); False: the
            segmentation csv and mask PNGs give each matched instance an RLE "segmentation".

    Returns:
        list[dict]: detectron2 image dicts in ImageID order: "file_name", "height", "width",
        "image_id" (int, 1-based), "oid_image_id" (str), "annotations": [{"id", "bbox" (XYXY
        pixels), "bbox_mode", "category_id" (contiguous), "iscrowd", "segmentation"?}].

    Raises:
        FileNotFoundError naming the folder and the expected file names when a csv is missing,
        and naming the csv row when a mask PNG is; ValueError naming the file and row (or the
        missing column) for a malformed csv, a label not in the class descriptions, a mask PNG of
        another aspect ratio, and (with ``shared_with``) a class of the map the class
        description csv does not have (listing the closest names).
    """
    if split not in OPENIMAGES_SPLITS:
        raise ValueError(f"OpenImages split must be one of {list(OPENIMAGES_SPLITS)}, got "
                         f"{split!r}")
    prefix = OPENIMAGES_SPLITS[split]
    timer = Timer()
    class_csv = _first_existing(root, CLASS_DESCRIPTION_FILES, "class descriptions")
    mids, names = read_class_descriptions(class_csv)
    mid_index = {m: i for i, m in enumerate(mids)}
    name = dataset_name or f"openimages_{split}"

    shared = None
    if shared_with is not None:
        class_map = get_class_map(shared_with, "openimages")
        if class_map is None:
            raise ValueError(f"no class map {shared_with} <- openimages (see "
                             f"vis_d2.data.categories) for the shared-class subset of '{name}'")
        class_map.check_source(names, mid_index, name, class_csv)
        shared = set(class_map.source_ids)

    image_dir = os.path.join(root, prefix)
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"OpenImages images: folder '{image_dir}' does not exist")
    present = {os.path.splitext(e.name)[0]: e.path for e in os.scandir(image_dir)
               if e.name.lower().endswith((".jpg", ".jpeg", ".png"))}
    box_csv = _first_existing(root, _BOX_FILES[prefix], f"{prefix} boxes")
    listed = set()

    def keep_image(image_id: str) -> bool:
        listed.add(image_id)
        return image_id in present

    boxes = _read_boxes(box_csv, mid_index, keep_image)
    if shared is not None:
        boxes = {i: b for i, b in boxes.items() if any(x["mid"] in shared for x in b)}
    masks = {}
    if not weak_segmentation:
        mask_csv = _first_existing(root, (f"{prefix}-annotations-object-segmentation.csv",),
                                   f"{prefix} segmentations")
        masks = _read_mask_rows(mask_csv, mid_index, boxes)
        mask_dir = os.path.join(root, f"{prefix}-masks")

    records = []
    for image_id in sorted(boxes):
        file_name = present[image_id]
        h, w = _image_size(file_name)
        instances = [dict(b) for b in boxes[image_id]]
        for m in masks.get(image_id, ()):
            match = next((b for b in instances if b["mid"] == m["mid"] and "mask" not in b
                          and _same_box(b["box"], m["box"])), None)
            if match is None:
                match = {"mid": m["mid"], "box": m["box"], "crowd": False}
                instances.append(match)
            match["mask"] = _read_mask(os.path.join(mask_dir, m["mask_path"]), h, w, mask_csv,
                                       m["line"])
        annotations = []
        for b in instances:
            xmin, xmax, ymin, ymax = b["box"]
            anno = {
                "id": len(annotations) + 1,
                "bbox": [min(max(xmin, 0.0), 1.0) * w, min(max(ymin, 0.0), 1.0) * h,
                         min(max(xmax, 0.0), 1.0) * w, min(max(ymax, 0.0), 1.0) * h],
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": mid_index[b["mid"]],
                "iscrowd": int(b["crowd"]),
            }
            if "mask" in b:
                anno["segmentation"] = b["mask"]
            annotations.append(anno)
        records.append({"file_name": file_name, "height": h, "width": w,
                        "image_id": len(records) + 1, "oid_image_id": image_id,
                        "annotations": annotations})
    missing = len(listed) - len(listed & set(present))
    num_boxes = sum(len(r["annotations"]) for r in records)
    logger.info(
        f"Loaded {len(records)} OpenImages {prefix} images ({num_boxes} boxes) from {root} in "
        f"{timer.seconds():.1f} s"
        + (f", those holding a class shared with {shared_with}" if shared_with else "")
        + (f"; {missing} images of {box_csv} are not in {image_dir}" if missing else "")
    )
    if dataset_name is not None:
        meta = MetadataCatalog.get(dataset_name)
        values = {"thing_classes": names, "thing_mids": mids,
                  "thing_dataset_id_to_contiguous_id": mid_index,
                  "class_descriptions_csv": class_csv}
        for key, value in values.items():
            if meta.get(key, None) != value:
                if meta.get(key, None) is not None:
                    delattr(meta, key)  # the csv changed since the last load
                setattr(meta, key, value)
    return records


def register_openimages(name: str, root: str, split: str = "train",
                        shared_with: Optional[str] = None, weak_segmentation: bool = True) -> None:
    """
    Register an OpenImages split (lazily: the csvs are read on ``DatasetCatalog.get``), with
    metadata ``taxonomy="openimages"``, ``weak_segmentation`` and where it comes from; the class
    names are set when it is loaded. Arguments as :func:`load_openimages`.
    """
    DatasetCatalog.register(
        name, lambda: load_openimages(root, split, name, shared_with, weak_segmentation))
    MetadataCatalog.get(name).set(taxonomy="openimages", weak_segmentation=weak_segmentation,
                                  openimages_root=root, split=split, shared_with=shared_with)
