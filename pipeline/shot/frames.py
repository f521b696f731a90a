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
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
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
    new_face: np.ndarray | None  # the new face as it went in, crop-sized (contact sheets; see finish_face)
    matte: np.ndarray | None  # its matte in crop coordinates
    # the new face's distance to person A and to B, and whether dlib's detector finds a face in it (1 or 0)
    identity: tuple[float, float, float] | None = None
    # whether a face in the frame was altered (a new face composited, or a generated frame), for its
    # synthetic-imagery metadata; a frame work that passes a plate frame through says False
    altered: bool = True
    # the plate's pixels the new face may have changed (the warped matte's box); None: it changed none
    box: tuple[slice, slice] | None = None
    # the blur the new face got (composite.blur, composite.shutter): sigma along its long axis and across it
    # (crop px) and that axis's angle (degrees); None: none
    blur: tuple[float, float, float] | None = None


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
    """What the frame loop runs on the frames: the composite (or a shot without a plate's generated
    frames)."""

    batch_size: int
    new_faces_s: float  # seconds spent making new faces so far, for the run record

    def stream(self, plates: Iterable[tuple[int, np.ndarray]], batch_size: int) -> Iterator[FrameComposite]:
        """The composites of numbered plate frames, in their order, at most `batch_size` frames at work. The
        plates are the stream's: a comp may be its plate's own array, blended in place."""
        ...


def in_batches(
    frames: Callable[[list[int], list[np.ndarray]], list[FrameComposite]],
    plates: Iterable[tuple[int, np.ndarray]],
    size: int,
) -> Iterator[FrameComposite]:
    """The composites of numbered plate frames, in order, made by `frames` on batches of `size` (a frame
    work whose models run over a batch)."""
    batch: list[tuple[int, np.ndarray]] = []
    for pair in plates:
        batch.append(pair)
        if len(batch) >= size:
            done = frames([n for n, _ in batch], [p for _, p in batch])
            batch = []
            yield from done
    if batch:
        yield from frames([n for n, _ in batch], [p for _, p in batch])


@dataclass
class ChunkResult:
    first: int
    last: int
    written: int = 0
    skipped: int = 0
    decode_s: float = 0.0
    new_faces_s: float = 0.0  # making the new faces: swap model, generator or test alteration
    # the rest of compositing (colour, grain, warp back, blend, elements): the wait for it, which is all of it
    # for a batch and only the part the writing did not hide for a frame-by-frame stream
    composite_s: float = 0.0
    write_s: float = 0.0  # the comps and the face elements
    review_s: float = 0.0  # the contact sheets' tiles of the sampled frames
    wall_s: float = 0.0
    # [frame, distance to A, distance to B, a face found (1) or not (0)]
    identity: list[list[float]] = field(default_factory=list)
    # [frame, sigma along, sigma across (crop px), angle (degrees)] of each frame whose new face was blurred
    blur: list[list[float]] = field(default_factory=list)
    worker: str = field(default_factory=lambda: f"{platform.node()}:{os.getpid()}")  # where it ran


def chunk_ranges(first: int, last: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size - 1, last)) for a in range(first, last + 1, size)]


# Frames a chunk writes at once: one a core, at most 4, and at most WRITE_BYTES of plate frames. Encoding the
# PNGs was most of a render's time (a 1080p frame with its 16-bit element: about 100 ms on one core through
# libpng, 28 ms through encode_png's ISA-L deflate, against 30 ms to composite it), and a chunk that wrote one
# frame at a time used one core for it: the last chunk of a shot, alone, left the other cores idle. A frame
# being written holds its plate, its comp and the encoder's copies: two UHD frames a chunk took the 1000-frame
# UHD render of bench/composite.py from 3.54 to 4.37 GB, and one UHD frame written beside the chunk's work to
# 3.80; so a UHD chunk (25 MB a frame) writes each frame itself as before, and a 1080p one (6 MB) hands two at
# a time to writers.
WRITERS = max(1, min(4, os.cpu_count() or 1))
WRITE_BYTES = 32 << 20


