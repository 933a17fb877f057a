"""tools/demo.py refuses to resume a run of another recipe in its output folder, and fits its
schedule into a time budget."""
import importlib.util
import json
import os

import pytest

from vis_d2.config import get_vis_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs/synthvis/R18_demo.yaml")


def _demo_module():
    spec = importlib.util.spec_from_file_location("vis_d2_demo", os.path.join(REPO, "tools", "demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resume_only_the_same_recipe(tmp_path):
    demo = _demo_module()
    cfg = get_vis_cfg(CONFIG, ["MODEL.DEVICE", "cpu"])
    demo.check_resumable(cfg, str(tmp_path))  # empty folder: nothing to resume
    saved = cfg.clone()
    saved.MODEL.WEIGHTS = "somewhere/model.pth"  # where a run starts from does not matter
    (tmp_path / "config.yaml").write_text(saved.dump())
    demo.check_resumable(cfg, str(tmp_path))  # a config without a checkpoint: nothing to resume
    (tmp_path / "last_checkpoint").write_text("model_0000499.pth")
    demo.check_resumable(cfg, str(tmp_path))  # same recipe: resumes
    old = cfg.clone()
    old.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    old.SOLVER.MAX_ITER = 640
    (tmp_path / "config.yaml").write_text(old.dump())
    with pytest.raises(SystemExit, match=r"holds a run with a different MODEL/SOLVER config .*--fresh"):
        demo.check_resumable(cfg, str(tmp_path))


def test_time_budget_scales_the_schedule_down_only(tmp_path, monkeypatch):
    demo = _demo_module()
    cfg = get_vis_cfg(CONFIG, ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path),
                               "SOLVER.MAX_ITER", "2400", "SOLVER.STEPS", "(1800, 2255)"])
    factor = demo.LATER_STEPS_FACTOR
    # 2400 steps at 0.5 s x factor take 2400 * 0.5 * factor / 60 minutes: half of that fits in
    # a budget of half, with the LR steps scaled the same way.
    minutes = 2400 * 0.5 * factor / 60
    fitted, f = demo.fit_schedule(cfg, 0.5, minutes / 2)
    assert f == pytest.approx(0.5)
    assert fitted.SOLVER.MAX_ITER == 1200 and tuple(fitted.SOLVER.STEPS) == (900, 1127)
    assert cfg.SOLVER.MAX_ITER == 2400  # the given config is left alone
    same, f = demo.fit_schedule(cfg, 0.5, minutes * 1.01)  # it fits: never lengthened
    assert same is cfg and f == 1.0

    # apply_time_budget times the steps, writes the scaled schedule for a resume to reuse, and
    # removes a stale one when the config's own schedule fits
    monkeypatch.setattr(demo, "measure_step_seconds", lambda c: 0.5)
    scaled = demo.apply_time_budget(cfg, minutes / 4)
    assert scaled.SOLVER.MAX_ITER == 600 and tuple(scaled.SOLVER.STEPS) == (450, 563)
    saved = json.loads((tmp_path / demo.SCHEDULE_FILE).read_text())
    assert (saved["max_iter"], saved["steps"], saved["config_max_iter"]) == (600, [450, 563], 2400)
    resumed = demo.saved_schedule(cfg, str(tmp_path))
    assert resumed.SOLVER.MAX_ITER == 600 and tuple(resumed.SOLVER.STEPS) == (450, 563)
    assert demo.apply_time_budget(cfg, minutes * 2) is cfg
    assert not (tmp_path / demo.SCHEDULE_FILE).exists()
    assert demo.saved_schedule(cfg, str(tmp_path)) is cfg


def test_measure_step_seconds_times_real_steps(data_root, tmp_path, restore_catalogs):
    from helpers import TINY_OPTS
    from vis_d2.data.builtin import register_all_ytvis

    demo = _demo_module()
    register_all_ytvis(str(data_root))
    cfg = get_vis_cfg(CONFIG, TINY_OPTS + ["OUTPUT_DIR", str(tmp_path / "out")])
    sec = demo.measure_step_seconds(cfg, steps=3, warmup=1)
    assert 0.0 < sec < 30.0
    assert not (tmp_path / "out").exists()  # a measurement writes nothing


def test_demo_runs_guard_the_budget_during_training(tmp_path, monkeypatch):
    """The demo sets SOLVER.MAX_TRAIN_MINUTES to its budget, on a fresh run and on a resume;
    a SOLVER.MAX_ITER on the command line turns both parts of the budget off."""
    demo = _demo_module()
    monkeypatch.setattr(demo, "measure_step_seconds", lambda c: 1.0)  # 2800 steps: ~61 min
    opts = ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path)]
    cfg = get_vis_cfg(CONFIG, opts)
    fresh = demo.schedule_for_run(cfg, opts, 14.5)
    assert fresh.SOLVER.MAX_TRAIN_MINUTES == 14.5
    assert abs(fresh.SOLVER.MAX_ITER - 14.5 * 60 / demo.LATER_STEPS_FACTOR) <= 1  # at 1 s a step
    (tmp_path / "last_checkpoint").write_text("model_0000499.pth")
    resumed = demo.schedule_for_run(cfg, opts, 14.5)
    assert resumed.SOLVER.MAX_TRAIN_MINUTES == 14.5
    assert resumed.SOLVER.MAX_ITER == fresh.SOLVER.MAX_ITER  # demo_schedule.json
    fixed_opts = ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path / "fixed"), "SOLVER.MAX_ITER",
                  "2800"]
    fixed = demo.schedule_for_run(get_vis_cfg(CONFIG, fixed_opts), fixed_opts, 14.5)
    assert fixed.SOLVER.MAX_TRAIN_MINUTES == 0.0 and fixed.SOLVER.MAX_ITER == 2800
    own = opts + ["SOLVER.MAX_TRAIN_MINUTES", "30.0"]
    assert demo.schedule_for_run(get_vis_cfg(CONFIG, own), own, 14.5).SOLVER.MAX_TRAIN_MINUTES == 30
    assert demo.schedule_for_run(cfg, opts, 0).SOLVER.MAX_TRAIN_MINUTES == 0.0
