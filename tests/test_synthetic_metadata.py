"""Outputs say they hold synthetic (AI-altered) faces exactly where a face was altered: each frame for
itself, a movie when any of its frames was; and a plate without a face renders without NumPy warnings."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import write_manifest

from pipeline.flows import run_render, run_track
from pipeline.media.decode import load_still
from pipeline.media.sequences import read_png_text, write_frame

pytestmark = pytest.mark.slow

COMPOSITE = """
faces: {crop_size: 64, upsample: 1, max_gap: 0}
composite: {alteration: recolor, blend: alpha, grain: false, element: {format: png16, prores4444: true}}
"""


def says(path: Path) -> str:
    """What a PNG or a movie says of synthetic imagery."""
    if path.suffix == ".png":
        return read_png_text(path)["synthetic_imagery"]
    with av.open(str(path)) as c:
        return c.metadata["synthetic_imagery"]


def runtime_warnings(recwarn) -> list[str]:
    return [f"{w.filename}:{w.lineno}: {w.message}" for w in recwarn if w.category is RuntimeWarning]


def frames_of(version: Path, folder: str) -> dict[int, Path]:
    return {int(p.name.split(".")[-2]): p for p in sorted((version / folder).glob("*.png"))}


def test_a_plate_without_a_face_says_nothing_was_altered_and_renders_quietly(
    tmp_path, prefect_server, recwarn
):
    noise = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "noise.png"), cv2.GaussianBlur(noise, (0, 0), 2))
    m = write_manifest(
        tmp_path,
        "shot: nf010\nplate: {still: noise.png, hold: 4}\nfps: 24\n"
        "output: {sequence: png8, movies: [h264_review], chunk_size: 4}\n" + COMPOSITE,
    )
    v = Path(run_render(str(m), root=str(tmp_path / "r"))["path"])
    report = json.loads((v / "report.json").read_text())
    assert report["faces"]["detected"] == 0 and report["metadata"]["synthetic_imagery"] == "false"
    frames, elements = frames_of(v, "comp"), frames_of(v, "element")
    assert len(frames) == len(elements) == 4
    assert {says(p) for p in [*frames.values(), *elements.values()]} == {"false"}
    assert says(v / "contact_sheet.png") == "false"
    assert says(v / "nf010_comp_v001_h264_review.mp4") == "false"
    assert says(v / "nf010_faceElement_v001_prores4444.mov") == "false"
    assert runtime_warnings(recwarn) == []  # a mean of no frames is no figure, not a warning


@pytest.fixture
def half_faces(tmp_path) -> Path:
    """A four-frame plate: her face on frames 1 and 3, a blank wall on 2 and 4 (no face, too long a gap
    to fill with max_gap 0)."""
    face = cv2.resize(load_still("builtin:astronaut"), (256, 256), interpolation=cv2.INTER_AREA)
    for n in range(1, 5):
        write_frame(tmp_path / f"pl.{n:04d}.png", face if n % 2 else np.full_like(face, 90), "png8", {})
    return write_manifest(
        tmp_path,
        "shot: hf010\nplate: {sequence: pl.####.png}\nfps: 24\n"
        "output: {sequence: png8, movies: [h264_review], chunk_size: 4}\n" + COMPOSITE,
    )


def test_only_the_frames_with_an_altered_face_say_so_and_the_movie_does(half_faces, tmp_path, prefect_server):
    v = Path(run_render(str(half_faces), root=str(tmp_path / "r"))["path"])
    report = json.loads((v / "report.json").read_text())
    assert report["faces"]["detected"] == 2
    expected = {1: "true", 2: "false", 3: "true", 4: "false"}
    assert {n: says(p) for n, p in frames_of(v, "comp").items()} == expected
    assert {n: says(p) for n, p in frames_of(v, "element").items()} == expected
    assert says(v / "hf010_comp_v001_h264_review.mp4") == "true"
    assert says(v / "hf010_faceElement_v001_prores4444.mov") == "true"
    assert report["metadata"]["synthetic_imagery"] == "true"


def test_the_track_overlay_alters_no_face(half_faces, tmp_path, prefect_server):
    """`vfx track` of a shot with a composite: its overlay draws on the plate and alters no face."""
    v = Path(run_track(str(half_faces), root=str(tmp_path / "r"))["path"])
    assert {says(p) for p in frames_of(v, "overlay").values()} == {"false"}
    assert says(v / "hf010_overlay_v001.mp4") == "false"
    assert says(v / "faces_contact_sheet.png") == "false"


def test_a_matte_eroded_to_nothing_alters_no_frame(half_faces, tmp_path, prefect_server):
    """A face is found, but the matte is eroded away (the widest erosion and feather the manifest allows):
    nothing is put in, every comp is its plate bit for bit, and no frame, element or movie says altered."""
    text = half_faces.read_text().replace(
        "composite: {", "composite: {mask: {erode: 0.3, erode_sides: {top: 0.3, bottom: 0.3}, feather: 0.3}, "
    )
    m = write_manifest(tmp_path, text, "eroded.yaml")
    v = Path(run_render(str(m), root=str(tmp_path / "r"))["path"])
    report = json.loads((v / "report.json").read_text())
    assert report["faces"]["detected"] == 2
    for n, p in frames_of(v, "comp").items():
        assert np.array_equal(cv2.imread(str(p)), cv2.imread(str(tmp_path / f"pl.{n:04d}.png")))
    assert {says(p) for p in [*frames_of(v, "comp").values(), *frames_of(v, "element").values()]} == {"false"}
    assert says(v / "hf010_comp_v001_h264_review.mp4") == "false"
    assert report["metadata"]["synthetic_imagery"] == "false"
