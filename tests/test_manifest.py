from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import pytest
from conftest import hdr_movie, make_clip, write_manifest

from pipeline.cli import main
from pipeline.errors import ManifestError
from pipeline.manifest import load_shot, parse_range
from pipeline.media.sequences import write_frame


def test_movie_manifest_defaults_and_relative_paths(tmp_path, clip):
    (tmp_path / "plates").mkdir()
    (tmp_path / "plates" / "c.mp4").write_bytes(clip.read_bytes())
    shots = tmp_path / "shots"
    shots.mkdir()
    m = write_manifest(shots, "shot: sh010\nplate:\n  movie: ../plates/c.mp4\n")
    shot = load_shot(m)
    assert (shot.first, shot.last) == (1001, 1050)
    assert shot.fps == Fraction(25)
    assert shot.spec.output.sequence == "png16"
    assert shot.plate.info.path == str((tmp_path / "plates" / "c.mp4").resolve())


def test_frame_range_and_fps_override(tmp_path, clip):
    m = write_manifest(
        tmp_path, f"shot: a\nplate:\n  movie: {clip}\n  first_frame: 1\nframes: 5-20\nfps: 24000/1001\n"
    )
    shot = load_shot(m)
    assert (shot.first, shot.last, shot.plate_index(5)) == (5, 20, 4)
    assert shot.fps == Fraction(24000, 1001)


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            "shot: a\nplate:\n  movie: {clip}\nframes: 1001-1200\n",
            "{m}:4 frames: end 1200 is past the plate's last frame 1050",
        ),
        (
            "shot: a\nplate:\n  movie: {clip}\nframes: 900-1010\n",
            "{m}:4 frames: start 900 is before the plate's first frame 1001",
        ),
        ("shot: a\nplate:\n  movie: {clip}\n  colour: red\n", "{m}:4 plate.colour: unknown key"),
        (
            "shot: a\nplate:\n  movie: {clip}\noutput:\n  chunk_size: many\n",
            "{m}:5 output.chunk_size: Input should be a valid integer",
        ),
        (
            "shot: a\nplate:\n  movie: {clip}\noutput:\n  movies: [h264_review, prores9]\n",
            "{m}:5 output.movies[1]: Input should be",
        ),
        ("shot: 'bad name!'\nplate:\n  movie: {clip}\n", "{m}:1 shot: 'bad name!' is not a shot name"),
        (  # its frames' file names would pass 255 bytes: the render failed at its first frame
            "shot: " + "a" * 129 + "\nplate:\n  movie: {clip}\n",
            "{m}:1 shot: a shot name of 129 characters is too long: at most 128",
        ),
        ("shot: a\nplate:\n  movie: {clip}\n  still: x.png\n", "{m}:2 plate: give exactly one of movie"),
        ("shot: a\nplate:\n  still: builtin:astronaut\n", "{m}:2 plate: a still plate needs hold"),
        ("plate:\n  movie: {clip}\n", "{m}:1 shot: required key is missing"),
        (
            "shot: a\nplate:\n  movie: {clip}\npath:\n  enabled: true\n",
            "{m}:4 path.generator: required without a project section",
        ),
        (
            "shot: a\npath:\n  generator: g.pt\n  keyframes:\n"
            "    - frame: 1\n      seed: 1\n      latent: k.npy\n",
            "{m}:5 path.keyframes[0]: give exactly one of image, latent or seed",
        ),
        (
            "shot: a\nfaces:\n  enabled: true\n",
            "{m}:1 plate: required key is missing (only a path shot can go without)",
        ),
        (
            "shot: a\nplate:\n  movie: {clip}\nproject:\n  enabled: true\n",
            "{m}:4 project.generator: required key is missing",
        ),
        (
            "shot: a\nplate:\n  movie: {clip}\nswap:\n  direction: a_to_b\n",
            "{m}:4 swap.model: required key is missing",
        ),
        ("shot: a\nplate: [unclosed\n", "{m}:3 yaml: expected ',' or ']'"),
        (
            "shot: a\nplate:\n  movie: {clip}\noutput:\n  movies:\n    - h264_review\n    - dnxhr_hq\n",
            "{m}:7 output.movies[1]: dnxhr_hq needs at least 256x120 pixels; the plate is 128x96",
        ),
        ("shot: a\nplate:\n  movie: nothere.mp4\n", "{m}:3 plate.movie: {d}/nothere.mp4: plate not found"),
    ],
)
def test_errors_are_one_line_with_file_line_and_field(tmp_path, clip, body, expected):
    m = write_manifest(tmp_path, body.format(clip=clip))
    with pytest.raises(ManifestError) as e:
        load_shot(m)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(expected.format(m=m, d=tmp_path.resolve())), msg


def test_unreadable_manifest(tmp_path):
    with pytest.raises(ManifestError, match=r"missing\.yaml: cannot read manifest"):
        load_shot(tmp_path / "missing.yaml")


