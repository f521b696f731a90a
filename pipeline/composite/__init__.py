"""Compositing a new face into the plate: colour transfer, blending, plate matching, elements."""

from pipeline.composite.alter import ALTERATIONS, alter_face
from pipeline.composite.blend import BLEND_MODES, FaceElement, blend, blend_into, seam_score
from pipeline.composite.color import COLOR_METHODS, mean_lab_difference, transfer_color
from pipeline.composite.match import (
    blur_sigmas,
    blur_to_match,
    finish_face,
    match_grain,
    motion_streak,
    noise_sigma,
    sharpen,
)

__all__ = [
    "ALTERATIONS",
    "BLEND_MODES",
    "COLOR_METHODS",
    "FaceElement",
    "alter_face",
    "blend",
    "blend_into",
    "blur_sigmas",
    "blur_to_match",
    "finish_face",
    "match_grain",
    "mean_lab_difference",
    "motion_streak",
    "noise_sigma",
    "seam_score",
    "sharpen",
    "transfer_color",
]
