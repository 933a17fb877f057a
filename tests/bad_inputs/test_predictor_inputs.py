"""Bad inputs to VISPredictor (notebook inference): each refused naming the frame, file or
key, or read as the user meant."""
import os
import pathlib

import cv2
import numpy as np
import pytest
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog

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
