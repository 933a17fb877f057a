"""Bad weights files and output folders (vis_d2.engine.checkpoint), one row each: the input,
the exception type (or the handled outcome) and message fragments that name the file or key.

Every row fails on the code before issue 22 but the five that load (``*-loads``,
``predictor-fitting-weights``): those keep what worked working under the new checks."""
import importlib.util
import logging
import os
import pickle

import numpy as np
import pytest
import torch

from detectron2.engine import default_argument_parser

from vis_d2.config import get_vis_cfg
from vis_d2.engine.checkpoint import (
    AtomicCheckpointer,
    IncompatibleCheckpointError,
    UnreadableCheckpointError,
    UnsafeCheckpointError,
)

from helpers import TINY_OPTS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs/synthvis/R18_demo.yaml")
MARKER = "code_ran.txt"  # what the crafted pickles write when they are opened


class RunsCode:
    """Unpickled, it writes ``path``: a stand-in for an attacker's command."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').close()",)


def toy_model():
    """4 weights: 0.weight (4, 3), 0.bias (4,), 1.weight (2, 4), 1.bias (2,)."""
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))


def numbered(model, width=None):
    """The model's state dict as numpy arrays, entry k filled with k + 1 (width: a first
    dimension of another size, as from a model of another width)."""
    out = {}
    for k, (name, v) in enumerate(model.state_dict().items()):
        shape = (width,) + tuple(v.shape[1:]) if width else tuple(v.shape)
        out[name] = np.full(shape, k + 1.0, np.float32)
    return out


def torch_weights(arrays):
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


# ---- makers: (tmp_path, model) -> (file, the weights the model must hold after loading) ------
def evil_pkl(tmp, model):
    data = pickle.dumps({"model": numbered(model), "__author__": RunsCode(tmp / MARKER)})
    # The crafted file does run code under a plain pickle.load (what detectron2 calls).
    pickle.loads(data)
    assert (tmp / MARKER).exists()
    (tmp / MARKER).unlink()
    (tmp / "evil.pkl").write_bytes(data)
    return tmp / "evil.pkl", None


def d2_zoo_pkl(tmp, model):
    weights = numbered(model)
    with open(tmp / "zoo.pkl", "wb") as f:
        pickle.dump({"model": weights, "__author__": "Detectron2 Model Zoo"}, f, protocol=2)
    return tmp / "zoo.pkl", weights


def caffe2_blobs_pkl(tmp, model):
    # Detectron1 names: "0_w" is "0.weight"; optimizer momenta are dropped
    weights = numbered(model)
    blobs = {k.replace(".weight", "_w").replace(".bias", "_b"): v for k, v in weights.items()}
    blobs["0_w_momentum"] = np.zeros((4, 3), np.float32)
    with open(tmp / "c2.pkl", "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    return tmp / "c2.pkl", weights


def truncated_pkl(tmp, model):
    data = pickle.dumps({"model": numbered(model), "__author__": "x"})
    (tmp / "cut.pkl").write_bytes(data[: len(data) // 2])
    return tmp / "cut.pkl", None


def evil_pth(tmp, model):
    torch.save({"model": model.state_dict(), "extra": RunsCode(tmp / MARKER)}, tmp / "evil.pth")
    return tmp / "evil.pth", None


def good_pth(tmp, model):
    weights = numbered(model)
    torch.save({"model": torch_weights(weights), "iteration": 9}, tmp / "good.pth")
    return tmp / "good.pth", weights


def truncated_pth(tmp, model):
    path, _ = good_pth(tmp, model)
    data = path.read_bytes()
    (tmp / "cut.pth").write_bytes(data[: len(data) // 2])
    return tmp / "cut.pth", None


def empty_pth(tmp, model):
    (tmp / "empty.pth").write_bytes(b"")
    return tmp / "empty.pth", None


def text_pth(tmp, model):
    (tmp / "notes.pth").write_text("hello world\n")
    return tmp / "notes.pth", None


def list_pth(tmp, model):
    torch.save([torch.zeros(3)], tmp / "list.pth")
    return tmp / "list.pth", None


def no_tensors_pth(tmp, model):
    torch.save({"model": {"lr": 0.1, "0.weight": torch.zeros(4, 3)}}, tmp / "hparams.pth")
    return tmp / "hparams.pth", None


def other_width_pth(tmp, model):
    weights = numbered(model, width=8)
    torch.save({"model": torch_weights(weights)}, tmp / "wide.pth")
    return tmp / "wide.pth", None


def foreign_keys_pth(tmp, model):
    torch.save({"model": {"backbone.conv1.weight": torch.zeros(8, 3, 3, 3)}}, tmp / "other.pth")
    return tmp / "other.pth", None


def head_mismatch_pth(tmp, model):
    # a pretrained "backbone" (layer 0) with a head for another number of classes (layer 1)
    weights = numbered(model)
    weights["1.weight"], weights["1.bias"] = np.ones((5, 4), np.float32), np.ones(5, np.float32)
    torch.save({"model": torch_weights(weights)}, tmp / "pretrained.pth")
    return tmp / "pretrained.pth", {k: weights[k] for k in ("0.weight", "0.bias")}


def missing_pth(tmp, model):
    return tmp / "nope.pth", None


UNREADABLE = "is not a readable checkpoint: truncated or not written by torch.save"
PARTIAL_KEY = "MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL True (train.allow_partial=True"

# id, maker, AtomicCheckpointer options, environment, expected exception (None: it loads),
# fragments of the message ("{file}" is the file's path)
LOAD_ROWS = [
    pytest.param(evil_pkl, {}, {}, UnsafeCheckpointError,
                 ["'{file}' is a pickle (.pkl) file", "MODEL.VIS.CHECKPOINT.TRUST_PKL True",
                  "train.trust_pkl=True"], id="pkl-untrusted-refused"),
    pytest.param(evil_pkl, {"trust_pkl": True}, {}, UnsafeCheckpointError,
                 ["'{file}': refused to build 'builtins.exec'"], id="pkl-trusted-code-refused"),
    pytest.param(truncated_pkl, {"trust_pkl": True}, {}, UnreadableCheckpointError,
                 ["'{file}' is not a readable checkpoint: truncated or not a pickle"],
                 id="pkl-truncated"),
    pytest.param(d2_zoo_pkl, {"trust_pkl": True, "strict": True}, {}, None, [],
                 id="pkl-detectron2-zoo-loads"),
    pytest.param(caffe2_blobs_pkl, {"trust_pkl": True, "strict": True}, {}, None, [],
                 id="pkl-caffe2-blobs-loads"),
    pytest.param(evil_pth, {}, {}, UnsafeCheckpointError,
                 ["'{file}' holds pickled Python objects (exec)"], id="pth-code-refused"),
    # the variable that makes torch.load default to weights_only=False must not open the door
    pytest.param(evil_pth, {}, {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}, UnsafeCheckpointError,
                 ["'{file}' holds pickled Python objects (exec)"],
                 id="pth-code-refused-despite-env"),
    pytest.param(good_pth, {"strict": True}, {}, None, [], id="pth-loads"),
    pytest.param(truncated_pth, {}, {}, UnreadableCheckpointError,
                 ["'{file}' " + UNREADABLE, "RuntimeError"], id="pth-truncated"),
    pytest.param(empty_pth, {}, {}, UnreadableCheckpointError,
                 ["'{file}' " + UNREADABLE, "EOFError"], id="pth-empty"),
    pytest.param(text_pth, {}, {}, UnreadableCheckpointError,
                 ["'{file}' " + UNREADABLE], id="pth-text-file"),
    pytest.param(list_pth, {}, {}, UnreadableCheckpointError,
                 ["'{file}' holds a list, not a checkpoint"], id="pth-list-not-dict"),
    pytest.param(no_tensors_pth, {}, {}, UnreadableCheckpointError,
                 ["'{file}' is not a checkpoint of model weights", "1 entries that are not "
                  "tensors or arrays (first: lr)"], id="pth-model-entry-not-tensors"),
    pytest.param(other_width_pth, {"strict": True}, {}, IncompatibleCheckpointError,
                 ["'{file}' does not fit the model's 4 weights: 4 have another shape (first: 0.weight "
                  "(8, 3) in the file, (4, 3) in the model", PARTIAL_KEY],
                 id="pth-other-width-strict"),
    pytest.param(foreign_keys_pth, {"strict": True}, {}, IncompatibleCheckpointError,
                 ["'{file}' does not fit the model's 4 weights: 4 are missing from it (first: "
                  "0.weight, 0.bias, 1.weight, 1.bias)", PARTIAL_KEY],
                 id="pth-no-model-keys-strict"),
    pytest.param(head_mismatch_pth, {}, {}, None, [], id="pth-partial-fine-tuning-loads"),
    pytest.param(missing_pth, {}, {}, FileNotFoundError, ["checkpoint '{file}' does not exist"],
                 id="pth-missing"),
]


@pytest.mark.parametrize("make, options, env, error, fragments", LOAD_ROWS)
def test_weights_file(make, options, env, error, fragments, tmp_path, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    torch.manual_seed(0)
    model = toy_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path, expected = make(tmp_path, model)
    checkpointer = AtomicCheckpointer(model, **options)
    if error is None:
        checkpointer.load(str(path))
        state = model.state_dict()
        for k in state:
            want = torch.from_numpy(expected[k]) if k in expected else before[k]
            assert torch.equal(state[k], want), k
        return
    with pytest.raises(error) as exc:
        checkpointer.load(str(path))
    for fragment in fragments:
        assert fragment.format(file=path) in str(exc.value)
    assert not (tmp_path / MARKER).exists()  # no code from the file ran
    # a failed load leaves the checkpointer usable (detectron2 would assert on the next one)
    checkpointer.load(str(good_pth(tmp_path, model)[0]))


# ---- output folders and --resume ----------------------------------------------------------
def saved(tmp, iteration, model):
    """model_<iteration>.pth as the periodic checkpointer writes it (weights filled with
    ``iteration``), and last_checkpoint naming it."""
    for v in model.state_dict().values():
        v.fill_(float(iteration))
    AtomicCheckpointer(model, str(tmp)).save(f"model_{iteration:07d}", iteration=iteration)
    os.utime(tmp / f"model_{iteration:07d}.pth", (iteration, iteration))  # saved in that order
    return tmp / f"model_{iteration:07d}.pth"


def corrupt_newest(tmp, model):
    saved(tmp, 1, model)
    newest = saved(tmp, 3, model)
    newest.write_bytes(newest.read_bytes()[:100])
    return str(tmp / "none.pth"), [f"Cannot resume from '{newest}'", UNREADABLE,
                                   f"Resumed from '{tmp / 'model_0000001.pth'}'"], 1


def last_names_missing_file(tmp, model):
    saved(tmp, 1, model)
    saved(tmp, 3, model).unlink()
    return "", [f"Cannot resume from '{tmp / 'model_0000003.pth'}': checkpoint", "does not exist",
                "Resumed from"], 1


def corrupt_final_skips_older_best(tmp, model):
    # by name model_best.pth (iteration 3) would come first; it is older than model_0000005
    saved(tmp, 1, model)
    best = tmp / "model_best.pth"
    best.write_bytes(saved(tmp, 3, model).read_bytes())
    os.utime(best, (3.5, 3.5))
    saved(tmp, 5, model)
    saved(tmp, 7, model).rename(tmp / "model_final.pth")
    (tmp / "last_checkpoint").write_text("model_final.pth")
    (tmp / "model_final.pth").write_bytes(b"PK\x03\x04")
    return "", [f"Cannot resume from '{tmp / 'model_final.pth'}'",
                f"Resumed from '{tmp / 'model_0000005.pth'}'"], 5


def all_unreadable(tmp, model):
    for it in (1, 3):
        saved(tmp, it, model).write_bytes(b"")
    return "", None, None


def empty_dir_missing_weights(tmp, model):
    return str(tmp / "weights" / "R18.pth"), None, None


RESUME_ROWS = [
    pytest.param(corrupt_newest, {}, None, [], id="resume-corrupt-newest-falls-back"),
    pytest.param(last_names_missing_file, {}, None, [],
                 id="resume-last-checkpoint-names-missing-file-falls-back"),
    pytest.param(corrupt_final_skips_older_best, {}, None, [],
                 id="resume-corrupt-final-falls-back-to-newest"),
    pytest.param(all_unreadable, {}, UnreadableCheckpointError,
                 ["--resume found no readable checkpoint in '{dir}'; tried: {dir}/model_0000003.pth,"
                  " {dir}/model_0000001.pth", "run without --resume"],
                 id="resume-no-readable-checkpoint"),
    pytest.param(empty_dir_missing_weights, {}, FileNotFoundError,
                 ["--resume found no checkpoint to resume from in '{dir}'",
                  "'{dir}/weights/R18.pth' (MODEL.WEIGHTS / train.init_checkpoint), do not exist"],
                 id="resume-empty-dir-missing-weights"),
    pytest.param(lambda tmp, model: ("", None, None), {"strict": True}, ValueError,
                 ["No weights to evaluate: '{dir}' holds no checkpoint",
                  "MODEL.WEIGHTS / train.init_checkpoint is empty"],
                 id="eval-resume-empty-dir-no-weights"),
]


class Captured(logging.Handler):
    """The messages logged to ``logger`` inside the ``with`` block, at INFO and above (by
    hand: earlier tests may have stopped detectron2's and fvcore's loggers propagating)."""

    def __init__(self, logger):
        super().__init__(logging.INFO)
        self.logger, self.messages = logger, []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level)

    @property
    def text(self):
        return "\n".join(self.messages)


@pytest.mark.parametrize("make, options, error, fragments", RESUME_ROWS)
def test_resume_from_output_dir(make, options, error, fragments, tmp_path):
    torch.manual_seed(0)
    model = toy_model()
    weights, warned, iteration = make(tmp_path, model)
    checkpointer = AtomicCheckpointer(model, str(tmp_path), **options)
    if error is not None:
        with pytest.raises(error) as exc:
            checkpointer.resume_or_load(weights, resume=True)
        for fragment in fragments:
            assert fragment.format(dir=tmp_path) in str(exc.value)
        return
    with Captured(checkpointer.logger) as log:
        extra = checkpointer.resume_or_load(weights, resume=True)
    assert extra["iteration"] == iteration
    assert all(torch.equal(v, torch.full_like(v, float(iteration)))
               for v in model.state_dict().values())
    for fragment in warned:
        assert fragment in log.text


def test_trainer_start_removes_temp_files_of_an_interrupted_save(tmp_path):
    """A kill during a save leaves .tmp_model_*.pth (and possibly .tmp_last_checkpoint*);
    the next trainer start on the folder removes them, naming them, and nothing else."""
    stale = [".tmp_model_0000009.pthab12cd", ".tmp_last_checkpoint9f8e7d"]
    for name in stale + ["model_0000004.pth", ".tmp_results.json1234", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x" * 10)
    checkpointer = AtomicCheckpointer(toy_model(), str(tmp_path))
    with Captured(checkpointer.logger) as log:
        assert checkpointer.remove_stale_temp_files() == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == [".tmp_results.json1234", "model_0000004.pth",
                                            "notes.txt"]
    assert f"Removed 2 temporary file(s) of an interrupted checkpoint save from '{tmp_path}': " \
           f"{', '.join(sorted(stale))}" in log.text


# ---- entry points: the predictor, train_net.py and the LazyConfig train_net --------------
def load_script(path, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Weights of the tiny model (box head 64 wide), of one of another width (48), of another
    model and a crafted pickle."""
    from vis_d2.engine import VISTrainer

    out = tmp_path_factory.mktemp("weights")
    for name, width in (("tiny.pth", "64"), ("narrow.pth", "48")):
        torch.manual_seed(0)
        model = VISTrainer.build_model(get_vis_cfg(
            CONFIG, TINY_OPTS + ["MODEL.ROI_BOX_HEAD.FC_DIM", width]))
        torch.save({"model": model.state_dict()}, out / name)
    torch.save({"model": {"backbone.conv1.weight": torch.zeros(8, 3, 3, 3)}}, out / "other.pth")
    pickle.dump({"model": {}, "__author__": RunsCode(out / MARKER)}, open(out / "evil.pkl", "wb"))
    return out


