"""Making a clean new face sit in the plate: sharpening and film grain matched to the plate's noise."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.composite.color import transfer_color
from pipeline.faces.align import PlateRegion
from pipeline.media.filters import statistic_grid


def finish_face(
    face: np.ndarray,
    crop: np.ndarray,
    matte: np.ndarray,
    color: str,
    amount: float,
    part: tuple[slice, slice],
    blur: np.ndarray | None = None,
) -> np.ndarray:
    """The new face colour matched to the plate's face inside the matte (transfer_color), blurred by the
    Gaussian of covariance `blur` (blur_to_match: the plate's softness) and sharpened, only over `part` of
    the crop (what the warp back reads: see faces.align.plate_warp) widened by the blur's and the
    sharpening's reach, and zero elsewhere: the rest of the crop square never reaches the plate, and that
    part is about two thirds of it (20 frames of a 1080p face, crop 512, rct and sharpening, one core: 5.3
    -> 3.8 ms a frame; crop 256: 1.7 -> 1.4 ms)."""
    h, w = face.shape[:2]
    reach = SHARPEN_REACH if amount > 0 else 0
    if blur is not None:
        reach += int(np.ceil(4 * np.sqrt(np.linalg.eigvalsh(blur)[-1]))) + 1
    rows = slice(max(part[0].start - reach, 0), min(part[0].stop + reach, h))
    cols = slice(max(part[1].start - reach, 0), min(part[1].stop + reach, w))
    out = np.zeros_like(face)
    matched = transfer_color(face[rows, cols], crop[rows, cols], matte[rows, cols], color)
    if blur is not None:
        matched = blur_by(matched, blur)
    out[rows, cols] = sharpen(matched, amount)
    return out


SHARPEN_REACH = 4  # px: the reach of sharpen's blur (OpenCV's Gaussian kernel for float images: +-4 sigma)
REBLUR_SIGMA = 1.0  # px: the second blur of edge_blur's ratio
EDGE_SHARE = 0.12  # edge_blur's edges: the matte's pixels of the steepest 12% of gradients (Canny's high)
EDGE_BINS = 8  # edge_blur's bins of edge direction over 180 degrees
BIN_EDGE_PIXELS = 16  # edge pixels a bin needs to count; edge_blur needs 4 such bins for a reading


def edge_blur(image: np.ndarray, matte: np.ndarray) -> np.ndarray | None:
    """How blurred an image's edges inside a matte are, by direction: the 2 x 2 covariance (px^2) of the
    Gaussian that would blur ideal steps to them. None with too few edges.

    Each edge pixel's blur is read by the re-blur ratio of Zhuo & Sim (2011, "Defocus map estimation from a
    single image"). At a step blurred by s, the gradient's magnitude over that of the image blurred again by
    sigma0 is R = sqrt(s^2 + sigma0^2) / s, so s = sigma0 / sqrt(R^2 - 1), whatever the step's height. A
    blur of covariance C blurs an edge whose normal is n by s^2 = n' C n = (Cxx + Cyy)/2 + (Cxx - Cyy)/2
    cos 2t + Cxy sin 2t (t: the normal's angle), so C is fitted, by least squares, to the median s^2 of
    the edges in EDGE_BINS bins of direction. A defocus reads round; a motion blur long along the motion
    and thin across it (a 9 px streak on the footage's faces: 1.8-2.9 px along, within 15 degrees).

    Edges are Canny's on the matte's steepest EDGE_SHARE of gradients. Gradients are Sobel's, which blur a
    little themselves (an ideal step reads about 0.7 px): only differences of readings taken the same way
    mean anything (see blur_to_match)."""
    gray = cv2.cvtColor(image.astype(np.float32, copy=False), cv2.COLOR_RGB2GRAY)
    gray = cv2.multiply(np.clip(gray, 0, 1, out=gray), 255.0)
    gx, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    g1 = cv2.magnitude(gx, gy)
    blurred = cv2.GaussianBlur(gray, (0, 0), REBLUR_SIGMA)
    g2 = cv2.magnitude(cv2.Sobel(blurred, cv2.CV_32F, 1, 0), cv2.Sobel(blurred, cv2.CV_32F, 0, 1))
    inside = matte > 0.5
    if np.count_nonzero(inside) < BIN_EDGE_PIXELS:
        return None
    grid = statistic_grid(inside)  # the quantile read on a grid of the matte's pixels
    high = float(np.quantile(g1[grid][inside[grid]], 1 - EDGE_SHARE))
    if high <= 1.0:  # flat: no edges to read
        return None
    edges = cv2.Canny(np.clip(gray, 0, 255).astype(np.uint8), high / 2, high, L2gradient=True) > 0
    edges &= inside
    ratio = g1[edges] / np.maximum(g2[edges], 1e-6)
    steep = ratio > 1.0 + 1e-3
    blur2 = REBLUR_SIGMA**2 / (ratio[steep] ** 2 - 1)
    angle = np.arctan2(gy[edges][steep], gx[edges][steep]) % np.pi
    bins = np.minimum((angle * (EDGE_BINS / np.pi)).astype(int), EDGE_BINS - 1)
    rows, values, weights = [], [], []
    for k in range(EDGE_BINS):
        chosen = blur2[bins == k]
        if chosen.size >= BIN_EDGE_PIXELS:
            t = 2 * (k + 0.5) * np.pi / EDGE_BINS
            rows.append((1.0, np.cos(t), np.sin(t)))
            values.append(np.median(chosen))
            weights.append(np.sqrt(chosen.size))
    if len(rows) < 4:
        return None
    w = np.array(weights)
    mean, half_diff, cross = np.linalg.lstsq(np.array(rows) * w[:, None], np.array(values) * w, rcond=None)[0]
    return np.array([[mean + half_diff, cross], [cross, mean - half_diff]])


MIN_BLUR_MATCH = 0.4  # px: a face sharper than the plate's by less than this Gaussian is left as it is


def blur_to_match(
    face: np.ndarray,
    plate_face: np.ndarray,
    matte: np.ndarray,
    edges: bool = True,
    streak: np.ndarray | None = None,
) -> np.ndarray | None:
    """The Gaussian (its 2 x 2 covariance, px^2) that blurs the new face to the softness of the plate's
    face, both in crop pixels: a defocused or motion-blurred plate face, or one through a soft lens or heavy
    compression, wants a new face as soft, where a sharp generated one looks pasted on.

    - `edges`: the softness read by edge_blur inside the matte. Gaussians add in covariance, so it is the
      plate's minus the face's, less what it cannot take away (a direction in which the face is already
      the softer); nothing where either reading fails.
    - `streak`: the camera's motion blur along the face's motion (motion_streak), the least the face gets
      that way: a model's face carries none, and a fast face's edges under-read it (the edges across the
      motion are smeared away) or read nothing.

    None where the result is under MIN_BLUR_MATCH in every direction."""
    extra = np.zeros((2, 2))
    if edges:
        plate_blur, face_blur = edge_blur(plate_face, matte), edge_blur(face, matte)
        if plate_blur is not None and face_blur is not None:
            values, vectors = np.linalg.eigh(plate_blur - face_blur)
            extra = (vectors * np.maximum(values, 0.0)) @ vectors.T
    if streak is not None and (length2 := float(np.trace(streak))) > 0:
        along = np.linalg.eigh(streak)[1][:, -1]
        extra = extra + max(0.0, length2 - float(along @ extra @ along)) * np.outer(along, along)
    values, vectors = np.linalg.eigh(extra)
    # at most an eighth of the matte's box each way: past that the face is a blur whatever the reading says
    values = np.clip(values, 0.0, (min(matte.shape) / 8) ** 2)
    if values[-1] < MIN_BLUR_MATCH**2:
        return None
    return (vectors * values) @ vectors.T


def motion_streak(velocity: np.ndarray, shutter: float) -> np.ndarray:
    """The motion blur (2 x 2 covariance, px^2) of a face moving `velocity` px a frame through a shutter
    open for `shutter` degrees of the frame's 360: a streak of length L = |velocity| x shutter / 360 along
    the motion, drawn as the Gaussian of a box's variance along it, L^2 / 12, and none across."""
    moved = np.asarray(velocity, np.float64) * (shutter / 360.0)
    return np.outer(moved, moved) / 12.0


def blur_sigmas(covariance: np.ndarray) -> tuple[float, float, float]:
    """A blur's sigma along its long axis and across it (px), and the long axis's angle (degrees in
    [0, 180), x right, y down), for reports."""
    values, vectors = np.linalg.eigh(covariance)
    along, across = np.sqrt(np.maximum(values[::-1], 0.0))
    return float(along), float(across), float(np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1])) % 180)


