"""``python -m vis_d2.env``: what this environment has, for bug reports and set-up checks.

Prints Python, torch, torchvision, detectron2 (and whether its compiled ``_C`` is present),
CUDA, the main dependencies, and the datasets found under ``DETECTRON2_DATASETS``.
"""
import importlib
import os
import platform
import sys

__all__ = ["collect_env_info", "main", "resolve_device"]


def resolve_device(device: str, cpu_fallback: bool,
                   keys=("MODEL.DEVICE", "MODEL.VIS.CPU_FALLBACK")) -> str:
    """``device``, or "cpu" where it asks for CUDA, CUDA does not work and ``cpu_fallback`` is
    set (with a warning). Without ``cpu_fallback`` that case is a RuntimeError naming the two
    config ``keys`` (device, fallback): a GPU run must not train on the CPU unnoticed."""
    import logging

    import torch

    if not device.startswith("cuda") or torch.cuda.is_available():
        return device
    why = ("this torch is built without CUDA" if torch.version.cuda is None
           else f"torch {torch.__version__} finds no working CUDA device")
    if cpu_fallback:
        logging.getLogger("vis_d2").warning(
            f"{keys[0]}={device} but {why}: running on the CPU ({keys[1]} is set)")
        return "cpu"
    raise RuntimeError(
        f"{keys[0]}={device} but {why}. Give {keys[0]} cpu to run on the CPU, or set "
        f"{keys[1]} True to fall back to the CPU with a warning where CUDA is missing.")


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception as e:  # a broken install is worth reporting, not crashing on
        return f"not importable ({type(e).__name__}: {e})"


def collect_env_info() -> list:
    """Rows (name, value) describing the environment."""
    import torch

    rows = [("Python", sys.version.split()[0] + f" ({platform.platform()})"),
            ("vis_d2", _version("vis_d2")),
            ("torch", torch.__version__),
            ("torchvision", _version("torchvision"))]
    try:
        import detectron2

        rows.append(("detectron2", f"{detectron2.__version__} @ {os.path.dirname(detectron2.__file__)}"))
        try:
            from detectron2 import _C  # noqa: F401

            rows.append(("detectron2._C", "present (compiled ops available)"))
        except ImportError:
            rows.append(("detectron2._C", "absent: ROIAlign/NMS from torchvision; deformable conv "
                                          "from torchvision.ops (all vis_d2 needs)"))
    except ImportError as e:
        rows.append(("detectron2", f"not importable ({e}); run `make setup`"))
    rows.append(("CUDA available", str(torch.cuda.is_available())))
    if torch.cuda.is_available():
        rows.append(("CUDA", f"{torch.version.cuda}, {torch.cuda.device_count()} x "
                             f"{torch.cuda.get_device_name(0)}"))
    for mod in ("numpy", "scipy", "cv2", "pycocotools", "fvcore", "iopath", "omegaconf"):
        rows.append((mod, _version(mod)))
    root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    rows.append(("DETECTRON2_DATASETS", os.path.abspath(root)))
    try:
        from detectron2.data import DatasetCatalog, MetadataCatalog

        import vis_d2.data.builtin  # noqa: F401

        found = []
        for name in sorted(DatasetCatalog.list()):
            meta = MetadataCatalog.get(name)
            jf = meta.get("json_file", None)
            if meta.get("evaluator_type", None) == "ytvis" or name.startswith("synthvis"):
                found.append(f"{name}{'' if jf and os.path.isfile(jf) else ' (json missing)'}")
        rows.append(("datasets", "\n".join(found) if found else "none registered"))
    except Exception as e:
        rows.append(("datasets", f"registration failed: {e}"))
    return rows


def main() -> None:
    from tabulate import tabulate

    print(tabulate(collect_env_info()))


if __name__ == "__main__":
    main()
