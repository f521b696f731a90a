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
    gray = cv2.cvtColor(np.clip(image, 0, 1).astype(np.float32), cv2.COLOR_RGB2GRAY)
    residual = gray - cv2.medianBlur(gray, 3)
    inside = mask > 0.5
    grid = statistic_grid(inside)
    values = residual[grid][inside[grid]]
    if values.size < 64:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def match_grain(face: np.ndarray, plate_face: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
    """Add Gaussian grain so the face's noise level matches the plate's inside the matte.

    The seed (the frame number) makes the grain the same on every re-render of a frame.
    """
    have, want = noise_sigma(face, mask), noise_sigma(plate_face, mask)
    extra = np.sqrt(max(0.0, want**2 - have**2))
    if extra < 1e-4:
        return face
    rng = np.random.default_rng(seed)
    # luminance grain with a little chroma, as film and sensors give; drawn as float32 (a third faster
    # than float64, and finer than any output's steps)
    grain = rng.standard_normal(face.shape, dtype=np.float32)
    grain *= np.float32(extra * 0.3)
    luma = rng.standard_normal(face.shape[:2], dtype=np.float32)
    luma *= np.float32(extra)
    grain += luma[..., None]
    grain += face
    return np.clip(grain, 0, 1, out=grain)
