"""vis_d2's checkpointer: atomic saves, safe loading, weights that must fit, resume that falls
back to the newest readable checkpoint.

detectron2's ``Checkpointer.save`` streams ``torch.save`` straight into the final file and then
rewrites ``last_checkpoint`` in place; a kill during either leaves a file that breaks
``--resume``. Here both go to a temporary file in the same folder first and are moved into
place with ``os.replace`` (atomic on POSIX); the temporary files a kill leaves behind are
removed when a trainer starts (:meth:`AtomicCheckpointer.remove_stale_temp_files`).

Loading differs from detectron2's ``DetectionCheckpointer`` in four ways:

- ``.pth`` files are read with ``torch.load(weights_only=True)``, whatever the environment
  (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``) says, so a file cannot run code; a truncated or foreign
  file gets :class:`UnreadableCheckpointError` naming it.
- ``.pkl`` files (detectron2's model zoo) are opened only with ``trust_pkl``
  (``MODEL.VIS.CHECKPOINT.TRUST_PKL``), and then by an unpickler that builds nothing but numpy
  arrays and plain containers (:class:`UnsafeCheckpointError` otherwise): detectron2 opens them
  with ``pickle.load``, which runs whatever the file says.
- with ``strict`` (evaluation and prediction, unless ``MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL``),
  weights missing from the file or of another shape are an :class:`IncompatibleCheckpointError`,
  not a "Skip loading" warning before scoring a partly random model.
- ``resume_or_load(resume=True)`` falls back from an unreadable last checkpoint to the newest
  readable ``model_*.pth``, with a warning naming the bad file.
"""
import os
import pickle
import re
import shutil
from typing import List
from urllib.parse import urlparse

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from ..file_io import atomic_open, atomic_write_bytes

__all__ = [
    "AtomicCheckpointer",
    "CheckpointError",
    "IncompatibleCheckpointError",
    "UnreadableCheckpointError",
    "UnsafeCheckpointError",
    "check_weights_path",
]

TRUST_PKL_KEY = "MODEL.VIS.CHECKPOINT.TRUST_PKL True (train.trust_pkl=True in a LazyConfig)"
ALLOW_PARTIAL_KEY = ("MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL True (train.allow_partial=True in a "
                     "LazyConfig)")
# Prefixes of the temporary files AtomicCheckpointer.save and tag_last_checkpoint write
# (vis_d2.file_io.atomic_open names them ".tmp_" + the target's name + a random suffix).
_TEMP_PREFIXES = (".tmp_model_", ".tmp_last_checkpoint")


class CheckpointError(RuntimeError):
    """A weights file vis_d2 will not load; the message names the file and what to do."""


class UnreadableCheckpointError(CheckpointError):
    """The file is truncated, empty, or was not written by ``torch.save`` / ``pickle``."""


class UnsafeCheckpointError(CheckpointError):
    """Loading the file could run code: an untrusted ``.pkl``, or pickled objects beyond
    tensors, arrays and plain containers."""


class IncompatibleCheckpointError(CheckpointError):
    """The file lacks some of the model's weights, or holds them in other shapes."""


