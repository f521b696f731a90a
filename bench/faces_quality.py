"""Face-track quality on the real clips: alignment jitter raw and smoothed, the landmark error smoothing
costs, and the optical-flow content jitter of the aligned crops (a check that does not use the detector).

    .venv/bin/python bench/faces_quality.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.quality import alignment_jitter, content_jitter, landmark_error
from pipeline.faces.track import TrackSettings, build_track, detect_frames
from pipeline.media.decode import MoviePlate

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
CLIPS = ("talking_head_mpeg4_512.mp4", "woman_headturns_512.mp4")


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
