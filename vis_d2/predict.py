"""Track the objects of your own videos: an annotated video and a results json per input.

    python -m vis_d2.predict --config-file configs/synthvis/R18_demo.yaml \\
        --input clip.mp4 frames/ 'videos/*.mp4' --output out/ \\
        [--confidence-threshold 0.3] [--bitrack] [--scales 0.7 1.0 1.3] [--fps 6] \\
        MODEL.WEIGHTS output/demo/model_final.pth

Installed, it is also the command ``vis-d2-predict``. ``--input`` takes video files, folders of
frames (their images in natural order) and globs, expanded in natural order; the trailing
``KEY VALUE`` pairs override the config as in ``train_net.py``. Weights load as :class:`VISPredictor` loads
them (strictly, ``MODEL.VIS.CHECKPOINT.*``).

For input number ``i`` (from 1, the ``video_id``) named ``<name>`` (the file name without its
extension, or the folder's name), ``--output`` receives, each written atomically:

* ``<name>.json``: its tracks in the YouTube-VIS results format, ``[{"video_id",
  "category_id" (the dataset's id), "category_name", "score", "segmentations": [RLE or null
  per frame]}]``, the tracks scoring at least ``--confidence-threshold`` (default
  ``TEST.VIS.PREDICT_SCORE_THRESH``; 0 keeps every track, as AP needs);
* ``<name>.mp4``: every frame with the tracks' masks, boxes and one label per object, H.264
  through PyAV (``pip install 'vis_d2[video]'``; without it OpenCV's mp4v, with a warning),
  at the video's frame rate (``--fps`` for folders, default 6: YouTube-VIS folders hold every
  5th frame of 30 fps videos).

Memory stays flat in the video's length: the model pass decodes one frame at a time and keeps
only the tracker's per-frame records, in a temporary file, and the video is drawn in a second
decoding pass. Not so
with ``--bitrack`` on long videos: BiTrack's merge compares every forward track with every
backward one frame by frame, so its time and memory grow faster than the video
(docs/BENCHMARKS.md, "Predicting long videos").
"""
import argparse
import glob
import io
import json
import logging
import os
import re
from typing import List, Tuple

from tqdm import tqdm

# vis_d2's packages first: they register the components and import detectron2 quietly.
from . import data, modeling  # noqa: F401  # isort: skip
from detectron2.utils.logger import setup_logger  # noqa: E402

from .config import get_vis_cfg
from .data.frames import VideoFrames, natural_key
from .engine.frame_fusion import check_scales
from .engine.predictor import VISPredictor
from .file_io import atomic_open
from .visualization import render_video

__all__ = ["main", "expand_inputs", "open_inputs", "predict_video"]

logger = logging.getLogger("vis_d2.predict")

_CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+")

# Frames per second of the annotated video of a folder of frames, unless --fps says otherwise.
FOLDER_FPS = 6.0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m vis_d2.predict", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    ap.add_argument("--input", required=True, nargs="+", metavar="VIDEO",
                    help="video files, folders of frames, or globs of them")
    ap.add_argument("--output", required=True, metavar="DIR", help="folder for the outputs")
    ap.add_argument("--confidence-threshold", type=float, metavar="T",
                    help="keep tracks scoring at least T (TEST.VIS.PREDICT_SCORE_THRESH)")
    ap.add_argument("--bitrack", action="store_true",
                    help="BiTrack: merge a forward and a backward tracking pass "
                         "(MODEL.VIS.TRACKER.BITRACK True)")
    ap.add_argument("--scales", type=float, nargs="+", metavar="S",
                    help="multi-scale testing: factors of the test size, e.g. 0.7 1.0 1.3 "
                         "(TEST.VIS.SCALES; needs pip install 'vis_d2[ensemble]')")
    ap.add_argument("--fps", type=float, metavar="F",
                    help=f"frame rate of the annotated videos (default: the video's; "
                         f"{FOLDER_FPS:g} for folders)")
    ap.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                    help="config overrides, e.g. MODEL.WEIGHTS path/to/model_final.pth")
    return ap


def split_config_overrides(inputs: List[str], opts: List[str]) -> Tuple[List[str], List[str]]:
    """``--input a.mp4 MODEL.WEIGHTS w``: argparse gives the overrides to ``--input``; they
    start at its first item that is a config key (``UPPER.CASE``) and no existing path."""
    for i, item in enumerate(inputs):
        if _CONFIG_KEY.fullmatch(item) and not os.path.exists(item):
            return inputs[:i], inputs[i:] + opts
    return inputs, opts


