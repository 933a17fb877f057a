"""YouTube-VIS json format -> vis_d2 video records.

YouTube-VIS 2019/2021/2022 and OVIS share one json format::

    {"videos":      [{"id", "file_names": [str] * length, "height", "width", "length"}, ...],
     "categories":  [{"id", "name"}, ...],
     "annotations": [{"id", "video_id", "category_id", "iscrowd",
                      "segmentations": [polygons | RLE | null] * length,
                      "bboxes": [[x, y, w, h] | null] * length,
                      "areas": [float | null] * length}, ...]}   # absent/null on test splits

A box-only ("detection only") annotation has a null segmentation in every frame and its boxes in
``bboxes`` (the pseudo labels of :mod:`vis_d2.pseudo_labels`): its instances carry no
``segmentation``, so they train no mask.

:func:`load_ytvis_json` turns it into one *video record* per video (the dict every vis_d2
mapper reads, see :mod:`vis_d2.data.video_record`): per-frame lists of instances, each carrying
its track id (the json annotation id) and a contiguous category id. Frame files are not touched
at load time; :func:`vis_d2.data.frames.read_frame` reads them.
"""
import json
import logging
import math
import os
from typing import Any, Dict, List, Optional

import pycocotools.mask as mask_util
from fvcore.common.timer import Timer

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

from ..evaluation.ytvis_eval import YTVISFormatError
from ..rle import rle_problems

__all__ = [
    "YTVISFormatError",
    "categories_to_metadata",
    "load_ytvis_json",
    "register_pseudo_labels",
    "register_ytvis_instances",
]

logger = logging.getLogger(__name__)

_VIDEO_KEYS = ("id", "file_names", "height", "width", "length")
# "bboxes" is optional (derived from the masks when absent), "iscrowd" defaults to 0, "areas" is
# not needed by the records.
_ANNOTATION_KEYS = ("id", "video_id", "category_id", "segmentations")


def categories_to_metadata(categories: List[Dict[str, Any]]) -> Dict[str, Any]:
    """
    Args:
        categories: ``[{"id": int, "name": str}, ...]`` in any order.

    Returns:
        dict with ``thing_classes`` (names sorted by json id: contiguous order) and
        ``thing_dataset_id_to_contiguous_id`` ({json id: contiguous id}).
    """
    cats = sorted(categories, key=lambda c: c["id"])
    return {
        "thing_classes": [c["name"] for c in cats],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(cats)},
    }


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_int(value, key: str, where: str, json_file: str) -> None:
    """Ids are compared with ``==`` across the json, so "1" would silently match nothing."""
    if not _is_int(value):
        raise YTVISFormatError(
            f"{json_file}: {where}: '{key}' must be an integer, got {value!r} "
            f"({type(value).__name__})"
        )


def _require(obj, keys, where: str, json_file: str):
    if not isinstance(obj, dict):
        raise YTVISFormatError(f"{json_file}: {where} must be a dict, got {type(obj).__name__}")
    for k in keys:
        if k not in obj:
            raise YTVISFormatError(f"{json_file}: {where} has no '{k}' key")


def _parse_categories(data, json_file):
    if "categories" not in data:
        raise YTVISFormatError(f"{json_file}: the json has no 'categories' key")
    cats = data["categories"]
    if not isinstance(cats, list) or len(cats) == 0:
        raise YTVISFormatError(f"{json_file}: 'categories' must be a non-empty list")
    seen = set()
    for i, c in enumerate(cats):
        _require(c, ("id", "name"), f"categories[{i}]", json_file)
        _require_int(c["id"], "id", f"categories[{i}]", json_file)
        if c["id"] in seen:
            raise YTVISFormatError(f"{json_file}: category id {c['id']} appears twice")
        seen.add(c["id"])
    return categories_to_metadata(cats)


