"""The import graph of vis_d2: no import cycle (counting imports made inside functions); what
``import vis_d2`` and the metric's command line load; the third-party warnings printed at import."""
import ast
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vis_d2")


def _modules():
    """{dotted module name: file path} of every module of the vis_d2 package."""
    out = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), os.path.dirname(ROOT))
                parts = rel[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out[".".join(parts)] = os.path.join(folder, name)
    return out


def import_graph(modules):
    """{module: set of vis_d2 modules it imports anywhere in its body}.

    ``from pkg import name`` counts as an import of ``pkg.name`` where that is a module, else of
    ``pkg`` (its ``__init__``).
    """
    graph = {}
    for mod, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        is_pkg = path.endswith("__init__.py")
        package = mod if is_pkg else mod.rpartition(".")[0]
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            deps.update(t for t in targets if t in modules and t != mod)
        graph[mod] = deps
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, path)
                if found:
                    return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_finder_sees_cycles_through_function_level_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    modules = _modules()
    assert "vis_d2.tracking.video_tracker" in modules and "vis_d2.engine" in modules
    graph = import_graph(modules)
    # config.py imports the tracker; the predictor imports the frame reader inside the package
    assert "vis_d2.tracking.video_tracker" in graph["vis_d2.config"]
    assert "vis_d2.tracking" in graph["vis_d2.engine.predictor"]


def test_vis_d2_has_no_import_cycle():
    cycle = find_cycle(import_graph(_modules()))
    if cycle:
        pytest.fail("import cycle: " + " -> ".join(cycle))


# --------------------------------------------------------------------------------------------
# What `import vis_d2` and the metric's command line load
# --------------------------------------------------------------------------------------------

REPO = os.path.dirname(ROOT)

# Run first in a subprocess: importing torch, detectron2 or fvcore raises from then on.
_BLOCK_HEAVY = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "detectron2", "fvcore"):
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Blocker())
"""


def _python(code, *args, timeout=120):
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_metric_command_runs_with_torch_and_detectron2_blocked(tmp_path):
    mask = {"size": [4, 5], "counts": [5, 3, 12]}  # uncompressed RLE: 3 pixels
    gt = {"videos": [{"id": 1, "height": 4, "width": 5, "length": 2}],
          "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                           "segmentations": [mask, None], "areas": [3, None]}]}
    import pycocotools.mask as mask_util

    rle = mask_util.frPyObjects(mask, 4, 5)
    results = [{"video_id": 1, "category_id": 1, "score": 0.5,
                "segmentations": [{"size": [4, 5], "counts": rle["counts"].decode()}, None]}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    code = _BLOCK_HEAVY + """
import runpy
import vis_d2, vis_d2.evaluation
assert not any(m.split(".")[0] in ("torch", "detectron2") for m in sys.modules)
sys.argv = ["vis_d2.evaluation"] + sys.argv[1:]
try:
    runpy.run_module("vis_d2.evaluation", run_name="__main__", alter_sys=True)
except SystemExit as e:
    print("exit", e.code)
"""
    out = _python(code, "--gt", str(tmp_path / "gt.json"), "--results",
                  str(tmp_path / "res.json"), "--json")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "exit 0", out.stdout + out.stderr
    assert json.loads(lines[-2])["AP"] == pytest.approx(1.0, abs=1e-9)
    # The blocker works: the evaluator (a detectron2 DatasetEvaluator) cannot be imported.
    out = _python(_BLOCK_HEAVY + "from vis_d2.evaluation import YTVISEvaluator")
    assert out.returncode != 0 and "blocked: detectron2" in out.stderr


def test_import_vis_d2_is_light_and_the_config_registers_everything():
    code = """
import sys
import vis_d2
assert "torch" not in sys.modules, "import vis_d2 imported torch"
cfg = vis_d2.get_vis_cfg(opts=["MODEL.DEVICE", "cpu"])
from detectron2.data import DatasetCatalog
from detectron2.modeling import META_ARCH_REGISTRY, ROI_HEADS_REGISTRY
print("VideoRCNN" in META_ARCH_REGISTRY, "VISROIHeads" in ROI_HEADS_REGISTRY,
      "ytvis_2021_train" in DatasetCatalog.list(), cfg.MODEL.VIS.TRACK_HEAD.NUM_FC)
"""
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "2"]


def _calls_jit_script(tree):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr == "script"
                and isinstance(node.value, ast.Attribute) and node.value.attr == "jit"):
            return True
        if (isinstance(node, ast.ImportFrom) and node.module == "torch.jit"
                and any(a.name == "script" for a in node.names)):
            return True
    return False


def test_our_code_never_calls_torch_jit_script():
    """vis_d2 filters torch's torch.jit.script FutureWarning while third-party modules import
    (vis_d2.quiet_import); none of our own code may call it, so that filter hides nothing
    of ours."""
    assert _calls_jit_script(ast.parse("import torch\nf = torch.jit.script(g)"))
    assert _calls_jit_script(ast.parse("from torch.jit import script"))
    assert not _calls_jit_script(ast.parse("torch.jit.trace(m, x)"))
    found = []
    for folder in ("vis_d2", "tools", "projects", "tests"):
        for path, _, files in os.walk(os.path.join(REPO, folder)):
            for name in files:
                if name.endswith(".py") and name != "test_import_graph.py":
                    with open(os.path.join(path, name)) as f:
                        if _calls_jit_script(ast.parse(f.read())):
                            found.append(os.path.join(path, name))
    with open(os.path.join(REPO, "train_net.py")) as f:
        assert not _calls_jit_script(ast.parse(f.read()))
    assert found == []


def test_third_party_jit_script_warnings_are_filtered_and_ours_are_not(tmp_path):
    """fvcore.nn and detectron2.modeling script functions at import; imported through vis_d2
    (as the entry points do, first) their FutureWarnings are gone, while a torch.jit.script call
    of the caller's own still warns once."""
    script = tmp_path / "caller.py"  # TorchScript reads the function's source from its file
    script.write_text("""
import vis_d2.data, vis_d2.modeling
import detectron2.engine, detectron2.evaluation
import torch
def f(x: int) -> int:
    return x + 1
torch.jit.script(f)
""")
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("`torch.jit.script` is deprecated") == 1, out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_net.py", "tools/demo.py", "tools/benchmark.py",
                                    "projects/VIS_Ablation/train_net.py"])
def test_entry_points_print_no_third_party_warning(script):
    out = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout
    assert "Warning" not in out.stderr, out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("module", ["vis_d2.pseudo_labels.quality", "vis_d2.ensemble",
                                    "vis_d2.predict"])
def test_module_commands_print_no_third_party_warning(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout
    assert "Warning" not in out.stderr, out.stderr
