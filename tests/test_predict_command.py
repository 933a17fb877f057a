"""``python -m vis_d2.predict``: an annotated H.264 video and a results json the metric scores,
per video file, folder of frames or glob match; OpenCV's writer without PyAV; two lazy passes.

A tiny random-weight model (the demo's structure at thin widths) on 64x96 synthetic clips."""
import fractions
import json
import logging
import os
import sys
import weakref

import av
import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog

from vis_d2 import predict
from vis_d2.data.frames import VideoFrames
from vis_d2.evaluation import evaluate_ytvis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs/synthvis/R18_demo.yaml")
DATASET = "predictcmd_shapes"
H, W, FRAMES = 64, 96, 4
TINY = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.FPN.OUT_CHANNELS", "32",
        "MODEL.ROI_BOX_HEAD.FC_DIM", "64", "MODEL.ROI_MASK_HEAD.CONV_DIM", "32",
        "MODEL.VIS.TRACK_HEAD.FC_DIM", "32", "MODEL.VIS.TRACK_HEAD.EMBED_DIM", "32",
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.VIS.TRACKER.SCORE_THRESH", "0.0",
        "DATASETS.TEST", f"('{DATASET}',)"]


@pytest.fixture(autouse=True)
def quiet_and_registered(monkeypatch):
    """In-process runs: detectron2's setup_logger would stop vis_d2's log propagation for later
    tests; the dataset gives json ids 1..4 and names."""
    monkeypatch.setattr(predict, "setup_logger", lambda *a, **k: None)
    DatasetCatalog.register(DATASET, lambda: [])
    MetadataCatalog.get(DATASET).set(thing_classes=["circle", "square", "star", "triangle"],
                                     thing_dataset_id_to_contiguous_id={1: 0, 2: 1, 3: 2, 4: 3})
    yield
    DatasetCatalog.remove(DATASET)
    MetadataCatalog.remove(DATASET)


def _clip(t, shift=0):
    """Frame ``t``: a bright rectangle moving right on a grey background, and its mask."""
    img = np.full((H, W, 3), 60, np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[20:44, 10 + 8 * t + shift:40 + 8 * t + shift] = 1
    img[mask.astype(bool)] = (40, 200, 250)
    return img, mask


def _h264(path, n=FRAMES, shift=0, fps=5):
    """An H.264 mp4 of ``n`` frames written by PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(fps))
        stream.height, stream.width, stream.pix_fmt = H, W, "yuv420p"
        for t in range(n):
            frame = av.VideoFrame.from_ndarray(_clip(t, shift)[0], format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return str(path)


def _run(inputs, out, *extra):
    return predict.main(["--config-file", CONFIG, "--input", *map(str, inputs), "--output",
                         str(out), "--confidence-threshold", "0", *extra, *TINY])


def _read_back(path):
    """(codec, pixel format, frame rate, frame shapes) of a video, decoded by PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        shapes = [f.to_ndarray(format="bgr24").shape for f in container.decode(stream)]
        return stream.codec_context.name, stream.codec_context.pix_fmt, stream.average_rate, shapes


def _ground_truth(video_id=1):
    segs = []
    for t in range(FRAMES):
        rle = mask_util.encode(np.asfortranarray(_clip(t)[1]))
        segs.append(dict(rle, counts=rle["counts"].decode("ascii")))
    return {"videos": [{"id": video_id, "height": H, "width": W, "length": FRAMES}],
            "categories": [{"id": i, "name": n} for i, n in
                           enumerate(["circle", "square", "star", "triangle"], 1)],
            "annotations": [{"id": 1, "video_id": video_id, "category_id": 2, "iscrowd": 0,
                             "segmentations": segs, "areas": None}]}


def test_h264_video_in_h264_and_results_the_metric_scores(tmp_path):
    video = _h264(tmp_path / "clip.mp4")
    [(mp4, results, n)] = _run([video], tmp_path / "out")
    assert (mp4, results) == (str(tmp_path / "out/clip.mp4"), str(tmp_path / "out/clip.json"))
    assert _read_back(mp4) == ("h264", "yuv420p", 5, [(H, W, 3)] * FRAMES)
    with open(results) as f:
        preds = json.load(f)
    assert len(preds) == n > 0  # threshold 0: the random model's tracks are all kept
    names = {1: "circle", 2: "square", 3: "star", 4: "triangle"}
    for p in preds:
        assert p["video_id"] == 1 and p["category_name"] == names[p["category_id"]]
        assert len(p["segmentations"]) == FRAMES
    metrics = evaluate_ytvis(_ground_truth(), results)
    assert set(metrics) >= {"AP", "AP50", "AR10"} and 0 <= metrics["AP"] <= 1


def test_folder_and_glob_inputs(tmp_path):
    """A folder of frames (drawn at 6 fps) and a glob matching two videos, ids in input order."""
    frames_dir = tmp_path / "frames_a"
    frames_dir.mkdir()
    for t in range(3):
        cv2.imwrite(str(frames_dir / f"{t}.png"), _clip(t)[0])
    _h264(tmp_path / "v1.mp4", n=2)
    _h264(tmp_path / "v2.mp4", n=3, shift=5)
    done = _run([frames_dir, tmp_path / "v*.mp4"], tmp_path / "out")
    assert [os.path.basename(v) for v, _, _ in done] == ["frames_a.mp4", "v1.mp4", "v2.mp4"]
    assert [_read_back(v)[2:] for v, _, _ in done] == [
        (6, [(H, W, 3)] * 3), (5, [(H, W, 3)] * 2), (5, [(H, W, 3)] * 3)]
    for video_id, (_, results, _) in enumerate(done, 1):
        with open(results) as f:
            assert {p["video_id"] for p in json.load(f)} == {video_id}


def test_without_pyav_opencv_writes_mp4v_and_warns(tmp_path, monkeypatch, caplog):
    video = _h264(tmp_path / "clip.mp4")
    with monkeypatch.context() as m, caplog.at_level(logging.WARNING, logger="vis_d2"):
        m.setitem(sys.modules, "av", None)  # import av raises ImportError
        [(mp4, _, _)] = _run([video], tmp_path / "out")
    assert any("pip install 'vis_d2[video]'" in m and "mp4v" in m for m in caplog.messages)
    assert _read_back(mp4)[0] == "mpeg4" and _read_back(mp4)[3] == [(H, W, 3)] * FRAMES
    assert sorted(os.listdir(tmp_path / "out")) == ["clip.json", "clip.mp4"]  # no temp left


def test_two_lazy_passes_over_the_video(tmp_path, monkeypatch):
    """The model pass and the drawing pass each decode the video anew, and no more than the
    frame in hand (and the one the drawing is making) is ever alive."""
    video = _h264(tmp_path / "clip.mp4", n=6)
    passes, alive, most = [], [], []
    real_iter = VideoFrames.__iter__

    def counting_iter(self):
        passes.append(self.source)
        for frame in real_iter(self):
            most.append(sum(r() is not None for r in alive))
            alive.append(weakref.ref(frame))
            yield frame

    monkeypatch.setattr(VideoFrames, "__iter__", counting_iter)
    _run([video], tmp_path / "out", "--bitrack")
    assert passes == [video, video]
    assert len(alive) == 12 and max(most) <= 1