def test_parse_range():
    assert parse_range("1001-1100") == (1001, 1100)
    assert parse_range(1040) == (1040, 1040)
    with pytest.raises(ValueError, match="before start"):
        parse_range("1100-1001")


@pytest.mark.parametrize("token", ["####", "%04d"])
def test_sequence_plates_number_frames_by_file(tmp_path, token):
    import numpy as np

    for n in range(12, 17):
        write_frame(tmp_path / f"pl.{n:04d}.png", np.full((8, 10, 3), n, np.uint8), "png8", {})
    m = write_manifest(tmp_path, f"shot: s\nplate:\n  sequence: pl.{token}.png\nfps: 25\n")
    shot = load_shot(m)
    assert (shot.first, shot.last, shot.plate.info.width) == (12, 16, 10)
    frames = list(shot.plate.read(1, 3))
    assert [int(f[0, 0, 0]) for f in frames] == [13, 14]


def test_sequence_with_a_gap_names_the_missing_frame(tmp_path):
    import numpy as np

    for n in (1, 2, 4):
        write_frame(tmp_path / f"pl.{n:04d}.png", np.zeros((8, 8, 3), np.uint8), "png8", {})
    m = write_manifest(tmp_path, "shot: s\nplate:\n  sequence: pl.####.png\n")
    with pytest.raises(ManifestError, match=r"pl\.0003\.png: frame 3 of the sequence is missing"):
        load_shot(m)


