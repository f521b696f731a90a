"""The parts every stage of a shot has, so that a new stage is a new module and one line in the stage list
(`stages.STAGES`), and the stage keys, the cache, `plan`, `--force`, `vfx status`, the frame chain and the
report all find it there.

A stage has, in this order of a render:
- its manifest section (`section`, None when it is off; `on` says whether it takes part at all);
- its stage key (`key`): its settings, its input files and the keys of the stages before it;
- its cached result (`cache_path`, `cached`);
- its work: at the shot level before the frames (`run`, with a part that runs as one task per chunk of
  frames first: `chunk_range` and `work_chunk`), and per frame as a link of the frame chain (`face_link`);
- its report section with its contact sheet (`report`, placed at `report_at` in report.json; `markdown`
  for report.md; `tile_frames` and `tile` for the sheet's tiles, saved by the chunks while they hold the
  frames), and what the output metadata says it did (`altered`, `models`).
Every part has a default that does nothing, so a stage writes only what it has.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.faces.track import FaceTrack
from pipeline.manifest import Shot
from pipeline.shot.frames import ChunkResult, FaceLink, FrameComposite
from pipeline.shot.keys import StageKey
from pipeline.workspace import RenderVersion

# Held while a stage loads a model into its per-process cache: the chunks of a render run on threads, and
# without it four of them starting together each read the same 1 GB swap checkpoint (lru_cache does not
# stop a second caller while the first is still loading).
MODEL_LOAD_LOCK = threading.RLock()


@dataclass
class StageOutput:
    """What a stage's shot-level work hands on: files by name (for later stages and for the frame chunks,
    which may run in other processes), and its part of the run report."""

    files: dict[str, str] = field(default_factory=dict)
    report: dict | None = None


@dataclass
class StageJob:
    """What a stage's shot-level work is given."""

    root: Path  # the render root; caches live in <root>/<shot>/cache
    key: StageKey
    files: dict[str, str]  # the files of the stages before it
    version: RenderVersion | None = None  # the version being rendered
    parts: list = field(default_factory=list)  # what its chunk tasks returned, in frame order
    log: Callable[[str], None] = print


@dataclass
class Rendered:
    """What the stages' report sections are made from once the frames are written."""

    shot: Shot
    version: RenderVersion
    metadata: dict[str, str]
    files: dict[str, str]
    outputs: dict[str, StageOutput]
    chunks: list[ChunkResult]
    log: Callable[[str], None] = print
    # makes the frame chain again, for a review tile that no chunk saved
    chain: Callable[[], list[FaceLink]] = list

    @functools.cached_property
    def track(self) -> FaceTrack | None:
        return FaceTrack.load(Path(self.files["track"])) if "track" in self.files else None


class Stage:
    name: ClassVar[str]
    label: ClassVar[str]  # its name in report.json's list of stages that ran
    report_at: ClassVar[tuple[str, ...]] = ()  # where its section goes in report.json
    has_shot_work: ClassVar[bool] = True  # False: it works in the frame chunks only

    def section(self, shot: Shot) -> Any | None:
        """Its manifest section when the stage is on, else None."""
        return None

    def on(self, shot: Shot) -> bool:
        return self.section(shot) is not None

    def key(self, shot: Shot, upstream: Mapping[str, StageKey]) -> StageKey:
        raise NotImplementedError

    def cache_path(self, shot: Shot, root: Path, key: StageKey) -> Path | None:
        """Where its result is kept in the shot's cache; None when its result is the version itself."""
        return None

    def cached(self, path: Path) -> str | None:
        """What of its result is in the cache (for `--dry-run`), or None when it is not there."""
        return path.name if path.is_file() else None

    def chunk_range(self, shot: Shot, root: Path, key: StageKey) -> tuple[int, int] | None:
        """The frames its chunked work covers when that work must run (not cached), else None."""
        return None

    def work_chunk(self, shot: Shot, first: int, last: int) -> Any:
        raise NotImplementedError

    def run(self, shot: Shot, job: StageJob) -> StageOutput:
        """Its shot-level work: from the cache when its key is unchanged."""
        return StageOutput()

    def face_link(self, shot: Shot, files: Mapping[str, str]) -> FaceLink | None:
        """Its link of the per-frame chain, for a chunk that has the stages' files."""
        return None

    review_sheet: ClassVar[str | None] = None  # the contact sheet whose tiles its chunks save

    def tile_frames(self, shot: Shot) -> list[int]:
        """The frames its chunks save a review tile of."""
        return []

    def tile(
        self,
        shot: Shot,
        track: FaceTrack,
        frame: int,
        plate: np.ndarray,
        comp: np.ndarray,
        done: FrameComposite | None,
    ) -> np.ndarray | None:
        """Its review tile of one frame, made while a chunk holds the frame."""
        return None

    def report(self, r: Rendered) -> dict | None:
        """Its section of report.json, with its contact sheet, once the frames are written."""
        return None

    def markdown(self, report: dict) -> list[str]:
        """Its part of report.md, from the whole report."""
        return []

    def altered(self, shot: Shot, earlier: list[str]) -> str | None:
        """What it does to the faces, for the output metadata (`earlier`: what the stages before it do)."""
        return None

    def models(self, shot: Shot) -> list[str]:
        """The models that find, place or make its faces, for the output metadata."""
        return []
