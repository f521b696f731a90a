"""Face detection (dlib HOG, dlib MMOD CNN, or MediaPipe's BlazeFace), landmarks (dlib's 68 points, or
MediaPipe's 478-point mesh mapped to the same 68), and dlib's 128-d identity embedding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import dlib
import numpy as np

from pipeline.faces.pose import head_pose
from pipeline.media.color import to_uint8
from pipeline.models import model_path


@dataclass
class Face:
    box: np.ndarray  # left, top, right, bottom in plate pixels
    score: float
    landmarks: np.ndarray  # (68, 2) float32, plate pixels (dlib's semantics with either backend)
    embedding: np.ndarray | None = field(default=None, repr=False)  # (128,) when asked for
    mesh: np.ndarray | None = field(default=None, repr=False)  # (478, 2) plate pixels, mesh backend only
    pose: np.ndarray | None = None  # (3,) head yaw, pitch, roll in degrees (pipeline.faces.pose)

    @property
    def area(self) -> float:
        return float(max(0, self.box[2] - self.box[0]) * max(0, self.box[3] - self.box[1]))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


DETECTORS = ("hog", "cnn", "mediapipe")
LANDMARKS = ("dlib68", "mesh")
HOG_WINDOW = 80  # px: the smallest face dlib's frontal HOG detector finds (its window)
SMALL_FACE_WIDTH = 160  # px: a small face's neighbourhood is scaled so the face is this wide for HOG
# HOG's frontal detector finds faces rolled up to about 45 degrees (the woman and man clips turned in the
# image plane: all found at 45, none at 60). BlazeFace's eye keypoints say less than the roll of a face
# turned that far (37-49 degrees for 60), so a proposal rolled past this is turned upright for HOG.
ROLL_LIMIT = np.radians(20)
# dlib's 68-point model (an ensemble of regression trees, Kazemi & Sullivan 2014) splits on differences of
# pixel intensities against thresholds learnt on well-exposed photographs: on an underexposed plate (a face
# spanning 33 of 255 levels) its points drifted 7% of the eye distance from the same frames well exposed,
# on a flat one (log-like, 65 levels) 3%. A face spanning fewer levels than this is stretched to it first
LANDMARK_LEVELS = 160


def landmark_view(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What dlib's 68 points are fitted on for a face `box` (x0, y0, x1, y1) in a uint8 RGB frame, and where
    it lies in the frame (its x, y offset): the frame itself where the face's levels (its box's 1st to 99th
    percentile of grey) span LANDMARK_LEVELS or more, as a well-exposed plate's do; else the box's
    neighbourhood (its size again on each side: every pixel the model reads) with its levels stretched to
    that span about their middle, the middle moved towards mid-grey the more it is stretched, so the
    stretch grows continuously as a face darkens and a face moving into shadow does not jump."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    inside = image[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    if inside.size == 0:
        return image, np.zeros(2)
    grey = cv2.cvtColor(np.ascontiguousarray(inside), cv2.COLOR_RGB2GRAY)
    cumulative = np.cumsum(cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel())
    lo, hi = np.searchsorted(cumulative, [0.01 * cumulative[-1], 0.99 * cumulative[-1]])
    gain = LANDMARK_LEVELS / max(float(hi - lo), 1.0)
    if gain <= 1:
        return image, np.zeros(2)
    mid = (lo + hi) / 2
    levels = (np.arange(256) - mid) * gain + mid + (128 - mid) * (1 - 1 / gain)
    bw, bh = x1 - x0, y1 - y0
    left, top = max(0, x0 - bw), max(0, y0 - bh)
    near = image[top : min(h, y1 + bh), left : min(w, x1 + bw)]
    return cv2.LUT(near, np.clip(levels, 0, 255).astype(np.uint8)), np.array([left, top], np.float64)


def agrees_with_keypoints(landmarks: np.ndarray, keypoints: np.ndarray) -> bool:
    """Whether 68 points are the face BlazeFace's keypoints describe, the same way up: the line between
    their eyes within 45 degrees of the keypoints' (those say too little of a strong roll, 37-49 degrees
    for 60, so no finer), and the middle of their eyes within half an eye distance of the keypoints'."""
    ours = landmarks[42:48].mean(0) - landmarks[36:42].mean(0)
    theirs = keypoints[1] - keypoints[0]
    turn = np.arctan2(ours[1], ours[0]) - np.arctan2(theirs[1], theirs[0])
    turn = (turn + np.pi) % (2 * np.pi) - np.pi
    middle = landmarks[36:48].mean(0) - (keypoints[0] + keypoints[1]) / 2
    return bool(abs(turn) < np.radians(45) and np.hypot(*middle) < 0.5 * np.hypot(*theirs))


