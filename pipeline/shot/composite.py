"""The composite stage of a shot: a new face into each plate frame, plus the elements for compositors.

For each frame with a face: the aligned crop, the new face from the frame chain (the generator when the
shot's faces were projected, else the swap model, else a test alteration of the crop), colour matched to
the plate's face inside the matte, sharpened, warped back, grained to the plate at the plate's resolution
and blended. The face element (RGBA in plate coordinates) is what an "over" of the alpha-blended face
gives, for compositors finishing elsewhere. Its result is the version's frames, so it always runs and
has no cache of its own.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.composite import (
    FaceElement,
    alter_face,
    blend,
    blend_into,
    blur_sigmas,
    blur_to_match,
    finish_face,
    match_grain,
    motion_streak,
)
from pipeline.faces.align import PlateRegion, align_face, plate_warp, warp_to_plate
from pipeline.faces.draw import grid
from pipeline.faces.track import CropMattes, FaceTrack
from pipeline.files import write_json_atomic
from pipeline.manifest import CompositeSpec, MaskSpec, Shot
from pipeline.media.color import to_float, to_uint8
from pipeline.media.colorspace import WORKING_ENCODED, WORKING_LINEAR
from pipeline.media.decode import read_image
from pipeline.media.sequences import extension, write_frame
from pipeline.shot.frames import (
    FaceLink,
    FrameComposite,
    FrameWork,
    comp_picture,
    face_chain,
    in_batches,
    run_chain,
)
from pipeline.shot.keys import StageKey, code_version, digest, plate_fingerprint
from pipeline.shot.path import GeneratedFrames, path_edits
from pipeline.shot.review import review_tiles, sample_frames
from pipeline.shot.stage import Rendered, Stage
from pipeline.shot.swap import load_identity_references, swap_spec
from pipeline.workspace import RenderVersion

if TYPE_CHECKING:
    from pipeline.swap.convert import IdentityMeter

COMPOSITE_SAMPLES = 4  # frames of the composite contact sheet


def composite_spec(shot: Shot) -> CompositeSpec | None:
    spec = shot.spec.composite
    return spec if spec is not None and spec.enabled else None


def composite_key(shot: Shot, upstream: Mapping[str, StageKey]) -> StageKey:
    """The output frames: everything upstream, plus what the chunks do with it (the path's spline and
    edits, compositing, the output format) and their code."""
    path = shot.spec.path
    return StageKey(
        "composite",
        {
            **{name: key.key for name, key in upstream.items()},
            "plate": digest(plate_fingerprint(shot)),  # also for shots with no face stage
            "plate settings": digest(shot.spec.plate.model_dump(mode="json") if shot.spec.plate else None),
            "path settings": digest(
                path.model_dump(mode="json", exclude={"keyframes", "edits", "steps"}) if path else None
            ),
            "edits": digest(path_edits(shot)),
            "composite settings": digest(
                shot.spec.composite.model_dump(mode="json") if shot.spec.composite else None
            ),
            "output settings": digest(shot.spec.output.model_dump(mode="json")),
            "frames": digest([shot.first, shot.last]),
            "code": code_version(
                "pipeline.composite",
                "pipeline.media",
                *(
                    f"pipeline.shot.{m}"
                    for m in ("composite", "frames", "movies", "report", "review", "stages", "synthetic")
                ),
            ),
        },
    )


class AlteredFaces:
    """The test alteration as a link of the frame chain: it stands in for the face stages while a shot
    has none, so compositing can be seen at work. Each frame is altered on its own (frame_by_frame), so
    Compositor.frames runs it inside each frame's task, a frame a core."""

    draws_own_faces = False
    frame_by_frame = True

    def __init__(self, how: str, track: FaceTrack, crop_landmarks: np.ndarray):
        self.how = how
        self.track = track
        self.crop_landmarks = crop_landmarks  # [frames, 68, 2] in crop pixels (retouch warps by them)

    def __call__(
        self, numbers: list[int], faces: list[np.ndarray], masks: list[np.ndarray | None]
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        return [self.alter(n, face) for n, face in zip(numbers, faces, strict=True)], [None] * len(faces)

    def alter(self, number: int, face: np.ndarray) -> np.ndarray:
        return alter_face(face, self.how, self.crop_landmarks[self.track.index(number)])


class Compositor:
    """A new face into each plate frame: the aligned crop, the frame chain's new face (the stages' links:
    swap model, generator), colour matched to the plate's face inside the matte, sharpened, warped back,
    grained to the plate at its resolution and blended; the face element beside it. With no link in the
    chain the test alteration stands in for the face stages."""

    def __init__(
        self,
        shot: Shot,
        track: FaceTrack,
        chain: list[FaceLink],
        identity_refs: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        spec = composite_spec(shot)
        assert spec is not None and shot.spec.faces is not None
        self.spec = spec
        # a stylised face keeps its domain's colours unless the shot asks for a colour match
        stylized = shot.spec.stylize is not None and shot.spec.stylize.enabled
        self.color = "none" if stylized and "color" not in spec.model_fields_set else spec.color
        self.mask_spec: MaskSpec = spec.mask or shot.spec.faces.mask
        self.size = shot.spec.faces.crop_size
        self.track = track
        self.mattes = CropMattes(track, self.size)
        self.crop_landmarks = self.mattes.landmarks
        self.chain = face_chain(chain) or [AlteredFaces(spec.alteration, track, self.crop_landmarks)]
        swap = swap_spec(shot)
        self.batch_size = swap.batch if swap else 8
        self.new_faces_s = 0.0  # spent making faces, for the run record
        self.identity: tuple[IdentityMeter, np.ndarray, np.ndarray] | None = None
        if identity_refs is not None:
            from pipeline.swap.convert import IdentityMeter

            self.identity = (IdentityMeter(), identity_refs[0], identity_refs[1])

    def matte(self, index: int) -> np.ndarray:
        m = self.mask_spec
        return self.mattes.matte(index, m.kind, m.erode, m.erode_sides, m.feather)

    def frame(self, number: int, plate: np.ndarray) -> FrameComposite:
        return self.frames([number], [plate])[0]

    @property
    def frame_by_frame(self) -> bool:
        """Whether each frame's whole composite can be a task of its own: every link of the chain makes a
        frame's face alone, and no identity measure runs over a batch's faces."""
        return self.identity is None and all(link.frame_by_frame for link in self.chain)

    def stream(self, plates: Iterable[tuple[int, np.ndarray]], batch_size: int) -> Iterator[FrameComposite]:
        """The composites of numbered plate frames, in their order, with at most `batch_size` frames at work.

        A frame-by-frame chain (frame_by_frame) composites each frame as one task on a pool of a thread a
        core, a new frame handed in as each finished one is handed out: no core waits at a batch's end for
        its slowest frame, nor for the next batch's plates to be decoded and converted (1080p Laplacian,
        crop 256, decoding in the loop, best of 7 alternating runs: batches 54.5 fps at CPU/wall 1.78, the
        stream 59-60 fps at 1.90). Other chains run on batches (frames): their models run over one.

        The plates are the stream's: each frame's face is blended into its plate's own array, which becomes
        the comp (see blend_into); a caller that needs a plate afterwards hands in a copy.
        """
        if not self.frame_by_frame:
            yield from in_batches(partial(self.frames, in_place=True), plates, batch_size)
            return
        threads = composite_threads(batch_size)
        pending: deque[Future[tuple[FrameComposite, float]]] = deque()
        with opencv_serial(threads > 1), ThreadPoolExecutor(max_workers=threads) as pool:
            try:
                for number, plate in plates:
                    pending.append(pool.submit(self._frame_alone, number, plate))
                    if len(pending) >= batch_size:
                        yield self._handed_out(pending.popleft(), threads)
                while pending:
                    yield self._handed_out(pending.popleft(), threads)
            finally:  # closed early (an error downstream): frames not begun are dropped
                for future in pending:
                    future.cancel()

    def _handed_out(self, future: Future[tuple[FrameComposite, float]], threads: int) -> FrameComposite:
        composite, seconds = future.result()
        self.new_faces_s += seconds / threads  # the chain's time shared out over the threads
        return composite

    def frames(
        self, numbers: list[int], plates: list[np.ndarray], in_place: bool = False
    ) -> list[FrameComposite]:
        """Composite several frames; their new faces are made in one batch. The per-frame steps (the
        aligned crops, then everything after the new faces) run side by side in threads: OpenCV and NumPy
        let go of the GIL, and one frame's steps alone keep about one core busy. `in_place`: each face is
        blended into its plate's own array (the caller is done with the plates), not into a copy."""
        todo = [k for k, n in enumerate(numbers) if self._has_face(n)]
        out = [self._plate_alone(p) for p in plates]
        threads = composite_threads(len(todo))
        with opencv_serial(threads > 1), ThreadPoolExecutor(max_workers=threads) as pool:
            params = [self.track.params[self.track.index(numbers[k])] for k in todo]
            crops = list(
                pool.map(
                    lambda k, p: align_face(plates[k], p, self.size, self.track.x_scale)[0], todo, params
                )
            )
            t = time.perf_counter()
            faces, masks = run_chain(self.chain, [numbers[k] for k in todo], crops)
            self.new_faces_s += time.perf_counter() - t
            done = list(
                pool.map(
                    lambda k, *parts: self._composite(numbers[k], plates[k], *parts, in_place=in_place),
                    todo,
                    crops,
                    faces,
                    masks,
                )
            )
            for k, composite in zip(todo, done, strict=True):
                out[k] = composite
        if self.identity is not None:
            meter, ref_a, ref_b = self.identity
            described = meter.embed_many(
                faces, self.crop_landmarks[[self.track.index(numbers[k]) for k in todo]]
            )
            for k, face, e in zip(todo, faces, described, strict=True):
                found = float(meter.finds_face(face))
                out[k].identity = (float(np.linalg.norm(e - ref_a)), float(np.linalg.norm(e - ref_b)), found)
        return out

    def _has_face(self, number: int) -> bool:
        i = self.track.index(number)
        return bool(self.track.has_face[i]) and not np.isnan(self.crop_landmarks[i, 0, 0])

    def _plate_alone(self, plate: np.ndarray) -> FrameComposite:
        """A frame without a face: the plate, and an empty element."""
        return FrameComposite(plate, self._element(plate), None, None, altered=False)

    def _frame_alone(self, number: int, plate: np.ndarray) -> tuple[FrameComposite, float]:
        """One frame's crop, new face (the chain run on it alone) and composite, blended into the plate's own
        array (the stream's), and the seconds the chain took; a frame without a face is its plate."""
        if not self._has_face(number):
            return self._plate_alone(plate), 0.0
        params = self.track.params[self.track.index(number)]
        crop = align_face(plate, params, self.size, self.track.x_scale)[0]
        t = time.perf_counter()
        faces, masks = run_chain(self.chain, [number], [crop])
        seconds = time.perf_counter() - t
        return self._composite(number, plate, crop, faces[0], masks[0], in_place=True), seconds

    def _composite(
        self,
        number: int,
        plate: np.ndarray,
        crop: np.ndarray,
        face: np.ndarray,
        model_mask: np.ndarray | None,
        in_place: bool = False,
    ) -> FrameComposite:
        i = self.track.index(number)
        matrix = self.track.matrix(number, self.size)
        assert matrix is not None
        matte = self.matte(i)
        if model_mask is not None:
            matte = matte * model_mask
        warp = plate_warp(matte, matrix, plate.shape)
        region = blur = None
        if warp is not None:
            blur = self.blur(number, face, crop, matte, warp.part)
            face = finish_face(face, crop, matte, self.color, self.spec.sharpen, warp.part, blur)
            region = warp_to_plate(face, matte, matrix, plate.shape, warp)
        if self.spec.grain and region is not None:
            region = match_grain(region, plate, seed=number, size=self.spec.grain_size)
        if in_place:
            blend_into(plate, region, self.spec.blend)
            comp = plate
        else:
            comp = blend(plate, region, self.spec.blend)
        element = self._element(plate, region)
        # a matte eroded to nothing, or a face warped wholly off the plate, puts nothing in: the frame is
        # the plate's, bit for bit, and its metadata must not call it altered
        return FrameComposite(
            comp,
            element,
            face,
            matte,
            altered=region is not None,
            box=None if region is None else region.box,
            blur=None if blur is None or region is None else blur_sigmas(blur),
        )

    def blur(
        self, number: int, face: np.ndarray, crop: np.ndarray, matte: np.ndarray, part: tuple[slice, slice]
    ) -> np.ndarray | None:
        """The blur the new face needs (blur_to_match), from its edges and the plate's where the shot asks
        (composite.blur) and at least the shutter's streak of the face's tracked motion (composite.shutter),
        read over the part of the crop the warp back reads."""
        spec = self.spec
        streak = None
        if spec.shutter is not None and (velocity := self.track.crop_velocity(number, self.size)) is not None:
            streak = motion_streak(velocity, spec.shutter)
        if not spec.blur and streak is None:
            return None
        return blur_to_match(face[part], crop[part], matte[part], edges=spec.blur, streak=streak)

    def _element(self, plate: np.ndarray, region: PlateRegion | None = None) -> FaceElement | None:
        fmt = self.spec.element.format
        if fmt == "none":
            return None
        return FaceElement.of(plate.shape[:2], region, np.uint16 if fmt == "png16" else np.float16)


def composite_threads(frames: int) -> int:
    """Threads compositing the frames of a batch: one per core, at most one per frame."""
    return max(1, min(frames, os.cpu_count() or 1))


_opencv_lock = threading.Lock()
_opencv_users = 0  # the opencv_serial blocks running now
_opencv_threads = 1  # OpenCV's own thread count before the first of them


@contextmanager
def opencv_serial(serial: bool = True) -> Iterator[None]:
    """OpenCV's calls run in their caller's thread while this block runs (when `serial`).

    Frames composited side by side already keep every core busy; OpenCV splitting each call again over
    its own pool only adds hand-offs and its workers' spinning (a 1080p composite: 10% less CPU a
    frame). The setting is the process's, so blocks in several threads (a render's chunks) share a
    count, and the last one out gives OpenCV its threads back.
    """
    global _opencv_users, _opencv_threads
    if not serial:
        yield
        return
    with _opencv_lock:
        if _opencv_users == 0:
            _opencv_threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _opencv_users += 1
    try:
        yield
    finally:
        with _opencv_lock:
            _opencv_users -= 1
            if _opencv_users == 0:
                cv2.setNumThreads(_opencv_threads)


def element_path(version: RenderVersion, shot: Shot, frame: int) -> Path:
    spec = composite_spec(shot)
    assert spec is not None
    ext = extension(spec.element.format)
    return version.path / "element" / f"{version.shot}_faceElement_{version.label}.{frame:04d}.{ext}"


def write_element(version: RenderVersion, shot: Shot, frame: int, element: FaceElement, meta: dict) -> None:
    spec = composite_spec(shot)
    assert spec is not None
    path = element_path(version, shot, frame)
    path.parent.mkdir(exist_ok=True)
    if "colorspace" in meta:  # the element stays in the working space whatever the comp's encoding
        meta = {**meta, "colorspace": WORKING_LINEAR if spec.element.format == "exr" else WORKING_ENCODED}
    samples, origin = element.window()  # an EXR keeps only the face's box, as its data window
    write_frame(path, samples, spec.element.format, meta, origin, element.shape, shot.plate.info.pixel_aspect)


def write_transforms(version: RenderVersion, shot: Shot, track: FaceTrack) -> Path:
    """Per-frame plate->crop matrices, so a compositor can redo the paste-back in their own tool."""
    size = shot.spec.faces.crop_size if shot.spec.faces else 256
    frames = []
    for n in range(shot.first, shot.last + 1):
        i = track.index(n)
        m = track.matrix(n, size)
        frames.append(
            {"frame": n, "state": track.state(i), "plate_to_crop": None if m is None else m.round(6).tolist()}
        )
    path = version.path / "transforms.json"
    write_json_atomic(
        path,
        {
            "shot": shot.name,
            "version": version.label,
            "crop_size": size,
            "convention": "x_crop = M @ [x_plate, y_plate, 1], the plate's stored pixels, pixel centres",
            "frames": frames,
        },
    )
    return path


def composite_row(frame: int, plate: np.ndarray, done: FrameComposite, comp: np.ndarray) -> np.ndarray:
    """plate | new face | matte | comp of one frame, 256 px each, for the composite contact sheet."""
    tile = 256
    blank = np.zeros((tile, tile, 3), np.float32)
    row = [
        _fit(plate, tile),
        # the face where it goes in: finish_face leaves the crop outside the warp's reach at zero
        _fit(done.new_face * (done.matte[..., None] > 0), tile) if done.new_face is not None else blank,
        _fit(np.repeat(done.matte[..., None], 3, -1), tile) if done.matte is not None else blank,
        _fit(comp, tile),
    ]
    tiles = []
    for img, label in zip(row, (f"{frame} plate", "new face", "matte", "comp"), strict=True):
        img = to_uint8(img).copy()
        cv2.putText(img, label, (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(img)
    return np.concatenate(tiles, axis=1)


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    img = to_float(image)
    h, w = img.shape[:2]
    k = size / max(h, w)
    small = cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size, 3), np.float32)
    y, x = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def composite_contact_sheet(
    shot: Shot,
    version: RenderVersion,
    track: FaceTrack,
    metadata: dict[str, str],
    chain: Callable[[], list[FaceLink]] = list,
) -> Path:
    """Rows of plate | new face | matte | comp for a few frames across the shot (`chain` makes the frame
    chain, for a frame no chunk saved a tile of)."""
    compositor: Compositor | None = None

    def make(n: int) -> np.ndarray:
        nonlocal compositor
        compositor = compositor or Compositor(shot, track, chain())
        plate = next(shot.read_frames(n, n))
        comp = comp_picture(shot, read_image(version.frame_path(n)))
        return composite_row(n, plate, compositor.frame(n, plate), comp)

    rows = review_tiles(version, "composite", sample_frames(shot.first, shot.last, COMPOSITE_SAMPLES), make)
    path = version.path / "composite_contact_sheet.png"
    write_frame(path, grid(rows, 1), "png8", metadata)
    return path


class CompositeStage(Stage):
    """The output frames: the new faces composited into the plate (or, without a plate, the path's faces
    full frame)."""

    name = "composite"
    label = "composite"
    report_at = ("faces",)
    has_shot_work = False  # its work is the frame chunks
    review_sheet = "composite"

    def section(self, shot: Shot) -> CompositeSpec | None:
        return composite_spec(shot)

    def on(self, shot: Shot) -> bool:
        return True  # every render writes frames; its key covers the output settings

    def key(self, shot: Shot, upstream: Mapping[str, StageKey]) -> StageKey:
        return composite_key(shot, upstream)

    def frame_work(
        self, shot: Shot, track: FaceTrack | None, links: list[FaceLink], files: Mapping[str, str]
    ) -> FrameWork | None:
        """What the frame loop runs on each batch of frames: the chain's new faces composited into the
        plate, or, for a shot without a plate, the path's faces full frame."""
        if composite_spec(shot) is not None:
            assert track is not None
            return Compositor(shot, track, links, load_identity_references(files.get("identity")))
        if "path" in files:
            return GeneratedFrames(shot, files["path"])
        return None

    def tile_frames(self, shot: Shot) -> list[int]:
        return sample_frames(shot.first, shot.last, COMPOSITE_SAMPLES) if composite_spec(shot) else []

    def tile(
        self, shot: Shot, track: FaceTrack, frame: int, plate: np.ndarray, comp, done
    ) -> np.ndarray | None:
        return composite_row(frame, plate, done, comp) if done is not None else None

    def report(self, r: Rendered) -> dict | None:
        spec = composite_spec(r.shot)
        if spec is None or r.track is None:
            return None
        section = {
            "transforms": str(write_transforms(r.version, r.shot, r.track)),
            "composite_contact_sheet": str(
                composite_contact_sheet(r.shot, r.version, r.track, r.metadata, r.chain)
            ),
        }
        if spec.blur or spec.shutter is not None:
            rows = sorted(row for c in r.chunks for row in c.blur)
            along = np.array([row[1] for row in rows])
            section["blur"] = {
                "frames": len(rows),
                "median_sigma_px": float(np.median(along)) if rows else 0.0,
                "max_sigma_px": float(along.max()) if rows else 0.0,
            }
            section["blur_per_frame"] = rows
        return section

    def markdown(self, report: dict) -> list[str]:
        blur = (report.get("faces") or {}).get("blur")
        if blur is None:
            return []
        return [
            "",
            f"- New face blurred to the plate (composite.blur, composite.shutter) on {blur['frames']} of "
            f"{report['frames']['count']} frames: sigma along the blur {blur['median_sigma_px']:.2f} px "
            f"median, {blur['max_sigma_px']:.2f} max (crop pixels; per frame in report.json)",
        ]

    def altered(self, shot: Shot, earlier: list[str]) -> str | None:
        spec = composite_spec(shot)
        if earlier or spec is None or spec.alteration == "none":
            return None
        return f"composite (test alteration: {spec.alteration})"


COMPOSITE = CompositeStage()
