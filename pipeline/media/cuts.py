"""Camera cuts in a plate: where one camera shot ends and the next begins.

The measure is PySceneDetect's ContentDetector (scenedetect/detectors/content_detector.py, BSD-3): each
frame in HSV, the mean absolute difference of hue, saturation and value from the previous frame, averaged
over the three channels (its default weights 1, 1, 1, 0 without edges), on OpenCV's 8-bit HSV scale (hue
0-179). Here the frame is first reduced to a small signature (SIGNATURE_SIZE square, INTER_AREA), which
keeps the score cheap beside face detection and about as discriminating: a cut changes the whole picture,
not its detail. A frame whose score reaches the threshold starts a new camera shot, unless it comes less
than `min_scene` frames after the previous start (a flash or a fast whip pan scores high on a few frames in
a row).

The default threshold was measured on the footage in ../shared/footage (64 px signatures): between
consecutive frames of one clip the score is at most 4.7 (strong head turns), 4.4 (a busy handheld
background, centre-cropped square) and 10.8 (an MPEG-4 talking head, its keyframes); between frames of two
different clips at least 51.6. CUT_THRESHOLD sits at about the geometric middle, 2.2x from either side.
A jump cut within one clip (the same person before the same background) scores only 8-18, within real
motion: it is found by how much it stands out from its neighbours instead (ADAPTIVE_RATIO).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import cv2
import numpy as np

from pipeline.media.color import to_uint8

SIGNATURE_SIZE = 64
CUT_THRESHOLD = 24.0  # ContentDetector's scale: see the module docstring for the measured margins
MIN_SCENE = 8  # frames: a new camera shot starts at least this long after the previous one
# A jump cut (one person, one background) scores no more than real motion does (8-18 against up to 11 on
# the clips), but it stands out from its neighbours: PySceneDetect's AdaptiveDetector compares each score
# with the mean of WINDOW frames on either side (its defaults: 3.0 and 2). Measured: at most 2.4 within
# the clips, 3.1-9.7 at jump cuts.
ADAPTIVE_RATIO = 3.0
WINDOW = 2


def frame_signature(frame: np.ndarray) -> np.ndarray:
    """A small HSV copy of an RGB frame (any depth), the input of `change_score`."""
    small = cv2.resize(to_uint8(frame), (SIGNATURE_SIZE, SIGNATURE_SIZE), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2HSV).astype(np.int16)


def change_score(previous: np.ndarray, current: np.ndarray) -> float:
    """How much the picture changed between two signatures: the mean over H, S and V of the mean absolute
    difference (0 for the same picture, up to about 200)."""
    return float(np.abs(current - previous).mean())


def change_scores(frames: Iterable[np.ndarray], previous: np.ndarray | None = None) -> Iterator[float]:
    """The change score of each frame against the one before it (`previous` for the first; NaN without)."""
    before = None if previous is None else frame_signature(previous)
    for frame in frames:
        now = frame_signature(frame)
        yield np.nan if before is None else change_score(before, now)
        before = now


def is_cut(score: float, neighbours: Sequence[float], threshold: float | None = CUT_THRESHOLD) -> bool:
    """Whether a frame with this change score starts a new camera shot: a score at the threshold, or (a jump
    cut, same place and same people) at least a quarter of it and ADAPTIVE_RATIO times the mean score of its
    neighbouring frames. None: cut detection is off."""
    if threshold is None or not np.isfinite(score):
        return False
    if score >= threshold:
        return True
    around = [x for x in neighbours if np.isfinite(x)]
    return bool(around) and score >= threshold / 4 and score >= ADAPTIVE_RATIO * float(np.mean(around))


def could_be_cut(scores: Sequence[float], i: int, threshold: float | None = CUT_THRESHOLD) -> bool:
    """Whether frame i of a run of scores may be a cut that `find_cuts` finds on the whole plate, when the
    run is part of it (a chunk of frames): as `is_cut` where the run has its WINDOW neighbours on both
    sides, and yes near the run's ends whenever the score reaches a quarter of the threshold (those lack
    neighbours the whole plate has). Never no where find_cuts may say yes."""
    if threshold is None or not np.isfinite(scores[i]) or scores[i] < threshold / 4:
        return False
    around = [*scores[max(0, i - WINDOW) : i], *scores[i + 1 : i + 1 + WINDOW]]
    if len(around) < 2 * WINDOW or not np.isfinite(around).all():
        return True
    return is_cut(scores[i], around, threshold)


def find_cuts(
    scores: Sequence[float] | np.ndarray, threshold: float | None = CUT_THRESHOLD, min_scene: int = MIN_SCENE
) -> list[int]:
    """Indices of the frames that start a new camera shot, from each frame's change score against the frame
    before (NaN where unknown: never a cut; index 0 starts the first camera shot). Each frame is judged
    against WINDOW frames on either side; a cut less than `min_scene` frames after the previous start is
    not one."""
    values = np.asarray(scores, np.float64)
    cuts: list[int] = []
    start = 0
    for i in range(1, len(values)):
        around = [*values[max(0, i - WINDOW) : i], *values[i + 1 : i + 1 + WINDOW]]
        if i - start >= min_scene and is_cut(values[i], around, threshold):
            cuts.append(i)
            start = i
    return cuts


def plate_cuts(
    frames: Iterable[np.ndarray], threshold: float | None = CUT_THRESHOLD, min_scene: int = MIN_SCENE
) -> tuple[np.ndarray, list[int]]:
    """The change score of every frame and the indices of the cuts, for a whole plate."""
    scores = np.fromiter(change_scores(frames), np.float64)
    return scores, find_cuts(scores, threshold, min_scene)
