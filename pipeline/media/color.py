"""Pixel conventions shared by every stage.

Frames travel as H x W x 3 numpy arrays in display-referred (sRGB-encoded) values: uint8, uint16, or
float32 in [0, 1]. EXR files hold scene-linear values, so reading and writing EXR crosses the sRGB curve.
"""

from __future__ import annotations

from functools import cache

import cv2
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


@cache
def _linear_of_every(dtype: np.dtype) -> np.ndarray:
    """srgb_to_linear of every value of an 8-bit, 16-bit or half-float sample (as to_float reads it),
    indexed by its bits."""
    if dtype == np.float16:
        values = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    else:
        values = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
    with np.errstate(invalid="ignore"):  # NaN patterns stay NaN
        return srgb_to_linear(to_float(values))


def to_linear(frame: np.ndarray) -> np.ndarray:
    """A display-referred frame as scene-linear float32 (srgb_to_linear of to_float). 8-bit, 16-bit and
    half-float samples are looked up in a table of every value (the same values, without a power per
    sample: a 1080p frame's RGB through the curve took 190 ms, a third of writing it as EXR)."""
    if frame.dtype in (np.uint8, np.uint16, np.float16):
        key = frame.view(np.uint16) if frame.dtype == np.float16 else frame
        return _linear_of_every(frame.dtype)[key]
    return srgb_to_linear(frame)


def to_half(image: np.ndarray) -> np.ndarray:
    """float32 samples (an image of up to four channels) as half floats, rounded as NumPy's cast rounds
    them, in one OpenCV pass: NumPy's cast took 19 ms for a 1080p face element's RGBA box, this 3."""
    return cv2.multiply(image, (1.0, 1.0, 1.0, 1.0), dtype=cv2.CV_16F)


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
