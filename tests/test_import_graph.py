"""No import cycle inside vis_d2, counting imports made inside functions."""
import ast
import os

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
