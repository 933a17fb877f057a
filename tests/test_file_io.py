"""Atomic writes (vis_d2.file_io): the target is replaced whole or not at all, and gets the
permissions a plain open() would give it."""
import json
import os
import stat

import pytest

from vis_d2.data.split import write_json_atomic
from vis_d2.file_io import atomic_open, atomic_write_json


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_written_files_are_readable_like_plain_ones(tmp_path, umask_022):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    for writer in (lambda p: atomic_write_json(str(p), {"a": 1}),
                   lambda p: write_json_atomic({"a": 1}, str(p))):
        target = tmp_path / "out.json"
        writer(target)
        assert json.loads(target.read_text()) == {"a": 1}
        # mkstemp's 0600 would hide results and checkpoints from other users
        assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644
        target.unlink()


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_json(str(target), [1, 2, 3])
    with pytest.raises(RuntimeError):
        with atomic_open(str(target)) as f:
            f.write(b"[4, 5")
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == [1, 2, 3]
    assert sorted(os.listdir(tmp_path)) == ["results.json"]   # no temp file left behind
