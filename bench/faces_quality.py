"""Face-track quality on the real clips: alignment jitter raw and smoothed, the landmark error smoothing
costs, the optical-flow content jitter of the aligned crops (a check that does not use the detector), and
the jitter of the matte's outline with and without smoothing the landmarks in the crop (sigma 0, 1, 1.5
and 2 frames), on the clip and on its first frame held still under noise (where nothing should move).

    .venv/bin/python bench/faces_quality.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.quality import OUTLINE, alignment_jitter, content_jitter, landmark_error, outline_jitter
from pipeline.faces.track import TrackSettings, build_track, detect_frames
from pipeline.media.decode import MoviePlate

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
CLIPS = ("talking_head_mpeg4_512.mp4", "woman_headturns_512.mp4")
OUTLINE_CLIPS = (*CLIPS, "man_glasses_720x1280.mp4")
OUTLINE_FRAMES = 200  # frames of each clip for the outline figures
HELD_FRAMES, HELD_NOISE = 48, 3.0  # the first frame held, under Gaussian noise of this many 8-bit steps
SIGMAS = (0.0, 1.0, 1.5, 2.0)


def outline_row(analyzer: FaceAnalyzer, frames: list[np.ndarray], still: bool) -> str:
    """Outline jitter at each sigma, how far smoothing moves the points (mean, crop units) and, for a held
    frame, their mean distance from their median (where they should all be)."""
    found = detect_frames(analyzer, zip(range(len(frames)), frames, strict=True))
    tracks = [build_track(found, TrackSettings(smooth_landmarks=s)) for s in SIGMAS]
    points = [t.crop_landmarks(1)[:, OUTLINE] for t in tracks]
    cells = [f"{outline_jitter(t):.4f}" for t in tracks]
    cells += [f"{np.nanmean(np.linalg.norm(p - points[0], axis=-1)):.4f}" for p in points[1:]]
    if still:
        median = np.nanmedian(points[0], axis=0)
        cells += [f"{np.nanmean(np.linalg.norm(p - median, axis=-1)):.4f}" for p in points]
    return "  ".join(cells)


def outline_figures(analyzer: FaceAnalyzer) -> None:
    print(
        f"\nmatte outline (jaw and brows) jitter, first {OUTLINE_FRAMES} frames; sigmas {SIGMAS}: jitter at "
        "each, then how far each moves the points; held: the first frame held, then the points' mean "
        "distance from their median at each sigma (crop units)"
    )
    rng = np.random.default_rng(0)
    for name in OUTLINE_CLIPS:
        plate = MoviePlate(FOOTAGE / name)
        frames = list(plate.read(0, min(OUTLINE_FRAMES, plate.info.frame_count)))
        print(f"{name}  {outline_row(analyzer, frames, still=False)}")
        first = frames[0].astype(np.float32)
        held = [
            np.clip(first + rng.normal(0, HELD_NOISE, first.shape), 0, 255).astype(np.uint8)
            for _ in range(HELD_FRAMES)
        ]
        print(f"{name} held  {outline_row(analyzer, held, still=True)}")


def main() -> int:
    if not FOOTAGE.is_dir():
        sys.exit(f"bench/faces_quality.py: footage not found at {FOOTAGE}")
    analyzer = FaceAnalyzer()
    print(
        "units: fractions of the crop size; settings: TrackSettings() defaults "
        f"{TrackSettings().smooth_center}/{TrackSettings().smooth_size}/{TrackSettings().smooth_rotation}"
    )
    header = (
        "clip",
        "detected",
        "align jitter raw",
        "smoothed",
        "ratio",
        "landmark err",
        "content jitter raw",
        "smoothed",
    )
    print("  ".join(header))
    for name in CLIPS:
        t = time.perf_counter()
        plate = MoviePlate(FOOTAGE / name)
        frames = list(plate.read(0, plate.info.frame_count))
        found = detect_frames(analyzer, zip(range(len(frames)), frames, strict=True))
        track = build_track(found, TrackSettings())
        raw, smooth = alignment_jitter(track.raw_params), alignment_jitter(track.params)
        err = landmark_error(track.params, track.raw_params, track.landmarks)
        c_raw = content_jitter(frames, track.raw_params, track.landmarks)
        c_smooth = content_jitter(frames, track.params, track.landmarks)
        print(
            f"{name}  {100 * track.detected.mean():.1f}%  {raw:.5f}  {smooth:.5f}  {raw / smooth:.1f}x  "
            f"{err:.4f}  {c_raw:.5f}  {c_smooth:.5f}   ({time.perf_counter() - t:.0f} s)"
        )
    outline_figures(analyzer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
