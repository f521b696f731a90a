"""Pictures for people checking a track: landmarks and the crop square over the plate."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.faces.align import transform_points
from pipeline.media.color import to_uint8

GREEN, YELLOW, ORANGE, RED, WHITE = (
    (60, 220, 60),
    (255, 220, 0),
    (255, 140, 0),
    (230, 40, 40),
    (255, 255, 255),
)


def draw_overlay(
    frame: np.ndarray,
    frame_number: int,
    state: str,
    landmarks: np.ndarray | None,
    quad: np.ndarray | None,
    faces_found: int,
) -> np.ndarray:
    """The plate frame (8-bit) with the actor's landmarks, the crop square and the frame's state."""
    img = np.ascontiguousarray(to_uint8(frame)).copy()
    scale = max(img.shape[:2]) / 512
    if quad is not None:
        colour = YELLOW if state == "detected" else ORANGE
        cv2.polylines(
            img,
            [np.round(quad * 16).astype(np.int32)],
            True,
            colour,
            max(1, round(scale)),
            cv2.LINE_AA,
            shift=4,
        )
    if landmarks is not None and not np.isnan(landmarks[0, 0]):
        for x, y in landmarks:
            cv2.circle(
                img,
                (int(round(x * 16)), int(round(y * 16))),
                max(16, round(24 * scale)),
                GREEN,
                -1,
                cv2.LINE_AA,
                shift=4,
            )
    label = f"{frame_number}  {state}  faces:{faces_found}"
    size = 0.5 * scale
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, size, 1)
    cv2.rectangle(img, (0, 0), (tw + 10, th + 12), (0, 0, 0), -1)
    cv2.putText(
        img,
        label,
        (5, th + 6),
        cv2.FONT_HERSHEY_SIMPLEX,
        size,
        WHITE if state in ("detected", "filled") else RED,
        max(1, round(scale)),
        cv2.LINE_AA,
    )
    return img


def hatch_outside(img: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Grey diagonal stripes over the part of a crop that lies past the plate's edge (align_face pads it
    with a blurred mirror of the plate, which reads as a dark or smeared strip), with a line at the edge."""
    outside = coverage < 0.5
    if not outside.any():
        return img
    h, w = outside.shape
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = ((xx + yy) // max(2, w // 32)) % 2 == 0
    out = img.copy()
    out[outside] = (0.5 * out[outside] + 0.5 * np.where(stripes[outside, None], 160, 96)).astype(np.uint8)
    contours, _ = cv2.findContours(outside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, WHITE, 1, cv2.LINE_AA)
    return out


def draw_crop_tile(
    crop: np.ndarray,
    landmarks_crop: np.ndarray | None,
    mask: np.ndarray | None,
    label: str,
    coverage: np.ndarray | None = None,
) -> np.ndarray:
    """An aligned crop with its matte outline and landmarks, for the contact sheet; where `coverage` (see
    align.plate_coverage) says the crop runs past the plate, that part is hatched."""
    img = np.ascontiguousarray(to_uint8(crop)).copy()
    if coverage is not None:
        img = hatch_outside(img, coverage)
    if mask is not None:
        contours, _ = cv2.findContours(
            (mask > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(img, contours, -1, YELLOW, 1, cv2.LINE_AA)
    if landmarks_crop is not None:
        for x, y in landmarks_crop:
            cv2.circle(img, (int(round(x)), int(round(y))), 1, GREEN, -1)
    cv2.rectangle(img, (0, img.shape[0] - 20), (len(label) * 9 + 6, img.shape[0]), (0, 0, 0), -1)
    cv2.putText(img, label, (3, img.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, WHITE, 1, cv2.LINE_AA)
    return img


def grid(tiles: list[np.ndarray], columns: int = 4) -> np.ndarray:
    rows = -(-len(tiles) // columns)
    h, w = tiles[0].shape[:2]
    sheet = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = t
    return sheet


def quad_in_plate(inverse_matrix: np.ndarray, crop_size: int) -> np.ndarray:
    square = np.array([[0, 0], [crop_size, 0], [crop_size, crop_size], [0, crop_size]], np.float64)
    return transform_points(inverse_matrix, square)
