"""python -m vis_d2.data.split: by-video train/valid split of a YouTube-VIS json."""
import json
import os
import sys

import pytest

from vis_d2.data.split import main, split_videos, split_ytvis_json
from vis_d2.data.ytvis import YTVISFormatError, load_ytvis_json

NUM_VIDEOS = 10


def _dataset(num_videos=NUM_VIDEOS):
    videos = [
        {"id": 100 + i, "height": 4, "width": 4, "length": 2,
         "file_names": [f"v{i}/0.jpg", f"v{i}/1.jpg"]}
        for i in range(num_videos)
    ]
    annotations = []
    # Video i has i % 3 annotations: 0 + 1 + 2 + 0 + 1 + 2 + 0 + 1 + 2 + 0 = 9 for 10 videos.
    for i in range(num_videos):
        for k in range(i % 3):
            annotations.append(
                {"id": 1000 + 10 * i + k, "video_id": 100 + i, "category_id": 1 + k, "iscrowd": 0,
                 "segmentations": [[[0, 0, 2, 0, 2, 2, 0, 2]], None],
                 "bboxes": [[0, 0, 2, 2], None], "areas": [4, None]}
            )
    return {
        "info": {"description": "split test"},
        "licenses": [],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "videos": videos,
        "annotations": annotations,
    }


@pytest.fixture
def json_file(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(_dataset()))
    return str(path)


def _load(path):
    with open(path) as f:
        return json.load(f)


def test_split_is_complete_disjoint_and_follows_videos(json_file, tmp_path):
    train_path, valid_path, counts = split_ytvis_json(json_file, ratio=0.3, seed=0)
    assert train_path == str(tmp_path / "train_sub.json")
    assert valid_path == str(tmp_path / "valid_sub.json")
    train, valid = _load(train_path), _load(valid_path)
    original = _dataset()

    train_ids = [v["id"] for v in train["videos"]]
    valid_ids = [v["id"] for v in valid["videos"]]
    assert len(valid_ids) == 3 and len(train_ids) == 7  # round(0.3 * 10)
    assert set(train_ids).isdisjoint(valid_ids)
    assert sorted(train_ids + valid_ids) == [v["id"] for v in original["videos"]]
    # Videos keep their json order within each split.
    assert train_ids == sorted(train_ids) and valid_ids == sorted(valid_ids)

    # Every annotation goes with its video, unchanged.
    assert all(a["video_id"] in valid_ids for a in valid["annotations"])
    assert all(a["video_id"] in train_ids for a in train["annotations"])
    by_id = {a["id"]: a for a in original["annotations"]}
    assert sorted(a["id"] for a in train["annotations"] + valid["annotations"]) == sorted(by_id)
    assert all(a == by_id[a["id"]] for a in valid["annotations"])
    expected_valid_annos = sum((vid - 100) % 3 for vid in valid_ids)
    assert counts == {"valid": (3, expected_valid_annos), "train": (7, 9 - expected_valid_annos)}

    for part in (train, valid):
        assert part["categories"] == original["categories"]
        assert part["info"] == original["info"] and part["licenses"] == []
    # Atomic writes leave no temp files behind.
    assert sorted(os.listdir(tmp_path)) == ["train.json", "train_sub.json", "valid_sub.json"]

    # Both load, with ground truth.
    records = load_ytvis_json(valid_path, str(tmp_path))
    assert [r["video_id"] for r in records] == valid_ids and all(r["has_gt"] for r in records)


def test_same_seed_same_split(json_file, tmp_path):
    split_ytvis_json(json_file, 0.3, seed=5, out_dir=str(tmp_path / "a"))
    split_ytvis_json(json_file, 0.3, seed=5, out_dir=str(tmp_path / "b"))
    split_ytvis_json(json_file, 0.3, seed=6, out_dir=str(tmp_path / "c"))
    for name in ("train_sub.json", "valid_sub.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    ids = {d: [v["id"] for v in _load(tmp_path / d / "valid_sub.json")["videos"]] for d in "ac"}
    assert ids["a"] != ids["c"] and len(ids["a"]) == len(ids["c"]) == 3


@pytest.mark.parametrize("ratio,num_valid", [(0.01, 1), (0.1, 1), (0.5, 5), (0.99, 9)])
def test_ratio_and_at_least_one_video_each_side(ratio, num_valid):
    train, valid = split_videos(_dataset(), ratio, seed=0)
    assert (len(train["videos"]), len(valid["videos"])) == (NUM_VIDEOS - num_valid, num_valid)


def test_errors(tmp_path):
    one = _dataset(num_videos=1)
    with pytest.raises(ValueError, match=r"x\.json: cannot split 1 video\(s\); need at least 2"):
        split_videos(one, 0.5, 0, json_file="x.json")
    with pytest.raises(ValueError, match=r"--ratio must be in \(0, 1\), got 1.0"):
        split_videos(_dataset(), 1.0, 0)
    for empty in ("absent", None, []):
        no_gt = _dataset()
        if empty == "absent":
            del no_gt["annotations"]
        else:
            no_gt["annotations"] = empty
        with pytest.raises(YTVISFormatError, match=r"t\.json: the json has no 'annotations'"):
            split_videos(no_gt, 0.5, 0, json_file="t.json")
    orphan = _dataset()
    orphan["annotations"][0]["video_id"] = 7
    with pytest.raises(YTVISFormatError, match=r"annotation 1010: unknown video_id 7"):
        split_videos(orphan, 0.5, 0)
    # Writing over the input is refused.
    sub = tmp_path / "train_sub.json"
    sub.write_text(json.dumps(_dataset()))
    with pytest.raises(ValueError, match="would overwrite the input"):
        split_ytvis_json(str(sub), 0.5, 0)


def test_main_prints_counts_and_fails_cleanly(json_file, tmp_path, capsys):
    out_dir = str(tmp_path / "out")
    assert main(["--json", json_file, "--ratio", "0.2", "--seed", "0", "--out-dir", out_dir]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("train_sub: 8 videos, ")
    assert lines[0].endswith(str(tmp_path / "out/train_sub.json"))
    assert lines[1].startswith("valid_sub: 2 videos, ")

    one = tmp_path / "one.json"
    one.write_text(json.dumps(_dataset(num_videos=1)))
    with pytest.raises(SystemExit) as exc:
        main(["--json", str(one)])
    assert exc.value.code == 2
    assert "cannot split 1 video(s)" in capsys.readouterr().err

    # Seed 4 holds out video 103, which has no annotations: the command says so.
    assert main(["--json", json_file, "--ratio", "0.1", "--seed", "4", "--out-dir", out_dir]) == 0
    out = capsys.readouterr().out
    assert "valid_sub: 1 videos, 0 annotations" in out
    assert "warning: valid_sub has no annotations" in out


# runpy warns that the test module already imported vis_d2.data.split; it runs it afresh anyway.
@pytest.mark.filterwarnings("ignore:'vis_d2.data.split' found in sys.modules:RuntimeWarning")
def test_module_entry_point(json_file, tmp_path, monkeypatch, capsys):
    """``python -m vis_d2.data.split`` runs main and exits with its status (run in-process)."""
    import runpy

    monkeypatch.setattr(sys, "argv", ["split", "--json", json_file, "--ratio", "0.1"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("vis_d2.data.split", run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr()
    assert "valid_sub: 1 videos" in out.out
    assert len(_load(tmp_path / "valid_sub.json")["videos"]) == 1
