"""Plates in a camera's log encoding or a wide-gamut linear one (`plate.colorspace`, OpenColorIO): read as
the display-referred pictures they encode, keyed by their conversion, and rendered into comps that say so."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import write_manifest

from pipeline.media.color import linear_to_srgb, srgb_to_linear, to_float
from pipeline.media.colorspace import DEFAULT_CONFIG, WORKING_ENCODED, WORKING_LINEAR, PlateColorspace
from pipeline.media.decode import open_plate, read_image
from pipeline.media.sequences import read_png_text, write_frame

LOGC = "ARRI LogC3 (EI800)"


def encode(display: np.ndarray, colorspace: str) -> np.ndarray:
    """Display-referred sRGB pictures encoded in a colour space of the built-in config, as a camera or a
    renderer would have written them (float32)."""
    import PyOpenColorIO as ocio

    config = ocio.Config.CreateFromFile(DEFAULT_CONFIG)
    out = np.ascontiguousarray(srgb_to_linear(display))
    config.getProcessor(WORKING_LINEAR, colorspace).getDefaultCPUProcessor().applyRGB(out)
    return out


def pictures(h: int = 40, w: int = 56) -> np.ndarray:
    """A test picture: 8-bit sRGB values, a grey ramp and saturated and random colours."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
    image[:8] = np.linspace(0, 255, w)[None, :, None]  # a grey ramp, black to white
    image[8:12, :, 1:] = 0  # pure reds
    return np.round(image) / 255


def test_a_log_or_wide_gamut_plate_reads_as_the_pictures_it_encodes(tmp_path):
    """A LogC3 scan as 16-bit and 8-bit PNGs and an ACEScg EXR read back, converted, as the sRGB pictures
    they were made from: 16-bit within 0.002 everywhere, the EXR (half floats) within 0.004, 8-bit log
    within 0.03 on greys and 0.01 on average (its steps are coarse, and its wide gamut's matrix magnifies
    them in saturated colours). Read as they are, they are the flat code values a detector and the colour
    match were given before."""
    display = pictures()
    logc = np.clip(encode(display, LOGC), 0, 1)
    acescg = encode(display, "ACEScg")
    cases = {
        "log16": (LOGC, "png", cv2.multiply(logc, 65535.0, dtype=cv2.CV_16U), "png16", (0.002, 0.002)),
        "log8": (LOGC, "png", cv2.multiply(logc, 255.0, dtype=cv2.CV_8U), "png8", (0.03, 0.01)),
        # the EXR writer takes display-referred values and stores them linear: these store ACEScg's
        "acescg": ("ACEScg", "exr", linear_to_srgb(acescg), "exr", (0.004, 0.004)),
    }
    for name, (space, ext, samples, fmt, (on_greys, on_average)) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        for n in (1, 2):
            write_frame(folder / f"p.{n:04d}.{ext}", samples, fmt, {})
        pattern = str(folder / f"p.####.{ext}")
        colorspace = PlateColorspace.open(space)
        converted = list(open_plate("sequence", pattern, colorspace=colorspace).read(0, 2))
        assert len(converted) == 2 and converted[0].dtype == np.float32
        error = np.abs(converted[1] - display)
        assert error[:8].max() < on_greys and error.mean() < on_average, (name, error[:8].max(), error.mean())
        if on_greys == on_average:
            assert error.max() < on_greys, (name, error.max())
        raw = to_float(next(open_plate("sequence", pattern).read(0, 1)))
        assert np.abs(raw - display).mean() > 0.05, name  # not already the pictures: the test could fail
    # ACEScg's wider gamut: a colour outside Rec.709 keeps its negative component, not clipped
    outside = PlateColorspace.open("ACEScg").convert(np.float32([[[0.0, 0.7, 0.0]]]))
    assert outside[0, 0, 0] < 0 and outside[0, 0, 1] > 0.7


