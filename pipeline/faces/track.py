"""The face track of a shot: the actor's face on every frame, its alignment smoothed over time.

Detection is per frame and can run chunk by chunk anywhere (`detect_frames`); choosing the actor,
filling short gaps and smoothing need the whole shot and are cheap (`build_track`).

The actor is a person, not a box: their dlib descriptor (from `faces.reference`, or averaged over the first
frames where the track finds a face) must match every time the track picks a face up again (after a gap, a
camera cut, a jump of the box) and at regular checks; between checks a face keeps the verdict of the face it
overlaps on the frame before. A frame where only other people are found is "other person": no face for the
stages, never silently someone else. Descriptors cost about three detections each, so `detect_frames`
computes them only on the frames that need a verdict (`needs_descriptors`). Camera cuts (pipeline.media.cuts)
split the track: no gap is filled and no smoothing runs across one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from pipeline.faces.align import crop_matrix, ffhq_params, transform_points
from pipeline.faces.detect import Face, FaceAnalyzer, box_iou, identity_distance
from pipeline.faces.masks import GUARD_WEIGHTS, chin_drop, chin_guard, landmark_mask
from pipeline.faces.mesh import FACE_OVAL
from pipeline.files import write_atomic
from pipeline.media.cuts import (
    CUT_THRESHOLD,
    MIN_SCENE,
    WINDOW,
    change_score,
    could_be_cut,
    find_cuts,
    frame_signature,
)

TRACK_FORMAT = 5  # 4: x_scale (an anamorphic plate's faces in square pixels); 5: smooth_landmarks
# A second detection counts as a face when it scores at least this share of the frame's best: dlib's HOG
# finds faint "faces" in badges and folds of clothing (scores 0-0.2 beside 1.2-1.6 for the real face on the
# astronaut plate), and a report that counts them says a portrait of one person has several.
CONFIDENT_SHARE = 0.4


# Boxes overlapping more than this on consecutive frames are the same face.
SAME_FACE_IOU = 0.2
# The actor's descriptor without a reference: the mean over this many of their first descriptor frames.
DESCRIPTOR_FRAMES = 3
# Identity distances within this of the threshold are flagged in the report: the verdict there is fragile.
IDENTITY_MARGIN = 0.05


def confident(faces: Sequence[Face]) -> list[Face]:
    """A frame's detections that are faces with some confidence (see CONFIDENT_SHARE)."""
    if not faces:
        return []
    best = max(f.score for f in faces)
    return [f for f in faces if f.score >= CONFIDENT_SHARE * best]


def confident_faces(faces: Sequence[Face]) -> int:
    """How many of a frame's detections are faces with some confidence (see CONFIDENT_SHARE)."""
    return len(confident(faces))


@dataclass(frozen=True)
class TrackSettings:
    """How a shot is tracked; part of the track's cache key."""

    detector: str = "hog"
    detect_size: int = 640
    upsample: int = 0
    identity_threshold: float = 0.6  # faces farther than this from the actor's descriptor are not the actor
    # A descriptor check every this many frames (0: at re-acquisitions only). A descriptor costs about three
    # HOG detections at 512 px (110 ms against 35 on a busy core): with checks every 24 frames tracking takes
    # 1.2-1.4x detection alone, every 12 1.4-1.6x, every 6 1.9-2.1x (bench/track_reference.py). 24 is also
    # the default chunk, whose first frame is always checked.
    identity_every: int = 24
    cut_threshold: float | None = CUT_THRESHOLD  # pipeline.media.cuts; None: no cut detection
    min_scene: int = MIN_SCENE
    smooth_center: float = 1.0  # Gaussian sigma in frames
    smooth_size: float = 3.0
    smooth_rotation: float = 3.0
    # the landmarks in the aligned crop (what the matte is drawn from): detection jitters them by about 1% of
    # the crop a frame, which boils the matte's edge on the plate
    smooth_landmarks: float = 1.0
    max_gap: int = 5  # gaps up to this many frames are filled by interpolation
    profile_yaw: float = 60.0  # the actor's head turned further (degrees of yaw): "profile", left alone


