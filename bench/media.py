"""Media benchmark: our decoder, movie encoder and render flow against references timed in the same run.

    .venv/bin/python bench/media.py [--clip PATH] [--repeats N]

Machines are shared and noisy, so every timing is the best of N repeats, and ours and the reference are
interleaved (alternating which goes first). Every reference command runs the pipeline's own ffmpeg
executable. The script measures; it exits 0 whether or not a bar is met.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from common import PLATE_FILTERS, cpu_times, make_clip, other_work

from pipeline.manifest import load_shot
from pipeline.media.colorspace import PlateColorspace
from pipeline.media.decode import ConvertedPlate, MoviePlate, Plate, SequencePlate
from pipeline.media.encode import MOVIE_PRESETS, burn_in_font, encode_movie, ffmpeg_executable
from pipeline.media.probe import bit_depth
from pipeline.media.sequences import extension, write_frame
from pipeline.processes import run, tune_malloc
from pipeline.shot.frames import chunk_ranges, render_frames
from pipeline.shot.movies import encode_movies
from pipeline.shot.report import output_metadata, write_report
from pipeline.workspace import new_version

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # before prefect is imported (lazily)
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parents[1]
FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
DEFAULT_CLIP = FOOTAGE / "woman_headturns_512.mp4"
OTHER_DECODE_CLIPS = ("man_glasses_720x1280.mp4", "talking_head_mpeg4_512.mp4")
# plates made in the run from the default clip: the square picture scaled to the plate's height, centred
MADE_CLIPS = tuple((f"{name}.mp4", vf) for name, vf in PLATE_FILTERS.items())
MADE_FRAMES = 120  # frames of each made plate
# the farm's usual movie plate: 1080p ProRes 422 HQ, 10 bits 4:2:2, made from the default clip as the 1080p
# plate is. Its RGB conversion (to 16 bits, swscale's unvectorised path) costs about as much CPU as decoding,
# which `ffmpeg -f null` never does, so its row also times ffmpeg making the same 16-bit RGB
PRORES_CLIP = (
    "1080p_prores422hq.mov",
    PLATE_FILTERS["1080p"],
    ("-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le"),
)
EXR_FRAMES = 60  # frames of the default clip written as an EXR sequence for the sequence decode row
# frames of the 1080p plate written as png16 and EXR sequences (farm plates are 1080p to UHD, often EXR)
HD_SEQUENCE_FRAMES = 48
LOG_COLORSPACE = "ARRI LogC3 (EI800)"  # the DPX scan's row again, converted as a camera log plate
FIRST = 1001
CHUNK_SIZE = 48
DECODE_BAR, ENCODE_BAR, OVERHEAD_BAR = 0.8, 1.15, 0.15

# A timed callable returns a path to delete once its timer has stopped (or None).
Timed = Callable[[], Path | None]


@dataclass
class Row:
    metric: str
    ours: str
    reference: str
    ratio: str
    bar: str
    passed: bool | None  # None: a row shown beside a barred one, with no bar of its own


def best_of(repeats: int, ours: Timed, reference: Timed) -> tuple[float, float]:
    """Best wall time of each over the repeats; the two are interleaved, alternating which runs first."""
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    for i in range(repeats):
        order = [("ours", ours), ("reference", reference)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            leftover = fn()
            times[name].append(time.perf_counter() - t)
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
    return min(times["ours"]), min(times["reference"])


def run_ffmpeg(args: list[str]) -> None:
    """One reference command, with the pipeline's ffmpeg; fails loudly so a broken reference is not timed."""
    cmd = [ffmpeg_executable(), *args]
    proc = run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"reference ffmpeg failed: {' '.join(args)}\n{proc.stderr.strip()}")


