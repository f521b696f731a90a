"""Putting a face region into the plate: feathered alpha, Laplacian-pyramid, or Poisson (seamless) blending.

Every mode changes only pixels where the warped matte is above zero; the rest of the plate is
returned bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.faces.align import PlateRegion, like_dtype
from pipeline.media.color import to_float, to_half, to_uint8
from pipeline.media.sequences import in_display

BLEND_MODES = ("alpha", "laplacian", "poisson", "hard")


POISSON_SIDE = 512  # the Poisson membrane is solved on a grid whose longer side is at most this


def _hard(plate_box: np.ndarray, region: PlateRegion) -> np.ndarray:
    a = (region.alpha > 0.5)[..., None]
    return np.where(a, region.face, plate_box)


def matte_pyramid(alpha: np.ndarray, levels: int = 5) -> list[np.ndarray]:
    """The matte's Gaussian pyramid for a Laplacian blend of its size (fewer levels for a small box)."""
    h, w = alpha.shape
    levels = max(1, min(levels, int(np.log2(max(2, min(h, w)))) - 2))
    pyramid = [alpha]
    for _ in range(levels):
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    return pyramid


LEVEL0_ROWS = 128  # rows of the finest band made at a time (even; a block of a 1080p face's plane: 450 kB)


def _laplacian_change(d: np.ndarray, gm: list[np.ndarray]) -> Iterator[tuple[slice, np.ndarray]]:
    """The change a Laplacian blend makes to one plane of the plate, from d = face - plate, as blocks of
    rows (the rows, their change).

    Burt & Adelson 1983 ("A multiresolution spline"): coarse bands mix over wide areas, fine bands over
    narrow ones. The decomposition is linear, so plate + the sum of the difference's bands, each weighted
    by the matte's Gaussian pyramid at its level, is the same blend as mixing the face's and the plate's
    pyramids, with one pyramid built instead of two. Halving rounds up (pyrDown/pyrUp pair any size), so
    no padding is needed. Every band is a level of the Gaussian pyramid minus the next one up, so each
    level is kept whole until the band below it is taken.

    The finest level is the size of the face's box, and everything done at it is done a block of rows at
    a time, from the level above's rows that the block needs: the block's band, change and sum stay in the
    core's cache between passes, where whole planes (2.9 MB a colour at 1080p) went out to memory and back
    (decoding in the loop, CPU a frame: a 1080p composite 29.9 -> 28.9 ms, UHD 104.5 -> 97.2 ms). The
    blocks are bit for bit the whole plane's rows: pyrUp's output rows 2i and 2i + 1 read only its input
    rows i - 1 to i + 1.
    """
    g = [d]
    for _ in range(len(gm) - 1):
        g.append(cv2.pyrDown(g[-1]))
    out = np.multiply(g[-1], gm[-1])
    for k in range(len(gm) - 2, 0, -1):
        size = g[k].shape[::-1]
        band = cv2.pyrUp(g[k + 1], dstsize=size)
        cv2.subtract(g[k], band, dst=band)
        out = cv2.pyrUp(out, dstsize=size)
        cv2.accumulateProduct(band, gm[k], out)  # out += band x matte, in one pass
    h, w = d.shape
    for r0 in range(0, h, LEVEL0_ROWS):
        block = slice(r0, min(h, r0 + LEVEL0_ROWS))
        band = _up_rows(g[1], block, (w, h))
        cv2.subtract(d[block], band, dst=band)
        change = _up_rows(out, block, (w, h))
        cv2.accumulateProduct(band, gm[0][block], change)
        yield block, change


