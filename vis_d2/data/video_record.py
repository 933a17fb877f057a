"""The video record, the dict :func:`vis_d2.data.load_ytvis_json` gives per video::

    {"video_id", "file_names": [str] * length, "height", "width", "length",
     "annotations": [[instance dict, ...]] * length, "has_gt", "json_file"}

Here: its name in error messages, the check of its per-frame lists, and its annotated frames.
"""
from typing import List

__all__ = ["video_name", "check_video_record", "annotated_frame_indices"]


def video_name(record: dict) -> str:
    """``"video <id> (<json_file>)"``, used in every error message about a record."""
    json_file = record.get("json_file")
    where = f" ({json_file})" if json_file else ""
    return f"video {record.get('video_id')}{where}"


def check_video_record(record: dict, need_annotations: bool = True) -> int:
    """
    Check that the per-frame lists of a video record agree and return its length.

    Raises:
        ValueError naming the video when "file_names" is missing, "length" disagrees with
        ``len(file_names)``, or (``need_annotations``) ``len(annotations) != length``.
    """
    if "file_names" not in record:
        raise ValueError(f"{video_name(record)}: record has no 'file_names' (not a video record)")
    length = len(record["file_names"])
    if "length" in record and int(record["length"]) != length:
        raise ValueError(
            f"{video_name(record)}: 'length'={record['length']} but it has {length} file_names"
        )
    if need_annotations and len(record.get("annotations", ())) != length:
        raise ValueError(
            f"{video_name(record)}: has {len(record.get('annotations', ()))} per-frame "
            f"annotation lists for {length} frames"
        )
    return length


def annotated_frame_indices(record: dict) -> List[int]:
    """Indices of the frames of a video record with at least one non-crowd instance."""
    return [
        i
        for i, annos in enumerate(record.get("annotations", ()))
        if any(a.get("iscrowd", 0) == 0 for a in annos)
    ]
