"""Domain transfer stylisation (DTN, Taigman et al. 2017) measured on faces the model never trained on,
against the plain autoencoder baseline (`vfx train stylize --weights gan=0,const=0`: g trained to redraw
target images from f alone, no L_CONST, no three-way D), in the same run.

    .venv/bin/python bench/stylize.py --model models/sty64 --baseline models/sty64_plain \\
        --source crops/woman_odd --other crops/man_odd

`--source`: held-out aligned crops of the source person (vfx extract, with their landmark JSON), in frame
order (the odd frames of a clip whose even frames trained the models); `--other`: held-out crops of
another person. For each model:
1. Domain: LPIPS-VGG between the stylised held-out faces and the procedural cartoon of the same faces
   (`stylize.cartoon`, the look the target folder was made with; the model never saw it applied to them),
   made as the target folder was: at the crops' own size, then reduced to the model's (give crops
   extracted at the size the target crops were cartooned at).
2. L_CONST: the identity distance (f's descriptor: dlib's network on the model's chip) between each
   held-out face and its own stylisation, against its distance to the other person's stylised faces: the
   share of faces closer to their own drawing than to the nearest (and than to the median) other drawing.
3. Performance: dlib's landmarks on each stylised crop (found as on generated faces,
   `find_aligned_landmarks`) against the crop's own landmarks: the share of frames whose mean point error
   is within 5% of the crop (a frame where dlib finds no face fails); flicker, the mean absolute change
   between consecutive frames inside the face box, stylised over the plate crops'.
4. References, because two of the issue's bars can be passed by doing nothing useful: the source faces
   themselves, unstylised (their LPIPS to their cartoon is what a model must beat to have learnt
   anything of the domain), and one constant face, the mean of the crops' landmarks for every frame
   (aligned crops put every face in the same place, so a face that never moves is within 5% on every
   frame). Following the performance is therefore also measured as the correlation over the frames of
   the head's yaw and the mouth's opening (`measure_attributes`) on the drawings against the plate's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from common import print_table

from pipeline.faces.attributes import (
    ALIGNED_FACE_BOX,
    GEOMETRIC_ATTRIBUTES,
    find_aligned_landmarks,
    measure_attributes,
)
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylize.cartoon import cartoon
from pipeline.stylize.dtn_train import (
    list_faces,
    load_stylizer,
    read_faces,
    stylizer_features,
    to_tensor,
    to_uint8,
)


def crops_and_landmarks(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crops at `size`, their landmarks there, and the procedural cartoon of each made at the crop's
    own size and reduced to `size` (as the target folder is made: `vfx cartoon` on the crops as
    extracted, the training reading them at its resolution)."""
    files = list_faces(folder)
    crops = read_faces(files, size)
    landmarks, truth = [], []
    for f in files:
        info = json.loads(f.with_suffix(".json").read_text())
        landmarks.append((np.array(info["landmarks"]) + 0.5) * size / info["size"] - 0.5)
        drawn = cartoon(read_faces([f], int(info["size"]))[0])
        truth.append(cv2.resize(drawn, (size, size), interpolation=cv2.INTER_AREA))
    return crops, np.stack(landmarks), np.stack(truth)


def flicker(crops: np.ndarray) -> float:
    """Mean absolute change (0-255) between consecutive crops inside the aligned face box."""
    r = crops.shape[1]
    left, top, right, bottom = (int(round(v * r)) for v in ALIGNED_FACE_BOX)
    box = crops[:, top:bottom, left:right].astype(np.float32)
    return float(np.abs(np.diff(box, axis=0)).mean())


def measure(
    model: Path, source: np.ndarray, landmarks: np.ndarray, cartoons: np.ndarray, other: np.ndarray, lpips
) -> dict:
    g, rest = load_stylizer(model, "cpu")
    f = stylizer_features(rest, "cpu")
    x, y = to_tensor(source), to_tensor(other)
    with torch.no_grad():
        gx = torch.cat([g(*f(x[i : i + 16]), x[i : i + 16]) for i in range(0, len(x), 16)])
        gy = torch.cat([g(*f(y[i : i + 16]), y[i : i + 16]) for i in range(0, len(y), 16)])
        truth = to_tensor(cartoons)
        domain = float(lpips.between(gx, truth).mean())
        vx, vgx, vgy = f(x)[1], f(gx)[1], f(gy)[1]
    own = (vgx - vx).norm(dim=1)
    others = torch.cdist(vx, vgy)
    closer_min = float((own < others.min(dim=1).values).float().mean())
    closer_median = float((own < others.median(dim=1).values).float().mean())
    drawn = to_uint8(gx)
    found_lm, found = find_aligned_landmarks(drawn)
    return {
        "steps": rest["meta"].get("steps"),
        "weights": rest["meta"].get("weights"),
        "domain": domain,
        "own": float(own.mean()),
        "closer_min": closer_min,
        "closer_median": closer_median,
        **follows(found_lm, found, landmarks, source.shape[1]),
        "flicker": flicker(drawn) / max(flicker(source), 1e-9),
    }


