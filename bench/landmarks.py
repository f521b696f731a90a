"""Landmark backends side by side on the real clips: dlib (HOG + 68 points) and MediaPipe's mesh mapped to
the 68 points (faces/mesh.py), each frame on its own (no tracking, no smoothing).

    OMP_NUM_THREADS=1 .venv/bin/python bench/landmarks.py

Per clip and backend: the share of frames with a face, on all frames and on the turned ones; the raw
alignment jitter (`quality.alignment_jitter` of each frame's `ffhq_params`); the largest frame-to-frame
change of the crop size; seconds per frame (detection and landmarks, decoding excluded, one thread); and
the mesh's distance to dlib's points on frontal frames. A frame's head pose is the mesh's (`pose.head_pose`
of its 68 points), or dlib's where the mesh found no face; "turned" is |yaw| at least TURNED degrees,
"frontal" below FRONTAL. A second table lists the expressive frames (open mouth: the inner-lip gap, points
62-66, at least OPEN of the crop size by the mesh): each run of them and its widest-open frame, with both
backends' mouth opening and how far the chin (8) is below the lower lip (57); frame numbers count from 0
in the clip. The script measures; it exits 0.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import print_table

from pipeline.faces.align import ffhq_params
from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.mesh import MeshFaceModel
from pipeline.faces.pose import head_pose
from pipeline.faces.quality import alignment_jitter
from pipeline.media.decode import MoviePlate

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
CLIPS = ("woman_headturns_512.mp4", "man_glasses_720x1280.mp4")
TURNED, FRONTAL = (15.0, 30.0), 20.0  # degrees of |yaw|
OPEN = 0.08  # inner-lip gap over crop size for an expressive (open-mouth) frame


@dataclass
class ClipRun:
    name: str
    landmarks: dict[str, np.ndarray]  # backend -> (N, 68, 2), NaN where no face
    seconds: dict[str, float]  # backend -> seconds per frame
    yaw: np.ndarray  # (N,), NaN where neither backend found a face


def largest_landmarks(faces: list, mesh: bool) -> np.ndarray:
    if not faces:
        return np.full((68, 2), np.nan)
    return faces[0].landmarks68 if mesh else faces[0].landmarks


def run_clip(name: str, dlib_model: FaceAnalyzer, mesh_model: MeshFaceModel) -> ClipRun:
    plate = MoviePlate(FOOTAGE / name)
    size = (plate.info.width, plate.info.height)
    marks: dict[str, list[np.ndarray]] = {"dlib": [], "mesh": []}
    spent = {"dlib": 0.0, "mesh": 0.0}
    yaw = []
    for frame in plate.read(0, plate.info.frame_count):
        for backend, detect in (("dlib", dlib_model.detect), ("mesh", mesh_model.detect)):
            t = time.perf_counter()
            faces = detect(frame)
            spent[backend] += time.perf_counter() - t
            marks[backend].append(largest_landmarks(faces, backend == "mesh"))
        posed = next((lm for lm in (marks["mesh"][-1], marks["dlib"][-1]) if not np.isnan(lm[0, 0])), None)
        yaw.append(np.nan if posed is None else head_pose(posed, size)[0])
    n = len(yaw)
    return ClipRun(name, {k: np.array(v) for k, v in marks.items()}, {k: v / n for k, v in spent.items()},
                   np.array(yaw))  # fmt: skip


def params_of(landmarks: np.ndarray) -> np.ndarray:
    return np.array([np.full(4, np.nan) if np.isnan(lm[0, 0]) else ffhq_params(lm) for lm in landmarks])


def largest_size_jump(params: np.ndarray) -> tuple[float, int]:
    """max |s_t / s_(t-1) - 1| over consecutive frames that both have a face, and the frame t."""
    jumps = np.abs(params[1:, 2] / params[:-1, 2] - 1)
    if np.isnan(jumps).all():
        return float("nan"), -1
    t = int(np.nanargmax(jumps))
    return float(jumps[t]), t + 1


def runs_of(flags: np.ndarray, bridge: int = 5) -> list[tuple[int, int]]:
    """[start, stop) of each run of True, runs less than `bridge` frames apart joined into one."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    spans: list[tuple[int, int]] = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if spans and a - spans[-1][1] < bridge:
            spans[-1] = (spans[-1][0], int(b))
        else:
            spans.append((int(a), int(b)))
    return spans


