"""The track stage of a shot: detection chunk by chunk, the actor's face on every frame (cached per shot),
the faces report and contact sheet, and the overlay of `vfx track`.

Detection runs one task per chunk of frames (anywhere: it opens the plate itself); choosing the actor,
filling gaps and smoothing need the whole shot and run once, then the track is kept in the shot's cache
until the plate, the frame range or the faces settings change.
"""

from __future__ import annotations

import contextlib
import os
import platform
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline import progress
from pipeline.errors import PipelineError
from pipeline.faces.align import (
    align_face,
    crop_matrix,
    plate_coverage,
    to_stored,
    transform_points,
    unsqueeze,
)
from pipeline.faces.detect import FaceAnalyzer, default_detector
from pipeline.faces.draw import draw_crop_tile, draw_overlay, grid, quad_in_plate
from pipeline.faces.quality import alignment_jitter, landmark_error
from pipeline.faces.track import (
    CropMattes,
    FaceTrack,
    FrameFaces,
    TrackSettings,
    build_track,
    detect_frames,
)
from pipeline.manifest import FacesSpec, Shot
from pipeline.media.decode import load_still
from pipeline.media.probe import square_scale
from pipeline.media.sequences import write_frame
from pipeline.shot.frames import ChunkResult, render_progress_key
from pipeline.shot.keys import StageKey, code_version, digest, plate_fingerprint
from pipeline.shot.review import review_tiles, sample_frames
from pipeline.shot.stage import Rendered, Stage, StageJob, StageOutput
from pipeline.shot.synthetic import unaltered
from pipeline.workspace import RenderVersion

_analyzers_lock = threading.Lock()
_idle_analyzers: dict[tuple, list[FaceAnalyzer]] = {}


def faces_spec(shot: Shot) -> FacesSpec:
    """The shot's faces section; an error naming the manifest when the shot has none."""
    spec = TRACK.section(shot)
    if spec is None:
        raise PipelineError(f"{shot.manifest_path}: faces: the shot has no enabled faces section")
    return spec


def track_settings(spec: FacesSpec) -> TrackSettings:
    return TrackSettings(
        detector=spec.detector or default_detector(spec.landmarks),
        detect_size=spec.detect_size,
        upsample=spec.upsample,
        identity_threshold=spec.identity_threshold,
        identity_every=spec.identity_every,
        cut_threshold=spec.cut_threshold,
        min_scene=spec.min_scene,
        smooth_center=spec.smooth.center,
        smooth_size=spec.smooth.size,
        smooth_rotation=spec.smooth.rotation,
        smooth_landmarks=spec.smooth.landmarks,
        max_gap=spec.max_gap,
        profile_yaw=spec.profile_yaw,
    )


@contextlib.contextmanager
def analyzer(shot: Shot) -> Iterator[FaceAnalyzer]:
    """An analyzer for the shot's settings, lent to one thread at a time (dlib's detectors keep scratch
    state) and kept for the next chunk: loading one costs about a second of CPU, and the chunks of every
    shot of a batch run on new threads."""
    spec = faces_spec(shot)
    models = {k: (shot.resolve(v) if v else None) for k, v in spec.models.model_dump().items()}
    key = (spec.detector, spec.landmarks, spec.detect_size, spec.upsample, tuple(sorted(models.items())))
    with _analyzers_lock:
        idle = _idle_analyzers.setdefault(key, [])
        lent = idle.pop() if idle else None
    if lent is None:
        lent = FaceAnalyzer(
            spec.detector,
            spec.detect_size,
            spec.upsample,
            landmarks=spec.landmarks,
            landmarks_model=models["landmarks"],
            detector_model=models["detector"],
            recognition_model=models["recognition"],
        )
    try:
        yield lent
    finally:
        with _analyzers_lock:
            _idle_analyzers[key].append(lent)


def track_key(shot: Shot) -> StageKey:
    """Changes when the plate, the shot's frame range, the faces settings or the face code change."""
    spec = faces_spec(shot)
    return StageKey(
        "track",
        {
            "plate": digest(plate_fingerprint(shot)),
            "plate settings": digest(shot.spec.plate.model_dump(mode="json") if shot.spec.plate else None),
            "frames": digest([shot.range_first, shot.range_last]),
            "faces settings": digest(
                {k: v for k, v in spec.model_dump(mode="json").items() if k not in ("crop_size", "mask")}
            ),
            "reference": digest(_file_stamp(shot.resolve(spec.reference)) if spec.reference else None),
            "code": code_version("pipeline.faces", "pipeline.shot.track"),
        },
    )


def _file_stamp(path: str) -> dict:
    st = Path(path).stat()
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def track_path(root: Path, shot: Shot) -> Path:
    return root / shot.name / "cache" / f"track-{track_key(shot).key}.npz"


