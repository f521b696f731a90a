"""Render folders: render/<shot>/v###/, never overwritten, locked while written, resumable.

Layout of one version:
    comp/<shot>_comp_v001.1001.png   the frame sequence (each frame written atomically)
    <shot>_comp_v001_<preset>.mov    movies made from the sequence
    render.json                      what this version is (settings hash, frames, state)
    report.json, report.md, contact_sheet.png (and faces_, composite_ contact sheets)
    review/<sheet>.<frame>.npy       while rendering: the contact sheets' tiles, saved by the chunks
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.errors import WorkspaceError
from pipeline.files import remove_stale_temporaries, write_json_atomic

VERSION_DIR = re.compile(r"^v(\d{3,})$")
MAX_VERSION = 99999
# A render signs its version's lock file ("pid N on host") just after it takes the lock; a reader that
# comes between the two finds the file empty or still signed by the render before (a dead process), and
# reads it again for up to this long
LOCK_SIGNING_S = 1.0
LOCK_SIGNATURE = re.compile(r"pid (\d+) on (\S+)")


def ensure_writable(folder: Path) -> None:
    """Create the folder and prove a file can be written there, before any work starts."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise WorkspaceError(f"{folder}: output folder cannot be written: {e.strerror or e}") from None


def existing_versions(shot_dir: Path) -> list[int]:
    if not shot_dir.is_dir():
        return []
    return sorted(
        int(m.group(1)) for p in shot_dir.iterdir() if p.is_dir() and (m := VERSION_DIR.match(p.name))
    )


@dataclass
class RenderVersion:
    shot: str
    number: int
    path: Path
    sequence_ext: str
    _lock: IO | None = None

    @property
    def label(self) -> str:
        return f"v{self.number:03d}"

    @property
    def comp_dir(self) -> Path:
        return self.path / "comp"

    @property
    def base_name(self) -> str:
        return f"{self.shot}_comp_{self.label}"

    def frame_path(self, frame: int) -> Path:
        return self.comp_dir / f"{self.base_name}.{frame:04d}.{self.sequence_ext}"

    @property
    def sequence_pattern(self) -> Path:
        return self.comp_dir / f"{self.base_name}.%04d.{self.sequence_ext}"

    def movie_path(self, preset: str, extension: str) -> Path:
        return self.path / f"{self.base_name}_{preset}.{extension}"

    def frame_done(self, frame: int) -> bool:
        return self.frame_path(frame).is_file()

    @property
    def state_path(self) -> Path:
        return self.path / "render.json"

    def read_state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def write_state(self, **fields) -> None:
        state = self.read_state()
        state.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        write_json_atomic(self.state_path, state)

    def lock(self) -> None:
        """Hold an exclusive lock for this process; the OS drops it if the process dies, so --resume works."""
        f = open(self.path / ".lock", "a+")  # noqa: SIM115 - held open for the life of the render
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _lock_holder(f)
            f.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise self._being_written(holder) from None
            raise
        f.seek(0)
        f.truncate()
        f.write(_signature())
        f.flush()
        self._lock = f

    def locked_by_another(self) -> bool:
        """Whether a live process holds this version's lock (its render is running)."""
        return self.holder() is not None

    @property
    def finished(self) -> bool:
        """Whether the version was rendered to its end (its record says done; an older one has a report)."""
        state = self.read_state()
        return state.get("status") == "done" or (not state and (self.path / "report.json").is_file())

    def _being_written(self, holder: str) -> WorkspaceError:
        return WorkspaceError(f"{self.path}: being written by {holder}; wait for it or render a new version")

    def check_free(self) -> None:
        """Refuse, naming the process, a version that a running render is writing."""
        if holder := self.holder():
            raise self._being_written(holder)

    def holder(self) -> str | None:
        """Who holds this version's lock ("pid N on host"), or None when no render is writing it."""
        path = self.path / ".lock"
        if self._lock is not None or not path.is_file():
            return None
        # Read-only, and a shared lock (which a render's exclusive one still refuses): status may only
        # read the folder, and NFS's emulation of flock wants write access for an exclusive lock.
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return _lock_holder(f)
            fcntl.flock(f, fcntl.LOCK_UN)
            return None

    def unlock(self) -> None:
        if self._lock:
            self._lock.close()
            self._lock = None