@dataclass
class FrameFaces:
    """What detection found on one frame: every face (with descriptors on the frames that were checked), and
    how much the picture changed from the frame before (pipeline.media.cuts; NaN: not known)."""

    frame: int
    faces: list[Face] = field(default_factory=list)
    change: float = np.nan

    @property
    def checked(self) -> bool:
        """Descriptors were computed on this frame (for its confident faces)."""
        return any(f.embedding is not None for f in self.faces)


def needs_descriptors(found: Sequence[FrameFaces], i: int, settings: TrackSettings, origin: int = 0) -> bool:
    """Whether the faces of frame i of a run of detection need descriptors, from what detection found on
    the run's frames (up to WINDOW frames after i): the run's first frame, every `identity_every` frames
    counted from frame `origin` (the shot's first: with chunks of a multiple of identity_every frames, the
    periodic checks fall on the chunks' first frames), and wherever the track could pick up
    someone else: a face after a frame without faces, a possible camera cut (`could_be_cut`: every cut
    that `build_track` will find), a change in the number of confident faces, or a confident face that
    overlaps no face of the previous frame (a jump of the box)."""
    current = found[i]
    faces = confident(current.faces)
    if not faces:
        return False
    if i == 0:
        return True
    if settings.identity_every and (current.frame - origin) % settings.identity_every == 0:
        return True
    if could_be_cut(
        [ff.change for ff in found[max(0, i - WINDOW) : i + 1 + WINDOW]],
        min(i, WINDOW),
        settings.cut_threshold,
    ):
        return True
    before = confident(found[i - 1].faces)
    if len(before) != len(faces):
        return True  # also: the frame before had no face
    return any(max(box_iou(f.box, b.box) for b in before) <= SAME_FACE_IOU for f in faces)


def detect_frames(
    analyzer: FaceAnalyzer,
    numbered_frames: Iterable[tuple[int, np.ndarray]],
    settings: TrackSettings | None = None,
    previous: np.ndarray | None = None,
    identify: bool = True,
    origin: int = 0,
) -> list[FrameFaces]:
    """Faces on each frame, the change score against the frame before (`previous` for the first one), and
    descriptors of the confident faces on the frames `needs_descriptors` picks (none when not `identify`;
    `origin`: the shot's first frame, where the periodic checks count from):
    a frame's turn comes once WINDOW more frames are scored, so it keeps the last few pictures."""
    settings = settings or TrackSettings()
    before = None if previous is None else frame_signature(previous)
    found: list[FrameFaces] = []
    waiting: deque[tuple[int, np.ndarray]] = deque()  # (index, picture) of frames not yet decided

    def decide(i: int, frame: np.ndarray) -> None:
        if identify and needs_descriptors(found, i, settings, origin):
            analyzer.embed(frame, confident(found[i].faces))

    for n, frame in numbered_frames:
        signature = frame_signature(frame)
        change = np.nan if before is None else change_score(before, signature)
        found.append(FrameFaces(n, analyzer.detect(frame), change))
        waiting.append((len(found) - 1, frame))
        if len(waiting) > WINDOW:
            decide(*waiting.popleft())
        before = signature
    for i, frame in waiting:
        decide(i, frame)
    return found