def _parse_video(video, index, image_root, json_file):
    where = f"videos[{index}]"
    if isinstance(video, dict) and "id" in video:
        where += f" (video {video['id']})"
    _require(video, _VIDEO_KEYS, where, json_file)
    _require_int(video["id"], "id", where, json_file)
    vid = video["id"]
    file_names = video["file_names"]
    if not isinstance(file_names, list) or not all(isinstance(f, str) for f in file_names):
        raise YTVISFormatError(f"{json_file}: video {vid}: 'file_names' must be a list of str")
    h, w, length = video["height"], video["width"], video["length"]
    for key, val in (("height", h), ("width", w), ("length", length)):
        if not isinstance(val, int) or isinstance(val, bool) or val <= 0:
            raise YTVISFormatError(
                f"{json_file}: video {vid}: '{key}' must be a positive int, got {val!r}"
            )
    if length != len(file_names):
        raise YTVISFormatError(
            f"{json_file}: video {vid}: 'length' is {length} "
            f"but 'file_names' has {len(file_names)} entries"
        )
    return {
        "video_id": vid,
        # Frames stay in json order: the json's order is the temporal order.
        "file_names": [os.path.join(image_root, f) for f in file_names],
        "height": h,
        "width": w,
        "length": length,
        "annotations": [[] for _ in range(length)],
        "json_file": json_file,
    }


def _convert_segmentation(segm, height, width, where, json_file, problem=None):
    """
    Returns None (no mask in this frame), a list of polygons (degenerate ones dropped), or a
    compressed RLE dict {"size": [h, w], "counts": str}. ``problem``: what
    :func:`vis_d2.rle.rle_problems` found wrong with an RLE ``segm``'s run lengths (None: nothing).
    """
    if segm is None:
        return None
    if isinstance(segm, dict):
        if "size" not in segm or "counts" not in segm:
            raise YTVISFormatError(
                f"{json_file}: {where}: RLE segmentation needs 'size' and 'counts'"
            )
        size = segm["size"]
        if not isinstance(size, (list, tuple)) or list(size) != [height, width]:
            raise YTVISFormatError(
                f"{json_file}: {where}: mask size {size!r} differs from the video size "
                f"[{height}, {width}]"
            )
        counts = segm["counts"]
        # pycocotools decodes run lengths that do not cover the frame into a wrong mask without
        # a word (or fails later with a bare "Invalid RLE mask representation").
        if problem is not None:
            raise YTVISFormatError(f"{json_file}: {where}: {problem}")
        if isinstance(counts, (list, tuple)):
            # Convert to compressed so downstream code sees one RLE form.
            rle = {"size": [height, width], "counts": list(counts)}
            counts = mask_util.frPyObjects(rle, height, width)["counts"]
        if isinstance(counts, bytes):
            counts = counts.decode("ascii")
        return {"size": [height, width], "counts": counts}
    if isinstance(segm, list):
        if len(segm) > 0 and not all(isinstance(p, list) for p in segm):
            raise YTVISFormatError(
                f"{json_file}: {where}: polygons must be a list of [x1, y1, x2, y2, ...] lists"
            )
        polys = []
        for p in segm:
            if len(p) % 2 != 0:
                raise YTVISFormatError(
                    f"{json_file}: {where}: a polygon has an odd number ({len(p)}) of coordinates"
                )
            if not all(_is_finite_number(x) for x in p):
                raise YTVISFormatError(
                    f"{json_file}: {where}: polygon coordinates must be finite numbers, got {p!r}"
                )
            # pycocotools rasterises the whole outline: a point 1e8 pixels away exhausts memory.
            if p and not (-width <= min(p[0::2]) and max(p[0::2]) <= 2 * width
                          and -height <= min(p[1::2]) and max(p[1::2]) <= 2 * height):
                raise YTVISFormatError(
                    f"{json_file}: {where}: a polygon reaches more than a frame size outside the "
                    f"{width}x{height} (WxH) frame: {p!r}"
                )
            # Fewer than 3 points encloses no area; detectron2's load_coco_json drops these too.
            if len(p) >= 6:
                polys.append([float(x) for x in p])
        return polys if polys else None
    raise YTVISFormatError(
        f"{json_file}: {where}: segmentation must be polygons, an RLE dict or null, "
        f"got {type(segm).__name__}"
    )


