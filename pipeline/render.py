"""The work of one render, free of Prefect: frames of a chunk, movies, the report.

`flows.py` runs these as tasks; a notebook or a benchmark can call them directly.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline import TOOL_NAME, __version__
from pipeline.errors import MediaError
from pipeline.faces.draw import grid
from pipeline.files import write_atomic, write_json_atomic
from pipeline.manifest import Shot
from pipeline.media.color import to_uint8
from pipeline.media.decode import read_image
from pipeline.media.encode import MOVIE_PRESETS, AudioSource, encode_movie
from pipeline.media.sequences import write_frame
from pipeline.shot_composite import (
    Compositor,
    FrameComposite,
    altered_stages,
    composite_spec,
    element_path,
    models_used,
    write_element,
)
from pipeline.workspace import RenderVersion

SYNTHETIC_NOTE = (
    "Made by the {tool} face-VFX pipeline. Face stages that altered this imagery with AI: {stages}."
)


def output_metadata(shot: Shot, version: RenderVersion) -> dict[str, str]:
    """What every output file carries: whether it holds synthetic (AI-altered) faces, and its origin."""
    altered_by = altered_stages(shot)
    return {
        "synthetic_imagery": "true" if altered_by else "false",
        "ai_altered_stages": ",".join(altered_by) or "none",
        "comment": SYNTHETIC_NOTE.format(
            tool=TOOL_NAME, stages=", ".join(altered_by) or "none (plate passthrough)"
        ),
        "shot": shot.name,
        "render_version": version.label,
        "software": f"{TOOL_NAME} {__version__}",
        "models": models_used(shot),
    }


@dataclass
class ChunkResult:
    first: int
    last: int
    written: int = 0
    skipped: int = 0
    decode_s: float = 0.0
    new_faces_s: float = 0.0  # making the new faces: swap model, generator or test alteration
    composite_s: float = 0.0  # the rest of compositing: colour, grain, warp back, blend, elements
    write_s: float = 0.0
    review_s: float = 0.0  # the contact sheets' tiles of the sampled frames
    wall_s: float = 0.0
    identity: list[list[float]] = field(default_factory=list)  # [frame, distance to A, distance to B]
    worker: str = field(default_factory=lambda: f"{platform.node()}:{os.getpid()}")  # where it ran


def render_frames(
    shot: Shot,
    version: RenderVersion,
    first: int,
    last: int,
    metadata: dict[str, str],
    compositor: Compositor | None = None,
    on_frame: Callable[[int, np.ndarray, np.ndarray, FrameComposite | None], None] | None = None,
) -> ChunkResult:
    """Decode, composite and write frames first..last, skipping frames already complete on disk.

    A frame's element (and what `on_frame` saves of it: review tiles) is written before its comp, so a
    comp on disk means the frame is complete. `on_frame` gets the frame number, the plate, the comp and
    the composite's parts.
    """
    t0 = time.perf_counter()
    result = ChunkResult(first, last)
    todo = [n for n in range(first, last + 1) if not version.frame_done(n)]
    result.skipped = (last - first + 1) - len(todo)
    if not todo:
        result.wall_s = time.perf_counter() - t0
        return result
    wanted = set(todo)
    start = todo[0]
    frames = shot.plate.read(shot.plate_index(start), shot.plate_index(last) + 1)
    fmt = shot.spec.output.sequence
    batch_size = compositor.batch_size if compositor else 1
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        numbers = [n for n, _ in pending]
        outputs = [f for _, f in pending]
        done: list[FrameComposite | None] = [None] * len(numbers)
        if compositor is not None:
            t, made_before = time.perf_counter(), compositor.new_faces_s
            done = compositor.frames(numbers, outputs)
            made = compositor.new_faces_s - made_before
            result.new_faces_s += made
            result.composite_s += time.perf_counter() - t - made
            outputs = [d.comp for d in done]
            for n, d in zip(numbers, done, strict=True):
                if d.element is not None:
                    write_element(version, shot, n, d.element, metadata)
                if d.identity is not None:
                    result.identity.append([n, *d.identity])
        for k, (n, frame) in enumerate(zip(numbers, outputs, strict=True)):
            if on_frame is not None:
                t = time.perf_counter()
                on_frame(n, pending[k][1], frame, done[k])
                result.review_s += time.perf_counter() - t
            t = time.perf_counter()
            write_frame(version.frame_path(n), frame, fmt, metadata)
            result.write_s += time.perf_counter() - t
        result.written += len(numbers)
        pending.clear()

    try:
        for number in range(start, last + 1):
            t = time.perf_counter()
            frame = next(frames)
            result.decode_s += time.perf_counter() - t
            if number in wanted:
                pending.append((number, frame))
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
    finally:
        frames.close()
    result.wall_s = time.perf_counter() - t0
    return result


class StageClock:
    """Wall seconds of each step of a render, for the run record: what a slow render spent its time on."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - t

    def timings(self, chunks: Sequence[ChunkResult], detect_chunks: Sequence[dict] = ()) -> dict:
        """Each step's wall time (`<step>_s`), the rest (`other_s`: opening the version, logging), and
        the chunks' own seconds summed by stage (`chunk_seconds`; chunks run side by side, so these add up
        to more than the wall time of the frames)."""
        total = time.perf_counter() - self.t0
        walls = {f"{k}_s": v for k, v in self.seconds.items()}
        sums = {
            "decode": sum(c.decode_s for c in chunks) + sum(c["decode_s"] for c in detect_chunks),
            "detect": sum(c["detect_s"] for c in detect_chunks),
            "new_faces": sum(c.new_faces_s for c in chunks),
            "composite": sum(c.composite_s for c in chunks),
            "write": sum(c.write_s for c in chunks),
            "review": sum(c.review_s for c in chunks),
        }
        return {
            **walls,
            "other_s": total - sum(walls.values()),
            "total_s": total,
            "chunk_seconds": sums,
        }


