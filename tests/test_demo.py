"""tools/demo.py refuses to resume a run of another recipe in its output folder, and trains
within a time budget."""
import importlib.util
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


def test_demo_trains_within_its_budget_unless_a_schedule_is_asked_for():
    """The demo sets SOLVER.MAX_TRAIN_MINUTES to its budget and keeps the config's schedule as
    the most it trains; a SOLVER.MAX_ITER or SOLVER.MAX_TRAIN_MINUTES on the command line, or a
    budget of 0, leaves the config alone."""
    demo = _demo_module()
    opts = ["MODEL.DEVICE", "cpu"]
    cfg = get_vis_cfg(CONFIG, opts)
    budgeted = demo.with_time_budget(cfg, opts, 14.5)
    assert budgeted.SOLVER.MAX_TRAIN_MINUTES == 14.5
    assert budgeted.SOLVER.MAX_ITER == cfg.SOLVER.MAX_ITER == 3600
    assert cfg.SOLVER.MAX_TRAIN_MINUTES == 0.0  # the given config is left alone
    for extra in (["SOLVER.MAX_ITER", "1000"], ["SOLVER.MAX_TRAIN_MINUTES", "30.0"]):
        own = get_vis_cfg(CONFIG, opts + extra)
        assert demo.with_time_budget(own, opts + extra, 14.5) is own
    assert demo.with_time_budget(cfg, opts, 0) is cfg
