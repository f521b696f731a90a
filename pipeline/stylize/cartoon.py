"""A procedural cartoon look: the target domain that ships with the project.

No caricature or emoji data can be had offline, so the demo's and the tests' target domain is made from
faces by a fixed filter, the cartoon recipe of many photo apps: edge-preserving smoothing (OpenCV's
`edgePreservingFilter`, Gastal and Oliveira 2011, "Domain transform for edge-aware image and video
processing"), colour quantised to a few levels per channel (flat paint), and dark outlines where the
median-blurred luminance has strong local contrast (adaptive threshold). Applied to faces the model never
trains on (the source person's), the same filter is a pseudo ground truth for what a domain transfer
network should draw from them.
"""

from __future__ import annotations

import cv2
import numpy as np

LEVELS = 6  # colour levels per channel
EDGE_BLOCK = 15  # adaptive threshold's neighbourhood at 256 px (scaled with the image)
EDGE_OFFSET = 10  # how much darker than its neighbourhood (0-255) a pixel must be to draw an outline


def cartoon(image: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """The cartoon look of an RGB uint8 image [H, W, 3] (any size, deterministic)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"an RGB uint8 image [H, W, 3], got {image.dtype} {list(image.shape)}")
    if levels < 2:
        raise ValueError(f"levels {levels}: at least 2")
    size = min(image.shape[:2])
    smooth = cv2.edgePreservingFilter(image, flags=cv2.RECURS_FILTER, sigma_s=max(2.0, size / 8), sigma_r=0.4)
    step = 256 / levels
    flat = (np.floor(smooth.astype(np.float32) / step) * step + step / 2).clip(0, 255).astype(np.uint8)
    grey = cv2.medianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 3 if size < 128 else 5)
    block = max(3, int(round(EDGE_BLOCK * size / 256)) | 1)
    edges = cv2.adaptiveThreshold(
        grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, EDGE_OFFSET
    )
    return np.where(edges[..., None] == 0, flat // 4, flat).astype(np.uint8)
