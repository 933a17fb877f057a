"""Bad inputs to VISPredictor (notebook inference) and to ``python -m vis_d2.predict``: each
refused naming the frame, file, input or key, or read as the user meant."""
import os
import pathlib

import cv2
import numpy as np
import pytest
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog

from vis_d2 import predict
from vis_d2.config import get_vis_cfg
from vis_d2.data.frames import VideoFrames
from vis_d2.engine import VISPredictor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["MODEL.DEVICE", "cpu", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
        "MODEL.ROI_MASK_HEAD.CONV_DIM", "32", "MODEL.VIS.TRACK_HEAD.FC_DIM", "32",
        "MODEL.VIS.TRACK_HEAD.EMBED_DIM", "32", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "96", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
        "MODEL.VIS.TRACKER.SCORE_THRESH", "0.0", "TEST.VIS.PREDICT_SCORE_THRESH", "0.0"]


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return VISPredictor(get_vis_cfg(os.path.join(REPO, "configs/synthvis/R18_demo.yaml"), TINY))


def _frame(value=0, h=72, w=96):
    return np.full((h, w, 3), value, dtype=np.uint8)


# (row id, the video given to the predictor, exception type, message fragment)
REFUSED = [
    ("frames-of-two-sizes", lambda d: [_frame(), _frame(h=40)], ValueError,
     "frame 1 is (40, 96), frame 0 is (72, 96): frames of one video must share a size"),
    ("float-frames-in-0-1", lambda d: [_frame().astype(np.float32) / 255] * 2, ValueError,
     "frame 0: expected a uint8 frame (0-255), got dtype float32"),
    ("frame-as-a-list", lambda d: [_frame().tolist()], TypeError,
     "frame 0: expected a frame as a numpy array, got list"),
    ("grey-frame", lambda d: [_frame(), _frame()[:, :, 0]], ValueError,
     "frame 1: expected an (H, W, 3) BGR frame, got shape (72, 96)"),
    ("no-frames", lambda d: [], ValueError, "the video has no frames"),
    ("missing-video-file", lambda d: str(d / "nope.mp4"), FileNotFoundError, "nope.mp4"),
]


@pytest.mark.parametrize("make_video, error, fragment", [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_bad_video_is_refused_by_name(predictor, tmp_path, make_video, error, fragment):
    with pytest.raises(error) as exc:
        predictor(make_video(tmp_path))
    assert fragment in str(exc.value)


def test_frames_1_to_11_are_read_in_natural_order_from_a_path(predictor, tmp_path):
    for i in range(1, 12):  # 1.jpg ... 11.jpg: a plain sort reads 1, 10, 11, 2, ...
        cv2.imwrite(str(tmp_path / f"{i}.png"), _frame(value=10 * i))
    frames = list(VideoFrames(tmp_path))
    assert [int(f[0, 0, 0]) for f in frames] == [10 * i for i in range(1, 12)]
    # a pathlib.Path is read as its str
    assert predictor(pathlib.Path(tmp_path)) == predictor(str(tmp_path))


def _register(name, **metadata):
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(**metadata)


# (row id, config overrides, exception type, message fragment); the dataset "badpred_*" names
# are registered by the test
REFUSED_CONFIGS = [
    ("threshold-negative", ["TEST.VIS.PREDICT_SCORE_THRESH", "-0.1"], ValueError,
     "TEST.VIS.PREDICT_SCORE_THRESH must be a number >= 0, got -0.1"),
    ("dataset-of-other-classes", ["DATASETS.TEST", "('badpred_two',)"], ValueError,
     "dataset 'badpred_two' has 2 categories but the model (MODEL.ROI_HEADS.NUM_CLASSES) has 4"),
    ("id-map-not-onto-classes", ["DATASETS.TEST", "('badpred_gap',)"], ValueError,
     "dataset 'badpred_gap': thing_dataset_id_to_contiguous_id maps to [0, 1, 2, 5]"),
]


@pytest.mark.parametrize("opts, error, fragment", [r[1:] for r in REFUSED_CONFIGS],
                         ids=[r[0] for r in REFUSED_CONFIGS])
def test_bad_predictor_config_is_refused_by_name(opts, error, fragment):
    _register("badpred_two", thing_classes=["a", "b"])
    _register("badpred_gap", thing_classes=list("abcd"),
              thing_dataset_id_to_contiguous_id={1: 0, 2: 1, 3: 2, 4: 5})
    try:
        with pytest.raises(error) as exc:
            VISPredictor(get_vis_cfg(os.path.join(REPO, "configs/synthvis/R18_demo.yaml"),
                                     TINY + opts))
        assert fragment in str(exc.value)
    finally:
        for name in ("badpred_two", "badpred_gap"):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def _command_inputs(d):
    """Inputs the command-line rows refer to: a video, two videos of one name, an empty folder."""
    (d / "a").mkdir()
    (d / "b").mkdir()
    (d / "empty").mkdir()
    for folder in ("a", "b"):
        cv2.imwrite(str(d / folder / "0.png"), _frame())
        writer = cv2.VideoWriter(str(d / folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                                 5, (96, 72))
        writer.write(_frame())
        writer.release()
    (d / "broken.mp4").write_bytes(b"not a video")


# (row id, command-line arguments after --config-file (with {d}: the inputs' folder), message)
REFUSED_COMMANDS = [
    ("glob-matches-nothing", ["--input", "{d}/*.mkv", "--output", "{d}/out", "MODEL.WEIGHTS", ""],
     "--input '{d}/*.mkv' matches no video file or folder"),
    ("missing-video", ["--input", "{d}/nope.mp4", "--output", "{d}/out", "MODEL.WEIGHTS", ""],
     "--input '{d}/nope.mp4' matches no video file or folder"),
    ("two-inputs-one-name", ["--input", "{d}/*/clip.avi", "--output", "{d}/out"],
     "--input '{d}/a/clip.avi' and '{d}/b/clip.avi' would both write clip.mp4 and clip.json"),
    ("folder-without-frames", ["--input", "{d}/empty", "--output", "{d}/out"],
     "folder {d}/empty holds no frames"),
    ("not-a-video", ["--input", "{d}/broken.mp4", "--output", "{d}/out"],
     "video {d}/broken.mp4 has no readable frames"),
    ("no-weights", ["--input", "{d}/a/clip.avi", "--output", "{d}/out"],
     "gives no MODEL.WEIGHTS: add MODEL.WEIGHTS path/to/model_final.pth"),
    ("odd-overrides", ["--input", "{d}/a/clip.avi", "--output", "{d}/out", "MODEL.WEIGHTS"],
     "config overrides come in KEY VALUE pairs"),
    ("overrides-only", ["--input", "MODEL.WEIGHTS", "", "--output", "{d}/out"],
     "--input names no video"),
]


@pytest.mark.parametrize("args, fragment", [r[1:] for r in REFUSED_COMMANDS],
                         ids=[r[0] for r in REFUSED_COMMANDS])
def test_bad_command_line_is_refused_by_name(tmp_path, capsys, monkeypatch, args, fragment):
    """Refused before any model is built, with argparse's usage error (exit status 2)."""
    monkeypatch.setattr(predict, "setup_logger", lambda *a, **k: None)
    monkeypatch.setattr(predict, "VISPredictor", None)  # reaching the model would fail here
    _command_inputs(tmp_path)
    argv = ["--config-file", os.path.join(REPO, "configs/synthvis/R18_demo.yaml")]
    argv += [a.format(d=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exc:
        predict.main(argv)
    assert exc.value.code == 2
    assert fragment.format(d=tmp_path) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
