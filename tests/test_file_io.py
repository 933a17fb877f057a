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


def test_a_failed_checkpoint_names_file_and_free_space_and_keeps_the_old_one(tmp_path,
                                                                           monkeypatch):
    """A full disk made torch's zip writer fail with 'unexpected pos 40565760 vs 40565652'
    (CI, round 14): the error must name the file and the free space, and leave the last
    good checkpoint and last_checkpoint as they were."""
    import shutil

    import torch

    from vis_d2.engine import checkpoint as ckpt_mod

    model = torch.nn.Linear(256, 1024)   # 1 MiB of float32 weights
    ckpt = ckpt_mod.AtomicCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000999")
    good = (tmp_path / "model_0000999.pth").read_bytes()

    def disk_full(obj, f):
        f.write(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4 vs 2")

    monkeypatch.setattr(ckpt_mod.torch, "save", disk_full)
    usage = shutil.disk_usage(str(tmp_path))
    monkeypatch.setattr(ckpt_mod.shutil, "disk_usage",
                        lambda p: usage._replace(free=512 * 1024))
    with pytest.raises(RuntimeError) as err:
        ckpt.save("model_0001999")
    msg = str(err.value)
    assert os.path.join(str(tmp_path), "model_0001999.pth") in msg
    assert "unexpected pos 4 vs 2" in msg
    assert "0.5 MiB are free" in msg and "too little" in msg and "1.0 MiB of weights" in msg
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000999.pth"]
    assert (tmp_path / "model_0000999.pth").read_bytes() == good
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000999.pth"