def follows(found_lm: np.ndarray, found: np.ndarray, landmarks: np.ndarray, r: int) -> dict:
    """How the drawn faces' landmarks follow the plate's: the share within 5% of the crop, the median
    error, and the correlation over frames of yaw and mouth_open (NaN where dlib found too few)."""
    error = np.linalg.norm(found_lm - landmarks, axis=2).mean(axis=1) / r
    within = float(np.mean(found & (np.nan_to_num(error, nan=1.0) <= 0.05)))
    out = {
        "found": float(found.mean()),
        "within5": within,
        "error": float(np.nanmedian(error)) if found.any() else float("nan"),
    }
    plate = measure_attributes(landmarks, (r, r))
    for name in ("yaw", "mouth_open"):
        k = GEOMETRIC_ATTRIBUTES.index(name)
        if found.sum() >= 10:
            drawn = measure_attributes(found_lm[found], (r, r))[:, k]
            out[name] = float(np.corrcoef(drawn, plate[found, k])[0, 1])
        else:
            out[name] = float("nan")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, action="append", required=True, help="a DTN (repeatable)")
    ap.add_argument("--baseline", type=Path, required=True)
    ap.add_argument("--source", type=Path, required=True, help="held-out crops of the source person")
    ap.add_argument("--other", type=Path, required=True, help="held-out crops of another person")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    size = load_stylizer(args.model[0], "cpu")[0].cfg.resolution
    source, landmarks, cartoons = crops_and_landmarks(args.source, size)
    other, _, _ = crops_and_landmarks(args.other, size)
    print(f"{len(source)} held-out source faces, {len(other)} of another person, {size} px", flush=True)
    lpips = load_lpips("vgg")
    with torch.no_grad():
        truth = to_tensor(cartoons)
        as_is = float(lpips.between(to_tensor(source), truth).mean())
    r = source.shape[1]
    constant = follows(
        np.repeat(landmarks.mean(0)[None], len(landmarks), 0), np.ones(len(source), bool), landmarks, r
    )
    plate_lm, plate_found = find_aligned_landmarks(source)
    plate = follows(plate_lm, plate_found, landmarks, r)
    rows = [
        [
            "the source faces, unstylised",
            "-",
            f"{as_is:.4f}",
            "-",
            "-",
            f"{plate['found']:.0%}",
            f"{plate['within5']:.0%}",
            f"{plate['error']:.3f}",
            f"{plate['yaw']:.2f} / {plate['mouth_open']:.2f}",
            "1.00",
        ],
        [
            "one constant face (the mean landmarks)",
            "-",
            "-",
            "-",
            "-",
            "-",
            f"{constant['within5']:.0%}",
            f"{constant['error']:.3f}",
            "- / -",
            "0.00",
        ],
    ]
    for name, path in [*(("DTN", m) for m in args.model), ("plain autoencoder", args.baseline)]:
        t = time.perf_counter()
        m = measure(path, source, landmarks, cartoons, other, lpips)
        print(f"{name} {path}: {m} ({time.perf_counter() - t:.0f} s)", flush=True)
        rows.append(
            [
                f"{name} {path.name}",
                f"{m['steps']}",
                f"{m['domain']:.4f}",
                f"{m['own']:.3f}",
                f"{m['closer_min']:.0%} / {m['closer_median']:.0%}",
                f"{m['found']:.0%}",
                f"{m['within5']:.0%}",
                f"{m['error']:.3f}",
                f"{m['yaw']:.2f} / {m['mouth_open']:.2f}",
                f"{m['flicker']:.2f}",
            ]
        )
    print()
    print_table(
        [
            "model",
            "steps",
            "LPIPS to cartoon(x)",
            "d(x, g(x))",
            "closer than other (min / median)",
            "dlib finds",
            "landmarks within 5%",
            "median error",
            "r yaw / mouth",
            "flicker / plate",
        ],
        rows,
    )
    print(
        "bars: DTN LPIPS below the baseline's; closer (min) >= 90%; landmarks within 5% >= 90%; "
        "flicker <= 1.2"
    )


if __name__ == "__main__":
    main()
