"""Kill and resume: a short CPU training run of train_net.py is SIGKILLed during a checkpoint
save, resumed with --resume, SIGKILLed again between two checkpoints, and resumed to the end.
Each resumed run must start at the last complete checkpoint's iteration + 1 with that
checkpoint's weights exactly, train at the LR the uninterrupted schedule gives each iteration,
and leave no temporary file of the interrupted save behind.

The runs are train_net.py itself, started through a small wrapper (written to tmp_path) that
reports what the trainer did and kills the process where the test says."""
import json
import os
import signal
import subprocess
import sys

import torch

from helpers import TINY_OPTS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Checkpoints after iterations 1, 3, 5 (and model_final at 5); the warm-up outlasts the run, so
# the LR differs at every iteration and an off-by-one shows.
OPTS = TINY_OPTS + ["SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2",
                    "SOLVER.WARMUP_ITERS", "100", "SOLVER.STEPS", "()", "SOLVER.BASE_LR", "0.01",
                    "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()"]

WRAPPER = r'''
"""train_net.py, reporting to $KR_REPORT (one JSON line per event: the start iteration after
resume_or_load, with the loaded weights in $KR_REPORT.loaded.pth; each iteration's LRs) and
SIGKILLing itself at the start of iteration $KR_KILL_AT_ITER or midway through the
$KR_KILL_AT_SAVE-th torch.save (half of the file written)."""
import io, json, os, runpy, signal, sys

import torch

REPO = sys.argv.pop(1)
sys.path.insert(0, REPO)
from vis_d2.engine.trainer import VISTrainer

REPORT = os.environ["KR_REPORT"]
KILL_AT_ITER = int(os.environ.get("KR_KILL_AT_ITER", "-1"))
KILL_AT_SAVE = int(os.environ.get("KR_KILL_AT_SAVE", "-1"))
torch_save = torch.save


def report(**event):
    with open(REPORT, "a") as f:
        f.write(json.dumps(event) + "\n")


def resume_or_load(self, resume=True, _orig=VISTrainer.resume_or_load):
    _orig(self, resume=resume)
    torch_save(self.model.state_dict(), REPORT + ".loaded.pth")
    report(start_iter=self.start_iter)


def run_step(self, _orig=VISTrainer.run_step):
    if self.iter == KILL_AT_ITER:
        os.kill(os.getpid(), signal.SIGKILL)
    report(iter=self.iter, lrs=[g["lr"] for g in self.optimizer.param_groups])
    _orig(self)


saves = []


def save(obj, f, *args, **kwargs):
    saves.append(1)
    if len(saves) != KILL_AT_SAVE:
        return torch_save(obj, f, *args, **kwargs)
    buf = io.BytesIO()
    torch_save(obj, buf, *args, **kwargs)
    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


VISTrainer.resume_or_load, VISTrainer.run_step, torch.save = resume_or_load, run_step, save
sys.argv[0] = os.path.join(REPO, "train_net.py")
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def run(tmp_path, data_root, name, *args, kill_at_iter=-1, kill_at_save=-1):
    """One train_net.py run into tmp_path/out; returns (return code, log, report events)."""
    wrapper = tmp_path / "run_killable.py"
    wrapper.write_text(WRAPPER)
    report = tmp_path / f"{name}.jsonl"
    env = dict(os.environ, DETECTRON2_DATASETS=str(data_root), OMP_NUM_THREADS="1",
               KR_REPORT=str(report), KR_KILL_AT_ITER=str(kill_at_iter),
               KR_KILL_AT_SAVE=str(kill_at_save))
    cmd = [sys.executable, str(wrapper), REPO, "--config-file",
           os.path.join(REPO, "configs/synthvis/R18_demo.yaml"), *args, *OPTS,
           "OUTPUT_DIR", str(tmp_path / "out")]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    events = [json.loads(line) for line in report.read_text().splitlines()]
    return out.returncode, out.stdout + out.stderr, events


def expected_lrs(n):
    """The LR of iterations 0..n-1 of the uninterrupted schedule: the trainer's scheduler,
    stepped once per iteration."""
    from vis_d2.config import get_vis_cfg
    from vis_d2.engine import VISTrainer

    cfg = get_vis_cfg(os.path.join(REPO, "configs/synthvis/R18_demo.yaml"), OPTS)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
    scheduler = VISTrainer.build_lr_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def assert_same_weights(loaded_file, saved_weights):
    loaded = torch.load(loaded_file, weights_only=True)
    assert loaded.keys() == saved_weights.keys()
    for k, v in saved_weights.items():
        assert torch.equal(loaded[k], v), k


def stray(out):
    return sorted(n for n in os.listdir(out) if n.startswith(".tmp_"))


def test_kill_during_save_and_between_checkpoints_then_resume(data_root, tmp_path):
    out = tmp_path / "out"
    lrs = expected_lrs(6)

    # 1) killed midway through its second save (model_0000003): half a temp file is left,
    # last_checkpoint still names model_0000001
    rc, log, events = run(tmp_path, data_root, "first", kill_at_save=2)
    assert rc == -signal.SIGKILL, log[-3000:]
    assert [e["iter"] for e in events if "iter" in e] == [0, 1, 2, 3]
    assert all(set(e["lrs"]) == {lrs[e["iter"]]} for e in events if "iter" in e)
    assert (out / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not (out / "model_0000003.pth").exists()
    (partial,) = stray(out)
    assert partial.startswith(".tmp_model_0000003.pth")

    # 2) resumed: from iteration 2 with model_0000001's weights; the temp file is removed (and
    # named); killed at the start of iteration 4, after model_0000003 was saved
    rc, log, events = run(tmp_path, data_root, "second", "--resume", kill_at_iter=4)
    assert rc == -signal.SIGKILL, log[-3000:]
    assert f"Removed 1 temporary file(s) of an interrupted checkpoint save from '{out}': " \
           f"{partial}" in log
    saved = torch.load(out / "model_0000001.pth", weights_only=True)
    assert events[0] == {"start_iter": saved["iteration"] + 1} == {"start_iter": 2}
    assert_same_weights(tmp_path / "second.jsonl.loaded.pth", saved["model"])
    steps = [e for e in events if "iter" in e]
    assert [e["iter"] for e in steps] == [2, 3]
    assert all(set(e["lrs"]) == {lrs[e["iter"]]} for e in steps), (steps, lrs)
    assert (out / "last_checkpoint").read_text() == "model_0000003.pth"
    assert stray(out) == []

    # 3) resumed again: from iteration 4 with model_0000003's weights, to the end
    rc, log, events = run(tmp_path, data_root, "third", "--resume")
    assert rc == 0, log[-3000:]
    saved = torch.load(out / "model_0000003.pth", weights_only=True)
    assert events[0] == {"start_iter": saved["iteration"] + 1} == {"start_iter": 4}
    assert_same_weights(tmp_path / "third.jsonl.loaded.pth", saved["model"])
    # the two checkpoints differ, so loading the older one would have failed the check
    older = torch.load(out / "model_0000001.pth", weights_only=True)["model"]
    assert not all(torch.equal(older[k], v) for k, v in saved["model"].items())
    steps = [e for e in events if "iter" in e]
    assert [e["iter"] for e in steps] == [4, 5]
    assert all(set(e["lrs"]) == {lrs[e["iter"]]} for e in steps), (steps, lrs)
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 5
    assert stray(out) == []