def _is_finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_bbox(bbox, height, width, where, json_file) -> List[float]:
    """A json frame box [x, y, w, h] as floats; errors for anything that is not a box of the
    frame. A negative size is refused, not repaired: it means the writer mixed up box formats,
    and the boxes of that file with positive sizes are then wrong too."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise YTVISFormatError(f"{json_file}: {where}: bbox must be [x, y, w, h], got {bbox!r}")
    if not all(_is_finite_number(v) for v in bbox):
        raise YTVISFormatError(
            f"{json_file}: {where}: bbox must hold 4 finite numbers, got {bbox!r}"
        )
    x, y, bw, bh = (float(v) for v in bbox)
    if bw < 0 or bh < 0:
        raise YTVISFormatError(
            f"{json_file}: {where}: bbox {bbox!r} has a negative width or height "
            "(boxes are [x, y, w, h])"
        )
    if bw > 0 and bh > 0 and (x >= width or y >= height or x + bw <= 0 or y + bh <= 0):
        raise YTVISFormatError(
            f"{json_file}: {where}: bbox {bbox!r} lies outside the {width}x{height} (WxH) frame"
        )
    return [x, y, bw, bh]


def _bbox_from_segmentation(segm, height, width):
    if isinstance(segm, dict):
        rle = segm
    else:
        rle = mask_util.merge(mask_util.frPyObjects(segm, height, width))
    return [float(x) for x in mask_util.toBbox(rle)]


def _set_metadata(dataset_name, values, json_file):
    """Set metadata; categories conflicting with the registered ones are a clear error
    (detectron2 would raise a bare AssertionError). ``has_gt`` follows the json, with a warning
    when it was registered otherwise: a split without annotations is still good for inference."""
    meta = MetadataCatalog.get(dataset_name)
    old_has_gt = meta.get("has_gt")
    if old_has_gt is not None and old_has_gt != values["has_gt"]:
        logger.warning(
            f"{json_file}: dataset '{dataset_name}' was registered with has_gt={old_has_gt}, but "
            f"the json has {'annotations' if values['has_gt'] else 'no annotations'}; "
            f"using has_gt={values['has_gt']}"
            + ("" if values["has_gt"] else " (inference only: not scored, cannot train on it)")
        )
        # detectron2's Metadata refuses to overwrite an attribute.
        delattr(meta, "has_gt")
    for key in ("thing_classes", "thing_dataset_id_to_contiguous_id"):
        old = meta.get(key)
        if old is not None and old != values[key]:
            raise YTVISFormatError(
                f"{json_file}: '{key}' from this json ({values[key]}) differs from the metadata "
                f"registered for dataset '{dataset_name}' ({old}). Register the json under another "
                f"name with vis_d2.data.register_ytvis_instances."
            )
    for key, val in values.items():
        if meta.get(key) is None:
            setattr(meta, key, val)


def load_ytvis_json(json_file, image_root, dataset_name: Optional[str] = None) -> List[dict]:
    """
    Load a YouTube-VIS format json (YouTube-VIS 2019/2021/2022, OVIS, synthvis).

    Args:
        json_file (str): path of the json (any PathManager path).
        image_root (str or path-like): directory the json's ``file_names`` are relative to.
        dataset_name (str or None): if given, sets the dataset's metadata: ``thing_classes``
            (contiguous order = sorted by json category id), ``thing_dataset_id_to_contiguous_id``,
            ``json_file``, ``image_root``, ``evaluator_type="ytvis"``, ``has_gt``.

    Returns:
        list[dict]: one video record per video, in json order::

            {"video_id", "file_names": [str] * length, "height", "width", "length",
             "annotations": [[{"track_id", "category_id" (contiguous), "iscrowd", "bbox",
                               "bbox_mode": BoxMode.XYWH_ABS, "segmentation"?}, ...]] * length,
             "has_gt": bool, "json_file": str}

        A frame's bbox that is null in the json, or has zero width or height, while its mask is
        not null is computed from the mask. An instance is left out of the frames where both
        its mask and bbox are null, or its box is empty and its mask has no pixel (with a
        warning giving the count). Masks are polygons or compressed RLE with str counts. Splits
        without annotations (valid/test of the benchmarks: key absent, null or an empty list)
        give empty per-frame lists and ``has_gt=False``; with ``dataset_name``, the metadata's
        ``has_gt`` follows the json (a warning when it was registered otherwise).

    Raises:
        YTVISFormatError: on any format violation, naming the file, the video, the annotation
            and the frame: ids that are not integers, RLE run lengths that do not cover the
            frame (:func:`vis_d2.rle.rle_problem`), boxes with a negative size, non-finite
            numbers or outside the frame, ...
    """
    json_file = os.fspath(json_file)
    image_root = os.fspath(image_root)
    timer = Timer()
    with PathManager.open(json_file, "r") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise YTVISFormatError(f"{json_file}: not valid json: {e}") from e
    if timer.seconds() > 1:
        logger.info("Loading {} takes {:.2f} seconds.".format(json_file, timer.seconds()))
    timer.reset()

    if not isinstance(data, dict):
        raise YTVISFormatError(
            f"{json_file}: the top level must be a dict, got {type(data).__name__}"
        )
    cat_meta = _parse_categories(data, json_file)
    id_map = cat_meta["thing_dataset_id_to_contiguous_id"]
    if "videos" not in data:
        raise YTVISFormatError(f"{json_file}: the json has no 'videos' key")
    if not isinstance(data["videos"], list):
        raise YTVISFormatError(f"{json_file}: 'videos' must be a list")

    records: Dict[Any, dict] = {}
    for i, video in enumerate(data["videos"]):
        rec = _parse_video(video, i, image_root, json_file)
        if rec["video_id"] in records:
            raise YTVISFormatError(f"{json_file}: video id {rec['video_id']} appears twice")
        records[rec["video_id"]] = rec

    annotations = data.get("annotations")
    if annotations is not None and not isinstance(annotations, list):
        raise YTVISFormatError(f"{json_file}: 'annotations' must be a list or null")
    # An empty list is treated like a missing one: there is nothing to score against, and
    # ground-truth-free benchmark jsons are written either way.
    has_gt = bool(annotations)
    num_instances = num_dropped_polygons = num_empty = num_boxes_from_masks = 0
    seen_ids = set()
    for i, anno in enumerate(annotations or []):
        where = f"annotations[{i}]"
        if isinstance(anno, dict) and "id" in anno:
            where += f" (annotation {anno['id']})"
        _require(anno, _ANNOTATION_KEYS, where, json_file)
        for key in ("id", "video_id", "category_id"):
            _require_int(anno[key], key, where, json_file)
        aid, vid, cid = anno["id"], anno["video_id"], anno["category_id"]
        if aid in seen_ids:
            raise YTVISFormatError(f"{json_file}: annotation id {aid} appears twice")
        seen_ids.add(aid)
        if vid not in records:
            raise YTVISFormatError(f"{json_file}: annotation {aid}: unknown video_id {vid}")
        if cid not in id_map:
            raise YTVISFormatError(
                f"{json_file}: annotation {aid} (video {vid}): unknown category_id {cid} "
                f"(categories: {sorted(id_map)})"
            )
        rec = records[vid]
        h, w, length = rec["height"], rec["width"], rec["length"]
        segs = anno["segmentations"]
        if not isinstance(segs, list) or len(segs) != length:
            got = len(segs) if isinstance(segs, list) else type(segs).__name__
            raise YTVISFormatError(
                f"{json_file}: annotation {aid} (video {vid}): 'segmentations' has {got} entries, "
                f"the video has length {length}"
            )
        bboxes = anno.get("bboxes")
        if bboxes is None:
            bboxes = [None] * length
        elif not isinstance(bboxes, list) or len(bboxes) != length:
            got = len(bboxes) if isinstance(bboxes, list) else type(bboxes).__name__
            raise YTVISFormatError(
                f"{json_file}: annotation {aid} (video {vid}): 'bboxes' has {got} entries, "
                f"the video has length {length}"
            )
        iscrowd = anno.get("iscrowd", 0)
        if iscrowd is None:
            iscrowd = 0
        if iscrowd not in (0, 1):
            raise YTVISFormatError(
                f"{json_file}: annotation {aid} (video {vid}): 'iscrowd' must be 0 or 1, "
                f"got {iscrowd!r}"
            )
        iscrowd = int(iscrowd)
        contiguous_id = id_map[cid]
        # The run lengths of the track's RLE masks, checked in one pass (one call per mask
        # would cost seconds on a YouTube-VIS-sized json).
        rle_frames = [t for t, sg in enumerate(segs) if isinstance(sg, dict) and "counts" in sg]
        problems = dict(zip(rle_frames, rle_problems([segs[t]["counts"] for t in rle_frames],
                                                     h, w)))
        for t in range(length):
            frame_where = f"annotation {aid} (video {vid}) frame {t}"
            segm = _convert_segmentation(segs[t], h, w, frame_where, json_file, problems.get(t))
            if segm is None and segs[t] is not None:
                num_dropped_polygons += 1
            bbox = bboxes[t]
            if segm is None and bbox is None:
                continue  # the instance is not in this frame
            if bbox is not None:
                bbox = _check_bbox(bbox, h, w, frame_where, json_file)
            if segm is not None and (bbox is None or bbox[2] == 0 or bbox[3] == 0):
                from_json = bbox is not None
                bbox = _bbox_from_segmentation(segm, h, w)
                num_boxes_from_masks += from_json and bbox[2] > 0 and bbox[3] > 0
            if bbox[2] == 0 or bbox[3] == 0:
                # Nothing of the instance is in this frame (detectron2 would drop it after the
                # transforms, leaving a key frame that seemed annotated without its instance).
                num_empty += 1
                continue
            obj = {
                "track_id": aid,
                "category_id": contiguous_id,
                "iscrowd": iscrowd,
                "bbox": bbox,
                "bbox_mode": BoxMode.XYWH_ABS,
            }
            if segm is not None:
                obj["segmentation"] = segm
            rec["annotations"][t].append(obj)
        num_instances += 1

    out = list(records.values())
    for rec in out:
        rec["has_gt"] = has_gt
    if num_dropped_polygons:
        logger.warning(
            f"{json_file}: {num_dropped_polygons} frame masks had only degenerate polygons "
            "(< 3 points) and were dropped."
        )
    if num_boxes_from_masks:
        logger.warning(
            f"{json_file}: {num_boxes_from_masks} frame boxes had zero width or height; they were "
            "replaced by the box of their frame's mask."
        )
    if num_empty:
        logger.warning(
            f"{json_file}: {num_empty} frame annotations had an empty box and no mask pixel; "
            "they were left out of their frames."
        )
    logger.info(
        "Loaded {} videos ({} frames, {}) in YouTube-VIS format from {} in {:.2f} s".format(
            len(out),
            sum(r["length"] for r in out),
            f"{num_instances} instances" if has_gt else "no ground truth",
            json_file,
            timer.seconds(),
        )
    )

    if dataset_name is not None:
        values = dict(cat_meta, json_file=json_file, image_root=image_root, has_gt=has_gt)
        _set_metadata(dataset_name, dict(values, evaluator_type="ytvis"), json_file)
    return out


def register_ytvis_instances(name: str, metadata: dict, json_file, image_root) -> None:
    """
    Register a YouTube-VIS format dataset (lazily: the json is read on ``DatasetCatalog.get``).

    Args:
        name: dataset name, e.g. "my_videos_train".
        metadata: extra metadata (e.g. ``thing_classes``, ``thing_dataset_id_to_contiguous_id``,
            ``has_gt``); may be empty, the loader fills in what the json tells.
        json_file, image_root: as in :func:`load_ytvis_json`.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"dataset name must be a non-empty str, got {name!r}")
    for arg in (json_file, image_root):
        if not isinstance(arg, (str, os.PathLike)):
            raise TypeError(f"json_file and image_root must be paths, got {arg!r}")
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    DatasetCatalog.register(name, lambda: load_ytvis_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        **{"evaluator_type": "ytvis", **metadata, "json_file": json_file, "image_root": image_root}
    )


def register_pseudo_labels(name: str, json_file, image_root, metadata: Optional[dict] = None
                           ) -> None:
    """
    Register a pseudo-label json (box-only, written by ``python -m vis_d2.pseudo_labels``) as a
    training set whose instances train no mask: ``weak_segmentation=True``, so mixing marks each
    annotation ``"mask_valid": False`` (:mod:`vis_d2.data.mixing`) and no mask, TCIS or semantic
    loss comes from them (paper Sec. 3.5.3: "pseudo-label (only detection)").

    Args:
        name: dataset name, e.g. "ytvis_2021_val_pseudo".
        json_file: the pseudo-label json.
        image_root: the image root of the split it labels (its ``file_names`` are that split's).
        metadata: extra metadata, e.g. ``taxonomy`` (the labelled split's, so the class maps of
            mixing apply); ``weak_segmentation`` and ``pseudo_labels`` are always True.
    """
    register_ytvis_instances(name, dict(metadata or {}, weak_segmentation=True,
                                        pseudo_labels=True), json_file, image_root)
