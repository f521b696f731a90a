"""Face mattes from landmarks in crop coordinates: the landmark hull, or one reaching the forehead; with
the face mesh, its dense face oval draws the outline (the chin where it is, on an open mouth too)."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.media.filters import HALF_SIZE_MIN_SIGMA, blur_at_half_size

SIDES = ("top", "bottom", "left", "right")
# A feathered matte is zero below this: its Gaussian tail reaches 4 sigma, but past about 3.1 sigma it is
# under 1/1024, which moves no 8-bit sample by half a step (255/1024 = 0.25). Cut there, the matte's
# support (and so the box that the warp, the blend and the element work on) is a fifth smaller at 1080p.
MATTE_FLOOR = 1 / 1024
# A feather of HALF_SIZE_MIN_SIGMA px or more on a crop of at least 2 x FEATHER_SIDE px is blurred at half
# size and scaled back up bilinearly: the blurred matte is smooth at that scale, and a 512 px crop's sigma
# of 15 px blurs in a quarter of the pixels with half the taps. On a coarser grid a wide feather's blur
# meets the crop's edge too roughly (0.010 off the full-size blur for a feather of 0.1 at 512 px shrunk
# 4x; 0.055 for 0.3 at 64 px shrunk 4x; halved, 0.005 at most).
FEATHER_SIDE = 128


def forehead_points(landmarks: np.ndarray, reach: float = 0.6) -> np.ndarray:
    """Brow points moved up the face (away from the nose tip) by `reach` times the brow-to-nose distance."""
    brows = landmarks[17:27]
    up = brows.mean(0) - landmarks[30]
    return brows + up * reach


def matte_points(
    landmarks: np.ndarray, kind: str, oval: np.ndarray | None = None, chin: np.ndarray | None = None
) -> np.ndarray:
    """The points whose hull is the matte. hull: the 68 points (brows to chin); extended: up to the
    forehead. With the mesh's face oval, its points join them: below the brows for hull, all of it (it
    reaches the hairline) for extended, in place of the brow points pushed up. `chin`: the chin guard's
    points (see chin_guard), added as they are."""
    pts = np.asarray(landmarks, np.float64)
    if kind not in ("hull", "extended"):
        raise ValueError(f"unknown mask kind {kind!r} (hull or extended)")
    extra = [np.asarray(chin, np.float64)] if chin is not None and np.isfinite(chin).all() else []
    if oval is not None and np.isfinite(oval).all():
        outline = np.asarray(oval, np.float64)
        if kind == "hull":
            # "below the brows": along the face's own up direction, as far from the nose as the brows
            up = pts[17:27].mean(0) - pts[30]
            reach = np.linalg.norm(up)
            along = (outline - pts[30]) @ (up / max(reach, 1e-6))
            outline = outline[along <= reach]
        extra.append(outline)
    elif kind == "extended":
        extra.append(forehead_points(pts))
    return np.vstack([pts, *extra])


def landmark_mask(
    landmarks: np.ndarray,
    size: int,
    kind: str = "hull",
    erode: float = 0.0,
    erode_sides: dict[str, float] | None = None,
    feather: float = 0.0,
    oval: np.ndarray | None = None,
    chin: np.ndarray | None = None,
) -> np.ndarray:
    """A float32 matte in [0, 1] of shape (size, size).

    erode, erode_sides and feather are fractions of the crop size: erosion pulls the edge in (on every
    side, then more on the named sides of the crop), feathering blurs it with that Gaussian sigma (and cuts
    its tail at MATTE_FLOOR).
    `oval` (the mesh's face oval) and `chin` (the chin guard) are in the same coordinates (matte_points).
    """
    pts = matte_points(landmarks, kind, oval, chin)
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255, lineType=cv2.LINE_AA, shift=4)
    r = int(round(erode * size))
    if r > 0:
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    for side, amount in (erode_sides or {}).items():
        if side not in SIDES:
            raise ValueError(f"unknown side {side!r} (one of {', '.join(SIDES)})")
        n = int(round(amount * size))
        if n <= 0:
            continue
        # A pixel stays only if the pixel n steps toward that side is inside too: the edge moves in by n.
        dx, dy = {"top": (0, n), "bottom": (0, -n), "left": (n, 0), "right": (-n, 0)}[side]
        shifted = cv2.warpAffine(mask, np.float32([[1, 0, dx], [0, 1, dy]]), (size, size), borderValue=0)
        mask = np.minimum(mask, shifted)
    out = mask.astype(np.float32) / 255.0
    if feather <= 0:
        return out
    if size % 2 == 0 and size >= 2 * FEATHER_SIDE and feather * size >= HALF_SIZE_MIN_SIGMA:
        out = blur_at_half_size(out, feather * size)
    else:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=feather * size)
    out[out < MATTE_FLOOR] = 0.0
    return np.clip(out, 0, 1, out=out)


def face_down(landmarks: np.ndarray) -> np.ndarray:
    """The unit vector down the face: perpendicular to the line between the eye centres."""
    across = landmarks[42:48].mean(0) - landmarks[36:42].mean(0)
    down = np.array([-across[1], across[0]], np.float64)
    return down / max(float(np.linalg.norm(down)), 1e-9)


def chin_drop(landmarks: np.ndarray) -> float:
    """How far the chin (point 8) lies below the lower lip's outer edge (57), along the face: the jaw carries
    both, so this barely changes when the mouth opens, and a landmark model that puts the chin at mouth
    level on an extreme expression (dlib's 68 points on an "O" mouth) shows as a drop near zero."""
    return float((landmarks[8] - landmarks[57]) @ face_down(landmarks))


def chin_guard(landmarks: np.ndarray, drop: float) -> np.ndarray:
    """Jaw points 5-11, moved down the face where needed so the chin lies at least `drop` below the lower
    lip (the shot's typical chin drop), the chin (7-9) fully and its neighbours in part: added to the
    matte's points, the matte reaches the chin on an open mouth even when the landmark model's does not."""
    down = face_down(landmarks)
    short = max(0.0, drop - chin_drop(landmarks))
    return landmarks[5:12] + np.outer(GUARD_WEIGHTS, down * short)


GUARD_WEIGHTS = np.array([0.3, 0.7, 1.0, 1.0, 1.0, 0.7, 0.3])  # jaw points 5-11
