from __future__ import annotations

import struct
import subprocess
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import OpenEXR
import pytest
from conftest import hdr_movie, make_clip
from PIL import Image

from pipeline.errors import MediaError
from pipeline.media import sequences
from pipeline.media.color import (
    half_linear_to_srgb,
    linear_to_srgb,
    srgb_to_linear,
    to_float,
    to_half,
    to_linear,
    to_uint8,
    to_uint16,
)
from pipeline.media.decode import CameraMove, MoviePlate, SequencePlate, StillPlate, open_plate, read_image
from pipeline.media.encode import MOVIE_PRESETS, AudioSource, encode_movie, ffmpeg_executable
from pipeline.media.probe import ColorTags, LayerError, bit_depth, dpx_timecode, probe_movie
from pipeline.media.sequences import decode_dpx, in_display, read_png_text, write_frame

META = {"synthetic_imagery": "true", "shot": "t01", "render_version": "v007", "comment": "caf\u00e9 test"}


def decode_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_probe_reports_frames_rate_size_and_audio(clip):
    info = probe_movie(clip)
    assert (info.frame_count, info.fps, info.width, info.height) == (50, Fraction(25), 128, 96)
    assert info.codec == "h264"
    assert info.audio is not None and info.audio.sample_rate == 48000
    assert abs(info.audio.duration - 2.0) < 0.05


@pytest.mark.parametrize("start, stop", [(0, 50), (0, 7), (13, 27), (20, 21), (41, 50), (45, 80)])
def test_chunks_decode_the_same_pixels_as_one_pass(clip, start, stop):
    reference = decode_all(clip)
    frames = list(MoviePlate(clip).read(start, stop))
    assert len(frames) == min(stop, 50) - start
    for got, want in zip(frames, reference[start:stop], strict=True):
        np.testing.assert_array_equal(got, want)