def blur_by(image: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """An image blurred by the Gaussian of a 2 x 2 covariance (px^2), which may be long and thin (a motion
    blur): its kernel is the Gaussian integrated over each pixel (4 x 4 points a pixel), so a streak
    thinner than a pixel is still drawn without gaps."""
    values, vectors = np.linalg.eigh(covariance)
    values = np.maximum(values, 0.25**2)  # at least a quarter pixel across: the 4 x 4 points sample it
    radius = int(np.ceil(4 * np.sqrt(values[-1])))
    fine = (np.arange(-radius * 4, radius * 4 + 4) + 0.5) / 4 - 0.5  # 4 points a pixel
    x, y = np.meshgrid(fine, fine)
    inverse = (vectors / values) @ vectors.T
    density = np.exp(-0.5 * (inverse[0, 0] * x * x + 2 * inverse[0, 1] * x * y + inverse[1, 1] * y * y))
    side = 2 * radius + 1
    kernel = density.reshape(side, 4, side, 4).sum(axis=(1, 3)).astype(np.float32)
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT101)


def sharpen(image: np.ndarray, amount: float, radius: float = 1.0) -> np.ndarray:
    """Unsharp mask: amount 0 leaves the image as it is."""
    if amount <= 0:
        return image
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=radius)
    # image + amount * (image - blurred), in one pass
    out = cv2.addWeighted(image, 1.0 + amount, blurred, -amount, 0.0, dtype=cv2.CV_32F)
    return np.clip(out, 0, 1, out=out)


