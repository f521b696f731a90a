"""Training faces for the swap model: aligned crops from `vfx extract` with their landmarks, augmented.

Augmentation follows the classic face-swap recipe: a random similarity transform (rotation, zoom,
shift, flip) and colour jitter applied to input and target alike, plus a random warp of a coarse grid
applied to the input only, so the decoder learns to draw a clean face from a distorted one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import PipelineError
from pipeline.faces.masks import landmark_mask

MIN_FACES = 8


class TrainingDataError(PipelineError):
    """A training folder that cannot be used: empty, too small, mixed sizes, missing landmarks."""


@dataclass
class FaceSet:
    """One person's crops at the model's size, float32 RGB in [0, 1], with landmarks in pixels."""

    name: str
    images: np.ndarray  # (N, S, S, 3)
    landmarks: np.ndarray  # (N, 68, 2)
    source_size: int


def face_crops(folder: Path) -> list[Path]:
    """A folder's PNG crops (vfx extract writes each with its landmarks' JSON beside it)."""
    return sorted(p for p in Path(folder).glob("*.png") if not p.name.startswith("."))


def load_face_set(folder: Path, size: int, name: str) -> FaceSet:
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingDataError(f"{folder}: training folder not found")
    pngs = face_crops(folder)
    if len(pngs) < MIN_FACES:
        raise TrainingDataError(
            f"{folder}: {len(pngs)} face crops; training needs at least {MIN_FACES} (vfx extract makes them)"
        )
    images, landmarks, source = [], [], None
    for p in pngs:
        side = p.with_suffix(".json")
        if not side.is_file():
            raise TrainingDataError(f"{side}: landmarks missing for {p.name} (crops come from vfx extract)")
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise TrainingDataError(f"{p}: cannot be read as an image")
        h, w = img.shape[:2]
        if h != w:
            raise TrainingDataError(f"{p}: crop is {w}x{h}, not square")
        if source is None:
            source = h
        elif h != source:
            raise TrainingDataError(
                f"{p}: crop is {h} px but {pngs[0].name} is {source} px; extract all at one size"
            )
        info = json.loads(side.read_text())
        lm = np.asarray(info["landmarks"], np.float32) * (size / h)
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if h > size else cv2.INTER_CUBIC)
        images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
        landmarks.append(lm)
    return FaceSet(name, np.stack(images), np.stack(landmarks), int(source or size))


@dataclass(frozen=True)
class Augment:
    rotation: float = 10.0  # degrees
    zoom: float = 0.05
    shift: float = 0.05
    flip: float = 0.5
    warp: bool = True
    warp_std: float = 5 / 256  # grid offsets, in fractions of the size
    color: float = 0.05  # jitter of L (and a/b at half that)


def _random_warp(image: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """Move a 5x5 grid of control points by Gaussian offsets and remap the image smoothly through it."""
    s = image.shape[0]
    grid = np.linspace(0, s - 1, 5, dtype=np.float32)
    mx, my = np.meshgrid(grid, grid)
    mx = mx + rng.normal(0, std * s, (5, 5)).astype(np.float32)
    my = my + rng.normal(0, std * s, (5, 5)).astype(np.float32)
    map_x = cv2.resize(mx, (s, s), interpolation=cv2.INTER_CUBIC)
    map_y = cv2.resize(my, (s, s), interpolation=cv2.INTER_CUBIC)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def _jitter_color(image: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab)
    gain = 1 + rng.uniform(-amount, amount)
    shift = rng.uniform(-amount, amount, 3) * np.array([100, 64, 64]) * np.array([1, 0.5, 0.5])
    lab = lab * np.array([gain, 1, 1], np.float32) + shift.astype(np.float32)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1)


REGION_WEIGHTS = {"eyes": (list(range(36, 48)), 3.0), "mouth": (list(range(48, 68)), 2.0)}


def loss_weights(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Per-pixel loss weight: 1, eyes x3, mouth x2 (the regions a viewer reads a face by)."""
    w = np.ones((size, size), np.float32)
    for idx, weight in REGION_WEIGHTS.values():
        hull = cv2.convexHull(np.round(landmarks[idx]).astype(np.int32))
        region = np.zeros((size, size), np.uint8)
        cv2.fillConvexPoly(region, hull, 1)
        region = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size // 16 * 2 + 1,) * 2))
        w = np.where(region > 0, np.maximum(w, weight), w)
    return w


def make_batch(
    faces: FaceSet, indices: np.ndarray, rng: np.random.Generator, aug: Augment
) -> dict[str, np.ndarray]:
    """Inputs (warped), targets, target masks (landmark hull) and loss weights for the given crops."""
    s = faces.images.shape[1]
    inputs, targets, masks, weights = [], [], [], []
    for i in indices:
        img, lm = faces.images[i], faces.landmarks[i]
        angle = rng.uniform(-aug.rotation, aug.rotation)
        scale = 1 + rng.uniform(-aug.zoom, aug.zoom)
        m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
        m[:, 2] += rng.uniform(-aug.shift, aug.shift, 2) * s
        if rng.random() < aug.flip:
            m = np.array([[-1, 0, s - 1], [0, 1, 0]]) @ np.vstack([m, [0, 0, 1]])
        target = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        points = lm @ m[:, :2].T + m[:, 2]
        if aug.color > 0:
            target = _jitter_color(target, rng, aug.color)
        inputs.append(_random_warp(target, rng, aug.warp_std) if aug.warp else target)
        targets.append(target)
        masks.append(landmark_mask(points, s, "extended", feather=0.02))
        weights.append(loss_weights(points, s))
    return {
        "input": np.stack(inputs).transpose(0, 3, 1, 2).astype(np.float32),
        "target": np.stack(targets).transpose(0, 3, 1, 2).astype(np.float32),
        "mask": np.stack(masks)[:, None].astype(np.float32),
        "weight": np.stack(weights)[:, None].astype(np.float32),
    }
