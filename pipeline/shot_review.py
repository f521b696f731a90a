"""The review pictures of a render, free of Prefect: tiles of a few frames across the shot, which the
chunks save while they hold those frames, and the contact sheets assembled from them.

Making the sheets afterwards meant decoding each sampled frame again (a seek into the plate) and
compositing four of them again; on a shot of 24 frames that cost a fifth of the render.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.faces.draw import grid
from pipeline.faces.track import FaceTrack
from pipeline.manifest import Shot
from pipeline.media.decode import read_image
from pipeline.media.sequences import write_frame
from pipeline.render import frame_thumb, review_tiles, sample_frames, save_review_tile
from pipeline.shot_composite import Compositor, FrameComposite, composite_row, composite_spec
from pipeline.shot_faces import face_tile
from pipeline.workspace import RenderVersion

COMPOSITE_SAMPLES = 4


class ReviewTiles:
    """Saves the tiles of the sampled frames that pass through a chunk (render_frames' `on_frame`)."""

    def __init__(self, shot: Shot, version: RenderVersion, track: FaceTrack | None = None):
        self.shot, self.version, self.track = shot, version, track
        self.frames = set(sample_frames(shot.first, shot.last))
        self.faces = self.frames if track is not None else set()
        composites = composite_spec(shot) is not None and track is not None
        self.composites = (
            set(sample_frames(shot.first, shot.last, COMPOSITE_SAMPLES)) if composites else set()
        )

    def __call__(self, frame: int, plate: np.ndarray, comp: np.ndarray, done: FrameComposite | None) -> None:
        if frame in self.frames:
            save_review_tile(self.version, "frames", frame, frame_thumb(comp, frame))
        if frame in self.faces and self.track is not None:
            save_review_tile(self.version, "faces", frame, face_tile(self.shot, self.track, frame, plate))
        if frame in self.composites and done is not None:
            save_review_tile(self.version, "composite", frame, composite_row(frame, plate, done, comp))


def faces_contact_sheet(
    shot: Shot, version: RenderVersion, track: FaceTrack, metadata: dict[str, str], first: int, last: int
) -> Path:
    """Aligned crops across the rendered frames, with their matte outlines and landmarks."""

    def make(n: int) -> np.ndarray:
        return face_tile(shot, track, n, next(shot.plate.read(shot.plate_index(n), shot.plate_index(n) + 1)))

    tiles = review_tiles(version, "faces", sample_frames(first, last), make)
    path = version.path / "faces_contact_sheet.png"
    write_frame(path, grid(tiles), "png8", metadata)
    return path


def composite_contact_sheet(
    shot: Shot,
    version: RenderVersion,
    track: FaceTrack,
    metadata: dict[str, str],
    keys_file: str | Path | None = None,
    swap_cache: str | Path | None = None,
) -> Path:
    """Rows of plate | new face | matte | comp for a few frames across the shot."""
    compositor: Compositor | None = None

    def make(n: int) -> np.ndarray:
        nonlocal compositor
        compositor = compositor or Compositor(shot, track, keys_file=keys_file, swap_cache=swap_cache)
        plate = next(shot.plate.read(shot.plate_index(n), shot.plate_index(n) + 1))
        return composite_row(n, plate, compositor.frame(n, plate), read_image(version.frame_path(n)))

    rows = review_tiles(version, "composite", sample_frames(shot.first, shot.last, COMPOSITE_SAMPLES), make)
    path = version.path / "composite_contact_sheet.png"
    write_frame(path, grid(rows, 1), "png8", metadata)
    return path