def expand_inputs(patterns: List[str]) -> List[str]:
    """Each of ``patterns`` as itself where it exists, else its glob matches in natural order.

    Raises:
        FileNotFoundError: naming a pattern that matches no file or folder.
        ValueError: naming two inputs whose outputs would have the same name.
    """
    paths = []
    for pattern in patterns:
        matches = [pattern] if os.path.exists(pattern) else \
            sorted(glob.glob(pattern), key=natural_key)
        if not matches:
            raise FileNotFoundError(f"--input '{pattern}' matches no video file or folder")
        paths.extend(m for m in matches if m not in paths)
    seen = {}
    for p in paths:
        name = VideoFrames.name_of(p)
        if name in seen:
            raise ValueError(f"--input '{seen[name]}' and '{p}' would both write {name}.mp4 and "
                             f"{name}.json; give them in separate runs or rename one")
        seen[name] = p
    return paths


def open_inputs(ap: argparse.ArgumentParser, inputs: List[str]) -> List[VideoFrames]:
    """The videos of ``--input`` (video files, frame folders, globs), each read lazily; an
    argparse error naming the input where there is none or one cannot be opened."""
    if not inputs:
        ap.error("--input names no video (the arguments after it are config overrides)")
    try:
        return [VideoFrames(p) for p in expand_inputs(inputs)]
    except (FileNotFoundError, ValueError) as e:
        ap.error(str(e))


def predict_video(predictor: VISPredictor, frames: VideoFrames, video_id: int, output_dir: str,
                  fps: float = None) -> Tuple[str, str, int]:
    """Track ``frames`` (model pass), write ``<name>.json``, then draw and write
    ``<name>.mp4`` (second decoding pass). Returns the two paths and the number of tracks."""
    bar = dict(total=frames.num_frames, unit="frame", dynamic_ncols=True, leave=False)
    preds = predictor(tqdm(frames, desc=f"{frames.name}: tracking", **bar), video_id)
    json_path = os.path.join(output_dir, frames.name + ".json")
    with atomic_open(json_path) as f:
        text = io.TextIOWrapper(f, encoding="utf-8")
        json.dump(preds, text)  # streamed: no string of the whole file in memory
        text.flush()
        text.detach()  # atomic_open closes the file itself
    video_path = os.path.join(output_dir, frames.name + ".mp4")
    render_video(tqdm(frames, desc=f"{frames.name}: drawing", **bar), preds, video_path,
                 fps=fps or frames.fps or FOLDER_FPS)
    return video_path, json_path, len(preds)


def main(argv=None) -> List[Tuple[str, str, int]]:
    """The command line; returns (video, json, number of tracks) per input."""
    ap = build_parser()
    args = ap.parse_args(argv)
    args.input, args.opts = split_config_overrides(args.input, args.opts)
    setup_logger(name="vis_d2", abbrev_name="vis_d2")
    videos = open_inputs(ap, args.input)
    if len(args.opts) % 2:
        ap.error(f"config overrides come in KEY VALUE pairs, got {args.opts}")
    cfg = get_vis_cfg(args.config_file, args.opts)
    if args.confidence_threshold is not None:
        cfg.TEST.VIS.PREDICT_SCORE_THRESH = args.confidence_threshold
    if args.bitrack:
        cfg.MODEL.VIS.TRACKER.BITRACK = True
    if args.scales:
        try:
            cfg.TEST.VIS.SCALES = check_scales(args.scales, "--scales")
        except ValueError as e:
            ap.error(str(e))
    if not cfg.MODEL.WEIGHTS:
        if "MODEL.WEIGHTS" not in args.opts[::2]:
            ap.error(f"{args.config_file} gives no MODEL.WEIGHTS: add MODEL.WEIGHTS "
                     "path/to/model_final.pth (MODEL.WEIGHTS '' predicts with random weights)")
        logger.warning("MODEL.WEIGHTS is '': predicting with a randomly initialised model")
    cfg.freeze()
    predictor = VISPredictor(cfg)
    done = []
    for video_id, frames in enumerate(videos, 1):
        video_path, json_path, n = predict_video(predictor, frames, video_id, args.output,
                                                 args.fps)
        logger.info(f"{frames.source}: {n} tracks scoring >= {predictor.score_thresh:g} -> "
                    f"{video_path}, {json_path}")
        done.append((video_path, json_path, n))
    return done


if __name__ == "__main__":
    main()