def check_weights_path(weights: str) -> None:
    """Fail early, naming the path, when MODEL.WEIGHTS is a local file that does not exist.

    URLs and detectron2:// catalog names are left to detectron2 (they cannot be fetched on a
    machine without network, and detectron2 says so itself).
    """
    if not weights or "://" in weights:
        return
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"MODEL.WEIGHTS points to '{weights}', which does not exist. Give the path of a "
            "detectron2 checkpoint (.pth/.pkl), or '' to train from scratch."
        )


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays, numpy scalars and plain containers, and refuses every other
    global a pickle names (a function or class it would call)."""

    ALLOWED = frozenset({
        # numpy arrays (protocols 0-4, and 5's in-band buffers), dtypes and scalars, under
        # numpy 1 and numpy 2 module names
        *((m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
          for n in ("_reconstruct", "scalar")),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        # protocol 2 stores bytes as _codecs.encode(str, "latin1")
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
        *(("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "bytearray",
                                    "bytes", "str", "int", "float", "complex", "bool")),
    })

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refused to build '{module}.{name}': a .pkl checkpoint may hold only numpy "
                "arrays and plain containers (dict, list, tuple, OrderedDict)"
            )
        return super().find_class(module, name)


def _local(path: str) -> str:
    """``path`` without a URL query (detectron2 reads e.g. ``?matching_heuristics=True``)."""
    return urlparse(path)._replace(query="").geturl()


def _free_space_note(folder: str, state_dict) -> str:
    """One sentence on the free space in ``folder`` against the size of the model weights."""
    free = shutil.disk_usage(folder).free
    weights = sum(t.numel() * t.element_size() for t in state_dict.values()
                  if isinstance(t, torch.Tensor))
    note = f"{free / 2**20:.1f} MiB are free on the filesystem of '{folder}'"
    if free < 2 * weights:
        # a checkpoint holds the weights and more (optimizer state, EMA, scheduler): below
        # twice the weights' size it does not fit
        note += f", too little for a checkpoint of {weights / 2**20:.1f} MiB of weights and more"
    return note + "."


def _unreadable(filename: str, error: Exception, what: str) -> UnreadableCheckpointError:
    """The error for a file that ``torch.load`` / the unpickler failed on: its name, and the
    first sentence of the loader's message."""
    message = str(error).split("\n")[0].split(". ")[0][:200]
    cause = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return UnreadableCheckpointError(
        f"'{filename}' is not a readable checkpoint: truncated or {what} ({cause})")


def _first(items, n: int = 5) -> str:
    """The first ``n`` items, comma-separated, with "..." when there are more."""
    return ", ".join(map(str, items[:n])) + (", ..." if len(items) > n else "")


class AtomicCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with atomic saves and the safe, checked loading of the module
    docstring.

    Args:
        model, save_dir, save_to_disk, checkpointables: as ``DetectionCheckpointer``.
        trust_pkl: open ``.pkl`` files (with the arrays-only unpickler); False refuses them.
        strict: refuse a file that lacks some of the model's weights or holds other shapes
            (evaluation, prediction); False loads what fits, as detectron2 does (fine-tuning).
    """

    def __init__(self, model, save_dir="", *, save_to_disk=None, trust_pkl: bool = False,
                 strict: bool = False, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.trust_pkl = bool(trust_pkl)
        self.strict = bool(strict)
        self._loading = None  # the file being loaded, for the messages of _load_model

    # ---- saving --------------------------------------------------------------------------
    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        try:
            with atomic_open(save_file) as f:
                torch.save(data, f)
        except (OSError, RuntimeError) as e:
            # A full disk surfaces from torch's zip writer as "unexpected pos A vs B", which
            # names neither the file nor the cause: say both, and that nothing was lost.
            raise RuntimeError(
                f"Could not write checkpoint '{save_file}' ({type(e).__name__}: {e}). "
                f"{_free_space_note(self.save_dir, data['model'])} The checkpoints already in "
                f"'{self.save_dir}' and its last_checkpoint are unchanged."
            ) from e
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_bytes(
            os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename.encode()
        )

    def remove_stale_temp_files(self) -> List[str]:
        """Remove the temporary files that a save killed midway left in ``save_dir``; returns
        their names. Call it when a trainer starts on ``save_dir``, before it saves."""
        if not self.save_dir or not self.save_to_disk or not os.path.isdir(self.save_dir):
            return []
        stale = sorted(n for n in os.listdir(self.save_dir) if n.startswith(_TEMP_PREFIXES))
        for name in stale:
            os.remove(os.path.join(self.save_dir, name))
        if stale:
            self.logger.warning(f"Removed {len(stale)} temporary file(s) of an interrupted "
                             f"checkpoint save from '{self.save_dir}': {', '.join(stale)}")
        return stale

    # ---- loading -------------------------------------------------------------------------
    def load(self, path, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(_local(path)):
            # fvcore would assert, with no word of what to do
            raise FileNotFoundError(f"checkpoint '{path}' does not exist")
        self._loading = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            # DetectionCheckpointer.load resets this only when it returns, and asserts it is
            # unset on entry: a file that failed to load would block every later load.
            self._parsed_url_during_load = None
            self._loading = None

    def _load_file(self, filename: str):
        if filename.endswith(".pkl"):
            checkpoint = self._load_pkl(filename)
        else:
            checkpoint = super()._load_file(filename)
        weights = checkpoint.get("model")
        if not isinstance(weights, dict):
            raise UnreadableCheckpointError(
                f"'{filename}' is not a checkpoint of model weights: its 'model' entry is a "
                f"{type(weights).__name__}, not a dict of tensors")
        other = [k for k, v in weights.items() if not hasattr(v, "shape")]
        if other:
            raise UnreadableCheckpointError(
                f"'{filename}' is not a checkpoint of model weights: 'model' holds "
                f"{len(other)} entries that are not tensors or arrays (first: {_first(other)})")
        return checkpoint

    def _torch_load(self, filename: str):
        """``torch.load`` with ``weights_only=True``: tensors and plain containers only."""
        try:
            loaded = torch.load(filename, map_location=torch.device("cpu"), weights_only=True)
        except pickle.UnpicklingError as e:
            unsafe = re.search(r"GLOBAL (\S+)", str(e))
            if unsafe:
                raise UnsafeCheckpointError(
                    f"'{filename}' holds pickled Python objects ({unsafe.group(1)}) besides "
                    "tensors and plain containers; torch.load(weights_only=True) refuses them, as "
                    "building them could run code. Load it only if you trust its source, and "
                    "save its 'model' state dict alone (torch.save({'model': state_dict}, ...))."
                ) from e
            raise _unreadable(filename, e, "not written by torch.save") from e
        except Exception as e:  # torch reports a damaged file as any of a dozen exception types
            raise _unreadable(filename, e, "not written by torch.save") from e
        if not isinstance(loaded, dict):
            raise UnreadableCheckpointError(
                f"'{filename}' holds a {type(loaded).__name__}, not a checkpoint (a dict with "
                "the model's state dict)"
            )
        return loaded

    def _load_pkl(self, filename: str) -> dict:
        """A detectron2 / Detectron1 model-zoo ``.pkl``, read with the arrays-only unpickler,
        then converted as ``DetectionCheckpointer._load_file`` converts it."""
        if not self.trust_pkl:
            raise UnsafeCheckpointError(
                f"'{filename}' is a pickle (.pkl) file, and opening a pickle can run any code it "
                f"holds. Set {TRUST_PKL_KEY} to load it if you trust its source (e.g. "
                "detectron2's model zoo); it is then read with an unpickler that builds only "
                "numpy arrays and plain containers."
            )
        try:
            with PathManager.open(filename, "rb") as f:
                data = _ArraysOnlyUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as e:
            if str(e).startswith("refused to build"):
                raise UnsafeCheckpointError(f"'{filename}': {e}") from e
            raise _unreadable(filename, e, "not a pickle of weights") from e
        except Exception as e:
            raise _unreadable(filename, e, "not a pickle of weights") from e
        if not isinstance(data, dict):
            raise UnreadableCheckpointError(
                f"'{filename}' holds a {type(data).__name__}, not a dict of weights")
        # DetectionCheckpointer._load_file's conversion of what its pickle.load returned
        if "model" in data and "__author__" in data:
            self.logger.info("Reading a file from '{}'".format(data["__author__"]))
            return data
        if "blobs" in data:  # Caffe2 / Detectron1 detection models; ImageNet models have none
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def _load_model(self, checkpoint):
        n_model = len(self.model.state_dict())
        incompatible = super()._load_model(checkpoint)
        if self.strict and (incompatible.missing_keys or incompatible.incorrect_shapes):
            shapes = incompatible.incorrect_shapes
            # fvcore drops the keys of another shape before loading, so they come back missing
            missing = [k for k in incompatible.missing_keys if k not in {k for k, *_ in shapes}]
            parts = []
            if missing:
                parts.append(f"{len(missing)} are missing from it (first: {_first(missing)})")
            if shapes:
                parts.append(f"{len(shapes)} have another shape (first: " + _first(
                    [f"{k} {tuple(c)} in the file, {tuple(m)} in the model"
                     for k, c, m in shapes], 3) + ")")
            raise IncompatibleCheckpointError(
                f"'{self._loading}' does not fit the model's {n_model} weights: "
                f"{' and '.join(parts)}. Evaluating or predicting with it would run a partly "
                "random model. Give the checkpoint of a model built from this config, or set "
                f"{ALLOW_PARTIAL_KEY} to use it anyway."
            )
        return incompatible

    # ---- resuming ------------------------------------------------------------------------
    def resume_or_load(self, path: str, *, resume: bool = True):
        """As detectron2's: with ``resume`` and a ``last_checkpoint`` in ``save_dir``, load the
        checkpoint it names with every checkpointable, falling back to the newest readable
        ``model_*.pth`` when that one is unreadable; otherwise load the model weights of
        ``path`` ('' loads nothing, unless ``strict``). Returns what ``load`` returns."""
        if resume and self.has_checkpoint():
            return self._resume()
        if resume and path and "://" not in path and not os.path.isfile(_local(path)):
            raise FileNotFoundError(
                f"--resume found no checkpoint to resume from in '{self.save_dir}' (it has no "
                f"last_checkpoint file), and the weights to start from, '{path}' (MODEL.WEIGHTS "
                "/ train.init_checkpoint), do not exist. Give the OUTPUT_DIR of the run to "
                "resume, or existing weights to start from ('' for none)."
            )
        if self.strict and not path:
            raise ValueError(
                f"No weights to evaluate: '{self.save_dir}' holds no checkpoint (no "
                "last_checkpoint file) and MODEL.WEIGHTS / train.init_checkpoint is empty."
            )
        return self.load(path, checkpointables=[])

    def _resume_candidates(self) -> List[str]:
        """The checkpoint ``last_checkpoint`` names, then the other ``model_*.pth`` files of
        ``save_dir``, newest first (each save writes a new file, so its modification time
        follows the iteration)."""
        last = self.get_checkpoint_file()  # "" when last_checkpoint vanished meanwhile
        others = [f for f in self.get_all_checkpoint_files()
                  if os.path.basename(f).startswith("model_") and f != last]
        others.sort(key=lambda f: (os.path.getmtime(f), f), reverse=True)
        return ([last] if last else []) + others

    def _resume(self):
        tried = []
        for candidate in self._resume_candidates():
            try:
                loaded = self.load(candidate)
            except (UnreadableCheckpointError, UnsafeCheckpointError, FileNotFoundError) as e:
                self.logger.warning(f"Cannot resume from '{candidate}': {e}")
                tried.append(candidate)
                continue
            if tried:
                self.logger.warning(
                    f"Resumed from '{candidate}', the newest readable checkpoint in "
                    f"'{self.save_dir}', instead of the unreadable {_first(tried)}.")
            return loaded
        raise UnreadableCheckpointError(
            f"--resume found no readable checkpoint in '{self.save_dir}'; tried: "
            f"{', '.join(tried) or 'none'}. Delete or move away the unreadable files (and last_checkpoint) "
            "to train again from MODEL.WEIGHTS, or run without --resume into a new OUTPUT_DIR."
        )
