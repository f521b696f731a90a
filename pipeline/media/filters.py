"""Image filters shared by the face stages."""

from __future__ import annotations

import cv2
import numpy as np

# pixels sampled for a statistic of a region (a median, a spread, a mean): about this many on a square
STATISTIC_SAMPLES = 128 * 128
# fewer pixels than this under a matte on the grid, and a statistic reads every pixel
MIN_GRID_SAMPLES = 64
# the narrowest blur (sigma, px at full size) that blur_at_half_size is used for: 4 px at half size
HALF_SIZE_MIN_SIGMA = 8.0


def statistic_grid(
    inside: np.ndarray, above: float | None = None, samples: int = STATISTIC_SAMPLES
) -> tuple[slice, slice]:
    """The pixels a statistic of a matte's region reads (`inside`: where the matte counts, or with `above`
    a matte that counts above that value, compared on the grid only): every n-th pixel each way, n giving
    about `samples` points on the square (by default STATISTIC_SAMPLES, and at least every 2nd pixel: 256
    px, every 2nd; 512 px, every 4th), or every pixel where that grid sees fewer than MIN_GRID_SAMPLES
    inside.

    A statistic of a face region read on that grid is within about 1% of the one over every pixel, far
    less than it moves from frame to frame, at a fraction of the cost (a noise estimate's two medians on a
    512 px matte: 2.5 -> 0.15 ms)."""
    step = max(2, round(max(inside.shape) / samples**0.5))
    grid = np.s_[::step, ::step]
    sampled = inside[grid] if above is None else inside[grid] > above
    return grid if np.count_nonzero(sampled) >= MIN_GRID_SAMPLES else np.s_[:, :]


def blur_at_half_size(image: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of `sigma` px worked at half size: area-averaged down (so an edge's coverage is
    kept), blurred with sigma / 2, and scaled back up bilinearly.

    A wide blur is smooth at that scale, so it costs a quarter of the pixels and half the taps. From sigma
    HALF_SIZE_MIN_SIGMA up it is within an 8-bit step of the full-size blur away from the image's edges (a
    feathered matte: 0.0015); where the edge cuts through texture the two reflect it on different grids (6
    steps at most in the padding past the frame edge of 1080p frames aligned at 512 px). Odd sides round up
    at half size.
    """
    h, w = image.shape[:2]
    small = cv2.resize(image, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma / 2)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
