"""The data analysis of paper Sec. 3.1 (tools/analyze_data.py, vis_d2.data.adjacent_iou): the
adjacent-frame box IoUs on hand-made videos, the histogram files, the frames-per-video runs'
commands and tables (with the trainer processes replaced), and the errors on bad input."""
import ast
import csv
import importlib.util
import io
import json
import os
import re

import matplotlib.image
import numpy as np
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

import vis_d2.data  # noqa: F401  (registers the builtin datasets)
from vis_d2.data.adjacent_iou import adjacent_box_ious, summarize_ious
from vis_d2.data.build import UnknownDatasetError
from vis_d2.data.builtin import register_all_ytvis
from vis_d2.data.ytvis import categories_to_metadata, register_ytvis_instances
from vis_d2.evaluation import evaluate_ytvis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        "analyze_data", os.path.join(REPO, "tools", "analyze_data.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


analyze_data = _load_tool()


def inst(track_id, bbox, iscrowd=0, mode=BoxMode.XYWH_ABS):
    return {"track_id": track_id, "category_id": 0, "iscrowd": iscrowd, "bbox": list(bbox),
            "bbox_mode": mode}


def video(video_id, frames):
    return {"video_id": video_id, "file_names": [f"{video_id}/{i}.jpg" for i in range(len(frames))],
            "height": 100, "width": 100, "length": len(frames), "annotations": frames}


def hand_made_records():
    """Two videos with known IoUs (see test_adjacent_ious_of_hand_made_videos)."""
    return [
        video(1, [
            # track 1 moves right by half its width; track 2 stays; track 3 is a crowd
            [inst(1, [0, 0, 10, 10]), inst(2, [0, 0, 10, 10]), inst(3, [50, 50, 10, 10], 1)],
            [inst(1, [5, 0, 10, 10]), inst(2, [0, 0, 10, 10]), inst(3, [50, 50, 10, 10], 1)],
            # track 1 absent; track 2 keeps its top half
            [inst(2, [0, 0, 10, 5])],
            # track 1 back (no pair across the gap); track 2 (an XYXY box) jumps away
            [inst(1, [0, 0, 10, 10]), inst(2, [20, 20, 30, 30], mode=BoxMode.XYXY_ABS)],
        ]),
        video(2, [[inst(7, [0, 0, 10, 10])]]),  # one frame: no pair
    ]


def test_adjacent_ious_of_hand_made_videos():
    pairs = adjacent_box_ious(hand_made_records())
    # frame 0->1: track 1 IoU 50/150, track 2 IoU 1; 1->2: track 2 IoU 50/100; 2->3: disjoint
    np.testing.assert_allclose(pairs.ious, [1 / 3, 1.0, 0.5, 0.0])
    assert pairs.track_ids.tolist() == [1, 2, 2, 2]
    assert pairs.frames.tolist() == [0, 0, 1, 2]
    assert pairs.video_ids.tolist() == [1, 1, 1, 1]
    np.testing.assert_allclose(pairs.per_track_mean(), [1 / 3, 0.5])

    s = summarize_ious(pairs.ious)
    assert s["count"] == 4
    assert s["mean"] == pytest.approx((1 / 3 + 1 + 0.5) / 4)
    assert s["median"] == pytest.approx((1 / 3 + 0.5) / 2)
    # strictly above: 0.5 itself does not count
    assert (s["share_above_0.5"], s["share_above_0.9"]) == (0.25, 0.25)

    edges, counts = analyze_data.iou_histogram(pairs.ious, 10)
    np.testing.assert_allclose(edges, np.linspace(0, 1, 11))
    assert counts.tolist() == [1, 0, 0, 1, 0, 1, 0, 0, 0, 1]  # 0, 1/3, 0.5, 1.0 (last bin)


def test_adjacent_ious_bad_records():
    dup = video(4, [[inst(1, [0, 0, 10, 10]), inst(1, [5, 5, 10, 10])], []])
    with pytest.raises(ValueError, match=r"video 4, frame 0: track id 1 appears twice"):
        adjacent_box_ious([dup])
    empty = video(5, [[inst(1, [0, 0, 10, 10])], [inst(1, [3, 3, 0, 10])]])
    with pytest.raises(ValueError, match=r"video 5, frame 1: track 1 has an empty box"):
        adjacent_box_ious([empty])
    with pytest.raises(ValueError, match=r"record #0 is not a video record"):
        adjacent_box_ious([{"file_name": "a.jpg", "annotations": []}])
    with pytest.raises(ValueError, match="no IoU values"):
        summarize_ious([])
    assert len(adjacent_box_ious([video(6, [[], []])])) == 0


def test_adjacent_iou_command_writes_csv_png_and_summary(data_root, tmp_path, restore_catalogs,
                                                         capsys):
    register_all_ytvis(str(data_root))
    out = analyze_data.main(["adjacent-iou", "--dataset", "synthvis_train", "--output-dir",
                             str(tmp_path), "--name", "fig", "--bins", "10"])
    pairs = adjacent_box_ious(DatasetCatalog.get("synthvis_train"))
    assert len(pairs) > 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "fig.csv").read_text())))
    assert [float(r["bin_lo"]) for r in rows] == pytest.approx(np.linspace(0, 0.9, 10))
    counts = [int(r["count"]) for r in rows]
    assert counts == np.histogram(pairs.ious, bins=10, range=(0, 1))[0].tolist()
    assert sum(float(r["share"]) for r in rows) == pytest.approx(1.0)
    img = matplotlib.image.imread(str(tmp_path / "fig.png"))
    assert img.shape[:2] == (380, 600)

    assert out["summary"] == summarize_ious(pairs.ious)
    printed = capsys.readouterr().out
    assert f"synthvis_train: {len(pairs)} pairs of adjacent annotated frames" in printed
    assert f"IoU mean {pairs.ious.mean():.3f}" in printed and "reading: IoU > 0.8" in printed

    # --per-track: one value per object
    out = analyze_data.main(["adjacent-iou", "--dataset", "synthvis_train", "--output-dir",
                             str(tmp_path), "--per-track"])
    assert out["summary"] == summarize_ious(pairs.per_track_mean())
    assert out["text"].startswith(f"synthvis_train: {len(pairs.per_track_mean())} objects in 3 "
                                  f"videos, each its mean IoU over its pairs of adjacent "
                                  f"annotated frames ({len(pairs)} pairs)")
    assert (tmp_path / "adjacent_iou_synthvis_train.csv").is_file()


