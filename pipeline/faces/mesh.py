"""Dense face landmarks: MediaPipe's full-range face detector, Face Mesh and Iris models, run by LiteRT.

Three small networks, each run on a crop the previous one chose, as MediaPipe's own graphs do
(mediapipe/modules/face_detection, face_landmark, iris_landmark; the pre- and post-processing below
follows their .pbtxt files, rewritten here in numpy and OpenCV):

- BlazeFace, full range (Bazarevsky et al. 2019, "BlazeFace: Sub-millisecond Neural Face Detection on
  Mobile GPUs"): the whole frame letterboxed to 192x192, values in [-1, 1]; a single-layer SSD of 48x48
  anchors of fixed unit size; scores are sigmoids, boxes and 6 keypoints offsets from the anchor centre in
  input pixels; overlapping detections (IoU > 0.3) are merged by score-weighted averaging.
- Face Mesh (Kartynnik et al. 2019, "Real-time Facial Surface Geometry from Monocular Video on Mobile
  GPUs"): a 192x192 crop, values in [0, 1], of the square 1.5 times the detector's box, rotated so the eyes
  are level; 468 points (x, y, z) in crop pixels and a face-presence logit.
- Iris (Ablavatski et al. 2020, "Real-time Pupil Tracking from Monocular Video for Digital Puppetry"): a
  64x64 crop of each eye, 2.3 times the span of its corners (33-133 and 362-263), the second eye mirrored;
  71 eye-contour, halo and brow points, of which the 16 of the lids replace the mesh's (MediaPipe's iris
  graph replaces all 71, but its brow points sit farther from dlib's brows than the mesh's own: 0.023 of
  the crop size against 0.012 at the brow ends on 28 frontal faces), and 5 iris points (centre, then four
  edges) appended as points 468-472 (the eye of corners 33/133, on the image's left in a frontal face) and
  473-477: the order of MediaPipe's 478-point refined mesh.

Why not MediaPipe itself: its wheels pin numpy<2; only the .tflite files of the 0.10 wheel are used.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.media.color import to_uint8
from pipeline.models import model_path

DETECT_SIZE, MESH_SIZE, IRIS_SIZE = 192, 192, 64
GRID = 48  # the full-range detector's single SSD layer: stride 4 over 192 px
NMS_IOU = 0.3
FACE_SCALE, EYE_SCALE = 1.5, 2.3  # crop square around the detector's box / the eye corners
MIN_PRESENCE = 0.5
# Tiles (`tile_grid`): on a frame whose long side is over TILE_FROM px, BlazeFace also looks at 192 px
# tiles of the frame scaled so its short side is TILED_SHORT px, overlapping by at least TILE_OVERLAP of
# their side; a tile's box within BORDER_MARGIN of its width of a tile edge inside the frame is dropped.
TILE_FROM = 1280
TILED_SHORT = 288  # tiles of 192/288 = 2/3 of the short side: 720 px at 1080p, 1440 at UHD
TILE_OVERLAP, BORDER_MARGIN = 1 / 3, 0.1
# A frame where BlazeFace finds nothing is looked at again shrunk this many times into the middle of its
# input (black around it), for a close-up's face, too big for the full-range model (`detections`)
CLOSE_UP_ZOOMS = (2.0, 3.0)
TILED_WHOLE_MIN = 16  # px in the whole frame's 192 px view: narrower whole-frame boxes are left to the tiles

# MediaPipe's contour orderings of the mesh (python/solutions/face_mesh_connections.py), as closed loops.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
"""The face outline, from the top of the forehead (10) down the image's right side to the chin (152) and
back up the other side: 36 points."""

# The 71 points the iris model returns for an eye (contour, halos and brow) as mesh indices, for the eye
# of corners 33/133 and (mirrored) 362/263: MediaPipe's update_face_landmarks_calculator.cc.
EYE_POINTS = (
    (
        33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 130, 25, 110, 24, 23,
        22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190, 226, 31, 228, 229, 230, 231, 232, 233, 244, 113,
        225, 224, 223, 222, 221, 189, 35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245,
        156, 70, 63, 105, 66, 107, 55, 193,
    ),
    (
        263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, 359, 255, 339, 254,
        253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414, 446, 261, 448, 449, 450, 451, 452, 453,
        464, 342, 445, 444, 443, 442, 441, 413, 265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349,
        350, 357, 465, 383, 300, 293, 334, 296, 336, 285, 417,
    ),
)  # fmt: skip
EYE_CONTOUR = 16  # the first 16 of the 71: the lid contour itself (lower 9 with the corners, upper 7)
EYE_CORNERS = ((33, 133), (362, 263))  # outer-inner, inner-outer: both run left to right in the image

# dlib's 68-point semantics on the mesh: each of the 68 is one mesh point or the mean of two. The usual
# table (jaw on the face oval), checked point by point against dlib on 28 frontal faces (stills, the woman
# and talking-head clips): mean distance 0.012 of dlib's FFHQ crop size, 0.006 at the eye corners, 0.02 on
# the jaw, whose dlib points follow the visible cheek edge rather than a fixed place on the face.
MESH_TO_68: tuple[tuple[int, ...], ...] = (
    # jaw, 0-16: the face oval from the image-left ear past the chin (8 = 152) to the other ear
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (378,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # brows, 17-26: outer to inner on the image-left brow, inner to outer on the other
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
    # nose bridge 27-30 down to the tip, nostrils 31-35
    (168, 6), (197,), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    # eyes 36-47: outer corner, upper lid, inner corner, lower lid; then inner corner first on the other
    (33,), (160,), (158,), (133,), (153,), (144,), (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lips 48-59 from the image-left corner, over the top, back under the bottom
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (405,), (314,), (17,), (84,), (181,),
    # inner lips 60-67
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)  # fmt: skip


_stderr_lock = threading.Lock()


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """LiteRT's C++ prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on the process's
    stderr when a model loads; a render's console and error output stay for what the user must read."""
    with _stderr_lock:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@dataclass
