"""Atomic file writes: results and checkpoints are never left half-written.

A writer killed mid-way leaves the previous file (or none) in place, never a truncated one:
data goes to a temporary file in the same folder, which then replaces the target with
``os.replace`` (atomic on POSIX when both are on one filesystem).
"""
import contextlib
import json
import os
import tempfile

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_json"]


@contextlib.contextmanager
def atomic_open(path: str):
    """Open ``path`` for binary writing through a temp file in the same folder; on success the
    temp file replaces ``path`` (``os.replace``), on error it is removed and ``path`` is kept.
    The file gets the permissions a plain ``open()`` would give it (0666 less the umask)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600: results and checkpoints would be unreadable to others.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)   # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_json(path: str, obj, **dump_kwargs) -> None:
    """``json.dump`` ``obj`` to ``path`` atomically."""
    atomic_write_bytes(path, json.dumps(obj, **dump_kwargs).encode("utf-8"))