def writers_for(frame_bytes: int) -> int:
    """How many frames of this size a chunk writes at once."""
    return max(1, min(WRITERS, WRITE_BYTES // max(1, frame_bytes)))


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


def comp_picture(shot: Shot, image: np.ndarray) -> np.ndarray:
    """A written comp frame as the picture it shows: one in the plate's own encoding (output.colorspace:
    plate) converted as the plate is read, for the contact sheets; any other as it is."""
    return image if (encoding := shot.plate_encoding) is None else encoding.convert(image)


def render_frames(
    shot: Shot,
    version: RenderVersion,
    first: int,
    last: int,
    metadata: dict[str, str],
    work: FrameWork | None = None,
    on_frame: Callable[[int, np.ndarray | None, np.ndarray, FrameComposite | None], None] | None = None,
    write_element: Callable[[int, FaceElement, dict[str, str]], None] | None = None,
    plate_frames: Collection[int] = (),
) -> ChunkResult:
    """Decode, run the per-frame work and write frames first..last, skipping frames already complete.

    A frame's element (`write_element`) and what `on_frame` saves of it (review tiles) are written before
    its comp, so a comp on disk means the frame is complete. `on_frame` gets the frame number, the plate,
    the comp and the composite's parts. The work composites into the plates it is handed, so only the
    frames in `plate_frames` are handed over as copies, and `on_frame` gets the plate of those alone (None
    for the plate of any other frame with work). Each frame and element carries `metadata` as it applies
    to that frame: synthetic imagery only where the work altered a face in it (a frame without work is the
    plate).
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
    # a comp in the plate's own encoding is written from the plate's samples where no new face went
    colorspace = shot.plate_encoding
    source = shot.read_frames_with_samples(start, last) if colorspace else shot.read_frames(start, last)
    frames = read_ahead(source, 2)  # decoding overlaps the frames' work
    samples: dict[int, np.ndarray] = {}  # the plate's samples of the frames at work, by frame number
    fmt = shot.spec.output.sequence

    def plates() -> Iterator[tuple[int, np.ndarray]]:
        """The wanted frames, numbered; the time spent waiting for them counted as decoding."""
        for number in range(start, last + 1):
            t = time.perf_counter()
            frame = next(frames)
            result.decode_s += time.perf_counter() - t
            if colorspace is not None:
                sample, frame = frame
                if number in wanted:
                    samples[number] = sample
            if number in wanted:
                yield number, frame

    def write(number: int, plate: np.ndarray | None, done: FrameComposite | None) -> tuple[float, float]:
        """One frame's files on one of the chunk's writers, its comp last (a comp on disk means the frame
        is complete); the seconds spent writing and on review tiles."""
        if done is None:
            assert plate is not None
            comp = plate
        else:
            comp = done.comp
        meta = frame_metadata(metadata, done is not None and done.altered)
        meta = {**meta, "framesPerSecond": f"{shot.fps.numerator}/{shot.fps.denominator}"}
        if timecode := shot.frame_timecode(number):  # each frame its own, as a scan's DPX frames have
            meta["timecode"] = timecode
        write_s = review_s = 0.0
        if done is not None and done.element is not None and write_element is not None:
            t = time.perf_counter()
            write_element(number, done.element, meta)
            write_s += time.perf_counter() - t
        if on_frame is not None:
            t = time.perf_counter()
            on_frame(number, plate, comp, done)
            review_s += time.perf_counter() - t
        t = time.perf_counter()
        if colorspace is not None:
            comp = colorspace.in_plate_encoding(samples.pop(number), comp, None if done is None else done.box)
        write_frame(version.frame_path(number), comp, fmt, meta, pixel_aspect=shot.plate.info.pixel_aspect)
        write_s += time.perf_counter() - t
        progress.advance(progress_key, part=(first, last))
        return write_s, review_s

    numbered = plates()
    writers: ThreadPoolExecutor | None = None
    writer_count = 1
    writing: deque[Future[tuple[float, float]]] = deque()  # in frame order

    def written(seconds: tuple[float, float]) -> None:
        write_s, review_s = seconds
        result.write_s += write_s
        result.review_s += review_s
        result.written += 1

    def hand_to_writers(number: int, plate: np.ndarray | None, done: FrameComposite | None) -> None:
        if done is not None and done.identity is not None:
            result.identity.append([number, *done.identity])
        if done is not None and done.blur is not None:
            result.blur.append([number, *done.blur])
        if writers is None:  # one frame at a time, here: a big frame holds nothing more while written
            written(write(number, plate, done))
            return
        writing.append(writers.submit(write, number, plate, done))
        while len(writing) > writer_count:  # at most writer_count frames held for writing
            written(writing.popleft().result())

    composites = None
    # the frames whose composites are still to come, with their plates where on_frame reads them
    queued: deque[tuple[int, np.ndarray | None]] = deque()
    try:
        opening = next(numbered)  # the first wanted frame: its size bounds the frames held at once
        frame_bytes = opening[1].nbytes
        pairs = chain([opening], numbered)
        del opening  # the chain alone holds it, until it is taken
        writer_count = writers_for(frame_bytes)
        if writer_count > 1:
            writers = ThreadPoolExecutor(max_workers=writer_count, thread_name_prefix="frame-write")
        if work is None:
            for number, plate in pairs:
                hand_to_writers(number, plate, None)
        else:
            size = batch_frames(work.batch_size, frame_bytes)

            def handed(pairs: Iterable[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray]]:
                """The frames to the work, which composites into them: a plate on_frame reads is kept,
                and the work gets a copy."""
                for number, plate in pairs:
                    kept = plate if number in plate_frames else None
                    queued.append((number, kept))
                    yield number, plate if kept is None else plate.copy()

            composites = work.stream(handed(pairs), size)
            while True:
                t, made_before, decoded_before = time.perf_counter(), work.new_faces_s, result.decode_s
                done = next(composites, None)
                if done is None:
                    break
                made = work.new_faces_s - made_before
                result.new_faces_s += made
                result.composite_s += time.perf_counter() - t - made - (result.decode_s - decoded_before)
                number, plate = queued.popleft()
                hand_to_writers(number, plate, done)
        while writing:
            written(writing.popleft().result())
    finally:
        if composites is not None:
            composites.close()  # its frames at work finish (or are cancelled) before the plates close
        for future in writing:  # an error: frames not begun are left for a resumed render
            future.cancel()
        if writers is not None:
            writers.shutdown(wait=True)  # frames being written finish (each file is atomic)
        numbered.close()
        frames.close()
        queued.clear()
        writing.clear()
        release_free_memory()  # the chunk's frames are gone: their heap goes back to the kernel
    result.wall_s = time.perf_counter() - t0
    return result
