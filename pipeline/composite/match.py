"""Making a clean new face sit in the plate: sharpening and film grain matched to the plate's noise."""

from __future__ import annotations

import functools
from collections.abc import Sequence

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
# the grid points a noise reading takes on the square of its box (statistic_grid): a reading of 8-bit grain
# under a face's matte on a 1080p plate varies by 2.8% (sd over 40 draws of the grain) and takes 0.32 ms,
# against 1.7% and 1.07 ms at the 128 x 128 points of the other statistics; grain 3% stronger or weaker
# from one frame to the next is far below what shows, and a frame reads the noise twice
NOISE_SAMPLES = 64 * 64


def noise_sigma(image: np.ndarray | Sequence[np.ndarray], mask: np.ndarray) -> float:
    """The noise level inside a matte: the robust spread of the grey image minus its 3x3 median.

    The median keeps edges, so what is left is mostly sensor noise and grain (MAD scaled to a sigma). It is
    read on a grid of about NOISE_SAMPLES pixels (statistic_grid), and only those pixels and their eight
    neighbours are read: gathered into one small image of 3 x 3 blocks, whose 3x3 median at each block's
    centre is the plate's, so the cost hardly grows with the image (a face's box on a 1080p plate: 0.32
    ms, where the grey and median of the whole box take 1.7).
    `image`: H x W x 3 (float in [0, 1], or 8- or 16-bit samples, read as steps of their top value), a
    view into a plate included, or its R, G and B planes.
    """
    h, w = mask.shape
    if h < 3 or w < 3:
        return 0.0
    inner = mask[1 : h - 1, 1 : w - 1]  # the pixels with eight neighbours
    grid = statistic_grid(inner, above=0.5, samples=NOISE_SAMPLES)
    step = grid[0].step or 1
    near = np.array([-1, 0, 1])
    rows = (np.arange(1, h - 1, step)[:, None] + near).ravel()
    cols = (np.arange(1, w - 1, step)[:, None] + near).ravel()
    if isinstance(image, np.ndarray):  # the rows first, whole (a copy of runs of memory), then the columns
        picked = np.take(image, rows, axis=0)
        blocks = [picked[..., c][:, cols] for c in range(3)]
    else:
        blocks = [plane[rows][:, cols] for plane in image]
    top = float(np.iinfo(blocks[0].dtype).max) if blocks[0].dtype.kind in "ui" else 1.0
    gray = sum(np.float32(k / top) * b.astype(np.float32) for k, b in zip(GRAY, blocks, strict=True))
    residual = (gray - cv2.medianBlur(gray, 3))[1::3, 1::3]
    values = residual[inner[grid] > 0.5]
    if values.size < 64:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


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


# px: from this grain size up, 8-bit samples' 3x3 median residual reads the grain badly (3/255 of grain of
# 1.25 px reads as 0.92x of it, of 1.5 px as none): neighbouring samples round alike
COARSE_8_BIT_GRAIN = 1.25


@functools.lru_cache(maxsize=2)
def grain_tile(size: float) -> np.ndarray:
    """The unit grain (unit_grain) correlated by a Gaussian of `size` px and scaled back to its strength (the
    blur's loss of variance, by Parseval): a film scan's grain is coarser than a pixel. Blurred through the
    Fourier transform, so the tile still wraps around without a seam (0.1 s, 12 MB, kept for the last two
    sizes)."""
    if size <= 0:
        return unit_grain()
    f = np.fft.fftfreq(GRAIN_TILE)
    response = np.exp(-2 * (np.pi * size) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    gain = np.sqrt(np.mean(response**2))
    half = response[:, : GRAIN_TILE // 2 + 1] / gain
    planes = [np.fft.irfft2(np.fft.rfft2(p) * half, s=p.shape) for p in unit_grain()]
    return np.ascontiguousarray(planes, dtype=np.float32)


@functools.cache
def grain_response(size: float = 0.0) -> float:
    """What noise_sigma reads of unit grain of `size` (grain_tile): 0.85 of white grain, whose part the 3x3
    median follows, and less of coarser grain, which it takes for picture (0.27 at 1 px, 0.10 at 1.5). Grain
    is added at the plate's level over this, so that the face then reads what the plate reads. White grain
    is read on 256 px of the tile, coarser on 512 (fewer of its samples are apart)."""
    side = 256 if size <= 0 else 512
    return noise_sigma(tuple(grain_tile(size)[:, :side, :side]), np.ones((side, side), np.float32))


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


def add_grain(planes: Sequence[np.ndarray], sigma: float, seed: int, size: float = 0.0) -> None:
    """Add grain of `sigma` (grain_mixer's) and `size` (grain_tile's) to float32 R, G and B planes, in place,
    and clip them to [0, 1].

    The grain is read from the unit tile (unit_grain) at an offset drawn from the seed, wrapping around: the
    same seed gives the same grain, and drawing fresh normals for a face's box on a 1080p plate (2.2
    million) would take 7 ms a frame. The grain repeats only 1024 px apart (a face's box at UHD, up to
    about 1800 px, reads the tile less than twice each way), and each frame reads it from elsewhere."""
    tile = grain_tile(size)
    h, w = planes[0].shape
    oy, ox = (int(v) for v in np.random.default_rng(seed).integers(0, GRAIN_TILE, 2))
    rows, cols = _wrapped_runs(oy, h, GRAIN_TILE), _wrapped_runs(ox, w, GRAIN_TILE)
    for plane, unit in zip(planes, tile, strict=True):
        for y, ty, nh in rows:
            for x, tx, nw in cols:
                view = plane[y : y + nh, x : x + nw]
                cv2.scaleAdd(unit[ty : ty + nh, tx : tx + nw], float(sigma), view, dst=view)
        np.clip(plane, 0, 1, out=plane)


def match_grain(region: PlateRegion, plate: np.ndarray, seed: int, size: float = 0.0) -> PlateRegion:
    """The region with grain added to its face so that the face's noise under the matte matches the
    plate's there, both read at the plate's resolution. A region that holds planes has them changed in
    place. `size`: the plate's grain size (grain_tile), which the shot says: the 3x3 median's residual
    reads a quarter of grain of 1 px, so the grain is drawn at that size and made up by its own response
    (grain_response). Read from the picture, the size took skin texture for coarse grain (a block reader
    read 13.5 / 255 of it on the astronaut's clean face), so it is a setting.

    Grain is a property of the plate's pixels: added to the aligned crop, it was resampled with the face,
    and a 256 px crop magnified 1.6x on a 1080p portrait came out with 0.28x of the plate's grain (0.93
    against 3.26 / 255 as noise_sigma reads them); added here, 0.90x. The seed (the frame number) makes the
    grain the same on every re-render of a frame.
    """
    planes = region.planes  # the region's own arrays where it holds planes (as warp_to_plate makes it)
    have = noise_sigma(planes, region.alpha)
    want = noise_sigma(plate[region.box], region.alpha)
    extra = np.sqrt(max(0.0, want**2 - have**2))  # as noise_sigma reads it
    if extra < 1e-4:
        return region
    add_grain(planes, extra / grain_response(size), seed, size)
    return PlateRegion(region.x0, region.y0, tuple(planes), region.alpha)