class MeshFace:
    """One face: the detector's box, score and 6 keypoints (eyes, nose tip, mouth, ears), and the mesh.

    `mesh` holds 478 points in plate pixels: the 468 of Face Mesh then 5 per iris. Without the iris model
    the 10 iris points are each eye's lid-contour mean (the iris centre's rough place; no iris size).
    `depth` is each point's relative z in plate pixels (smaller is nearer the camera), the mesh's scale.
    """

    box: np.ndarray  # (4,) left, top, right, bottom, plate pixels, float32
    score: float  # detector score (1.0 for a fit on a given box)
    presence: float  # the mesh model's probability that the crop holds a face
    keypoints: np.ndarray  # (6, 2) float32 plate pixels
    mesh: np.ndarray  # (478, 2) float32 plate pixels
    depth: np.ndarray  # (478,) float32

    @property
    def area(self) -> float:
        return float(max(0, self.box[2] - self.box[0]) * max(0, self.box[3] - self.box[1]))

    @property
    def landmarks68(self) -> np.ndarray:
        return mesh_to_68(self.mesh)


def mesh_to_68(mesh: np.ndarray) -> np.ndarray:
    """dlib's 68-point semantics from a mesh of at least 468 points: (68, 2) float32."""
    pts = np.asarray(mesh, np.float64)[:, :2]
    return np.array([pts[list(idx)].mean(0) for idx in MESH_TO_68], np.float32)


def face_outline(mesh: np.ndarray) -> np.ndarray:
    """The face-oval contour of a mesh, (36, 2), in FACE_OVAL's order."""
    return np.asarray(mesh, np.float32)[list(FACE_OVAL), :2]


# Detector decoding -------------------------------------------------------------------------------------


def ssd_anchors() -> np.ndarray:
    """(2304, 2) anchor centres in [0, 1]: one per cell of the 48x48 grid, unit size (fixed_anchor_size)."""
    c = (np.arange(GRID) + 0.5) / GRID
    y, x = np.meshgrid(c, c, indexing="ij")
    return np.stack([x.ravel(), y.ravel()], 1)


ANCHORS = ssd_anchors()