def _register(name, records, **meta):
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(**meta)


def test_adjacent_iou_bad_datasets(tmp_path, restore_catalogs):
    def run(name):
        analyze_data.main(["adjacent-iou", "--dataset", name, "--output-dir", str(tmp_path)])

    with pytest.raises(UnknownDatasetError, match=r"'synthvis_trian' \(in --dataset\) is not "
                                                  r"registered; did you mean"):
        run("synthvis_trian")
    _register("dataanalysis_empty", [])
    with pytest.raises(analyze_data.DataAnalysisError, match="'dataanalysis_empty' has no videos"):
        run("dataanalysis_empty")
    _register("dataanalysis_single", [video(1, [[inst(1, [0, 0, 5, 5])]])])
    with pytest.raises(analyze_data.DataAnalysisError,
                       match="'dataanalysis_single': no object is in two adjacent annotated"):
        run("dataanalysis_single")
    _register("dataanalysis_nogt", [video(1, [[], []])], has_gt=False)
    with pytest.raises(analyze_data.DataAnalysisError, match="'dataanalysis_nogt' has no ground"):
        run("dataanalysis_nogt")
    _register("dataanalysis_images", [{"file_name": "a.jpg", "annotations": []}])
    with pytest.raises(analyze_data.DataAnalysisError, match="is not a video dataset"):
        run("dataanalysis_images")
    _register("dataanalysis_dup", [video(3, [[inst(1, [0, 0, 5, 5]), inst(1, [0, 0, 5, 5])]])])
    with pytest.raises(analyze_data.DataAnalysisError,
                       match="'dataanalysis_dup': video 3, frame 0: track id 1 appears twice"):
        run("dataanalysis_dup")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("argv, message", [
    (["--frames", "1", "-1", "--max-iter", "5"], r"--frames values must be >= 0 .* \[-1\]"),
    (["--frames", "1", "1", "--max-iter", "5"], r"--frames lists a value twice"),
    (["--frames", "1", "--seeds", "-1", "--max-iter", "5"], r"--seeds must be >= 0"),
    (["--frames", "1", "--max-iter", "0"], r"--max-iter must be >= 1"),
    (["--frames", "1"], r"the following arguments are required: --max-iter"),
    (["--frames", "1", "--max-iter", "5", "--config-file", "nope.yaml"],
     r"--config-file nope.yaml does not exist"),
    (["--frames", "1", "--max-iter", "5", "--", "SEED", "3"], r"the overrides set \['SEED'\]"),
    (["--frames", "1", "--max-iter", "5", "--", "MODEL.DEVICE"], r"KEY VALUE pairs"),
])
def test_frames_per_video_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        analyze_data.parse_args(["frames-per-video", *argv])
    assert re.search(message, capsys.readouterr().err)


