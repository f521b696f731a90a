"""The movies of a render, made from its finished frame sequence: review and delivery movies with the plate's
audio trimmed to the frames, and the ProRes 4444 face element with alpha when the composite asks for it."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import progress
from pipeline.errors import MediaError
from pipeline.manifest import Shot
from pipeline.media.encode import MOVIE_PRESETS, AudioSource, encode_movie
from pipeline.shot.composite import composite_spec, element_path
from pipeline.shot.frames import render_progress_key
from pipeline.shot.synthetic import sequence_metadata
from pipeline.workspace import RenderVersion


@dataclass
class MovieResult:
    preset: str
    path: str
    seconds: float
    skipped: bool = False
    audio: bool = False
    command: list[str] = field(default_factory=list)


def sequence_frames(shot: Shot, version: RenderVersion) -> Iterator[Path]:
    """The paths of the shot's frames in the version, in order."""
    return (version.frame_path(n) for n in range(shot.first, shot.last + 1))


def plate_audio(shot: Shot) -> AudioSource | None:
    """The plate's audio trimmed to the rendered frames, when the plate has audio at the shot's rate."""
    info = shot.plate.info
    if info.kind != "movie" or info.audio is None or shot.fps != info.fps:
        return None
    return AudioSource(
        info.path,
        offset=info.picture_start + float(shot.plate_index(shot.first) / info.fps),
        duration=float(shot.frame_count / info.fps),
    )


def movie_count(shot: Shot) -> int:
    """How many movies `encode_movies` makes: the output's, and the face element's when asked for."""
    spec = composite_spec(shot)
    return len(shot.spec.output.movies) + (1 if spec is not None and spec.element.prores4444 else 0)


@contextmanager
def display_lut(shot: Shot) -> Iterator[Path | None]:
    """For a comp written in the plate's own encoding (output.colorspace: plate), a 3D LUT file from it to
    the display pictures its movies show, for as long as they are made; None for a comp in the working
    space."""
    if (encoding := shot.plate_encoding) is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="vfx-lut-") as folder:
        lut = Path(folder) / "display.cube"
        lut.write_text(encoding.display_lut(shot.spec.output.sequence == "exr"), encoding="ascii")
        yield lut


def encode_movies(shot: Shot, version: RenderVersion, metadata: dict[str, str]) -> list[MovieResult]:
    """The shot's movies from its complete sequence. They say they hold synthetic imagery when any of
    the frames does (the frames' own metadata, read back), whatever the render's metadata says."""
    missing = next((n for n in range(shot.first, shot.last + 1) if not version.frame_done(n)), None)
    if missing is not None:
        raise MediaError(
            f"{version.frame_path(missing)}: frame {missing} is missing; movies are made from a "
            "complete sequence only"
        )
    metadata = sequence_metadata(metadata, sequence_frames(shot, version))
    results = []
    audio = plate_audio(shot)
    with display_lut(shot) as lut:  # a comp in the plate's own encoding (a camera's log) is shown through it
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
                color=shot.plate.info.color,
                pixel_aspect=shot.plate.info.pixel_aspect,
                timecode=shot.frame_timecode(shot.first),
                display_lut=lut,
            )
            results.append(
                MovieResult(preset, str(out), time.perf_counter() - t, audio=audio is not None, command=cmd)
            )
            progress.advance(render_progress_key(shot, "movies"))
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
                pattern,
                shot.first,
                shot.frame_count,
                shot.fps,
                out,
                "prores4444",
                metadata,
                alpha=True,
                color=shot.plate.info.color,
                pixel_aspect=shot.plate.info.pixel_aspect,
                timecode=shot.frame_timecode(shot.first),
            )
            results.append(MovieResult("prores4444 element", str(out), time.perf_counter() - t, command=cmd))
            progress.advance(render_progress_key(shot, "movies"))
    return results