def _signature() -> str:
    """What a render writes into the lock it holds (read back by LOCK_SIGNATURE)."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def _lock_holder(f: IO[str]) -> str:
    """The signature in a held lock file, once the render that holds it has signed it (LOCK_SIGNING_S)."""
    end = time.monotonic() + LOCK_SIGNING_S
    while True:
        f.seek(0)
        text = f.read().strip()
        if (text and not _signed_by_the_dead(text)) or time.monotonic() >= end:
            return text or "another process"
        time.sleep(0.02)


def _signed_by_the_dead(text: str) -> bool:
    """Whether a lock's signature names a process of this host that no longer runs."""
    signed = LOCK_SIGNATURE.fullmatch(text)
    if signed is None or signed.group(2) != socket.gethostname():
        return False
    try:
        os.kill(int(signed.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def check_version_number(number: int | None) -> None:
    """Versions count from 1 (v001): a folder named for 0 or less would be one that status and --resume
    never see."""
    if number is not None and not 1 <= number <= MAX_VERSION:
        raise WorkspaceError(f"--render-version {number}: versions are numbered 1 to {MAX_VERSION}")


def version_exists(path: Path, number: int) -> WorkspaceError:
    return WorkspaceError(
        f"{path}: version {number} exists and is never overwritten; use --resume to finish it, "
        "or leave out --render-version for a new one"
    )


def check_new_version(root: Path, shot: str, number: int | None) -> None:
    """Refuse --render-version N for a version that exists, before any work starts."""
    check_version_number(number)
    if number is not None and (path := root / shot / f"v{number:03d}").exists():
        raise version_exists(path, number)


def new_version(root: Path, shot: str, sequence_ext: str, number: int | None = None) -> RenderVersion:
    """Make the next version folder (or the one asked for). An existing folder is never reused."""
    check_version_number(number)
    shot_dir = root / shot
    ensure_writable(shot_dir)
    n = number if number is not None else (existing_versions(shot_dir) or [0])[-1] + 1
    while True:
        path = shot_dir / f"v{n:03d}"
        try:
            path.mkdir()  # atomic: two runs cannot both create the same version
            break
        except FileExistsError:
            if number is not None:
                raise version_exists(path, n) from None
            n += 1
        except OSError as e:
            raise WorkspaceError(f"{path}: cannot create the version folder: {e.strerror or e}") from None
    version = RenderVersion(shot, n, path, sequence_ext)
    version.comp_dir.mkdir()
    return version


def resume_version(root: Path, shot: str, sequence_ext: str, number: int | None = None) -> RenderVersion:
    check_version_number(number)
    shot_dir = root / shot
    versions = existing_versions(shot_dir)
    if number is None:
        if not versions:
            raise WorkspaceError(f"{shot_dir}: no version to resume")
        number = versions[-1]
    path = shot_dir / f"v{number:03d}"
    if not path.is_dir():
        raise WorkspaceError(f"{path}: no such version to resume")
    version = RenderVersion(shot, number, path, sequence_ext)
    version.comp_dir.mkdir(exist_ok=True)
    return version


class ShotCache:
    """The lock on a shot's stage cache (<root>/<shot>/cache), which the renders of every version share.

    A render holds it shared from its plan to its end, for itself and its chunks, wherever they run: they
    read the track, the swapped faces and the latents from the cache. `--force STAGE` deletes entries, so
    it needs the lock alone, and refuses, naming the running render, while another render holds it. The
    OS drops a dead process's lock.
    """

    def __init__(self, root: Path, shot: str):
        self.shot_dir = root / shot
        self._file: IO | None = None

    def _open(self) -> IO:
        if self._file is None:
            self.shot_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.shot_dir / ".cache.lock", "a+")  # noqa: SIM115 - held for the render
        return self._file

    def share(self) -> None:
        """Hold the cache for reading and writing new entries; waits while a --force clears entries."""
        fcntl.flock(self._open(), fcntl.LOCK_SH)

    def claim(self, why: str, mine: RenderVersion | None = None) -> None:
        """Hold the cache alone, to delete entries; a running render of the shot makes this refuse."""
        try:
            fcntl.flock(self._open(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            running = [
                f"{v.path} ({who})"
                for n in existing_versions(self.shot_dir)
                if (v := RenderVersion(self.shot_dir.name, n, self.shot_dir / f"v{n:03d}", ""))
                and (mine is None or v.path != mine.path)
                and (who := v.holder())
            ]
            by = ", ".join(running) or "another process of this shot"
            raise WorkspaceError(
                f"{self.shot_dir / 'cache'}: in use by the render running in {by}; {why} would delete "
                "what it reads: wait for it to finish"
            ) from None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def clean_temporaries(version: RenderVersion) -> int:
    """What killed writers left anywhere in the version (frames, elements, review tiles, movies)."""
    return remove_stale_temporaries(version.path)
