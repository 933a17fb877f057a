"""``import_quietly``: import third-party modules without the warnings their import prints.

fvcore.nn and detectron2.modeling call ``torch.jit.script`` at import, which torch deprecates
with a FutureWarning per call: every command printed it twice. It is theirs to change, so it is
filtered while they import and nowhere else; vis_d2's own code never calls ``torch.jit.script``
(tests/test_import_graph.py checks), and a caller's call still warns.
"""
import importlib
import warnings

__all__ = ["import_quietly"]

# The FutureWarning torch gives each torch.jit.script call.
JIT_SCRIPT_DEPRECATED = r"`torch\.jit\.script` is deprecated"


def import_quietly(*names: str) -> None:
    """Import the modules ``names`` (third-party ones that call ``torch.jit.script`` at import)
    with that deprecation warning filtered until they are imported."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_SCRIPT_DEPRECATED, category=FutureWarning)
        for name in names:
            importlib.import_module(name)
