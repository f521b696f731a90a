"""Atomic file writes, the clean-up of what a killed writer leaves behind, and safe reads of users' arrays.

Every file the pipeline writes (frames, checkpoints, caches, reports) goes through a hidden temporary in
the same folder and a rename, so a reader or a resumed run sees the old file or the new one, never half of
one. Techniques and render folders both use it, so it sits below them.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError


def temporary_path(path: Path, keep_suffix: bool = True) -> Path:
    """The hidden temporary a writer of `path` writes before its rename: in the same folder (so the
    rename is atomic), named by this process (two writers never share one), and named so that
    `remove_stale_temporaries` knows it. It keeps the suffix, for writers that pick a format by it;
    without it (`keep_suffix=False`: the frames of a sequence) it ends in .tmp, so a half-written frame
    is never among the sequence's files (`*.png`), whoever lists them."""
    if not keep_suffix:
        return path.with_name(f".{path.name}.{os.getpid()}.tmp")
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def refuse_file_at(out: Path, what: str, error: type[PipelineError] = PipelineError) -> None:
    """An --out that must be a folder: a file there is refused by name (making the folder would fail with
    FileExistsError's traceback, after the command had loaded its models)."""
    if out.exists() and not out.is_dir():
        raise error(f"--out {out}: a file is there; give a folder for {what}")


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a hidden temporary file in the same folder, then rename: a reader (or a resumed run)
    sees the old file or the new one, never half of one."""
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_torch_atomic(path: Path, data: object) -> None:
    """`torch.save` through `write_atomic`, into an open file: torch names the archive's records after
    the file it is given by name (here the temporary, which holds the writer's pid), so two trainings
    that make the same weights wrote files with different bytes and checksums, and the stages keyed by
    a model's checksum re-rendered. Given an open file, torch names them `archive/`, whoever writes."""
    import torch  # only the writers of models need it; status and validate read these files without it

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(data, f)

    write_atomic(path, write)


def write_json_atomic(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporaries (`temporary_path`) a killed writer left in the folder or any folder below it
    (frames, elements, review tiles, movies); returns how many. Only for a folder no live writer uses."""
    n = 0
    for pattern in (".*.tmp", ".*.tmp.*"):  # older temporaries end in .tmp; others keep their suffix after it
        for p in folder.rglob(pattern):
            if p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    return n


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip (the second: an empty one)


def read_array(
    path: Path,
    keys: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    ndims: tuple[int, ...] = (1, 2),
    max_values: int = 1 << 22,
    dtype: type = np.float32,
) -> np.ndarray:
    """A finite array of numbers from a user's .npy or .npz (from an .npz: the first of `keys` it has,
    else its first array not in `skip`), read without unpickling: a malformed file fails here, with its
    name, instead of in a render worker after its retries."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
        size = path.stat().st_size
    except OSError as e:
        raise PipelineError(f"{path}: cannot be read: {e.strerror or e}") from None
    if not (head.startswith(NPY_MAGIC) or head[:4] in ZIP_MAGIC):
        raise PipelineError(f"{path}: not a .npy or .npz array file")
    if size > max_values * 8 + (1 << 16):
        raise PipelineError(f"{path}: {size} bytes, more than an array of {max_values} values needs")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            array = data
        else:
            with data:
                names = [k for k in keys if k in data.files] or [n for n in data.files if n not in skip]
                if not names:
                    raise PipelineError(f"{path}: an .npz without an array")
                array = data[names[0]]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PipelineError(f"{path}: not a readable .npy/.npz array ({reason})") from None
    if array.dtype.kind not in "fiu":
        raise PipelineError(f"{path}: an array of {array.dtype}; numbers are needed")
    if array.ndim not in ndims or array.size == 0 or array.size > max_values:
        wanted = " or ".join(f"{n}-d" for n in ndims)
        raise PipelineError(
            f"{path}: an array of shape {list(array.shape)}; a non-empty {wanted} one is needed"
        )
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise PipelineError(f"{path}: {bad} of its {array.size} values are NaN or infinite")
    return array.astype(dtype)


class ForeignObjectsError(PipelineError):
    """A torch file whose pickle holds classes other than tensors and plain containers (rosinality's
    checkpoints hold an argparse.Namespace): only torch, with a safe unpickler, can judge it."""


def torch_file_problem(path: Path, e: BaseException) -> str:
    """Why a torch file could not be read, in words a user can act on (not torch's advice to load it
    unsafely, nor a pickle memo index)."""
    try:
        size = Path(path).stat().st_size
    except OSError as err:
        return f"cannot read it: {err.strerror or err}"
    if size == 0:
        return "the file is empty"
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        return "not a torch.save archive: damaged, cut short, or another kind of file"
    if "Weights only load failed" in str(e):
        return "it holds Python objects besides tensors; files this pipeline writes hold none"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class _TensorFreeUnpickler(pickle.Unpickler):
    """Reads a torch.save pickle without torch: tensors and storages become None; plain containers
    (dicts, lists, tuples, numbers, strings, OrderedDict) come back as they are; any other class is
    refused, so a hostile file runs nothing."""

    def find_class(self, module: str, name: str):
        if module == "torch" or module.startswith("torch."):
            return _tensor_placeholder
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refused class {module}.{name}")

    def persistent_load(self, pid: object) -> None:
        return None


def _tensor_placeholder(*args: object, **kwargs: object) -> None:
    return None


def read_torch_file_without_tensors(path: Path) -> object:
    """What a torch.save file holds, with every tensor as None: the configs, settings and histories of
    checkpoints, for `vfx validate`, `status` and `--dry-run`, which must not import torch (2-7 s). Reads
    only the zip's pickle, never the tensor data."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is None:
                raise PipelineError(f"{path}: not a torch checkpoint (no data.pkl inside)")
            with z.open(name) as f:
                return _TensorFreeUnpickler(f).load()
    except (
        OSError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
    ) as e:
        foreign = isinstance(e, pickle.UnpicklingError) and str(e).startswith("refused class")
        error = ForeignObjectsError if foreign else PipelineError
        raise error(f"{path}: not a readable torch checkpoint: {torch_file_problem(path, e)}") from None
