"""What the README promises of `vfx render` and `vfx status` beyond a plain render: --dry-run and --force
from the command line, --resume --render-version N, the stage records in report.json, and each state status
reports (running, interrupted, done, stale after a plate, model or code change)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, make_clip, write_manifest

from pipeline.cli import main
from pipeline.manifest import load_shot
from pipeline.shot import composite as shot_composite
from pipeline.shot import stages as shot_stages
from pipeline.shot import track as shot_track
from pipeline.shot.stages import stage_keys
from pipeline.workspace import RenderVersion


def vfx(capsys, *args: str) -> tuple[int, str, str]:
    """`vfx ARGS` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def dry_run(capsys, manifest: Path, root: Path, *more: str) -> dict[str, tuple[str, str]]:
    """`vfx render --dry-run`: stage -> (runs or cached, why)."""
    rc, out, _ = vfx(capsys, "render", manifest, "--dry-run", "--root", root, *more)
    assert rc == 0
    rows = [line.split(None, 2) for line in out.strip().splitlines()]
    return {name: (runs, why) for name, runs, why in rows}


def status(capsys, manifest: Path, root: Path) -> tuple[str, str, str]:
    """`vfx status` of one manifest: (version, state, detail)."""
    rc, out, _ = vfx(capsys, "status", manifest, "--root", root)
    assert rc == 0
    line = out.strip().splitlines()
    assert len(line) == 1, out
    fields = [f.strip() for f in line[0][len(str(manifest)) :].split("  ") if f.strip()]
    return fields[0], fields[1], fields[2] if len(fields) > 2 else ""


def listing(folder: Path) -> list[str]:
    """What a folder shows (its hidden lock files left out)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def report(version: Path) -> dict:
    return json.loads((version / "report.json").read_text())


@pytest.mark.slow
def test_dry_run_and_force_from_the_command_line(tmp_path, prefect_server, capsys, monkeypatch):
    detections = []
    real_detect = shot_track.detect_range
    monkeypatch.setattr(
        shot_track, "detect_range", lambda *a, **k: detections.append(a[1:]) or real_detect(*a, **k)
    )
    m = write_manifest(
        tmp_path,
        "shot: fx010\nplate: {still: builtin:astronaut, hold: 2}\n"
        "output: {sequence: png8, movies: []}\nfaces: {crop_size: 64}\n",
    )
    root = tmp_path / "render"
    track_file = shot_track.track_path(root, load_shot(m))

    # before any render: every stage runs, and the dry run renders (and makes) nothing
    assert dry_run(capsys, m, root) == {
        "track": ("runs", "no earlier render"),
        "composite": ("runs", "a new version; no earlier render"),
    }
    assert not (root / "fx010").exists()

    rc, out, _ = vfx(capsys, "render", m, "--root", root)
    assert rc == 0 and detections and not report(root / "fx010" / "v001")["faces"]["cached"]
    # it ends by saying where the render is and what to open first (no review movie here: the sheet)
    v1 = root / "fx010" / "v001"
    assert out.splitlines()[-3:] == [
        f"open first: {v1 / 'contact_sheet.png'}",
        f"report: {v1 / 'report.md'} (frames in {v1 / 'comp'})",
        f"fx010 v001: {v1}",
    ]
    assert track_file.is_file()
    assert dry_run(capsys, m, root) == {
        "track": ("cached", f"cached ({track_file.name})"),
        "composite": ("runs", "a new version; nothing changed since v001"),
    }
    # a forced dry run says what --force would rerun, and still removes nothing
    assert dry_run(capsys, m, root, "--force", "track") == {
        "track": ("runs", "forced (--force track)"),
        "composite": ("runs", "forced (--force track)"),
    }
    assert track_file.is_file() and listing(root / "fx010") == ["cache", "v001"]

    # --force composite keeps the track ...
    stamp = track_file.stat().st_mtime_ns
    detected = len(detections)
    assert vfx(capsys, "render", m, "--root", root, "--force", "composite")[0] == 0
    r2 = report(root / "fx010" / "v002")
    assert r2["faces"]["cached"] and len(detections) == detected
    assert r2["stages"]["track"]["ran"] is False
    assert r2["stages"]["composite"]["why"] == "forced (--force composite)"
    assert track_file.stat().st_mtime_ns == stamp

    # ... and --force track removes it, so the next render detects the faces again
    assert vfx(capsys, "render", m, "--root", root, "--force", "track")[0] == 0
    r3 = report(root / "fx010" / "v003")
    assert r3["faces"]["cached"] is False and len(detections) > detected
    assert r3["stages"]["track"] == {**r2["stages"]["track"], "ran": True, "why": "forced (--force track)"}
    assert track_file.stat().st_mtime_ns != stamp


@pytest.mark.slow
def test_resume_of_a_given_version_writes_only_its_missing_frames(tmp_path, prefect_server, capsys):
    m = write_manifest(
        tmp_path,
        "shot: rs010\nplate: {still: builtin:astronaut, hold: 6}\n"
        "output: {sequence: png8, movies: [], chunk_size: 2}\n",
    )
    root = tmp_path / "render"
    for _ in range(2):
        assert vfx(capsys, "render", m, "--root", root)[0] == 0
    v1, v2 = root / "rs010" / "v001", root / "rs010" / "v002"
    # v001 dies part-way (the OS lock went with its process): two frames missing, still "running"
    for n in (1002, 1005):
        (v1 / "comp" / f"rs010_comp_v001.{n}.png").unlink()
    RenderVersion("rs010", 1, v1, "png").write_state(status="running")
    assert status(capsys, m, root)[:2] == ("v002", "done")  # the latest version is the one shown
    kept = {p.name: p.stat().st_mtime_ns for p in (v1 / "comp").glob("*.png")}
    later = {p: p.stat().st_mtime_ns for p in v2.rglob("*")}

    rc, out, _ = vfx(capsys, "render", m, "--resume", "--render-version", "1", "--root", root)
    assert rc == 0 and out.strip().endswith(f"rs010 v001: {v1}")
    r = report(v1)
    assert (r["frames_written"], r["frames_skipped"]) == (2, 4)
    assert len(list((v1 / "comp").glob("*.png"))) == 6
    assert {name: (v1 / "comp" / name).stat().st_mtime_ns for name in kept} == kept
    assert json.loads((v1 / "render.json").read_text())["status"] == "done"
    assert listing(root / "rs010") == ["v001", "v002"]
    assert {p: p.stat().st_mtime_ns for p in v2.rglob("*")} == later

    rc, out, err = vfx(capsys, "render", m, "--resume", "--render-version", "7", "--root", root)
    assert rc == 2
    assert err.strip().splitlines() == [f"{root / 'rs010' / 'v007'}: no such version to resume"]
    assert listing(root / "rs010") == ["v001", "v002"]


def swap_and_project_manifest(folder: Path, clip: Path, model: Path, generator: Path) -> Path:
    return write_manifest(
        folder,
        f"""
