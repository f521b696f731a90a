"""FFHQ-style alignment: the crop square from eye and mouth landmarks, and the exact way back.

An alignment is four numbers (centre x, centre y, side length of the crop square in plate pixels,
rotation in radians), so it can be smoothed over time; `crop_matrix` turns it into the 2x3 affine
matrix from plate to crop coordinates for any crop size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.media.color import to_float

MIN_CROP, MAX_CROP = 64, 1024


def ffhq_params(landmarks: np.ndarray) -> np.ndarray:
    """[cx, cy, size, angle] of the crop quad the FFHQ data set was cut with (from 68 landmarks)."""
    lm = np.asarray(landmarks, np.float64)
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    c = eye_avg + eye_to_mouth * 0.1
    return np.array([c[0], c[1], 2 * np.hypot(*x), np.arctan2(x[1], x[0])])


def crop_matrix(params: np.ndarray, crop_size: int) -> np.ndarray:
    """2x3 matrix taking plate pixel coordinates to crop pixel coordinates."""
    cx, cy, size, angle = (float(v) for v in params)
    k = crop_size / size
    cos, sin = np.cos(angle), np.sin(angle)
    # The quad's first corner (c - x - y) maps to (0, 0); x runs along the crop's u axis, y along v.
    half = size / 2
    ox = cx - half * cos + half * sin
    oy = cy - half * sin - half * cos
    a, b = k * cos, k * sin
    return np.array([[a, b, -(a * ox + b * oy)], [-b, a, -(-b * ox + a * oy)]], np.float64)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def align_face(frame: np.ndarray, params: np.ndarray, crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The aligned crop (float32 RGB in [0, 1]) and its plate->crop matrix.

    Where the crop square reaches past the frame edge, the frame is mirrored and blurred toward its
    median colour with distance from the edge (as FFHQ pads), rather than the crop being shrunk.
    """
    if not MIN_CROP <= crop_size <= MAX_CROP:
        raise ValueError(f"crop size {crop_size} is outside {MIN_CROP}..{MAX_CROP}")
    matrix = crop_matrix(params, crop_size)
    image = to_float(frame)
    src, m = image, matrix
    shrink = int(np.floor(params[2] / crop_size))
    if shrink >= 2:  # a big reduction: area-average first so the crop does not alias
        h, w = image.shape[:2]
        src = cv2.resize(image, (max(1, w // shrink), max(1, h // shrink)), interpolation=cv2.INTER_AREA)
        sx, sy = w / src.shape[1], h / src.shape[0]
        # small pixel p' = (p + 0.5) / s - 0.5  =>  p = s * p' + (s - 1) / 2
        up = np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1]])
        m = matrix @ up
    crop = cv2.warpAffine(
        src, m, (crop_size, crop_size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
    )
    inside = _coverage(src.shape, m, crop_size)
    if inside.min() < 0.999:
        outside = (inside < 0.5).astype(np.uint8)
        dist = cv2.distanceTransform(outside, cv2.DIST_L2, 5) / crop_size
        blurred = cv2.GaussianBlur(crop, (0, 0), sigmaX=max(1.0, 0.02 * crop_size))
        w_blur = np.clip(dist / 0.03, 0, 1)[..., None]
        crop = crop + (blurred - crop) * w_blur
        median = np.median(crop[inside > 0.5], axis=0) if (inside > 0.5).any() else crop.mean((0, 1))
        w_med = np.clip(dist / 0.25, 0, 1)[..., None] * 0.7
        crop = crop + (median - crop) * w_med
    return np.clip(crop, 0, 1).astype(np.float32), matrix


def _coverage(shape: tuple[int, ...], matrix: np.ndarray, crop_size: int) -> np.ndarray:
    return cv2.warpAffine(
        np.ones(shape[:2], np.float32),
        matrix,
        (crop_size, crop_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def plate_coverage(plate_shape: tuple[int, ...], params: np.ndarray, crop_size: int) -> np.ndarray:
    """Where an aligned crop shows the plate (1) and where it shows align_face's padding past the frame
    edge (0), so a reviewer can tell padding from a bad crop."""
    return _coverage(plate_shape, crop_matrix(params, crop_size), crop_size)


@dataclass(frozen=True)
class PlateRegion:
    """A crop warped back into plate coordinates, limited to the box its square covers in the plate."""

    x0: int
    y0: int
    face: np.ndarray  # float32 RGB of the box
    alpha: np.ndarray  # float32 matte of the box, 0 outside the warped mask

    @property
    def box(self) -> tuple[slice, slice]:
        h, w = self.alpha.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)


def warp_to_plate(
    crop: np.ndarray, mask: np.ndarray, matrix: np.ndarray, plate_shape: tuple[int, ...]
) -> PlateRegion | None:
    """The crop and its mask through the inverse transform, only over the box the crop covers."""
    h, w = plate_shape[:2]
    size = crop.shape[0]
    inverse = cv2.invertAffineTransform(matrix)
    corners = transform_points(inverse, np.array([[0, 0], [size, 0], [0, size], [size, size]]))
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, [w, h])
    if x1 <= x0 or y1 <= y0:
        return None
    shifted = inverse.copy()
    shifted[:, 2] -= (x0, y0)
    dsize = (int(x1 - x0), int(y1 - y0))
    face = cv2.warpAffine(
        to_float(crop), shifted, dsize, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    alpha = cv2.warpAffine(
        mask.astype(np.float32),
        shifted,
        dsize,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return PlateRegion(int(x0), int(y0), np.clip(face, 0, 1), np.clip(alpha, 0, 1))


def paste_back(plate: np.ndarray, crop: np.ndarray, mask: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The plate with the crop warped back in through the inverse transform, blended by the mask.

    Only pixels where the warped mask is above zero change; every other pixel is returned untouched.
    """
    out = plate.copy()
    region = warp_to_plate(crop, mask, matrix, plate.shape)
    if region is None:
        return out
    view = out[region.box]
    a = region.alpha[..., None]
    blended = to_float(view) * (1 - a) + region.face * a
    touched = region.alpha > 0
    view[touched] = like_dtype(blended, plate.dtype)[touched]
    return out


def like_dtype(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A float [0, 1] image in the plate's sample type."""
    if dtype == np.uint8:
        return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    if dtype == np.uint16:
        return (np.clip(image, 0, 1) * 65535 + 0.5).astype(np.uint16)
    return image.astype(dtype)