@dataclass
class DetectChunk:
    """The faces found on frames first..last, and where the chunk's time went (for the run record)."""

    first: int
    last: int
    faces: list[FrameFaces]
    decode_s: float = 0.0
    detect_s: float = 0.0
    wall_s: float = 0.0
    worker: str = field(default_factory=lambda: f"{platform.node()}:{os.getpid()}")

    def timing(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "faces"}


def plate_x_scale(shot: Shot) -> float:
    """The plate's x scale to square pixels (1 unless it is anamorphic): its faces are worked in them."""
    info = shot.plate.info
    return square_scale(info.width, info.pixel_aspect)


def detect_range(shot: Shot, first: int, last: int) -> DetectChunk:
    """Faces on frames first..last, with the change score of each frame from the one before: the chunk
    reads the frame before its first (when there is one in the shot), so that chunks find the same cuts
    and pick the same frames for descriptors as one run over the whole shot would."""
    t0 = time.perf_counter()
    settings = track_settings(faces_spec(shot))
    chunk = DetectChunk(first, last, [])
    progress_key = render_progress_key(shot, "track")
    has_previous = first > shot.range_first
    x_scale = plate_x_scale(shot)
    plate_frames = shot.read_frames(first - 1 if has_previous else first, last)
    frames = (unsqueeze(f, x_scale) for f in plate_frames)  # the detectors know square-pixel faces only

    def timed_frames() -> Iterator[tuple[int, np.ndarray]]:
        for n in range(first, last + 1):
            t = time.perf_counter()
            frame = next(frames, None)
            chunk.decode_s += time.perf_counter() - t
            if frame is None:
                return
            yield n, frame
            progress.advance(progress_key, part=(first, last))  # its faces are found

    try:
        previous = next(frames, None) if has_previous else None
        chunk.decode_s = time.perf_counter() - t0
        with analyzer(shot) as face_analyzer:
            chunk.faces = detect_frames(
                face_analyzer, timed_frames(), settings, previous, origin=shot.range_first
            )
    finally:
        frames.close()
        plate_frames.close()
    chunk.wall_s = time.perf_counter() - t0
    chunk.detect_s = chunk.wall_s - chunk.decode_s
    return chunk


def reference_face_count(shot: Shot) -> int:
    """How many faces the shot's reference picture shows (0 without one): the largest is taken as the
    actor, so a picture of several people may name the wrong one."""
    spec = faces_spec(shot)
    if not spec.reference:
        return 0
    with analyzer(shot) as face_analyzer:
        return len(face_analyzer.detect(load_still(shot.resolve(spec.reference))))


def reference_embedding(shot: Shot) -> np.ndarray | None:
    spec = faces_spec(shot)
    if not spec.reference:
        return None
    path = shot.resolve(spec.reference)
    with analyzer(shot) as face_analyzer:
        return face_analyzer.reference_embedding(load_still(path), path)


