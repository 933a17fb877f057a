"""Multi-source training data (paper Sec. 3.2): the classes of every training source expressed in
the classes of the first one, the video set.

The first training set's ``thing_classes`` are the model's C classes. Every later source (COCO,
OpenImages, a second video set, ...) has its category ids rewritten, annotation by annotation:

* a class that a :class:`~vis_d2.data.categories.ClassMap` names (or, opted in, a class of the
  same name) gets the video set's contiguous id, in [0, C);
* any other class is *auxiliary*: with K = ``MODEL.VIS.MSD.NUM_AUX_CLASSES`` > 0 it gets
  ``category_id = C`` and ``"aux": True`` (the model relabels it among its K auxiliary outputs,
  Algorithm 1); with K = 0 it is dropped (it stays in the pixels as background);
* a source whose metadata says ``weak_segmentation=True`` (OpenImages by default: "no or noisy"
  masks) keeps boxes and classes, and every annotation carries ``"mask_valid": False``: the pair
  mappers give it no mask target.

Which map: the taxonomies named by the two datasets' metadata (``taxonomy``, set by
``builtin.py``), :func:`~vis_d2.data.categories.get_class_map`. A source with exactly the video
set's ``thing_classes`` needs none. Matching classes by exact name is an explicit opt-in for a
user's own dataset: ``MetadataCatalog.get(name).match_classes_by_name = True``.
"""
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.data import MetadataCatalog

from .categories import AUX, get_class_map

__all__ = [
    "SourceStats",
    "check_video_set_classes",
    "source_class_mapping",
    "mix_source",
]

logger = logging.getLogger(__name__)


