"""tools/sweep_postprocess.py: variant parsing, re-capping cached frames, the same predictions as
video inference, and one run end to end on a tiny synthvis with random weights;
tools/benchmark.py: its subcommands, and the two that need no model on tiny inputs."""
import dataclasses
import importlib.util
import json
import os

import numpy as np
import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer

from vis_d2.config import get_vis_cfg
from vis_d2.engine import VISTrainer
from vis_d2.tracking import FrameDetections, VideoTracker

from helpers import TINY_OPTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "synthvis", "R18_demo.yaml")


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sweep_postprocess = _load_tool("sweep_postprocess")


def test_variants_change_only_the_fields_they_name():
    base = VideoTracker(distance_weight=2.0, max_dets_per_frame=20)
    v = sweep_postprocess.parse_variants(
        ['{}', '{"distance_weight": 0}', '{"mask_nms_thresh": 0.5, "max_dets_per_frame": 5}'],
        base, 0.3)
    assert [x.label for x in v] == ["{} (the config)", '{"distance_weight": 0}',
                                    '{"mask_nms_thresh": 0.5, "max_dets_per_frame": 5}']
    assert v[0].tracker == base and v[0].mask_nms_thresh == 0.3
    assert v[1].tracker == dataclasses.replace(base, distance_weight=0.0)
    assert v[1].mask_nms_thresh == 0.3
    assert v[2].tracker.max_dets_per_frame == 5 and v[2].tracker.distance_weight == 2.0
    assert v[2].mask_nms_thresh == 0.5


