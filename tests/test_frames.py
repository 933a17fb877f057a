"""VideoFrames: the frames of a folder of images or of a video file, read lazily, one size
policy."""
import fractions
import logging
import re
import sys

import cv2
import numpy as np
import pytest

from vis_d2.data.frames import VideoFrames, natural_key


def read_video_frames(source):
    return list(VideoFrames(source))


def _frame(value, h=24, w=32):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = value  # B
    img[:, :, 2] = value // 2  # R
    return img


def test_folder_frames_sorted_and_fitted_to_the_first(tmp_path, caplog):
    for i, value in [(2, 30), (0, 10), (1, 20)]:
        cv2.imwrite(str(tmp_path / f"{i:05d}.png"), _frame(value))
    (tmp_path / "notes.txt").write_text("not a frame")
    cv2.imwrite(str(tmp_path / "00003.png"), _frame(40, h=12, w=16))
    with caplog.at_level(logging.WARNING, logger="vis_d2.data.frames"):
        frames = read_video_frames(str(tmp_path))
    assert [f.shape for f in frames] == [(24, 32, 3)] * 4
    assert [f[0, 0].tolist() for f in frames] == [[10, 0, 5], [20, 0, 10], [30, 0, 15], [40, 0, 20]]
    assert any("00003.png" in m and "is 12x16 (HxW) but the video is 24x32" in m
               for m in caplog.messages)


def test_folder_frames_in_natural_order(tmp_path):
    # 1.png ... 11.png: sorted as text, 10 and 11 would come right after 1
    for i in range(1, 12):
        cv2.imwrite(str(tmp_path / f"{i}.png"), _frame(10 * i))
    frames = read_video_frames(str(tmp_path))
    assert [int(f[0, 0, 0]) for f in frames] == [10 * i for i in range(1, 12)]
    assert sorted(["frame_10.jpg", "frame_2.jpg", "a.jpg"], key=natural_key) == \
        ["a.jpg", "frame_2.jpg", "frame_10.jpg"]


def test_folder_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="holds no frames"):
        read_video_frames(str(tmp_path))
    cv2.imwrite(str(tmp_path / "00000.png"), _frame(10))
    (tmp_path / "00001.png").write_bytes(b"not a png")
    bad = str(tmp_path / "00001.png")
    message = re.escape(f"frame 1: file '{bad}' is not a readable image")
    with pytest.raises(ValueError, match=message):
        read_video_frames(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_video_frames(str(tmp_path / "nope.mp4"))


def test_video_file(tmp_path):
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
    for value in (10, 100, 200):
        writer.write(_frame(value))
    writer.release()
    frames = read_video_frames(path)
    assert [f.shape for f in frames] == [(24, 32, 3)] * 3
    assert [int(f[12, 16, 0]) for f in frames] == pytest.approx([10, 100, 200], abs=4)
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.avi has no readable frames"):
        read_video_frames(str(tmp_path / "empty.avi"))


def _h264(path, values, h=24, w=32, fps=5):
    """An H.264 mp4 written by PyAV directly, one flat frame per value (B = value)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(fps))
        stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
        for v in values:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(_frame(v, h, w), format="bgr24")))
        container.mux(stream.encode(None))
    return str(path)


def test_h264_file_read_lazily_and_again(tmp_path):
    video = VideoFrames(_h264(tmp_path / "clip.mp4", [20, 120, 220, 60]))
    assert (video.name, video.num_frames, video.fps) == ("clip", 4, 5.0)
    first = iter(video)
    assert int(next(first)[12, 16, 0]) == pytest.approx(20, abs=6)  # decoded on demand
    for _ in range(2):  # each pass decodes from the start
        frames = list(video)
        assert [f.shape for f in frames] == [(24, 32, 3)] * 4
        assert [int(f[12, 16, 0]) for f in frames] == pytest.approx([20, 120, 220, 60], abs=6)


def test_without_pyav_opencv_decodes(tmp_path, monkeypatch):
    path = _h264(tmp_path / "clip.mp4", [20, 220])
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    video = VideoFrames(path)
    assert (video.num_frames, video.fps) == (2, 5.0)
    assert [int(f[12, 16, 0]) for f in video] == pytest.approx([20, 220], abs=6)


def test_video_names():
    assert VideoFrames.name_of("a/b/clip.v2.mp4") == "clip.v2"
    assert VideoFrames.name_of("some/folder/") == "folder"