@dataclass
class SourceStats:
    """What mixing did to one training source. Instances are non-crowd annotations, counted per
    frame for videos.

    Attributes:
        name: the dataset.
        kind: "videos" or "images".
        how: how its classes were mapped ("the video set's classes", "class map ytvis_2021 <-
            coco", "by name").
        records, kept: records before mixing, and those kept (with a non-crowd instance left).
        mapped, auxiliary, dropped: instances of a mapped class, auxiliary instances kept (K > 0),
            auxiliary instances dropped (K = 0).
        without_mask: kept instances that train no mask (weak segmentation or no mask).
        weak_segmentation: the source's masks are not used.
        auxiliary_classes: {source class name: instances} of the auxiliary classes met.
    """

    name: str
    kind: str
    how: str
    records: int = 0
    kept: int = 0
    mapped: int = 0
    auxiliary: int = 0
    dropped: int = 0
    without_mask: int = 0
    weak_segmentation: bool = False
    auxiliary_classes: Dict[str, int] = field(default_factory=dict)

    def summary(self, num_aux_classes: int) -> str:
        """One log line: records kept, instances mapped / auxiliary / dropped, masks."""
        instances = self.mapped + self.auxiliary + self.dropped
        unit = "instances (per frame)" if self.kind == "videos" else "instances"
        aux = (f"{self.auxiliary} auxiliary (category id C, K={num_aux_classes})"
               if num_aux_classes > 0 else "0 auxiliary")
        dropped = f"{self.dropped} dropped"
        if self.dropped:
            dropped += " (auxiliary classes with MODEL.VIS.MSD.NUM_AUX_CLASSES 0)"
        masks = ("weak segmentation: no instance trains a mask" if self.weak_segmentation
                 else f"{self.without_mask} of the kept instances have no mask")
        top = sorted(self.auxiliary_classes.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
        classes = (f"; auxiliary classes met: {len(self.auxiliary_classes)}, most frequent "
                   + ", ".join(f"{c} ({n})" for c, n in top)) if top else ""
        return (f"Training source '{self.name}' ({self.how}): kept {self.kept} of {self.records} "
                f"{self.kind}; {instances} {unit}: {self.mapped} mapped, {aux}, {dropped}; "
                f"{masks}{classes}")


def _annotation_lists(record: dict, is_video: bool) -> List[list]:
    """The annotation lists of a record: one per frame of a video, the one list of an image."""
    return list(record.get("annotations", ())) if is_video else [record.get("annotations", [])]


def _where(record: dict, is_video: bool, frame: int, anno: dict) -> str:
    """Names an annotation in messages: the video and frame (or the image) and its id."""
    if is_video:
        return (f"video {record.get('video_id')} frame {frame}, annotation (track "
                f"{anno.get('track_id')})")
    return (f"image {record.get('image_id')} ('{record.get('file_name')}'), annotation "
            f"{anno.get('id', '')}")


def check_video_set_classes(name: str, dicts: Sequence[dict], is_video: bool,
                            num_classes: int) -> None:
    """
    The first training set defines the C classes, so each of its annotations must have a
    ``category_id`` in [0, C) and no ``"aux"`` flag: an auxiliary id there would train the
    auxiliary outputs with objects the model must name.

    Raises:
        ValueError naming the dataset, the video and frame (or image) and the annotation.
    """
    for d in dicts:
        for t, annos in enumerate(_annotation_lists(d, is_video)):
            for a in annos:
                c = a.get("category_id")
                if a.get("aux", False):
                    raise ValueError(
                        f"training set '{name}', {_where(d, is_video, t, a)}: marked auxiliary "
                        "(\"aux\": True), but the first training set defines the model's classes "
                        "and has no auxiliary objects; put the source with auxiliary classes "
                        "after it in DATASETS.TRAIN")
                if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < num_classes:
                    raise ValueError(
                        f"training set '{name}', {_where(d, is_video, t, a)}: category_id {c!r} "
                        f"is not one of its {num_classes} classes (0..{num_classes - 1}); an "
                        "auxiliary class id belongs to later training sources only")


def source_class_mapping(name: str, target_name: str, target_classes: Sequence[str]
                         ) -> Tuple[Optional[Dict[int, int]], str]:
    """
    How the classes of training source ``name`` become those of the video set ``target_name``.

    Returns:
        ``(mapping, how)``: ``mapping`` is None when the source has the video set's classes,
        else ``{source contiguous id: target contiguous id}`` (unlisted source classes are
        auxiliary); ``how`` says which rule gave it.

    Raises:
        ValueError naming both datasets: the source has no ``thing_classes``; its category list
        misses a class the map names (listing the closest names); no map links the two
        taxonomies and the source did not opt in to matching by name; matched by name, the two
        share no class.
    """
    meta = MetadataCatalog.get(name)
    classes = meta.get("thing_classes", None)
    if classes is None:
        raise ValueError(f"training set '{name}' has no 'thing_classes' in its metadata, so its "
                         f"categories cannot be matched to those of '{target_name}'")
    if list(classes) == list(target_classes):
        return None, "the video set's classes"
    target_taxonomy = MetadataCatalog.get(target_name).get("taxonomy", None)
    taxonomy = meta.get("taxonomy", None)
    class_map = get_class_map(target_taxonomy, taxonomy)
    if class_map is not None:
        id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
        if id_map is None:
            raise ValueError(f"training set '{name}' has no 'thing_dataset_id_to_contiguous_id' "
                             f"in its metadata: its category ids cannot be checked against the "
                             f"class map {target_taxonomy} <- {taxonomy}")
        class_map.check_target(target_classes, target_name)
        where = meta.get("json_file", None) or meta.get("class_descriptions_csv", None) or ""
        class_map.check_source(classes, id_map, name, where)
        return (class_map.contiguous(target_classes, id_map),
                f"class map {target_taxonomy} <- {taxonomy}")
    if meta.get("match_classes_by_name", False):
        index = {c: i for i, c in enumerate(target_classes)}
        mapping = {i: index[c] for i, c in enumerate(classes) if c in index}
        if not mapping:
            raise ValueError(f"training sets '{name}' and '{target_name}' share no category "
                             f"({list(classes)} vs {list(target_classes)})")
        return mapping, "classes matched by name (match_classes_by_name)"
    raise ValueError(
        f"training set '{name}' (taxonomy {taxonomy!r}) has other classes than the first "
        f"training set '{target_name}' (taxonomy {target_taxonomy!r}) and no class map links "
        "the two: register one with vis_d2.data.categories.register_class_map, or opt in to "
        f"matching classes by exact name with MetadataCatalog.get('{name}').set("
        "match_classes_by_name=True)")


def mix_source(name: str, dicts: Sequence[dict], is_video: bool,
               mapping: Optional[Dict[int, int]], num_classes: int, num_aux_classes: int,
               weak_segmentation: bool, how: str) -> Tuple[List[dict], SourceStats]:
    """
    Copies of the records of source ``name`` in the video set's classes (the catalog's dicts
    are not modified), and what happened to them.

    Args:
        dicts: the source's records (video records or COCO-format image dicts).
        mapping: from :func:`source_class_mapping`; None keeps the ids (the video set itself).
        num_classes: C, the video set's class count (the auxiliary id).
        num_aux_classes: K; 0 drops the auxiliary instances.
        weak_segmentation: mark every annotation ``"mask_valid": False``.
        how: for the stats.

    Returns:
        (records with at least one non-crowd instance left, :class:`SourceStats`).

    Raises:
        ValueError naming the dataset and annotation when a ``category_id`` is not an index into
        the source's ``thing_classes``.
    """
    classes = MetadataCatalog.get(name).get("thing_classes", None) or []
    stats = SourceStats(name, "videos" if is_video else "images", how, records=len(dicts),
                        weak_segmentation=bool(weak_segmentation))
    out = []
    for d in dicts:
        lists, has_instance = [], False
        for t, annos in enumerate(_annotation_lists(d, is_video)):
            kept = []
            for a in annos:
                crowd = a.get("iscrowd", 0) != 0
                c = a.get("category_id")
                if classes and (isinstance(c, bool) or not isinstance(c, int)
                                or not 0 <= c < len(classes)):
                    raise ValueError(
                        f"training set '{name}', {_where(d, is_video, t, a)}: category_id "
                        f"{c!r} is not an index into its {len(classes)} thing_classes")
                target = c if mapping is None else mapping.get(c, AUX)
                if target == AUX:
                    if not crowd:
                        stats.auxiliary_classes[classes[c]] = (
                            stats.auxiliary_classes.get(classes[c], 0) + 1)
                    if num_aux_classes <= 0:
                        stats.dropped += not crowd
                        continue
                    a = dict(a, category_id=num_classes, aux=True)
                    stats.auxiliary += not crowd
                else:
                    if target != c:
                        a = dict(a, category_id=target)
                    stats.mapped += not crowd
                if weak_segmentation:
                    a = dict(a, mask_valid=False)
                if not crowd:
                    has_instance = True
                    stats.without_mask += ("segmentation" not in a
                                           or not a.get("mask_valid", True))
                kept.append(a)
            lists.append(kept)
        if has_instance:
            out.append(dict(d, annotations=lists if is_video else lists[0]))
    stats.kept = len(out)
    return out, stats
