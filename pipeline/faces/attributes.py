"""Geometric face attributes measured from 68 landmarks (dlib's semantics), and those landmarks found on
aligned crops (a generator's faces): what attribute recognisers learn and what edits are judged by.

The measures, in the order of GEOMETRIC_ATTRIBUTES:
- yaw, pitch, roll: head pose in degrees, `pose.head_pose`'s fit and conventions (yaw > 0: the nose
  points to the image's left; pitch > 0: chin up; roll > 0: the eye line goes down to the right).
- mouth_open: the gap between the inner lips (the mean of the three vertical pairs 61-67, 62-66, 63-65),
  over the inter-ocular distance. The inner lips, because the outer lip line moves with lip thickness and
  pouting; three pairs, because a single pair is noisier on a blurred mouth and the three agree on what
  "open" is (0 for a closed mouth).
- smile_width: the distance between the mouth's corners (48-54) over the inter-ocular distance: a
  smile pulls the corners apart (and a pout brings them together).
- left_eye_open, right_eye_open: the eye aspect ratio of Soukupová & Čech (2016, "Real-Time Eye Blink
  Detection using Facial Landmarks"): the two lid-to-lid heights over twice the corner-to-corner width,
  (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|). It is about 0.3 for an open eye, near 0 for a closed one, and
  needs no other normaliser (each eye is its own scale). Left and right are the image's: left_eye_open
  is the eye on the image's left (points 36-41, the person's right eye), as pose.py names sides.
- brow_raise: the distance from each brow's centre (17-21, 22-26) to the midpoint of the same side's eye
  corners (36-39, 42-45), averaged over the sides, over the inter-ocular distance. The eye corners are
  fixed to the skull, so a blink does not move this measure as it would an eyelid-based one.

The ratios are scale-free: divided by the inter-ocular distance (between the midpoints of each eye's
corners: about the distance FFHQ alignment scales by, and unmoved by the eyelids), so one face at any size
measures the same. A turned head foreshortens that
distance by cos(yaw): a 30 degree yaw reads mouth_open and brow_raise about 15% higher. The recognisers
learn the measures as defined, so an edit is judged by the same rule it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.faces.detect import FaceAnalyzer, box_iou
from pipeline.faces.pose import head_pose

if TYPE_CHECKING:
    from pipeline.faces.descriptor import FaceDescriptorNet

GEOMETRIC_ATTRIBUTES: tuple[str, ...] = (
    "yaw",
    "pitch",
    "roll",
    "mouth_open",
    "smile_width",
    "left_eye_open",
    "right_eye_open",
    "brow_raise",
)
UNITS = {"yaw": "degrees", "pitch": "degrees", "roll": "degrees"}  # the others: ratios
# What a face flipped left to right measures: yaw and roll change sign, the eyes change places.
MIRRORED = {
    "yaw": ("yaw", -1.0),
    "roll": ("roll", -1.0),
    "left_eye_open": ("right_eye_open", 1.0),
    "right_eye_open": ("left_eye_open", 1.0),
}

INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
MOUTH_CORNERS = (48, 54)
LEFT_EYE, RIGHT_EYE = tuple(range(36, 42)), tuple(range(42, 48))  # the image's left and right
LEFT_BROW, RIGHT_BROW = tuple(range(17, 22)), tuple(range(22, 27))


def mirrored(name: str) -> tuple[str, float]:
    """The attribute whose value, times the sign, a face flipped left to right has as `name` (any other
    attribute, a label like glasses included, is its own mirror)."""
    return MIRRORED.get(name, (name, 1.0))


def interocular(landmarks68: np.ndarray) -> np.ndarray:
    """The distance between the eyes' centres, each the midpoint of its corners (which a blink does not
    move, as it moves the mean of the eye's six points): [...] for landmarks [..., 68, 2]."""
    lm = np.asarray(landmarks68, np.float64)
    left = (lm[..., 36, :] + lm[..., 39, :]) / 2
    right = (lm[..., 42, :] + lm[..., 45, :]) / 2
    return np.linalg.norm(left - right, axis=-1)


def eye_aspect_ratio(eye: np.ndarray) -> np.ndarray:
    """Soukupová & Čech's EAR of one eye's six points [..., 6, 2] in dlib's order (outer corner, two upper
    lid points, inner corner, two lower lid points, for the image-left eye; mirrored for the other)."""
    e = np.asarray(eye, np.float64)
    height = np.linalg.norm(e[..., 1, :] - e[..., 5, :], axis=-1) + np.linalg.norm(
        e[..., 2, :] - e[..., 4, :], axis=-1
    )
    return height / (2 * np.linalg.norm(e[..., 0, :] - e[..., 3, :], axis=-1))