shot: rec010
plate: {{movie: {clip}}}
frames: 1001-1004
output: {{sequence: png8, movies: [], chunk_size: 4}}
faces: {{crop_size: 64}}
swap: {{model: {model}, batch: 4}}
project: {{generator: {generator}, every: 4, steps: 2, patience: 0}}
composite: {{blend: alpha, grain: false}}
""",
    )


@pytest.mark.slow
def test_report_records_every_stage_and_status_sees_a_changed_generator(
    tmp_path, woman_clip, tiny_model, tiny_generator_file, prefect_server, capsys
):
    generator = tmp_path / "g.pt"
    shutil.copy(tiny_generator_file, generator)
    m = swap_and_project_manifest(tmp_path, woman_clip, tiny_model, generator)
    root = tmp_path / "render"
    keys = stage_keys(load_shot(m))
    assert vfx(capsys, "render", m, "--root", root)[0] == 0
    first = report(root / "rec010" / "v001")["stages"]
    assert list(first) == ["track", "swap", "project", "path", "tune", "composite"]
    for name, record in first.items():
        assert record["key"] == keys[name].key and record["parts"] == keys[name].parts, name
        assert record["ran"] is True, name
    assert {name: r["why"] for name, r in first.items()} == {
        **{name: "no earlier render" for name in ("track", "swap", "project", "path", "tune")},
        "composite": "a new version; no earlier render",
    }

    assert vfx(capsys, "render", m, "--root", root)[0] == 0
    second = report(root / "rec010" / "v002")["stages"]
    for name in first:
        assert {k: second[name][k] for k in ("key", "parts")} == {k: first[name][k] for k in ("key", "parts")}
    assert {name: r["ran"] for name, r in second.items()} == {
        "track": False,
        "swap": False,
        "project": False,
        "path": False,
        "tune": False,
        "composite": True,
    }
    paths = shot_stages.cache_paths(load_shot(m), root, keys)
    assert second["track"]["why"] == f"cached ({paths['track'].name})"
    # the swap feeds the projection (the two keys, 1001 and the last, 1004) and the tune stage's measure of
    # every frame's fit: all four frames were swapped
    assert second["swap"]["why"] == f"cached (4 frames in {paths['swap'].name})"
    assert second["project"]["why"] == f"cached ({paths['project'].name})"
    assert second["path"]["why"] == f"cached ({paths['path'].name})"
    assert second["tune"]["why"] == f"cached ({paths['tune'].name}/fit.json)"  # measured, not tuned
    assert second["composite"]["why"] == "a new version; nothing changed since v001"
    assert status(capsys, m, root)[:2] == ("v002", "done")

    # the generator file is replaced by other weights under the same name: the projection is stale
    import torch
    from conftest import tiny_generator_config

    from pipeline.stylegan.checkpoints import save_generator
    from pipeline.stylegan.generator import Generator

    torch.manual_seed(6)
    other = Generator(tiny_generator_config()).eval()
    other.compute_w_avg(100)
    save_generator(generator, other)
    assert status(capsys, m, root) == ("v002", "stale", "path, project, tune changed")
    assert dry_run(capsys, m, root) == {
        "track": ("cached", second["track"]["why"]),
        "swap": ("cached", second["swap"]["why"]),
        "project": ("runs", "generator changed since v002"),
        "path": ("runs", "generator, project changed since v002"),  # it draws with the generator too
        "tune": ("runs", "path changed since v002"),
        "composite": ("runs", "a new version; path, project, tune changed since v002"),
    }


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from pipeline.workspace import RenderVersion
version = RenderVersion("ss010", 1, Path(sys.argv[1]), "png")
version.lock()  # held while this process lives
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_status_running_interrupted_done_and_stale(tmp_path, clip, prefect_server, capsys, monkeypatch):
    plate = tmp_path / "plate.mp4"
    shutil.copy(clip, plate)
    m = write_manifest(
        tmp_path, "shot: ss010\nplate: {movie: plate.mp4}\nframes: 1001-1003\noutput: {movies: []}\n"
    )
    root = tmp_path / "render"
    assert status(capsys, m, root) == ("-", "never rendered", "")
    assert vfx(capsys, "render", m, "--root", root)[0] == 0
    assert status(capsys, m, root)[:2] == ("v001", "done")

    # a render in progress holds the version's lock; when its process dies the lock goes with it
    v1 = root / "ss010" / "v001"
    RenderVersion("ss010", 1, v1, "png").write_state(status="running")
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(v1)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert status(capsys, m, root) == ("v001", "running", "")
    finally:
        holder.kill()
        holder.wait()
    assert status(capsys, m, root) == ("v001", "interrupted", "resume it with vfx render --resume")
    assert vfx(capsys, "render", m, "--resume", "--root", root)[0] == 0
    assert report(v1)["frames_skipped"] == 3
    assert status(capsys, m, root)[:2] == ("v001", "done")

    # the pipeline's code changes (its digest, as if a source file of the composite stage were edited)
    real = shot_composite.code_version
    monkeypatch.setattr(shot_composite, "code_version", lambda *modules: real(*modules)[::-1])
    assert status(capsys, m, root) == ("v001", "stale", "code changed")
    monkeypatch.undo()
    assert status(capsys, m, root)[:2] == ("v001", "done")

    # the plate is replaced by another clip of as many frames, under the same name
    make_clip(plate, size="96x64", audio=False)
    assert status(capsys, m, root) == ("v001", "stale", "plate changed")


def test_missing_shared_files_skip_locally_and_fail_under_ci(monkeypatch):
    from conftest import missing_shared

    def outcome() -> BaseException:
        """What missing_shared raised (a skip or a failure), caught here so that neither ends this test."""
        try:
            missing_shared("footage not found at ../shared/footage")
        except BaseException as e:  # noqa: BLE001 - pytest's Skipped and Failed are BaseExceptions
            return e
        raise AssertionError("missing_shared returned")

    monkeypatch.delenv("CI", raising=False)
    for value in (None, "", "0", "false"):
        if value is not None:
            monkeypatch.setenv("CI", value)
        e = outcome()
        assert type(e) is pytest.skip.Exception and "footage not found at ../shared/footage" in str(e), value
    for value in ("1", "true", "TRUE", "yes"):
        monkeypatch.setenv("CI", value)
        e = outcome()
        assert type(e) is pytest.fail.Exception and "footage not found at ../shared/footage" in str(e), value


def test_a_chunk_writes_big_frames_one_at_a_time_and_small_ones_side_by_side():
    """A UHD frame (25 MB) is written by the chunk itself, one at a time, so a UHD render holds no more
    frames than before; 1080p frames (6 MB) go to writers side by side, one a core (at most 4)."""
    from pipeline.shot.frames import WRITERS, writers_for

    assert writers_for(2160 * 3840 * 3) == 1
    assert writers_for(1080 * 1920 * 3) == min(WRITERS, 5)
    assert writers_for(0) == WRITERS
