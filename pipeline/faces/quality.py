"""Figures of merit for a face track: how much the alignment jitters, what smoothing costs, and how
steady the face looks in its crop.

- `alignment_jitter`: the frame-to-frame jitter of the alignment: the RMS second difference over time
  (acceleration, which steady motion does not have) of the four corners of the crop square, in units
  of the crop size. This is the motion of the aligned landmark frame (eyes and mouth define the square).
- `landmark_error`: the mean distance between where the detected landmarks land in the smoothed crop
  and in the crop made from that frame's detection alone, in units of the crop size: the price of
  smoothing.
- `outline_jitter`: the same second difference for the matte's outline points (jaw and brows) on the
  plate, where the track's crops put them (FaceTrack.in_crops, smoothed over time or not), in units of the
  crop size: how much the matte's edge boils.
- `content_jitter`: an independent check that does not use the detector at all: face points tracked
  by optical flow (pyramidal Lucas-Kanade) from each aligned crop to the next; the high-frequency part
  of their median motion (what a Gaussian of sigma 2 frames does not follow), in crop-size units. This
  is what a viewer of the aligned crops sees shake.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from pipeline.faces.align import align_face, crop_matrix, transform_points
from pipeline.faces.track import FaceTrack, runs
from pipeline.media.color import to_uint8

UNIT_SQUARE = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)


def quad_corners(params: np.ndarray) -> np.ndarray:
    """(N, 4, 2) plate coordinates of each frame's crop square; NaN where there is no face."""
    out = np.full((len(params), 4, 2), np.nan)
    for i, p in enumerate(params):
        if not np.isnan(p[0]):
            out[i] = transform_points(cv2.invertAffineTransform(crop_matrix(p, 1)), UNIT_SQUARE)
    return out


def alignment_jitter(params: np.ndarray) -> float:
    return _rms_acceleration(quad_corners(params), ~np.isnan(params[:, 0]), params[:, 2])


OUTLINE = slice(0, 27)  # dlib's jaw (0-16) and brows (17-26): the outline the matte is drawn around


def outline_jitter(track: FaceTrack) -> float:
    """RMS second difference over time of the matte's outline points on the plate, per run of frames with a
    detected face, in units of the crop size; NaN without a run of three."""
    points = track.crop_landmarks(1)[:, OUTLINE]
    plate = np.full(points.shape, np.nan)
    for i in np.flatnonzero(track.detected):
        plate[i] = transform_points(cv2.invertAffineTransform(crop_matrix(track.params[i], 1)), points[i])
    return _rms_acceleration(plate, track.detected, track.params[:, 2])


def _rms_acceleration(points: np.ndarray, has: np.ndarray, sizes: np.ndarray) -> float:
    """RMS over runs of `has` (three frames or more) of the second difference of (N, K, 2) points, each in
    units of its frame's crop size; NaN without such a run."""
    parts = []
    for a, b in runs(has):
        if b - a >= 3:
            c = points[a:b]
            accel = c[2:] - 2 * c[1:-1] + c[:-2]
            parts.append(np.linalg.norm(accel, axis=-1) / sizes[a + 1 : b - 1, None])
    return float(np.sqrt(np.mean(np.concatenate(parts) ** 2))) if parts else float("nan")


def in_crop(params: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Landmarks in crop coordinates (crop size 1) under each frame's alignment; NaN where one is missing."""
    out = np.full(landmarks.shape, np.nan)
    for i, (p, lm) in enumerate(zip(params, landmarks, strict=True)):
        if not (np.isnan(p[0]) or np.isnan(lm[0, 0])):
            out[i] = transform_points(crop_matrix(p, 1), lm)
    return out


def landmark_error(params: np.ndarray, raw_params: np.ndarray, landmarks: np.ndarray) -> float:
    """NaN, like the other figures, when no frame has a detected face (a mean of nothing is no figure)."""
    d = np.linalg.norm(in_crop(params, landmarks) - in_crop(raw_params, landmarks), axis=-1)
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")


def content_jitter(
    frames: list[np.ndarray], params: np.ndarray, landmarks: np.ndarray, size: int = 256
) -> float:
    """Optical-flow jitter of the face inside consecutive aligned crops (frames with a face only)."""
    grays, lms = [], []
    for f, p, lm in zip(frames, params, landmarks, strict=True):
        if np.isnan(p[0]) or np.isnan(lm[0, 0]):
            continue
        crop, m = align_face(f, p, size)
        grays.append(cv2.cvtColor(to_uint8(crop), cv2.COLOR_RGB2GRAY))
        lms.append(transform_points(m, lm))
    steps = []
    for i in range(len(grays) - 1):
        mask = np.zeros((size, size), np.uint8)
        core = lms[i][[17, 26, 30, 36, 45, 31, 35]]  # brows, eyes, nose: the rigid middle of the face
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(core).astype(np.int32)), 255)
        pts = cv2.goodFeaturesToTrack(grays[i], 60, 0.01, 4, mask=mask)
        if pts is None:
            steps.append(np.zeros(2))
            continue
        nxt, ok, _ = cv2.calcOpticalFlowPyrLK(grays[i], grays[i + 1], pts, None, winSize=(21, 21), maxLevel=3)
        ok = ok[:, 0] == 1
        steps.append(np.median((nxt - pts)[ok, 0], axis=0) / size if ok.any() else np.zeros(2))
    if len(steps) < 5:
        return float("nan")
    pos = np.cumsum(np.array(steps), axis=0)
    hp = pos - gaussian_filter1d(pos, 2.0, axis=0, mode="nearest")
    return float(np.sqrt((hp**2).sum(-1).mean()))