@pytest.mark.parametrize("text, message", [
    ('{"distance_wieght": 0}', r"unknown field\(s\) \['distance_wieght'\]"),
    ("distance_weight=0", "is not JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"momentum": 1.5}', r"momentum .*must be in \[0, 1\)"),
    ('{"bitrack": 1}', "bitrack .*must be True or False"),
    ('{"mask_nms_thresh": 2}', r"mask_nms_thresh must be a number in \[0, 1\]"),
    ('{"mask_nms_thresh": true}', "mask_nms_thresh must be a number"),
])
def test_bad_variant_is_refused_naming_it(text, message):
    with pytest.raises(ValueError, match=message) as e:
        sweep_postprocess.parse_variants(["{}", text], VideoTracker(), 0.0)
    assert repr(text) in str(e.value)


def _frame(scores):
    n = len(scores)
    rng = np.random.RandomState(n)
    xy = rng.uniform(0, 50, (n, 2))
    return FrameDetections(
        boxes=np.concatenate([xy, xy + 10], axis=1), scores=np.asarray(scores, np.float32),
        labels=np.arange(n) % 3, embeddings=rng.randn(n, 4),
        masks=[{"size": [64, 64], "counts": str(i)} for i in range(n)])


def _rows(frame):
    return [(frame.boxes[i].tolist(), float(frame.scores[i]), int(frame.labels[i]),
             frame.masks[i]["counts"]) for i in range(len(frame))]


@pytest.mark.parametrize("cache_cap", [0, 6, 9])
@pytest.mark.parametrize("k", [0, 2, 4, 6])
def test_capping_a_cached_frame_again_equals_capping_once(cache_cap, k):
    # ties (0.5 three times) must keep the lower index first both ways
    scores = [0.2, 0.5, 0.9, 0.5, 0.1, 0.7, 0.5, 0.3]
    full = _frame(scores)
    idx = VideoTracker(max_dets_per_frame=cache_cap).top_k(full.scores)
    cached = sweep_postprocess.cap_frames([full], VideoTracker(max_dets_per_frame=cache_cap))
    assert len(cached[0]) == len(idx)
    if cache_cap and (k == 0 or k > cache_cap):
        return  # the sweep never caches fewer detections than a variant tracks
    once = sweep_postprocess.cap_frames([full], VideoTracker(max_dets_per_frame=k))[0]
    twice = sweep_postprocess.cap_frames(cached, VideoTracker(max_dets_per_frame=k))[0]
    assert len(once) == (k or 8)
    assert _rows(twice) == _rows(once)


def test_cache_cap_is_the_most_generous_variant_per_threshold():
    V = sweep_postprocess.Variant
    caps = sweep_postprocess._cache_caps([
        V("a", VideoTracker(max_dets_per_frame=5), 0.0),
        V("b", VideoTracker(max_dets_per_frame=20), 0.0),
        V("c", VideoTracker(max_dets_per_frame=10), 0.3),
        V("d", VideoTracker(max_dets_per_frame=0), 0.3),
        V("e", VideoTracker(max_dets_per_frame=30), 0.3),
    ])
    assert {t: c.max_dets_per_frame for t, c in caps.items()} == {0.0: 20, 0.3: 0}


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = VISTrainer.build_model(get_vis_cfg(CONFIG, TINY_OPTS))
    out = tmp_path_factory.mktemp("weights")
    DetectionCheckpointer(model, save_dir=str(out)).save("model")
    return str(out / "model.pth")


class _Recorder:
    """Stands in for YTVISEvaluator: keeps the predictions it is given."""

    def __init__(self, *args, **kwargs):
        self.videos = []

    def reset(self):
        self.videos = []

    def process(self, inputs, outputs):
        self.videos += [(v["video_id"], preds) for v, preds in zip(inputs, outputs)]

    def evaluate(self):
        return {"segm": {"AP": 0.0}}


def test_sweep_predicts_what_video_inference_predicts(data_root, random_weights,
                                                      restore_catalogs, monkeypatch):
    """Mask NMS applied to the cached outputs and the per-variant cap give, for every variant,
    the predictions of video inference with the model and tracker set as the variant says."""
    from vis_d2.data.builtin import register_all_ytvis
    from vis_d2.engine import AtomicCheckpointer, inference_on_videos

    register_all_ytvis(str(data_root))
    cfg = get_vis_cfg(CONFIG, TINY_OPTS + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    model = VISTrainer.build_model(cfg)
    AtomicCheckpointer(model).load(random_weights)
    model.eval()
    variants = sweep_postprocess.parse_variants(
        ['{}', '{"mask_nms_thresh": 0}', '{"max_dets_per_frame": 3, "distance_weight": 1}',
         '{"mask_nms_thresh": 0.1, "max_dets_per_frame": 0}'],
        VideoTracker.from_config(cfg), cfg.MODEL.VIS.MASK_NMS_THRESH)
    assert variants[0].mask_nms_thresh == 0.3
    recorders = []
    monkeypatch.setattr(sweep_postprocess, "YTVISEvaluator",
                        lambda *a, **k: recorders.append(_Recorder()) or recorders[-1])
    loader = VISTrainer.build_test_loader(cfg, "synthvis_val")
    results = sweep_postprocess.sweep(model, loader, "synthvis_val", variants)
    assert len(results) == len(recorders) == 4
    counts = []
    for v, rec, (_, _, per_video) in zip(variants, recorders, results):
        model.mask_nms_thresh = v.mask_nms_thresh
        expected = _Recorder()
        inference_on_videos(model, loader, expected, v.tracker)
        assert rec.videos == expected.videos, v.label
        counts.append(sum(len(p) for _, p in rec.videos))
        assert per_video == pytest.approx(counts[-1] / len(rec.videos))  # tracks per video
    assert min(counts) > 0 and len(set(counts)) > 1  # the variants do change the predictions


def test_sweep_prints_one_row_per_variant(data_root, random_weights, restore_catalogs, capsys):
    from vis_d2.data.builtin import register_all_ytvis

    register_all_ytvis(str(data_root))
    variants = ['{}', '{"distance_weight": 0}', '{"mask_nms_thresh": 0}',
                '{"max_dets_per_frame": 2, "bitrack": true}']
    sweep_postprocess.main(["--config-file", CONFIG, "--weights", random_weights,
                            "--variants", *variants,
                            "--", *TINY_OPTS, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    run = capsys.readouterr()
    lines = run.out.strip().splitlines()
    assert lines[0].startswith("synthvis_val (") and ", 2 videos, " in lines[0]
    assert lines[1].split() == ["AP", "AP50", "AP75", "AR1", "AR10", "dAP", "dets/frame",
                                "tracks/video", "variant"]
    rows = [line.split(None, 8) for line in lines[2:]]
    assert [r[8] for r in rows] == ["{} (the config)"] + variants[1:]
    assert all(float(r[7]) > 0 for r in rows)
    for r in rows:
        assert all(0.0 <= float(x) <= 1.0 for x in r[:5])
        assert float(r[5]) == pytest.approx(float(r[0]) - float(rows[0][0]), abs=2e-4)
    assert float(rows[0][5]) == 0.0
    # the config (mask NMS at 0.3) tracks at most MAX_DETS_PER_FRAME (20) a frame; without
    # mask NMS at least as many; the last variant at most 2
    per_frame = [float(r[6]) for r in rows]
    assert 0 < per_frame[3] <= 2 and per_frame[3] <= per_frame[0] <= 20
    assert per_frame[0] <= per_frame[2] <= 20 and per_frame[1] == per_frame[0]


def test_sweep_refuses_a_bad_variant_before_the_model_runs(random_weights, capsys):
    with pytest.raises(SystemExit) as e:
        sweep_postprocess.main(["--weights", random_weights, "--variants", '{"max_age": -1}'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "variant '{\"max_age\": -1}'" in err and "max_age" in err and ">= 0" in err


def test_sweep_refuses_an_unregistered_dataset_before_the_model_runs(random_weights, capsys):
    with pytest.raises(SystemExit) as e:
        sweep_postprocess.main(["--weights", random_weights, "--datasets", "synthvis_vall"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Dataset 'synthvis_vall' (in --datasets) is not registered" in err
    assert "synthvis_val" in err   # the suggestion


def test_sweep_refuses_a_missing_weights_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep_postprocess.main(["--weights", str(tmp_path / "none.pth")])
    assert str(tmp_path / "none.pth") in capsys.readouterr().err


benchmark = _load_tool("benchmark")


def test_benchmark_has_one_subcommand_per_measurement():
    parser = benchmark.build_parser()
    sections = parser._subparsers._group_actions[0].choices
    assert sorted(sections) == ["bf16", "bitrack", "clip", "fusion", "infer", "predict_memory",
                                "profile", "scaling", "train", "ytvis_eval"]
    with pytest.raises(SystemExit):
        parser.parse_args(["layout"])


def test_benchmark_bitrack_times_both_passes_on_one_cache(capsys):
    benchmark.main(["bitrack", "--synthetic", "--frames", "8", "--dets", "4", "--dim", "16",
                    "--repeats", "1"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("one synthetic video, 8 frames of 4 random 16-d detections")
    fwd = float(out[1].split()[-2])
    bi = float(out[2].split()[6])
    assert out[1].split()[:3] == ["tracking", "forward", "only:"] and fwd > 0
    assert out[2].split()[0] == "BiTrack" and bi > 0


def test_benchmark_ytvis_eval_gives_the_plain_ious(capsys):
    benchmark.main(["ytvis_eval", "--videos", "4", "--frames", "5", "--height", "96",
                    "--width", "128", "--categories", "3", "--naive-videos", "4"])
    out = capsys.readouterr().out
    assert out.startswith("built 4 videos x 5 frames (96x128)")
    assert "SPEED: " in out and out.rstrip().endswith("identical IoUs: True")


def test_benchmark_times_the_metric_command_in_fresh_processes(tmp_path, capsys):
    gt, _ = benchmark.build_synthetic(2, 8, 40, 50, 2, np.random.default_rng(0))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    benchmark.main(["ytvis_eval", "--videos", "0", "--command-gt", str(tmp_path / "gt.json"),
                    "--repeats", "2"])
    out = capsys.readouterr().out
    assert "(its annotations as results: AP 1.0000), 2 fresh processes: median wall" in out
    # Without torch (which alone takes more) the command stays under 200 MiB.
    assert 0 < int(out.split("peak RSS ")[1].split()[0]) < 200