GRAY = (0.299, 0.587, 0.114)  # OpenCV's RGB -> grey weights (Rec. 601 luma)
GRAIN_TILE = 1024  # px: the side of the tile of unit grain that every frame's grain is read from
GRAIN_SEED = 20240  # the tile's: the same grain in every process and on every machine
GRAIN_BLOCK = 8  # px: the side of the blocks grain is read in
# blocks a grain reading takes on the square of its box, at most: their medians vary by a few percent from
# one draw of the grain to the next, far below what shows
GRAIN_BLOCKS = 16 * 16
MIN_GRAIN_BLOCKS = 64  # a matte with fewer blocks on that grid is read on every block of its box
GRAIN_SIZES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5)  # px: the grain sizes read and drawn


@dataclass(frozen=True)
class Grain:
    """A picture's grain: its standard deviation (in the units of add_grain's sigma: of each of R, G and B)
    and its size, the sigma (px) of the Gaussian that correlates white noise into it (0: white)."""

    sd: float
    size: float


def read_grain(image: np.ndarray | Sequence[np.ndarray], mask: np.ndarray) -> Grain:
    """The grain inside a matte, read in blocks of GRAIN_BLOCK px of the grey image whose centres lie in it.

    Each block is taken less its least-squares plane (the picture's shading); what is left has a variance
    v, and its differences to the next pixel across and down a mean square d. Over the blocks their medians
    are taken, so blocks on an edge (an eye, a lip, the matte's border) count as outliers. White noise has
    d = 2v; grain whose neighbours are alike, less: d / v gives the grain's size, and the size the share of
    its variance a block keeps, both from the same reading of the unit grain drawn at each of GRAIN_SIZES
    (grain_readings). A 3 x 3 median's residual, as read before, takes most of coarse grain for picture: it
    read a quarter of grain of size 1 px and a tenth of 1.5 px, so a film scan's face got almost no grain.
    Integer samples carry their rounding's white noise (a twelfth of a step squared), which is taken out.

    `image`: H x W x 3 (float in [0, 1], or 8- or 16-bit samples, read as steps of their top value), a view
    into a plate included, or its R, G and B planes."""
    reading = _block_variances(image, mask)
    if reading is None:
        return Grain(0.0, 0.0)
    v, d, rounding = reading
    v, d = v - rounding, d - 2 * rounding
    if v <= 1e-12:
        return Grain(0.0, 0.0)
    ratios, kept = grain_readings()
    # the ratio falls as the grain grows: np.interp wants it rising
    size = float(np.interp(-d / v, -ratios, GRAIN_SIZES))
    return Grain(float(np.sqrt(v / np.interp(size, GRAIN_SIZES, kept))), size)