def test_a_plates_colour_space_is_part_of_its_key(tmp_path, clip):
    """Changing or adding a plate's colour space changes every stage key that reads the plate's pixels
    (the track's, the composite's), as a new plate does; the same space keeps it."""
    from pipeline.manifest import load_shot
    from pipeline.shot.keys import digest, plate_fingerprint

    keys = {}
    for name, extra in (
        ("none", ""),
        ("logc", f"  colorspace: {LOGC}\n"),
        ("cct", "  colorspace: ACEScct\n"),
    ):
        m = write_manifest(tmp_path, f"shot: a\nplate:\n  movie: {clip}\n{extra}", f"{name}.yaml")
        keys[name] = digest(plate_fingerprint(load_shot(m)))
    again = write_manifest(
        tmp_path, f"shot: b\nplate:\n  movie: {clip}\n  colorspace: {LOGC}\n", "again.yaml"
    )
    assert len(set(keys.values())) == 3
    assert digest(plate_fingerprint(load_shot(again))) == keys["logc"]


def test_a_conversion_survives_pickling():
    """A shot goes to a worker process pickled; OpenColorIO's processors do not pickle, so the conversion
    travels as its names and is opened again, converting the same."""
    import pickle

    colorspace = PlateColorspace.open(LOGC)
    again = pickle.loads(pickle.dumps(colorspace))
    frame = (pictures() * 65535).astype(np.uint16)
    assert again.key == colorspace.key
    assert np.array_equal(again.convert(frame), colorspace.convert(frame))


