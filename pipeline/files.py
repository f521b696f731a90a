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


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a hidden temporary file in the same folder, then rename: a reader (or a resumed run)
    sees the old file or the new one, never half of one. The temporary keeps the suffix, for writers
    that pick a format by it."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files left by a killed writer; returns how many."""
    n = 0
    for pattern in (".*.tmp", ".*.tmp.*"):  # frames end in .tmp; other writers keep their suffix after it
        for p in folder.glob(pattern):
            p.unlink(missing_ok=True)
            n += 1
    return n
