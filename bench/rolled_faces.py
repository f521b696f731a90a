"""Faces rolled in the image plane: found, and where their 68 points land, by detection path.

    .venv/bin/python bench/rolled_faces.py [--every N]

Every Nth of the first 240 frames of the woman and man clips (anonymous, never a public figure's) is
turned about its centre by 0, 30, 45, 60, 75, 90 and 135 degrees, on a grey canvas that keeps its corners
(mirrored edges would hold mirrored faces). dlib's 68 points on the unturned frame, carried through the
turn, are the truth; the error is the median distance of the found face's points from it, in eye
distances (median over the frames found). Rows: `FaceAnalyzer()` (dlib68: HOG, with BlazeFace proposing
the faces HOG cannot see, rolled ones turned upright for it), `FaceAnalyzer(detector="hog")` (HOG alone)
and `FaceAnalyzer(landmarks="mesh")`. Milliseconds are the mean per frame. The script measures; it exits
0 whatever it finds.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import cv2
import numpy as np
from common import detect_against_truth, print_table

from pipeline.faces.detect import FaceAnalyzer
from pipeline.media.decode import MoviePlate

FOOTAGE = Path(__file__).resolve().parents[1].parent / "shared" / "footage"
CLIPS = ("woman_headturns_512.mp4", "man_glasses_720x1280.mp4")
DEGREES = (0, 30, 45, 60, 75, 90, 135)


def turned(frame: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame turned counterclockwise by `degrees` on a canvas that holds it whole; and the 2x3 matrix."""
    h, w = frame.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * s + w * c), int(h * c + w * s)
    m[:, 2] += (nw / 2 - w / 2, nh / 2 - h / 2)
    return cv2.warpAffine(frame, m, (nw, nh), borderValue=(90, 90, 90)), m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=16, help="every Nth of the first 240 frames (%(default)s)")
    args = ap.parse_args()
    print(f"{platform.node()}, {platform.processor() or platform.machine()}")
    paths = {
        "dlib68": FaceAnalyzer(),
        "HOG alone": FaceAnalyzer(detector="hog"),
        "mesh": FaceAnalyzer(landmarks="mesh"),
    }
    cells = []
    for clip in CLIPS:
        plate = MoviePlate(FOOTAGE / clip)
        first = plate.read(0, min(240, plate.info.frame_count))
        truth = [
            (f, faces[0].landmarks)
            for i, f in enumerate(first)
            if i % args.every == 0 and (faces := paths["dlib68"].detect(f))
        ]
        for degrees in DEGREES:
            row = [clip, f"{degrees}", f"{len(truth)}"]
            for analyzer in paths.values():
                errors, seconds = [], 0.0
                for f, landmarks in truth:
                    image, m = turned(f, degrees)
                    faces, want, eyes, took = detect_against_truth(analyzer, image, landmarks, m)
                    seconds += took
                    if faces:
                        errors.append(np.median(np.linalg.norm(faces[0].landmarks - want, axis=1)) / eyes)
                error = f"{np.median(errors):.3f}" if errors else "-"
                row.append(f"{len(errors)} ({error}, {1000 * seconds / len(truth):.0f} ms)")
            cells.append(row)
    print(
        "found (median point error in eye distances, ms a frame), by turn; frames: those with a face unturned"
    )
    print_table(["clip", "degrees", "frames", *paths], cells)


if __name__ == "__main__":
    main()