def keypoint_roll(keypoints: np.ndarray) -> float:
    """The roll of a BlazeFace detection, radians clockwise in the image: the line from its first eye
    keypoint (the eye on the image's left when upright) to the second."""
    d = keypoints[1] - keypoints[0]
    return float(np.arctan2(d[1], d[0]))


def default_detector(landmarks: str) -> str:
    """The detector that goes with a landmark backend: MediaPipe's full-range BlazeFace with the mesh (it
    finds three-quarter and profile faces, which dlib's HOG misses), HOG with dlib's 68 points."""
    return "mediapipe" if landmarks == "mesh" else "hog"


class FaceAnalyzer:
    """A face detector, a landmark model and dlib's recognition network, loaded once per instance.

    dlib's detectors and the LiteRT interpreters keep scratch buffers, so an instance must not be shared
    between threads. dlib's detectors run on a copy scaled so its longer side is at most `detect_size`
    (faces in plates are large; this keeps HOG fast); landmarks are fitted on the full-resolution frame.
    With `landmarks="mesh"` every face also carries MediaPipe's 478-point mesh, and its 68 points are the
    mesh's, mapped to dlib's semantics (so alignment and mattes work the same with either backend).
    """

    def __init__(
        self,
        detector: str | None = None,
        detect_size: int = 640,
        upsample: int = 0,
        landmarks: str = "dlib68",
        landmarks_model: str | Path | None = None,
        detector_model: str | Path | None = None,
        recognition_model: str | Path | None = None,
    ):
        if landmarks not in LANDMARKS:
            raise ValueError(f"unknown landmarks {landmarks!r} ({' or '.join(LANDMARKS)})")
        # The default detector with dlib's points is HOG, with BlazeFace proposing the faces too small
        # for HOG at the detection size (`_small_faces`); naming "hog" keeps HOG alone.
        self.find_small_faces = detector is None and landmarks == "dlib68"
        self._proposer = None
        detector = detector or default_detector(landmarks)
        if detector not in DETECTORS:
            raise ValueError(f"unknown detector {detector!r} ({', '.join(DETECTORS)})")
        self.detector_kind = detector
        self.landmarks_kind = landmarks
        self.detect_size = detect_size
        self.upsample = upsample
        self._mesh = None
        if detector == "mediapipe" or landmarks == "mesh":
            from pipeline.faces.mesh import MeshFaceModel

            self._mesh = MeshFaceModel(
                detector_model=detector_model if detector == "mediapipe" else None,
                mesh_model=landmarks_model if landmarks == "mesh" else None,
            )
        if detector == "hog":
            self._detector = dlib.get_frontal_face_detector()
        elif detector == "cnn":
            self._detector = dlib.cnn_face_detection_model_v1(
                str(model_path("dlib_mmod_detector", detector_model))
            )
        self._predictor = (
            dlib.shape_predictor(str(model_path("dlib_landmarks_68", landmarks_model)))
            if landmarks == "dlib68"
            else None
        )
        self._recognition_model = recognition_model
        self._recognizer = None

    def _detection_scale(self, image: np.ndarray) -> float:
        """The scale of the copy dlib's detectors run on: its longer side at most `detect_size`."""
        h, w = image.shape[:2]
        return min(1.0, self.detect_size / max(h, w)) if self.detect_size else 1.0

    def _detect_boxes(self, image: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
        scale = self._detection_scale(image)
        small = (
            image
            if scale == 1.0
            else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        )
        boxes, scores = [], []
        if self.detector_kind == "hog":
            rects, confidences, _ = self._detector.run(small, self.upsample, 0.0)
            found = zip(rects, confidences, strict=True)
        else:
            found = ((d.rect, d.confidence) for d in self._detector(small, self.upsample))
        for r, s in found:
            boxes.append(np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32) / scale)
            scores.append(float(s))
        return boxes, scores

    def _small_faces(
        self, image: np.ndarray, scale: float, proposals: list
    ) -> tuple[list[np.ndarray], list[float]]:
        """Faces HOG cannot see at the detection size: narrower than its 80 px window there, i.e. under an
        eighth of a 640 px long side (a 1080p face under 240 px, UHD under 480: a medium shot). MediaPipe's
        BlazeFace (full range: its 192 px view of the whole frame, and above 1280 px its tiles, which find
        faces from about 60 px at 1080p and 100 px at UHD; `MeshFaceModel.detections`) proposes where faces
        are; HOG looks again at each proposal's neighbourhood, cut from the full frame and scaled so the face
        is 160 px wide, so HOG's verdict stands: a face turned too far for its frontal detector (and for
        dlib's 68 points) is still not found. Run only on frames where HOG found nothing (so on a frame
        where HOG finds one face near its limit, smaller faces beside it are not looked for); a proposal
        HOG could have seen (80 px or more at the detection size) was turned or not a face, and is not
        looked at again."""
        boxes, scores = [], []
        h, w = image.shape[:2]
        for proposal, _, _ in proposals:
            width = float(proposal[2] - proposal[0])
            if width <= 0 or width * scale >= HOG_WINDOW:
                continue
            x0, y0 = (max(0, int(v - width)) for v in proposal[:2])
            x1, y1 = min(w, int(proposal[2] + width) + 1), min(h, int(proposal[3] + width) + 1)
            f = SMALL_FACE_WIDTH / width
            near = cv2.resize(image[y0:y1, x0:x1], None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR)
            rects, confidences, _ = self._detector.run(np.ascontiguousarray(near), 0, 0.0)
            for r, c in zip(rects, confidences, strict=True):
                box = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32) / f + [x0, y0, x0, y0]
                if box_iou(box, proposal) > 0.3:
                    boxes.append(box.astype(np.float32))
                    scores.append(float(c))
        return boxes, scores

    def _proposals(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """BlazeFace's boxes, keypoints and scores on a frame where HOG found nothing."""
        if self._proposer is None:
            from pipeline.faces.mesh import MeshFaceModel

            self._proposer = MeshFaceModel(iris=False)
        return self._proposer.detections(image)

    def _turned_faces(self, image: np.ndarray, proposals: list) -> list[Face]:
        """Faces rolled past HOG's reach (a head on a pillow, a dancer's tilt), which BlazeFace proposes: each
        proposal (rolled past ROLL_LIMIT by its keypoints) has its neighbourhood turned upright by the line
        between its eye keypoints and scaled so the face is SMALL_FACE_WIDTH px wide; HOG must find the face
        there (its verdict stands, as for small faces), and dlib's 68 points are fitted on that upright
        picture and carried back to the frame."""
        faces = []
        side = 3 * SMALL_FACE_WIDTH
        half = SMALL_FACE_WIDTH / 2
        expected = np.array([side / 2 - half, side / 2 - half, side / 2 + half, side / 2 + half])
        for proposal, keypoints, _ in proposals:
            roll = keypoint_roll(keypoints)
            width = float(proposal[2] - proposal[0])
            if width <= 0:
                continue
            centre = (proposal[:2] + proposal[2:]) / 2
            m = cv2.getRotationMatrix2D(
                (float(centre[0]), float(centre[1])), np.degrees(roll), SMALL_FACE_WIDTH / width
            )
            m[:, 2] += side / 2 - centre
            upright = cv2.warpAffine(
                image, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            rects, confidences, _ = self._detector.run(upright, 0, 0.0)
            for r, c in zip(rects, confidences, strict=True):
                rect = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64)
                if box_iou(rect, expected) <= 0.3:
                    continue
                points = self._fit_68(upright, rect).astype(np.float64)
                back = cv2.invertAffineTransform(m)
                landmarks = points @ back[:, :2].T + back[:, 2]
                if not agrees_with_keypoints(landmarks, keypoints):
                    continue  # HOG fires on faces upside down, too: the 68 points then are not this face
                if c <= self._upside_down_score(upright, expected):
                    continue  # HOG likes this face better the other way up: BlazeFace's keypoints were
                    # wrong (on faces past about 120 degrees), and HOG fires on faces upside down
                mid = ((rect[:2] + rect[2:]) / 2) @ back[:, :2].T + back[:, 2]
                size = (rect[2:] - rect[:2]) * width / SMALL_FACE_WIDTH / 2
                box = np.concatenate([mid - size, mid + size]).astype(np.float32)
                faces.append(Face(box=box, score=float(c), landmarks=landmarks.astype(np.float32)))
                break
        return faces

    def _upside_down_score(self, upright: np.ndarray, expected: np.ndarray) -> float:
        """HOG's best score for the expected face in the picture turned half a turn (-inf: none)."""
        side = upright.shape[0]
        rects, confidences, _ = self._detector.run(np.ascontiguousarray(upright[::-1, ::-1]), 0, 0.0)
        flipped = side - 1 - expected[[2, 3, 0, 1]]
        scores = [
            c
            for r, c in zip(rects, confidences, strict=True)
            if box_iou(np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64), flipped) > 0.3
        ]
        return max(scores, default=-np.inf)

    def detect(self, frame: np.ndarray, embed: bool = False) -> list[Face]:
        """Every face in an RGB frame, largest first."""
        image = np.ascontiguousarray(to_uint8(frame))
        turned: list[Face] = []
        if self.detector_kind == "mediapipe":
            assert self._mesh is not None
            found = [(m.box, m.score, m) for m in self._mesh.detect(image)]
        else:
            boxes, scores = self._detect_boxes(image)
            if not boxes and self.find_small_faces:  # BlazeFace proposes what HOG could not see
                proposals = self._proposals(image)
                rolled = [abs(keypoint_roll(k)) >= ROLL_LIMIT for _, k, _ in proposals]
                level = [p for p, r in zip(proposals, rolled, strict=True) if not r]
                boxes, scores = self._small_faces(image, self._detection_scale(image), level)
                turned = self._turned_faces(image, [p for p, r in zip(proposals, rolled, strict=True) if r])
            found = [(box, score, None) for box, score in zip(boxes, scores, strict=True)]
        fitted = (self._landmarks(image, box, score, mesh_face) for box, score, mesh_face in found)
        faces = [face for face in fitted if face is not None] + turned
        for face in faces:
            face.pose = np.array(head_pose(face.landmarks, (image.shape[1], image.shape[0])), np.float32)
        faces.sort(key=lambda f: -f.area)
        if embed:
            self.embed(image, faces)
        return faces

    def _landmarks(self, image: np.ndarray, box: np.ndarray, score: float, mesh_face) -> Face | None:
        if self.landmarks_kind == "dlib68":
            return Face(box=np.asarray(box, np.float32), score=score, landmarks=self._fit_68(image, box))
        from pipeline.faces.mesh import mesh_to_68

        assert self._mesh is not None
        if mesh_face is None:  # a dlib box: fit the mesh on it
            mesh_face = self._mesh.fit(image, np.asarray(box, np.float32))
            if mesh_face is None:  # the mesh model says there is no face in the box
                return None
        mesh = np.asarray(mesh_face.mesh, np.float32)
        return Face(
            box=np.asarray(box, np.float32),
            score=score,
            landmarks=mesh_to_68(mesh).astype(np.float32),
            mesh=mesh,
        )

    def _fit_68(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """dlib's 68 points for a face box in a uint8 RGB picture, fitted on its `landmark_view`."""
        assert self._predictor is not None
        view, (left, top) = landmark_view(image, np.asarray(box, np.float64))
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._predictor(
            view, dlib.rectangle(x0 - int(left), y0 - int(top), x1 - int(left), y1 - int(top))
        )
        return np.array([(p.x + left, p.y + top) for p in shape.parts()], np.float32)

    def embed(self, frame: np.ndarray, faces: Sequence[Face]) -> None:
        """Give faces found on an RGB frame by `detect` their identity descriptors: dlib's 128-d descriptor
        on the chip dlib cuts from their 68 points (either backend's), so that a tracker can detect every
        frame and pay for descriptors only on the frames it checks."""
        if not faces:
            return
        if self._recognizer is None:
            path = model_path("dlib_face_recognition", self._recognition_model)
            self._recognizer = dlib.face_recognition_model_v1(str(path))
        image = np.ascontiguousarray(to_uint8(frame))
        for face in faces:
            # on the same view as the 68 points: an underexposed plate's faces were 0.22-0.30 from the same
            # frames well exposed (the threshold is 0.6), stretched 0.06-0.13
            view, offset = landmark_view(image, np.asarray(face.box, np.float64))
            x0, y0, x1, y1 = (int(round(v)) for v in np.asarray(face.box, np.float64) - np.tile(offset, 2))
            points = dlib.points(
                [dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks - offset]
            )
            shape = dlib.full_object_detection(dlib.rectangle(x0, y0, x1, y1), points)
            face.embedding = np.array(self._recognizer.compute_face_descriptor(view, shape), np.float32)

    def reference_embedding(self, image: np.ndarray, source: str) -> np.ndarray:
        """The embedding of the (largest) face in a reference image; an image without a face is an error."""
        from pipeline.errors import PipelineError

        faces = self.detect(image, embed=True)
        if not faces:
            raise PipelineError(f"{source}: no face found in the reference image")
        assert faces[0].embedding is not None
        return faces[0].embedding


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance of dlib embeddings: the same person is below about 0.6."""
    return float(np.linalg.norm(a - b))


SAME_PERSON = 0.6  # dlib's threshold: pairs of one person's faces are below it (99.38% right on LFW)
FACES_FOUND = 0.9  # a new face must be found as a face on this share of frames


def identity_verdict(found: float, to_target: float, closer_to_target: float | None = None) -> dict:
    """Whether new faces are the target person: `found` is the share of them in which dlib's detector
    finds a face, `to_target` their mean dlib distance to the target, `closer_to_target` (for a swap) the
    share of frames nearer the target than the source. A share of frames alone can pass a grid pattern that
    is marginally nearer one descriptor than the other, so the verdict looks at absolute figures first:
    fail when the faces are not faces or lean to the source, weak when they are faces but farther from the
    target than dlib's same-person threshold, pass otherwise."""
    if found < FACES_FOUND:
        return {
            "verdict": "fail",
            "why": f"not a face: dlib finds a face in {found:.0%} of the new faces (needs {FACES_FOUND:.0%})",
        }
    if closer_to_target is not None and closer_to_target < 0.5:
        return {
            "verdict": "fail",
            "why": f"nearer the source person than the target on {1 - closer_to_target:.0%} of the frames",
        }
    if to_target > SAME_PERSON:
        return {
            "verdict": "weak",
            "why": f"a face, but not recognisably the target: mean distance {to_target:.3f} is above "
            f"{SAME_PERSON} (dlib's same-person threshold)",
        }
    return {
        "verdict": "pass",
        "why": f"a face in {found:.0%} of the frames, the target at mean distance {to_target:.3f} "
        f"(same person below {SAME_PERSON})",
    }
