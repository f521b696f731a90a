"""Putting a face region into the plate: feathered alpha, Laplacian-pyramid, or Poisson (seamless) blending.

Every mode changes only pixels where the warped matte is above zero; the rest of the plate is
returned bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.faces.align import PlateRegion, like_dtype
from pipeline.media.color import to_float, to_uint8

BLEND_MODES = ("alpha", "laplacian", "poisson", "hard")


def _alpha(plate_box: np.ndarray, region: PlateRegion) -> np.ndarray:
    a = region.alpha[..., None]
    return plate_box * (1 - a) + region.face * a


def _hard(plate_box: np.ndarray, region: PlateRegion) -> np.ndarray:
    a = (region.alpha > 0.5)[..., None]
    return np.where(a, region.face, plate_box)


def _laplacian(plate_box: np.ndarray, region: PlateRegion, levels: int = 5) -> np.ndarray:
    """Blend band by band: coarse bands mix over wide areas, fine bands over narrow ones (Burt & Adelson)."""
    h, w = region.alpha.shape
    levels = max(1, min(levels, int(np.log2(max(2, min(h, w)))) - 2))
    size = (w, h)
    pad_w, pad_h = (-w) % (1 << levels), (-h) % (1 << levels)

    def padded(x: np.ndarray) -> np.ndarray:
        return cv2.copyMakeBorder(x, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT101)

    a, b = padded(region.face), padded(plate_box)
    m = padded(region.alpha)
    ga, gb, gm = [a], [b], [m]
    for _ in range(levels):
        ga.append(cv2.pyrDown(ga[-1]))
        gb.append(cv2.pyrDown(gb[-1]))
        gm.append(cv2.pyrDown(gm[-1]))
    out = ga[-1] * gm[-1][..., None] + gb[-1] * (1 - gm[-1][..., None])
    for k in range(levels - 1, -1, -1):
        shape = ga[k].shape[1::-1]
        la = ga[k] - cv2.pyrUp(ga[k + 1], dstsize=shape)
        lb = gb[k] - cv2.pyrUp(gb[k + 1], dstsize=shape)
        out = cv2.pyrUp(out, dstsize=shape) + la * gm[k][..., None] + lb * (1 - gm[k][..., None])
    return np.clip(out[: size[1], : size[0]], 0, 1)


def _poisson(plate_box: np.ndarray, region: PlateRegion, margin: int = 4) -> np.ndarray:
    """OpenCV's seamlessClone, with the clone's centre pinned to the matte's own box so it cannot shift.

    seamlessClone places the mask's bounding box centred on the point it is given (integer halves), so
    passing that box's own centre puts every pixel back where it came from, frame after frame.
    """
    mask = (region.alpha > 0.5).astype(np.uint8) * 255
    if not mask.any():
        return plate_box
    src = cv2.copyMakeBorder(to_uint8(region.face), margin, margin, margin, margin, cv2.BORDER_REPLICATE)
    dst = cv2.copyMakeBorder(to_uint8(plate_box), margin, margin, margin, margin, cv2.BORDER_REPLICATE)
    mask = cv2.copyMakeBorder(mask, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=0)
    x, y, w, h = cv2.boundingRect(mask)
    centre = (x + w // 2, y + h // 2)
    # a copy: seamlessClone writes into the mask it is given (opencv-python-headless 5.0.0.93), and the
    # mask is needed below to say where the clone goes
    out = cv2.seamlessClone(src, dst, mask.copy(), centre, cv2.NORMAL_CLONE)
    out = out[margin:-margin, margin:-margin].astype(np.float32) / 255.0
    # keep the plate's full precision wherever the clone did not reach
    return np.where((mask[margin:-margin, margin:-margin] > 0)[..., None], out, plate_box)


def blend(plate: np.ndarray, region: PlateRegion | None, mode: str) -> np.ndarray:
    """The plate with the region blended in; pixels where the region's alpha is zero stay untouched."""
    if mode not in BLEND_MODES:
        raise ValueError(f"unknown blend mode {mode!r} (one of {', '.join(BLEND_MODES)})")
    out = plate.copy()
    if region is None:
        return out
    view = out[region.box]
    box = to_float(view)
    mixed = {"alpha": _alpha, "hard": _hard, "laplacian": _laplacian, "poisson": _poisson}[mode](box, region)
    touched = region.alpha > 0 if mode != "hard" else region.alpha > 0.5
    np.copyto(view, like_dtype(mixed, plate.dtype), where=touched[..., None])  # faster than mask indexing
    return out


def seam_score(comp: np.ndarray, plate: np.ndarray, region: PlateRegion, width: int = 1) -> float:
    """How much edge the composite adds along the matte's boundary.

    The mean squared colour gradient (Sobel, summed over R, G and B) of the comp in a band of +-width px
    around the matte's 0.5 contour, minus the same for the plate: near 0 the seam is invisible to a
    gradient; a hard paste of a face that differs from the plate scores high.
    """
    inside = (region.alpha > 0.5).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    band = (cv2.dilate(inside, k) - cv2.erode(inside, k)) > 0

    def energy(img: np.ndarray) -> float:
        g = to_float(img[region.box])
        gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
        return float((gx**2 + gy**2).sum(-1)[band].mean())

    return energy(comp) - energy(plate)