@pytest.mark.slow
def test_a_log_plate_renders_comps_of_its_display_pictures(tmp_path, woman_clip, prefect_server):
    """Six frames of the woman's clip as a LogC3 16-bit PNG scan, rendered with `colorspace:` through a real
    Prefect flow: her face is found on every frame, the comp away from the new face is her original picture
    (not the flat log), and the frames and report name the conversion. Rendered again with the comp in the
    plate's own encoding (`output.colorspace: plate`), the comp is the scan's samples bit for bit wherever
    the new face did not go, and its review movie shows the pictures."""
    from pipeline.flows import run_render

    plate = tmp_path / "scan"
    plate.mkdir()
    display = []
    with av.open(str(woman_clip)) as movie:
        for n, frame in zip(range(1001, 1007), movie.decode(video=0), strict=False):
            rgb = cv2.resize(frame.to_ndarray(format="rgb24"), (256, 256), interpolation=cv2.INTER_AREA)
            display.append(to_float(rgb))
            logc = np.clip(encode(display[-1], LOGC), 0, 1)
            write_frame(plate / f"scan.{n}.png", cv2.multiply(logc, 65535.0, dtype=cv2.CV_16U), "png16", {})
    m = write_manifest(
        tmp_path,
        f"shot: log010\nplate:\n  sequence: scan/scan.####.png\n  colorspace: {LOGC}\n"
        "output: {sequence: png16, movies: []}\nfaces: {crop_size: 256}\ncomposite: {alteration: retouch}\n",
    )
    v = Path(run_render(str(m), root=str(tmp_path / "r"))["path"])
    check_comps_of_display_pictures(v, display)
    report = json.loads((v / "report.json").read_text())
    assert report["plate"]["plate_colorspace"] == LOGC
    assert f"{LOGC} converted to sRGB" in (v / "report.md").read_text()
    assert report["faces"]["detected"] == 6, report["faces"]

    # written in the plate's own encoding: the scan's 16-bit samples, bit for bit, wherever the new face did
    # not go; its review movie shows the display pictures, through a LUT
    m = write_manifest(
        tmp_path,
        m.read_text()
        .replace("shot: log010", "shot: log020")
        .replace("movies: []", "movies: [h264_review], colorspace: plate"),
        "plate.yaml",
    )
    v = Path(run_render(str(m), root=str(tmp_path / "r"))["path"])
    with av.open(str(v / "log020_comp_v001_h264_review.mp4")) as movie:
        shown = [to_float(f.to_ndarray(format="rgb24")) for f in movie.decode(video=0)]
    for k, n in enumerate(range(1001, 1007)):
        comp, scan = read_image(v / "comp" / f"log020_comp_v001.{n}.png"), read_image(plate / f"scan.{n}.png")
        assert read_png_text(v / "comp" / f"log020_comp_v001.{n}.png")["colorspace"] == LOGC
        element = cv2.imread(str(v / "element" / f"log020_faceElement_v001.{n}.png"), cv2.IMREAD_UNCHANGED)
        near_face = cv2.dilate((element[..., 3] > 0).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        changed = np.any(comp != scan, axis=-1)
        assert changed.any() and not changed[~near_face].any(), changed[~near_face].sum()
        away = ~near_face
        assert np.abs(shown[k] - display[k]).max(-1)[away].mean() < 0.02  # 8-bit H.264 of the pictures


def check_comps_of_display_pictures(v: Path, display: list[np.ndarray]) -> None:
    """The comps of the log010 render hold the display pictures away from the new face, and name the
    conversion."""
    for k, n in enumerate(range(1001, 1007)):
        comp = v / "comp" / f"log010_comp_v001.{n}.png"
        text = read_png_text(comp)
        assert (text["plate_colorspace"], text["ocio_config"]) == (LOGC, DEFAULT_CONFIG)
        assert text["colorspace"] == WORKING_ENCODED
        # away from the new face: where the face element's alpha is 0, 4 px and more from its edge (a
        # Laplacian blend's coarse bands move pixels whose alpha rounds to 0 in 16 bits)
        element = cv2.imread(str(v / "element" / f"log010_faceElement_v001.{n}.png"), cv2.IMREAD_UNCHANGED)
        away = cv2.erode((element[..., 3] == 0).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        assert 0.2 < away.mean() < 0.9, away.mean()
        error = np.abs(to_float(read_image(comp)) - display[k]).max(-1)
        assert error[away].max() < 0.002, error[away].max()
        assert error[~away].mean() > 0.01  # the new face is in: the retouch is there


def test_a_converted_hdr_plate_is_no_longer_hdr(tmp_path):
    """A PQ plate named as such (`Rec.2100-PQ - Display`) is converted to SDR pictures: its info no longer
    says PQ, so its comp may be 8-bit and its movies are made and labelled BT.709, not HDR."""
    from conftest import hdr_movie

    from pipeline.manifest import load_shot

    plate = hdr_movie(tmp_path / "pq.mp4", frames=3)
    text = f"shot: a\nplate:\n  movie: {plate}\nPQ\noutput: {{sequence: png8}}\n"
    with pytest.raises(Exception, match="PQ"):  # as it is, 8 bits band PQ: refused
        load_shot(write_manifest(tmp_path, text.replace("PQ\n", "")))
    shot = load_shot(write_manifest(tmp_path, text.replace("PQ\n", "  colorspace: Rec.2100-PQ - Display\n")))
    assert shot.plate.info.color.hdr == "" and shot.plate.info.width == 128
    frame = next(shot.read_frames(shot.first, shot.first))
    assert frame.dtype == np.float32 and frame.shape == (96, 128, 3)


def test_a_facilitys_own_config_converts_through_its_interchange_roles(tmp_path, clip):
    """A show's config file (`plate.ocio_config`, relative to the manifest) reaches the working space
    through OCIO 2's interchange roles: the studio config written out as a file converts as the built-in
    one does, and a config without those roles is refused at its field."""
    import PyOpenColorIO as ocio

    from pipeline.errors import ManifestError
    from pipeline.manifest import load_shot

    (tmp_path / "show.ocio").write_text(ocio.Config.CreateFromFile(DEFAULT_CONFIG).serialize())
    m = write_manifest(
        tmp_path, f"shot: a\nplate:\n  movie: {clip}\n  colorspace: {LOGC}\n  ocio_config: show.ocio\n"
    )
    colorspace = load_shot(m).plate.colorspace
    assert colorspace.config == str(tmp_path / "show.ocio")
    frame = (pictures() * 65535).astype(np.uint16)
    assert np.array_equal(colorspace.convert(frame), PlateColorspace.open(LOGC).convert(frame))
    (tmp_path / "bare.ocio").write_text(
        "ocio_profile_version: 2\nroles: {default: raw}\ncolorspaces:\n  - !<ColorSpace>\n    name: raw\n"
    )
    m = write_manifest(
        tmp_path, f"shot: a\nplate:\n  movie: {clip}\n  colorspace: raw\n  ocio_config: bare.ocio\n"
    )
    with pytest.raises(ManifestError, match=r":5 plate.ocio_config: .*bare.ocio: cannot convert 'raw'"):
        load_shot(m)


def test_a_lut_edited_in_a_shows_config_changes_the_key_and_the_pictures(tmp_path, clip):
    """A show's colour space built on a LUT file: the LUT edited in place (the config's text unchanged)
    changes the plate's key, so every stage that read the plate runs again, and the pictures, even in the
    process that read the old LUT (OpenColorIO keeps read files in a cache); the LUT put back, the key
    comes back too."""
    import PyOpenColorIO as ocio

    from pipeline.manifest import load_shot
    from pipeline.shot.keys import digest, plate_fingerprint

    def write_lut(gain: float) -> None:
        (tmp_path / "scan.cube").write_text(f"LUT_1D_SIZE 2\n0 0 0\n{gain} {gain} {gain}\n")

    config = ocio.Config.CreateFromFile(DEFAULT_CONFIG)
    space = ocio.ColorSpace(name="scan")
    space.setTransform(
        ocio.GroupTransform(
            [
                ocio.FileTransform("scan.cube"),
                ocio.ColorSpaceTransform("sRGB Encoded Rec.709 (sRGB)", "ACES2065-1"),
            ]
        ),
        ocio.COLORSPACE_DIR_TO_REFERENCE,
    )
    config.addColorSpace(space)
    config.setSearchPath(".")  # relative to the config file
    (tmp_path / "show.ocio").write_text(config.serialize())
    m = write_manifest(
        tmp_path, f"shot: a\nplate:\n  movie: {clip}\n  colorspace: scan\n  ocio_config: show.ocio\n"
    )
    frame = np.full((2, 2, 3), 200, np.uint8)
    seen = {}
    for gain in (1.0, 0.5, 1.0):
        write_lut(gain)
        shot = load_shot(m)
        seen.setdefault(gain, []).append(
            (digest(plate_fingerprint(shot)), shot.plate.colorspace.convert(frame))
        )
    (key_a, full), (key_b, half) = seen[1.0][0], seen[0.5][0]
    assert key_a != key_b and seen[1.0][1][0] == key_a
    assert np.allclose(full, 200 / 255, atol=1e-3) and np.allclose(half, 100 / 255, atol=2e-3)
    assert np.array_equal(seen[1.0][1][1], full)


def test_a_comp_in_an_exr_plates_own_encoding_keeps_its_half_floats(tmp_path):
    """An ACEScg EXR plate's comp written in its own encoding holds the plate's half floats, bit for bit,
    wherever the new face did not go, and ACEScg values of the new face where it did (read back through the
    conversion, the picture that went in)."""
    import OpenEXR

    write_frame(tmp_path / "p.0001.exr", linear_to_srgb(encode(pictures(), "ACEScg")), "exr", {})
    colorspace = PlateColorspace.open("ACEScg")
    samples = next(open_plate("sequence", str(tmp_path / "p.####.exr")).read(0, 1))
    comp = colorspace.convert(samples)
    comp[15:25, 25:35] = (0.5, 0.25, 0.75)  # the new face, inside its box
    written = colorspace.in_plate_encoding(samples, comp, (slice(10, 30), slice(20, 40)))
    write_frame(tmp_path / "c.0001.exr", written, "exr", {})

    def halves(path: Path) -> np.ndarray:  # the file's RGB, as stored
        with OpenEXR.File(str(path)) as f:
            return np.asarray(f.channels()["RGB"].pixels)

    changed = np.any(halves(tmp_path / "c.0001.exr") != halves(tmp_path / "p.0001.exr"), axis=-1)
    assert changed[15:25, 25:35].all() and changed.sum() == 100, changed.sum()
    back = colorspace.convert(read_image(tmp_path / "c.0001.exr"))
    assert np.abs(back[15:25, 25:35] - (0.5, 0.25, 0.75)).max() < 0.003
