"""Per-parameter gradient clipping in one pass (vis_d2/engine/grad_clip.py) against detectron2's."""
import torch

from detectron2.config import get_cfg
from detectron2.solver.build import maybe_add_gradient_clipping

from vis_d2.config import add_vis_config
from vis_d2.engine.grad_clip import clip_grad_norm_per_parameter_, maybe_add_per_parameter_clipping


def clip_cfg(clip_type="norm", value=1.0, norm_type=2.0, enabled=True):
    cfg = add_vis_config(get_cfg())
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = enabled
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = value
    cfg.SOLVER.CLIP_GRADIENTS.NORM_TYPE = norm_type
    return cfg


def test_clip_values_by_hand():
    big = torch.tensor([3.0, 4.0])  # norm 5 -> scaled to norm 1
    small = torch.tensor([0.3, 0.4])  # norm 0.5: untouched
    half = torch.tensor([[6.0, 8.0]], dtype=torch.float64)  # another dtype, its own group
    clip_grad_norm_per_parameter_([big, small, half], max_norm=1.0)
    assert torch.allclose(big, torch.tensor([0.6, 0.8]), atol=1e-6)
    assert torch.equal(small, torch.tensor([0.3, 0.4]))
    assert torch.allclose(half, torch.tensor([[0.6, 0.8]], dtype=torch.float64), atol=1e-6)
    inf = torch.tensor([-2.0, 1.0])  # max-norm 2 -> halved
    clip_grad_norm_per_parameter_([inf], max_norm=1.0, norm_type=float("inf"))
    assert torch.allclose(inf, torch.tensor([-1.0, 0.5]), atol=1e-6)


def _train(optimizer_type, steps=5):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    opt = optimizer_type(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 6) * 5, torch.randn(16, 3) * 5
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).sum().backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_same_updates_as_detectron2s_per_parameter_clipping():
    for norm_type in (2.0, 1.0):
        cfg = clip_cfg(value=0.5, norm_type=norm_type)
        ours = _train(maybe_add_per_parameter_clipping(cfg, torch.optim.AdamW))
        theirs = _train(maybe_add_gradient_clipping(cfg, torch.optim.AdamW))
        unclipped = _train(torch.optim.AdamW)
        for a, b in zip(ours, theirs):
            assert torch.allclose(a, b, atol=1e-6, rtol=0)
        # the clipping did act: without it the weights differ
        assert max((a - c).abs().max().item() for a, c in zip(ours, unclipped)) > 1e-3


def test_other_clip_types_are_detectron2s():
    assert maybe_add_per_parameter_clipping(clip_cfg(enabled=False), torch.optim.SGD) \
        is torch.optim.SGD
    value_cfg = clip_cfg(clip_type="value", value=0.01)
    ours = _train(maybe_add_per_parameter_clipping(value_cfg, torch.optim.SGD))
    theirs = _train(maybe_add_gradient_clipping(value_cfg, torch.optim.SGD))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_an_optimizer_already_built_is_clipped_alike():
    """The LazyConfig trainer clips its instantiated optimizer with the same function."""
    cfg = clip_cfg(value=0.5)

    def built(params, lr):
        opt = torch.optim.AdamW(params, lr=lr)
        assert maybe_add_per_parameter_clipping(cfg, opt) is opt
        assert type(opt).__name__ == "AdamWWithGradientClip"
        return opt

    ours = _train(built)
    theirs = _train(maybe_add_gradient_clipping(cfg, torch.optim.AdamW))
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