def finish_track(shot: Shot, found: list[FrameFaces], path: Path) -> FaceTrack:
    track = build_track(
        found, track_settings(faces_spec(shot)), reference_embedding(shot), plate_x_scale(shot)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    track.save(path)
    return track


def track_quality(track: FaceTrack) -> dict:
    return {
        "alignment_jitter_raw": alignment_jitter(track.raw_params),
        "alignment_jitter_smoothed": alignment_jitter(track.params),
        "landmark_error_smoothed": landmark_error(track.params, track.raw_params, track.landmarks),
        "units": "fractions of the crop size",
    }


def track_report(track: FaceTrack, cached: bool, path: Path, chunks: Sequence[DetectChunk] = ()) -> dict:
    return {
        "cached": cached,
        "path": str(path),
        "chunks": [c.timing() for c in sorted(chunks, key=lambda c: c.first)],
        **track.summary(),
        "quality": track_quality(track),
        "per_frame": track.per_frame(),
    }


def face_tile(
    shot: Shot, track: FaceTrack, frame: int, plate: np.ndarray, mattes: CropMattes | None = None
) -> np.ndarray:
    """The aligned crop of one frame with its matte outline and landmarks, 256 px, for the contact sheet
    (`mattes`: the track's, at the crop size, when the caller draws several tiles)."""
    spec = faces_spec(shot)
    size = spec.crop_size
    i = track.index(frame)
    if not track.has_face[i]:
        tile = draw_crop_tile(np.zeros((size, size, 3), np.uint8), None, None, f"{frame} {track.state(i)}")
    else:
        crop, _ = align_face(plate, track.params[i], size, track.x_scale)
        lm = (
            transform_points(crop_matrix(track.params[i], size), track.landmarks[i])
            if track.detected[i]
            else None
        )
        mask = (
            (mattes or CropMattes(track, size)).matte(
                i, spec.mask.kind, spec.mask.erode, spec.mask.erode_sides, spec.mask.feather
            )
            if lm is not None
            else None
        )
        label = f"{frame} {'filled' if track.filled[i] else ''}".strip()
        coverage = plate_coverage(plate.shape, track.params[i], size, track.x_scale)
        tile = draw_crop_tile(crop, lm, mask, label, coverage)
    return cv2.resize(tile, (256, 256), interpolation=cv2.INTER_AREA) if tile.shape[0] != 256 else tile


def overlay_dir(version: RenderVersion) -> Path:
    return version.path / "overlay"


def overlay_path(version: RenderVersion, frame: int) -> Path:
    return overlay_dir(version) / f"{version.shot}_overlay_{version.label}.{frame:04d}.png"


def render_overlay(
    shot: Shot, version: RenderVersion, track: FaceTrack, first: int, last: int, metadata: dict[str, str]
) -> ChunkResult:
    """Plate frames with the track drawn on them, for `vfx track`'s overlay movie (no face altered, so
    their metadata says no synthetic imagery)."""
    metadata = unaltered(metadata)
    t0 = time.perf_counter()
    result = ChunkResult(first, last)
    size = faces_spec(shot).crop_size
    progress_key = render_progress_key(shot, "overlay")
    frames = shot.read_frames(first, last)
    try:
        for n in range(first, last + 1):
            frame = next(frames)
            out = overlay_path(version, n)
            if out.is_file():
                result.skipped += 1
                progress.advance(progress_key, part=(first, last))
                continue
            i = track.index(n)
            m = track.matrix(n, size)
            quad = quad_in_plate(cv2.invertAffineTransform(m), size) if m is not None else None
            img = draw_overlay(
                frame,
                n,
                track.state(i),
                to_stored(track.landmarks[i], track.x_scale)
                if np.isfinite(track.landmarks[i, 0, 0])
                else None,
                quad,
                int(track.faces_found[i]),
            )
            write_frame(out, img, "png8", metadata)
            result.written += 1
            progress.advance(progress_key, part=(first, last))
    finally:
        frames.close()
    result.wall_s = time.perf_counter() - t0
    return result


def faces_contact_sheet(
    shot: Shot, version: RenderVersion, track: FaceTrack, metadata: dict[str, str], first: int, last: int
) -> Path:
    """Aligned crops across the rendered frames, with their matte outlines and landmarks."""
    mattes = CropMattes(track, faces_spec(shot).crop_size)  # once for every tile

    def make(n: int) -> np.ndarray:
        return face_tile(shot, track, n, next(shot.read_frames(n, n)), mattes)

    tiles = review_tiles(version, "faces", sample_frames(first, last), make)
    path = version.path / "faces_contact_sheet.png"
    write_frame(path, grid(tiles), "png8", metadata)
    return path


def faces_markdown(faces: dict) -> list[str]:
    q = faces["quality"]
    gaps = ", ".join(f"{a}-{b}" for a, b in faces["no_face_ranges"]) or "none"
    how = "reused from the cache" if faces["cached"] else f"computed in {faces['seconds']:.1f} s"
    return [
        "",
        "## Faces",
        "",
        f"- Detected on {faces['detected']} of {faces['frames']} frames "
        f"({100 * faces['detected_ratio']:.1f}%), "
        f"{faces['filled']} more filled by interpolation; no face: {gaps}",
        f"- Frames with several faces: {faces['several_faces_frames']}; the track was {how}",
        f"- Alignment jitter {q['alignment_jitter_raw']:.5f} raw, "
        f"{q['alignment_jitter_smoothed']:.5f} smoothed; "
        f"landmark error from smoothing {q['landmark_error_smoothed']:.5f} (fractions of the crop size)",
        *cuts_markdown(faces),
        *identity_markdown(faces),
        *profile_markdown(faces),
    ]


def profile_markdown(faces: dict) -> list[str]:
    """The frames where the head is turned too far for the face models: left as they are, for an artist."""
    largest = faces["largest_yaw"]
    turned = f"largest head turn {largest:.0f} degrees of yaw" if largest is not None else "no head pose"
    if not faces["profile_frames"]:
        return [f"- Landmarks: {faces['landmarks']}; {turned}; no frame turned past {faces['profile_yaw']:g}"]
    ranges = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in faces["profile_ranges"])
    return [
        f"- Landmarks: {faces['landmarks']}; {turned}",
        f"- **Frames for an artist:** {ranges} ({faces['profile_frames']} frames): the head is turned past "
        f"{faces['profile_yaw']:g} degrees, further than the face models redraw; face stages leave them as "
        "they are",
    ]