def chunk_ranges(first: int, last: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size - 1, last)) for a in range(first, last + 1, size)]


@dataclass
class MovieResult:
    preset: str
    path: str
    seconds: float
    skipped: bool = False
    audio: bool = False
    command: list[str] = field(default_factory=list)


def plate_audio(shot: Shot) -> AudioSource | None:
    """The plate's audio trimmed to the rendered frames, when the plate has audio at the shot's rate."""
    info = shot.plate.info
    if info.kind != "movie" or info.audio is None or shot.fps != info.fps:
        return None
    return AudioSource(
        info.path,
        offset=float(shot.plate_index(shot.first) / info.fps),
        duration=float(shot.frame_count / info.fps),
    )


def encode_movies(shot: Shot, version: RenderVersion, metadata: dict[str, str]) -> list[MovieResult]:
    missing = next((n for n in range(shot.first, shot.last + 1) if not version.frame_done(n)), None)
    if missing is not None:
        raise MediaError(
            f"{version.frame_path(missing)}: frame {missing} is missing; movies are made from a "
            "complete sequence only"
        )
    results = []
    audio = plate_audio(shot)
    for preset in shot.spec.output.movies:
        out = version.movie_path(preset, MOVIE_PRESETS[preset].extension)
        if out.is_file():
            results.append(MovieResult(preset, str(out), 0.0, skipped=True))
            continue
        t = time.perf_counter()
        cmd = encode_movie(
            version.sequence_pattern,
            shot.first,
            shot.frame_count,
            shot.fps,
            out,
            preset,
            metadata,
            audio=audio,
            burn_in_text=f"{shot.name}  {version.label}",
            linear_exr=shot.spec.output.sequence == "exr",
        )
        results.append(
            MovieResult(preset, str(out), time.perf_counter() - t, audio=audio is not None, command=cmd)
        )
    spec = composite_spec(shot)
    if spec is not None and spec.element.prores4444:
        out = version.path / f"{shot.name}_faceElement_{version.label}_prores4444.mov"
        if out.is_file():
            results.append(MovieResult("prores4444", str(out), 0.0, skipped=True))
        else:
            t = time.perf_counter()
            pattern = element_path(version, shot, shot.first).with_name(
                f"{shot.name}_faceElement_{version.label}.%04d.png"
            )
            cmd = encode_movie(
                pattern, shot.first, shot.frame_count, shot.fps, out, "prores4444", metadata, alpha=True
            )
            results.append(MovieResult("prores4444 element", str(out), time.perf_counter() - t, command=cmd))
    return results


