"""How well dlib's 68 landmarks work on a generator's faces: what the attribute recognisers learn from and
what an edit's landmark-measured change is judged by.

    OMP_NUM_THREADS=1 .venv/bin/python bench/generated_landmarks.py --generator models/gan64 \
        [--samples 500] [--preview generated_landmarks.png]

The faces are drawn as `vfx train recognisers` draws them (`recognise_train.draw_measured_faces`: psi from
0.5 to 1, half style-mixed, fixed noise) and enlarged to 256 px for dlib (`find_aligned_landmarks`).
Reported: the share of faces dlib finds; per measure (`faces.attributes`) its spread over the faces and
dlib's own repeatability: each face is measured again flipped left to right, and the flipped face's
measure mirrored back (`attributes.mirrored`) is compared with the first (correlation, mean absolute
difference, mean signed difference: a left-right bias of dlib's). A measure that dlib repeats poorly
relative to its spread cannot be learnt or judged finely. The preview shows faces at dlib's 256 px with
their landmarks (found) or crossed out (not found). The script measures; it exits 0.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from common import print_table

from pipeline.curves import labelled, write_png
from pipeline.faces.attributes import (
    GEOMETRIC_ATTRIBUTES,
    LANDMARK_SIZE,
    find_aligned_landmarks,
    measure_attributes,
    mirrored,
)
from pipeline.models import generator_file
from pipeline.stylegan.checkpoints import load_generator
from pipeline.stylegan.generator import image_grid
from pipeline.stylegan.recognise_train import RecogniserSettings, draw_measured_faces


def preview(crops: np.ndarray, landmarks: np.ndarray, found: np.ndarray, count: int) -> np.ndarray:
    """Found faces and then the ones dlib missed, at dlib's size, with their landmarks."""
    order = np.concatenate([np.flatnonzero(found)[: count - min(4, (~found).sum())], np.flatnonzero(~found)])
    tiles = []
    for i in order[:count]:
        img = cv2.resize(crops[i], (LANDMARK_SIZE, LANDMARK_SIZE), interpolation=cv2.INTER_CUBIC)
        if found[i]:
            scale = LANDMARK_SIZE / crops.shape[1]
            for x, y in (landmarks[i] + 0.5) * scale - 0.5:
                cv2.circle(img, (int(round(x)), int(round(y))), 2, (60, 220, 60), -1)
        else:
            cv2.line(img, (0, 0), (LANDMARK_SIZE - 1, LANDMARK_SIZE - 1), (230, 40, 40), 2)
        tiles.append(img)
    return image_grid(np.stack(tiles), 6)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--generator", type=Path, required=True)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--preview", type=Path, default=Path("generated_landmarks.png"))
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(1)
    G, _ = load_generator(generator_file(args.generator))
    G.eval().requires_grad_(False)
    res = G.cfg.resolution
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    crops, landmarks, found = draw_measured_faces(G, args.samples, RecogniserSettings())
    seconds = time.perf_counter() - start
    flipped_lm, flipped_found = find_aligned_landmarks(np.ascontiguousarray(crops[:, :, ::-1]))
    both = found & flipped_found
    print(
        f"{args.generator}: {res} px; dlib found a face on {found.sum()} of {args.samples} "
        f"({found.mean():.1%}), on {flipped_found.sum()} flipped, both on {both.sum()}; "
        f"{seconds / args.samples * 1000:.0f} ms a face to draw and measure"
    )
    a = measure_attributes(landmarks[both], (res, res))
    b = measure_attributes(flipped_lm[both], (res, res))
    names = list(GEOMETRIC_ATTRIBUTES)
    rows = []
    for j, name in enumerate(names):
        other, sign = mirrored(name)
        again = sign * b[:, names.index(other)]
        rows.append(
            (
                name,
                f"{a[:, j].mean():.3g}",
                f"{a[:, j].std():.3g}",
                f"{np.corrcoef(a[:, j], again)[0, 1]:.2f}",
                f"{np.abs(a[:, j] - again).mean():.3g}",
                f"{(a[:, j] - again).mean():+.3g}",
            )
        )
    print_table(("measure", "mean", "spread (sd)", "flip r", "flip mean |diff|", "flip mean diff"), rows)
    caption = f"{args.generator}: dlib's landmarks at {LANDMARK_SIZE} px; crossed out: no face found"
    write_png(args.preview, labelled(preview(crops, landmarks, found, 24), caption=caption))
    print(f"preview: {args.preview}")


if __name__ == "__main__":
    main()
