"""Pixel conventions shared by every stage.

Frames travel as H x W x 3 numpy arrays in display-referred (sRGB-encoded) values: uint8, uint16, or
float32 in [0, 1]. EXR files hold scene-linear values, so reading and writing EXR crosses the sRGB curve.
"""

from __future__ import annotations

from functools import cache

import numpy as np


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4).astype(
        np.float32
    )


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.where(
        x <= 0.0031308, x * 12.92, 1.055 * np.power(np.maximum(x, 0.0031308), 1 / 2.4) - 0.055
    ).astype(np.float32)


@cache
def _srgb_of_every_half() -> np.ndarray:
    """linear_to_srgb of every half-float value (NaN and infinities included), indexed by its 16 bits."""
    with np.errstate(invalid="ignore"):  # NaN patterns stay NaN
        return linear_to_srgb(np.arange(1 << 16, dtype=np.uint16).view(np.float16))


def half_linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """linear_to_srgb of a half-float array, as float32: a look-up of its 16-bit patterns in a table of
    all 65536, so the same values, without a power per sample (which held an EXR sequence's read to
    0.63x of `ffmpeg -f null`)."""
    return _srgb_of_every_half()[np.ascontiguousarray(x, np.float16).view(np.uint16)]


def to_float(frame: np.ndarray) -> np.ndarray:
    """Any frame as float32 in [0, 1] (display-referred). Integer frames are scaled in one pass (a
    multiply into float32, 4x faster than a cast then a divide; within one float32 step of it)."""
    if frame.dtype == np.uint8:
        return np.multiply(frame, np.float32(1 / 255), dtype=np.float32)
    if frame.dtype == np.uint16:
        return np.multiply(frame, np.float32(1 / 65535), dtype=np.float32)
    return frame.astype(np.float32, copy=False)


def to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        # Exact rounding of v * 255 / 65535 in integers.
        return ((frame.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_uint16(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint16:
        return frame
    if frame.dtype == np.uint8:
        return frame.astype(np.uint16) * 257
    return (np.clip(frame, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
