"""Runs into an occupied OUTPUT_DIR: refused, or written beside the earlier run, never over it."""
import importlib.util
import logging
import os
import signal
import time

import pytest

from vis_d2.engine import output_dir as od

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train_net(monkeypatch):
    """train_net.py as a module, with detectron2's logger set-up left out (it would stop this
    process's loggers from propagating to the tests after it)."""
    spec = importlib.util.spec_from_file_location("train_net", os.path.join(REPO, "train_net.py"))
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    monkeypatch.setattr(train_net, "default_setup", lambda cfg, args: None)
    monkeypatch.setattr(train_net, "setup_logger", lambda *a, **k: None)
    return train_net


def test_a_second_process_is_refused_naming_the_first(tmp_path):
    folder = str(tmp_path / "run")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the first run: holds the folder until killed
        try:
            od._held_locks.clear()
            od.claim_output_dir(folder)
            os.write(write_end, b"1")
            time.sleep(60)
        finally:
            os._exit(0)
    try:
        assert os.read(read_end, 1) == b"1"
        with pytest.raises(RuntimeError) as exc:
            od.claim_output_dir(folder)
        assert f"OUTPUT_DIR '{folder}' is in use by another vis_d2 run (process {pid})" \
            in str(exc.value)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    od.claim_output_dir(folder)  # the lock went with the process that held it
    assert os.path.realpath(folder) in od._held_locks
    od.claim_output_dir(folder)  # and this process may claim its own folder again


@pytest.mark.parametrize("opts, refused", [
    ([], True),                         # a new training run would overwrite the checkpoints
    (["--resume"], False),              # continuing it is what --resume is for
    (["--eval-only", "MODEL.WEIGHTS", "{ckpt}"], False),  # evaluation does not train over them
])
def test_training_into_a_folder_with_checkpoints(data_root, tmp_path, restore_catalogs,
                                                monkeypatch, opts, refused):
    from detectron2.engine import default_argument_parser

    from vis_d2.data.builtin import register_all_ytvis

    register_all_ytvis(str(data_root))
    train_net = _train_net(monkeypatch)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model_0000099.pth").write_bytes(b"")
    (folder / "last_checkpoint").write_text("model_0000099.pth")
    opts = [o.format(ckpt=folder / "model_0000099.pth") for o in opts]
    args = default_argument_parser().parse_args(
        [*opts[:1], "--config-file", os.path.join(REPO, "configs/synthvis/R18_demo.yaml"),
         "OUTPUT_DIR", str(folder), *opts[1:]])
    if refused:
        with pytest.raises(RuntimeError) as exc:
            train_net.setup(args)
        assert f"OUTPUT_DIR '{folder}' holds the checkpoints of an earlier run " \
               "(last: model_0000099.pth). Add --resume" in str(exc.value)
    else:
        assert train_net.setup(args).OUTPUT_DIR == str(folder)
    assert (folder / "last_checkpoint").read_text() == "model_0000099.pth"


def test_resume_with_other_options_keeps_the_earlier_config(tmp_path, caplog):
    config = tmp_path / "config.yaml"
    config.write_text("SOLVER:\n  MAX_ITER: 300\n  BASE_LR: 0.01\nOUTPUT_DIR: out\n")
    with caplog.at_level(logging.WARNING, logger="vis_d2"):
        with od.keep_earlier_config(str(tmp_path)):  # what detectron2's default_setup writes
            config.write_text("SOLVER:\n  MAX_ITER: 45\n  BASE_LR: 0.01\nOUTPUT_DIR: out\n"
                              "SEED: 3\n")
    assert "MAX_ITER: 300" in (tmp_path / "config.1.yaml").read_text()
    assert "MAX_ITER: 45" in config.read_text()
    assert "SEED: '<absent>' -> 3; SOLVER.MAX_ITER: 300 -> 45" in caplog.text
    assert f"The earlier config is kept as {tmp_path / 'config.1.yaml'}" in caplog.text
    with od.keep_earlier_config(str(tmp_path)):  # the same config again: nothing to keep
        config.write_text(config.read_text())
    with od.keep_earlier_config(str(tmp_path)):
        config.write_text("SOLVER:\n  MAX_ITER: 90\n")
    assert "MAX_ITER: 45" in (tmp_path / "config.2.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["config.1.yaml", "config.2.yaml", "config.yaml"]


def test_a_second_evaluation_writes_beside_the_first(tmp_path):
    inference = str(tmp_path / "inference")
    assert od.unused_results_dir(inference) == inference  # nothing there yet
    os.makedirs(os.path.join(inference, "synthvis_val"))
    assert od.unused_results_dir(inference) == inference  # an empty folder holds nothing
    open(os.path.join(inference, "synthvis_val", "results.json"), "w").close()
    assert od.unused_results_dir(inference) == inference + ".1"
    os.makedirs(inference + ".1")
    assert od.unused_results_dir(inference) == inference + ".2"


def test_config_differences_lists_changed_added_and_removed_keys():
    old = "A:\n  B: 1\n  C: [1, 2]\nD: x\n"
    new = "A:\n  B: 2\n  C: [1, 2]\nE: y\n"
    assert od.config_differences(old, new) == [
        "A.B: 1 -> 2", "D: 'x' -> '<absent>'", "E: '<absent>' -> 'y'"]
