"""Training figures: loss curves drawn with OpenCV, and PNGs written atomically (a viewer polling the
file during training never sees half an image)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.files import write_atomic

COLOURS = [(200, 60, 40), (40, 90, 200), (40, 150, 60), (150, 60, 170)]


def loss_curve(
    history: list[dict], series: dict[str, str], log: bool = True, width: int = 640, height: int = 320
) -> np.ndarray:
    """One line per `series` (label -> history key) against step, smoothed, each scaled to the plot."""
    img = np.full((height, width, 3), 255, np.uint8)
    if len(history) < 2:
        steps = f" ({len(history)} so far)" if history else ""
        text = f"too few steps for a curve{steps}: it is drawn from the second step on"
        cv2.putText(img, text, (30, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        return img
    steps = np.array([h["step"] for h in history], np.float64)
    pad = 30
    for (_label, key), colour in zip(series.items(), COLOURS, strict=False):
        v = np.array([h.get(key, np.nan) for h in history], np.float64)
        v = np.log10(np.maximum(v, 1e-6)) if log else v
        k = max(1, len(v) // 50)  # a running mean over 2% of the run: per-step losses are noisy
        v = np.convolve(np.nan_to_num(v, nan=np.nanmean(v)), np.ones(k) / k, mode="valid")
        s = steps[k - 1 :]
        lo, hi = v.min(), v.max() + 1e-9
        x = pad + (s - steps[0]) / max(steps[-1] - steps[0], 1) * (width - 2 * pad)
        y = height - pad - (v - lo) / (hi - lo) * (height - 2 * pad)
        cv2.polylines(img, [np.stack([x, y], 1).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
    names = ", ".join(f"{label} ({'red blue green purple'.split()[i]})" for i, label in enumerate(series))
    title = (
        f"{names}{', log scale' if log else ''}, each scaled alone; steps {int(steps[0])}-{int(steps[-1])}"
    )
    cv2.putText(img, title, (pad, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def write_png(path: Path, rgb: np.ndarray) -> None:
    write_atomic(path, lambda tmp: cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)))


def labelled(
    image: np.ndarray, columns: list[str] | None = None, rows: list[str] | None = None, caption: str = ""
) -> np.ndarray:
    """A preview grid (uint8 RGB) with a band naming its equal-width columns above it, one naming its
    equal-height rows on its left, and a caption (the training step) below: a preview someone else can
    read without the code."""
    font, scale, ink = cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0)
    h, w = image.shape[:2]
    left = 8 + max((cv2.getTextSize(r, font, scale, 1)[0][0] for r in rows), default=-8) if rows else 0
    top, bottom = (18 if columns else 0), (18 if caption else 0)
    out = np.full((h + top + bottom, w + left, 3), 255, np.uint8)
    out[top : top + h, left:] = image
    for i, name in enumerate(columns or []):
        tw = cv2.getTextSize(name, font, scale, 1)[0][0]
        x = left + int((i + 0.5) * w / len(columns)) - tw // 2  # type: ignore[arg-type]
        cv2.putText(out, name, (max(x, left), 13), font, scale, ink, 1, cv2.LINE_AA)
    for i, name in enumerate(rows or []):
        y = top + int((i + 0.5) * h / len(rows)) + 4  # type: ignore[arg-type]
        cv2.putText(out, name, (4, y), font, scale, ink, 1, cv2.LINE_AA)
    if caption:
        cv2.putText(out, caption, (4, top + h + 13), font, scale, ink, 1, cv2.LINE_AA)
    return out