def frame_thumb(image: np.ndarray, frame: int, width: int = 320) -> np.ndarray:
    """A written frame, small and labelled with its number, for the contact sheet."""
    img = to_uint8(image)
    h, w = img.shape[:2]
    th = max(1, round(h * width / w))
    img = np.ascontiguousarray(cv2.resize(img, (width, th), interpolation=cv2.INTER_AREA)[..., :3])
    cv2.rectangle(img, (0, th - 22), (70, th), (0, 0, 0), -1)
    cv2.putText(img, str(frame), (4, th - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def review_tile_path(version: RenderVersion, sheet: str, frame: int) -> Path:
    return version.path / "review" / f"{sheet}.{frame:06d}.npy"


def save_review_tile(version: RenderVersion, sheet: str, frame: int, tile: np.ndarray) -> None:
    """Raw pixels, not PNG: encoding a tile cost more than making it, and tiles live only until the
    sheets are written (drop_review_tiles)."""
    path = review_tile_path(version, sheet, frame)
    path.parent.mkdir(exist_ok=True)
    write_atomic(path, lambda tmp: np.save(tmp, to_uint8(tile), allow_pickle=False))


def review_tiles(
    version: RenderVersion, sheet: str, frames: Sequence[int], make: Callable[[int], np.ndarray]
):
    """The tiles the chunks saved for these frames; a tile no chunk saved (a frame finished by an older
    run) is made now by `make`, which decodes what it needs again."""
    out = []
    for n in frames:
        path = review_tile_path(version, sheet, n)
        out.append(np.load(path, allow_pickle=False) if path.is_file() else make(n))
    return out


def drop_review_tiles(version: RenderVersion) -> None:
    """Once the sheets are written their tiles are not needed (a resumed render makes missing ones)."""
    shutil.rmtree(version.path / "review", ignore_errors=True)


def contact_sheet(
    thumbs: Sequence[np.ndarray], out: Path, metadata: dict[str, str], columns: int = 4
) -> Path:
    """A grid of written frames across the render, each labelled with its frame number."""
    write_frame(out, grid(list(thumbs), columns), "png8", metadata)
    return out


def sample_frames(first: int, last: int, count: int = 12) -> list[int]:
    n = last - first + 1
    if n <= count:
        return list(range(first, last + 1))
    return sorted({first + round(i * (n - 1) / (count - 1)) for i in range(count)})


def write_report(
    shot: Shot,
    version: RenderVersion,
    chunks: Sequence[ChunkResult],
    movies: Sequence[MovieResult],
    metadata: dict[str, str],
    timings: dict[str, float],
    faces: dict | None = None,
    frame_path: Callable[[int], Path] | None = None,
    stages: Sequence[str] = ("decode", "write"),
    path: dict | None = None,
    record: dict | None = None,
) -> dict:
    """report.json (for machines), report.md (for people) and the contact sheet of the written frames."""
    t = time.perf_counter()
    read = frame_path or version.frame_path
    samples = sample_frames(shot.first, shot.last)
    thumbs = review_tiles(version, "frames", samples, lambda n: frame_thumb(read_image(read(n)), n))
    sheet = contact_sheet(thumbs, version.path / "contact_sheet.png", metadata)
    timings = {**timings, "contact_sheet_s": time.perf_counter() - t}
    report = {
        "shot": shot.name,
        "version": version.label,
        "manifest": str(shot.manifest_path),
        "settings_hash": shot.settings_hash,
        "frames": {"first": shot.first, "last": shot.last, "count": shot.frame_count},
        "fps": float(shot.fps),
        "plate": shot.plate.info.to_dict(),
        "output": shot.spec.output.model_dump(),
        "sequence": str(version.sequence_pattern),
        "stages_run": list(stages),
        "metadata": metadata,
        "chunks": [asdict(c) for c in chunks],
        "movies": [asdict(m) for m in movies],
        "timings": timings,
        "frames_written": sum(c.written for c in chunks),
        "frames_skipped": sum(c.skipped for c in chunks),
        "contact_sheet": str(sheet),
        "host": platform.node(),
        "software": metadata["software"],
        "faces": faces,
        "path": path,
        "stages": record,
    }
    write_json_atomic(version.path / "report.json", report)
    (version.path / "report.md").write_text(report_markdown(report), encoding="utf-8")
    return report


def report_markdown(report: dict) -> str:
    fr, t = report["frames"], report["timings"]
    lines = [
        f"# {report['shot']} {report['version']}",
        "",
        f"- Frames {fr['first']}-{fr['last']} ({fr['count']}), {report['fps']:g} fps; "
        f"written {report['frames_written']}, already complete {report['frames_skipped']}",
        f"- Plate: {report['plate']['path']} ({report['plate']['kind']}, {report['plate']['codec']}, "
        f"{report['plate']['width']}x{report['plate']['height']})",
        f"- Synthetic (AI-altered) imagery: {report['metadata']['synthetic_imagery']} "
        f"(stages: {report['metadata']['ai_altered_stages']})",
        f"- Sequence: `{report['sequence']}`",
        f"- Total {t.get('total_s', 0):.1f} s: "
        + ", ".join(
            f"{k[:-2]} {v:.1f} s" for k, v in t.items() if k.endswith("_s") and k != "total_s" and v >= 0.05
        ),
        "",
        "| chunk | written | skipped | decode s | new faces s | composite s | write s | wall s | worker |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["chunks"]:
        lines.append(
            f"| {c['first']}-{c['last']} | {c['written']} | {c['skipped']} | {c['decode_s']:.2f} | "
            f"{c['new_faces_s']:.2f} | {c['composite_s']:.2f} | {c['write_s']:.2f} | "
            f"{c['wall_s']:.2f} | {c['worker']} |"
        )
    if faces := report.get("faces"):
        lines += ["", *faces_markdown(faces)]
    if path := report.get("path"):
        lines += ["", *path_markdown(path)]
    if record := report.get("stages"):
        lines += ["", "| stage | ran | why | key |", "|---|---|---|---|"]
        lines += [
            f"| {n} | {'yes' if r['ran'] else 'cached'} | {r['why']} | {r['key']} |"
            for n, r in record.items()
        ]
    lines += ["", "| movie | seconds | audio |", "|---|---|---|"]
    for m in report["movies"]:
        lines.append(f"| {Path(m['path']).name} | {m['seconds']:.2f} | {'yes' if m['audio'] else 'no'} |")
    return "\n".join(lines) + "\n"


def faces_markdown(faces: dict) -> list[str]:
    q = faces["quality"]
    gaps = ", ".join(f"{a}-{b}" for a, b in faces["no_face_ranges"]) or "none"
    how = "reused from the cache" if faces["cached"] else f"computed in {faces['seconds']:.1f} s"
    return [
        "## Faces",
        "",
        f"- Detected on {faces['detected']} of {faces['frames']} frames "
        f"({100 * faces['detected_ratio']:.1f}%), "
        f"{faces['filled']} more filled by interpolation; no face: {gaps}",
        f"- Frames with several faces: {faces['several_faces_frames']}; the track was {how}",
        f"- Alignment jitter {q['alignment_jitter_raw']:.5f} raw, "
        f"{q['alignment_jitter_smoothed']:.5f} smoothed; "
        f"landmark error from smoothing {q['landmark_error_smoothed']:.5f} (fractions of the crop size)",
        *projection_markdown(faces.get("projection")),
    ]


def path_markdown(p: dict) -> list[str]:
    shape = p["interpolation"] + (f" (alpha {p['alpha']:g})" if p["interpolation"] == "catmull_rom" else "")
    lines = [
        "## Latent path",
        "",
        f"- {shape}, ends {p['ends']}{', eased' if p['ease'] else ''}"
        + (f", closed loop of {p['period']} frames" if p["period"] else "")
        + f"; {len(p['keys'])} keys"
        + (" (cached)" if p["cached"] else ""),
        "- Keys: "
        + "; ".join(f"{f}: {s}" for f, s in p["keys"][:24])
        + (" ..." if len(p["keys"]) > 24 else ""),
    ]
    for e in p["edits"]:
        lines.append(
            f"- Edit {e['direction']}: amount {e['amount']:g} over frames {e['frames'] or 'all'}, "
            f"ramp {e['ramp']} frames"
        )
    return lines


def projection_markdown(p: dict | None) -> list[str]:
    if not p:
        return []
    how = "reused from the cache" if p["cached"] else f"projected in {p['projection_seconds']:.1f} s"
    return [
        "",
        "## Projection",
        "",
        f"- {p['frames_projected']} {p['source']} projected ({p['mode']}, "
        f"{'W+' if p['w_plus'] else 'W'}) into {p['generator']}; {how}",
        f"- LPIPS-VGG of the reconstructions: mean {p['lpips_mean']:.4f}, worst {p['lpips_max']:.4f}; "
        f"{p['total_steps']} optimisation steps in all",
    ]
