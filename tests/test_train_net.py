"""train_net.py end to end on a tiny synthetic set: a 2-process CPU DDP training step (gloo),
--resume from the last checkpoint, and --eval-only from a saved checkpoint (tracking + metric)."""
import json
import os
import re
import subprocess
import sys


from helpers import TINY_OPTS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A model small enough for a 2-core CI machine: the structure of the demo, with thin layers.
TINY = TINY_OPTS + ["SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()"]


def run_train_net(data_root, *args, timeout=600):
    env = dict(os.environ, DETECTRON2_DATASETS=str(data_root), OMP_NUM_THREADS="1")
    cmd = [sys.executable, os.path.join(REPO, "train_net.py"),
           "--config-file", os.path.join(REPO, "configs/synthvis/R18_demo.yaml"), *args]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    return log


def test_ddp_two_cpu_processes_then_resume_then_eval_only(data_root, tmp_path):
    out_dir = tmp_path / "run"
    # 1) two CPU processes through detectron2's launch (gloo), 2 iterations
    log = run_train_net(data_root, "--num-gpus", "2", *TINY, "SOLVER.MAX_ITER", "2",
                        "OUTPUT_DIR", str(out_dir), "TEST.EVAL_PERIOD", "0")
    assert "world size: 2" in log.lower() or "rank 1" in log.lower()
    assert (out_dir / "model_final.pth").is_file()
    assert (out_dir / "last_checkpoint").read_text() == "model_final.pth"
    # the end-of-training evaluation ran over both processes and wrote the results
    results = json.loads((out_dir / "inference" / "synthvis_val" / "results.json").read_text())
    assert isinstance(results, list)

    # 2) --resume continues from iteration 2 up to 3 (single process)
    log = run_train_net(data_root, "--resume", *TINY, "SOLVER.MAX_ITER", "3",
                        "OUTPUT_DIR", str(out_dir))
    assert re.search(r"Starting training from iteration 2", log), log[-3000:]
    # the first run's config, with its schedule, is kept beside the resumed run's
    assert "MAX_ITER: 2\n" in (out_dir / "config.1.yaml").read_text()
    assert "MAX_ITER: 3\n" in (out_dir / "config.yaml").read_text()
    assert "SOLVER.MAX_ITER: 2 -> 3" in log
    trained = (out_dir / "inference" / "synthvis_val" / "results.json").read_bytes()

    # 3) --eval-only from the saved checkpoint: tracking over every val video + the metric,
    # written beside the results of the training run's own evaluation, not over them
    log = run_train_net(data_root, "--eval-only", *TINY, "OUTPUT_DIR", str(out_dir),
                        "MODEL.WEIGHTS", str(out_dir / "model_final.pth"))
    assert "copypaste: AP,AP50,AP75,APs,APm,APl,AR1,AR10" in log
    assert (out_dir / "inference" / "synthvis_val" / "results.json").read_bytes() == trained
    res = json.loads((out_dir / "inference.1" / "synthvis_val" / "results.json").read_text())
    gt = json.loads((data_root / "synthvis" / "valid.json").read_text())
    lengths = {v["id"]: v["length"] for v in gt["videos"]}
    for p in res:
        assert len(p["segmentations"]) == lengths[p["video_id"]]


def test_bad_config_inputs_give_clear_errors(data_root, tmp_path, restore_catalogs, monkeypatch):
    """train_net.py's setup refuses a misspelt dataset and missing weights by name (in-process:
    the subprocess runs above already show the script starts; its logger set-up is left out, as
    it would stop the loggers of this process from propagating to the tests after it)."""
    import importlib.util

    import pytest

    from detectron2.engine import default_argument_parser
    from vis_d2.data.build import UnknownDatasetError
    from vis_d2.data.builtin import register_all_ytvis

    register_all_ytvis(str(data_root))
    spec = importlib.util.spec_from_file_location("train_net", os.path.join(REPO, "train_net.py"))
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    monkeypatch.setattr(train_net, "default_setup", lambda cfg, args: None)
    monkeypatch.setattr(train_net, "setup_logger", lambda *a, **k: None)
    base = ["--config-file", os.path.join(REPO, "configs/synthvis/R18_demo.yaml"),
            "OUTPUT_DIR", str(tmp_path / "bad")]

    def setup(*opts):
        return train_net.setup(default_argument_parser().parse_args(base + list(opts)))

    with pytest.raises(UnknownDatasetError) as exc:
        setup("DATASETS.TRAIN", '("synthvis_trian",)')
    assert "Dataset 'synthvis_trian' (in DATASETS.TRAIN) is not registered" in str(exc.value)
    assert "synthvis_train" in str(exc.value)  # the suggestion
    with pytest.raises(FileNotFoundError) as exc:
        setup("MODEL.WEIGHTS", str(tmp_path / "missing.pth"))
    assert f"MODEL.WEIGHTS points to '{tmp_path / 'missing.pth'}', which does not exist" in \
        str(exc.value)
    # --eval-only without weights would score a randomly initialised model
    with pytest.raises(ValueError, match="--eval-only needs the weights to evaluate: give "
                                         "MODEL.WEIGHTS"):
        train_net.setup(default_argument_parser().parse_args(["--eval-only"] + base))


def test_solver_optimizer_choice():
    """SOLVER.OPTIMIZER picks detectron2's SGD or AdamW; both get SOLVER.CLIP_GRADIENTS."""
    import pytest
    import torch

    from vis_d2.config import get_vis_cfg
    from vis_d2.engine import VISTrainer

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()

    def one_step(*opts):
        cfg = get_vis_cfg(os.path.join(REPO, "configs/synthvis/R18_demo.yaml"),
                          ["MODEL.DEVICE", "cpu", "SOLVER.BASE_LR", "0.1", "SOLVER.WEIGHT_DECAY", "0.0",
                           "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "5.0", *opts])
        opt = VISTrainer.build_optimizer(cfg, model)
        with torch.no_grad():
            model.weight.zero_()
        model.weight.grad = torch.tensor([[30.0, 40.0]])  # norm 50, clipped to 5
        opt.step()
        return opt, model.weight.detach().clone()

    opt, w = one_step("SOLVER.OPTIMIZER", "SGD", "SOLVER.MOMENTUM", "0.0")
    assert isinstance(opt, torch.optim.SGD)
    assert torch.allclose(w, torch.tensor([[-0.3, -0.4]]))
    opt, w = one_step("SOLVER.OPTIMIZER", "ADAMW")
    assert isinstance(opt, torch.optim.AdamW)
    # Adam's first step moves every coordinate by lr (sign of the gradient), clipped or not.
    assert torch.allclose(w, torch.tensor([[-0.1, -0.1]]), atol=1e-6)
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert type(opt).__name__ == "AdamWWithGradientClip"  # detectron2's clipping wrapper
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER must be 'SGD' or 'ADAMW', got 'LION'"):
        one_step("SOLVER.OPTIMIZER", "LION")
