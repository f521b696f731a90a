"""The review pictures of a render, free of Prefect: tiles of a few frames across the shot, which the
chunks save while they hold those frames, and the contact sheets assembled from them.

Making the sheets afterwards meant decoding each sampled frame again (a seek into the plate) and
compositing four of them again; on a shot of 24 frames that cost a fifth of the render. Each stage with a
contact sheet says which frames it wants tiles of and makes them (`Stage.tile_frames`, `Stage.tile`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.faces.draw import grid
from pipeline.files import write_atomic
from pipeline.media.color import to_uint8
from pipeline.media.sequences import write_frame
from pipeline.workspace import RenderVersion

if TYPE_CHECKING:
    from pipeline.faces.track import FaceTrack
    from pipeline.manifest import Shot
    from pipeline.shot.frames import FrameComposite
    from pipeline.shot.stage import Stage


def sample_frames(first: int, last: int, count: int = 12) -> list[int]:
    n = last - first + 1
    if n <= count:
        return list(range(first, last + 1))
    return sorted({first + round(i * (n - 1) / (count - 1)) for i in range(count)})


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


class ReviewTiles:
    """Saves the tiles of the sampled frames that pass through a chunk (render_frames' `on_frame`): the
    written frame for the frames sheet, and each stage's own tile for its sheet."""

    def __init__(
        self, shot: Shot, version: RenderVersion, track: FaceTrack | None, stages: Sequence[Stage] = ()
    ):
        self.shot, self.version, self.track = shot, version, track
        self.frames = set(sample_frames(shot.first, shot.last))
        self.sheets = [
            (stage, set(stage.tile_frames(shot)))
            for stage in stages
            if stage.review_sheet is not None and track is not None
        ]

    @property
    def plate_frames(self) -> set[int]:
        """The frames whose plates the stages' tiles read (render_frames keeps those plates)."""
        return set().union(*(frames for _, frames in self.sheets))

    def __call__(
        self, frame: int, plate: np.ndarray | None, comp: np.ndarray, done: FrameComposite | None
    ) -> None:
        if frame in self.frames:
            save_review_tile(self.version, "frames", frame, frame_thumb(comp, frame))
        for stage, frames in self.sheets:
            if frame in frames and self.track is not None:
                assert plate is not None, f"frame {frame}: its plate was not kept for the review tiles"
                tile = stage.tile(self.shot, self.track, frame, plate, comp, done)
                if tile is not None:
                    assert stage.review_sheet is not None
                    save_review_tile(self.version, stage.review_sheet, frame, tile)