def decode_detections(
    regressors: np.ndarray, logits: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N, 4: x0, y0, x1, y1), keypoints (N, 6, 2) in [0, 1] of the detector's input, and scores,
    for the anchors scoring at least min_score."""
    scores = 1 / (1 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100, 100)))
    keep = scores >= min_score
    raw, anchors = regressors.reshape(-1, 16)[keep] / DETECT_SIZE, ANCHORS[keep]
    centre, half = raw[:, 0:2] + anchors, raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], 1)
    keypoints = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None]
    return boxes, keypoints, scores[keep]


def iou_with(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of a box with each of `boxes` (left, top, right, bottom). The union once
    counted the intersection twice, so weighted NMS merged at a true IoU of 0.43, not MediaPipe's 0.3: on
    small faces a stray anchor's box survived as a second face (10 of 240 80 px faces on a UHD plate)."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    areas = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, threshold: float = NMS_IOU
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression: the best remaining detection and every one overlapping
    it by more than `threshold` IoU merge into their score-weighted mean box and keypoints, keeping the
    best score. Averaging the many anchors that fire on a face steadies the box from frame to frame."""
    order = np.argsort(-scores)
    out = []
    while order.size:
        overlap = iou_with(boxes[order[0]], boxes[order]) > threshold
        group, order = order[overlap], order[~overlap]
        w = scores[group] / scores[group].sum()
        out.append(
            (
                (boxes[group] * w[:, None]).sum(0),
                (keypoints[group] * w[:, None, None]).sum(0),
                float(scores[group[0]]),
            )
        )
    return out


def tile_grid(h: int, w: int) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Where BlazeFace looks besides the whole frame: the size (width, height) the frame is scaled to, its
    short side TILED_SHORT px, and the top-left corners of the 192 px tiles cut from it, spread evenly
    from edge to edge and overlapping by at least TILE_OVERLAP of their side (1080p and UHD: 4 x 2 tiles
    of 2/3 the short side, 720 and 1440 px). No tiles on a frame whose long side is at most TILE_FROM (or
    whose short side is at most TILED_SHORT): ((w, h), []).

    A tile is seen at 192 px as the whole frame is, so it finds faces 2.7 times smaller on a 16:9 frame:
    measured (`bench/small_faces.py`), every face from 60 px at 1080p (whole frame: from 160) and from
    100 px at UHD (whole frame: from 300). Tiles of half the short side (15 of them) found 60-80 px UHD
    faces a little more often for 1.5 times the time; tiles of the whole short side (3) missed a quarter
    of the 120 px UHD faces. The overlap (a third of a tile and more: 240 px at 1080p, 480 at UHD) is
    wider than the faces left to the tiles (`TILED_WHOLE_MIN`), so each of them lies whole in some tile,
    clear of its inner edges (`cut_by_tile`)."""
    if max(h, w) <= TILE_FROM or min(h, w) <= TILED_SHORT:
        return (w, h), []
    f = TILED_SHORT / min(h, w)
    nw, nh = max(DETECT_SIZE, round(w * f)), max(DETECT_SIZE, round(h * f))
    stride = DETECT_SIZE * (1 - TILE_OVERLAP)

    def starts(length: int) -> list[int]:
        n = int(np.ceil((length - DETECT_SIZE) / stride)) + 1
        return [round(i * (length - DETECT_SIZE) / (n - 1)) for i in range(n)] if n > 1 else [0]

    return (nw, nh), [(x, y) for y in starts(nh) for x in starts(nw)]


def cut_by_tile(boxes: np.ndarray, inner: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """Which boxes (N, 4: x0, y0, x1, y1 in [0, 1] of a tile) reach within BORDER_MARGIN of their width of
    one of the tile's edges that lie inside the frame (`inner`: left, top, right, bottom): faces the edge
    may cut, whose box would be part of a face's."""
    margin = BORDER_MARGIN * (boxes[:, 2] - boxes[:, 0])
    cut = np.zeros(len(boxes), bool)
    for i, edge in enumerate(inner):
        if edge:
            cut |= boxes[:, i] < margin if i < 2 else boxes[:, i] > 1 - margin
    return cut


# Crops ------------------------------------------------------------------------------------------------


