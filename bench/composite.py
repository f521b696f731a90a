"""Composite benchmark: the composite stage's frames per second at 512 px, 1080p and UHD, against decoding.

    .venv/bin/python bench/composite.py [--repeats N] [--frames N]

Machines are shared and noisy, so every timing is the best of N repeats, and the configurations of a clip
are interleaved (rotating which goes first). The composite stage is what render_frames does per batch of
frames minus the file writing: decode the plate, then Compositor.frames (align, alteration, colour
transfer, sharpen, warp back, grain, blend, the face element kept as its region). The stand-in face is
the test alteration of the crop blurred by 1 px (CleanFaces): a model's face carries none of the plate's
grain, so grain matching runs on every frame, as in a render with one. The face track is built
once per clip, outside the timed region. The footage has no 1080p or UHD movie, so the script makes them
in a temporary folder from the 512 px clip with the pipeline's ffmpeg; those are smooth at their size, so a
1080p plate with film grain is made too, on which grain matching adds grain (its rows have no bar: its
decoding is slow). It prints issue 22's bars as PASS or FAIL, and exits 0 either way.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass
from itertools import chain
from pathlib import Path

import cv2
import numpy as np
import yaml
from common import MADE_CODEC, PLATE_FILTERS, cpu_times, make_clip, other_work, print_table

from pipeline.composite import FaceElement, alter_face, blend_into, finish_face, match_grain
from pipeline.faces.align import align_face, plate_warp, warp_to_plate
from pipeline.faces.track import FaceTrack
from pipeline.manifest import Shot, load_shot
from pipeline.media.decode import MoviePlate, read_ahead
from pipeline.processes import MMAP_THRESHOLD, TOP_PAD, TRIM_THRESHOLD, tune_malloc
from pipeline.shot.composite import Compositor
from pipeline.shot.frames import batch_frames
from pipeline.shot.track import detect_range, finish_track

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
CLIP = "woman_headturns_512.mp4"
# the plates made from the 512 px clip (the face is 2.11x and 4.22x bigger, with no more detail)
MADE_CLIPS = tuple((f"woman_headturns_{name}.mp4", vf) for name, vf in PLATE_FILTERS.items())
# the 1080p plate with film grain (FFmpeg's temporal noise filter; it reads 3.8 / 255 under the face, the
# real 1080p portrait in the footage 3.3), so that grain matching adds grain, as it does on a farm's plates:
# the made plates above are smooth at their size and get none. Its decoding is slow (a plate of about 100
# Mbit/s), so its rows are shown beside the others with no bar
GRAIN_CLIP = ("woman_headturns_1080p_grain.mp4", PLATE_FILTERS["1080p"] + ",noise=alls=8:allf=t")
COMPOSITE = {
    "alteration": "recolor",
    "color": "rct",
    "sharpen": 0.3,
    "grain": True,
    "element": {"format": "png16"},
}
# (row label, blend mode, crop size); the first is the one broken down step by step
CONFIGS = (
    ("laplacian, crop 256", "laplacian", 256),
    ("alpha, crop 256", "alpha", 256),
    ("poisson, crop 256", "poisson", 256),
    ("laplacian, crop 512", "laplacian", 512),
)
UHD_CONFIGS = CONFIGS[:2]  # the modes with a bar at UHD
# the bars (issue 22), by plate height: alpha and Laplacian at 1080p at least this share of decoding's
# frame rate in the same run, at UHD at least this many frames a second; Poisson at 1080p this many
HD_SHARE_OF_DECODE, UHD_FPS, HD_POISSON_FPS = 0.2, 8.0, 10.0
BLEND_MODES = ("alpha", "laplacian", "poisson")
STEPS = (
    "decode",
    "align_face",
    "matte",
    "alter",
    "colour+sharpen",
    "warp_to_plate",
    "grain",
    "blend",
    "element",
)
RUN = "frame() run"


@dataclass
class Row:
    metric: str
    fps: str
    ms: str
    vs_decode: str
    composite_ms: str
    cpu: str
    faults: str
    faces: str
    bar: str
    result: str


ROW_HEADER = (
    "metric",
    "fps",
    "ms/frame",
    "vs decode",
    "minus decode",
    "CPU/wall",
    "faults/fr",
    "faces",
    "bar",
    "result",
)


@dataclass(frozen=True, order=True)
class Timing:
    wall: float  # seconds
    cpu: float  # this process's CPU seconds, all its threads (FFmpeg's and OpenCV's included)
    faults: int  # minor page faults: fresh memory pages the kernel had to map in and zero


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def best_of(repeats: int, fns: dict[str, Callable[[], object]]) -> dict[str, Timing]:
    """Each callable's fastest run over the repeats, interleaved with a rotating start."""
    names = list(fns)
    runs: dict[str, list[Timing]] = {name: [] for name in names}
    for i in range(repeats):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t, c, f = time.perf_counter(), time.process_time(), minor_faults()
            fns[name]()
            runs[name].append(Timing(time.perf_counter() - t, time.process_time() - c, minor_faults() - f))
    return {name: min(r) for name, r in runs.items()}