def ffmpeg_rgb(path: Path, width: int, height: int, deep: bool = False) -> np.ndarray:
    """Every frame of a movie as RGB (16-bit when `deep`), decoded by the ffmpeg command line: a reader
    independent of PyAV."""
    fmt, dtype = ("rgb48le", np.uint16) if deep else ("rgb24", np.uint8)
    raw = subprocess.run(
        [ffmpeg_executable(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", fmt, "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype).reshape(-1, height, width, 3)


def test_mpeg4_part2_and_prores_decode(tmp_path):
    """A chunk from frame 5 gives frames 5..23 as ffmpeg decodes them. testsrc2 changes every frame, so a
    seek that lands a frame early or late matches the neighbouring frame instead."""
    for codec, name in [("mpeg4", "m4.mp4"), ("prores_ks", "pr.mov"), ("dnxhd", "dn.mov")]:
        path = tmp_path / name
        cmd = [
            ffmpeg_executable(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=256x144:rate=24:duration=1",
            "-c:v",
            codec,
            "-g",
            "6",  # keyframes at 0, 6, 12, 18: the chunk starts between two
        ]
        cmd += ["-profile:v", "dnxhr_lb", "-pix_fmt", "yuv422p"] if codec == "dnxhd" else []
        subprocess.run([*cmd, str(path)], check=True)
        deep = codec == "prores_ks"  # ProRes 422 is 10-bit: read as 16-bit samples
        want = ffmpeg_rgb(path, 256, 144, deep).astype(np.int32)
        assert len(want) == 24, codec
        frames = list(MoviePlate(path).read(5, 24))
        assert len(frames) == 19 and frames[0].shape == (144, 256, 3), codec
        assert frames[0].dtype == (np.uint16 if deep else np.uint8), codec
        unit = 257 if deep else 1  # one 8-bit level
        for i, got in enumerate(frames, start=5):
            err = {
                k: np.abs(got.astype(np.int32) - want[k]).mean() / unit for k in (i - 1, i, i + 1) if k < 24
            }
            assert err[i] < 1.0 and all(err[i] * 5 < e for k, e in err.items() if k != i), (codec, i, err)
        if deep:  # more than 8 bits of it: not all samples are multiples of 257
            assert np.count_nonzero(frames[0] % 257) > frames[0].size // 4, codec


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_a_movie_with_a_display_matrix_is_read_upright_as_players_show_it(clip, tmp_path, degrees):
    """A phone stores a movie filmed upright on its side, with a matrix that players and ffmpeg apply:
    read without it, the frames (and faces, which the detectors then miss) lie on their side."""
    turned = ffmpeg_copy(clip, tmp_path / "turned.mp4", "-display_rotation", str(degrees))  # a matrix added
    info = probe_movie(turned)
    size = (96, 128) if degrees % 180 else (128, 96)
    assert (info.width, info.height, info.rotation) == (*size, degrees % 360)
    want = ffmpeg_rgb(turned, *size).astype(np.int16)  # the ffmpeg command line applies the matrix
    frames = list(MoviePlate(turned).read(13, 19))  # from a seek, as a chunk reads
    assert len(frames) == 6 and frames[0].shape == (size[1], size[0], 3)
    for i, got in enumerate(frames, start=13):
        err = {k: np.abs(got.astype(np.int16) - want[k]).mean() for k in (i - 1, i, i + 1)}
        assert err[i] < 1.0 and all(err[i] * 5 < e for k, e in err.items() if k != i), (i, err)
    small = next(MoviePlate(turned).read(0, 1, size=(size[0] // 4, size[1] // 4)))  # a quick look's read
    plain = next(MoviePlate(clip).read(0, 1, size=(32, 24)))
    np.testing.assert_array_equal(small, np.rot90(plain, degrees // 90))


def ffmpeg_copy(source: Path, out: Path, *args: str) -> Path:
    subprocess.run(
        [ffmpeg_executable(), "-v", "error", "-y", *args, "-i", str(source), "-c", "copy", str(out)],
        check=True,
    )
    return out


def test_a_clip_trimmed_without_reencoding_reads_the_frames_players_show(clip, tmp_path):
    """`ffmpeg -ss .. -c copy` keeps the frames from the keyframe before the cut, and its container
    lists and counts them at timestamps below the start; the decoder drops them. Read by the timestamp
    grid, the count was wrong and the read failed at a frame "missing from the stream"."""
    trimmed = ffmpeg_copy(clip, tmp_path / "trimmed.mp4", "-ss", "0.5", "-t", "1.2")  # from mid-GOP
    want = decode_all(trimmed)
    with av.open(str(trimmed)) as c:
        assert c.streams.video[0].frames > len(want), "the trim did not list the frames it cut"
    info = probe_movie(trimmed)
    assert info.frame_count == len(want)
    chunks = [f for a in range(0, len(want), 7) for f in MoviePlate(trimmed).read(a, a + 7)]
    assert len(chunks) == len(want)
    for got, ref in zip(chunks, want, strict=True):
        np.testing.assert_array_equal(got, ref)


def test_a_variable_frame_rate_movie_reads_every_frame_once_in_order(tmp_path):
    """A phone slows its frame rate in low light: frames 20 on come every 60 ms instead of every 40. Read
    by the grid of the average rate, frames collided and the read failed."""
    vfr = tmp_path / "vfr.mp4"
    cmd = [ffmpeg_executable(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=2"]
    cmd += ["-vf", "setpts='(N/25+if(gte(N,20),(N-20)*0.02,0))/TB'", "-fps_mode", "passthrough"]
    subprocess.run([*cmd, "-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p", str(vfr)], check=True)
    want = decode_all(vfr)
    info = probe_movie(vfr)
    assert info.frame_count == len(want) == 50
    chunks = [f for a in range(0, 50, 12) for f in MoviePlate(vfr).read(a, a + 12)]
    assert len(chunks) == 50
    for got, ref in zip(chunks, want, strict=True):
        np.testing.assert_array_equal(got, ref)


def assert_chunks_read(path: Path, reference: list[np.ndarray], ranges: list[tuple[int, int]]) -> None:
    """Each chunk [start, stop) of the movie, read on its own, is the reference's frames exactly."""
    for start, stop in ranges:
        frames = list(MoviePlate(path).read(start, stop))
        assert len(frames) == stop - start, (start, stop)
        for got, want in zip(frames, reference[start:stop], strict=True):
            np.testing.assert_array_equal(got, want)


def test_frames_that_share_a_timestamp_are_each_read_once(clip, tmp_path):
    """A muxer can give two frames one timestamp (here the 8th packet gets its predecessor's): players show
    both, and so does the reader, in the decoder's order. By timestamps alone the second was "missing from
    the stream" and the read failed there; a chunk starting among them reads from the start."""
    dup = tmp_path / "dup.mkv"
    setts = "setts=pts='if(eq(N,7),PREV_OUTPTS,PTS)'"
    subprocess.run(
        [ffmpeg_executable(), "-v", "error", "-i", str(clip), "-an", "-c", "copy", "-bsf:v", setts, str(dup)],
        check=True,
    )
    with av.open(str(dup)) as c:
        times = [p.pts for p in c.demux(video=0) if p.size]
    assert len(set(times)) == len(times) - 1  # one time is shared
    reference = decode_all(dup)
    assert probe_movie(dup).frame_count == len(reference) == 50
    assert_chunks_read(dup, reference, [(0, 50), (3, 12), (6, 7), (7, 8), (8, 30)])


@pytest.mark.parametrize("name", ["clip.avi", "clip.h264"])
def test_avi_and_raw_streams_read_in_the_decoders_order(clip, tmp_path, name):
    """An AVI's packets carry decode-order times, which the decoder of a stream with B-frames hands on to
    the wrong frames (read by them, frame 1 was "missing from the stream"), and one re-wrapped from an MP4
    counted its time-base ticks as frames; a raw H.264 stream has no times at all (its first frame "has no
    timestamp", and seeking was refused). Both are numbered by the order the decoder gives them, which is
    the order they are shown; a chunk decodes from the start."""
    out = tmp_path / name
    subprocess.run(
        [ffmpeg_executable(), "-v", "error", "-i", str(clip), "-an", "-c:v", "copy", str(out)], check=True
    )
    reference = decode_all(clip)
    info = probe_movie(out)  # re-wrapped, the AVI keeps the MP4's time base (1/600): 1200 "frames" at 600 fps
    assert (info.frame_count, info.fps) == (50, 25)
    assert_chunks_read(out, reference, [(0, 50), (7, 20), (13, 14), (41, 50)])


@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_a_cover_picture_is_not_taken_for_the_plate(clip, tmp_path, container):
    """A music video's artwork is a one-frame video stream, and in a Matroska file it can come first: the
    plate is the movie beside it, all 50 frames (it was the picture: a plate of one 64x64 frame)."""
    cover = tmp_path / "cover.png"
    cv2.imwrite(str(cover), np.full((64, 64, 3), 200, np.uint8))
    out = tmp_path / f"with_cover.{container}"
    cmd = [ffmpeg_executable(), "-v", "error", "-i", str(cover), "-i", str(clip), "-map", "0", "-map", "1"]
    subprocess.run([*cmd, "-c", "copy", "-disposition:v:0", "attached_pic", str(out)], check=True)
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 2
    info = probe_movie(out)
    assert (info.frame_count, info.width, info.height, info.codec) == (50, 128, 96, "h264")
    for got, want in zip(MoviePlate(out).read(20, 30), decode_all(clip)[20:30], strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_jpegs_exif_orientation_is_applied(tmp_path):
    """A phone's photo (a still plate, an actor's reference) is stored on its side with an EXIF tag."""
    rng = np.random.default_rng(0)
    pixels = cv2.resize(
        rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_NEAREST
    )
    exif = Image.Exif()
    Image.fromarray(pixels).save(tmp_path / "plain.jpg", quality=95)
    for tag, turns in [(6, 3), (8, 1), (3, 2)]:  # EXIF: turn 90 clockwise, 90 counterclockwise, 180
        exif[0x0112] = tag
        Image.fromarray(pixels).save(tmp_path / f"o{tag}.jpg", quality=95, exif=exif.tobytes())
        want = np.rot90(read_image(tmp_path / "plain.jpg"), turns)
        got = read_image(tmp_path / f"o{tag}.jpg")
        assert got.shape == want.shape and np.abs(got.astype(int) - want).mean() < 1, tag


def test_corrupt_movie_names_the_frame(tmp_path, clip):
    data = bytearray(clip.read_bytes())
    mdat = data.find(b"mdat")
    assert 0 < mdat < len(data) // 2, "the test clip keeps its index at the end"
    rng = np.random.default_rng(0)
    start = mdat + (len(data) - mdat) // 2
    data[start : start + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(MediaError, match=r"corrupt\.mp4: frame \d+: (decode error|corrupt packet)") as e:
        list(MoviePlate(bad).read(0, 50))
    frame = int(str(e.value).split("frame ")[1].split(":")[0])
    assert 5 < frame < 50


def test_truncated_movie_names_the_frame(tmp_path, clip):
    fast = tmp_path / "fast.mp4"  # index first, as a copy cut off in transfer would have it
    subprocess.run(
        [
            ffmpeg_executable(),
            "-v",
            "error",
            "-i",
            str(clip),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(fast),
        ],
        check=True,
    )
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    plate = MoviePlate(cut)
    assert plate.info.frame_count == 50
    with pytest.raises(MediaError, match=r"cut\.mp4: frame \d+: ") as e:
        list(plate.read(0, 50))
    assert "\n" not in str(e.value)


def test_movie_with_its_index_cut_off_is_refused_at_probe(tmp_path, clip):
    cut = tmp_path / "noindex.mp4"
    cut.write_bytes(clip.read_bytes()[:5000])
    with pytest.raises(MediaError, match=r"noindex\.mp4: cannot be read as a movie"):
        probe_movie(cut)


@pytest.mark.parametrize("fmt", ["png8", "png16", "exr"])
def test_sequence_formats_round_trip_with_metadata(tmp_path, fmt):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    path = tmp_path / f"x.1001.{sequences.extension(fmt)}"
    write_frame(path, frame, fmt, META)
    back = read_image(path)
    if fmt == "png8":
        np.testing.assert_array_equal(back, frame)
    elif fmt == "png16":
        assert back.dtype == np.uint16
        np.testing.assert_array_equal(to_uint8(back), frame)
    else:
        assert back.dtype == np.float32
        assert np.abs(back * 255 - frame).max() < 0.6  # half float keeps 8-bit values to within a code value
    if fmt == "exr":
        header = sequences.read_exr_header(path)
        assert {k: header[k] for k in META} == META
        with OpenEXR.File(str(path)) as f:
            assert f.channels()["RGB"].pixels.dtype == np.float16
    else:
        assert read_png_text(path) == META
        assert {k: v for k, v in Image.open(path).text.items()} == META  # an independent reader agrees


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_frames_read_back_exactly_in_other_readers(tmp_path, bit_depth):
    """The PNG writer (our rows, ISA-L's deflate) gives files that libpng (OpenCV), Pillow and FFmpeg read
    back sample for sample: grey, grey and alpha, RGB and RGBA, one row to several blocks of rows, with
    the metadata ahead of the pixels."""
    rng = np.random.default_rng(12)
    top = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    smooth = (cv2.resize(rng.random((20, 30, 4)), (97, 2 * sequences.PNG_BLOCK_ROWS + 5)) * top).astype(dtype)
    for shape in ((1, 1, 3), (2 * sequences.PNG_BLOCK_ROWS + 5, 97, 4), (70, 33, 1), (9, 5, 2)):
        noise = rng.integers(0, top + 1, shape, dtype=dtype)
        frames = [noise]
        if shape[0] > 100:  # rows that predict each other, as footage's do
            frames.append(smooth)
        for frame in frames:
            path = tmp_path / f"f{shape[0]}x{shape[1]}x{shape[2]}.png"
            path.write_bytes(sequences.encode_png(frame, bit_depth, META))
            assert read_png_text(path) == META
            by_opencv = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if shape[2] == 2:  # grey and alpha come as BGRA
                by_opencv = by_opencv[..., [0, 3]]
            elif shape[2] >= 3:  # BGR(A)
                by_opencv = np.concatenate([by_opencv[..., 2::-1], by_opencv[..., 3:]], axis=-1)
            by_opencv = by_opencv.reshape(shape)
            np.testing.assert_array_equal(by_opencv, frame)
            if bit_depth == 8:  # Pillow reads 16-bit colour PNGs down to 8 bits
                np.testing.assert_array_equal(np.asarray(Image.open(path)).reshape(shape), frame)
            # and our own reader (what a plate read uses), as RGB: grey repeated, alpha left out
            np.testing.assert_array_equal(sequences.decode_png(path.read_bytes()), frame)
            rgb = frame[..., :3] if shape[2] >= 3 else np.repeat(frame[..., :1], 3, axis=-1)
            np.testing.assert_array_equal(read_image(path), rgb)
    # compressed about as well as libpng does with the same filter (zlib at level 3, runs only)
    bgra = cv2.cvtColor(smooth, cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    libpng = cv2.imencode(".png", bgra, [*params, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])[1]
    assert len(sequences.encode_png(smooth, bit_depth, {})) < 1.1 * len(libpng)


def hand_made_png(rows: np.ndarray, filters: list[int], bit_depth: int = 8, interlace: int = 0) -> bytes:
    """An RGB PNG of the given rows (H x W x 3 samples) with the given filter type for each row (0 None,
    1 Sub, 2 Up), assembled here from the PNG specification, not by the pipeline's writer."""
    h, w, _ = rows.shape
    data = rows.astype(">u2").view(np.uint8) if bit_depth == 16 else rows.astype(np.uint8)
    data = data.reshape(h, -1).astype(np.int64)
    bpp = 3 * bit_depth // 8
    lines = []
    for y, kind in enumerate(filters):
        left = np.concatenate([np.zeros(bpp, np.int64), data[y, :-bpp]])
        above = data[y - 1] if y else np.zeros_like(data[y])
        filtered = {0: data[y], 1: data[y] - left, 2: data[y] - above}[kind] % 256
        lines.append(bytes([kind]) + filtered.astype(np.uint8).tobytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, bit_depth, 2, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(lines)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_our_png_reader_reads_up_and_unfiltered_rows_and_hands_on_the_rest(tmp_path, bit_depth):
    """decode_png reads PNGs whose rows are Up- or un-filtered, whoever wrote them; any other filter
    (in the first rows or only later), an interlaced file or a damaged one it hands on (None), and a plate
    read still gets the right samples from OpenCV's reader or refuses the file."""
    rng = np.random.default_rng(4)
    top = 255 if bit_depth == 8 else 65535
    frame = rng.integers(0, top + 1, (20, 11, 3), dtype=np.uint8 if bit_depth == 8 else np.uint16)
    up_and_none = [0, 2, 2, 0, 0, 2] + [2, 0] * 7
    cases = {
        "up and none": (hand_made_png(frame, up_and_none, bit_depth), True),
        "sub first": (hand_made_png(frame, [1] + [2] * 19, bit_depth), False),
        "sub in row 15": (hand_made_png(frame, [2] * 15 + [1] + [2] * 4, bit_depth), False),
    }
    for name, (data, ours) in cases.items():
        got = sequences.decode_png(data)
        if ours:
            np.testing.assert_array_equal(got, frame, err_msg=name)
        else:
            assert got is None, name
        path = tmp_path / f"{name}.png"
        path.write_bytes(data)
        np.testing.assert_array_equal(read_image(path), frame, err_msg=name)
    good = cases["up and none"][0]
    interlaced = hand_made_png(frame, [2] * 20, bit_depth, interlace=1)
    assert sequences.decode_png(interlaced) is None
    damaged = bytearray(good)
    damaged[60] ^= 0x55  # inside IDAT: its CRC no longer matches
    for bad in (bytes(damaged), good[: len(good) // 2], good[:40]):
        assert sequences.decode_png(bad) is None
        path = tmp_path / "bad.png"
        path.write_bytes(bad)
        with pytest.raises(MediaError, match="bad.png"):
            read_image(path)


def srgb_decode(v: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1: sRGB-encoded values in [0, 1] to linear light (float64, written out here so the
    pipeline's own curve is checked rather than reused)."""
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def srgb_encode(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055)


def exr_by_ffmpeg(path: Path) -> np.ndarray:
    """An EXR as FFmpeg's decoder reads it, through the same sRGB curve as read_image."""
    from pipeline.media.decode import _exr_srgb

    with av.open(str(path)) as container:
        return _exr_srgb(next(container.decode(video=0)))


def test_exr_plates_are_read_by_openexr_as_ffmpeg_reads_them(tmp_path):
    """Single-part EXRs (scan-line or tiled, windowed or not, half or float, RGB or RGBA, several
    compressions) are read by OpenEXR's library, to the same values as FFmpeg's decoder gives (a data window
    placed in the display window, zero around it); mipmapped ones go to FFmpeg's; one cut short or with
    damaged pixels is refused naming the file (FFmpeg's decoder read them without a word), and in a sequence
    naming the frame."""
    rng = np.random.default_rng(8)
    frame = rng.integers(0, 256, (40, 26, 3), dtype=np.uint8)
    files = {"ours.exr": True, "rgba.exr": True, "window.exr": True, "tiled.exr": True, "mipmap.exr": False}
    write_frame(tmp_path / "ours.exr", frame, "exr", META)
    write_frame(tmp_path / "rgba.exr", np.dstack([frame, frame[..., :1]]), "exr", {})
    write_frame(tmp_path / "window.exr", frame[4:30, 2:20], "exr", {}, origin=(2, 4), display=(40, 26))
    tiles = OpenEXR.TileDescription()
    tiles.xSize = tiles.ySize = 16
    with OpenEXR.File(
        {"type": OpenEXR.tiledimage, "tiles": tiles}, {"RGB": rng.random((40, 26, 3), np.float32)}
    ) as f:
        f.write(str(tmp_path / "tiled.exr"))
    tiles.mode = OpenEXR.MIPMAP_LEVELS
    with OpenEXR.File(
        {"type": OpenEXR.tiledimage, "tiles": tiles}, {"RGB": rng.random((40, 26, 3), np.float32)}
    ) as f:
        f.write(str(tmp_path / "mipmap.exr"))
    for compression in ("NO", "RLE", "ZIPS", "PIZ", "PXR24", "B44"):
        for dtype in (np.float16, np.float32):
            name = f"{compression}_{np.dtype(dtype).name}.exr"
            pixels = (rng.random((70, 33, 3)) * 1.5).astype(dtype)
            header = {
                "compression": getattr(OpenEXR, f"{compression}_COMPRESSION"),
                "type": OpenEXR.scanlineimage,
            }
            with OpenEXR.File(header, {"RGB": pixels}) as f:
                f.write(str(tmp_path / name))
            files[name] = True
    for name, by_openexr in files.items():
        path = tmp_path / name
        assert (sequences.decode_exr(path) is not None) == by_openexr, name
        np.testing.assert_array_equal(read_image(path), exr_by_ffmpeg(path), err_msg=name)
    tiled = (tmp_path / "tiled.exr").read_bytes()
    (tmp_path / "cut_tiles.exr").write_bytes(tiled[: len(tiled) - 40])
    with pytest.raises(MediaError, match="cut_tiles.exr: cut short"):
        read_image(tmp_path / "cut_tiles.exr")
    data = (tmp_path / "ours.exr").read_bytes()
    (tmp_path / "cut.exr").write_bytes(data[: len(data) - 40])
    with pytest.raises(MediaError, match="cut.exr: cut short"):
        read_image(tmp_path / "cut.exr")
    damaged = bytearray(data)
    damaged[-30:] = bytes(30)  # the last chunk's compressed lines
    (tmp_path / "damaged.exr").write_bytes(bytes(damaged))
    with pytest.raises(MediaError, match="damaged.exr: damaged"):
        read_image(tmp_path / "damaged.exr")
    for n in (1001, 1002, 1003):
        (tmp_path / "seq").mkdir(exist_ok=True)
        (tmp_path / "seq" / f"x.{n:04d}.exr").write_bytes(data if n != 1002 else data[: len(data) // 2])
    plate = open_plate("sequence", str(tmp_path / "seq" / "x.%04d.exr"), fps=Fraction(24))
    with pytest.raises(MediaError, match=r"x\.1002\.exr: frame 1002: cut short"):
        list(plate.read(0, 3))


def test_a_dwaa_exr_with_a_data_window_or_in_tiles_reads_as_openexr_decodes_it(tmp_path):
    """DWAA is a common compression for Nuke's EXRs, which have a data window (the bounding box). Such a
    file, or a tiled one, went to FFmpeg's decoder, whose picture of it was wrong without a word (0.68-0.69
    off on average, 0-1 scale); it reads as OpenEXR's own library decodes it, placed in its display window.
    So does a DWAA file's named layer, which FFmpeg's decoder could not read."""
    rng = np.random.default_rng(9)
    pixels = rng.random((100, 130, 3)).astype(np.float16)  # the sizes at which FFmpeg went wrong
    tiles = OpenEXR.TileDescription()
    tiles.xSize = tiles.ySize = 64
    dwaa = {"compression": OpenEXR.DWAA_COMPRESSION}
    window = {**dwaa, "type": OpenEXR.scanlineimage, "dataWindow": ((10, 5), (119, 94))}
    window["displayWindow"] = ((0, 0), (129, 99))
    for name, header, stored in (
        ("window.exr", window, pixels[5:95, 10:120]),
        ("tiled.exr", {**dwaa, "type": OpenEXR.tiledimage, "tiles": tiles}, pixels),
    ):
        with OpenEXR.File(header, {"RGB": np.ascontiguousarray(stored)}) as f:
            f.write(str(tmp_path / name))
        with OpenEXR.File(str(tmp_path / name)) as f:
            decoded = f.channels()["RGB"].pixels.copy()  # DWAA is lossy: OpenEXR's own decoding is the truth
        want = np.zeros((100, 130, 3), np.float32)
        box = (slice(5, 95), slice(10, 120)) if name == "window.exr" else (slice(None), slice(None))
        want[box] = srgb_encode(decoded.astype(np.float64))
        got = read_image(tmp_path / name)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)
        assert np.abs(exr_by_ffmpeg(tmp_path / name) - want).mean() > 0.1, name  # FFmpeg's reading is wrong
    # a renderer's layers in DWAA: FFmpeg's decoder could not read them at all ("not yet implemented")
    layers = {f"beauty.{c}": np.ascontiguousarray(pixels[..., k]) for k, c in enumerate("RGB")}
    layers["depth.Z"] = np.ones((100, 130), np.float32)
    with OpenEXR.File({**dwaa, "type": OpenEXR.scanlineimage}, layers) as f:
        f.write(str(tmp_path / "layers.exr"))
    with OpenEXR.File(str(tmp_path / "layers.exr")) as f:
        decoded = f.channels()["beauty"].pixels.copy()
    got = read_image(tmp_path / "layers.exr", layer="beauty")
    np.testing.assert_allclose(got, srgb_encode(decoded.astype(np.float64)), atol=1e-5)
    # a two-part DWAA file only FFmpeg's decoder takes, and it read it 0.66 off: refused, not misread
    parts = [
        OpenEXR.Part({**dwaa, "type": OpenEXR.scanlineimage, "name": "rgba"}, {"RGB": pixels}),
        OpenEXR.Part({**dwaa, "type": OpenEXR.scanlineimage, "name": "depth"}, {"Z": layers["depth.Z"]}),
    ]
    with OpenEXR.File(parts) as f:
        f.write(str(tmp_path / "parts.exr"))
    assert np.abs(exr_by_ffmpeg(tmp_path / "parts.exr") - srgb_encode(pixels.astype(np.float64))).mean() > 0.1
    with pytest.raises(MediaError, match=r"parts\.exr: a DWAA-compressed EXR in a layout only FFmpeg"):
        read_image(tmp_path / "parts.exr")


def test_exr_holds_scene_linear_half_floats(tmp_path):
    """What is in the EXR file, read with the OpenEXR library: the frame's values through the sRGB curve
    as half floats (RGBA: premultiplied by alpha); and reading it back goes the other way."""
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    frame[0, :4] = [[0, 0, 0], [10, 10, 10], [11, 11, 11], [255, 255, 255]]  # both sides of the linear toe
    path = tmp_path / "x.1001.exr"
    write_frame(path, frame, "exr", {})
    with OpenEXR.File(str(path)) as f:
        raw = f.channels()["RGB"].pixels
    assert raw.dtype == np.float16 and raw.shape == frame.shape
    want = srgb_decode(frame / 255.0)
    np.testing.assert_allclose(raw.astype(np.float64), want, rtol=2**-10, atol=1e-7)  # half: 11 bits
    np.testing.assert_allclose(read_image(path), srgb_encode(raw.astype(np.float64)), atol=1e-5)

    rgba = np.concatenate([frame, rng.integers(0, 256, (24, 40, 1), dtype=np.uint8)], axis=-1)
    write_frame(path, rgba, "exr", {})
    with OpenEXR.File(str(path)) as f:
        raw = f.channels()["RGBA"].pixels.astype(np.float64)
    alpha = rgba[..., 3:] / 255.0
    np.testing.assert_allclose(raw[..., 3:], alpha, rtol=2**-10)
    np.testing.assert_allclose(raw[..., :3], want * alpha, rtol=2**-10, atol=1e-7)


def test_linear_and_half_samples_by_table_and_by_opencv_are_the_formulas():
    """to_linear looks 8-bit, 16-bit and half samples up in a table: the very values of the sRGB curve on
    to_float's reading; to_half rounds float32 as NumPy's cast does, out-of-range values and NaN included."""
    rng = np.random.default_rng(6)
    for samples in (
        np.arange(256, dtype=np.uint8).reshape(16, 16),
        rng.integers(0, 65536, (40, 50, 3), dtype=np.uint16),
        np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(256, 256),
    ):
        with np.errstate(invalid="ignore"):
            want = srgb_to_linear(to_float(samples))
        got = to_linear(samples)
        assert got.dtype == np.float32 and got.shape == samples.shape
        np.testing.assert_array_equal(got, want)
    x = rng.normal(0, 3e4, (30, 20, 4)).astype(np.float32)
    x[0, 0] = [np.nan, np.inf, -1e9, 1e-9]
    for image in (x, x[..., :3].copy(), x[..., 0].copy()):
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(to_half(image), image.astype(np.float16))


def test_an_exr_holds_only_the_window_it_is_given(tmp_path):
    """A frame given with an origin and a display size is the EXR's data window, in place in its display
    window (a face element keeps only its box): FFmpeg reads the file back as the whole picture, zero
    outside the window, as it reads the whole picture written out; a PNG, which has no window, holds the
    whole picture."""
    rng = np.random.default_rng(8)
    part = rng.integers(0, 65536, (20, 30, 4), dtype=np.uint16)
    origin, display = (7, 5), (40, 60)
    whole = in_display(part, origin, display)
    assert (
        whole.shape == (40, 60, 4)
        and whole[5:25, 7:37].tolist() == part.tolist()
        and whole.sum() == part.sum()
    )
    write_frame(tmp_path / "part.exr", part, "exr", {"shot": "x"}, origin, display)
    write_frame(tmp_path / "whole.exr", whole, "exr", {"shot": "x"})
    with OpenEXR.File(str(tmp_path / "part.exr")) as f:
        header = f.header()
        assert [w.tolist() for w in header["dataWindow"]] == [[7, 5], [36, 24]]
        assert [w.tolist() for w in header["displayWindow"]] == [[0, 0], [59, 39]]
        assert header["shot"] == "x"
        raw = f.channels()["RGBA"].pixels
    with OpenEXR.File(str(tmp_path / "whole.exr")) as f:
        assert raw.tolist() == f.channels()["RGBA"].pixels[5:25, 7:37].tolist()
    np.testing.assert_array_equal(read_image(tmp_path / "part.exr"), read_image(tmp_path / "whole.exr"))
    write_frame(tmp_path / "part.png", part, "png16", {"shot": "x"}, origin, display)
    write_frame(tmp_path / "whole.png", whole, "png16", {"shot": "x"})
    assert (tmp_path / "part.png").read_bytes() == (tmp_path / "whole.png").read_bytes()
    # the PNG of a window is made without the whole picture, and is the same file: windows at the corners,
    # one pixel, and across blocks of rows
    rows = sequences.PNG_BLOCK_ROWS
    for (x, y), (h, w), size in (
        ((0, 0), (rows + 3, 50), (2 * rows + 9, 50)),
        ((49, 2 * rows + 8), (1, 1), (2 * rows + 9, 50)),
        ((3, rows - 1), (2, 10), (2 * rows + 9, 50)),
        ((0, rows), (rows, 7), (3 * rows, 9)),
    ):
        for depth, dtype in ((8, np.uint8), (16, np.uint16), (16, np.uint8)):
            window = rng.integers(0, 256, (h, w, 4)).astype(dtype)
            made = sequences.encode_png(window, depth, {}, (x, y), size)
            assert made == sequences.encode_png(in_display(window, (x, y), size), depth, {})


def test_png16_and_exr_sequences_read_as_plates(tmp_path):
    """README: a plate can be a 16-bit PNG or EXR sequence. 16-bit PNG keeps all 16 bits (files written
    by OpenCV here, not by the pipeline); EXR's scene-linear values come back through the sRGB curve."""
    rng = np.random.default_rng(4)
    deep = [rng.integers(0, 65536, (18, 30, 3), dtype=np.uint16) for _ in range(3)]
    (tmp_path / "png").mkdir()
    for i, f in enumerate(deep):
        cv2.imwrite(str(tmp_path / "png" / f"p.{1001 + i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    plate = open_plate("sequence", str(tmp_path / "png" / "p.####.png"))
    assert (plate.info.frame_count, plate.info.first_frame) == (3, 1001)
    got = list(plate.read(0, 3))
    assert len(got) == 3
    for g, f in zip(got, deep, strict=True):
        assert g.dtype == np.uint16
        np.testing.assert_array_equal(g, f)

    linear = [rng.random((18, 30, 3)).astype(np.float16) for _ in range(3)]
    (tmp_path / "exr").mkdir()
    for i, f in enumerate(linear):
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(header, {"RGB": f}) as exr:
            exr.write(str(tmp_path / "exr" / f"e.{1001 + i:04d}.exr"))
    plate = open_plate("sequence", str(tmp_path / "exr" / "e.%04d.exr"))
    got = list(plate.read(1, 3))  # a chunk from the second frame
    assert len(got) == 2
    for g, f in zip(got, linear[1:], strict=True):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, srgb_encode(f.astype(np.float64)), atol=1e-5)


def write_exr_channels(path: Path, channels: dict[str, np.ndarray]) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))


def test_a_renderers_layered_exr_is_read_by_its_named_layer_and_refused_without_one(tmp_path):
    """A renderer's multi-layer EXR (beauty.R/G/B, depth.Z) has no top-level picture: FFmpeg's reader made
    one of no size, and the plate was refused as "no picture size". It reads by `layer` as the same
    picture written plainly; without one, or with one it lacks, it is refused naming its layers."""
    rng = np.random.default_rng(3)
    linear = [rng.random((18, 30, 3)).astype(np.float16) for _ in range(3)]
    for folder in ("plain", "layers", "png"):
        (tmp_path / folder).mkdir()
    for i, f in enumerate(linear):
        write_exr_channels(tmp_path / "plain" / f"p.{1001 + i}.exr", {"RGB": f})
        beauty = {f"beauty.{c}": np.ascontiguousarray(f[..., k]) for k, c in enumerate("RGB")}
        depth = {"depth.Z": rng.random((18, 30)).astype(np.float32)}
        write_exr_channels(tmp_path / "layers" / f"l.{1001 + i}.exr", {**beauty, **depth})
    plain = list(open_plate("sequence", str(tmp_path / "plain" / "p.####.exr")).read(0, 3))
    plate = open_plate("sequence", str(tmp_path / "layers" / "l.####.exr"), layer="beauty")
    assert (plate.info.width, plate.info.height, plate.info.layer) == (30, 18, "beauty")
    got = list(plate.read(0, 3))
    assert len(got) == 3
    for g, want in zip(got, plain, strict=True):
        np.testing.assert_array_equal(g, want)
    still = open_plate("still", str(tmp_path / "layers" / "l.1002.exr"), hold=2, layer="beauty")
    np.testing.assert_array_equal(next(still.read(0, 1)), plain[1])

    with pytest.raises(LayerError, match=r"l\.1001\.exr: no top-level R, G, B .*its layers: beauty, depth"):
        open_plate("sequence", str(tmp_path / "layers" / "l.####.exr"))
    with pytest.raises(LayerError, match=r"no layer 'diffuse' .*its layers: beauty, depth"):
        open_plate("sequence", str(tmp_path / "layers" / "l.####.exr"), layer="diffuse")
    with pytest.raises(LayerError, match="its layers: beauty, depth"):  # as the still was
        read_image(tmp_path / "layers" / "l.1001.exr")
    # a frame without the layer, in the middle of the shot, is named by its frame
    write_exr_channels(tmp_path / "layers" / "l.1002.exr", {"RGB": linear[1]})
    with pytest.raises(MediaError, match=r"l\.1002\.exr: frame 1002: no layer 'beauty'.*it has no layers"):
        list(plate.read(0, 3))
    cv2.imwrite(str(tmp_path / "png" / "q.1001.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(LayerError, match="EXR files only"):
        open_plate("sequence", str(tmp_path / "png" / "q.####.png"), layer="beauty")
    with pytest.raises(LayerError, match="not movies"):
        open_plate("movie", str(tmp_path / "m.mp4"), layer="beauty")


def test_a_luminance_only_exr_reads_as_grey(tmp_path):
    """A black-and-white scan as a Y-only EXR: FFmpeg decodes it to one grey plane, where the reader took
    three and stopped with a traceback. It reads as the RGB file whose R, G and B are its Y."""
    y = np.random.default_rng(4).random((18, 30)).astype(np.float16)
    (tmp_path / "y").mkdir()
    for n in (1001, 1002):
        write_exr_channels(tmp_path / "y" / f"y.{n}.exr", {"Y": y})
    write_exr_channels(tmp_path / "rgb.exr", {"RGB": np.repeat(y[..., None], 3, axis=-1)})
    want = read_image(tmp_path / "rgb.exr")
    plate = open_plate("sequence", str(tmp_path / "y" / "y.####.exr"))
    got = list(plate.read(0, 2))
    assert len(got) == 2 and got[0].shape == (18, 30, 3)
    np.testing.assert_array_equal(got[1], want)
    # a luminance/chroma file (Y, RY, BY): FFmpeg reads its Y alone, a grey picture; refused, by its frame
    chroma = np.full((18, 30), 0.2, np.float16)
    write_exr_channels(tmp_path / "y" / "y.1002.exr", {"Y": y, "RY": chroma, "BY": -chroma})
    with pytest.raises(MediaError, match=r"y\.1002\.exr: frame 1002: a luminance/chroma EXR"):
        list(plate.read(0, 2))
    write_exr_channels(tmp_path / "y" / "y.1001.exr", {"Y": y, "RY": chroma, "BY": -chroma})
    with pytest.raises(MediaError, match=r"y\.1001\.exr: a luminance/chroma EXR .*its colour would be lost"):
        open_plate("sequence", str(tmp_path / "y" / "y.####.exr"))  # by the probe, from its first frame


@pytest.mark.parametrize("pix_fmt", ["gbrp10be", "gbrp10le", "gbrp12be", "gbrp12le", "rgb48be", "rgb48le"])
def test_a_10_12_and_16_bit_dpx_scan_is_read_as_16_bit_samples(tmp_path, pix_fmt):
    """A film scan's 10- or 12-bit DPX frames were read as 8 bits (the reader took a frame as deep only
    when its pixel format's name held 16, 48 or 64), so png16 and EXR comps of a scan kept 8 bits of it.
    They read as the 16-bit RGB the ffmpeg command line makes of them, with more than 256 levels, in either
    byte order, by our own decoder (`decode_dpx`); a layout it does not know goes to FFmpeg's."""
    (tmp_path / "dpx").mkdir()
    cmd = [ffmpeg_executable(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24"]
    cmd += ["-frames:v", "2", "-pix_fmt", pix_fmt, "-start_number", "1001"]
    subprocess.run([*cmd, str(tmp_path / "dpx" / "s.%04d.dpx")], check=True)
    plate = open_plate("sequence", str(tmp_path / "dpx" / "s.####.dpx"))
    got = list(plate.read(0, 2))
    assert len(got) == 2
    for n, g in zip((1001, 1002), got, strict=True):
        assert g.dtype == np.uint16
        np.testing.assert_array_equal(g, ffmpeg_rgb(tmp_path / "dpx" / f"s.{n}.dpx", 64, 48, deep=True)[0])
    if pix_fmt.startswith("gbrp"):  # made from 8-bit video through YUV: more levels than 8 bits hold
        assert len(np.unique(got[0])) > 256
    assert read_image(tmp_path / "dpx" / "s.1001.dpx").dtype == np.uint16  # a still of it too
    data = (tmp_path / "dpx" / "s.1001.dpx").read_bytes()
    ours = decode_dpx(data)
    assert ours is not None
    np.testing.assert_array_equal(ours, got[0])
    # a layout it does not know (here: rows bottom to top) is for FFmpeg's reader, not misread
    order = ">" if pix_fmt.endswith("be") else "<"
    turned = data[:768] + struct.pack(order + "H", 2) + data[770:]
    assert decode_dpx(turned) is None
    assert decode_dpx(data[:-4]) is None  # cut short


# an 8x8 grey JPEG XL picture, as ffmpeg's libjxl writes it (`-f lavfi -i color=c=gray:s=8x8 -c:v libjxl`)
TINY_JXL = (
    b"\xff\nA\x06\x00\x13\x88\x02\x00\xb0\x00\xb5\x9f \x00\x00\x15*\xa3\x8c\x1b\xbc\x9c\xeb\xf9\xf2C"
    b"\x87\xc5\xb4\x8d\xeb\x0cm\xb5ma\tc\xb3\xbd0HH8k\x18\xda\xcd\x81a\x88Q%\t"
)


def test_a_sequence_in_a_format_pyav_cannot_decode_is_refused_in_one_line(tmp_path):
    """PyAV's FFmpeg opens a JPEG XL file but has no decoder for it (no libjxl): the probe stopped with an
    AttributeError traceback; it is refused naming the file and the format."""
    if "libjxl" in av.codecs_available or "jpegxl" in av.codecs_available:
        pytest.skip("this PyAV's FFmpeg decodes JPEG XL: no format it opens without a decoder to try")
    (tmp_path / "jxl").mkdir()
    for n in (1001, 1002):
        (tmp_path / "jxl" / f"j.{n}.jxl").write_bytes(TINY_JXL)
    with pytest.raises(MediaError, match=r"j\.1001\.jxl: cannot be read as an image: no decoder .*jpegxl"):
        open_plate("sequence", str(tmp_path / "jxl" / "j.####.jxl"))


def test_an_unpadded_sequence_named_with_percent_d_reads_in_frame_order(tmp_path):
    """`shot.%d.png` (printf's unpadded number, as FFmpeg takes it: shot.9.png, shot.10.png) was refused
    as needing #### or %04d. It reads frames 9, 10, 11 in number order, not name order."""
    (tmp_path / "u").mkdir()
    frames = {n: np.full((4, 6, 3), n * 10, np.uint8) for n in (9, 10, 11)}
    for n, f in frames.items():
        cv2.imwrite(str(tmp_path / "u" / f"shot.{n}.png"), f)
    plate = open_plate("sequence", str(tmp_path / "u" / "shot.%d.png"))
    assert (plate.info.first_frame, plate.info.frame_count) == (9, 3)
    assert [int(f[0, 0, 0]) for f in plate.read(0, 3)] == [90, 100, 110]


def test_frame_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "x.1001.png"
    write_frame(path, np.zeros((4, 4, 3), np.uint8), "png8", {})
    before = path.read_bytes()

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sequences.os, "replace", fail)
    with pytest.raises(MediaError, match=r"x\.1001\.png: cannot write frame: No space left"):
        write_frame(path, np.full((4, 4, 3), 255, np.uint8), "png8", {})
    assert path.read_bytes() == before  # the finished frame is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["x.1001.png"]  # no temporary left behind


def test_color_conversions_invert():
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)
    v = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(to_uint16(v)), v)
    # an EXR's half floats go through a table of the curve: the same values as computing it, for every one
    every_half = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(64, 1024)
    with np.errstate(invalid="ignore"):
        computed = linear_to_srgb(every_half.astype(np.float32))
    looked_up = half_linear_to_srgb(every_half)
    assert looked_up.dtype == np.float32 and looked_up.shape == every_half.shape
    np.testing.assert_array_equal(looked_up, computed)  # NaN where NaN


def test_still_plate_camera_move(tmp_path):
    plate = StillPlate("builtin:astronaut", hold=10, move=CameraMove(zoom=(1.0, 1.5)))
    frames = list(plate.read(0, 10))
    assert len(frames) == 10 and frames[0].shape == (512, 512, 3)
    np.testing.assert_array_equal(frames[0], plate.image)  # the move starts at rest
    assert np.abs(frames[9].astype(int) - frames[0]).mean() > 10  # and ends zoomed in
    # chunks give the same frames as one pass
    np.testing.assert_array_equal(list(plate.read(4, 6))[1], frames[5])


def write_sequence(folder: Path, frames: list[np.ndarray], first: int = 1001, fmt: str = "png8") -> Path:
    for i, f in enumerate(frames):
        write_frame(folder / f"s.{first + i:04d}.{sequences.extension(fmt)}", f, fmt, META)
    return folder / f"s.%04d.{sequences.extension(fmt)}"


@pytest.mark.parametrize("preset", sorted(MOVIE_PRESETS))
def test_every_movie_preset_with_audio_and_metadata(tmp_path, clip, preset):
    frames = [
        np.ascontiguousarray(np.tile(f, (2, 2, 1))) for f in decode_all(clip)[10:30]
    ]  # 256x192: DNxHR's minimum
    pattern = write_sequence(tmp_path, frames, first=1011)
    out = tmp_path / f"m.{MOVIE_PRESETS[preset].extension}"
    audio = AudioSource(str(clip), offset=10 / 25, duration=20 / 25)
    encode_movie(pattern, 1011, 20, Fraction(25), out, preset, META, audio=audio, burn_in_text="t01 v007")
    with av.open(str(out)) as c:
        assert {k: c.metadata.get(k) for k in META} == META
        v, a = c.streams.video[0], c.streams.audio[0]
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        assert len(decoded) == 20
        assert abs(float(a.duration * a.time_base) - 0.8) <= 1 / 25
    if preset != "h264_review":  # no burn-ins: the picture matches the sequence closely
        err = np.abs(decoded[5].astype(int) - frames[5]).mean()
        assert err < 3, err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_plate_with_more_sound_channels_than_aac_holds_makes_its_review_movie(tmp_path, clip):
    """A sound recordist's 10-track polyphonic WAV muxed into the plate (or a 7.1.4 mix): AAC holds 8
    channels, and the review movie failed after every frame had rendered. It gets a stereo mix down; the
    delivery movies (24-bit PCM) keep every channel, and a second stream of 2 channels stays as it is."""
    plate = tmp_path / "poly.mov"
    split = "".join(f"[a{i}]" for i in range(10))
    cmd = [ffmpeg_executable(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25"]
    cmd += ["-f", "lavfi", "-i", "anoisesrc=sample_rate=48000", "-f", "lavfi", "-i", "sine=sample_rate=48000"]
    cmd += [
        "-filter_complex",
        f"[1:a]asplit=10{split};{split}amerge=inputs=10[poly];[2:a]aformat=channel_layouts=stereo[two]",
    ]
    cmd += [
        "-map",
        "0:v",
        "-map",
        "[poly]",
        "-map",
        "[two]",
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-c:a",
        "pcm_s24le",
        str(plate),
    ]
    subprocess.run(cmd, check=True)
    pattern = write_sequence(tmp_path, decode_all(clip)[:6])
    audio = AudioSource(str(plate), offset=0.0, duration=6 / 25)
    for preset, want in (("h264_review", [2, 2]), ("prores422hq", [10, 2])):
        out = tmp_path / f"m.{MOVIE_PRESETS[preset].extension}"
        encode_movie(pattern, 1001, 6, Fraction(25), out, preset, META, audio=audio)
        with av.open(str(out)) as c:
            assert [a.codec_context.channels for a in c.streams.audio] == want, preset


def test_movies_are_made_and_plates_read_in_folders_named_with_percent_or_colon(tmp_path, clip, monkeypatch):
    """A render root in a folder named `100%` or `%d` was read by FFmpeg's image2 reader as part of the
    frame pattern (the review movie failed: no such file), and a relative path whose first part holds a
    colon (`take:1/`, a plate `take:1.mov`) as a protocol's name. Both make their movie, with the audio."""
    folder = tmp_path / "take:1 100%d"
    folder.mkdir()
    frames = decode_all(clip)[:6]
    write_sequence(folder, frames)
    (folder / "take:1.mp4").write_bytes(clip.read_bytes())
    monkeypatch.chdir(tmp_path)
    relative = Path("take:1 100%d")
    audio = AudioSource(str(relative / "take:1.mp4"), offset=0.0, duration=6 / 25)
    out = relative / "m:1.mp4"
    encode_movie(relative / "s.%04d.png", 1001, 6, Fraction(25), out, "h264_review", META, audio=audio)
    with av.open(str(out.absolute())) as c:  # PyAV, too, reads `m:1.mp4` as a protocol's
        assert len(list(c.decode(video=0))) == 6
        assert c.streams.audio
    # and the plate reader opens it by that relative path (`vfx extract take:1.mp4` was "Protocol not found")
    plate = open_plate("movie", str(relative / "take:1.mp4"))
    np.testing.assert_array_equal(next(plate.read(2, 3)), frames[2])


def test_burn_ins_show_the_frame_number(tmp_path):
    frames = [np.full((96, 128, 3), 40, np.uint8)] * 3
    pattern = write_sequence(tmp_path, frames)
    out = tmp_path / "r.mp4"
    encode_movie(pattern, 1001, 3, Fraction(24), out, "h264_review", META, burn_in_text="t01 v007")
    got = decode_all(out)
    plain = np.abs(got[0].astype(int) - 40) > 40
    assert plain[:20, :60].any() and plain[-20:, -60:].any()  # text at top left and bottom right
    assert not np.array_equal(got[0][-20:, -60:], got[1][-20:, -60:])  # the frame number changes


def test_failed_encode_leaves_no_movie(tmp_path):
    pattern = write_sequence(tmp_path, [np.zeros((64, 64, 3), np.uint8)] * 3)
    out = tmp_path / "bad.mov"
    with pytest.raises(MediaError, match=r"bad\.mov: ffmpeg failed"):
        # a start number with no files behind it makes ffmpeg fail
        encode_movie(pattern, 5000, 3, Fraction(24), out, "prores422hq", META)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- real footage -----------------------------------------------------------------------------------

CLIPS = ["woman_headturns_512.mp4", "man_glasses_720x1280.mp4", "talking_head_mpeg4_512.mp4"]


@pytest.mark.parametrize("name", CLIPS)
def test_every_frame_of_the_real_clips_decodes(footage, name):
    path = footage / name
    plate = MoviePlate(path)
    with av.open(str(path)) as c:
        container_frames = c.streams.video[0].frames
    count = 0
    for frame in plate.read(0, plate.info.frame_count):
        assert frame.shape == (plate.info.height, plate.info.width, 3)
        count += 1
    assert count == container_frames == plate.info.frame_count


def test_real_clip_chunks_match_one_pass(footage):
    path = footage / "woman_headturns_512.mp4"
    reference = decode_all(path)[100:140]
    for a, b in [(100, 120), (120, 140)]:
        for got, want in zip(MoviePlate(path).read(a, b), reference[a - 100 : b - 100], strict=True):
            np.testing.assert_array_equal(got, want)


def test_movies_from_an_exr_sequence_are_display_referred(tmp_path):
    ramp = np.tile(np.linspace(0, 1, 256, dtype=np.float32)[None, :, None], (144, 1, 3))
    pattern = write_sequence(tmp_path, [ramp] * 3, fmt="exr")  # stored as linear light
    out = tmp_path / "m.mov"
    encode_movie(pattern, 1001, 3, Fraction(24), out, "dnxhr_hq", META, linear_exr=True)
    got = decode_all(out)[0].astype(np.float64) / 255
    assert np.abs(got[20:120, 10:240] - ramp[20:120, 10:240]).mean() < 0.01  # back on the sRGB curve


@pytest.mark.parametrize("transfer, hdr", [("smpte2084", "PQ"), ("arib-std-b67", "HLG")])
def test_an_hdr_plate_comes_back_as_hdr(tmp_path, transfer, hdr):
    """An HDR plate's code values are kept, and its movies say how to show them: BT.2020 primaries and
    matrix and its PQ or HLG curve, 10-bit in every preset. Labelled BT.709 (as they were), players showed
    the same numbers washed out; made with the BT.709 matrix under a BT.2020 tag, colours shift."""
    plate = hdr_movie(tmp_path / "hdr.mp4", size="256x144", transfer=transfer)  # DNxHR: 256x120 or more
    info = probe_movie(plate)
    assert info.color == ColorTags("bt2020", transfer, "bt2020nc") and info.color.hdr == hdr
    frames = list(MoviePlate(plate).read(0, info.frame_count))
    assert frames[0].dtype == np.uint16  # 10-bit: read as 16-bit samples
    pattern = write_sequence(tmp_path, frames, fmt="png16")
    for preset in ("prores422hq", "h264_review", "dnxhr_hq"):
        out = tmp_path / f"m_{preset}.{MOVIE_PRESETS[preset].extension}"
        encode_movie(pattern, 1001, len(frames), Fraction(24), out, preset, META, color=info.color)
        back = probe_movie(out)
        matrix = "bt709" if preset == "dnxhr_hq" else "bt2020nc"  # what DNxHR's own header says
        assert back.color == ColorTags("bt2020", transfer, matrix), preset
        assert bit_depth(back.pixel_format) == 10, (preset, back.pixel_format)
        if preset == "h264_review":
            continue  # burn-ins
        got = next(iter(MoviePlate(out).read(3, 4))).astype(np.float64)
        err = np.abs(got - frames[3]).mean() / 257  # in 8-bit levels
        assert err < 1.5, (preset, err)


def test_an_untagged_plate_gives_movies_tagged_bt709(tmp_path, clip):
    """Frames with no colour tags are taken as BT.709, and their movies say so (ffmpeg 7 and later
    tag a stream from its frames: -color_trc alone left it unspecified)."""
    assert probe_movie(clip).color == ColorTags()
    pattern = write_sequence(tmp_path, decode_all(clip)[:3])
    out = tmp_path / "m.mov"
    encode_movie(pattern, 1001, 3, Fraction(24), out, "prores422hq", META, color=probe_movie(clip).color)
    assert probe_movie(out).color == ColorTags("bt709", "bt709", "bt709")


def test_an_anamorphic_plates_movies_keep_its_pixel_aspect(tmp_path):
    """HDV stores 1920x1080 as 1440x1080 pixels 4/3 wide: a movie made without the ratio showed every
    face a quarter narrower than the plate did."""
    plate = make_clip(tmp_path / "hdv.mp4", 12, "144x108", 24, audio=False, options=["-vf", "setsar=4/3"])
    info = probe_movie(plate)
    assert info.pixel_aspect == Fraction(4, 3) and (info.width, info.height) == (144, 108)
    pattern = write_sequence(tmp_path, list(MoviePlate(plate).read(0, 3)))
    out = tmp_path / "m.mov"
    encode_movie(pattern, 1001, 3, Fraction(24), out, "prores422hq", META, pixel_aspect=info.pixel_aspect)
    assert probe_movie(out).pixel_aspect == Fraction(4, 3)
    assert probe_movie(
        ffmpeg_copy(plate, tmp_path / "turned.mp4", "-display_rotation", "90")
    ).pixel_aspect == (Fraction(3, 4))


def test_exr_and_dpx_sequences_carry_their_pixel_aspect_and_the_comps_exr_keeps_it(tmp_path):
    """A cinema anamorphic plate comes as EXR (pixelAspectRatio 2) or DPX frames: the plate says so, so its
    faces are worked unsqueezed, and its comp EXRs say so again, as Nuke reads them. A PNG's pHYs is not
    taken (FFmpeg reads its x and y the other way round from the PNG specification)."""
    from pipeline.media.probe import probe_sequence
    from pipeline.media.sequences import read_exr_header

    frame = np.random.default_rng(0).random((16, 32, 3)).astype(np.float16)
    (tmp_path / "exr").mkdir()
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, "pixelAspectRatio": 2.0}
    for n in (1001, 1002):
        with OpenEXR.File(header, {"RGB": frame}) as f:
            f.write(str(tmp_path / "exr" / f"p.{n}.exr"))
    assert probe_sequence(tmp_path / "exr" / "p.####.exr", None).pixel_aspect == 2
    for ext in ("dpx", "png"):
        (tmp_path / ext).mkdir()
        cmd = [ffmpeg_executable(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=32x16:rate=24"]
        cmd += [
            "-frames:v",
            "2",
            "-vf",
            "setsar=2",
            "-start_number",
            "1001",
            str(tmp_path / ext / f"p.%04d.{ext}"),
        ]
        subprocess.run(cmd, check=True)
    assert probe_sequence(tmp_path / "dpx" / "p.####.dpx", None).pixel_aspect == 2
    assert probe_sequence(tmp_path / "png" / "p.####.png", None).pixel_aspect == 1
    # a render of the EXR plate writes comps that say so again; a square plate's do not
    from pipeline.manifest import load_shot
    from pipeline.shot.render import render_chunk
    from pipeline.workspace import new_version

    for name, plate in (("ana", tmp_path / "exr" / "p.####.exr"), ("sq", tmp_path / "png" / "p.####.png")):
        m = tmp_path / f"{name}.yaml"
        m.write_text(f"shot: {name}\nplate: {{sequence: {plate}}}\noutput: {{sequence: exr, movies: []}}\n")
        shot = load_shot(m)
        version = new_version(tmp_path / "render", shot.name, "exr")
        render_chunk(shot, version, {}, 1001, 1002)
        header = read_exr_header(version.frame_path(1002))
        assert header.get("pixelAspectRatio", 1.0) == (2.0 if name == "ana" else 1.0)


def mpeg_ts_parts_joined(tmp_path: Path, sizes: list[str]) -> Path:
    """MPEG-TS parts of 8 frames each (one size each) joined by FFmpeg's concat demuxer without re-encoding,
    as a recorder's split files are joined: the second part's timestamps follow on from the first's."""
    parts = []
    for i, size in enumerate(sizes):
        part = tmp_path / f"part{i}.ts"
        source = f"testsrc2=size={size}:rate=25:duration=0.32"
        cmd = [ffmpeg_executable(), "-v", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264"]
        subprocess.run([*cmd, "-pix_fmt", "yuv420p", "-f", "mpegts", str(part)], check=True)
        parts.append(part)
    listing = tmp_path / "parts.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    joined = tmp_path / "joined.ts"
    cmd = [ffmpeg_executable(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing)]
    subprocess.run([*cmd, "-c", "copy", str(joined)], check=True)
    return joined


def test_a_joined_mpeg_ts_reads_the_same_frames_from_any_start(tmp_path):
    """A seek into the second part landed past every frame, and a chunk starting there failed as a
    truncated file; such a read now starts again from the first frame."""
    joined = mpeg_ts_parts_joined(tmp_path, ["64x48", "64x48"])
    plate = MoviePlate(joined)
    reference = list(plate.read(0, 16))
    assert len(reference) == 16
    for start in (6, 8, 11):
        frames = list(plate.read(start, 16))
        assert len(frames) == 16 - start
        assert all(np.array_equal(a, b) for a, b in zip(frames, reference[start:], strict=True))


def test_a_frame_of_another_size_is_refused_naming_it(tmp_path):
    """A proxy or a re-render of another size slipped into a sequence, or a movie whose picture size
    changes: it was composited at its own size, with the track's landmarks of the others."""
    for n in (1, 2, 3, 4):
        write_frame(tmp_path / f"pl.{n:04d}.png", np.zeros((6 if n == 3 else 8, 8, 3), np.uint8), "png8", {})
    plate = SequencePlate(tmp_path / "pl.####.png")
    with pytest.raises(MediaError) as e:
        list(plate.read(0, 4))
    assert str(e.value) == f"{tmp_path / 'pl.0003.png'}: frame 3: 8x6, where the sequence's frames are 8x8"

    joined = mpeg_ts_parts_joined(tmp_path, ["64x48", "48x32"])
    for start in (0, 10):
        with pytest.raises(
            MediaError, match=r"joined\.ts: frame 8: 48x32, where the movie's frames are 64x48"
        ):
            list(MoviePlate(joined).read(start, 16))


def test_timecode_labels_count_frames_as_smpte_does_drop_frame_included():
    """SMPTE ST 12-1: non-drop labels count frames at the nominal rate; drop-frame labels at 29.97 and 59.94
    skip the first 2 (4) labels of each minute but every tenth."""
    from pipeline.media.timecode import TimecodeError, format_timecode, offset_timecode, parse_timecode

    ntsc, ntsc60 = Fraction(30000, 1001), Fraction(60000, 1001)
    assert offset_timecode("00:00:59;29", ntsc, 1) == "00:01:00;02"
    assert offset_timecode("00:09:59;29", ntsc, 1) == "00:10:00;00"  # every tenth minute keeps its labels
    assert offset_timecode("00:00:59;59", ntsc60, 1) == "00:01:00;04"
    assert parse_timecode("01:00:00;00", ntsc) == (107892, True)  # an hour of 29.97 fps
    assert parse_timecode("01:00:00:00", ntsc) == (108000, False)  # non-drop at 29.97 counts 30 a second
    assert offset_timecode("00:59:59:23", Fraction(24000, 1001), 1) == "01:00:00:00"
    assert offset_timecode("23:59:59;29", ntsc, 1) == "00:00:00;00"  # a day wraps
    assert offset_timecode("00:00:00:119", Fraction(120), 1) == "00:00:01:00"  # a high-speed plate
    assert offset_timecode("10:00:00:00", Fraction(12), 25) == "10:00:02:01"
    assert offset_timecode("01:00:00:0", Fraction(7), 8) == "01:00:01:01"  # FFmpeg's one digit under 10 fps
    for n in range(0, 24 * 107892, 997):  # every drop-frame label reads back as its frame
        assert parse_timecode(format_timecode(n, ntsc, drop=True), ntsc) == (n, True)
    bad = [
        ("00:01:00;00", ntsc, "skips"),
        ("00:00:00;00", Fraction(24), "drop-frame"),
        ("00:00:00:24", Fraction(24), "frames count 0-23"),
        ("24:00:00:00", Fraction(24), "hours"),
        ("1:00 PM", Fraction(24), "not a timecode"),
    ]
    for text, fps, why in bad:
        with pytest.raises(TimecodeError, match=why):
            parse_timecode(text, fps)


def test_a_plates_timecode_is_read_from_movie_tracks_and_tags_and_dpx_exr_and_png_headers(tmp_path):
    """Where cameras and scanners put the first frame's timecode: a MOV or MP4 timecode track, an MXF's or
    Matroska file's tag, a DPX's TV header (BCD, with its drop-frame flag), an EXR's timeCode; a PNG comp
    of ours read as a plate keeps its own."""
    from pipeline.media.probe import probe_sequence

    src = [ffmpeg_executable(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25"]
    for name, codec in (
        ("t.mov", "libx264"),
        ("t.mp4", "libx264"),
        ("t.mxf", "mpeg2video"),
        ("t.mkv", "ffv1"),
    ):
        cmd = [*src, "-frames:v", "3", "-c:v", codec, "-timecode", "10:00:00:12", str(tmp_path / name)]
        subprocess.run(cmd, check=True)
        assert probe_movie(tmp_path / name).timecode == "10:00:00:12", name
    make_clip(tmp_path / "none.mp4", frames=3, audio=False)
    assert probe_movie(tmp_path / "none.mp4").timecode == ""

    (tmp_path / "dpx").mkdir()
    subprocess.run(
        [*src, "-frames:v", "2", "-start_number", "1001", str(tmp_path / "dpx" / "p.%04d.dpx")], check=True
    )
    first = tmp_path / "dpx" / "p.1001.dpx"
    assert probe_sequence(tmp_path / "dpx" / "p.####.dpx", None).timecode == ""  # FFmpeg's writer sets none
    data = bytearray(first.read_bytes())
    order = ">" if data[:4] == b"SDPX" else "<"
    data[1920:1924] = struct.pack(order + "I", 0x01025940 | 0x28)  # 01:02:59;28 (0x40: drop-frame)
    first.write_bytes(bytes(data))
    assert probe_sequence(tmp_path / "dpx" / "p.####.dpx", Fraction(30000, 1001)).timecode == "01:02:59;28"
    # a 60 fps scan (its film header's rate): the BCD frames count pairs, and the seconds' top bit says
    # which of the pair (SMPTE ST 12-1, as FFmpeg's av_timecode_make_smpte_tc_string2 reads it)
    data[1724:1728] = struct.pack(order + "f", 60.0)
    data[1920:1924] = struct.pack(order + "I", 0x01000029 | 1 << 15)  # pair 29, the second: frame 59
    first.write_bytes(bytes(data))
    assert probe_sequence(tmp_path / "dpx" / "p.####.dpx", None).timecode == "01:00:00:59"
    assert (dpx_timecode(0x01000029, Fraction(50)), dpx_timecode(0x01000012 | 1 << 31, Fraction(50))) == (
        "01:00:00:58",
        "01:00:00:25",
    )
    assert dpx_timecode(0x01000023, Fraction(24)) == "01:00:00:23"  # at 30 fps and under, as they are

    (tmp_path / "exr").mkdir()
    tc = OpenEXR.TimeCode()
    tc.hours, tc.minutes, tc.seconds, tc.frame = 2, 3, 4, 5
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, "timeCode": tc}
    with OpenEXR.File(header, {"RGB": np.zeros((16, 16, 3), np.float16)}) as f:
        f.write(str(tmp_path / "exr" / "p.1001.exr"))
    assert probe_sequence(tmp_path / "exr" / "p.####.exr", None).timecode == "02:03:04:05"
    # a 50 or 60 fps label past frame 29, which EXR's timeCode cannot hold (setting it raised, and the
    # render failed at that frame): our comps keep it as a string, read back the same
    (tmp_path / "exr60").mkdir()
    write_frame(
        tmp_path / "exr60" / "p.1001.exr", np.zeros((16, 16, 3), np.uint8), "exr", {"timecode": "01:00:00:45"}
    )
    assert probe_sequence(tmp_path / "exr60" / "p.####.exr", Fraction(60)).timecode == "01:00:00:45"

    (tmp_path / "png").mkdir()
    write_frame(
        tmp_path / "png" / "p.1001.png", np.zeros((16, 16, 3), np.uint8), "png16", {"timecode": "03:00:00:01"}
    )
    assert probe_sequence(tmp_path / "png" / "p.####.png", None).timecode == "03:00:00:01"


def test_a_sequences_rate_is_its_headers_where_the_manifest_gives_none(tmp_path):
    """A scanner writes the frame rate into each DPX (film header, else TV header), a renderer or Nuke
    into an EXR's framesPerSecond, and our comps into theirs (a PNG's as text): a sequence without `fps:`
    is read at that rate (the NTSC rates as n*1000/1001), not at 24; a given rate wins, and a header
    without one (FFmpeg's DPX) leaves 24."""
    from pipeline.media.probe import probe_sequence

    src = [ffmpeg_executable(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25"]
    for name, at, rate, want in (
        ("film", 1724, 25.0, Fraction(25)),
        ("tv", 1940, 29.97, Fraction(30000, 1001)),
    ):
        folder = tmp_path / name
        folder.mkdir()
        subprocess.run([*src, "-frames:v", "2", "-start_number", "1", str(folder / "p.%04d.dpx")], check=True)
        pattern = folder / "p.####.dpx"
        assert probe_sequence(pattern, None).fps == 24  # FFmpeg's writer gives no rate
        first = folder / "p.0001.dpx"
        data = bytearray(first.read_bytes())
        data[at : at + 4] = struct.pack((">" if data[:4] == b"SDPX" else "<") + "f", rate)
        first.write_bytes(bytes(data))
        assert probe_sequence(pattern, None).fps == want, name
        assert probe_sequence(pattern, Fraction(48)).fps == 48
    (tmp_path / "exr").mkdir()
    header = {
        "compression": OpenEXR.ZIP_COMPRESSION,
        "type": OpenEXR.scanlineimage,
        "framesPerSecond": Fraction(24000, 1001),
    }
    with OpenEXR.File(header, {"RGB": np.zeros((16, 16, 3), np.float16)}) as f:
        f.write(str(tmp_path / "exr" / "p.1001.exr"))
    assert probe_sequence(tmp_path / "exr" / "p.####.exr", None).fps == Fraction(24000, 1001)
    (tmp_path / "png").mkdir()  # a comp of ours read as a plate
    frame = np.zeros((16, 16, 3), np.uint8)
    write_frame(tmp_path / "png" / "p.1001.png", frame, "png16", {"framesPerSecond": "25/1"})
    assert probe_sequence(tmp_path / "png" / "p.####.png", None).fps == 25