PREDICTOR_ROWS = [
    pytest.param("other.pth", [], IncompatibleCheckpointError,
                 ["'{file}' does not fit the model's", "weights:", "are missing from it (first: "
                  "backbone.", PARTIAL_KEY], id="predictor-no-model-keys"),
    pytest.param("narrow.pth", [], IncompatibleCheckpointError,
                 ["'{file}' does not fit the model", "have another shape (first: "
                  "roi_heads.box_head.fc1.weight (48, ", PARTIAL_KEY], id="predictor-other-width"),
    pytest.param("narrow.pth", ["MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL", "True"], None, [],
                 id="predictor-other-width-allowed"),
    pytest.param("evil.pkl", [], UnsafeCheckpointError,
                 ["'{file}' is a pickle (.pkl) file", "MODEL.VIS.CHECKPOINT.TRUST_PKL True"],
                 id="predictor-pkl-untrusted"),
    pytest.param("tiny.pth", [], None, [], id="predictor-fitting-weights"),
]


@pytest.mark.parametrize("weights, opts, error, fragments", PREDICTOR_ROWS)
def test_predictor_weights(weights, opts, error, fragments, tiny_weights):
    from vis_d2.engine import VISPredictor

    path = tiny_weights / weights
    cfg = get_vis_cfg(CONFIG, TINY_OPTS + ["MODEL.WEIGHTS", str(path)] + opts)
    if error is None:
        assert VISPredictor(cfg).model is not None
        return
    with pytest.raises(error) as exc:
        VISPredictor(cfg)
    for fragment in fragments:
        assert fragment.format(file=path) in str(exc.value)
    assert not (tiny_weights / MARKER).exists()