@pytest.fixture
def registered_val(data_root):
    """The tiny synthvis registered under test names: train, val, and val again as a second set."""
    names = {"train": "fpvtest_train", "val": "fpvtest_val", "val2": "fpvtest_val2"}
    for key, json_name in (("train", "train.json"), ("val", "valid.json"), ("val2", "valid.json")):
        json_file = data_root / "synthvis" / json_name
        cats = json.loads(json_file.read_text())["categories"]
        register_ytvis_instances(names[key], dict(categories_to_metadata(cats), has_gt=True),
                                 json_file, data_root / "synthvis" / "JPEGImages")
    yield names
    for n in names.values():
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


class FakeRuns(analyze_data.FramesPerVideoSweep):
    """The runner with train_net replaced: a "training" writes model_final.pth and the
    results.json of every test set in its DATASETS.TEST: ``predictions(frames, seed)``."""

    def __init__(self, args, test_sets, predictions):
        super().__init__(args, test_sets)
        self.predictions = predictions
        self.calls = []

    def run_command(self, cmd, log_path, what):
        out_dir = cmd[cmd.index("OUTPUT_DIR") + 1]
        self.calls.append(cmd)
        n = int(cmd[cmd.index("INPUT.VIS.FRAMES_PER_VIDEO") + 1])
        seed = int(cmd[cmd.index("SEED") + 1])
        last = len(cmd) - 1 - cmd[::-1].index("DATASETS.TEST")  # the run's, after the user's
        for ds in ast.literal_eval(cmd[last + 1]):
            res = os.path.join(out_dir, "inference", ds, "results.json")
            os.makedirs(os.path.dirname(res), exist_ok=True)
            with open(res, "w") as f:
                json.dump(self.predictions(n, seed), f)
        open(os.path.join(out_dir, "model_final.pth"), "wb").close()


