"""The new face's blur on a panning plate: what `composite.blur` (the edges), `composite.shutter` (the
tracked motion) and both give, against the streak the plate was made with, and what each costs.

    .venv/bin/python bench/face_blur.py [--frames N] [--shutter DEGREES]

The plate is the woman clip's first frame panned PAN px a frame (on a canvas widened so that her face stays
on it) and box-blurred along the pan by PAN x shutter / 360 px, as a camera with that shutter draws it; the
new faces are the same frames unblurred, aligned as the shot's track aligns them, as a sharp model's faces
come. Each frame's blur is read from the Compositor (FrameComposite.blur), in crop pixels, and set beside
the box's own sigma (its length / sqrt(12)) in the same crop. The first and last 3 frames are left out of
the means: the track's smoothing reaches past the shot's ends there. The costs are `finish_face` with and
without each blur (rct and sharpening), on one core, interleaved, best of 5.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pipeline.composite import blur_sigmas, blur_to_match, finish_face, motion_streak
from pipeline.faces.align import align_face, plate_warp
from pipeline.manifest import load_shot
from pipeline.media.decode import MoviePlate
from pipeline.media.sequences import write_frame
from pipeline.shot.composite import Compositor
from pipeline.shot.track import detect_range, finish_track

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
CLIP = "woman_headturns_512.mp4"
PANS = (4, 8, 16, 32, 48)  # px a frame
SETTINGS = {"edges": "{blur: true}", "shutter": "{shutter: %g}", "both": "{blur: true, shutter: %g}"}
EDGE = 3  # frames left out at each end of the means
COST_SETTINGS = ("no blur", "composite.blur", "composite.shutter")


class SharpFaces:
    """The frame chain's link that hands in the unblurred frames' faces."""

    draws_own_faces = False
    frame_by_frame = True

    def __init__(self, crops: dict[int, np.ndarray]):
        self.crops = crops

    def __call__(self, numbers, faces, masks):
        return [self.crops[n] for n in numbers], masks


def box(length: float) -> np.ndarray:
    """A 1 x n kernel: a box of `length` px, centred, its end pixels partly covered."""
    n = int(np.ceil(length)) | 1
    centre = (n - 1) / 2
    kernel = np.clip(length / 2 + 0.5 - np.abs(np.arange(n) - centre), 0, 1).astype(np.float32)[None, :]
    return kernel / kernel.sum()


def panned(first: np.ndarray, pan: int, frames: int, shutter: float) -> tuple[list, list]:
    """The sharp and the motion-blurred frames of the pan."""
    h, w = first.shape[:2]
    extra = pan * frames
    wide = cv2.copyMakeBorder(first, 0, 0, extra // 2, extra - extra // 2, cv2.BORDER_REFLECT101)
    sharp, soft = [], []
    for k in range(frames):
        moved = cv2.warpAffine(
            wide,
            np.float32([[1, 0, pan * k - extra / 2], [0, 1, 0]]),
            (w + extra, h),
            borderMode=cv2.BORDER_REFLECT101,
        )
        sharp.append(moved)
        soft.append(cv2.filter2D(moved, -1, box(pan * shutter / 360), borderType=cv2.BORDER_REFLECT101))
    return sharp, soft


def accuracy(folder: Path, first: np.ndarray, frames: int, shutter: float) -> list[tuple]:
    """For each pan, the streak's sigma and each setting's mean (along, across, degrees off) over the
    middle frames, with how many frames got no blur."""
    rows = []
    for pan in PANS:
        sharp, soft = panned(first, pan, frames, shutter)
        plate = folder / f"pan{pan}"
        plate.mkdir()
        for k, frame in enumerate(soft, 1):
            write_frame(plate / f"p.{k:04d}.png", frame, "png8", {})
        track = None
        got = {}
        for name, composite in SETTINGS.items():
            manifest = folder / f"pan{pan}_{name}.yaml"
            spec = composite % shutter if "%" in composite else composite
            manifest.write_text(
                f"shot: pan\nplate: {{sequence: {plate}/p.####.png}}\nfaces: {{}}\ncomposite: {spec}\n",
                encoding="utf-8",
            )
            shot = load_shot(manifest)
            if track is None:
                track = finish_track(shot, detect_range(shot, 1, frames).faces, folder / f"pan{pan}.npz")
            compositor = Compositor(shot, track, [])
            size = compositor.size
            crops = {
                n: align_face(sharp[n - 1], track.params[track.index(n)], size, track.x_scale)[0]
                for n in range(1, frames + 1)
            }
            compositor.chain = [SharpFaces(crops)]
            numbers = list(range(1, frames + 1))
            got[name] = [d.blur for d in compositor.frames(numbers, [f.copy() for f in soft])][EDGE:-EDGE]
        length = pan * shutter / 360
        truth = []
        for n in range(1 + EDGE, frames + 1 - EDGE):
            along = track.matrix(n, compositor.size)[:, :2] @ [length, 0.0]
            truth.append(blur_sigmas(np.outer(along, along) / 12))
        want = np.array(truth)
        row = [pan, length, float(want[:, 0].mean())]
        for name in SETTINGS:
            found = np.array([b for b in got[name] if b is not None]).reshape(-1, 3)
            wanted = want[[b is not None for b in got[name]]]
            off = np.abs(found[:, 2] - wanted[:, 2])
            off = np.minimum(off, 180 - off)
            none = sum(b is None for b in got[name])
            if len(found):
                row.append(
                    f"{found[:, 0].mean():.2f} / {found[:, 1].mean():.2f} / {off.mean():.1f}"
                    + (f" ({none} none)" if none else "")
                )
            else:
                row.append(f"none ({none})")
        rows.append(tuple(row))
    return rows


def costs(first: np.ndarray, shutter: float) -> list[tuple]:
    """finish_face's ms a frame without a blur and with each, at crop 256 and 512, on one core."""
    cv2.setNumThreads(1)
    rows = []
    for size in (256, 512):
        sharp, soft = panned(first, 16, 1, shutter)
        params = np.array([256.0 + 8, 230.0, 520.0, 0.0])  # the face's square, about as the track puts it
        face = align_face(sharp[0], params, size)[0]
        crop, matrix = align_face(soft[0], params, size)
        matte = np.zeros((size, size), np.float32)
        cv2.ellipse(matte, (size // 2, size * 9 // 16), (size * 5 // 16, size * 3 // 8), 0, 0, 360, 1.0, -1)
        warp = plate_warp(matte, matrix, soft[0].shape)
        assert warp is not None
        part = warp.part
        streak = motion_streak(np.array([16.0 * size / 520, 0.0]), shutter)
        best = {}
        for _ in range(5):
            for name in COST_SETTINGS:
                t = time.perf_counter()
                for _ in range(10):
                    blur = None
                    if name != "no blur":
                        shutter_only = name == "composite.shutter"
                        blur = blur_to_match(
                            face[part],
                            crop[part],
                            matte[part],
                            edges=not shutter_only,
                            streak=streak if shutter_only else None,
                        )
                    finish_face(face, crop, matte, "rct", 0.3, part, blur)
                best[name] = min(best.get(name, np.inf), (time.perf_counter() - t) / 10 * 1000)
        rows.append((size, *(f"{best[n]:.2f}" for n in COST_SETTINGS)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16, help="frames of each pan (%(default)s)")
    ap.add_argument("--shutter", type=float, default=180.0, help="degrees (%(default)s)")
    args = ap.parse_args(argv)
    if not (FOOTAGE / CLIP).is_file():
        sys.exit(f"bench/face_blur.py: footage not found at {FOOTAGE}")
    first = next(MoviePlate(FOOTAGE / CLIP).read(0, 1))
    with tempfile.TemporaryDirectory() as tmp:
        rows = accuracy(Path(tmp), first, args.frames, args.shutter)
    print(
        f"pan of {CLIP}'s first frame, {args.frames} frames, box blur of pan x {args.shutter:g} / 360; "
        "crop px: sigma along / across / degrees off the motion, mean over frames "
        f"{1 + EDGE}-{args.frames - EDGE}"
    )
    print("| pan px a frame | streak px | streak's sigma | " + " | ".join(SETTINGS) + " |")
    print("|---" * (3 + len(SETTINGS)) + "|")
    for pan, length, sigma, *cells in rows:
        print(f"| {pan} | {length:.1f} | {sigma:.2f} | " + " | ".join(cells) + " |")
    print("\nfinish_face (rct, sharpen 0.3), ms a frame, one core, best of 5 x 10; a 16 px a frame pan:")
    print("| crop | " + " | ".join(COST_SETTINGS) + " |")
    print("|---|---|---|---|")
    for size, *cells in costs(first, args.shutter):
        print(f"| {size} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