@pytest.fixture
def train_net_main(data_root, restore_catalogs, monkeypatch):
    """train_net.main, in-process on the tiny synthvis set, without detectron2's logger set-up
    (it would stop later tests' loggers from propagating)."""
    from vis_d2.data.builtin import register_all_ytvis

    register_all_ytvis(str(data_root))
    train_net = load_script("train_net.py", "train_net_ckpt_rows")
    monkeypatch.setattr(train_net, "default_setup", lambda cfg, args: None)
    monkeypatch.setattr(train_net, "setup_logger", lambda *a, **k: None)
    monkeypatch.setattr("vis_d2.engine.trainer.setup_logger", lambda *a, **k: None)

    def main(*argv):
        return train_net.main(default_argument_parser().parse_args(
            ["--config-file", CONFIG] + list(argv)))
    return main


def test_train_net_eval_only_refuses_weights_of_another_width(train_net_main, tiny_weights,
                                                              tmp_path):
    """Row train-net-eval-other-width: 60 "Skip loading" warnings and metrics, before."""
    path = tiny_weights / "narrow.pth"
    with pytest.raises(IncompatibleCheckpointError) as exc:
        train_net_main("--eval-only", *TINY_OPTS, "OUTPUT_DIR", str(tmp_path),
                       "MODEL.WEIGHTS", str(path))
    assert f"'{path}' does not fit the model" in str(exc.value)
    assert "have another shape" in str(exc.value) and PARTIAL_KEY in str(exc.value)
    assert not (tmp_path / "inference").exists()  # nothing was evaluated