def fps_text(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


# 1. Decode ------------------------------------------------------------------------------------------------


def bench_decode(clip: Path, repeats: int, to_rgb: bool = False) -> list[Row]:
    """Our MoviePlate (every frame as an RGB array) against `ffmpeg -i CLIP -f null -`, in frames/s; with
    `to_rgb` also against ffmpeg converting to the RGB format our read gives (rgb24, or rgb48le from a
    source deeper than 8 bits), a row without a bar."""
    info = MoviePlate(clip).info
    n = info.frame_count
    rgb_format = "rgb48le" if bit_depth(info.pixel_format) > 8 else "rgb24"

    def ours() -> None:
        plate = MoviePlate(clip)
        count = sum(1 for _ in plate.read(0, plate.info.frame_count))
        assert count == n, f"{clip}: decoded {count} of {n} frames"

    def reference() -> None:
        run_ffmpeg(["-v", "error", "-i", str(clip), "-f", "null", "-"])

    def reference_rgb() -> None:
        run_ffmpeg(["-v", "error", "-i", str(clip), "-pix_fmt", rgb_format, "-f", "null", "-"])

    label = f"{clip.name} {info.width}x{info.height}"
    rows = [decode_row(label, n, repeats, ours, reference)]
    if to_rgb:
        row = decode_row(f"  same, ffmpeg to {rgb_format} as reference", n, repeats, ours, reference_rgb)
        rows.append(Row(row.metric, row.ours, row.reference, row.ratio, "(no bar)", None))
    return rows


def bench_sequence_decode(
    pattern: Path,
    n: int,
    fps: Fraction,
    repeats: int,
    label: str | None = None,
    colorspace: PlateColorspace | None = None,
) -> Row:
    """Our SequencePlate (files read ahead in threads) against ffmpeg's image2 demuxer into `-f null`; with
    a `colorspace`, each frame converted from it as a shot's `plate.colorspace` does."""

    def ours() -> None:
        plate: Plate = SequencePlate(pattern, fps)
        plate = plate if colorspace is None else ConvertedPlate(plate, colorspace)
        count = sum(1 for _ in plate.read(0, plate.info.frame_count))
        assert count == n, f"{pattern}: read {count} of {n} frames"

    def reference() -> None:
        run_ffmpeg(
            ["-v", "error", "-framerate", fps_text(fps), "-start_number", str(FIRST), "-i", str(pattern)]
            + ["-f", "null", "-"]
        )

    return decode_row(label or f"{pattern.suffix[1:]} sequence", n, repeats, ours, reference)


def decode_row(label: str, n: int, repeats: int, ours: Timed, reference: Timed) -> Row:
    t_ours, t_ref = best_of(repeats, ours, reference)
    ratio = t_ref / t_ours  # = our fps / ffmpeg's fps
    return Row(
        f"decode fps {label}",
        f"{n / t_ours:.0f} fps",
        f"{n / t_ref:.0f} fps",
        f"{ratio:.2f}x",
        f">= {DECODE_BAR:.2f}x",
        ratio >= DECODE_BAR,
    )


# 2. Encode ------------------------------------------------------------------------------------------------


def write_sequence(
    clip: Path, folder: Path, fmt: str = "png8", frames: int | None = None
) -> tuple[Path, int, Fraction]:
    """The clip's frames (the first `frames`) as a sequence x.1001.png (or .exr), ...; returns (pattern,
    count, fps)."""
    folder.mkdir(parents=True)
    plate = MoviePlate(clip)
    ext = extension(fmt)
    n = 0
    for n, frame in enumerate(
        plate.read(0, min(frames or plate.info.frame_count, plate.info.frame_count)), 1
    ):
        write_frame(folder / f"x.{FIRST + n - 1:04d}.{ext}", frame, fmt, {"comment": "bench"})
    return folder / f"x.%04d.{ext}", n, plate.info.fps


def write_dpx_sequence(clip: Path, folder: Path, frames: int) -> Path:
    """The clip's first frames as a film scan's 10-bit RGB DPX sequence x.1001.dpx, ..., big-endian as
    scanners write them (by ffmpeg: the pipeline writes no DPX); returns its pattern."""
    folder.mkdir(parents=True)
    pattern = folder / "x.%04d.dpx"
    run_ffmpeg(
        ["-v", "error", "-i", str(clip), "-frames:v", str(frames), "-pix_fmt", "gbrp10be"]
        + ["-start_number", str(FIRST), str(pattern)]
    )
    return pattern


def hand_command(pattern: Path, fps: Fraction, out: Path, preset: str, burn_in: str | None) -> list[str]:
    """The reference encode, written out as a person would type it (not derived from the pipeline's code)."""
    vf = "pad=ceil(iw/2)*2:ceil(ih/2)*2"
    if burn_in:
        box = f"fontfile={burn_in_font()}:fontsize=h/28:fontcolor=white:box=1:boxcolor=black@0.5"
        vf += f",drawtext={box}:text='{burn_in}':x=10:y=10"
        vf += f",drawtext={box}:text='%{{eif\\:n+{FIRST}\\:d}}':x=w-tw-10:y=h-th-10"
    vf += ",scale=out_color_matrix=bt709:out_range=tv"
    head = [
        "-y",
        "-v",
        "error",
        "-framerate",
        fps_text(fps),
        "-start_number",
        str(FIRST),
        "-i",
        str(pattern),
        "-vf",
        vf,
        "-colorspace",
        "bt709",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
    ]
    if preset == "prores422hq":
        codec = ["-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le", "-vendor", "apl0"]
    elif preset == "h264_review":
        codec = [
            "-c:v",
            "libx264",
            "-crf",
            "18",
            "-preset",
            "medium",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ]
    else:
        raise ValueError(f"no hand-written reference for {preset!r}")
    return [*head, *codec, str(out)]


def bench_encode(
    pattern: Path, n: int, fps: Fraction, preset: str, burn_in: str | None, repeats: int, folder: Path
) -> Row:
    """encode_movie against the hand-written ffmpeg command, in seconds for the whole sequence."""
    ext = MOVIE_PRESETS[preset].extension
    ours_out, ref_out = folder / f"ours_{preset}.{ext}", folder / f"hand_{preset}.{ext}"

    def ours() -> None:
        encode_movie(pattern, FIRST, n, fps, ours_out, preset, {"comment": "bench"}, burn_in_text=burn_in)

    def reference() -> None:
        run_ffmpeg(hand_command(pattern, fps, ref_out, preset, burn_in))

    t_ours, t_ref = best_of(repeats, ours, reference)
    ratio = t_ours / t_ref
    label = f"encode {preset}" + (" +burn-ins" if burn_in else "")
    return Row(
        label,
        f"{t_ours:.2f} s",
        f"{t_ref:.2f} s",
        f"{ratio:.2f}x",
        f"<= {ENCODE_BAR:.2f}x",
        ratio <= ENCODE_BAR,
    )


# 3. Render overhead ---------------------------------------------------------------------------------------


def media_only(manifest: Path, root: Path, workers: int) -> None:
    """The work render_shot does, without Prefect: chunks in a thread pool, movies, the report."""
    t0 = time.perf_counter()
    shot = load_shot(manifest)
    version = new_version(root, shot.name, "png")
    metadata = output_metadata(shot, version)
    ranges = chunk_ranges(shot.first, shot.last, shot.spec.output.chunk_size)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunks = list(pool.map(lambda r: render_frames(shot, version, r[0], r[1], metadata), ranges))
    t_frames = time.perf_counter()
    movies = encode_movies(shot, version, metadata)
    t_movies = time.perf_counter()
    timings = {"frames_s": t_frames - t0, "movies_s": t_movies - t_frames, "total_s": t_movies - t0}
    write_report(shot, version, chunks, movies, metadata, timings)


def bench_render(clip: Path, repeats: int, folder: Path) -> tuple[Row, float]:
    """render_shot's wall time through a running Prefect server against the same media work done directly.

    Returns the row and the raw (unclipped) overhead share.
    """
    from prefect.testing.utilities import prefect_test_harness

    from pipeline.flows import WORKERS, render_shot

    manifest = folder / "bench.yaml"
    manifest.write_text(
        f"shot: bench\nplate:\n  movie: {clip.resolve()}\n"
        f"output:\n  sequence: png8\n  movies: [h264_review]\n  chunk_size: {CHUNK_SIZE}\n",
        encoding="utf-8",
    )
    n = load_shot(manifest).frame_count
    runs = iter(range(1_000_000))

    def flow() -> Path:
        root = folder / f"flow{next(runs)}"
        render_shot(str(manifest), root=str(root))
        return root

    def media() -> Path:
        root = folder / f"media{next(runs)}"
        media_only(manifest, root, WORKERS)
        return root

    with prefect_test_harness(server_startup_timeout=120):
        t = time.perf_counter()
        render_shot(str(manifest), frames=f"{FIRST}-{FIRST + 9}", root=str(folder / "warmup"))
        print(f"  warm-up flow run (10 frames): {time.perf_counter() - t:.1f} s", flush=True)
        t_flow, t_media = best_of(repeats, flow, media)
    raw = (t_flow - t_media) / t_flow
    share = max(raw, 0.0)
    row = Row(
        f"render overhead {n} fr",
        f"{t_flow:.2f} s flow",
        f"{t_media:.2f} s media",
        f"{share:.1%}",
        f"< {OVERHEAD_BAR:.0%}",
        share < OVERHEAD_BAR,
    )
    return row, raw


# Report ---------------------------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    header = ("metric", "ours", "reference", "ratio", "bar", "result")
    cells = [header] + [
        (r.metric, r.ours, r.reference, r.ratio, r.bar, {True: "PASS", False: "FAIL", None: "-"}[r.passed])
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for i, c in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="movie to benchmark (%(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="timings per measurement; the best is kept")
    args = ap.parse_args(argv)
    tune_malloc()  # as the vfx command does before anything else
    clip: Path = args.clip.resolve()
    if not clip.is_file():
        sys.exit(
            f"bench/media.py: clip not found: {clip}\n"
            f"(the default footage lives in {FOOTAGE}, beside the repo; or give --clip PATH)"
        )
    repeats = max(1, args.repeats)
    started, cpu_start = time.perf_counter(), cpu_times()

    ffmpeg = ffmpeg_executable()
    version = run([ffmpeg, "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"machine: {os.cpu_count()} CPUs; repeats: {repeats} (best of, interleaved)")
    print(f"ffmpeg: {ffmpeg}\n  {version}")

    rows: list[Row] = []
    others = [FOOTAGE / name for name in OTHER_DECODE_CLIPS]
    decode_clips = [clip] + [c for c in others if c.resolve() != clip]
    with tempfile.TemporaryDirectory(prefix="vfx-bench-") as tmp:
        folder = Path(tmp)
        for name, vf, *codec in (*MADE_CLIPS, PRORES_CLIP):
            t = time.perf_counter()
            decode_clips.append(make_clip(clip, MADE_FRAMES, vf, folder / f"{clip.stem}_{name}", *codec))
            print(f"  made {decode_clips[-1].name} in {time.perf_counter() - t:.0f} s: -vf {vf}", flush=True)
        for c in decode_clips:
            if not c.is_file():
                print(f"  skipped decode of {c.name}: not found in {FOOTAGE}")
                continue
            for row in bench_decode(c, repeats, to_rgb=c.name.endswith(PRORES_CLIP[0])):
                rows.append(row)
                print(f"  {row.metric}: ours {row.ours}, ffmpeg {row.reference}", flush=True)
            if c.parent == folder and c.stem.endswith("_1080p"):
                for fmt in ("png16", "exr"):
                    pattern, n, fps = write_sequence(c, folder / fmt, fmt, HD_SEQUENCE_FRAMES)
                    rows.append(bench_sequence_decode(pattern, n, fps, repeats, f"{fmt} sequence 1080p"))
                    print(
                        f"  {rows[-1].metric}: ours {rows[-1].ours}, ffmpeg {rows[-1].reference}", flush=True
                    )
                    shutil.rmtree(folder / fmt)
                pattern = write_dpx_sequence(c, folder / "dpx", HD_SEQUENCE_FRAMES)
                rows.append(
                    bench_sequence_decode(pattern, HD_SEQUENCE_FRAMES, fps, repeats, "10-bit DPX 1080p")
                )
                print(f"  {rows[-1].metric}: ours {rows[-1].ours}, ffmpeg {rows[-1].reference}", flush=True)
                # the same scan read as a camera's log (plate.colorspace): what OpenColorIO's conversion
                # costs on top of the read, beside the same reference (no bar: FFmpeg converts nothing)
                logc = PlateColorspace.open(LOG_COLORSPACE)
                row = bench_sequence_decode(
                    pattern, HD_SEQUENCE_FRAMES, fps, repeats, f"  same, as {LOG_COLORSPACE}", logc
                )
                rows.append(Row(row.metric, row.ours, row.reference, row.ratio, "(no bar)", None))
                print(f"  {rows[-1].metric}: ours {rows[-1].ours}, ffmpeg {rows[-1].reference}", flush=True)
                shutil.rmtree(folder / "dpx")
            if c.parent == folder:
                c.unlink()

        pattern, n, fps = write_sequence(clip, folder / "seq")
        print(f"  wrote {n} PNG frames ({fps_text(fps)} fps) for the sequence decode and encode", flush=True)
        rows.append(bench_sequence_decode(pattern, n, fps, repeats))
        print(f"  {rows[-1].metric}: ours {rows[-1].ours}, ffmpeg {rows[-1].reference}", flush=True)
        exr = write_sequence(clip, folder / "exr", "exr", EXR_FRAMES)
        rows.append(bench_sequence_decode(*exr, repeats))
        print(f"  {rows[-1].metric}: ours {rows[-1].ours}, ffmpeg {rows[-1].reference}", flush=True)
        shutil.rmtree(folder / "exr")

        cases: list[tuple[str, str | None]] = [("prores422hq", None), ("h264_review", None)]
        if burn_in_font():
            cases.append(("h264_review", "bench  v001"))
        else:
            print("  skipped the burn-in row: no font for drawtext on this machine")
        for preset, text in cases:
            rows.append(bench_encode(pattern, n, fps, preset, text, repeats, folder))
            print(f"  {rows[-1].metric}: ours {rows[-1].ours}, hand {rows[-1].reference}", flush=True)
        shutil.rmtree(folder / "seq")

        row, raw = bench_render(clip, repeats, folder)
        rows.append(row)

    print()
    print_table(rows)
    print(f"\nrender overhead share, raw (T_flow - T_media) / T_flow: {raw:+.1%}")
    print(other_work(cpu_start, cpu_times()))
    print(f"total run time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
