"""Child processes die with the pipeline, and a killed encode leaves nothing a resume would keep.

A render killed with SIGKILL runs no clean-up code: its ffmpeg must be killed by the kernel, and what the
encode had written (the movie so far, its metadata input) must be temporaries that the resume's clean-up
removes, never a movie under its final name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
from conftest import REPO

from pipeline.processes import run
from pipeline.workspace import RenderVersion, clean_temporaries

FRAMES = 240  # noise frames that libx264 takes many seconds to encode, even on a fast machine

ENCODE_SCRIPT = """
import sys
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

from pipeline.media.encode import encode_movie
from pipeline.workspace import new_version

sequence, root, frames = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
version = new_version(root, "enc010", "png")
out = version.movie_path("h264_review", "mp4")
meta = {"synthetic_imagery": "false", "shot": "enc010"}
# in a worker thread, as Prefect runs the movie task: the thread waits for its ffmpeg
with ThreadPoolExecutor(1) as pool:
    pool.submit(encode_movie, sequence, 1, frames, Fraction(24), out, "h264_review", meta).result()
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def encoding(p: psutil.Process) -> bool:
    """An ffmpeg encoding a movie (finding the executable may run `ffmpeg -version` first)."""
    try:
        return "libx264" in p.cmdline()
    except psutil.Error:
        return False


def noise_sequence(folder: Path, frames: int, distinct: int = 8) -> Path:
    """Noise frames, a few distinct ones linked in turn (quick to make; more apart than the encoder's
    reference frames, so each costs a full encode)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for n in range(1, frames + 1):
        path = folder / f"noise.{n:04d}.png"
        if n <= distinct:
            frame = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
            cv2.imwrite(str(path), frame, [cv2.IMWRITE_PNG_COMPRESSION, 0])
        else:
            os.link(folder / f"noise.{(n - 1) % distinct + 1:04d}.png", path)
    return folder / "noise.%04d.png"


def test_a_killed_encode_takes_its_ffmpeg_with_it_and_leaves_only_temporaries(tmp_path):
    sequence = noise_sequence(tmp_path / "seq", FRAMES)
    root = tmp_path / "render"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = textwrap.dedent(ENCODE_SCRIPT)
    proc = subprocess.Popen([sys.executable, "-c", script, str(sequence), str(root), str(FRAMES)], env=env)
    try:
        ffmpeg = None
        deadline = time.monotonic() + 60
        while ffmpeg is None and time.monotonic() < deadline and proc.poll() is None:
            kids = psutil.Process(proc.pid).children(recursive=True)
            ffmpeg = next((p for p in kids if encoding(p)), None)
            time.sleep(0.01)
        assert ffmpeg is not None, "the encode's ffmpeg was never seen"
        time.sleep(0.3)  # into the encode
        assert alive(ffmpeg.pid), "the encode finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        while alive(ffmpeg.pid) and time.monotonic() - killed < 1.0:
            time.sleep(0.02)
        assert not alive(ffmpeg.pid), "ffmpeg outlived the killed render by more than a second"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    folder = root / "enc010" / "v001"
    version = RenderVersion("enc010", 1, folder, "png")
    movie = version.movie_path("h264_review", "mp4")
    assert not movie.exists()  # never a movie under its final name unless it is complete
    clean_temporaries(version)  # what --resume does first
    left = sorted(p.name for p in folder.rglob("*") if p.name != ".lock")
    assert left == ["comp"], left  # no partial movie, no metadata input


def test_a_child_dies_when_the_thread_that_waits_for_it_is_killed_with_its_process(tmp_path):
    """The class, not just ffmpeg: any child started through pipeline.processes dies with the pipeline,
    even one started from a worker thread (the kernel watches the thread that forked it)."""
    script = textwrap.dedent(
        """
        import sys, threading
        from pipeline.processes import run
        threading.Thread(target=run, args=([sys.executable, "-c", "import time; time.sleep(60)"],)).start()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 30
        kids: list[psutil.Process] = []
        while not kids and time.monotonic() < deadline:
            kids = psutil.Process(proc.pid).children()
            time.sleep(0.01)
        assert kids, "the child was never seen"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        while alive(kids[0].pid) and time.monotonic() - killed < 1.0:
            time.sleep(0.02)
        assert not alive(kids[0].pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_passes_the_outcome_through():
    code = "import sys; print('out'); sys.exit(3)"
    done = run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 3 and done.stdout == "out\n"


def test_a_killed_command_takes_prefects_temporary_server_with_it(tmp_path, tiny_generator_file):
    """Without PREFECT_API_URL a command's flow runs on a temporary server Prefect starts (a uvicorn
    child) and stops at exit; SIGKILL runs no exit code, and the server used to live on."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp_path / "prefect"), OMP_NUM_THREADS="1")
    argv = ["train", "encoder", "--generator", str(tiny_generator_file), "--out", str(tmp_path / "e")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *argv, "--steps", "100000", "--batch", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    servers: list[psutil.Process] = []
    try:
        for line in proc.stdout:  # the flow runs (on the server) once the training reports a step
            if "steps (" in line:
                break
        servers = [p for p in psutil.Process(proc.pid).children() if "uvicorn" in " ".join(p.cmdline())]
        assert len(servers) == 1, "no temporary server was seen"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        while alive(servers[0].pid) and time.monotonic() - killed < 5.0:
            time.sleep(0.05)
        assert not alive(servers[0].pid), "the temporary server outlived the killed command"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for server in servers:  # should the test fail, no server is left behind
            if alive(server.pid):
                server.kill()


TRIM_SCRIPT = """
import numpy as np, psutil
from pipeline.processes import release_free_memory, tune_malloc

assert tune_malloc()
rss = lambda: psutil.Process().memory_info().rss >> 20
# 1 MiB blocks, below the mmap threshold: they come from the heap, and the small block after each one
# keeps freed space from being the heap's top, which glibc would trim by itself
blocks = [(np.ones(1 << 18, np.float32), np.ones(8, np.float32)) for _ in range(400)]
keep = [small for _, small in blocks]
del blocks
before = rss()
assert release_free_memory()
print(before, rss())
"""


def test_release_free_memory_hands_freed_frames_back_to_the_kernel():
    """tune_malloc keeps freed frame-sized blocks in the heap (a long UHD render crept up by half a GB);
    release_free_memory, called after each chunk, gives their pages back: 400 MiB freed between live
    blocks leave the process's resident memory."""
    out = subprocess.run(
        [sys.executable, "-c", TRIM_SCRIPT], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    before, after = (int(v) for v in out.stdout.split())
    assert before - after > 300, (before, after)


def test_no_python_runs_between_fork_and_exec_where_setpriv_can_set_the_signal():
    """A preexec_fn runs Python in a copy of a threaded process: with PyAV 18.1.1 a decoder's reformatter
    freed there waited forever for slice threads the copy does not have, and a batch hung at its first
    movie. Where util-linux's setpriv takes --pdeathsig, it sets the signal and execs the command."""
    from pipeline.processes import _setpriv, dying_with_parent

    if _setpriv() is None:
        pytest.skip("no setpriv with --pdeathsig here: the preexec_fn is the fallback")
    args, kwargs = dying_with_parent(["ffmpeg", "-version"], {"text": True})
    assert args == [_setpriv(), "--pdeathsig", "KILL", "--", "ffmpeg", "-version"]
    assert kwargs == {"text": True}
