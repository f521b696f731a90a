"""Small faces in big plates: BlazeFace on the whole frame against the whole frame plus tiles.

    .venv/bin/python bench/small_faces.py [--plates N] [--repeats N] [--widths 60,80,...]

Real faces (the two anonymous clips' frontal frames: the woman and the man, never a public figure's) are
cut out with a feathered edge, scaled so dlib's box is W px wide, and pasted six to a plate, each in its
own cell of a 3 x 2 grid at a random place, on a 1920x1080 and a 3840x2160 plate whose background is a
mosaic of the man clip's face-free ceiling and shirt, upscaled for UHD. A face counts as found when a
detection's centre lies in its box and the detection is 0.5-2 times its width; a second such detection is
a duplicate, a detection on no face a false one. Rates are found / pasted for:

- `MeshFaceModel.detections` (BlazeFace alone),
- `FaceAnalyzer(landmarks="dlib68").detect` (HOG at 640 px; BlazeFace proposes what HOG cannot see there),
- `FaceAnalyzer(landmarks="mesh").detect` (BlazeFace, then the mesh's presence check),

each with the whole frame only (pipeline.faces.mesh.TILE_FROM set past the plate) and with tiles (the
default). The dlib68 path looks for small faces only on a frame where HOG found none: where HOG finds some
of the six faces near its limit (1080p 160 px, UHD 300 px: 50-53 px at its 640 px detection size), the
others are not looked for, tiles or not. `--tiled-short` tries other tile sizes. Timings are the best of
N repeats, whole and tiled interleaved, on a plate with six 100 px faces (detections, mesh) and on one with
no face (dlib68, where the small-face pass runs). The script measures; it exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import dlib
import numpy as np
from common import print_table

import pipeline.faces.mesh as mesh
from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.mesh import MeshFaceModel
from pipeline.media.decode import contiguous

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
PLATES = {"1080p": (1920, 1080), "UHD": (3840, 2160)}
WIDTHS = (60, 80, 100, 120, 160, 200, 250, 300)
CELLS = (3, 2)  # faces per plate: one in each cell of this grid


def frames(name: str, indices: list[int]) -> list[np.ndarray]:
    out = []
    with av.open(str(FOOTAGE / name)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in indices:
                out.append(contiguous(frame.to_ndarray(format="rgb24")))
            if i >= max(indices):
                break
    return out


def background(size: tuple[int, int]) -> np.ndarray:
    """A 1080p mosaic of the man clip's ceiling (rows 0-190) and shirt (rows 1000-1280), mirrored in turn
    (no face in it), upscaled when the plate is bigger."""
    strips = []
    for k, f in enumerate(frames("man_glasses_720x1280.mp4", [0, 80, 160, 240, 320])):
        for part in (f[0:190], f[1000:1280]):
            strips.append(part[:, ::-1] if k % 2 else part)
    rows, i = [], 0
    while sum(r.shape[0] for r in rows) < 1080:
        row = []
        while sum(p.shape[1] for p in row) < 1920:
            part = strips[i % len(strips)]
            row.append(cv2.resize(part, (720, 190)))
            i += 1
        rows.append(np.concatenate(row, 1)[:, :1920])
    plate = np.ascontiguousarray(np.concatenate(rows, 0)[:1080])
    return plate if size == (1920, 1080) else cv2.resize(plate, size, interpolation=cv2.INTER_CUBIC)


def face_cuts() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(patch, alpha, dlib box in the patch) for each frontal face: a square twice dlib's box, feathered."""
    hog = dlib.get_frontal_face_detector()
    cuts = []
    sources = [
        ("woman_headturns_512.mp4", list(range(0, 354, 30))),
        ("man_glasses_720x1280.mp4", [0, 150, 300]),
    ]
    for name, indices in sources:
        for f in frames(name, indices):
            rects = hog(f, 0)
            if not rects:
                continue  # turned too far for HOG: not a fair test of the HOG path
            r = rects[0]
            box = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64)
            c, half = (box[:2] + box[2:]) / 2, (box[2] - box[0])
            x0, y0 = (max(0, int(v)) for v in c - half)
            x1, y1 = min(f.shape[1], int(c[0] + half)), min(f.shape[0], int(c[1] + half))
            patch = f[y0:y1, x0:x1]
            alpha = np.zeros(patch.shape[:2], np.float32)
            centre = (int(c[0] - x0), int(c[1] - y0))
            cv2.ellipse(alpha, centre, (int(half * 0.85), int(half * 0.95)), 0, 0, 360, 1.0, -1)
            alpha = cv2.GaussianBlur(alpha, (0, 0), half * 0.08)
            cuts.append((patch, alpha, box - [x0, y0, x0, y0]))
    return cuts


