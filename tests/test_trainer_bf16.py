"""CPU bfloat16 training (SOLVER.CPU_BF16, vis_d2.engine.cpu_short_run): the CPU check, the autocast
step, and which step the trainer picks."""
import os

import pytest
import torch

from detectron2.utils.events import EventStorage

from helpers import TINY_OPTS
from vis_d2.engine import cpu_short_run
from vis_d2.engine.cpu_short_run import CPUBFloat16Trainer, cpu_has_bf16

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("flags, expected", [
    ("fpu avx2 avx512f avx512_bf16 avx512_vnni", True),
    ("fpu avx2 amx_bf16 amx_tile", True),
    ("fpu avx2 avx512f avx512_vnni", False),
])
def test_cpu_has_bf16_reads_the_flags(tmp_path, flags, expected):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n")
    assert cpu_has_bf16(str(info)) is expected
    assert cpu_has_bf16(str(tmp_path / "missing")) is False


class _Net(torch.nn.Module):
    """A conv and a linear layer with a loss dict, as a detectron2 model returns in training."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.fc = torch.nn.Linear(8, 2)
        self.seen_dtypes = []

    def forward(self, batch):
        x = torch.relu(self.conv(batch["image"]))
        self.seen_dtypes.append(x.dtype)
        logits = self.fc(x.mean((2, 3)))
        return {"loss_cls": torch.nn.functional.cross_entropy(logits, batch["label"])}


def _loader(batch):
    while True:
        yield batch


def test_autocast_step_runs_bf16_and_keeps_fp32_weights_and_gradients():
    torch.manual_seed(0)
    batch = {"image": torch.randn(4, 3, 12, 12), "label": torch.tensor([0, 1, 1, 0])}
    net = _Net()
    w0 = {k: v.detach().clone() for k, v in net.named_parameters()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    step = CPUBFloat16Trainer(net, _loader(batch), opt)
    step.zero_grad_before_forward = True
    with EventStorage(0) as storage:
        step.storage = storage
        step.iter = 0
        step.run_step()
    assert net.seen_dtypes == [torch.bfloat16]
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in net.parameters())
    # The same gradients as autocasting the forward alone and differentiating outside it.
    ref = _Net()
    ref.load_state_dict(w0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ref(batch)["loss_cls"]
    loss.backward()
    for (name, p), (_, q) in zip(net.named_parameters(), ref.named_parameters()):
        assert torch.equal(p.grad, q.grad), name
        assert torch.allclose(p.detach(), w0[name] - 0.1 * q.grad), name  # the SGD step
    # And close to, but not the same as, float32 gradients (bfloat16 keeps 8 mantissa bits).
    f32 = _Net()
    f32.load_state_dict(w0)
    f32(batch)["loss_cls"].backward()
    g_bf = torch.cat([q.grad.flatten() for q in ref.parameters()])
    g_32 = torch.cat([q.grad.flatten() for q in f32.parameters()])
    rel = ((g_bf - g_32).norm() / g_32.norm()).item()
    assert 0.0 < rel < 0.05


@pytest.mark.parametrize("has_bf16, expected", [(True, CPUBFloat16Trainer), (False, None)])
def test_trainer_uses_bf16_only_where_the_cpu_has_it(data_root, tmp_path, restore_catalogs,
                                                     monkeypatch, has_bf16, expected):
    from detectron2.engine import SimpleTrainer

    from vis_d2.config import get_vis_cfg
    from vis_d2.data.builtin import register_all_ytvis
    from vis_d2.engine import VISTrainer

    register_all_ytvis(str(data_root))
    monkeypatch.setattr(cpu_short_run, "cpu_has_bf16", lambda: has_bf16)
    cfg = get_vis_cfg(os.path.join(REPO, "configs/synthvis/R18_demo.yaml"), TINY_OPTS + [
        "SOLVER.CPU_BF16", "True", "SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()",
        "OUTPUT_DIR", str(tmp_path)])
    trainer = VISTrainer(cfg)
    if expected is None:
        assert type(trainer._trainer) is SimpleTrainer
        assert trainer.precision == "float32"
    else:
        assert type(trainer._trainer) is expected
        assert trainer.precision == "bfloat16 autocast"
        trainer.train()  # one real step of the demo model under bfloat16 autocast
        losses = trainer.storage.latest()
        assert all(torch.isfinite(torch.tensor(losses[k][0])) for k in losses if k.startswith("loss"))
        assert "loss_mask" in losses and "loss_track" in losses


def test_step_precision_names_each_step_class():
    from detectron2.engine import AMPTrainer, SimpleTrainer

    from vis_d2.engine.cpu_short_run import step_precision

    assert step_precision(SimpleTrainer) == "float32"
    assert step_precision(CPUBFloat16Trainer) == "bfloat16 autocast"
    assert step_precision(AMPTrainer) == "float16 AMP"