def _distance(lm: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(lm[..., a, :] - lm[..., b, :], axis=-1)


def measure_attributes(landmarks68: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """The GEOMETRIC_ATTRIBUTES of a face's 68 landmarks [68, 2] (or of N faces [N, 68, 2]) in an image of
    (width, height) pixels (which the pose fit's camera needs): [8] or [N, 8], float64."""
    lm = np.asarray(landmarks68, np.float64)
    if lm.shape[-2:] != (68, 2) or lm.ndim not in (2, 3):
        raise ValueError(f"landmarks of shape {list(lm.shape)}; give [68, 2] or [N, 68, 2]")
    flat = lm.reshape(-1, 68, 2)
    pose = np.array([head_pose(face, image_size) for face in flat], np.float64).reshape(-1, 3)
    iod = interocular(flat)
    mouth_open = np.mean([_distance(flat, a, b) for a, b in INNER_LIP_PAIRS], axis=0) / iod
    smile_width = _distance(flat, *MOUTH_CORNERS) / iod
    left_eye = eye_aspect_ratio(flat[:, LEFT_EYE])
    right_eye = eye_aspect_ratio(flat[:, RIGHT_EYE])
    brow = np.mean(
        [
            np.linalg.norm(flat[:, brow].mean(1) - (flat[:, eye[0]] + flat[:, eye[3]]) / 2, axis=-1)
            for brow, eye in ((LEFT_BROW, LEFT_EYE), (RIGHT_BROW, RIGHT_EYE))
        ],
        axis=0,
    )
    brow_raise = brow / iod
    out = np.column_stack([pose, mouth_open, smile_width, left_eye, right_eye, brow_raise])
    return out.reshape(*lm.shape[:-2], len(GEOMETRIC_ATTRIBUTES))


# ---------------------------------------------------------------------------------------------------
# Landmarks on aligned crops

# Where dlib's HOG detector puts the face's box in an FFHQ-aligned crop, as fractions of its side (left,
# top, right, bottom): the median over 59 of the 353 real 256 px crops of the project's two people
# (vfx extract; all found). A generated face is drawn where its training crops had theirs.
ALIGNED_FACE_BOX = (0.18, 0.30, 0.76, 0.89)
LANDMARK_SIZE = 256  # crops are enlarged to this for dlib: its HOG detector finds no face under 80 px
MIN_BOX_IOU = 0.4  # a detection overlapping the expected box less than this is some other thing


def find_aligned_landmarks(
    crops: np.ndarray, analyzer: FaceAnalyzer | None = None, size: int = LANDMARK_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """dlib's 68 landmarks on aligned face crops [N, R, R, 3] (uint8 RGB, a generator's faces at any
    size R): ([N, 68, 2] float64 in the crops' pixel coordinates, NaN where none; [N] bool found).

    Each crop is enlarged (bicubic) to `size` when smaller, and dlib's HOG detector looks for the face:
    its box is what dlib's shape predictor was trained on (a fixed box moves the lips' points by 8% of the
    inter-ocular distance on the median generated face), and a crop where it finds no face overlapping
    ALIGNED_FACE_BOX is not a face dlib can measure: it is reported not found, not guessed.
    """
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[3] != 3 or crops.shape[1] != crops.shape[2]:
        raise ValueError(f"crops of shape {list(crops.shape)}; give square RGB crops [N, R, R, 3]")
    analyzer = analyzer or FaceAnalyzer(detector="hog", landmarks="dlib68")
    n, res = crops.shape[0], crops.shape[1]
    big = max(size, res)
    expected = np.array(ALIGNED_FACE_BOX) * big
    landmarks = np.full((n, 68, 2), np.nan)
    found = np.zeros(n, bool)
    for i, crop in enumerate(crops):
        image = crop if big == res else cv2.resize(crop, (big, big), interpolation=cv2.INTER_CUBIC)
        faces = analyzer.detect(np.ascontiguousarray(image))
        overlaps = [box_iou(face.box, expected) for face in faces]
        if not faces or max(overlaps) < MIN_BOX_IOU:
            continue
        face = faces[int(np.argmax(overlaps))]
        # pixel centres: x_small + 0.5 = (x_big + 0.5) * res / big
        landmarks[i] = (face.landmarks.astype(np.float64) + 0.5) * (res / big) - 0.5
        found[i] = True
    return landmarks, found


@dataclass(frozen=True)
class FaceMeasures:
    """What dlib sees on a set of aligned crops: landmarks [N, 68, 2], found [N], the geometric attributes
    [N, len(GEOMETRIC_ATTRIBUTES)] and the identity descriptors [N, 128] (NaN where no face was found)."""

    landmarks: np.ndarray
    found: np.ndarray
    attributes: np.ndarray
    descriptors: np.ndarray


def measure_faces(
    crops: np.ndarray, analyzer: FaceAnalyzer | None = None, descriptor: FaceDescriptorNet | None = None
) -> FaceMeasures:
    """Landmarks, attributes and identity descriptors of aligned crops [N, R, R, 3] (uint8 RGB): how edits
    are judged independently of the recognisers they were trained against. The descriptors are dlib's
    (the torch port, within 4e-7 of it) on chips cut from each crop's own landmarks."""
    import torch

    from pipeline.faces.descriptor import chip_transforms, extract_chips, load_face_descriptor

    crops = np.asarray(crops)
    landmarks, found = find_aligned_landmarks(crops, analyzer)
    n, size = len(crops), crops.shape[1]
    attributes = np.full((n, len(GEOMETRIC_ATTRIBUTES)), np.nan)
    descriptors = np.full((n, 128), np.nan)
    idx = np.flatnonzero(found)
    if len(idx):
        attributes[idx] = measure_attributes(landmarks[idx], (size, size))
        net = descriptor or load_face_descriptor()
        images = torch.from_numpy(crops[idx]).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            chips = extract_chips(images, chip_transforms(landmarks[idx]))
            descriptors[idx] = net(chips.to(next(net.parameters()).device)).cpu().numpy()
    return FaceMeasures(landmarks, found, attributes, descriptors)