def test_train_net_resume_with_missing_weights_and_empty_output_dir(train_net_main, tmp_path):
    """Row train-net-resume-missing-weights: a bare AssertionError, before."""
    weights = tmp_path / "R18_pretrained.pth"
    with pytest.raises(FileNotFoundError) as exc:
        train_net_main("--resume", *TINY_OPTS, "OUTPUT_DIR", str(tmp_path / "run"),
                       "MODEL.WEIGHTS", str(weights), "SOLVER.MAX_ITER", "1")
    assert f"--resume found no checkpoint to resume from in '{tmp_path / 'run'}'" in \
        str(exc.value)
    assert f"'{weights}' (MODEL.WEIGHTS" in str(exc.value)


@pytest.fixture
def lazy_main(data_root, restore_catalogs, monkeypatch):
    """projects/VIS_Ablation/train_net.py's main, without detectron2's logger set-up, on the
    tiny synthvis (its datasets are checked before the weights are loaded)."""
    from vis_d2.data.builtin import register_all_ytvis

    register_all_ytvis(str(data_root))
    lazy = load_script("projects/VIS_Ablation/train_net.py", "lazy_train_net_ckpt_rows")
    monkeypatch.setattr(lazy, "default_setup", lambda cfg, args: None)
    monkeypatch.setattr(lazy, "setup_logger", lambda *a, **k: None)

    def main(*argv):
        return lazy.main(default_argument_parser().parse_args(
            ["--config-file", os.path.join(REPO, "projects/VIS_Ablation/configs/A1_baseline.py")]
            + list(argv)))
    return main


def test_lazy_eval_only_without_init_checkpoint(lazy_main, tmp_path):
    """Row lazy-eval-only-no-weights: evaluated a randomly initialised model, before."""
    with pytest.raises(ValueError, match=r"--eval-only needs the weights to evaluate: give "
                                         r"train.init_checkpoint=<checkpoint.pth>"):
        lazy_main("--eval-only", "train.init_checkpoint=''", f"train.output_dir={tmp_path}")


def test_lazy_eval_only_refuses_weights_that_do_not_fit(lazy_main, tiny_weights, tmp_path):
    """Row lazy-eval-other-model: "Skip loading" warnings, then metrics, before."""
    path = tiny_weights / "other.pth"
    with pytest.raises(IncompatibleCheckpointError) as exc:
        lazy_main("--eval-only", f"train.init_checkpoint={path}", "train.device=cpu",
                  f"train.output_dir={tmp_path}")
    assert f"'{path}' does not fit the model" in str(exc.value)
    assert "are missing from it" in str(exc.value) and "train.allow_partial=True" in \
        str(exc.value)
