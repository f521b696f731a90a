"""Head pose (yaw, pitch, roll) from 68-point landmarks, by fitting a generic 3D face to them.

Works for any landmarks with dlib's 68-point semantics (dlib's own, or a mesh mapped by
`mesh.mesh_to_68`). Only points that stay put on a face are used: eye corners, the nose and the mouth
corners. The jaw is left out because its 2D points are the visible silhouette, which slides over the 3D
face as it turns; the brows, lips and chin move with expressions.

The 3D points are MediaPipe's canonical face model (mediapipe/modules/face_geometry/data/
canonical_face_model.obj, in cm) at the mesh points `mesh.MESH_TO_68` maps to these semantics, in
OpenCV's camera axes: x to the image's right, y down, z away from the camera.

The camera is a centred pinhole whose focal length puts the face 1 m away (from the landmarks' spread
against the model's), or is the image width if that is longer. The plate's lens is unknown, and the
distance matters: a focal length of the image width puts a face filling 40% of the frame 40 cm from the
lens, whose strong perspective the fit then explains with too little rotation (on the woman clip's turns
it found half the yaw that a 1 m distance, an orthographic fit of the mesh's own 3D points and the eye
agree on). Filmed faces are rarely nearer than a metre, and farther changes the angles little.

Conventions, in degrees:
- yaw > 0: the face turned toward the image's left (its nose points left in the image);
- pitch > 0: the face tilted up (chin up, nose pointing up in the image);
- roll > 0: the face tilted clockwise in the image (the eye line going down to the right), the same sense
  as the angle of `align.ffhq_params`.
The rotation from model to camera is Rz(roll) Rx(-pitch) Ry(yaw).
"""

from __future__ import annotations

import cv2
import numpy as np

RIGID_POINTS = (27, 30, 31, 33, 35, 36, 39, 42, 45, 48, 54)  # nose, eye corners, mouth corners
FACE_MODEL = np.array(
    [
        [0.0, -2.872, -5.512],  # 27 top of the nose bridge
        [0.0, 0.463, -7.587],  # 30 nose tip
        [-1.044, 1.465, -5.662],  # 31 nostril, image left
        [0.0, 2.089, -6.058],  # 33 under the nose
        [1.044, 1.465, -5.662],  # 35 nostril, image right
        [-4.446, -2.664, -3.173],  # 36 outer corner of the image-left eye
        [-1.856, -2.585, -3.758],  # 39 its inner corner
        [1.856, -2.585, -3.758],  # 42 inner corner of the image-right eye
        [4.446, -2.664, -3.173],  # 45 its outer corner
        [-2.456, 4.343, -4.284],  # 48 mouth corner, image left
        [2.456, 4.343, -4.284],  # 54 mouth corner, image right
    ]
)


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The model-to-camera rotation of a head pose given in degrees (the module's conventions)."""
    y, p, r = np.radians([yaw, -pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def angles(matrix: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation made as `rotation` makes it."""
    yaw = np.degrees(np.arctan2(-matrix[2, 0], matrix[2, 2]))
    pitch = -np.degrees(np.arcsin(np.clip(matrix[2, 1], -1, 1)))
    roll = np.degrees(np.arctan2(-matrix[0, 1], matrix[1, 1]))
    return float(yaw), float(pitch), float(roll)


FACE_DISTANCE_CM = 100.0


def spread(points: np.ndarray) -> float:
    """RMS distance of points from their centroid (in x and y only)."""
    xy = np.asarray(points, np.float64)[:, :2]
    return float(np.sqrt(((xy - xy.mean(0)) ** 2).sum(1).mean()))


def camera_matrix(image_size: tuple[int, int], image_points: np.ndarray) -> np.ndarray:
    """The assumed pinhole camera of an image of (width, height) pixels showing these model points."""
    w, h = image_size
    f = max(float(w), FACE_DISTANCE_CM * spread(image_points) / spread(FACE_MODEL))
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], np.float64)


def head_pose(landmarks68: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a face from its 68 landmarks in an image of (width, height) pixels.

    OpenCV's EPnP solution seeds its iterative (Levenberg-Marquardt) refinement of the reprojection error.
    """
    image_points = np.asarray(landmarks68, np.float64)[list(RIGID_POINTS)]
    k = camera_matrix(image_size, image_points)
    ok, rvec, tvec = cv2.solvePnP(FACE_MODEL, image_points, k, None, flags=cv2.SOLVEPNP_EPNP)
    ok, rvec, tvec = cv2.solvePnP(
        FACE_MODEL, image_points, k, None, rvec, tvec, useExtrinsicGuess=ok, flags=cv2.SOLVEPNP_ITERATIVE
    )
    return angles(cv2.Rodrigues(rvec)[0])
