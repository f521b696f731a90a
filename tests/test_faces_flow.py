"""The faces stage through the real Prefect flows and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import LAYOUT, write_manifest

from pipeline.cli import main
from pipeline.errors import ManifestError
from pipeline.flows import run_render, run_track
from pipeline.manifest import load_shot
from pipeline.media.sequences import read_png_text

pytestmark = pytest.mark.slow


def manifest(
    folder: Path,
    plate: Path,
    smooth_center: float = 1.0,
    movies: str = "[h264_review]",
    cut_threshold: str = "24.0",
    landmarks: str = "dlib68",
) -> Path:
    return write_manifest(
        folder,
        f"""
shot: fc010
plate: {{sequence: {plate}}}
fps: 24
output: {{sequence: png8, movies: {movies}, chunk_size: 8}}
faces:
  crop_size: 128
  max_gap: 3
  smooth: {{center: {smooth_center}}}
  cut_threshold: {cut_threshold}
  landmarks: {landmarks}
""",
    )


def test_track_command_writes_overlay_sheet_and_per_frame_report(tmp_path, face_sequence, prefect_server):
    sequence = face_sequence
    # the plate's blank frames are cuts to a flat grey picture: cut detection off, to see the gap filled
    m = manifest(tmp_path, sequence, cut_threshold="null")
    result = run_track(str(m), root=str(tmp_path / "r"))
    v = Path(result["path"])
    faces = json.loads((v / "report.json").read_text())["faces"]
    states = {row["frame"]: row["state"] for row in faces["per_frame"]}
    for n, (kind, _) in LAYOUT.items():
        if kind == "face":
            assert states[n] == "detected", n
    assert states[9] == states[10] == "filled"  # the short gap
    assert all(states[n] == "no face" for n in range(15, 23))  # the long gap
    assert faces["no_face_ranges"][-1] == [15, 22]
    assert faces["cuts"] == []
    assert not faces["cached"]
    overlay = v / "fc010_overlay_v001.mp4"
    with av.open(str(overlay)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 24
        assert c.metadata["synthetic_imagery"] == "false"
    assert read_png_text(v / "faces_contact_sheet.png")["shot"] == "fc010"
    assert len(list((v / "overlay").glob("*.png"))) == 24
    assert "## Faces" in (v / "report.md").read_text()


def test_render_reuses_the_track_until_faces_settings_change(tmp_path, face_sequence, prefect_server):
    sequence = face_sequence
    root = tmp_path / "r"
    m = manifest(tmp_path, sequence)
    first = run_render(str(m), root=str(root))["report"]["faces"]
    # with cut detection (the default) the blank frames start new camera shots: the gap after the cut to
    # a grey picture is not filled (the cut back at 11 is within min_scene of it)
    assert first["cuts"] == [9, 23]
    assert {r["frame"]: r["state"] for r in first["per_frame"]}[10] == "no face"
    again = run_render(str(m), root=str(root))["report"]["faces"]
    assert not first["cached"] and again["cached"] and again["path"] == first["path"]
    m = manifest(tmp_path, sequence, movies="[]")  # output settings do not touch the track
    assert run_render(str(m), root=str(root))["report"]["faces"]["cached"]
    m = manifest(tmp_path, sequence, landmarks="mesh")  # faces settings do: here MediaPipe's mesh
    report = run_render(str(m), root=str(root))["report"]
    changed = report["faces"]
    assert not changed["cached"] and changed["path"] != first["path"]
    assert changed["landmarks"] == "mesh" and first["landmarks"] == "dlib68"
    assert "mediapipe:face_landmark" in report["metadata"]["models"]
    states = {r["frame"]: r["state"] for r in changed["per_frame"]}
    assert all(states[n] == "detected" for n, (kind, _) in LAYOUT.items() if kind == "face")
    assert len(list((root / "fc010" / "cache").glob("track-*.npz"))) == 2


def test_a_missing_reference_image_is_a_manifest_error(tmp_path, face_sequence):
    sequence = face_sequence
    m = write_manifest(tmp_path, f"shot: a\nplate: {{sequence: {sequence}}}\nfaces:\n  reference: who.png\n")
    with pytest.raises(ManifestError, match=rf"{m}:4 faces\.reference: .*who\.png: file not found"):
        load_shot(m)


def test_validate_warns_of_a_reference_picture_of_several_people(tmp_path, footage, capsys):
    """The largest face is taken as the actor: with a picture of two people, every frame of a clip of the
    other one was "another person" and nothing was composited, with status 0."""
    for picture, warned in (("two_faces.jpg", True), ("portrait_1080p.jpg", False)):
        still = "shot: a\nplate: {still: builtin:astronaut, hold: 2}\n"
        m = write_manifest(tmp_path, still + f"faces:\n  reference: {footage / picture}\n")
        assert main(["validate", str(m)]) == 0
        out = capsys.readouterr().out
        warning = f"warning: {m}: faces.reference {footage / picture} shows 2 faces; the largest is taken"
        assert (warning in out) == warned, out


def test_track_needs_a_faces_section(tmp_path, face_sequence, capsys):
    sequence = face_sequence
    m = write_manifest(tmp_path, f"shot: a\nplate: {{sequence: {sequence}}}\n")
    assert main(["track", str(m), "--root", str(tmp_path / "r")]) == 2
    assert "faces: the shot has no enabled faces section" in capsys.readouterr().err


def test_extract_writes_crops_with_landmarks_and_continues(tmp_path, face_sequence, capsys):
    sequence = face_sequence
    out = tmp_path / "crops"
    assert main(["extract", str(sequence), "--out", str(out), "--size", "128", "--every", "2"]) == 0
    crops = sorted(out.glob("*.png"))
    expected = [n for n in range(1, 25, 2) if LAYOUT[n][0] == "face"]
    got = [int(p.stem.split("_")[-1]) for p in crops]
    assert [n for n in got if n != 13] == expected  # frame 13's half-cut face may or may not be found
    info = json.loads(crops[0].with_suffix(".json").read_text())
    assert info["size"] == 128 and len(info["landmarks"]) == 68
    eyes = np.array(info["landmarks"])[36:48]
    assert 0.3 * 128 < eyes[:, 1].mean() < 0.55 * 128
    assert cv2.imread(str(crops[0])).shape == (128, 128, 3)
    assert f"{len(got)} aligned 128 px crops" in capsys.readouterr().out
    stamps = {p: p.stat().st_mtime_ns for p in crops}
    assert main(["extract", str(sequence), "--out", str(out), "--size", "128", "--every", "2"]) == 0
    assert {p: p.stat().st_mtime_ns for p in crops} == stamps  # nothing redone


def test_analyzers_are_lent_to_one_thread_at_a_time_and_kept_for_the_next_chunk(
    tmp_path, face_sequence, monkeypatch
):
    import threading

    from pipeline.shot import track as shot_track

    made = []
    real = shot_track.FaceAnalyzer
    monkeypatch.setattr(shot_track, "FaceAnalyzer", lambda *a, **k: made.append(1) or real(*a, **k))
    monkeypatch.setattr(shot_track, "_idle_analyzers", {})
    shot = load_shot(manifest(tmp_path, face_sequence))
    with shot_track.analyzer(shot) as a, shot_track.analyzer(shot) as b:
        assert a is not b  # two chunks at once get one each
    found = []
    for first in (1, 3, 5):  # each chunk on a new thread, as in a new shot's task runner
        t = threading.Thread(target=lambda f=first: found.append(shot_track.detect_range(shot, f, f + 1)))
        t.start()
        t.join()
    assert len(made) == 2  # no more loaded
    assert [len(c.faces) for c in found] == [2, 2, 2] and found[0].faces[0].faces
