"""Faces on plates graded as a camera or a colourist leaves them: where their 68 points land, before and
after the dark-face stretch (`landmark_view`).

    .venv/bin/python bench/graded_faces.py [--frames N]

The first N frames of the woman and man clips (anonymous, never a public figure's) are graded by the
pipeline's ffmpeg: underexposed (18% of the levels, with temporal noise), flat (a log-like grade: 35%
contrast about a raised black), overexposed (220%, clipped), tungsten (blue at 35%, green at 70%), motion
blur (5 frames mixed) and crushed (half size, CRF 40). dlib's 68 points on the ungraded frames, fitted as
they are (the default detector, `FaceAnalyzer()`, with `LANDMARK_LEVELS = 0`), are the truth; each graded
frame's face is found the same way, before the
stretch (`LANDMARK_LEVELS = 0`, the old fitting) and now. Columns: faces found; mean point error and
frame-to-frame jitter (a point's distance from the mean of its neighbours in time), both in eye distances;
and dlib's identity descriptor distance from the ungraded frame's (the actor's threshold is 0.6), on every
8th frame. The script measures; it exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
from common import make_clip, print_table

import pipeline.faces.detect as detect
from pipeline.faces.detect import FaceAnalyzer, identity_distance
from pipeline.media.decode import MoviePlate

FOOTAGE = Path(__file__).resolve().parents[1].parent / "shared" / "footage"
CLIPS = ("woman_headturns_512.mp4", "man_glasses_720x1280.mp4")
CODEC = ("-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p")
GRADES = {
    "ungraded": ("null", CODEC),
    "underexposed": ("lutrgb=r=val*0.18:g=val*0.18:b=val*0.18,noise=alls=6:allf=t", CODEC),
    "flat": ("lutrgb=r=96+val*0.35:g=96+val*0.35:b=96+val*0.35", CODEC),
    "overexposed": ("lutrgb=r=val*2.2:g=val*2.2:b=val*2.2", CODEC),
    "tungsten": ("colorchannelmixer=rr=1.0:gg=0.7:bb=0.35", CODEC),
    "motion blur": ("tmix=frames=5", CODEC),
    "crushed": ("scale=iw/2:ih/2", ("-c:v", "libx264", "-crf", "40", "-pix_fmt", "yuv420p")),
}
EMBED_EVERY = 8


def jitter(points: np.ndarray, eyes: np.ndarray) -> float:
    """Mean distance of each point from the mean of its neighbours in time, in eye distances."""
    middle = np.linalg.norm(points[1:-1] - (points[:-2] + points[2:]) / 2, axis=2).mean(1)
    return float(np.nanmean(middle / eyes[1:-1]))


def fit(analyzer: FaceAnalyzer, frames: list[np.ndarray], scale: float, levels: int) -> tuple:
    """Each frame's first face's 68 points (NaN where none, scaled back to the ungraded size) and, every
    EMBED_EVERY frames, its descriptor, with `LANDMARK_LEVELS` at `levels`."""
    detect.LANDMARK_LEVELS = levels
    points, descriptors = [], []
    for i, frame in enumerate(frames):
        faces = analyzer.detect(frame, embed=i % EMBED_EVERY == 0)
        points.append(faces[0].landmarks * scale if faces else np.full((68, 2), np.nan))
        if i % EMBED_EVERY == 0:
            descriptors.append(faces[0].embedding if faces else None)
    return np.array(points), descriptors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=96, help="the first N frames of each clip (%(default)s)")
    args = ap.parse_args()
    print(f"{platform.node()}, {platform.processor() or platform.machine()}")
    analyzer, now = FaceAnalyzer(), detect.LANDMARK_LEVELS
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in CLIPS:
            graded = {}
            for name, (vf, codec) in GRADES.items():
                out = make_clip(FOOTAGE / clip, args.frames, vf, Path(tmp) / f"{name}.mp4", codec)
                graded[name] = list(MoviePlate(out).read(0, args.frames))
            truth, truth_descriptors = fit(analyzer, graded["ungraded"], 1.0, 0)
            eyes = np.linalg.norm(truth[:, 36:42].mean(1) - truth[:, 42:48].mean(1), axis=1)
            for name, frames in graded.items():
                if name == "ungraded":
                    continue
                scale = graded["ungraded"][0].shape[0] / frames[0].shape[0]
                row = [clip, name]
                for levels in (0, now):
                    points, descriptors = fit(analyzer, frames, scale, levels)
                    found = int(np.isfinite(points[:, 0, 0]).sum())
                    error = np.nanmean(np.linalg.norm(points - truth, axis=2).mean(1) / eyes)
                    distances = [
                        identity_distance(a, b)
                        for a, b in zip(descriptors, truth_descriptors, strict=True)
                        if a is not None and b is not None
                    ]
                    row += [
                        f"{found}",
                        f"{error:.3f}",
                        f"{jitter(points, eyes):.4f}",
                        f"{min(distances):.2f}-{max(distances):.2f}",
                    ]
                cells.append(row)
            detect.LANDMARK_LEVELS = now
    print(f"the first {args.frames} frames; before: LANDMARK_LEVELS = 0, now: {now}")
    header = ["clip", "grade"]
    for when in ("before", "now"):
        header += [f"{when} found", f"{when} error", f"{when} jitter", f"{when} identity"]
    print_table(header, cells)


if __name__ == "__main__":
    main()