def paste_plate(bg: np.ndarray, cuts, width: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """The background with one face `width` px wide (dlib's box) in each grid cell; the faces' boxes."""
    plate = bg.astype(np.float32)
    h, w = bg.shape[:2]
    cw, ch = w // CELLS[0], h // CELLS[1]
    boxes = []
    for cy in range(CELLS[1]):
        for cx in range(CELLS[0]):
            patch, alpha, box = cuts[rng.integers(len(cuts))]
            s = width / (box[2] - box[0])
            p = cv2.resize(patch, None, fx=s, fy=s, interpolation=cv2.INTER_AREA).astype(np.float32)
            a = cv2.resize(alpha, (p.shape[1], p.shape[0]), interpolation=cv2.INTER_AREA)[..., None]
            ph, pw = p.shape[:2]
            x = min(w - pw, cx * cw + rng.integers(0, max(1, cw - pw)))  # a big face's patch may
            y = min(h - ph, cy * ch + rng.integers(0, max(1, ch - ph)))  # overlap its neighbour's edge
            plate[y : y + ph, x : x + pw] = plate[y : y + ph, x : x + pw] * (1 - a) + p * a
            boxes.append(box * s + [x, y, x, y])
    return np.clip(plate + 0.5, 0, 255).astype(np.uint8), boxes


def score(found: list[np.ndarray], truth: list[np.ndarray]) -> tuple[int, int, int]:
    """(faces found, duplicates, false detections)."""
    hits, dup, matched = 0, 0, set()
    for t in truth:
        tw = t[2] - t[0]
        n = 0
        for i, b in enumerate(found):
            c = (b[:2] + b[2:]) / 2
            if t[0] <= c[0] <= t[2] and t[1] <= c[1] <= t[3] and 0.5 * tw <= b[2] - b[0] <= 2 * tw:
                n += 1
                matched.add(i)
        hits += n > 0
        dup += max(0, n - 1)
    return hits, dup, len(found) - len(matched)


@contextlib.contextmanager
def whole_frame_only() -> Iterator[None]:
    saved = mesh.TILE_FROM
    mesh.TILE_FROM = 10**9
    try:
        yield
    finally:
        mesh.TILE_FROM = saved


def whole_frame_call(fn: Callable[[np.ndarray], object], image: np.ndarray) -> None:
    with whole_frame_only():
        fn(image)


def best_ms(repeats: int, fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Each callable's fastest run over the repeats, interleaved with a rotating start, in ms."""
    names, runs = list(fns), {name: [] for name in fns}
    for i in range(repeats):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t = time.perf_counter()
            fns[name]()
            runs[name].append(time.perf_counter() - t)
    return {name: min(r) * 1000 for name, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--plates", type=int, default=2, help="plates per width and plate size (6 faces each)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    parser.add_argument("--tiled-short", type=int, default=mesh.TILED_SHORT, help="try other tiles (px)")
    args = parser.parse_args()
    mesh.TILED_SHORT = args.tiled_short
    widths = [int(v) for v in args.widths.split(",")]
    print(f"# small faces: {platform.node()}, {platform.processor() or platform.machine()}")
    cuts = face_cuts()
    print(f"{len(cuts)} frontal faces cut from the two anonymous clips; {CELLS[0] * CELLS[1]} per plate")
    blaze = MeshFaceModel(iris=False)
    dlib68, meshes = FaceAnalyzer(landmarks="dlib68"), FaceAnalyzer(landmarks="mesh")
    methods: dict[str, Callable[[np.ndarray], list[np.ndarray]]] = {
        "detections": lambda im: [b for b, _, _ in blaze.detections(im)],
        "dlib68": lambda im: [f.box for f in dlib68.detect(im)],
        "mesh": lambda im: [f.box for f in meshes.detect(im)],
    }
    rng = np.random.default_rng(7)
    timings = {}
    for plate_name, size in PLATES.items():
        bg = background(size)
        tallies = {}  # (method, mode, width) -> [found, pasted, duplicates, false]
        for width in widths:
            for _ in range(args.plates):
                plate, truth = paste_plate(bg, cuts, width, rng)
                for mode in ("whole", "tiled"):
                    with whole_frame_only() if mode == "whole" else contextlib.nullcontext():
                        for method, fn in methods.items():
                            hits, dup, false = score(fn(plate), truth)
                            t = tallies.setdefault((method, mode, width), [0, 0, 0, 0])
                            for i, v in enumerate((hits, len(truth), dup, false)):
                                t[i] += v
        cells = []
        for method in methods:
            for mode in ("whole", "tiled"):
                row = [plate_name, method, mode]
                for width in widths:
                    hits, n, dup, false = tallies[(method, mode, width)]
                    extra = "".join(f" {v}{k}" for k, v in (("d", dup), ("f", false)) if v)
                    row.append(f"{hits}/{n}{extra}")
                cells.append(row)
        print_table(["plate", "method", "frames", *[f"{w} px" for w in widths]], cells)
        print("(d: duplicate detections of a face, f: false detections)\n")
        busy, _ = paste_plate(bg, cuts, 100, rng)

        fns = {}
        for what, fn, image in (
            ("detections", blaze.detections, busy),
            ("dlib68 (no face)", dlib68.detect, bg),
            ("mesh (6 faces)", meshes.detect, busy),
        ):
            fns[f"{what}, whole"] = functools.partial(whole_frame_call, fn, image)
            fns[f"{what}, tiled"] = functools.partial(fn, image)
        timings[plate_name] = best_ms(args.repeats, fns)
    cells = []
    for plate_name, t in timings.items():
        for what in ("detections", "dlib68 (no face)", "mesh (6 faces)"):
            a, b = t[f"{what}, whole"], t[f"{what}, tiled"]
            cells.append([plate_name, what, f"{a:.1f}", f"{b:.1f}", f"{b / a:.2f}x"])
    print_table(["plate", "call", "whole ms/frame", "tiled ms/frame", "tiled/whole"], cells)
    grids = {k: mesh.tile_grid(h, w) for k, (w, h) in PLATES.items()}
    sides = {k: round(192 * w / nw) for k, (w, h) in PLATES.items() for nw in [grids[k][0][0]]}
    print("tiles: " + ", ".join(f"{k}: {len(grids[k][1])} of {sides[k]} px" for k in PLATES))


if __name__ == "__main__":
    main()
