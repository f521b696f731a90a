"""Simple, deterministic face alterations that stand in for a face stage while none is configured.

They exercise every part of compositing (colour, seams, mattes) with a face that differs from the
plate's, without any model.
"""

from __future__ import annotations

import numpy as np

from pipeline.composite.color import from_lab, to_lab

ALTERATIONS = ("none", "mirror", "recolor")


def alter_face(crop: np.ndarray, how: str) -> np.ndarray:
    if how == "none":
        return crop
    if how == "mirror":  # aligned crops are symmetric about the vertical centre line
        return np.ascontiguousarray(crop[:, ::-1])
    if how == "recolor":  # a known gain and offset in Lab: paler, greener, bluer
        lab = to_lab(crop)
        lab = lab * np.array([0.85, 1.0, 1.0], np.float32) + np.array([6.0, -12.0, -10.0], np.float32)
        return from_lab(lab)
    raise ValueError(f"unknown alteration {how!r} (one of {', '.join(ALTERATIONS)})")
