"""Bad inputs to VISPredictor (notebook inference): each refused naming the frame or file, or
read as the user meant."""
import os
import pathlib

import cv2
import numpy as np
import pytest
import torch

from vis_d2.config import get_vis_cfg
from vis_d2.engine import VISPredictor
from vis_d2.engine.predictor import read_video_frames

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["MODEL.DEVICE", "cpu", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
        "MODEL.ROI_MASK_HEAD.CONV_DIM", "32", "MODEL.VIS.TRACK_HEAD.FC_DIM", "32",
        "MODEL.VIS.TRACK_HEAD.EMBED_DIM", "32", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "96", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
        "MODEL.VIS.TRACKER.SCORE_THRESH", "0.0"]


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
    frames = read_video_frames(str(tmp_path))
    assert [int(f[0, 0, 0]) for f in frames] == [10 * i for i in range(1, 12)]
    # a pathlib.Path is read as its str
    assert predictor(pathlib.Path(tmp_path)) == predictor(str(tmp_path))
