"""Grain put into a clean face on plates of fine and coarse grain: with `composite.grain_size` 0 (the grain
read as fine) and with the plate's size, beside the plate's own grain, in 16 and 8 bits.

    .venv/bin/python bench/grain.py [--sd STEPS]

Each plate is a smooth picture plus grey grain of `--sd` 8-bit steps, white or correlated by a Gaussian of
0.5-1.5 px; the new face is the smooth picture itself, so what match_grain adds is the face less it. The
figures are the grey's standard deviation under the matte (in 8-bit steps) and its correlation with the
next pixel across; and noise_sigma's response to unit grain of each size (grain_response).
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from pipeline.composite import match_grain
from pipeline.composite.match import grain_response
from pipeline.faces.align import PlateRegion

SIZES = (0.0, 0.5, 1.0, 1.25, 1.5)  # px
BOX = (slice(30, 270), slice(30, 290))


def spread(residual: np.ndarray, inside: np.ndarray) -> tuple[float, float]:
    """Standard deviation (8-bit steps) under the matte and the correlation with the next pixel across."""
    r = np.where(inside, residual, 0)
    denominator = float((r * r).sum())
    corr = float((r[:, 1:] * r[:, :-1]).sum()) / denominator if denominator > 0 else float("nan")
    return float(r[inside].std() * 255), corr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sd", type=float, default=3.0, help="the plate's grain, 8-bit steps (%(default)s)")
    args = ap.parse_args(argv)
    h, w = 300, 320
    base = (
        cv2.GaussianBlur(np.random.default_rng(8).random((h, w, 3)).astype(np.float32), (0, 0), 12) * 0.4
        + 0.3
    )
    alpha = np.zeros((240, 260), np.float32)
    cv2.ellipse(alpha, (130, 120), (110, 100), 0, 0, 360, 1.0, -1)
    inside = alpha > 0.99
    clean = base[BOX]
    print(
        "noise_sigma's response to unit grain: " + ", ".join(f"{s} px {grain_response(s):.3f}" for s in SIZES)
    )
    print(f"\ngrain put into a clean face on a plate of {args.sd:g}/255 grain: sd (8-bit steps), correlation")
    print("| plate's grain | grain_size 0 | grain_size the plate's | the plate's own |")
    print("|---|---|---|---|")
    for bits in (16, 8):
        for size in SIZES:
            grain = np.random.default_rng(9).standard_normal((h + 32, w + 32)).astype(np.float32)
            if size > 0:
                grain = cv2.GaussianBlur(grain, (0, 0), size)
            grain = grain[16 : 16 + h, 16 : 16 + w]
            grain = grain / grain.std() * args.sd / 255
            top = 2**bits - 1
            plate = np.clip(base + grain[..., None], 0, 1) * top + 0.5
            plate = plate.astype(np.uint16 if bits == 16 else np.uint8)
            cells = []
            for given in (0.0, size):
                face = match_grain(PlateRegion(30, 30, clean.copy(), alpha), plate, seed=3, size=given).face
                cells.append("{:.2f}, {:.2f}".format(*spread((face - clean).mean(axis=-1), inside)))
            cells.append("{:.2f}, {:.2f}".format(*spread(grain[BOX], inside)))
            print(f"| {size} px, {bits}-bit | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
