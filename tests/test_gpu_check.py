"""tools/gpu_check.py: without CUDA it says so and exits 0; on CPU its dry run does every step
(a training step of the TCIS config, the deform_conv2d check, the three inference variants)."""
import importlib.util
import json
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location(
        "gpu_check", os.path.join(ROOT, "tools", "gpu_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_and_exits_0(gpu_check, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--output", str(out)]) == 0
    assert "no CUDA device on this machine" in capsys.readouterr().out
    assert not out.exists()


def test_dry_run_on_cpu_does_every_step(gpu_check, tmp_path):
    out = tmp_path / "dry.json"
    assert gpu_check.main(["--device", "cpu", "--dry-run", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ok"] and result["dry_run"] and result["environment"]["device"] == "cpu"
    step = result["amp_training_step"]
    assert step["precision"] == "float32" and step["trainer"] == "SimpleTrainer"  # AMP needs CUDA
    assert step["losses_finite"] and step["has_loss_tcis"] and step["parameters_moved"] > 0
    assert {"loss_mask", "loss_track", "loss_tcis"} <= set(step["losses"])
    deform = result["deform_conv2d"]
    assert deform["max_rel_diff"]["zero_offsets_vs_conv2d"] <= deform["tolerance"]
    assert not deform["cross_device"]
    variants = result["inference"]["variants"]
    assert list(variants) == ["single scale", "scales 0.7/1.0/1.3", "2-model ensemble"]
    for v in variants.values():
        assert v["frames_per_s"] > 0 and 0 < v["detections_per_frame"] <= 10


def test_the_deform_check_fails_on_a_wrong_kernel(gpu_check, monkeypatch):
    def off_by_a_bit(x, offset, weight, padding):
        return torch.nn.functional.conv2d(x, weight, padding=padding) * 1.001

    monkeypatch.setattr(gpu_check, "deform_conv2d", off_by_a_bit)
    check = gpu_check.deform_conv_check("cpu", dry_run=True)
    assert not check["ok"]
    assert check["max_rel_diff"]["zero_offsets_vs_conv2d"] == pytest.approx(1e-3, rel=0.05)
