"""Faces: detection, landmarks, FFHQ alignment, tracking over a shot, masks and paste-back."""

from pipeline.faces.align import align_face, crop_matrix, ffhq_params, paste_back, transform_points
from pipeline.faces.detect import Face, FaceAnalyzer, identity_distance
from pipeline.faces.masks import landmark_mask
from pipeline.faces.track import FaceTrack, FrameFaces, TrackSettings, build_track, detect_frames

__all__ = [
    "Face",
    "FaceAnalyzer",
    "FaceTrack",
    "FrameFaces",
    "TrackSettings",
    "align_face",
    "build_track",
    "crop_matrix",
    "detect_frames",
    "ffhq_params",
    "identity_distance",
    "landmark_mask",
    "paste_back",
    "transform_points",
]