# Set-up (not timed) ---------------------------------------------------------------------------------------


def shot_for(folder: Path, clip: Path, n: int, blend_mode: str, crop_size: int) -> Shot:
    """A manifest for the clip with one composite configuration, loaded and limited to its first n frames."""
    name = f"bench_{clip.stem}_{blend_mode}_{crop_size}"
    manifest = folder / f"{name}.yaml"
    data = {
        "shot": name,
        "plate": {"movie": str(clip.resolve())},
        "faces": {"crop_size": crop_size},
        "composite": {**COMPOSITE, "blend": blend_mode},
    }
    manifest.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    shot = load_shot(manifest)
    return shot.with_frames(shot.first, shot.first + n - 1)


def track_for(shot: Shot, folder: Path) -> tuple[FaceTrack, float]:
    """The shot's face track (detect_range + finish_track, as `vfx track` does) and its build time."""
    t = time.perf_counter()
    found = detect_range(shot, shot.first, shot.last).faces
    track = finish_track(shot, found, folder / f"{shot.name}.track.npz")
    return track, time.perf_counter() - t


# Workloads ------------------------------------------------------------------------------------------------


CLEAN_SIGMA = 1.0  # px: the blur that takes the plate's grain off the stand-in face


def clean_face(face: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(face, (0, 0), CLEAN_SIGMA)


class CleanFaces:
    """The bench's last link of the frame chain: the stand-in face (the shot's test alteration of the crop)
    without the plate's grain, as a generator's or swap model's face comes. The recoloured crop keeps the
    plate's own noise, so grain matching found nothing to add and never ran here; with a model's face it
    runs on every frame."""

    draws_own_faces = False
    frame_by_frame = True

    def __call__(
        self, numbers: list[int], faces: list[np.ndarray], masks: list[np.ndarray | None]
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        return [clean_face(face) for face in faces], masks


def bench_compositor(shot: Shot, track: FaceTrack) -> Compositor:
    """The shot's Compositor with its stand-in face cleaned of the plate's grain (CleanFaces)."""
    compositor = Compositor(shot, track, [])
    compositor.chain = [*compositor.chain, CleanFaces()]
    return compositor


def decode_all(shot: Shot) -> int:
    start = shot.plate_index(shot.first)
    return sum(1 for _ in shot.plate.read(start, start + shot.frame_count))


def composite_all(shot: Shot, track: FaceTrack) -> int:
    """Decode and composite every frame of the shot through Compositor.stream, as render_frames does
    without writing (as many frames at work as its batch of this plate size); faces put in."""
    compositor = bench_compositor(shot, track)
    start = shot.plate_index(shot.first)
    frames = read_ahead(shot.plate.read(start, start + shot.frame_count), 2)
    first = next(frames)
    size = batch_frames(compositor.batch_size, first.nbytes)
    numbered = zip(range(shot.first, shot.last + 1), chain([first], frames), strict=True)
    put_in = sum(done.new_face is not None for done in compositor.stream(numbered, size))
    frames.close()
    return put_in


# Per-step breakdown ---------------------------------------------------------------------------------------


def step_breakdown(shot: Shot, track: FaceTrack, repeats: int) -> dict[str, float]:
    """ms per frame of each step of Compositor.frame, each the best over the repeats of a full pass.

    The steps repeat Compositor.frame piece by piece with the same functions (checked against it on the
    first frame with a face). Frames without a face only get an empty element, counted under "element".
    Every blend mode is also timed on the same region ("blend <mode>"); only the shot's own mode counts
    toward the sum.
    """
    compositor = bench_compositor(shot, track)
    spec, size = compositor.spec, compositor.size
    start = shot.plate_index(shot.first)
    keys = (*STEPS, *(f"blend {m}" for m in BLEND_MODES))
    best = dict.fromkeys(keys, float("inf"))
    checked = False
    for _ in range(repeats):
        totals = dict.fromkeys(keys, 0.0)
        frames = shot.plate.read(start, start + shot.frame_count)
        for number in range(shot.first, shot.last + 1):
            t0 = time.perf_counter()
            plate = next(frames)
            t1 = time.perf_counter()
            totals["decode"] += t1 - t0
            comp = plate.copy()  # the render blends into the plate itself (Compositor.stream): not timed
            t1 = time.perf_counter()
            i = track.index(number)
            matrix = track.matrix(number, size)
            if matrix is None or np.isnan(compositor.crop_landmarks[i, 0, 0]):
                compositor.frame(number, plate)
                totals["element"] += time.perf_counter() - t1
                continue
            crop, _ = align_face(plate, track.params[i], size, track.x_scale)
            t2 = time.perf_counter()
            matte = compositor.matte(i)
            t3 = time.perf_counter()
            face = clean_face(alter_face(crop, spec.alteration))
            t4 = time.perf_counter()
            warp = plate_warp(matte, matrix, plate.shape)
            if warp is not None:
                blur = compositor.blur(number, face, crop, matte, warp.part)
                face = finish_face(face, crop, matte, spec.color, spec.sharpen, warp.part, blur)
            t5 = time.perf_counter()
            region = None if warp is None else warp_to_plate(face, matte, matrix, plate.shape, warp)
            t6 = time.perf_counter()
            if spec.grain and region is not None:
                region = match_grain(region, plate, seed=number, size=spec.grain_size)
            t7 = time.perf_counter()
            blend_into(comp, region, spec.blend)
            t8 = time.perf_counter()
            element = FaceElement.of(plate.shape[:2], region, np.uint16)
            t9 = time.perf_counter()
            for key, dt in zip(STEPS[1:], np.diff([t1, t2, t3, t4, t5, t6, t7, t8, t9]), strict=True):
                totals[key] += float(dt)
            for mode in BLEND_MODES:
                into = plate.copy()
                t = time.perf_counter()
                blend_into(into, region, mode)
                totals[f"blend {mode}"] += time.perf_counter() - t
            if not checked:
                done = compositor.frame(number, plate)
                assert np.array_equal(done.comp, comp), f"{shot.name}: the steps do not add up to frame()"
                assert element is not None and done.element is not None
                same = np.array_equal(done.element.rgba(), element.rgba())
                assert same, f"{shot.name}: the element differs from frame()"
                checked = True
        frames.close()
        best = {k: min(best[k], totals[k]) for k in keys}
    return {k: 1000 * v / shot.frame_count for k, v in best.items()}


# Per clip -------------------------------------------------------------------------------------------------


def bar_for(height: int, mode: str, decode_fps: float) -> tuple[str, float | None]:
    """The bar a configuration is held to at this plate height: its text and the frames a second it needs
    (None: no bar)."""
    if height == 1080 and mode in ("alpha", "laplacian"):
        return f">= {HD_SHARE_OF_DECODE}x decode", HD_SHARE_OF_DECODE * decode_fps
    if height == 1080 and mode == "poisson":
        return f">= {HD_POISSON_FPS:.0f} fps", HD_POISSON_FPS
    if height == 2160 and mode in ("alpha", "laplacian"):
        return f">= {UHD_FPS:.0f} fps", UHD_FPS
    return "(no bar)", None


def bench_clip(
    clip: Path,
    n: int,
    repeats: int,
    folder: Path,
    configs: tuple[tuple[str, str, int], ...] = CONFIGS,
    barred: bool = True,
) -> tuple[list[Row], dict[str, float]]:
    """Decode vs composite rows for every configuration (held to issue 22's bars where `barred`), and the
    step breakdown of the first one."""
    shots = {name: shot_for(folder, clip, n, mode, size) for name, mode, size in configs}
    modes = {name: mode for name, mode, _ in configs}
    first = shots[configs[0][0]]
    track, track_s = track_for(first, folder)
    square = np.nanmedian(track.params[:, 2])
    print(
        f"  {clip.name}: {first.plate.info.width}x{first.plate.info.height}, {n} frames; track built in "
        f"{track_s:.1f} s (not timed): {track.detected.sum()}/{n} detected, "
        f"{track.has_face.sum()} with a face, median crop square {square:.0f} px",
        flush=True,
    )
    faces: dict[str, int] = {}

    def keep(name: str, shot: Shot) -> Callable[[], None]:
        return lambda: faces.__setitem__(name, composite_all(shot, track))

    def decode() -> None:
        count = decode_all(first)
        assert count == n, f"{clip.name}: decoded {count} of {n} frames"

    for shot in shots.values():  # one-off start-up costs (first calls into OpenCV and NumPy): not timed
        bench_compositor(shot, track).frame(shot.first, next(shot.plate.read(0, 1)))
    timed = best_of(repeats, {"decode": decode} | {name: keep(name, shot) for name, shot in shots.items()})
    wall = {name: t.wall for name, t in timed.items()}
    with_face = int(track.has_face.sum())
    for name, count in faces.items():
        assert count == with_face, f"{clip.name} {name}: {count} faces put in, the track has {with_face}"
    decode_fps = n / wall["decode"]

    def cpu(name: str) -> str:
        return f"{timed[name].cpu / wall[name]:.2f}"

    def faults(name: str) -> str:
        return f"{timed[name].faults / n:.0f}"

    rows = [
        Row(
            f"decode {clip.name} ({n} fr)",
            f"{decode_fps:.0f}",
            f"{1000 * wall['decode'] / n:.2f}",
            "1.000x",
            "",
            cpu("decode"),
            faults("decode"),
            "",
            "",
            "",
        )
    ]
    for name in shots:
        fps = n / wall[name]
        bar, needed = (
            bar_for(first.plate.info.height, modes[name], decode_fps) if barred else ("(no bar)", None)
        )
        rows.append(
            Row(
                f"  composite {name}",
                f"{fps:.1f}",
                f"{1000 * wall[name] / n:.1f}",
                f"{fps / decode_fps:.3f}x",
                f"{1000 * (wall[name] - wall['decode']) / n:.1f}",
                cpu(name),
                faults(name),
                f"{with_face}/{n}",
                bar,
                "-" if needed is None else ("PASS" if fps >= needed else "FAIL"),
            )
        )
    print(
        f"  {clip.name}: decode {decode_fps:.0f} fps, "
        + ", ".join(f"{name} {n / wall[name]:.1f} fps" for name in shots),
        flush=True,
    )
    steps = step_breakdown(first, track, repeats)
    steps[RUN] = 1000 * wall[configs[0][0]] / n
    return rows, steps


# Memory of a long UHD render ------------------------------------------------------------------------------

RENDER_CODEC = ("-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p")
RENDER_OUTPUT = {"sequence": "png8", "movies": [], "chunk_size": 24}
MEMORY_BAR_GB = 4.0


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc (0 once it has gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += (
                int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) * 1024
            )
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def bench_render_memory(clip: Path, frames: int, folder: Path) -> tuple[Row, list[tuple[float, float]]]:
    """`vfx render` of a `frames`-frame UHD shot in a child process (against a Prefect server of its own,
    whose memory is not counted): the peak resident memory of the render and its children, sampled every
    0.2 s (the sum over the process tree) and as the kernel kept it (ru_maxrss of the largest process)."""
    from pipeline.flows import local_server

    plate = folder / "render_uhd.mp4"
    t = time.perf_counter()
    make_clip(clip, frames, MADE_CLIPS[1][1], plate, RENDER_CODEC)
    print(f"  {frames}-frame UHD plate made in {time.perf_counter() - t:.0f} s (not timed)", flush=True)
    manifest = folder / "render_uhd.yaml"
    data = {
        "shot": "render_uhd",
        "plate": {"movie": str(plate)},
        "output": RENDER_OUTPUT,
        "faces": {},
        "composite": {**COMPOSITE, "blend": "laplacian"},
    }
    manifest.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    samples: list[tuple[float, float]] = []
    with local_server(folder / "prefect") as env:
        cmd = [sys.executable, "-m", "pipeline", "render", str(manifest), "--root", str(folder / "render")]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.extend(proc.stdout or []), daemon=True)
        reader.start()
        while True:  # wait4: the child's own peak (and its waited-for children's), not this process's
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            samples.append((time.perf_counter() - t0, tree_rss(proc.pid) / 1e9))
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        reader.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the UHD render failed ({proc.returncode}):\n{''.join(out)[-3000:]}")
    peak_tree = max(rss for _, rss in samples)
    peak_kernel = usage.ru_maxrss / 1e6  # kB -> GB: the largest single process
    written = len(list((folder / "render").rglob("render_uhd_comp_*.png")))
    assert written == frames, f"the UHD render wrote {written} of {frames} frames"
    print(
        f"  UHD render of {frames} frames: {wall:.0f} s ({frames / wall:.1f} fps through the whole render), "
        f"peak memory {peak_tree:.2f} GB (process tree, sampled), {peak_kernel:.2f} GB (largest process, "
        "ru_maxrss)",
        flush=True,
    )
    row = Row(
        f"render {frames} fr UHD (peak memory)",
        f"{frames / wall:.1f}",
        f"{1000 * wall / frames:.0f}",
        "",
        "",
        "",
        "",
        "",
        f"< {MEMORY_BAR_GB:.0f} GB: {max(peak_tree, peak_kernel):.2f} GB",
        "PASS" if max(peak_tree, peak_kernel) < MEMORY_BAR_GB else "FAIL",
    )
    return row, samples


# Report ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timings per measurement; the best is kept")
    ap.add_argument("--frames", type=int, default=60, help="frames from the start of the clip (%(default)s)")
    ap.add_argument(
        "--render-frames",
        type=int,
        default=1000,
        help="frames of the UHD render whose peak memory is measured; 0 skips it (%(default)s)",
    )
    args = ap.parse_args(argv)
    tune_malloc()  # as the vfx command does before anything else
    clip = FOOTAGE / CLIP
    if not clip.is_file():
        sys.exit(
            f"bench/composite.py: footage not found: {clip}\n"
            f"(the benchmark clip lives in {FOOTAGE}, beside the repo)"
        )
    repeats = max(1, args.repeats)
    started, cpu_start = time.perf_counter(), cpu_times()
    print(
        f"machine: {os.cpu_count()} CPUs; Python {platform.python_version()}; "
        f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads); NumPy {np.__version__}; "
        f"repeats: {repeats} (best of, interleaved); load average {os.getloadavg()[0]:.2f}"
    )
    tuning = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_"))
    print(
        f"allocator: glibc malloc, {tuning or 'no MALLOC_* variables'}; tune_malloc() as the vfx command: "
        f"mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB, "
        f"top pad {TOP_PAD >> 20} MiB, one arena a core"
    )
    settings = ", ".join(f"{k} {v}" for k, v in COMPOSITE.items() if k != "element")
    print(
        f"composite: {settings}, element png16 (its box as 16-bit RGBA, as a render keeps it until it\n"
        "writes it); faces defaults otherwise.\n"
        "composite rows = decode + Compositor(shot, track, []).stream(), as a render does,\n"
        "the stand-in face cleaned of the plate's grain (a 1 px blur) as a model's face is, so grain is\n"
        "matched; nothing is written",
        flush=True,
    )

    rows: list[Row] = []
    steps: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="vfx-bench-") as tmp:
        folder = Path(tmp)
        total = MoviePlate(clip).info.frame_count
        n = max(1, min(args.frames, total))
        if n != args.frames:
            print(f"  --frames {args.frames}: the clip has {total} frames; using {n}")
        clips = [(clip, CONFIGS)]
        for name, vf in MADE_CLIPS:
            t = time.perf_counter()
            make_clip(clip, n, vf, folder / name)
            print(
                f"  {name} made in {time.perf_counter() - t:.1f} s (not timed): the first {n} frames of "
                f"{CLIP}, ffmpeg -vf {vf} {' '.join(MADE_CODEC)}",
                flush=True,
            )
            clips.append((folder / name, UHD_CONFIGS if "uhd" in name else CONFIGS))
        print(
            "  (the 512 px picture upscaled and centred, black bars left and right: the face is 2.11x and "
            "4.22x bigger, with no more detail)",
            flush=True,
        )
        name, vf = GRAIN_CLIP
        make_clip(clip, n, vf, folder / name)
        print(f"  {name}: the 1080p plate with film grain, ffmpeg -vf {vf}; its rows have no bar", flush=True)
        clips.append((folder / name, CONFIGS[:1]))
        for path, configs in clips:
            barred = path.name != GRAIN_CLIP[0]
            clip_rows, steps[path.name] = bench_clip(path, n, repeats, folder, configs, barred)
            rows += clip_rows
        memory: list[tuple[float, float]] = []
        if args.render_frames > 0:
            row, memory = bench_render_memory(clip, args.render_frames, folder)
            rows.append(row)

    print()
    print_table(ROW_HEADER, [astuple(r) for r in rows])
    print(
        "(vs decode: composite fps / decode fps; minus decode: composite ms/frame - decode ms/frame,\n"
        " the composite's own cost; CPU/wall: this process's CPU time over wall time, all threads;\n"
        " faults/fr: minor page faults per frame (fresh memory the kernel maps in and zeroes, 4 KiB each);\n"
        " faces: frames with a face put in / frames; bars: issue 22's, alpha and Laplacian at 1080p at\n"
        f" least {HD_SHARE_OF_DECODE}x of decoding the same plate in this run, at UHD at least "
        f"{UHD_FPS:.0f} fps; Poisson at 1080p at least {HD_POISSON_FPS:.0f} fps)"
    )
    name, mode, size = CONFIGS[0]
    print(
        f"\nsteps of Compositor.frame, ms per frame, configuration '{name}' "
        f"(best of {repeats} passes per step;\n"
        " decode = waiting for the next frame; align_face includes reading and shrinking the plate's box;\n"
        f" blend = {mode}; element = the FaceElement (its box as 16-bit RGBA); frame() run = the\n"
        " timed row above, whose frames run side by side in threads, so it can be below the sum;\n"
        " called one by one, the pieces allocate and free memory in another order than frame(), so the\n"
        " page faults (faults/fr) land differently and the sum can differ from frame() run):"
    )
    print_table(
        ("clip", *STEPS, "sum", RUN),
        [
            (label, *(f"{s[k]:.2f}" for k in STEPS), f"{sum(s[k] for k in STEPS):.2f}", f"{s[RUN]:.2f}")
            for label, s in steps.items()
        ],
    )
    print("\nblend step by mode on the same regions, ms per frame:")
    print_table(
        ("clip", *BLEND_MODES),
        [(label, *(f"{s[f'blend {m}']:.2f}" for m in BLEND_MODES)) for label, s in steps.items()],
    )
    for label, s in steps.items():
        slowest = max(STEPS[1:], key=lambda k: s[k])
        print(f"slowest step, {label}: {slowest} ({s[slowest]:.2f} ms/frame)")
    if memory:
        output = " ".join(f"{k} {v}" for k, v in RENDER_OUTPUT.items())
        print(
            f"\nUHD render ({args.render_frames} frames, output {output}, composite as above, its own "
            "Prefect server not counted):\nmemory of the render's process tree over its run, GB (the peak up "
            "to every tenth of the run: flat means nothing accumulates per frame):"
        )
        end = memory[-1][0]
        marks = [max((rss for t, rss in memory if t <= end * k / 10), default=0.0) for k in range(1, 11)]
        print("  " + "  ".join(f"{10 * k}%: {m:.2f}" for k, m in enumerate(marks, start=1)))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (the bench's own threads count in it)")
    print(other_work(cpu_start, cpu_times()))
    print(f"total run time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
