"""Nothing lost, nothing mixed: two processes on one shot (a render and a `--force` of its cache, two
`--resume` of one version), a version's identity checked from the frames it holds, a finished version
left as it is, version numbers that status can see, and bad input raised inside a flow printed as one
line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, write_manifest
from test_render_behaviour import listing

from pipeline.cli import main
from pipeline.errors import WorkspaceError
from pipeline.flows import run_render
from pipeline.manifest import load_shot
from pipeline.media.sequences import read_png_text
from pipeline.shot.track import track_path
from pipeline.workspace import RenderVersion


def vfx(capfd, *args: object) -> tuple[int, str, str]:
    """`vfx ARGS` in this process: (exit status, stdout, stderr), as the file descriptors saw them."""
    capfd.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse's errors
        rc = e.code
    out, err = capfd.readouterr()
    return rc, out, err


def one_line(err: str, out: str = "") -> str:
    """The single line a bad input prints on stderr, with no traceback anywhere."""
    assert "Traceback" not in out + err, out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def start_render(prefect_server: str, *args: object) -> subprocess.Popen:
    """`vfx render ARGS` as its own process, reporting to the session's Prefect server."""
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())", "render"]
        + [str(a) for a in args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_writing(version: RenderVersion, proc: subprocess.Popen, timeout: float = 240) -> str:
    """Wait until `proc` holds the version's lock (its render is under way); who holds it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if version.path.is_dir() and (who := version.holder()) is not None:
            return who  # once the render has signed its lock (read straight, the file can still be empty)
        if proc.poll() is not None:
            pytest.fail(f"the render ended before it was seen running: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the render did not start writing its version in time")


def long_shot(folder: Path, frames: int = 24, **extra: str) -> Path:
    """A shot whose render lasts long enough for another process to meet it: a track, many frames."""
    composite = extra.get("composite", "{blend: laplacian, grain: true}")
    return write_manifest(
        folder,
        f"shot: rc010\nplate: {{still: builtin:astronaut, hold: {frames}}}\n"
        "output: {sequence: png8, movies: [], chunk_size: 4}\nfaces: {crop_size: 64}\n"
        f"composite: {composite}\n",
    )


@pytest.mark.slow
def test_force_refuses_while_a_render_of_the_shot_reads_the_cache(tmp_path, prefect_server, capfd):
    m, root = long_shot(tmp_path), tmp_path / "render"
    running = start_render(prefect_server, m, "--root", root)
    v1 = RenderVersion("rc010", 1, root / "rc010" / "v001", "png")
    who = wait_until_writing(v1, running)

    rc, out, err = vfx(capfd, "render", m, "--root", root, "--force", "track")
    assert rc == 2
    line = one_line(err, out)
    assert str(v1.path) in line and who in line and "--force track" in line, line

    out, err = running.communicate(timeout=600)
    assert running.returncode == 0, err[-3000:]
    assert json.loads((v1.path / "render.json").read_text())["status"] == "done"
    assert len(list((v1.path / "comp").glob("*.png"))) == 24
    assert listing(root / "rc010") == [
        "cache",
        "v001",
    ]
    assert track_path(root, load_shot(m)).is_file()  # the cache the running render read is still there

    # with no render running, --force takes the cache and reruns the track
    rc, out, err = vfx(capfd, "render", m, "--root", root, "--force", "track", "--frames", "1001-1002")
    assert rc == 0, err
    assert json.loads((root / "rc010" / "v002" / "report.json").read_text())["faces"]["cached"] is False


def interrupted_version(capfd, m: Path, root: Path, missing: range) -> RenderVersion:
    """v001 of the shot, rendered, then as a render killed part-way leaves it: frames missing, "running"."""
    assert vfx(capfd, "render", m, "--root", root)[0] == 0
    shot = load_shot(m)
    v = RenderVersion(shot.name, 1, root / shot.name / "v001", "png")
    for n in missing:
        v.frame_path(n).unlink()
    (v.path / "report.json").unlink()  # written last, so a killed render has none
    v.write_state(status="running")
    return v


@pytest.mark.slow
def test_two_resumes_of_one_version_one_finishes_it_the_other_refuses(tmp_path, prefect_server, capfd):
    m, root = long_shot(tmp_path), tmp_path / "render"
    v = interrupted_version(capfd, m, root, range(1003, 1025))
    first = start_render(prefect_server, m, "--root", root, "--resume", "--render-version", "1")
    who = wait_until_writing(v, first)

    rc, out, err = vfx(capfd, "render", m, "--root", root, "--resume", "--render-version", "1")
    assert rc == 2
    assert one_line(err, out) == f"{v.path}: being written by {who}; wait for it or render a new version"

    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    report = json.loads((v.path / "report.json").read_text())
    assert (report["frames_written"], report["frames_skipped"]) == (22, 2)
    assert json.loads((v.path / "render.json").read_text())["status"] == "done"


@pytest.mark.slow
@pytest.mark.parametrize("record", ["missing", "unreadable"])
def test_resume_checks_the_frames_when_the_version_record_is_lost(tmp_path, prefect_server, capfd, record):
    m, root = long_shot(tmp_path, frames=6), tmp_path / "render"
    v = interrupted_version(capfd, m, root, range(1005, 1007))
    # a kill can come between a frame's element and its comp: 1005 has its element, 1006 nothing
    next(v.path.glob("element/*.1006.png")).unlink()
    if record == "missing":
        v.state_path.unlink()
    else:
        v.state_path.write_bytes(b"\xff{ not json")
    kept = {p: p.stat().st_mtime_ns for p in v.path.rglob("*")}
    meta = read_png_text(v.frame_path(1001))
    assert meta["settings_hash"] == load_shot(m).settings_hash and meta["render_frames"] == "1001-1006"

    # the manifest changed: resuming would mix two manifests' frames in one version
    long_shot(tmp_path, frames=6, composite="{blend: alpha, grain: true}")
    rc, out, err = vfx(capfd, "render", m, "--root", root, "--resume")
    assert rc == 2
    assert one_line(err, out) == (
        f"{m}: {v.path}: frames 1001-1005 were rendered from other settings (composite differ); "
        "render a new version instead of resuming"
    )
    # another frame range is another version too
    long_shot(tmp_path, frames=6)
    rc, out, err = vfx(capfd, "render", m, "--root", root, "--resume", "--frames", "1001-1005")
    assert rc == 2 and "rendered for frames 1001-1006" in one_line(err, out)
    assert {p: p.stat().st_mtime_ns for p in v.path.rglob("*")} == kept

    # the manifest it was started from finishes it, its record written anew
    rc, out, err = vfx(capfd, "render", m, "--root", root, "--resume")
    assert rc == 0, err
    report = json.loads((v.path / "report.json").read_text())
    assert (report["frames_written"], report["frames_skipped"]) == (2, 4)
    assert json.loads(v.state_path.read_text())["settings_hash"] == load_shot(m).settings_hash


@pytest.mark.slow
def test_resuming_a_finished_version_changes_nothing(tmp_path, prefect_server, capfd):
    m, root = long_shot(tmp_path, frames=2), tmp_path / "render"
    assert vfx(capfd, "render", m, "--root", root)[0] == 0
    v1 = root / "rc010" / "v001"
    before = {p: p.read_bytes() for p in v1.rglob("*") if p.is_file()}
    rc, out, err = vfx(capfd, "render", m, "--root", root, "--resume")
    assert rc == 0 and not err.strip()
    assert out.strip().splitlines()[-1] == f"rc010 v001: {v1} (finished already: nothing to resume)"
    assert {p: p.read_bytes() for p in v1.rglob("*") if p.is_file()} == before
    assert listing(root / "rc010") == [
        "cache",
        "v001",
    ]


@pytest.mark.parametrize("number", ["0", "-3", "100000"])
def test_version_numbers_outside_1_to_99999_are_refused(tmp_path, capfd, number):
    m, root = long_shot(tmp_path, frames=2), tmp_path / "render"
    for extra in ([], ["--resume"]):
        rc, out, err = vfx(capfd, "render", m, "--root", root, "--render-version", number, *extra)
        assert rc == 2
        assert one_line(err, out) == (
            f"vfx render: error: argument --render-version: {number} is out of range: give 1 to 99999 "
            "(see vfx render --help)"
        )
        # and the same bound where a flow is called without the command line
        bound = f"^--render-version {number}: versions are numbered 1 to 99999$"
        with pytest.raises(WorkspaceError, match=bound):
            run_render(str(m), root=str(root), version=int(number), resume=bool(extra))
    assert not (root / "rc010").exists()


@pytest.mark.slow
def test_an_existing_version_number_is_refused_before_the_flow(tmp_path, prefect_server, capfd):
    m, root = long_shot(tmp_path, frames=2), tmp_path / "render"
    assert vfx(capfd, "render", m, "--root", root)[0] == 0
    before = {p: p.stat().st_mtime_ns for p in (root / "rc010").rglob("*")}
    rc, out, err = vfx(capfd, "render", m, "--root", root, "--render-version", "1")
    assert rc == 2
    assert one_line(err, out).startswith(
        f"{root / 'rc010' / 'v001'}: version 1 exists and is never overwritten"
    )
    assert {p: p.stat().st_mtime_ns for p in (root / "rc010").rglob("*")} == before


@pytest.mark.slow
def test_bad_input_raised_inside_a_flow_prints_one_line_and_fails_the_flow_run(
    tmp_path, prefect_server, capfd
):
    from prefect.client.orchestration import get_client

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rc, out, err = vfx(
        capfd,
        "train",
        "swap",
        "--a",
        tmp_path / "a",
        "--b",
        tmp_path / "b",
        "--out",
        tmp_path / "m",
        "--steps",
        1,
    )
    assert rc == 2
    assert (
        one_line(err, out)
        == f"{tmp_path / 'a'}: 0 face crops; training needs at least 8 (vfx extract makes them)"
    )
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs() if r.name and r.state and r.flow_id]
        flows = {r.flow_id: client.read_flow(r.flow_id).name for r in runs}
        latest = max((r for r in runs if flows[r.flow_id] == "train-swap"), key=lambda r: r.created)
    assert latest.state.is_failed()
    assert not (tmp_path / "m" / "swap.pt").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "deployment, message",
    [
        (
            "nope/nope",
            "--deployment nope/nope: no such deployment on the Prefect server (vfx deploy makes it)",
        ),
        ("nope", "--deployment nope: not a deployment name like render-shot/render-shot"),
    ],
)
def test_submit_to_a_missing_deployment_prints_one_line(tmp_path, prefect_server, capfd, deployment, message):
    m = long_shot(tmp_path, frames=2)
    rc, out, err = vfx(capfd, "submit", m, "--root", tmp_path / "render", "--deployment", deployment)
    assert rc == 2 and one_line(err, out) == message


def test_a_frame_without_a_record_of_its_settings_is_not_taken_as_this_manifests(tmp_path):
    import numpy as np

    from pipeline.media.sequences import write_frame
    from pipeline.shot.render import resume_problem
    from pipeline.shot.report import output_metadata
    from pipeline.workspace import new_version

    shot = load_shot(long_shot(tmp_path, frames=4))
    v = new_version(tmp_path / "render", shot.name, "png")
    frame = np.zeros((8, 8, 3), np.uint8)
    for n in (1001, 1002):
        write_frame(v.frame_path(n), frame, "png8", output_metadata(shot, v))
    assert resume_problem(shot, v) is None
    write_frame(v.frame_path(1003), frame, "png8", {"shot": shot.name})  # a foreign or older frame
    assert resume_problem(shot, v) == (
        f"{v.path}: frames 1003 were rendered from other settings (no record of their settings)"
    )
    v.write_state(frames="1001 to 1004")  # a record tampered with
    assert resume_problem(shot, v) == f"{v.path} was started for frames 1001 to 1004, not 1001-1004"