def test_validate_command_exit_status_and_one_line_errors(tmp_path, clip, capsys):
    good = write_manifest(tmp_path, f"shot: a\nplate:\n  movie: {clip}\n", "good.yaml")
    bad = write_manifest(tmp_path, f"shot: a\nplate:\n  movie: {clip}\nframes: 1001-1300\n", "bad.yaml")
    assert main(["validate", str(good)]) == 0
    assert "frames 1001-1050 (50)" in capsys.readouterr().out
    assert main(["validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{bad}:4 frames: end 1300 is past the plate's last frame 1050"]


def test_validate_names_an_hdr_plate(tmp_path, capsys):
    """An HDR plate is said to be one (its movies keep its tags: `test_an_hdr_plate_comes_back_as_hdr`)."""
    plate = hdr_movie(tmp_path / "hlg.mp4", frames=3, transfer="arib-std-b67")
    m = write_manifest(tmp_path, f"shot: a\nplate:\n  movie: {plate}\n")
    assert main(["validate", str(m)]) == 0
    assert "HDR HLG (bt2020/arib-std-b67/bt2020nc)" in capsys.readouterr().out


def test_validate_warns_about_an_interlaced_plate(tmp_path, clip, capsys):
    interlaced = ["-flags", "+ildct+ilme", "-x264opts", "tff=1", "-field_order", "tt"]
    plate = make_clip(tmp_path / "1080i.mp4", 10, audio=False, options=interlaced)
    for movie, warned in ((plate, True), (clip, False)):
        m = write_manifest(tmp_path, f"shot: a\nplate:\n  movie: {movie}\n")
        assert main(["validate", str(m)]) == 0
        out = capsys.readouterr().out
        assert ("interlaced (top field first)" in out) == warned, out


def test_validate_warns_about_a_log_dpx_scan(tmp_path, capsys):
    """A film scan kept in printing density (Cineon log) is worked in its log code values as they are:
    validate says so, from the DPX header's transfer byte (FFmpeg's decoder does not give it); a scan
    coded for video gets no warning."""
    from pipeline.media.encode import ffmpeg_executable

    for transfer, name in ((1, "log"), (6, "video")):
        (tmp_path / name).mkdir()
        cmd = [ffmpeg_executable(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24"]
        cmd += ["-frames:v", "2", "-pix_fmt", "gbrp10be", "-start_number", "1001"]
        subprocess.run([*cmd, str(tmp_path / name / "s.%04d.dpx")], check=True)
        for n in (1001, 1002):
            frame = tmp_path / name / f"s.{n}.dpx"
            data = bytearray(frame.read_bytes())
            data[801] = transfer
            frame.write_bytes(bytes(data))
        m = write_manifest(tmp_path, f"shot: a\nplate:\n  sequence: {tmp_path / name}/s.####.dpx\n")
        assert main(["validate", str(m)]) == 0
        out = capsys.readouterr().out
        warned = "s.1001.dpx says its samples are printing density (Cineon log)" in out
        assert warned == (name == "log"), out
    # named, the scan's encoding is converted (plate.colorspace), and validate says that instead
    m = write_manifest(
        tmp_path, f"shot: a\nplate:\n  sequence: {tmp_path}/log/s.####.dpx\n  colorspace: ADX10\n"
    )
    assert main(["validate", str(m)]) == 0
    out = capsys.readouterr().out
    assert "colour space ADX10 (converted to sRGB as it is read)" in out and "warning" not in out, out


def test_validate_warns_of_an_8_bit_plate_in_a_log_encoding(tmp_path, clip, capsys):
    """8-bit samples in a log or scene-linear encoding step several display levels apart once converted
    (bands in a sky or a cheek): validate says how far, from the conversion itself; the same encoding in
    16 bits, or 8-bit display sRGB named as the plate's space, gets no warning."""
    import numpy as np

    (tmp_path / "deep").mkdir()
    for n in (1, 2):
        write_frame(tmp_path / f"deep/pl.{n:04d}.png", np.full((8, 10, 3), 30000, np.uint16), "png16", {})
    cases = (
        (
            f"movie: {clip}",
            "ARRI LogC3 (EI800)",
            "8-bit samples (yuv420p) in ARRI LogC3 (EI800) are up to 4.1/255",
        ),
        (f"movie: {clip}", "sRGB Encoded Rec.709 (sRGB)", None),
        (f"sequence: {tmp_path}/deep/pl.####.png", "ARRI LogC3 (EI800)", None),
    )
    for plate, space, warned in cases:
        m = write_manifest(tmp_path, f"shot: a\nplate:\n  {plate}\n  colorspace: {space}\n")
        assert main(["validate", str(m)]) == 0
        out = capsys.readouterr().out
        assert (warned in out) if warned else "warning" not in out, out


def test_validate_warns_of_coarse_grain_on_8_bit_samples(tmp_path, clip, capsys):
    """composite.grain_size of 1.25 px or more on an 8-bit plate: its grain reads as little or none there,
    and validate says so; on 16-bit samples, or at a finer size, it says nothing."""
    import numpy as np

    (tmp_path / "deep").mkdir()
    for n in (1, 2):
        write_frame(tmp_path / f"deep/pl.{n:04d}.png", np.full((8, 10, 3), 30000, np.uint16), "png16", {})
    cases = (
        (f"movie: {clip}", 1.5, "composite.grain_size 1.5 on the plate's 8-bit samples (yuv420p)"),
        (f"movie: {clip}", 1.0, None),
        (f"sequence: {tmp_path}/deep/pl.####.png", 1.5, None),
    )
    for plate, size, warned in cases:
        m = write_manifest(
            tmp_path, f"shot: a\nplate:\n  {plate}\nfaces: {{}}\ncomposite: {{grain_size: {size}}}\n"
        )
        assert main(["validate", str(m)]) == 0
        out = capsys.readouterr().out
        assert (warned in out) if warned else "warning" not in out, out


def test_validate_warns_that_a_plates_alpha_is_not_carried(tmp_path, clip, capsys):
    """A plate with an alpha channel (an RGBA PNG scan, a ProRes 4444 with alpha) is composited in RGB: its
    comp has no alpha, and validate says so; an RGB plate gets no warning."""
    from pipeline.media.encode import ffmpeg_executable

    cmd = [ffmpeg_executable(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24"]
    subprocess.run([*cmd, "-frames:v", "2", "-pix_fmt", "rgba", str(tmp_path / "a.%04d.png")], check=True)
    cmd += ["-frames:v", "2", "-c:v", "prores_ks", "-profile:v", "4"]
    subprocess.run([*cmd, "-pix_fmt", "yuva444p10le", str(tmp_path / "a.mov")], check=True)
    for plate, warned in (
        ("sequence: a.####.png", "rgba"),
        ("movie: a.mov", "yuva444p"),
        (f"movie: {clip}", ""),
    ):
        m = write_manifest(tmp_path, f"shot: a\nplate:\n  {plate}\n")
        assert main(["validate", str(m)]) == 0
        out = capsys.readouterr().out
        assert ("the plate has an alpha channel" in out) == bool(warned) and warned in out, out


def test_validate_runs_as_a_console_command(tmp_path):
    bad = write_manifest(tmp_path, "shot: a\nplate:\n  movie: gone.mp4\n")
    p = subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", str(bad)], capture_output=True, text=True
    )
    assert p.returncode == 2
    assert p.stderr.strip() == f"{bad}:3 plate.movie: {tmp_path.resolve()}/gone.mp4: plate not found"


def test_validate_refuses_two_manifests_of_one_shot_naming_each_other(tmp_path, capsys):
    """Their renders would share render/<shot>/: each one's latest version the other's."""
    text = "shot: sh010\nplate: {still: builtin:astronaut, hold: 2}\n"
    a, b = write_manifest(tmp_path, text, "a.yaml"), write_manifest(tmp_path, text, "b.yaml")
    c = write_manifest(tmp_path, text.replace("sh010", "sh020"), "c.yaml")
    assert main(["validate", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    tail = "too; give each manifest its own (both would render into sh010/)"
    assert err.splitlines() == [
        f"{a}:1 shot: 'sh010' is the shot of {b} {tail}",
        f"{b}:1 shot: 'sh010' is the shot of {a} {tail}",
    ]
    assert f"{c}: ok: sh020" in out
    # files named one by one are not a batch: variants of one shot may be checked side by side
    assert main(["validate", str(a), str(b), str(c)]) == 0
