from __future__ import annotations

import fcntl
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from pipeline.errors import WorkspaceError
from pipeline.files import temporary_path
from pipeline.media.sequences import write_frame
from pipeline.workspace import (
    clean_temporaries,
    ensure_writable,
    existing_versions,
    new_version,
    resume_version,
)


def test_versions_count_up_and_are_never_reused(tmp_path):
    a = new_version(tmp_path, "sh010", "png")
    b = new_version(tmp_path, "sh010", "png")
    assert (a.label, b.label) == ("v001", "v002")
    assert a.frame_path(1001).name == "sh010_comp_v001.1001.png"
    assert existing_versions(tmp_path / "sh010") == [1, 2]
    with pytest.raises(WorkspaceError, match=r"v002: version 2 exists and is never overwritten"):
        new_version(tmp_path, "sh010", "png", number=2)
    assert new_version(tmp_path, "sh010", "png", number=7).label == "v007"
    assert new_version(tmp_path, "sh010", "png").label == "v008"


def test_a_locked_version_refuses_a_second_writer(tmp_path):
    v = new_version(tmp_path, "sh010", "png")
    v.lock()
    again = resume_version(tmp_path, "sh010", "png", 1)
    with pytest.raises(WorkspaceError, match=r"v001: being written by pid \d+ on "):
        again.lock()
    v.unlock()
    again.lock()  # free once the first writer lets go
    again.unlock()


@pytest.mark.parametrize("before", ["", "dead"])
def test_a_render_caught_before_it_signs_its_lock_is_named_once_it_has(tmp_path, before):
    """A render takes its version's lock, then writes who it is into the lock file: a second writer or
    `vfx status` that comes between the two finds the file empty, or still signed by the render that
    was killed before (seen under load in CI: the refusal named nobody). They wait for the signature."""
    v = new_version(tmp_path, "sh010", "png")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock = v.path / ".lock"
    lock.write_text(f"pid {dead.stdout.strip()} on {socket.gethostname()}" if before else "")
    holding = open(lock, "a+")  # noqa: SIM115 - another open file: flock refuses this process's readers too
    fcntl.flock(holding, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def sign() -> None:
        time.sleep(0.3)
        holding.seek(0)
        holding.truncate()
        holding.write("pid 4242 on farm07")
        holding.flush()

    signer = threading.Thread(target=sign)
    signer.start()
    try:
        assert resume_version(tmp_path, "sh010", "png", 1).holder() == "pid 4242 on farm07"
        with pytest.raises(WorkspaceError, match=r"v001: being written by pid 4242 on farm07; wait"):
            resume_version(tmp_path, "sh010", "png", 1).lock()
    finally:
        signer.join()
        holding.close()


def test_resume_needs_an_existing_version(tmp_path):
    with pytest.raises(WorkspaceError, match="no version to resume"):
        resume_version(tmp_path, "nothing", "png")
    new_version(tmp_path, "sh", "png")
    with pytest.raises(WorkspaceError, match=r"v004: no such version"):
        resume_version(tmp_path, "sh", "png", 4)
    assert resume_version(tmp_path, "sh", "png").label == "v001"


def test_unwritable_output_folder_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(WorkspaceError, match=r"file/render: output folder cannot be written"):
        ensure_writable(blocker / "render")


def test_a_resume_removes_what_killed_writers_left_anywhere_in_the_version(tmp_path):
    v = new_version(tmp_path, "sh010", "png")
    element = v.path / "element" / "sh010_faceElement_v001.1001.png"
    element.parent.mkdir()
    kept = [v.frame_path(1001), element, v.movie_path("h264_review", "mp4")]
    for path in kept:
        write_frame(path, np.zeros((4, 4, 3), np.uint8), "png8", {})
    left = [temporary_path(p) for p in kept] + [temporary_path(v.path / "review" / "comp.1001.npy")]
    left[-1].parent.mkdir()
    for path in left:
        path.write_bytes(b"half a file")
    assert clean_temporaries(v) == len(left)
    assert not any(p.exists() for p in left)
    assert all(p.is_file() for p in kept)  # finished files are kept