def test_frames_per_video_commands_and_tables(registered_val, data_root, tmp_path):
    gt = json.loads((data_root / "synthvis" / "valid.json").read_text())
    tracks = [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 1.0,
               "segmentations": a["segmentations"]} for a in gt["annotations"]]
    # N=1: seed 0 finds one object, seed 1 two; all frames: every object
    predictions = lambda n, seed: tracks if n == 0 else tracks[:1 + seed]  # noqa: E731
    out = tmp_path / "fpv"
    figure = tmp_path / "docs" / "fig2b.png"

    def run(*extra):
        args = analyze_data.parse_args([
            "frames-per-video", "--frames", "0", "1", "--seeds", "0", "1", "--max-iter", "20",
            "--datasets", registered_val["val2"], "--output-dir", str(out), "--figure",
            str(figure), *extra, "--", "MODEL.DEVICE", "cpu",
            "DATASETS.TRAIN", f"('{registered_val['train']}',)",
            "DATASETS.TEST", f"('{registered_val['val']}',)"])
        test_sets = analyze_data.config_test_sets(args.config_file, args.opts)
        runner = FakeRuns(args, test_sets + args.datasets, predictions)
        return analyze_data.frames_per_video(args, runner), runner.calls

    result, calls = run()
    # N ascending with "all" last, then seeds; one train_net process per run
    names = ["frames1_seed0", "frames1_seed1", "framesall_seed0", "framesall_seed1"]
    assert [os.path.basename(c[c.index("OUTPUT_DIR") + 1]) for c in calls] == names
    for cmd, (n, seed) in zip(calls, [(1, 0), (1, 1), (0, 0), (0, 1)]):
        assert cmd[1].endswith("train_net.py") and cmd[3].endswith("R18_A1_baseline.yaml")
        assert "--resume" not in cmd
        i = cmd.index("INPUT.VIS.FRAMES_PER_VIDEO")
        assert cmd[i:i + 8] == ["INPUT.VIS.FRAMES_PER_VIDEO", str(n), "SEED", str(seed),
                                "SOLVER.MAX_TRAIN_MINUTES", "0.0", "DATASETS.TEST",
                                str((registered_val["val"], registered_val["val2"]))]
        assert cmd[cmd.index("OUTPUT_DIR") + 1] == str(out / analyze_data.run_name(n, seed))
        # 3600 iterations with steps (2700, 3380) and 100 warm-up, scaled to 20
        assert cmd[-6:] == ["SOLVER.MAX_ITER", "20", "SOLVER.STEPS", "(15, 19)",
                            "SOLVER.WARMUP_ITERS", "1"]

    ap = {k: evaluate_ytvis(gt, tracks[:k])["AP"] for k in (1, 2)}
    assert ap[1] < ap[2] < 1.0
    rows = list(csv.DictReader(io.StringIO((out / "frames_per_video.csv").read_text())))
    assert len(rows) == 8  # 4 runs x 2 test sets
    got = {(r["frames_per_video"], r["seed"], r["dataset"]): float(r["AP"]) for r in rows}
    for ds in registered_val["val"], registered_val["val2"]:
        assert got[("1", "0", ds)] == pytest.approx(ap[1])
        assert got[("1", "1", ds)] == pytest.approx(ap[2])
        assert got[("all", "0", ds)] == got[("all", "1", ds)] == pytest.approx(1.0)
    summary = {(s["dataset"], s["frames"]): s for s in result["summary"]}
    s1 = summary[(registered_val["val"], 1)]
    assert s1["AP"] == pytest.approx((ap[1] + ap[2]) / 2)
    assert (s1["AP_min"], s1["AP_max"]) == (pytest.approx(ap[1]), pytest.approx(ap[2]))
    assert s1["seeds"] == [0, 1]
    assert [k[1] for k in summary] == [1, 0, 1, 0]  # "all" after N = 1, per test set
    saved = json.loads((out / "frames_per_video.json").read_text())
    assert saved["max_iter"] == 20 and saved["config"] == "configs/synthvis/R18_A1_baseline.yaml"
    assert saved["summary"] == json.loads(json.dumps(result["summary"]))
    assert matplotlib.image.imread(str(out / "frames_per_video.png")).shape[:2] == (380, 600)
    assert figure.read_bytes() == (out / "frames_per_video.png").read_bytes()
    assert f"| {registered_val['val']} | all | 0 1 | 1.000 | 1.000-1.000 |" in result["text"]

    # --skip-existing: nothing runs again, the same tables come from the saved metrics
    before = (out / "frames_per_video.csv").read_text()
    assert run("--skip-existing")[1] == []
    assert (out / "frames_per_video.csv").read_text() == before
    # an extra test set whose results are gone cannot be scored from a skipped run
    os.remove(out / "framesall_seed1" / "inference" / registered_val["val2"] / "results.json")
    with pytest.raises(analyze_data.DataAnalysisError, match=r"run framesall_seed1: .* missing"):
        run("--skip-existing")
    # without --skip-existing a finished run's checkpoints are not overwritten
    (out / "frames1_seed0" / "last_checkpoint").write_text("model_final.pth")
    with pytest.raises(analyze_data.sweep.SweepError, match="holds the checkpoints"):
        run()


def test_frames_per_video_unknown_test_set(registered_val, tmp_path):
    args = analyze_data.parse_args([
        "frames-per-video", "--frames", "1", "--max-iter", "5", "--datasets", "fpvtest_vla",
        "--output-dir", str(tmp_path), "--", "MODEL.DEVICE", "cpu",
        "DATASETS.TEST", f"('{registered_val['val']}',)"])
    with pytest.raises(UnknownDatasetError, match="'fpvtest_vla' .* did you mean"):
        analyze_data.frames_per_video(args)
    assert not os.listdir(tmp_path)  # nothing trained
