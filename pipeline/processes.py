"""Child processes that die with the pipeline: the one way the pipeline starts one (ffmpeg, servers).

A render killed with SIGKILL runs no clean-up code, so a child it started (the ffmpeg encoding a movie)
would carry on alone for seconds, writing into the version folder. On Linux each child asks the kernel
for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), through util-linux's `setpriv --pdeathsig`
where it can (no Python between fork and exec: `dying_with_parent`), else in a preexec_fn; the setting
survives the exec of ffmpeg.

The "parent" the kernel watches is the *thread* that forked the child, not the process: the signal comes
when that thread exits. Prefect runs tasks in worker threads, so a child must be waited for by the thread
that started it: `run` blocks until the child exits, and a `popen` caller must wait for (or stop) its
child before its thread ends, or a thread pool retiring the thread would kill the child early.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up in the parent: the child between fork and exec only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGKILL the child when this thread (or process) dies; None where
    the platform has no such setting.

    It runs in the forked child of a threaded process, so it does no more than a foreign call and two
    system calls (no imports, no allocation of its own)."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:  # the parent's Popen raises it
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed: the child would outlive us")
        if os.getppid() != parent:  # the parent died before the setting: no signal will come
            os._exit(127)

    return preexec


@functools.cache
def _setpriv() -> str | None:
    """util-linux's setpriv where it can set the parent-death signal (`--pdeathsig`, util-linux 2.33)."""
    path = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if path is None:
        return None
    try:
        usage = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "--pdeathsig" in usage else None


def dying_with_parent(args: Sequence[str], kwargs: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The command line and Popen options of a child that dies with this thread.

    Where util-linux's setpriv can, the child is `setpriv --pdeathsig KILL -- <args>`: setpriv sets the
    signal and execs the command in the same process, so no Python runs between fork and exec. A
    preexec_fn does run Python there, in a copy of a threaded process: with PyAV 18.1.1, a decoder's
    VideoReformatter freed in that copy waited forever on its slice threads, which the copy does not
    have, and a batch hung at its first movie. Without setpriv, the preexec_fn is the fallback."""
    if "preexec_fn" in kwargs:
        raise TypeError("pipeline.processes sets preexec_fn itself")
    if (setpriv := _setpriv()) is not None:
        return [setpriv, "--pdeathsig", "KILL", "--", *args], kwargs
    return list(args), {**kwargs, "preexec_fn": die_with_parent()}


def popen(args: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """subprocess.Popen for a child that dies with this thread; see the module's note on threads."""
    args, kwargs = dying_with_parent(args, kwargs)
    return subprocess.Popen(args, **kwargs)


def run(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run for a child that dies with this process; it blocks until the child exits, so the
    thread the kernel watches outlives the child."""
    args, kwargs = dying_with_parent(args, kwargs)
    return subprocess.run(args, **kwargs)


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -2, -3, -8  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to a UHD frame come from the heap
TRIM_THRESHOLD = 512 << 20  # freed heap kept for the next frames rather than handed back
TOP_PAD = 64 << 20  # a thread arena's emptied heap (64 MiB) kept for the next frames


def tune_malloc(arenas: int | None = None) -> bool:
    """Make glibc's malloc reuse frame-sized memory instead of mapping fresh pages for every frame; call
    it before threads start (the command line does, first thing).

    By default a block over 128 KiB (the threshold then follows the largest block freed) is mapped on its
    own and unmapped when freed, so every decoded frame, float plane and pyramid level is fresh memory
    the kernel must fault in and zero: 2 ms a 1080p frame in decoding alone, a sixth of a composite's
    CPU time (perf). Fixed thresholds keep freed frames in the heap for the next ones: 120 frames of a
    1080p movie decoded in 0.67 s without them and 0.47 s with them, of UHD in 2.26 and 1.50 s (ffmpeg
    -f null: 0.50 and 1.6 s); a 1080p alpha composite went from 33 to 39 fps. Arenas are capped at one
    per core (glibc's default is eight per core): with an arena per thread, freed blocks stay spread
    over heaps the other threads cannot reuse (a 48-frame UHD render peaked at 3.2 GB, 2.8 GB with the
    cap). A thread's arena grows in heaps of 64 MiB, and glibc unmaps a heap as soon as it is empty
    unless the top pad covers it (the trim threshold does not): 96 frames of a 1080p composite mapped
    646 fresh heaps in one pool thread and 34 in two (strace), and the blend faulted in 1100-1200 pages
    a frame; with the pad, 3 heaps and 320-420 faults. False where the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    settings = (
        (M_ARENA_MAX, max(1, arenas or os.cpu_count() or 1)),
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_TOP_PAD, TOP_PAD),
    )
    return all([bool(mallopt(option, value)) for option, value in settings])


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the kernel (glibc's malloc_trim), between chunks of frames.

    tune_malloc keeps freed frames for the next ones, and over a long shot the free space left between
    live blocks grows with the arenas' fragmentation: a 1000-frame UHD render (bench/composite.py) crept
    from 3.49 GB at a fifth of the way to 4.09 GB, with nothing live accumulating. Trimmed after each
    chunk (24 frames) it held 3.31 GB from a fifth of the way to the end; the next chunk faults its first
    batch in afresh, milliseconds of a UHD chunk's 13 seconds. False where the C library is not glibc."""
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False
