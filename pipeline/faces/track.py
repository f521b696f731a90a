"""The face track of a shot: the actor's face on every frame, its alignment smoothed over time.

Detection is per frame and can run chunk by chunk anywhere (`detect_frames`); choosing the actor,
filling short gaps and smoothing need the whole shot and are cheap (`build_track`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from pipeline.faces.align import crop_matrix, ffhq_params, transform_points
from pipeline.faces.detect import Face, FaceAnalyzer, box_iou, identity_distance
from pipeline.files import write_atomic

TRACK_FORMAT = 1
# A second detection counts as a face when it scores at least this share of the frame's best: dlib's HOG
# finds faint "faces" in badges and folds of clothing (scores 0-0.2 beside 1.2-1.6 for the real face on the
# astronaut plate), and a report that counts them says a portrait of one person has several.
CONFIDENT_SHARE = 0.4


def confident_faces(faces: Sequence[Face]) -> int:
    """How many of a frame's detections are faces with some confidence (see CONFIDENT_SHARE)."""
    if not faces:
        return 0
    best = max(f.score for f in faces)
    return sum(1 for f in faces if f.score >= CONFIDENT_SHARE * best)


@dataclass(frozen=True)
class TrackSettings:
    """How a shot is tracked; part of the track's cache key."""

    detector: str = "hog"
    detect_size: int = 640
    upsample: int = 0
    identity_threshold: float = 0.6  # with a reference: faces farther than this are not the actor
    smooth_center: float = 1.0  # Gaussian sigma in frames
    smooth_size: float = 3.0
    smooth_rotation: float = 3.0
    max_gap: int = 5  # gaps up to this many frames are filled by interpolation


@dataclass
class FrameFaces:
    """What detection found on one frame: every face, with embeddings when a reference is in use."""

    frame: int
    faces: list[Face] = field(default_factory=list)


def detect_frames(
    analyzer: FaceAnalyzer, numbered_frames: Iterable[tuple[int, np.ndarray]], embed: bool = False
) -> list[FrameFaces]:
    return [FrameFaces(n, analyzer.detect(frame, embed=embed)) for n, frame in numbered_frames]


@dataclass
class FaceTrack:
    """Per-frame arrays over the frames of a shot; NaN where there is no face."""

    frames: np.ndarray  # (N,) frame numbers
    faces_found: np.ndarray  # (N,) how many faces the detector found with confidence (confident_faces)
    detected: np.ndarray  # (N,) bool: the actor's face was detected on this frame
    filled: np.ndarray  # (N,) bool: no detection, but inside a short gap that was interpolated
    landmarks: np.ndarray  # (N, 68, 2) the actor's detected landmarks (plate pixels)
    scores: np.ndarray  # (N,) detector confidence
    identity: np.ndarray  # (N,) distance to the reference face (NaN without a reference)
    raw_params: np.ndarray  # (N, 4) alignment from this frame's landmarks alone
    params: np.ndarray  # (N, 4) alignment after gap filling and smoothing: what stages use

    @property
    def has_face(self) -> np.ndarray:
        return ~np.isnan(self.params[:, 0])

    def index(self, frame: int) -> int:
        return int(frame - self.frames[0])

    def matrix(self, frame: int, crop_size: int) -> np.ndarray | None:
        p = self.params[self.index(frame)]
        return None if np.isnan(p[0]) else crop_matrix(p, crop_size)

    def crop_landmarks(self, size: int) -> np.ndarray:
        """Landmarks in the coordinates of `size` px aligned crops, for every frame with a face (NaN
        elsewhere); frames filled by interpolation borrow the nearest detected frame's (in the aligned
        crop the face barely moves)."""
        out = np.full(self.landmarks.shape, np.nan)
        detected = np.flatnonzero(self.detected)
        for i in detected:
            matrix = crop_matrix(self.params[i], 1)
            out[i] = transform_points(matrix, self.landmarks[i]) * size
        for i in np.flatnonzero(self.has_face & ~self.detected):
            if len(detected):
                out[i] = out[detected[np.argmin(np.abs(detected - i))]]
        return out

    def missing_ranges(self) -> list[tuple[int, int]]:
        """Inclusive frame ranges with no face (after gap filling)."""
        out, start = [], None
        for n, ok in zip(self.frames, self.has_face, strict=True):
            if not ok and start is None:
                start = int(n)
            if ok and start is not None:
                out.append((start, int(n) - 1))
                start = None
        if start is not None:
            out.append((start, int(self.frames[-1])))
        return out

    def summary(self) -> dict:
        n = len(self.frames)
        return {
            "frames": n,
            "detected": int(self.detected.sum()),
            "detected_ratio": float(self.detected.mean()) if n else 0.0,
            "filled": int(self.filled.sum()),
            "with_face": int(self.has_face.sum()),
            "no_face_ranges": self.missing_ranges(),
            "several_faces_frames": int((self.faces_found > 1).sum()),
            "mean_identity_distance": float(np.nanmean(self.identity))
            if np.isfinite(self.identity).any()
            else None,
        }

    def per_frame(self) -> list[dict]:
        rows = []
        for i, n in enumerate(self.frames):
            rows.append(
                {
                    "frame": int(n),
                    "faces": int(self.faces_found[i]),
                    "state": "detected" if self.detected[i] else "filled" if self.filled[i] else "no face",
                    "score": None if np.isnan(self.scores[i]) else round(float(self.scores[i]), 3),
                    "identity": None if np.isnan(self.identity[i]) else round(float(self.identity[i]), 3),
                }
            )
        return rows

    def save(self, path: Path) -> None:
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        write_atomic(path, lambda tmp: np.savez_compressed(tmp, format=TRACK_FORMAT, **fields))

    @classmethod
    def load(cls, path: Path) -> FaceTrack:
        with np.load(path) as data:
            if int(data["format"]) != TRACK_FORMAT:
                raise ValueError(f"{path}: track format {int(data['format'])}, expected {TRACK_FORMAT}")
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def choose_actor(
    found: Sequence[FrameFaces], reference: np.ndarray | None, threshold: float
) -> list[tuple[Face | None, float]]:
    """The actor's face on each frame (or None), with its identity distance (NaN without a reference).

    With a reference embedding: the closest face, if it is close enough. Without: the largest face on
    the first frame with faces, then on each frame the face overlapping the previous choice most, so the
    track does not jump to another person who happens to be bigger for a moment.
    """
    chosen: list[tuple[Face | None, float]] = []
    previous: Face | None = None
    for ff in found:
        if not ff.faces:
            chosen.append((None, np.nan))
            continue
        if reference is not None:
            dists = [identity_distance(f.embedding, reference) for f in ff.faces]  # type: ignore[arg-type]
            i = int(np.argmin(dists))
            chosen.append((ff.faces[i], dists[i]) if dists[i] <= threshold else (None, dists[i]))
            continue
        face = ff.faces[0]
        if previous is not None:
            overlaps = [box_iou(f.box, previous.box) for f in ff.faces]
            if max(overlaps) > 0.2:
                face = ff.faces[int(np.argmax(overlaps))]
        chosen.append((face, np.nan))
        previous = face
    return chosen


def runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """Half-open index ranges of consecutive True values (frames with a face, or gaps)."""
    edges = np.flatnonzero(np.diff(np.r_[0, valid.astype(np.int8), 0]))
    return list(zip(edges[::2], edges[1::2], strict=True))


def fill_gaps(params: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate alignments across gaps of at most max_gap frames between detections."""
    out = params.copy()
    filled = np.zeros(len(params), bool)
    valid = ~np.isnan(params[:, 0])
    for a, b in runs(~valid):
        if a == 0 or b == len(params) or b - a > max_gap:
            continue  # gaps at the ends, or too long: no face there
        t = (np.arange(a, b) - (a - 1)) / (b - (a - 1))
        p0, p1 = params[a - 1].copy(), params[b].copy()
        p1[3] = p0[3] + np.angle(np.exp(1j * (p1[3] - p0[3])))  # the short way round
        out[a:b] = p0 + (p1 - p0) * t[:, None]
        filled[a:b] = True
    return out, filled


def smooth_params(params: np.ndarray, settings: TrackSettings) -> np.ndarray:
    """Gaussian smoothing over time, per run of frames with a face: centre, log size and rotation apart."""
    out = params.copy()
    for a, b in runs(~np.isnan(params[:, 0])):
        seg = params[a:b].copy()
        seg[:, 2] = np.log(seg[:, 2])
        seg[:, 3] = np.unwrap(seg[:, 3])
        for cols, sigma in (
            ([0, 1], settings.smooth_center),
            ([2], settings.smooth_size),
            ([3], settings.smooth_rotation),
        ):
            if sigma > 0 and b - a > 1:
                seg[:, cols] = gaussian_filter1d(seg[:, cols], sigma, axis=0, mode="nearest")
        seg[:, 2] = np.exp(seg[:, 2])
        out[a:b] = seg
    return out


def build_track(
    found: Sequence[FrameFaces], settings: TrackSettings, reference: np.ndarray | None = None
) -> FaceTrack:
    found = sorted(found, key=lambda f: f.frame)
    n = len(found)
    chosen = choose_actor(found, reference, settings.identity_threshold)
    landmarks = np.full((n, 68, 2), np.nan, np.float32)
    scores = np.full(n, np.nan, np.float32)
    identity = np.full(n, np.nan, np.float32)
    raw = np.full((n, 4), np.nan)
    for i, (face, dist) in enumerate(chosen):
        identity[i] = dist
        if face is not None:
            landmarks[i] = face.landmarks
            scores[i] = face.score
            raw[i] = ffhq_params(face.landmarks)
    detected = ~np.isnan(raw[:, 0])
    filled_params, filled = fill_gaps(raw, settings.max_gap)
    return FaceTrack(
        frames=np.array([f.frame for f in found], np.int64),
        faces_found=np.array([confident_faces(f.faces) for f in found], np.int32),
        detected=detected,
        filled=filled,
        landmarks=landmarks,
        scores=scores,
        identity=identity,
        raw_params=raw,
        params=smooth_params(filled_params, settings),
    )
