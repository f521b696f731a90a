from __future__ import annotations

import pytest

from pipeline.errors import WorkspaceError
from pipeline.workspace import ensure_writable, existing_versions, new_version, resume_version


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
