"""The record of a render: the output metadata that says which faces were altered, the timings of each step,
report.json (for machines), report.md (for people) and the contact sheet of the written frames. Each
stage writes its own section (`Stage.report`, `Stage.markdown`); this module puts them together.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline import TOOL_NAME, __version__
from pipeline.files import write_json_atomic
from pipeline.manifest import Shot
from pipeline.media.colorspace import WORKING_ENCODED, WORKING_LINEAR
from pipeline.media.decode import ConvertedPlate, read_image
from pipeline.shot.frames import ChunkResult, comp_picture
from pipeline.shot.keys import sections_text, settings_sections
from pipeline.shot.movies import MovieResult
from pipeline.shot.review import contact_sheet, frame_thumb, review_tiles, sample_frames
from pipeline.shot.stages import STAGES, active_stages
from pipeline.shot.synthetic import synthetic_fields
from pipeline.workspace import RenderVersion


def altered_stages(shot: Shot) -> list[str]:
    """What the shot's stages do to its faces, in order (for the synthetic-imagery metadata)."""
    out: list[str] = []
    for stage in active_stages(shot):
        if (what := stage.altered(shot, out)) is not None:
            out.append(what)
    return out


def models_used(shot: Shot) -> str:
    """The models that found, placed and made the shot's new faces, each named once."""
    models = [m for stage in active_stages(shot) for m in stage.models(shot)]
    return ",".join(dict.fromkeys(models)) or "none"


def output_metadata(shot: Shot, version: RenderVersion) -> dict[str, str]:
    """What every output file carries: whether it holds synthetic (AI-altered) faces, and its origin. This
    is the form for outputs with an altered face; those without one say so (`pipeline.shot.synthetic`)."""
    return {
        **synthetic_fields(altered_stages(shot)),
        "shot": shot.name,
        "render_version": version.label,
        "software": f"{TOOL_NAME} {__version__}",
        "models": models_used(shot),
        # what the version was rendered from: a resume checks its frames against the manifest by these
        "settings_hash": shot.settings_hash,
        "settings_sections": sections_text(settings_sections(shot)),
        "render_frames": f"{shot.first}-{shot.last}",
        **plate_colorspace(shot),
    }


def plate_colorspace(shot: Shot) -> dict[str, str]:
    """The colour space the plate was converted from, its OpenColorIO config, and the colour space of the
    file's pixels; empty for a plate read as it is."""
    if not isinstance(shot.plate, ConvertedPlate):
        return {}
    colorspace = shot.plate.colorspace
    written = WORKING_LINEAR if shot.spec.output.sequence == "exr" else WORKING_ENCODED
    return {
        "plate_colorspace": colorspace.name,
        "ocio_config": colorspace.config,
        # what the file's pixels are, as a colour space of the config (the working space's names are the
        # built-in config's): the plate's own encoding (output.colorspace: plate), or the working space's
        "colorspace": colorspace.name if shot.plate_encoding else written,
    }


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


def write_report(
    shot: Shot,
    version: RenderVersion,
    chunks: Sequence[ChunkResult],
    movies: Sequence[MovieResult],
    metadata: dict[str, str],
    timings: dict[str, float],
    sections: dict | None = None,
    frame_path: Callable[[int], Path] | None = None,
    stages: Sequence[str] = ("decode", "write"),
    record: dict | None = None,
) -> dict:
    """report.json (for machines), report.md (for people) and the contact sheet of the written frames.
    `sections` are the stages' parts of the report (`faces`, `path`)."""
    t = time.perf_counter()

    def picture(n: int) -> np.ndarray:
        """A written frame: the comp's as it shows, or one of the given frames (an overlay's)."""
        if frame_path is not None:
            return read_image(frame_path(n))
        return comp_picture(shot, read_image(version.frame_path(n)))

    samples = sample_frames(shot.first, shot.last)
    thumbs = review_tiles(version, "frames", samples, lambda n: frame_thumb(picture(n), n))
    sheet = contact_sheet(thumbs, version.path / "contact_sheet.png", metadata)
    timings = {**timings, "contact_sheet_s": time.perf_counter() - t}
    report = {
        "shot": shot.name,
        "version": version.label,
        "manifest": str(shot.manifest_path),
        "settings_hash": shot.settings_hash,
        "frames": {
            "first": shot.first,
            "last": shot.last,
            "count": shot.frame_count,
            # the first and last frames' timecodes, from the plate's ("" when it has none)
            "timecode_in": shot.frame_timecode(shot.first),
            "timecode_out": shot.frame_timecode(shot.last),
        },
        "fps": float(shot.fps),
        "plate": {**shot.plate.info.to_dict(), **plate_colorspace(shot)},
        "output": shot.spec.output.model_dump(),
        "folder": str(version.path.resolve()),
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
        "faces": None,
        "path": None,
        **(sections or {}),
        "stages": record,
    }
    write_json_atomic(version.path / "report.json", report)
    (version.path / "report.md").write_text(report_markdown(report), encoding="utf-8")
    return report


def report_markdown(report: dict) -> str:
    fr, t, plate = report["frames"], report["timings"], report["plate"]
    converted = f", {plate['plate_colorspace']} converted to sRGB" if plate.get("plate_colorspace") else ""
    lines = [
        f"# {report['shot']} {report['version']}",
        "",
        f"- Frames {fr['first']}-{fr['last']} ({fr['count']}), {report['fps']:g} fps"
        + (f", timecode {fr['timecode_in']}-{fr['timecode_out']}" if fr.get("timecode_in") else "")
        + "; "
        f"written {report['frames_written']}, already complete {report['frames_skipped']}",
        f"- Plate: {plate['path']} ({plate['kind']}, {plate['codec']}, {plate['width']}x{plate['height']}"
        f"{converted})",
        f"- Synthetic (AI-altered) imagery: {report['metadata']['synthetic_imagery']} "
        f"(stages: {report['metadata']['ai_altered_stages']})",
        f"- Folder: `{report['folder']}`",
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
    for stage in STAGES:  # each says nothing when its section is not in the report
        lines += stage.markdown(report)
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