def square_matrix(centre: np.ndarray, size: float, angle: float, out: int) -> np.ndarray:
    """2x3 plate -> crop matrix of a square of side `size` plate pixels about `centre`, turned by `angle`
    radians (clockwise in the image: the crop's x axis runs along that direction), onto out x out pixels.
    Coordinates are OpenCV's (a pixel's centre is an integer), so the square's centre lands on the crop's
    centre, (out - 1) / 2."""
    k = out / size
    cos, sin = np.cos(angle), np.sin(angle)
    rot = k * np.array([[cos, sin], [-sin, cos]])
    return np.hstack([rot, ((out - 1) / 2 - rot @ np.asarray(centre, np.float64))[:, None]])


def to_plate(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Model outputs, in input pixels measured from the input's edge (MediaPipe's normalised coordinates
    times the input size), to plate pixels (OpenCV's, where pixel centres are integers)."""
    inverse = cv2.invertAffineTransform(matrix)
    return (np.asarray(points, np.float64) - 0.5) @ inverse[:, :2].T + inverse[:, 2]


def crop(image: np.ndarray, matrix: np.ndarray, out: int) -> np.ndarray:
    """The crop as float32 in [0, 1], edge pixels repeated past the frame (MediaPipe's BORDER_REPLICATE)."""
    return (
        cv2.warpAffine(
            image, matrix, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        ).astype(np.float32)
        / 255.0
    )


def eye_square(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Centre, side and angle of the eye crop from its two corners: the corners' bounding box scaled by
    2.3 and made square on its long side, turned level with the line from a to b."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    d = b - a
    return (lo + hi) / 2, float((hi - lo).max() * EYE_SCALE), float(np.arctan2(d[1], d[0]))


class MeshFaceModel:
    """MediaPipe's face detector, mesh and iris networks, each loaded once.

    A LiteRT interpreter holds its tensors, so an instance must not be shared between threads: make one
    per thread (as with dlib's FaceAnalyzer). `num_threads` is the interpreter's own thread count.
    """

    def __init__(
        self,
        detector_model: str | Path | None = None,
        mesh_model: str | Path | None = None,
        iris_model: str | Path | None = None,
        iris: bool = True,
        min_score: float = 0.5,
        num_threads: int = 1,
    ):
        from ai_edge_litert.interpreter import Interpreter

        def load(name: str, override: str | Path | None) -> Interpreter:
            path = str(model_path(name, override))
            with _native_stderr_silenced():
                interpreter = Interpreter(model_path=path, num_threads=num_threads)
                interpreter.allocate_tensors()
            return interpreter

        self.min_score = min_score
        self._detector = load("mediapipe_face_detector", detector_model)
        self._mesh = load("mediapipe_face_mesh", mesh_model)
        self._iris = load("mediapipe_iris", iris_model) if iris else None

    @staticmethod
    def _run(interpreter, tensor: np.ndarray) -> list[np.ndarray]:
        """The outputs, largest first (each model's outputs differ in size: points, then a flag or score)."""
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor[None].astype(np.float32))
        interpreter.invoke()
        outs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
        return sorted(outs, key=lambda a: -a.size)

    def detect(self, image: np.ndarray) -> list[MeshFace]:
        """Every face in an RGB frame, with its mesh, largest first; a face whose mesh model doubts it is a
        face (presence below 0.5) is dropped."""
        image = np.ascontiguousarray(to_uint8(image))
        faces = []
        for box, keypoints, score in self.detections(image):
            d = keypoints[1] - keypoints[0]  # from the eye on the image's left to the other
            face = self._fit(image, (box[:2] + box[2:]) / 2, float((box[2:] - box[:2]).max()) * FACE_SCALE,
                             float(np.arctan2(d[1], d[0])))  # fmt: skip
            if face.presence < MIN_PRESENCE:
                continue
            face.box, face.score, face.keypoints = box.astype(np.float32), score, keypoints.astype(np.float32)
            faces.append(face)
        faces.sort(key=lambda f: -f.area)
        return faces

    def detections(self, image: np.ndarray, tiles: bool = True) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Detector boxes (left, top, right, bottom) and keypoints in plate pixels, best first.

        BlazeFace (Bazarevsky et al. 2019, "BlazeFace: Sub-millisecond Neural Face Detection on Mobile
        GPUs"; the full-range model) sees a 192x192 picture, the whole frame letterboxed, and finds a face
        reliably from about 15 px wide there (measured by `bench/small_faces.py`: from 160 px at 1080p, 300
        at UHD, a medium shot's face); on a smaller face it fires seldom, with a box far too big. On a
        frame bigger than TILE_FROM (and with `tiles`) it also looks at overlapping tiles (`tile_grid`:
        1080p and UHD, 8 tiles of 2/3 the short side, cut from one copy of the frame scaled so a tile is
        192 px), which find faces from 60 px at 1080p and 100 px at UHD. The whole frame's boxes under
        TILED_WHOLE_MIN px (of 192) are then left to the tiles, which see those faces 2.7 times bigger;
        a tile's box reaching within BORDER_MARGIN of its width of a tile edge inside the frame may be a
        face the edge cuts and is dropped: the tiles overlap by more than the faces left to them, so
        another tile sees that face whole. Everything kept is merged by `weighted_nms` in plate pixels.
        A tile costs as much as the whole frame (3-4 ms on one CPU core). Frames no bigger than
        TILE_FROM (or `tiles=False`) get the whole-frame pass alone, exactly as before tiles were added.

        The full-range model was trained for faces far from the camera: a close-up whose face fills the
        frame or runs past its edges is not seen (the woman clip zoomed 2x, her face 1.2 times the frame's
        width: 0 of 30 frames). Where the whole frame gives nothing, it looks again with the frame shrunk
        into the middle of the input (`CLOSE_UP_ZOOMS`; 30 of 30 at 2x, and up to 3x zoom mostly).
        """
        boxes, keypoints, scores, plate = self._view(image)
        for zoom_out in CLOSE_UP_ZOOMS if not len(boxes) else ():
            boxes, keypoints, scores, plate = self._view(image, zoom_out)
            if len(boxes):  # a close-up: no smaller faces for tiles to find beside it
                tiles = False
                break
        h, w = image.shape[:2]
        (nw, nh), corners = tile_grid(h, w) if tiles else ((w, h), [])
        if not corners:
            return [
                (plate(b.reshape(2, 2)).ravel(), plate(k), s)
                for b, k, s in weighted_nms(boxes, keypoints, scores)
            ]
        # BlazeFace's box on a face under about 12 px is too big (a 6 px face's is 10 px), and such a face
        # is the tiles' to find: whole-frame boxes under TILED_WHOLE_MIN px are dropped
        big = boxes[:, 2] - boxes[:, 0] >= TILED_WHOLE_MIN / DETECT_SIZE
        found = [(plate(boxes[big].reshape(-1, 2, 2)).reshape(-1, 4), plate(keypoints[big]), scores[big])]
        scaled = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        to_px = np.array([w / nw, h / nh])
        for x0, y0 in corners:
            b, k, s = self._invoke(scaled[y0 : y0 + DETECT_SIZE, x0 : x0 + DETECT_SIZE])
            keep = ~cut_by_tile(b, (x0 > 0, y0 > 0, x0 + DETECT_SIZE < nw, y0 + DETECT_SIZE < nh))
            corner = np.array([x0, y0])  # as `plate` in `_view`: edge-based tile [0, 1] to plate pixels
            b, k = ((p * DETECT_SIZE + corner) * to_px - 0.5 for p in (b[keep].reshape(-1, 2, 2), k[keep]))
            found.append((b.reshape(-1, 4), k, s[keep]))
        return weighted_nms(*(np.concatenate(p) for p in zip(*found, strict=True)))

    def _invoke(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BlazeFace on a 192x192 RGB uint8 picture: raw boxes (N, 4), keypoints (N, 6, 2) in [0, 1] of it,
        and scores."""
        regressors, logits = self._run(self._detector, tensor.astype(np.float32) / 127.5 - 1.0)
        return decode_detections(regressors, logits, self.min_score)

    def _view(
        self, image: np.ndarray, zoom_out: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Callable]:
        """BlazeFace on the whole frame letterboxed (black bars) to 192x192, its long side `zoom_out` times
        smaller than the detector's input (centred in black): the raw detections' boxes (N, 4) and
        keypoints (N, 6, 2) in [0, 1] of the detector's input, their scores, and the function taking such
        coordinates to the frame's pixels (pixel centres integers)."""
        h, w = image.shape[:2]
        scale = DETECT_SIZE / max(h, w) / zoom_out
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        x0, y0 = (DETECT_SIZE - nw) // 2, (DETECT_SIZE - nh) // 2
        tensor = np.zeros((DETECT_SIZE, DETECT_SIZE, 3), np.float32) - 1.0
        tensor[y0 : y0 + nh, x0 : x0 + nw] = small.astype(np.float32) / 127.5 - 1.0
        regressors, logits = self._run(self._detector, tensor)
        boxes, keypoints, scores = decode_detections(regressors, logits, self.min_score)
        to_px = np.array([w / nw, h / nh])
        offset = np.array([x0, y0])

        def plate(p: np.ndarray) -> np.ndarray:  # edge-based [0, 1] to plate pixel centres (cv2.resize's)
            return (p * DETECT_SIZE - offset) * to_px - 0.5

        return boxes, keypoints, scores, plate

    def fit(self, image: np.ndarray, box: np.ndarray, angle: float | None = None) -> MeshFace | None:
        """The mesh on a face another detector found: the square 1.5 times `box` (left, top, right, bottom),
        turned by `angle` (radians, clockwise in the image; level when None); None when the mesh model
        finds no face there (presence below 0.5)."""
        image = np.ascontiguousarray(to_uint8(image))
        b = np.asarray(box, np.float64)
        face = self._fit(image, (b[:2] + b[2:]) / 2, float((b[2:] - b[:2]).max()) * FACE_SCALE, angle or 0.0)
        if face.presence < MIN_PRESENCE:
            return None
        face.box = b.astype(np.float32)
        return face

    def _fit(self, image: np.ndarray, centre: np.ndarray, size: float, angle: float) -> MeshFace:
        m = square_matrix(centre, size, angle, MESH_SIZE)
        points, flag = self._run(self._mesh, crop(image, m, MESH_SIZE))
        xyz = points.reshape(468, 3).astype(np.float64)
        presence = float(1 / (1 + np.exp(-flag.reshape(-1)[0])))
        mesh = np.zeros((478, 2))
        depth = np.zeros(478)
        mesh[:468] = to_plate(m, xyz[:, :2])
        depth[:468] = xyz[:, 2] * size / MESH_SIZE
        for eye, (a, b) in enumerate(EYE_CORNERS):
            idx = list(EYE_POINTS[eye][:EYE_CONTOUR])
            iris = slice(468 + 5 * eye, 473 + 5 * eye)
            depth[iris] = depth[idx].mean()  # as MediaPipe's refinement: the lid contour's mean depth
            if self._iris is None:
                mesh[iris] = mesh[idx].mean(0)
                continue
            contour, iris_points = self._eye(image, mesh[a], mesh[b], mirrored=eye == 1)
            mesh[idx] = contour[:EYE_CONTOUR]
            mesh[iris] = iris_points
        box = np.concatenate([mesh[:468].min(0), mesh[:468].max(0)])
        return MeshFace(
            box=box.astype(np.float32),
            score=1.0,
            presence=presence,
            keypoints=np.full((6, 2), np.nan, np.float32),
            mesh=mesh.astype(np.float32),
            depth=depth.astype(np.float32),
        )

    def _eye(self, image: np.ndarray, a: np.ndarray, b: np.ndarray, mirrored: bool) -> tuple[np.ndarray, ...]:
        """The iris model's 71 eye/brow points and 5 iris points in plate pixels."""
        centre, size, angle = eye_square(a, b)
        m = square_matrix(centre, size, angle, IRIS_SIZE)
        tensor = crop(image, m, IRIS_SIZE)
        if mirrored:
            tensor = tensor[:, ::-1]
        contour, iris = (o.reshape(-1, 3)[:, :2].astype(np.float64) for o in self._run(self._iris, tensor))
        if mirrored:
            contour[:, 0], iris[:, 0] = IRIS_SIZE - contour[:, 0], IRIS_SIZE - iris[:, 0]
        return to_plate(m, contour), to_plate(m, iris)