def expressive_rows(run: ClipRun, params: dict[str, np.ndarray]) -> list[tuple[str, ...]]:
    """The widest-open frame of each run of open-mouth frames (by the mesh), or of the clip if none is
    open: both backends' inner-lip gap and chin drop below the lower lip, along the face's downward axis
    (the mesh's crop orientation), over the mesh's crop size."""
    marks, size, angle = run.landmarks, params["mesh"][:, 2], params["mesh"][:, 3]
    gap = np.linalg.norm(marks["mesh"][:, 62] - marks["mesh"][:, 66], axis=-1) / size
    gap = np.nan_to_num(gap, nan=-1.0)
    spans = runs_of(gap >= OPEN) or [(int(gap.argmax()), int(gap.argmax()) + 1)]
    rows = []
    for a, b in spans:
        i = a + int(gap[a:b].argmax())
        down = np.array([-np.sin(angle[i]), np.cos(angle[i])])
        figures = []
        for backend in ("dlib", "mesh"):
            lm = marks[backend][i]
            figures += [np.linalg.norm(lm[62] - lm[66]) / size[i], (lm[8] - lm[57]) @ down / size[i]]
        span = f"{a}-{b - 1}" if gap[a] >= OPEN else "none open; widest"
        rows.append((run.name, span, str(i), *(f"{v:.3f}" for v in figures)))
    return rows


def share(found: np.ndarray, where: np.ndarray) -> str:
    n = int(where.sum())
    return f"{100 * found[where].mean():.1f}% of {n}" if n else "no frames"


def main() -> int:
    if not FOOTAGE.is_dir():
        sys.exit(f"bench/landmarks.py: footage not found at {FOOTAGE}")
    dlib_model, mesh_model = FaceAnalyzer(), MeshFaceModel(num_threads=1)
    runs = [run_clip(name, dlib_model, mesh_model) for name in CLIPS]

    rows, expressive = [], []
    for run in runs:
        params = {k: params_of(v) for k, v in run.landmarks.items()}
        found = {k: ~np.isnan(v[:, 0]) for k, v in params.items()}
        posed = ~np.isnan(run.yaw)
        frontal = posed & (np.abs(np.nan_to_num(run.yaw)) < FRONTAL) & found["dlib"] & found["mesh"]
        error = (
            np.linalg.norm(run.landmarks["mesh"] - run.landmarks["dlib"], axis=-1).mean(1)
            / params["dlib"][:, 2]
        )
        for backend in ("dlib", "mesh"):
            jump, at = largest_size_jump(params[backend])
            rows.append(
                (
                    run.name,
                    backend,
                    f"{100 * found[backend].mean():.1f}%",
                    *(share(found[backend], posed & (np.abs(np.nan_to_num(run.yaw)) >= t)) for t in TURNED),
                    f"{alignment_jitter(params[backend]):.5f}",
                    f"{jump:.3f} (frame {at})",
                    "reference"
                    if backend == "dlib"
                    else f"{np.mean(error[frontal]):.4f} ({frontal.sum()} frames)",
                    f"{run.seconds[backend]:.3f}",
                )
            )
        expressive += expressive_rows(run, params)
        yaw = run.yaw[posed]
        print(
            f"{run.name}: {len(run.yaw)} frames, yaw from {yaw.min():.1f} to {yaw.max():.1f} degrees; "
            f"{(np.abs(yaw) >= TURNED[0]).sum()} frames at |yaw| >= {TURNED[0]:.0f}"
        )
    print()
    print_table(
        (
            "clip",
            "backend",
            "face found",
            f"on turned (|yaw|>={TURNED[0]:.0f})",
            f"on turned (|yaw|>={TURNED[1]:.0f})",
            "align jitter raw",
            "largest size jump",
            f"error vs dlib, frontal (|yaw|<{FRONTAL:.0f})",
            "s/frame",
        ),
        rows,
    )
    print()
    print(
        f"Expressive frames: runs where the mesh's inner-lip gap (62-66) is at least {OPEN} of its crop size,"
        " each run's widest-open frame; chin: point 8 below point 57 along the face's downward axis; figures"
        " over the mesh's crop size."
    )
    print()
    header = ("clip", "open frames", "widest", "mouth gap dlib", "chin below lip dlib", "mouth gap mesh")
    print_table((*header, "chin below lip mesh"), expressive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
