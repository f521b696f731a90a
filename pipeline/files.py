"""Atomic file writes, and the clean-up of what a killed writer leaves behind.

Every file the pipeline writes (frames, checkpoints, caches, reports) goes through a hidden temporary in
the same folder and a rename, so a reader or a resumed run sees the old file or the new one, never half of
one. Techniques and render folders both use it, so it sits below them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def temporary_path(path: Path) -> Path:
    """The hidden temporary a writer of `path` writes before its rename: in the same folder (so the
    rename is atomic), named by this process (two writers never share one), and named so that
    `remove_stale_temporaries` knows it. It keeps the suffix, for writers that pick a format by it."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a hidden temporary file in the same folder, then rename: a reader (or a resumed run)
    sees the old file or the new one, never half of one."""
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
