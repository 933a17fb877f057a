"""Weight EMA (vis_d2.engine.ema): the update rule, the weight swap, and the trainer's use of it."""
import os

import pytest
import torch

from detectron2.engine import HookBase

from helpers import TINY_OPTS
from vis_d2.engine.ema import ModelEMA

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ema_update_rule_and_weight_swap():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = ModelEMA(model, decay=0.75)
    with torch.no_grad():
        model.weight.fill_(4.0)
        ema.update()  # the first update copies: 4
        model.weight.fill_(8.0)
        ema.update()  # 0.75 * 4 + 0.25 * 8 = 5
    assert ema.averaged.module.weight.item() == pytest.approx(5.0)
    with ema.averaged_weights():
        assert model.weight.item() == pytest.approx(5.0)
    assert model.weight.item() == 8.0  # restored on exit
    ema.copy_to_model()
    assert model.weight.item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="SOLVER.EMA.DECAY must be in"):
        ModelEMA(model, decay=1.0)


def test_trainer_saves_the_average_as_final_model(data_root, tmp_path, restore_catalogs):
    from vis_d2.config import get_vis_cfg
    from vis_d2.data.builtin import register_all_ytvis
    from vis_d2.engine import VISTrainer

    register_all_ytvis(str(data_root))
    cfg = get_vis_cfg(os.path.join(REPO, "configs/synthvis/R18_demo.yaml"), TINY_OPTS + [
        "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()", "SOLVER.MAX_ITER", "3",
        "SOLVER.BASE_LR", "0.01", "SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.DECAY", "0.5",
        "SOLVER.CHECKPOINT_PERIOD", "2", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path)])
    name = "roi_heads.box_predictor.cls_score.weight"
    seen = []

    class Record(HookBase):  # the live weights after each step, before the EMA hook runs
        def after_step(self):
            seen.append(dict(self.trainer.model.named_parameters())[name].detach().clone())

    class Trainer(VISTrainer):
        def build_hooks(self):
            return [Record()] + super().build_hooks()  # first, so it sees the raw weights

    trainer = Trainer(cfg)
    trainer.train()
    assert len(seen) == 3 and not torch.equal(seen[0], seen[2])
    expected = seen[0]
    for w in seen[1:]:
        expected = 0.5 * expected + 0.5 * w
    final = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert torch.allclose(final["model"][name], expected, atol=1e-6)
    assert not torch.allclose(final["model"][name], seen[2])
    # Intermediate checkpoints carry the average for --resume.
    mid = torch.load(tmp_path / "model_0000001.pth", weights_only=False)
    assert "model_ema" in mid and int(mid["model_ema"]["n_averaged"]) == 2
