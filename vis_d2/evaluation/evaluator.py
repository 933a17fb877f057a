"""``YTVISEvaluator``: detectron2's ``DatasetEvaluator`` for video instance segmentation.

It collects the tracker's per-video predictions, writes them in the YouTube-VIS results format
(``results.json``, and ``results.zip`` holding it, which is what the YouTube-VIS CodaLab server
takes), and scores them with :mod:`vis_d2.evaluation.ytvis_eval` when the split has ground truth.

Metrics are returned as fractions in [0, 1] (what the YouTube-VIS server reports), not in
percent like detectron2's ``COCOEvaluator``: ``{"segm": {"AP": 0.412, "AP50": ..., ...}}``.
"""
import io
import itertools
import json
import logging
import math
import numbers
import os
import zipfile
from collections import OrderedDict
from typing import Dict, List, Optional

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..file_io import atomic_write_bytes
from .ytvis_eval import YTVISEval, YTVISFormatError, YTVISGroundTruth, format_metrics_table

__all__ = ["YTVISEvaluator"]

logger = logging.getLogger(__name__)


class YTVISEvaluator(DatasetEvaluator):
    """Gathers video predictions across processes, writes ``results.json`` / ``results.zip``
    and computes the YouTube-VIS metrics (AP, AP50, AP75, APs, APm, APl, AR1, AR10).

    The dataset's metadata must hold ``thing_dataset_id_to_contiguous_id`` and, to be scored,
    ``has_gt`` (True) and ``json_file`` (the ground-truth json). A split without ground truth
    (``has_gt`` False, e.g. a YouTube-VIS valid/test split) is only written, for the server.
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None,
                 distributed: bool = True):
        """
        Args:
            dataset_name: a registered video dataset.
            output_dir: where ``results.json`` and ``results.zip`` go (None: nowhere).
            distributed: gather the predictions of every process to the main one, which
                writes and scores them (the others return ``{}``).
        """
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._metadata = MetadataCatalog.get(dataset_name)
        id_map = self._metadata.get("thing_dataset_id_to_contiguous_id", None)
        if not id_map:
            raise KeyError(f"dataset '{dataset_name}': its metadata has no "
                           f"'thing_dataset_id_to_contiguous_id'")
        self._contiguous_to_json: Dict[int, int] = {int(c): int(j) for j, c in id_map.items()}
        self._predictions: List[dict] = []

    def reset(self) -> None:
        self._predictions = []

    def process(self, inputs: List[dict], outputs: List[List[dict]]) -> None:
        """
        Args:
            inputs: video dicts, each with ``"video_id"`` (and ``"length"``, checked when
                present), e.g. the video records of the dataset.
            outputs: ``outputs[i]`` is the list of predictions for ``inputs[i]``:
                ``{"video_id", "category_id" (contiguous), "score",
                "segmentations": [RLE dict or None] * length}``.
        """
        if len(inputs) != len(outputs):
            raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
        for video, preds in zip(inputs, outputs):
            video_id = video["video_id"]
            length = video.get("length")
            for j, pred in enumerate(preds):
                self._predictions.append(self._to_result(pred, video_id, length, j))

    def _to_result(self, pred: dict, video_id: int, length: Optional[int], index: int) -> dict:
        """One prediction -> a JSON-ready result with the json category id (a new dict: the
        model's output is left as it is)."""
        where = f"dataset '{self._dataset_name}': video {video_id}, prediction #{index}"
        for key in ("category_id", "score", "segmentations"):
            if key not in pred:
                raise YTVISFormatError(f"{where}: missing field {key!r}")
        if pred.get("video_id", video_id) != video_id:
            raise YTVISFormatError(f"{where}: has video_id {pred['video_id']!r}")
        contiguous = pred["category_id"]
        if (not isinstance(contiguous, numbers.Integral)
                or int(contiguous) not in self._contiguous_to_json):
            raise YTVISFormatError(
                f"{where}: category_id {contiguous!r} is not a contiguous id of the dataset "
                f"(0..{len(self._contiguous_to_json) - 1})")
        score = pred["score"]
        if (not isinstance(score, numbers.Real) or isinstance(score, bool)
                or not math.isfinite(float(score))):
            raise YTVISFormatError(f"{where}: 'score' must be a finite number, got {score!r}")
        segs = pred["segmentations"]
        if length is not None and len(segs) != length:
            raise YTVISFormatError(
                f"{where}: 'segmentations' has {len(segs)} entries but the video has {length} "
                f"frames")
        out_segs = []
        for f, seg in enumerate(segs):
            if seg is None:
                out_segs.append(None)
                continue
            if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
                raise YTVISFormatError(f"{where} frame {f}: expected an RLE dict or None")
            counts = seg["counts"]
            if isinstance(counts, bytes):
                counts = counts.decode("ascii")
            out_segs.append({"size": [int(s) for s in seg["size"]], "counts": counts})
        return {
            "video_id": video_id,
            "category_id": self._contiguous_to_json[int(contiguous)],
            "score": float(score),
            "segmentations": out_segs,
        }

    def evaluate(self):
        """Returns ``OrderedDict(segm={metric: fraction})`` where the split has ground truth,
        else ``{}`` (also on every process but the main one)."""
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather(self._predictions, dst=0)
            if not comm.is_main_process():
                return {}
            predictions = list(itertools.chain(*gathered))
        else:
            predictions = self._predictions
        # The same video may reach several processes only by mistake; keep the file in a
        # stable order (by video, then best first) whatever the process count.
        predictions.sort(key=lambda p: (p["video_id"], -p["score"]))
        if not predictions:
            logger.warning(f"[YTVISEvaluator] no predictions on '{self._dataset_name}'")

        if self._output_dir:
            self._write(predictions)

        has_gt = self._metadata.get("has_gt", None)
        json_file = self._metadata.get("json_file", None)
        if has_gt is None:
            has_gt = json_file is not None
        if not has_gt:
            logger.info(
                f"[YTVISEvaluator] '{self._dataset_name}' has no ground truth: not scoring; "
                + (f"submit {os.path.join(self._output_dir, 'results.zip')} to the YouTube-VIS "
                   f"server." if self._output_dir else "no output_dir, nothing written."))
            return {}
        if not json_file:
            raise KeyError(f"dataset '{self._dataset_name}' has has_gt=True but no 'json_file' "
                           f"in its metadata")

        gt = YTVISGroundTruth.load(json_file)
        ytvis_eval = YTVISEval(gt, predictions,
                               source=f"predictions on '{self._dataset_name}'")
        metrics = ytvis_eval.evaluate()
        logger.info(f"YouTube-VIS segm metrics on '{self._dataset_name}' "
                    f"({len(gt.videos)} videos, {len(predictions)} predictions; fractions):\n"
                    + format_metrics_table(metrics))
        per_cat = ytvis_eval.per_category_ap()
        logger.info("Per-category segm AP:\n" + "\n".join(
            f"  {name:<24} {ap:.4f}" if ap >= 0 else f"  {name:<24} -"
            for name, ap in per_cat.items()))
        return OrderedDict(segm=metrics)

    def _write(self, predictions: List[dict]) -> None:
        """``results.json`` and ``results.zip`` (holding ``results.json``), each atomically."""
        data = json.dumps(predictions).encode("utf-8")
        json_path = os.path.join(self._output_dir, "results.json")
        zip_path = os.path.join(self._output_dir, "results.zip")
        atomic_write_bytes(json_path, data)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("results.json", data)
        atomic_write_bytes(zip_path, buf.getvalue())
        logger.info(f"[YTVISEvaluator] wrote {len(predictions)} predictions to {json_path} "
                    f"and {zip_path}")
