"""The frame loop of a render, free of Prefect: decode a chunk of plate frames, run the per-frame chain on
them, write the frames.

The per-frame chain is the stages' work on each frame, in stage order: links that make or change the new
face of an aligned crop (the swap model, the generator along the latent path, the stylisation), then
the composite that puts the new face back into the plate (`FrameWork`). A new per-frame stage is one more
link (`Stage.face_link`).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipeline import progress
from pipeline.composite.blend import FaceElement
from pipeline.manifest import Shot
from pipeline.media.decode import read_ahead
from pipeline.media.sequences import write_frame
from pipeline.processes import release_free_memory
from pipeline.shot.synthetic import frame_metadata
from pipeline.workspace import RenderVersion


@dataclass
class FrameComposite:
    comp: np.ndarray
    element: FaceElement | None  # the face as an RGBA layer over the plate; None when not written
    new_face: np.ndarray | None  # the crop that went in (for contact sheets)
    matte: np.ndarray | None  # its matte in crop coordinates
    # the new face's distance to person A and to B, and whether dlib's detector finds a face in it (1 or 0)
    identity: tuple[float, float, float] | None = None
    # whether a face in the frame was altered (a new face composited, or a generated frame), for its
    # synthetic-imagery metadata; a frame work that passes a plate frame through says False
    altered: bool = True


class FaceLink(Protocol):
    """One per-frame stage's work on the new faces of a batch of frames (aligned crops, float32 RGB)."""

    # True when the link draws its own faces and ignores those it is given (the generator): the links
    # before it in the chain would be wasted work and are left out
    draws_own_faces: bool
    # True when the link makes each frame's face on its own, with no model run over the batch (the test
    # alteration): a frame's whole composite can then be one task, with no wait for the batch's other
    # frames between its crop and its composite
    frame_by_frame: bool

    def __call__(
        self, numbers: list[int], faces: list[np.ndarray], masks: list[np.ndarray | None]
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """New faces for frames `numbers`, and the masks that come with them (None: the landmark matte)."""
        ...


def face_chain(links: list[FaceLink]) -> list[FaceLink]:
    """The links that run: from the last one that draws its own faces on."""
    start = max((i for i, link in enumerate(links) if link.draws_own_faces), default=0)
    return links[start:]


def run_chain(
    chain: list[FaceLink], numbers: list[int], crops: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    faces: list[np.ndarray] = list(crops)
    masks: list[np.ndarray | None] = [None] * len(crops)
    for link in chain:
        faces, masks = link(numbers, faces, masks)
    return faces, masks


class FrameWork(Protocol):
    """What the frame loop runs on each batch of frames: the composite (or a shot without a plate's
    generated frames)."""

    batch_size: int
    new_faces_s: float  # seconds spent making new faces so far, for the run record

    def frames(self, numbers: list[int], plates: list[np.ndarray]) -> list[FrameComposite]: ...


@dataclass
class ChunkResult:
    first: int
    last: int
    written: int = 0
    skipped: int = 0
    decode_s: float = 0.0
    new_faces_s: float = 0.0  # making the new faces: swap model, generator or test alteration
    composite_s: float = 0.0  # the rest of compositing: colour, grain, warp back, blend, elements
    write_s: float = 0.0  # the comps and the face elements
    review_s: float = 0.0  # the contact sheets' tiles of the sampled frames
    wall_s: float = 0.0
    # [frame, distance to A, distance to B, a face found (1) or not (0)]
    identity: list[list[float]] = field(default_factory=list)
    worker: str = field(default_factory=lambda: f"{platform.node()}:{os.getpid()}")  # where it ran


def chunk_ranges(first: int, last: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size - 1, last)) for a in range(first, last + 1, size)]


BATCH_BYTES = 128 << 20  # the plate frames a batch holds, at most (one UHD 8-bit frame is 25 MB)


