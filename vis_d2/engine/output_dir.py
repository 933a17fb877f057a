"""The run folder (``OUTPUT_DIR``): one run at a time, nothing of an earlier run overwritten.

detectron2 writes into ``OUTPUT_DIR`` whatever is there: a second run into an occupied folder
interleaves its ``log.txt`` with the first, replaces ``config.yaml`` (``--resume`` with other
options loses the schedule the checkpoints were trained on), starts its checkpoints over the
earlier run's, and an evaluation replaces the earlier ``results.json``. Here:

- :func:`claim_output_dir`: a lock held until the process ends; a second run into the folder
  is refused, naming the process that holds it;
- :func:`check_new_training`: a training run without ``--resume`` is refused where the folder
  holds an earlier run's checkpoints;
- :func:`keep_earlier_config`: ``config.yaml`` becomes this run's config, and an earlier one that
  differs is kept as ``config.<n>.yaml``, with a warning naming the keys that differ;
- :func:`unused_results_dir`: an evaluation-only run writes its results to ``inference.<n>``
  when ``inference`` holds an earlier run's.
"""
import contextlib
import logging
import os
from typing import Dict, Iterator, List

import yaml

from ..file_io import atomic_write_bytes

__all__ = ["claim_output_dir", "check_new_training", "keep_earlier_config", "unused_results_dir",
           "config_differences"]

LOCK_NAME = ".vis_d2_run.lock"

# Locks this process holds, by folder; flock conflicts between two open files of one process too.
_held_locks: Dict[str, int] = {}


def claim_output_dir(output_dir: str) -> None:
    """Create ``output_dir`` and hold its lock until this process ends.

    Raises RuntimeError naming the folder and the process id of the run that holds it. Does
    nothing where the platform has no ``fcntl`` (there is no portable advisory lock).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory file locks
        return
    key = os.path.realpath(output_dir)
    if key in _held_locks:
        return
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise RuntimeError(
            f"OUTPUT_DIR '{output_dir}' is in use by another vis_d2 run (process {holder}): its "
            "log, config and results would be mixed with this run's. Give another OUTPUT_DIR, "
            "or wait for that run to end.") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode("ascii"))
    _held_locks[key] = fd  # kept open: the lock goes when the process ends


def check_new_training(output_dir: str, resume: bool) -> None:
    """Refuse a training run without ``resume`` into a folder holding an earlier run's
    checkpoints (they would be overwritten, one by one, from iteration 0)."""
    if resume:
        return
    tag = os.path.join(output_dir, "last_checkpoint")
    if os.path.isfile(tag):
        with open(tag) as f:
            last = f.read().strip()
        raise RuntimeError(
            f"OUTPUT_DIR '{output_dir}' holds the checkpoints of an earlier run (last: {last}). "
            "Add --resume to continue that run, or give another OUTPUT_DIR to start a new one.")


def _flatten(tree, prefix: str = "") -> Dict[str, object]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat = {}
    for k, v in tree.items():
        flat.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return flat


def config_differences(old_yaml: str, new_yaml: str) -> List[str]:
    """``["KEY: old -> new", ...]`` for the keys whose values differ between two config dumps
    (yacs or LazyConfig YAML), sorted by key."""
    old, new = _flatten(yaml.safe_load(old_yaml) or {}), _flatten(yaml.safe_load(new_yaml) or {})
    absent = "<absent>"
    return [f"{k}: {old.get(k, absent)!r} -> {new.get(k, absent)!r}"
            for k in sorted(set(old) | set(new)) if old.get(k, absent) != new.get(k, absent)]


def _numbered(path: str) -> str:
    """``path`` with the first free ``.<n>`` before its extension (``config.1.yaml``, ...)."""
    stem, ext = os.path.splitext(path)
    n = 1
    while os.path.exists(f"{stem}.{n}{ext}"):
        n += 1
    return f"{stem}.{n}{ext}"


@contextlib.contextmanager
def keep_earlier_config(output_dir: str) -> Iterator[None]:
    """Around detectron2's ``default_setup`` (which writes ``OUTPUT_DIR/config.yaml``): an
    earlier ``config.yaml`` that differs from the new one is kept as ``config.<n>.yaml``, and a
    warning lists the keys that differ."""
    path = os.path.join(output_dir, "config.yaml")
    earlier = None
    if os.path.isfile(path):
        with open(path) as f:
            earlier = f.read()
    yield
    if earlier is None or not os.path.isfile(path):
        return
    with open(path) as f:
        current = f.read()
    if current == earlier:
        return
    kept = _numbered(path)
    atomic_write_bytes(kept, earlier.encode("utf-8"))
    diffs = config_differences(earlier, current)
    shown = "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")
    logging.getLogger("vis_d2").warning(
        f"{path}: this run's config differs from the earlier run's in {shown or 'formatting'}. "
        f"The earlier config is kept as {kept}.")


def unused_results_dir(folder: str) -> str:
    """Where an evaluation-only run writes its results: ``folder`` (``OUTPUT_DIR/inference``),
    or ``folder.<n>`` (the first free ``n``) when ``folder`` holds an earlier run's."""
    if not any(files for _, _, files in os.walk(folder)):
        return folder
    unused = _numbered(folder)
    logging.getLogger("vis_d2").warning(
        f"{folder} holds the results of an earlier run: this evaluation writes to {unused}")
    return unused
