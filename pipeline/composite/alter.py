"""Simple, deterministic face alterations that stand in for a face stage while none is configured.

They exercise every part of compositing (colour, seams, mattes) with a face that differs from the
plate's, without any model. `recolor` is undone by the colour match by design (it tests it); `retouch`
is the one to look at: a warp of the face's shape (larger eyes, slimmer jaw, the digital beauty work of a
VFX retouch), which no colour match can undo, so the comp visibly differs from the plate inside the face.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.composite.color import from_lab, scale_channels, to_lab

ALTERATIONS = ("none", "mirror", "recolor", "retouch")
# the recolor alteration: a gain and offset in Lab (paler, greener, bluer)
RECOLOR = (np.array([0.85, 1.0, 1.0]), np.array([6.0, -12.0, -10.0]))
RETOUCH_EYES = 1.5  # magnification at each eye's centre
RETOUCH_JAW = 0.2  # the jaw line moves this share of its distance to the face's centre line


def alter_face(crop: np.ndarray, how: str, landmarks: np.ndarray | None = None) -> np.ndarray:
    """The crop altered; `retouch` needs the face's 68 landmarks in crop pixels."""
    if how == "none":
        return crop
    if how == "mirror":  # aligned crops are symmetric about the vertical centre line
        return np.ascontiguousarray(crop[:, ::-1])
    if how == "recolor":  # a known gain and offset in Lab
        return from_lab(scale_channels(to_lab(crop), *RECOLOR))
    if how == "retouch":
        if landmarks is None or np.isnan(landmarks).any():
            raise ValueError("the retouch alteration needs the face's 68 landmarks in crop pixels")
        return retouch(crop, landmarks)
    raise ValueError(f"unknown alteration {how!r} (one of {', '.join(ALTERATIONS)})")


def retouch(
    crop: np.ndarray, landmarks: np.ndarray, eyes: float = RETOUCH_EYES, jaw: float = RETOUCH_JAW
) -> np.ndarray:
    """Larger eyes and a slimmer jaw, by one backward warp (cv2.remap): each eye is magnified by local
    scaling inside a circle (Gustafsson's interactive image warping, 1993: the source radius is
    d * (1 - a * (1 - d^2/R^2)^2), continuous at the rim and without folds for a < 0.5), and the jaw
    contour (landmarks 3-13) is pushed toward the nose line with a Gaussian falloff, as a liquify brush."""
    lm = np.asarray(landmarks, np.float32)
    h, w = crop.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = xs.copy(), ys.copy()
    a = 1.0 - 1.0 / eyes
    for eye in (lm[36:42], lm[42:48]):
        centre = eye.mean(0)
        radius = 1.3 * float(np.ptp(eye[:, 0]))
        dx, dy = xs - centre[0], ys - centre[1]
        t = np.clip(1.0 - (dx * dx + dy * dy) / radius**2, 0.0, 1.0)
        s = 1.0 - a * t * t
        map_x += dx * (s - 1.0)
        map_y += dy * (s - 1.0)
    face_width = float(np.ptp(lm[0:17, 0]))
    centre_x = float(lm[27:31, 0].mean())
    sigma = 0.22 * face_width
    shift_x = np.zeros_like(xs)
    weight = np.zeros_like(xs)
    for x, y in lm[3:14]:
        g = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
        shift_x += g * jaw * (centre_x - x)
        weight += g
    # a normalised blend of the brushes: neighbouring jaw points do not add up to more than one push
    push = shift_x / np.maximum(weight, 1.0)
    map_x -= push
    out = cv2.remap(crop, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    return np.clip(out, 0.0, 1.0)
