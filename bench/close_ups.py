"""Close-ups: faces that fill the frame or run past its edges, found by each detection path.

    .venv/bin/python bench/close_ups.py [--every N]

Every Nth of the first 240 frames of the woman and man clips (anonymous, never a public figure's) is
zoomed about its face's centre (HOG's box on the frame as it is) by 1, 1.5, 2, 2.5, 3 and 4, keeping the
frame's size: at 2x the woman's face is 1.2 times the frame's width. Each detection path runs on every
zoomed frame; a frame counts when the path finds a face, and the error is the distance between the FFHQ
crop centre of the found 68 points and that of dlib's 68 points on the unzoomed frame carried through the
zoom, in eye distances (median over the frames found). Rows: `FaceAnalyzer()` (dlib68: HOG, and
BlazeFace proposing faces too small for it), `FaceAnalyzer(landmarks="mesh")` (BlazeFace, which looks
again with the frame shrunk into its input where the whole frame gives nothing: `CLOSE_UP_ZOOMS`) and
the mesh path with that second look turned off (`CLOSE_UP_ZOOMS = ()`). Milliseconds are the mean per
frame. The script measures; it exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import cv2
import numpy as np
from common import detect_against_truth, print_table

import pipeline.faces.mesh as mesh
from pipeline.faces.align import ffhq_params
from pipeline.faces.detect import FaceAnalyzer
from pipeline.media.decode import MoviePlate

FOOTAGE = Path(__file__).resolve().parents[1].parent / "shared" / "footage"
CLIPS = ("woman_headturns_512.mp4", "man_glasses_720x1280.mp4")
ZOOMS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def zoomed(frame: np.ndarray, centre: np.ndarray, zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame scaled by `zoom` about `centre`, which lands in the middle; and the 2x3 matrix."""
    h, w = frame.shape[:2]
    m = np.array([[zoom, 0, w / 2 - zoom * centre[0]], [0, zoom, h / 2 - zoom * centre[1]]])
    return cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR), m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=8, help="every Nth of the first 240 frames (%(default)s)")
    args = ap.parse_args()
    print(f"{platform.node()}, {platform.processor() or platform.machine()}")
    hog, mesh_path = FaceAnalyzer(), FaceAnalyzer(landmarks="mesh")
    cells = []
    for clip in CLIPS:
        plate = MoviePlate(FOOTAGE / clip)
        frames = [
            f for i, f in enumerate(plate.read(0, min(240, plate.info.frame_count))) if i % args.every == 0
        ]
        truth = []
        for f in frames:
            faces = hog.detect(f)
            if faces:
                truth.append((f, (faces[0].box[:2] + faces[0].box[2:]) / 2, faces[0].landmarks))
        for zoom in ZOOMS:
            row = [clip, f"{zoom:g}x", f"{len(truth)}"]
            for name in ("dlib68", "mesh", "mesh, whole frame only"):
                analyzer = hog if name == "dlib68" else mesh_path
                saved = mesh.CLOSE_UP_ZOOMS
                if name.endswith("only"):
                    mesh.CLOSE_UP_ZOOMS = ()
                found, errors, seconds = 0, [], 0.0
                try:
                    for f, centre, landmarks in truth:
                        image, m = zoomed(f, centre, zoom)
                        faces, want, eyes, took = detect_against_truth(analyzer, image, landmarks, m)
                        seconds += took
                        if faces:
                            found += 1
                            got = ffhq_params(faces[0].landmarks)[:2]
                            errors.append(np.abs(got - ffhq_params(want)[:2]).max() / eyes)
                finally:
                    mesh.CLOSE_UP_ZOOMS = saved
                error = f"{np.median(errors):.3f}" if errors else "-"
                row.append(f"{found} ({error}, {1000 * seconds / len(truth):.0f} ms)")
            cells.append(row)
    print(
        "found (median centre error in eye distances, ms a frame), by zoom about the face; frames: those "
        "where HOG finds the face unzoomed"
    )
    print_table(["clip", "zoom", "frames", "dlib68", "mesh", "mesh, whole frame only"], cells)


if __name__ == "__main__":
    main()
