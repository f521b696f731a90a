"""Making a clean new face sit in the plate: sharpening and film grain matched to the plate's noise."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.media.filters import statistic_grid


def sharpen(image: np.ndarray, amount: float, radius: float = 1.0) -> np.ndarray:
    """Unsharp mask: amount 0 leaves the image as it is."""
    if amount <= 0:
        return image
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=radius)
    # image + amount * (image - blurred), in one pass
    out = cv2.addWeighted(image, 1.0 + amount, blurred, -amount, 0.0, dtype=cv2.CV_32F)
    return np.clip(out, 0, 1, out=out)


def noise_sigma(image: np.ndarray, mask: np.ndarray) -> float:
    """The noise level inside a matte: the robust spread of the image minus its 3x3 median.

    The median keeps edges, so what is left is mostly sensor noise and grain (MAD scaled to a sigma), read
    on a grid of the residual's pixels (statistic_grid).
    """
    # clipped as grey: a third of the samples of the colour image (a 512 px crop: 0.7 -> 0.2 ms)
    gray = cv2.cvtColor(image.astype(np.float32, copy=False), cv2.COLOR_RGB2GRAY)
    np.clip(gray, 0, 1, out=gray)
    residual = gray - cv2.medianBlur(gray, 3)
    inside = mask > 0.5
    grid = statistic_grid(inside)
    values = residual[grid][inside[grid]]
    if values.size < 64:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def grain_mixer(sigma: float) -> np.ndarray:
    """The 3 x 3 matrix that turns three independent unit normals per pixel into the grain of match_grain:
    luminance noise of `sigma` shared by R, G and B, plus chroma noise of 0.3 sigma in each channel, as film
    and sensors give. That grain's covariance is sigma^2 (0.09 I + J) (J: all ones); any square root of it
    draws the same distribution, and the lower Cholesky factor is one from three normals, not four."""
    covariance = sigma**2 * (0.09 * np.eye(3) + np.ones((3, 3)))
    return np.linalg.cholesky(covariance).astype(np.float32)


def match_grain(face: np.ndarray, plate_face: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
    """Add Gaussian grain so the face's noise level matches the plate's inside the matte.

    The seed (the frame number) makes the grain the same on every re-render of a frame. The normals are
    OpenCV's (cv2.randn from the calling thread's generator, reseeded here: each thread has its own, so
    frames composited side by side draw the same grain as one by one); NumPy's Generator takes 3.5 times as
    long for them, and a generated face gets grain on every frame (a 512 px crop: 11 -> 3 ms).
    """
    have, want = noise_sigma(face, mask), noise_sigma(plate_face, mask)
    extra = np.sqrt(max(0.0, want**2 - have**2))
    if extra < 1e-4:
        return face
    h, w = face.shape[:2]
    normals = np.empty((h, w, 3), np.float32)
    cv2.setRNGSeed(int(seed) & 0x7FFFFFFF)
    cv2.randn(normals.reshape(h, w * 3), 0.0, 1.0)  # one channel: randn's scalars are per channel
    grain = cv2.transform(normals, grain_mixer(extra), dst=normals)
    cv2.add(grain, face.astype(np.float32, copy=False), dst=grain)
    return np.clip(grain, 0, 1, out=grain)