def batch_frames(wanted: int, frame_bytes: int) -> int:
    """Frames in a batch: the work's own batch size, fewer where the frames are big. A batch holds its
    plates, their comps and their face elements at once (about three plate frames for each of its
    frames), in every chunk rendering side by side: at UHD a batch of 8 held 600 MB a chunk."""
    return max(1, min(wanted, BATCH_BYTES // max(1, frame_bytes)))


def render_progress_key(shot: Shot, work: str) -> str:
    """The key of the progress a render shows of `work` (track, frames, overlay, movies), under which the
    tasks doing it (its chunks) count their frames as they go when they run in the same process
    (`progress.advance`)."""
    return f"{shot.manifest_path}:{shot.first}-{shot.last}:{work}"


def render_frames(
    shot: Shot,
    version: RenderVersion,
    first: int,
    last: int,
    metadata: dict[str, str],
    work: FrameWork | None = None,
    on_frame: Callable[[int, np.ndarray, np.ndarray, FrameComposite | None], None] | None = None,
    write_element: Callable[[int, FaceElement, dict[str, str]], None] | None = None,
) -> ChunkResult:
    """Decode, run the per-frame work and write frames first..last, skipping frames already complete.

    A frame's element (`write_element`) and what `on_frame` saves of it (review tiles) are written before
    its comp, so a comp on disk means the frame is complete. `on_frame` gets the frame number, the plate,
    the comp and the composite's parts. Each frame and element carries `metadata` as it applies to that
    frame: synthetic imagery only where the work altered a face in it (a frame without work is the plate).
    """
    t0 = time.perf_counter()
    result = ChunkResult(first, last)
    todo = [n for n in range(first, last + 1) if not version.frame_done(n)]
    result.skipped = (last - first + 1) - len(todo)
    progress_key = render_progress_key(shot, "frames")
    if result.skipped:
        progress.advance(progress_key, result.skipped, part=(first, last))
    if not todo:
        result.wall_s = time.perf_counter() - t0
        return result
    wanted = set(todo)
    start = todo[0]
    batch_size = work.batch_size if work else 1  # bounded by the frames' size once the first is read
    frames = read_ahead(shot.read_frames(start, last), 2)  # decoding overlaps the batch's work
    fmt = shot.spec.output.sequence
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        numbers = [n for n, _ in pending]
        outputs = [f for _, f in pending]
        done: list[FrameComposite | None] = [None] * len(numbers)
        metas = [frame_metadata(metadata, False)] * len(numbers)
        if work is not None:
            t, made_before = time.perf_counter(), work.new_faces_s
            composites = work.frames(numbers, outputs)
            made = work.new_faces_s - made_before
            result.new_faces_s += made
            result.composite_s += time.perf_counter() - t - made
            done = list(composites)
            outputs = [d.comp for d in composites]
            metas = [frame_metadata(metadata, d.altered) for d in composites]
            for n, d, meta in zip(numbers, composites, metas, strict=True):
                if d.element is not None and write_element is not None:
                    t = time.perf_counter()
                    write_element(n, d.element, meta)
                    result.write_s += time.perf_counter() - t
                if d.identity is not None:
                    result.identity.append([n, *d.identity])
        for k, (n, frame) in enumerate(zip(numbers, outputs, strict=True)):
            if on_frame is not None:
                t = time.perf_counter()
                on_frame(n, pending[k][1], frame, done[k])
                result.review_s += time.perf_counter() - t
            t = time.perf_counter()
            write_frame(version.frame_path(n), frame, fmt, metas[k])
            result.write_s += time.perf_counter() - t
            progress.advance(progress_key, part=(first, last))
        result.written += len(numbers)
        pending.clear()

    try:
        for number in range(start, last + 1):
            t = time.perf_counter()
            frame = next(frames)
            result.decode_s += time.perf_counter() - t
            if number in wanted:
                pending.append((number, frame))
                if len(pending) == 1:
                    batch_size = batch_frames(batch_size, frame.nbytes)
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
    finally:
        frames.close()
        pending.clear()
        release_free_memory()  # the chunk's frames are gone: their heap goes back to the kernel
    result.wall_s = time.perf_counter() - t0
    return result