def _up_rows(image: np.ndarray, rows: slice, size: tuple[int, int]) -> np.ndarray:
    """Rows (starting at an even row) of cv2.pyrUp(image, dstsize=size), from the input rows they read
    and two more each side, so that the block's own edges (mirrored by pyrUp) fall outside it."""
    first = max(0, rows.start // 2 - 2)
    last = min(image.shape[0], (rows.stop + 1) // 2 + 2)
    up = cv2.pyrUp(image[first:last], dstsize=(size[0], min(size[1] - 2 * first, 2 * (last - first))))
    return up[rows.start - 2 * first : rows.stop - 2 * first]


def _seamless_clone(face: np.ndarray, plate_box: np.ndarray, mask: np.ndarray, margin: int = 4) -> np.ndarray:
    """OpenCV's seamlessClone (Pérez et al. 2003, "Poisson image editing"), float in and out, with the
    clone's centre pinned to the matte's own box so it cannot shift.

    seamlessClone places the mask's bounding box centred on the point it is given (integer halves), so
    passing that box's own centre puts every pixel back where it came from, frame after frame.
    """
    mask = mask.astype(np.uint8) * 255
    src = cv2.copyMakeBorder(to_uint8(face), margin, margin, margin, margin, cv2.BORDER_REPLICATE)
    dst = cv2.copyMakeBorder(to_uint8(plate_box), margin, margin, margin, margin, cv2.BORDER_REPLICATE)
    mask = cv2.copyMakeBorder(mask, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=0)
    x, y, w, h = cv2.boundingRect(mask)
    centre = (x + w // 2, y + h // 2)
    # a copy: seamlessClone writes into the mask it is given (opencv-python-headless 5.0.0.93)
    out = cv2.seamlessClone(src, dst, mask.copy(), centre, cv2.NORMAL_CLONE)
    return to_float(out[margin:-margin, margin:-margin])


def _poisson(plate_box: np.ndarray, region: PlateRegion) -> np.ndarray:
    """Poisson (seamless) cloning inside the matte's 0.5 contour.

    A Poisson clone is the new face plus a membrane: the harmonic function that takes the plate - face
    difference on the contour smoothly across the inside (Farbman et al. 2009, "Coordinates for instant
    image cloning"). The membrane is smooth, so on a big box it is solved on a grid at most POISSON_SIDE px
    long, in halvings, and drawn back up bilinearly; the face keeps its full-resolution detail. A box that
    small or smaller is cloned as it is.
    """
    inside = region.alpha > 0.5
    if not inside.any():
        return plate_box
    h, w = inside.shape
    shrink = 1
    while max(h, w) > POISSON_SIDE * shrink:
        shrink *= 2
    if shrink == 1:
        out = _seamless_clone(region.face, plate_box, inside)
    else:
        small = (-(-w // shrink), -(-h // shrink))
        face = cv2.resize(region.face, small, interpolation=cv2.INTER_AREA)
        plate = cv2.resize(plate_box, small, interpolation=cv2.INTER_AREA)
        matte = cv2.resize(inside.astype(np.float32), small, interpolation=cv2.INTER_AREA) > 0.5
        membrane = np.subtract(_seamless_clone(face, plate, matte), face, out=face)
        out = np.add(region.face, cv2.resize(membrane, (w, h), interpolation=cv2.INTER_LINEAR))
        np.clip(out, 0, 1, out=out)
    # keep the plate's full precision wherever the clone did not reach
    return np.where(inside[..., None], out, plate_box)


def _planes_blend(view: np.ndarray, region: PlateRegion, mode: str) -> None:
    """Alpha or Laplacian blend of the region into `view` (the plate's box, in place), one colour plane at
    a time.

    A plane is a contiguous array the size of the box, so every step runs over long rows in place (an
    H x W x 3 array times an H x W matte broadcasts over rows of 3, several times slower, and each fresh
    full-size temporary costs page faults). The change is zero wherever the matte is (a Laplacian blend's
    coarse bands reach past it, and are held to it), so the box's untouched pixels come back as they were,
    bit for bit. An 8-bit plate's samples go into the difference (in 8-bit steps) and come back out with
    the change in one OpenCV pass each (cv2.add, rounding and saturating: a Laplacian blend can
    overshoot), with no float copy of the plate.
    """
    alpha = region.alpha
    laplacian = mode == "laplacian"
    gm = matte_pyramid(alpha) if laplacian else []
    touched = alpha > 0 if laplacian else None  # the pixels the blend may change
    mask = None if touched is None else touched.view(np.uint8)
    eight_bit = view.dtype == np.uint8
    d = np.empty(alpha.shape, np.float32)  # scratch planes, used for the three colours in turn
    p = None if eight_bit else np.empty(alpha.shape, np.float32)
    scale = {np.dtype(np.uint16): 1 / 65535}.get(view.dtype, 1.0)
    planes = []
    # the box copied whole, then split: OpenCV splits a strided view (rows of the plate) 2.7x slower
    for plate_plane, face_plane in zip(cv2.split(np.ascontiguousarray(view)), region.planes, strict=True):
        if p is None:
            cv2.addWeighted(face_plane, 255.0, plate_plane, -1.0, 0.0, dst=d, dtype=cv2.CV_32F)
        else:
            np.multiply(plate_plane, np.float32(scale), out=p)  # as media.color.to_float
            np.subtract(face_plane, p, out=d)
        changes = _laplacian_change(d, gm) if laplacian else [(slice(None), np.multiply(d, alpha, out=d))]
        for rows, change in changes:
            if p is None:
                into = plate_plane[rows]
                cv2.add(into, change, dst=into, mask=None if mask is None else mask[rows], dtype=cv2.CV_8U)
                continue
            into = p[rows]
            np.add(into, change, out=into, where=True if touched is None else touched[rows])
            # a Laplacian blend can overshoot [0, 1]; a float plate keeps its values (above 1 in
            # highlights), as alpha's mix does
            if laplacian and view.dtype.kind in "ui":
                np.clip(into, 0, 1, out=into)
        planes.append(plate_plane if p is None else like_dtype(p, view.dtype))
    cv2.merge(planes, dst=view)  # straight into the plate's box


def blend(plate: np.ndarray, region: PlateRegion | None, mode: str) -> np.ndarray:
    """The plate with the region blended in; pixels where the region's alpha is zero stay untouched."""
    out = plate.copy()
    blend_into(out, region, mode)
    return out


def blend_into(plate: np.ndarray, region: PlateRegion | None, mode: str) -> None:
    """Blend the region into the plate's own array, for a caller that is done with the plate: a copy of a
    plate a frame is memory traffic and fresh pages (a 1080p Laplacian composite, decoding in the loop:
    35.8 -> 32.2 ms of CPU a frame). Pixels where the region's alpha is zero stay untouched."""
    if mode not in BLEND_MODES:
        raise ValueError(f"unknown blend mode {mode!r} (one of {', '.join(BLEND_MODES)})")
    if region is None:
        return
    view = plate[region.box]
    if mode in ("alpha", "laplacian"):
        _planes_blend(view, region, mode)
        return
    mixed = {"hard": _hard, "poisson": _poisson}[mode](to_float(view), region)
    touched = region.alpha > 0 if mode != "hard" else region.alpha > 0.5
    np.copyto(view, like_dtype(mixed, plate.dtype), where=touched[..., None])  # faster than mask indexing


@dataclass(frozen=True)
class FaceElement:
    """The new face as an RGBA layer over the plate (straight alpha), for compositors who finish
    elsewhere. Only the face's box is kept, already in the file's sample type (16-bit for a PNG, half
    float for an EXR): a plate-sized RGBA float array is 133 MB at UHD, and everything outside the box is
    zero."""

    shape: tuple[int, int]  # the plate's height and width
    dtype: type[np.generic] = np.float32  # the samples' type
    x0: int = 0
    y0: int = 0
    samples: np.ndarray | None = None  # the box's RGBA; None: an empty layer (a frame without a face)

    @classmethod
    def of(cls, shape: tuple[int, int], region: PlateRegion | None, dtype: type[np.generic]) -> FaceElement:
        """The layer of a region, its samples in `dtype` (uint16, float16 or float32)."""
        if region is None:
            return cls(shape, dtype)
        planes = [_as_samples(plane, dtype) for plane in (*region.planes, region.alpha)]
        return cls(shape, dtype, region.x0, region.y0, cv2.merge(planes))

    def window(self) -> tuple[np.ndarray, tuple[int, int]]:
        """The layer's samples and where they lie on the plate (x, y): its box, or one empty pixel at the
        corner for an empty layer (a file needs at least one)."""
        if self.samples is None:
            return np.zeros((1, 1, 4), self.dtype), (0, 0)
        return self.samples, (self.x0, self.y0)

    def rgba(self) -> np.ndarray:
        """The layer at plate size, in its sample type."""
        return in_display(*self.window(), self.shape)


def _as_samples(plane: np.ndarray, dtype: type[np.generic]) -> np.ndarray:
    """A float32 plane in [0, 1] as an element's samples, in one pass: into 16 bits rounded and saturated
    (like_dtype takes four passes), into half floats through OpenCV (NumPy's cast is 6x slower)."""
    if dtype == np.uint16:
        return cv2.multiply(plane, 65535.0, dtype=cv2.CV_16U)
    if dtype == np.float16:
        return to_half(plane)
    return like_dtype(plane, dtype)


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
