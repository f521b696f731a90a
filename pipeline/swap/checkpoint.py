"""What a swap checkpoint is called and how its config is read without torch.

Manifest checks (`vfx validate`, `status`, `--dry-run`) need a swap model's config (its preset and face
size) but none of its weights; reading it from the checkpoint's pickle alone keeps them free of torch.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.files import read_torch_file_without_tensors

CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "swap.pt"


class CheckpointError(PipelineError):
    """A checkpoint that is missing, unreadable, or from another preset."""


def checkpoint_file(path: Path) -> Path:
    """The checkpoint file of a model folder (or the file itself); refused when it is not there."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no swap checkpoint (train one with vfx train swap)")
    return path


def checkpoint_config(path: Path) -> dict:
    """The model config of a swap checkpoint, as manifest checks need it. Cached by the file's identity:
    every chunk of every shot loads its manifest."""
    path = checkpoint_file(path)
    st = path.stat()
    return dict(_checkpoint_config(str(path), st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _checkpoint_config(path: str, size: int, mtime_ns: int) -> dict:
    try:
        data = read_torch_file_without_tensors(Path(path))
    except PipelineError as e:
        raise CheckpointError(e.one_line()) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "config" not in data:
        raise CheckpointError(f"{path}: not a swap checkpoint of format {CHECKPOINT_FORMAT}")
    return data["config"]