def cuts_markdown(faces: dict) -> list[str]:
    if not faces["cuts"] and not faces["jumps"]:
        return ["- Camera cuts: none found"]
    lines = []
    if faces["cuts"]:
        lines.append(
            f"- Camera cuts at frames {', '.join(map(str, faces['cuts']))}: the track restarts there "
            "(no gap filled, no smoothing across)"
        )
    if faces["jumps"]:
        lines.append(
            "- The face jumped (no overlap with its last box) at frames "
            f"{', '.join(map(str, faces['jumps']))}: treated like cuts"
        )
    return lines


def identity_markdown(faces: dict) -> list[str]:
    threshold, margin = faces["identity_threshold"], faces["identity_margin"]
    others = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in faces["other_person_ranges"])
    near = faces["near_threshold_frames"]
    distances = (
        f"the actor's distance {faces['mean_identity_distance']:.3f} on average, "
        f"{faces['max_identity_distance']:.3f} at most"
        if faces["mean_identity_distance"] is not None
        else "the actor never checked"
    )
    return [
        f"- Identity checked on {faces['identity_checked_frames']} frames: {distances} "
        f"(threshold {threshold}); another person, not the actor, on {faces['other_person_frames']} frames"
        + (f" ({others})" if others else ""),
        f"- Identity near the threshold (within {margin}) on {len(near)} frames"
        + (
            f": {', '.join(map(str, near[:20]))}{' ...' if len(near) > 20 else ''} (check them)"
            if near
            else ""
        ),
    ]


class TrackStage(Stage):
    """The actor's face on every frame: landmarks, alignment, per-frame state."""

    name = "track"
    label = "track faces"
    report_at = ("faces",)
    review_sheet = "faces"

    def section(self, shot: Shot) -> FacesSpec | None:
        spec = shot.spec.faces
        return spec if spec is not None and spec.enabled else None

    def key(self, shot: Shot, upstream: Mapping[str, StageKey]) -> StageKey:
        return track_key(shot)

    def cache_path(self, shot: Shot, root: Path, key: StageKey) -> Path:
        return track_path(root, shot)

    def chunk_range(self, shot: Shot, root: Path, key: StageKey) -> tuple[int, int] | None:
        return None if track_path(root, shot).is_file() else (shot.range_first, shot.range_last)

    def work_chunk(self, shot: Shot, first: int, last: int) -> DetectChunk:
        return detect_range(shot, first, last)

    def run(self, shot: Shot, job: StageJob) -> StageOutput:
        path = track_path(job.root, shot)
        if job.parts:
            found = [f for chunk in sorted(job.parts, key=lambda c: c.first) for f in chunk.faces]
            track, cached = finish_track(shot, found, path), False
        else:
            track, cached = FaceTrack.load(path), True
        report = track_report(track, cached, path, job.parts)
        job.log(
            f"{shot.name}: faces on {report['with_face']} of {report['frames']} frames "
            f"({report['detected']} detected, {report['filled']} filled)"
            + (" (cached track)" if cached else "")
        )
        return StageOutput({"track": str(path)}, report)

    def report(self, r: Rendered) -> dict | None:
        assert r.track is not None
        # the plate's own faces, aligned: no synthetic imagery in it
        meta = unaltered(r.metadata)
        sheet = faces_contact_sheet(r.shot, r.version, r.track, meta, r.shot.first, r.shot.last)
        return {**(r.outputs["track"].report or {}), "contact_sheet": str(sheet)}

    def markdown(self, report: dict) -> list[str]:
        return faces_markdown(report["faces"]) if report.get("faces") else []

    def models(self, shot: Shot) -> list[str]:
        """The detector and landmark model place every new face; dlib's recognition model keeps the track
        on the actor (with or without a reference)."""
        spec = self.section(shot)
        if spec is None:
            return []
        detector = {
            "hog": "dlib:hog_frontal_face",
            "cnn": "dlib:mmod_human_face_detector",
            "mediapipe": "mediapipe:face_detection_full_range_sparse",
        }[spec.detector or default_detector(spec.landmarks)]
        landmarks = {
            "dlib68": ["dlib:shape_predictor_68_face_landmarks"],
            "mesh": ["mediapipe:face_landmark", "mediapipe:iris_landmark"],
        }[spec.landmarks]
        return [detector, *landmarks, "dlib:face_recognition_resnet_model_v1"]

    def tile_frames(self, shot: Shot) -> list[int]:
        return sample_frames(shot.first, shot.last)

    def tile(self, shot: Shot, track: FaceTrack, frame: int, plate: np.ndarray, comp, done) -> np.ndarray:
        return face_tile(shot, track, frame, plate)


TRACK = TrackStage()