def frame_ranges(frames: np.ndarray, mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive frame ranges where mask is True."""
    return [(int(frames[a]), int(frames[b - 1])) for a, b in runs(mask)]


@dataclass
class FaceTrack:
    """Per-frame arrays over the frames of a shot; NaN where there is no face."""

    frames: np.ndarray  # (N,) frame numbers
    faces_found: np.ndarray  # (N,) how many faces the detector found with confidence (confident_faces)
    detected: np.ndarray  # (N,) bool: the actor's face was detected on this frame
    filled: np.ndarray  # (N,) bool: no detection, but inside a short gap that was interpolated
    landmarks: np.ndarray  # (N, 68, 2) the actor's detected landmarks (plate pixels, square: see x_scale)
    scores: np.ndarray  # (N,) detector confidence
    identity: np.ndarray  # (N,) descriptor distance to the actor (its face's, else the closest face's); NaN
    # on frames without descriptors
    raw_params: np.ndarray  # (N, 4) alignment from this frame's landmarks alone
    params: np.ndarray  # (N, 4) alignment after gap filling and smoothing: what stages use
    other_person: np.ndarray  # (N,) bool: faces were found, none of them the actor
    checked: np.ndarray  # (N,) bool: descriptors were computed on this frame
    near_threshold: np.ndarray  # (N,) bool: the identity distance is within IDENTITY_MARGIN of the threshold
    change: np.ndarray  # (N,) the picture's change score from the frame before (pipeline.media.cuts)
    cuts: np.ndarray  # (K,) frames that start a new camera shot: nothing is filled or smoothed across them
    jumps: np.ndarray  # (J,) frames where the actor's box jumped (no overlap with the last): the same
    mesh: np.ndarray  # (N, 478, 2) the actor's face mesh (plate pixels, square); NaN with dlib's 68 landmarks
    pose: np.ndarray  # (N, 3) the actor's head yaw, pitch, roll in degrees (pipeline.faces.pose)
    profile: np.ndarray  # (N,) bool: the actor's head is turned past profile_yaw; no face for the stages
    identity_threshold: float = 0.6
    profile_yaw: float = 60.0
    smooth_landmarks: float = 1.0  # Gaussian sigma in frames of the points in the crops (in_crops)
    # an anamorphic plate's x scale to square pixels (media.probe.square_scale): landmarks, mesh and params
    # are in square pixels (the plate's x times x_scale); 1 for square pixels
    x_scale: float = 1.0

    @property
    def has_face(self) -> np.ndarray:
        return ~np.isnan(self.params[:, 0])

    def state(self, i: int) -> str:
        """A frame's state (index i): the one place that says which wins where several apply."""
        if self.detected[i]:
            return "detected"
        if self.filled[i]:
            return "filled"
        if self.profile[i]:
            return "profile"
        if self.other_person[i]:
            return "other person"
        return "no face"

    @property
    def states(self) -> list[str]:
        return [self.state(i) for i in range(len(self.frames))]

    def index(self, frame: int) -> int:
        return int(frame - self.frames[0])

    def matrix(self, frame: int, crop_size: int) -> np.ndarray | None:
        """The frame's 2x3 matrix from the plate's stored pixels to a crop_size px crop (None without a
        face)."""
        p = self.params[self.index(frame)]
        return None if np.isnan(p[0]) else crop_matrix(p, crop_size, self.x_scale)

    def crop_velocity(self, frame: int, crop_size: int) -> np.ndarray | None:
        """How far the face moves in a frame's time, in that frame's crop pixels (x, y): the plate point
        under the crop's centre, by central difference over the frames either side, or one side where the
        other is past the shot's end, has no face, or lies across a camera cut or a jump of the box (another
        motion). None without a face or such a neighbour. The params are smoothed, so landmark jitter does
        not read as motion."""
        m = self.matrix(frame, crop_size)
        if m is None:
            return None
        i = self.index(frame)
        breaks = {*self.cuts.tolist(), *self.jumps.tolist()}
        centre = np.array([[crop_size / 2, crop_size / 2]])

        def centre_at(k: int) -> np.ndarray | None:
            if not 0 <= k < len(self.frames):
                return None
            mk = self.matrix(int(self.frames[k]), crop_size)
            return None if mk is None else transform_points(cv2.invertAffineTransform(mk), centre)[0]

        before = None if frame in breaks else centre_at(i - 1)
        after = None if i + 1 < len(self.frames) and int(self.frames[i + 1]) in breaks else centre_at(i + 1)
        if before is None and after is None:
            return None
        if before is not None and after is not None:
            moved = (after - before) / 2
        else:
            moved = after - centre_at(i) if after is not None else centre_at(i) - before
        return m[:, :2] @ moved

    def crop_landmarks(self, size: int) -> np.ndarray:
        """Landmarks in the coordinates of `size` px aligned crops, for every frame with a face (NaN
        elsewhere); frames filled by interpolation borrow the nearest detected frame's (in the aligned
        crop the face barely moves)."""
        return self.in_crops(self.landmarks, size)

    def in_crops(self, points: np.ndarray, size: int) -> np.ndarray:
        """Per-frame points (N, K, 2) in plate pixels (square: see x_scale), in the coordinates of `size` px
        aligned crops (see crop_landmarks), smoothed over time there (smooth_landmarks, per run of frames
        with a face, cut at cuts and jumps).

        A detector places the jaw and brows a little differently on each frame (the RMS second difference of
        the matte's outline points, jaw and brows, in units of the crop square: 0.006-0.010 on the three
        clips), and the matte drawn from them boils on the plate. With a sigma of one frame: 0.0013-0.0037,
        moving the points 0.0015-0.0022 from where they were detected; on a frame held still under noise,
        whose points should not move, 0.0018-0.0028 from their median before, 0.0011-0.0016 after
        (bench/faces_quality.py)."""
        out = np.full(points.shape, np.nan)
        detected = np.flatnonzero(self.detected)
        for i in detected:
            matrix = crop_matrix(self.params[i], 1)
            out[i] = transform_points(matrix, points[i]) * size
        for i in np.flatnonzero(self.has_face & ~self.detected):
            if len(detected):
                out[i] = out[detected[np.argmin(np.abs(detected - i))]]
        if self.smooth_landmarks > 0:
            known = self.has_face & np.isfinite(out).reshape(len(out), -1).all(axis=1)
            breaks = np.flatnonzero(np.isin(self.frames, np.concatenate([self.cuts, self.jumps])))
            flat = out.reshape(len(out), -1)
            flat[:] = smooth_over_time(flat, known, self.smooth_landmarks, breaks)
        return out

    def missing_ranges(self) -> list[tuple[int, int]]:
        """Inclusive frame ranges with no face (after gap filling)."""
        return frame_ranges(self.frames, ~self.has_face)

    def summary(self) -> dict:
        n = len(self.frames)
        actor = self.identity[self.detected & np.isfinite(self.identity)]  # distances of the actor's checks
        yaws = self.pose[:, 0]
        return {
            "frames": n,
            "detected": int(self.detected.sum()),
            "detected_ratio": float(self.detected.mean()) if n else 0.0,
            "filled": int(self.filled.sum()),
            "with_face": int(self.has_face.sum()),
            "no_face_ranges": self.missing_ranges(),
            "several_faces_frames": int((self.faces_found > 1).sum()),
            "cuts": [int(c) for c in self.cuts],
            "jumps": [int(j) for j in self.jumps],
            "other_person_frames": int(self.other_person.sum()),
            "other_person_ranges": frame_ranges(self.frames, self.other_person),
            "identity_threshold": float(self.identity_threshold),
            "identity_margin": IDENTITY_MARGIN,
            "identity_checked_frames": int(self.checked.sum()),
            "mean_identity_distance": float(np.mean(actor)) if len(actor) else None,
            "max_identity_distance": float(np.max(actor)) if len(actor) else None,
            "near_threshold_frames": [int(f) for f in self.frames[self.near_threshold]],
            "landmarks": "mesh" if np.isfinite(self.mesh[:, 0, 0]).any() else "dlib68",
            "largest_yaw": float(np.nanmax(np.abs(yaws))) if np.isfinite(yaws).any() else None,
            "profile_yaw": float(self.profile_yaw),
            "profile_frames": int(self.profile.sum()),
            "profile_ranges": frame_ranges(self.frames, self.profile),
        }

    def per_frame(self) -> list[dict]:
        def figure(x: float, digits: int) -> float | None:
            return None if np.isnan(x) else round(float(x), digits)

        return [
            {
                "frame": int(n),
                "faces": int(self.faces_found[i]),
                "state": self.state(i),
                "score": figure(self.scores[i], 3),
                "identity": figure(self.identity[i], 3),
                "near_threshold": bool(self.near_threshold[i]),
                "change": figure(self.change[i], 2),
                "yaw": figure(self.pose[i, 0], 1),
                "pitch": figure(self.pose[i, 1], 1),
                "roll": figure(self.pose[i, 2], 1),
            }
            for i, n in enumerate(self.frames)
        ]

    def save(self, path: Path) -> None:
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        write_atomic(path, lambda tmp: np.savez_compressed(tmp, format=TRACK_FORMAT, **fields))

    @classmethod
    def load(cls, path: Path) -> FaceTrack:
        with np.load(path) as data:
            if int(data["format"]) != TRACK_FORMAT:
                raise ValueError(f"{path}: track format {int(data['format'])}, expected {TRACK_FORMAT}")
            values = {k: data[k] for k in cls.__dataclass_fields__}
        return cls(**{k: v.item() if v.ndim == 0 else v for k, v in values.items()})


class CropMattes:
    """Each frame's matte in `size` px aligned crops, from its 68 landmarks, the mesh's face oval where the
    track has the mesh, and the chin guard: computed once for the shot, then frame by frame.

    The chin guard pushes the jaw around the chin down to the shot's median chin drop below the lower lip
    (masks.chin_guard), so the matte reaches the chin on an open mouth where the landmark model's chin does
    not: on the woman clip's widest "O" (frames 306-321) the mesh's drop falls from about 0.13 of the crop
    to 0.08, dlib's to 0.10, and the picture shows the chin near dlib's."""

    def __init__(self, track: FaceTrack, size: int):
        self.size = size
        self.landmarks = track.crop_landmarks(size)  # (N, 68, 2), NaN on frames without a face
        self.oval = track.in_crops(track.mesh[:, list(FACE_OVAL)], size)  # NaN without the mesh
        has = np.isfinite(self.landmarks[:, 0, 0])
        drops = [chin_drop(self.landmarks[i]) for i in np.flatnonzero(has & track.detected)]
        typical = float(np.median(drops)) if drops else 0.0
        self.chin = np.full((len(has), len(GUARD_WEIGHTS), 2), np.nan)
        for i in np.flatnonzero(has):
            self.chin[i] = chin_guard(self.landmarks[i], typical)

    def matte(
        self,
        i: int,
        kind: str = "hull",
        erode: float = 0.0,
        erode_sides: dict[str, float] | None = None,
        feather: float = 0.0,
    ) -> np.ndarray:
        """Frame i's matte (see masks.landmark_mask for the settings)."""
        return landmark_mask(
            self.landmarks[i], self.size, kind, erode, erode_sides, feather, self.oval[i], self.chin[i]
        )


UNKNOWN, ACTOR, OTHER = 0, 1, 2  # what the track knows of a face: see choose_actor


def actor_descriptor(found: Sequence[FrameFaces], cuts: Collection[int] = ()) -> np.ndarray | None:
    """The actor's descriptor without a reference: the largest confident face of the first frame with faces,
    followed by overlap within its camera shot, its descriptors averaged over its first DESCRIPTOR_FRAMES
    frames with one. If that face is lost before it has one, the next face found is tried. None: no frame
    has descriptors."""
    collected: list[np.ndarray] = []
    face: Face | None = None
    for ff in found:
        if face is not None:
            overlaps = [box_iou(f.box, face.box) for f in ff.faces]
            if ff.frame in cuts or not overlaps or max(overlaps) <= SAME_FACE_IOU:
                if collected:
                    break
                face = None
            else:
                face = ff.faces[int(np.argmax(overlaps))]
        if face is None and ff.faces:
            face = confident(ff.faces)[0]
        if face is not None and face.embedding is not None:
            collected.append(face.embedding)
            if len(collected) == DESCRIPTOR_FRAMES:
                break
    return np.mean(collected, axis=0) if collected else None


def choose_actor(
    found: Sequence[FrameFaces], reference: np.ndarray | None, threshold: float, cuts: Collection[int] = ()
) -> list[tuple[Face | None, float]]:
    """The actor's face on each frame (or None), with the identity distance (NaN where no descriptor).

    The actor is `reference` (a descriptor) or else `actor_descriptor`'s. On a frame with descriptors a face
    is the actor if it is within `threshold` of it (the closest, if several), and another person if not; on
    other frames a face keeps the verdict of the face it overlaps most on the frame before (none at a
    camera cut, a frame in `cuts`). So the track follows the actor by overlap between checks and never picks
    up a face nobody has checked. Without any descriptor (detection run without them) nothing can be
    checked: the actor is then the largest face wherever no face continues the actor's.
    """
    actor = reference if reference is not None else actor_descriptor(found, cuts)
    chosen: list[tuple[Face | None, float]] = []
    previous: list[Face] = []
    previous_labels: list[int] = []
    for ff in found:
        faces = ff.faces
        labels = [UNKNOWN] * len(faces)
        dists = [np.nan] * len(faces)
        overlap = [0.0] * len(faces)  # with the face it continues
        for k, f in enumerate(faces):
            if previous and ff.frame not in cuts:
                ious = [box_iou(f.box, p.box) for p in previous]
                j = int(np.argmax(ious))
                if ious[j] > SAME_FACE_IOU:
                    labels[k], overlap[k] = previous_labels[j], ious[j]
            if f.embedding is not None and actor is not None:
                dists[k] = identity_distance(f.embedding, actor)
                # a face that continues the actor's keeps its verdict up to the margin past the threshold
                # (flagged near_threshold): a periodic check at 0.61 on the right person, seen on real
                # footage, must not drop them; a face picked up anew must be within the threshold itself
                limit = threshold + IDENTITY_MARGIN if labels[k] == ACTOR else threshold
                labels[k] = ACTOR if dists[k] <= limit else OTHER
        actors = [k for k, label in enumerate(labels) if label == ACTOR]
        for k in sorted(actors, key=lambda k: (np.nan_to_num(dists[k], nan=np.inf), -overlap[k]))[1:]:
            labels[k] = OTHER  # two faces cannot both be the actor
        if actor is None and faces and not actors:
            labels[0] = ACTOR
        pick = labels.index(ACTOR) if ACTOR in labels else None
        measured = [d for d in dists if not np.isnan(d)]
        if pick is not None:
            chosen.append((faces[pick], dists[pick]))
        else:
            chosen.append((None, min(measured) if measured else np.nan))
        previous, previous_labels = faces, labels
    return chosen


def runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """Half-open index ranges of consecutive True values (frames with a face, or gaps)."""
    edges = np.flatnonzero(np.diff(np.r_[0, valid.astype(np.int8), 0]))
    return list(zip(edges[::2], edges[1::2], strict=True))


def fill_gaps(
    params: np.ndarray, max_gap: int, breaks: Collection[int] = (), blocked: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate alignments across gaps of at most max_gap frames between detections, except across a
    break (an index that starts a new camera shot, or where the track jumped) and over a blocked frame
    (another person was found there)."""
    out = params.copy()
    filled = np.zeros(len(params), bool)
    valid = ~np.isnan(params[:, 0])
    for a, b in runs(~valid):
        if a == 0 or b == len(params) or b - a > max_gap:
            continue  # gaps at the ends, or too long: no face there
        if any(a <= k <= b for k in breaks) or (blocked is not None and blocked[a:b].any()):
            continue
        t = (np.arange(a, b) - (a - 1)) / (b - (a - 1))
        p0, p1 = params[a - 1].copy(), params[b].copy()
        p1[3] = p0[3] + np.angle(np.exp(1j * (p1[3] - p0[3])))  # the short way round
        out[a:b] = p0 + (p1 - p0) * t[:, None]
        filled[a:b] = True
    return out, filled


def smooth_params(params: np.ndarray, settings: TrackSettings, breaks: Collection[int] = ()) -> np.ndarray:
    """Gaussian smoothing over time, per run of frames with a face, each run cut at the breaks (indices
    that start a new camera shot or where the track jumped): centre, log size and rotation apart.

    Each piece is extended past its ends by point reflection (the motion carries on in a straight line)
    rather than by holding its end value: at a cut the head may be moving fast, and a held end would pull
    the smoothed crop back along its path (3 px on the woman clip at 8 px a frame). So the frames at
    either side of a cut keep their own detection's alignment."""
    pieces = _pieces(~np.isnan(params[:, 0]), breaks)
    has = np.zeros(len(params), bool)  # the frames smoothed: a frame alone between breaks stays as it is
    out = params.copy()
    for a, b in pieces:
        has[a:b] = True
        out[a:b, 3] = np.unwrap(out[a:b, 3])
    out[has, 2] = np.log(out[has, 2])
    for cols, sigma in (
        ([0, 1], settings.smooth_center),
        ([2], settings.smooth_size),
        ([3], settings.smooth_rotation),
    ):
        out[:, cols] = smooth_over_time(out[:, cols], has, sigma, breaks)
    out[has, 2] = np.exp(out[has, 2])
    return out


def smooth_over_time(
    values: np.ndarray, has: np.ndarray, sigma: float, breaks: Collection[int] = ()
) -> np.ndarray:
    """Gaussian smoothing of (N, C) values over time (axis 0) with this sigma in frames, per run of frames
    where `has`, each run cut at the breaks (indices), each piece extended past its ends by point
    reflection (see smooth_params); the rows outside the runs are returned as they are."""
    out = values.copy()
    if sigma <= 0:
        return out
    pad = int(4 * sigma + 0.5)  # gaussian_filter1d's reach (truncate=4)
    for a, b in _pieces(has, breaks):
        ends = np.pad(values[a:b], [(pad, pad), (0, 0)], mode="reflect", reflect_type="odd")
        out[a:b] = gaussian_filter1d(ends, sigma, axis=0)[pad : pad + b - a]
    return out


def _pieces(has: np.ndarray, breaks: Collection[int]) -> list[tuple[int, int]]:
    """[a, b) pieces of at least two frames: the runs where `has`, cut at the breaks."""
    pieces = []
    for run_start, run_end in runs(has):
        edges = [run_start, *sorted(int(k) for k in breaks if run_start < k < run_end), run_end]
        pieces += [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b - a >= 2]
    return pieces


def box_jumps(boxes: np.ndarray, detected: np.ndarray, cuts: Collection[int]) -> list[int]:
    """Indices where the actor's box overlaps nothing of its box at the previous detection (in the same
    camera shot): a jump cut the cut detector missed, or a re-acquisition elsewhere in the picture."""
    jumps = []
    last = None
    for i in np.flatnonzero(detected):
        if last is not None and i not in cuts and box_iou(boxes[last], boxes[i]) == 0.0:
            jumps.append(int(i))
        last = i
    return jumps


def build_track(
    found: Sequence[FrameFaces],
    settings: TrackSettings,
    reference: np.ndarray | None = None,
    x_scale: float = 1.0,
) -> FaceTrack:
    """The actor's track from the faces found on each frame (found in square pixels: `x_scale` is the
    plate's scale to them, see media.probe.square_scale)."""
    found = sorted(found, key=lambda f: f.frame)
    n = len(found)
    frames = np.array([f.frame for f in found], np.int64)
    change = np.array([f.change for f in found], np.float64)
    cuts = find_cuts(change, settings.cut_threshold, settings.min_scene)
    chosen = choose_actor(found, reference, settings.identity_threshold, set(frames[cuts].tolist()))
    landmarks = np.full((n, 68, 2), np.nan, np.float32)
    scores = np.full(n, np.nan, np.float32)
    identity = np.full(n, np.nan, np.float32)
    raw = np.full((n, 4), np.nan)
    boxes = np.full((n, 4), np.nan, np.float32)
    mesh = np.full((n, 478, 2), np.nan, np.float32)
    pose = np.full((n, 3), np.nan, np.float32)
    profile = np.zeros(n, bool)
    for i, (face, dist) in enumerate(chosen):
        identity[i] = dist
        if face is None:
            continue
        landmarks[i] = face.landmarks
        scores[i] = face.score
        boxes[i] = face.box
        if face.mesh is not None:
            mesh[i] = face.mesh
        if face.pose is not None:
            pose[i] = face.pose
            profile[i] = abs(float(face.pose[0])) > settings.profile_yaw
        if not profile[i]:
            raw[i] = ffhq_params(face.landmarks)
    detected = ~np.isnan(raw[:, 0])
    other_person = np.array(
        [c[0] is None and bool(f.faces) for c, f in zip(chosen, found, strict=True)], bool
    )
    jumps = box_jumps(boxes, detected, set(cuts))
    breaks = sorted({*cuts, *jumps})
    filled_params, filled = fill_gaps(raw, settings.max_gap, breaks, blocked=other_person | profile)
    return FaceTrack(
        frames=frames,
        faces_found=np.array([confident_faces(f.faces) for f in found], np.int32),
        detected=detected,
        filled=filled,
        landmarks=landmarks,
        scores=scores,
        identity=identity,
        raw_params=raw,
        params=smooth_params(filled_params, settings, breaks),
        other_person=other_person.reshape(n),
        checked=np.array([f.checked for f in found], bool).reshape(n),
        near_threshold=np.abs(identity - settings.identity_threshold) <= IDENTITY_MARGIN,
        change=change,
        cuts=frames[cuts],
        jumps=frames[jumps],
        mesh=mesh,
        pose=pose,
        profile=profile,
        identity_threshold=settings.identity_threshold,
        profile_yaw=settings.profile_yaw,
        smooth_landmarks=settings.smooth_landmarks,
        x_scale=x_scale,
    )