def _block_variances(
    image: np.ndarray | Sequence[np.ndarray], mask: np.ndarray, blocks: int = GRAIN_BLOCKS
) -> tuple[float, float, float] | None:
    """The median over at most about `blocks` blocks of v and d (see read_grain), and the variance of the
    samples' rounding; None with fewer than 4 blocks. The blocks lie on a grid over the box; where too few
    of them fall in a small matte, on every block of the box."""
    h, w = mask.shape
    n = GRAIN_BLOCK
    if h < n or w < n:
        return None
    for step in (max(n, int(np.sqrt(h * w / blocks))), n):
        ys, xs = np.arange(0, h - n + 1, step), np.arange(0, w - n + 1, step)
        centres = mask[ys + n // 2][:, xs + n // 2] > 0.5
        if np.count_nonzero(centres) >= MIN_GRAIN_BLOCKS:
            break
    if np.count_nonzero(centres) < 4:
        return None
    rows, cols = (ys[:, None] + np.arange(n)).ravel(), (xs[:, None] + np.arange(n)).ravel()
    if isinstance(image, np.ndarray):  # the rows first, whole (a copy of runs of memory), then the columns
        picked = np.take(image, rows, axis=0)
        planes = [picked[..., c][:, cols] for c in range(3)]
    else:
        planes = [plane[rows][:, cols] for plane in image]
    top = float(np.iinfo(planes[0].dtype).max) if planes[0].dtype.kind in "ui" else 1.0
    gray = sum(np.float32(k / top) * p.astype(np.float32) for k, p in zip(GRAY, planes, strict=True))
    blocks = gray.reshape(len(ys), n, len(xs), n).transpose(0, 2, 1, 3)[centres]  # (B, n, n)
    ramp = np.arange(n, dtype=np.float32) - (n - 1) / 2
    slope_y = np.einsum("bij,i->b", blocks, ramp) / (n * float(ramp @ ramp))
    slope_x = np.einsum("bij,j->b", blocks, ramp) / (n * float(ramp @ ramp))
    left = (
        blocks
        - blocks.mean(axis=(1, 2))[:, None, None]
        - slope_y[:, None, None] * ramp[None, :, None]
        - slope_x[:, None, None] * ramp[None, None, :]
    )
    v = np.einsum("bij,bij->b", left, left) / (n * n - 3)
    across, down = np.diff(left, axis=2), np.diff(left, axis=1)
    d = (np.einsum("bij,bij->b", across, across) + np.einsum("bij,bij->b", down, down)) / (2 * n * (n - 1))
    # integer samples: the rounding of each channel to a step, weighted as the grey mixes them
    rounding = sum(k * k for k in GRAY) / (12 * top * top) if top > 1 else 0.0
    return float(np.median(v)), float(np.median(d)), rounding


def grain_mixer(sigma: float) -> np.ndarray:
    """The 3 x 3 matrix that turns three independent unit normals per pixel into film grain of `sigma`:
    luminance noise of sigma shared by R, G and B, plus chroma noise of 0.3 sigma in each channel, as film
    and sensors give. That grain's covariance is sigma^2 (0.09 I + J) (J: all ones); its lower Cholesky
    factor draws it from three normals a pixel."""
    covariance = sigma**2 * (0.09 * np.eye(3) + np.ones((3, 3)))
    return np.linalg.cholesky(covariance).astype(np.float32)


@functools.cache
def unit_grain() -> np.ndarray:
    """[3, GRAIN_TILE, GRAIN_TILE] float32: grain of sigma 1 (grain_mixer), R, G and B planes, drawn once per
    process from GRAIN_SEED (0.05 s, 12 MB)."""
    normals = np.random.default_rng(GRAIN_SEED).standard_normal((GRAIN_TILE * GRAIN_TILE, 3), np.float32)
    grain = normals @ grain_mixer(1.0).T
    return np.ascontiguousarray(grain.T.reshape(3, GRAIN_TILE, GRAIN_TILE))


@functools.lru_cache(maxsize=3)
def grain_tile(size: float) -> np.ndarray:
    """The unit grain (unit_grain) correlated by a Gaussian of `size` px, one of GRAIN_SIZES, and scaled back
    to a standard deviation of 1: blurred through the Fourier transform, so the tile still wraps around
    without a seam (0.5 s, 12 MB; a shot's grain keeps one or two sizes)."""
    if size <= 0:
        return unit_grain()
    f = np.fft.fftfreq(GRAIN_TILE)
    response = np.exp(-2 * (np.pi * size) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    gain = np.sqrt(np.mean(response**2))  # Parseval: the variance white noise keeps through the blur
    planes = [
        np.fft.irfft2(np.fft.rfft2(p) * response[:, : GRAIN_TILE // 2 + 1], s=p.shape) for p in unit_grain()
    ]
    return np.ascontiguousarray(np.stack(planes).astype(np.float32) / np.float32(gain))


@functools.cache
def grain_readings() -> tuple[np.ndarray, np.ndarray]:
    """What read_grain's blocks see of the unit grain drawn at each of GRAIN_SIZES: the ratio d / v, and the
    variance v itself (the share of the grain's variance a block keeps; less for coarser grain, which a
    block's plane takes part of)."""
    ones = np.ones((GRAIN_TILE, GRAIN_TILE), np.float32)
    ratios, kept = [], []
    for size in GRAIN_SIZES:  # every block of the tile: a reading without sampling error of its own
        reading = _block_variances(tuple(grain_tile(size)), ones, blocks=(GRAIN_TILE // GRAIN_BLOCK) ** 2)
        assert reading is not None
        v, d, _ = reading
        ratios.append(d / v)
        kept.append(v)
    return np.array(ratios), np.array(kept)


def _wrapped_runs(start: int, length: int, period: int) -> list[tuple[int, int, int]]:
    """(position, tile position, run length) of a span of `length` read from a tile of `period` from
    `start` on, wrapping around."""
    runs, at = [], 0
    while at < length:
        t = (start + at) % period
        n = min(period - t, length - at)
        runs.append((at, t, n))
        at += n
    return runs


def add_grain(planes: Sequence[np.ndarray], grain: Grain, seed: int) -> None:
    """Add grain (grain_mixer's, at its sd and size) to float32 R, G and B planes, in place, and clip them
    to [0, 1].

    The grain is read from the tile of its size (grain_tile, the nearest of GRAIN_SIZES) at an offset drawn
    from the seed, wrapping around: the same seed gives the same grain, and drawing fresh normals for a
    face's box on a 1080p plate (2.2 million) would take 7 ms a frame. The grain repeats only 1024 px apart
    (a face's box at UHD, up to about 1800 px, reads the tile less than twice each way), and each frame
    reads it from elsewhere."""
    size = GRAIN_SIZES[int(np.argmin(np.abs(np.array(GRAIN_SIZES) - grain.size)))]
    tile = grain_tile(size)
    h, w = planes[0].shape
    oy, ox = (int(v) for v in np.random.default_rng(seed).integers(0, GRAIN_TILE, 2))
    rows, cols = _wrapped_runs(oy, h, GRAIN_TILE), _wrapped_runs(ox, w, GRAIN_TILE)
    for plane, unit in zip(planes, tile, strict=True):
        for y, ty, nh in rows:
            for x, tx, nw in cols:
                view = plane[y : y + nh, x : x + nw]
                cv2.scaleAdd(unit[ty : ty + nh, tx : tx + nw], float(grain.sd), view, dst=view)
        np.clip(plane, 0, 1, out=plane)


def match_grain(region: PlateRegion, plate: np.ndarray, seed: int) -> PlateRegion:
    """The region with grain added to its face so that the face's grain under the matte matches the
    plate's there, in amount and size, both read at the plate's resolution (read_grain). A region that
    holds planes has them changed in place.

    Grain is a property of the plate's pixels: added to the aligned crop, it was resampled with the face,
    and a 256 px crop magnified 1.6x on a 1080p portrait came out with 0.28x of the plate's grain (0.93
    against 3.26 / 255 as a 3 x 3 median's residual reads them); added here, 0.90x. The seed (the frame
    number) makes the grain the same on every re-render of a frame.
    """
    planes = region.planes  # the region's own arrays where it holds planes (as warp_to_plate makes it)
    have = read_grain(planes, region.alpha)
    want = read_grain(plate[region.box], region.alpha)
    extra = np.sqrt(max(0.0, want.sd**2 - have.sd**2))
    if extra < 1e-4:
        return region
    add_grain(planes, Grain(float(extra), want.size), seed)
    return PlateRegion(region.x0, region.y0, tuple(planes), region.alpha)
