"""The dense landmark backend (MediaPipe's detector, mesh and iris models) and head pose."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import pipeline.faces.mesh as mesh_module
from pipeline.faces.align import ffhq_params
from pipeline.faces.detect import FaceAnalyzer, box_iou
from pipeline.faces.mesh import (
    EYE_CONTOUR,
    EYE_POINTS,
    FACE_OVAL,
    MeshFace,
    MeshFaceModel,
    face_outline,
    iou_with,
    tile_grid,
    weighted_nms,
)
from pipeline.faces.pose import FACE_MODEL, RIGID_POINTS, head_pose, rotation
from pipeline.media.decode import MoviePlate, load_still


@pytest.fixture(scope="module")
def model() -> MeshFaceModel:
    return MeshFaceModel()


@pytest.fixture(scope="module")
def dlib_faces() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return load_still("builtin:astronaut")


@pytest.fixture(scope="module")
def astronaut_mesh(model, astronaut) -> MeshFace:
    faces = model.detect(astronaut)
    assert len(faces) == 1, f"{len(faces)} faces on the astronaut"
    return faces[0]


def frames_of(clip, indices: list[int]) -> list[np.ndarray]:
    plate = MoviePlate(clip)
    return [next(iter(plate.read(i, i + 1))) for i in indices]


def interocular(landmarks68: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks68[36:42].mean(0) - landmarks68[42:48].mean(0)))


# --- detection and the mesh --------------------------------------------------------------------------


def test_the_astronaut_has_one_face_with_a_478_point_mesh_and_irises(astronaut_mesh):
    f = astronaut_mesh
    assert f.mesh.shape == (478, 2) and f.depth.shape == (478,) and f.keypoints.shape == (6, 2)
    assert f.presence > 0.9 and f.score > 0.5
    left, top, right, bottom = f.box
    assert 80 < right - left < 140  # her face is about 95 px, as dlib finds it
    inside = (f.mesh[:, 0] > left - 15) & (f.mesh[:, 0] < right + 15) & (f.mesh[:, 1] > top - 30)
    assert inside.all()
    for eye in range(2):  # each iris centre lies inside the polygon of its eye's lids
        lids = f.mesh[list(EYE_POINTS[eye][:EYE_CONTOUR])]
        hull = cv2.convexHull(lids.astype(np.float32))
        centre = f.mesh[468 + 5 * eye]
        assert cv2.pointPolygonTest(hull, (float(centre[0]), float(centre[1])), False) > 0
    assert f.mesh[468, 0] < f.mesh[473, 0]  # 468-472: the iris on the image's left
    assert f.depth[1] < f.depth[234]  # the nose tip is nearer the camera than the cheek's edge


def test_without_the_iris_model_the_iris_points_are_the_lid_centres(model, astronaut, astronaut_mesh):
    plain = MeshFaceModel(iris=False).detect(astronaut)[0]
    for eye in range(2):
        lids = plain.mesh[list(EYE_POINTS[eye][:EYE_CONTOUR])]
        np.testing.assert_allclose(
            plain.mesh[468 + 5 * eye : 473 + 5 * eye], lids.mean(0)[None].repeat(5, 0), atol=1e-3
        )
        # the iris model's centre is near (a few px on a 95 px face), not equal to, the lid centre
        gap = np.linalg.norm(astronaut_mesh.mesh[468 + 5 * eye] - lids.mean(0))
        assert 0 < gap < 5


def test_a_blank_image_has_no_face_and_a_box_on_it_no_mesh(model):
    blank = np.full((240, 320, 3), 128, np.uint8)
    assert model.detect(blank) == []
    assert model.fit(blank, np.array([100, 60, 220, 180])) is None


def test_fit_on_a_given_box_matches_detection(model, astronaut, astronaut_mesh):
    box = FaceAnalyzer(upsample=1).detect(astronaut)[0].box  # dlib's box, tighter than BlazeFace's
    fitted = model.fit(astronaut, box)
    assert fitted is not None
    np.testing.assert_array_equal(fitted.box, box)
    size = ffhq_params(astronaut_mesh.landmarks68)[2]
    assert np.linalg.norm(fitted.mesh - astronaut_mesh.mesh, axis=1).mean() < 0.02 * size


def test_a_face_on_its_side_is_found_and_fitted_turned(model, astronaut, astronaut_mesh):
    """The mesh crop is turned by the eye keypoints: the face rotated a quarter turn gives the same mesh,
    rotated."""
    turned = np.ascontiguousarray(np.rot90(astronaut))  # counter-clockwise: (x, y) -> (y, w - 1 - x)
    faces = model.detect(turned)
    assert len(faces) == 1
    w = astronaut.shape[1]
    expected = np.stack([astronaut_mesh.mesh[:, 1], w - 1 - astronaut_mesh.mesh[:, 0]], 1)
    size = ffhq_params(astronaut_mesh.landmarks68)[2]
    assert np.linalg.norm(faces[0].mesh - expected, axis=1).mean() < 0.02 * size
    # fit on a box with the angle: the same; unturned (angle 0) on the sideways face: worse
    box = faces[0].box
    angle = ffhq_params(faces[0].landmarks68)[3]
    with_angle = model.fit(turned, box, angle)
    assert with_angle is not None
    err_angle = np.linalg.norm(with_angle.mesh - expected, axis=1).mean()
    assert err_angle < 0.02 * size
    level = model.fit(turned, box)
    assert level is None or np.linalg.norm(level.mesh - expected, axis=1).mean() > err_angle


def test_two_faces_are_both_found_largest_first(model, footage, dlib_faces):
    image = load_still(str(footage / "two_faces.jpg"))
    faces = model.detect(image)
    assert len(faces) == 2
    assert faces[0].area >= faces[1].area
    for face in dlib_faces.detect(image):  # each of dlib's faces has a mesh whose 68 points fit it
        nearest = min(faces, key=lambda f: np.linalg.norm(f.landmarks68.mean(0) - face.landmarks.mean(0)))
        error = np.linalg.norm(nearest.landmarks68 - face.landmarks, axis=1).mean()
        assert error < 0.1 * interocular(face.landmarks)


def test_weighted_nms_merges_overlaps_by_score_and_keeps_separate_faces():
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.8, 0.8]])
    keypoints = np.zeros((3, 6, 2))
    keypoints[:, :, 0] = boxes[:, :1]
    scores = np.array([0.9, 0.3, 0.7])
    merged = weighted_nms(boxes, keypoints, scores)
    assert len(merged) == 2
    box, kp, score = merged[0]
    np.testing.assert_allclose(box, 0.75 * boxes[0] + 0.25 * boxes[1])
    np.testing.assert_allclose(kp[:, 0], 0.75 * 0.1 + 0.25 * 0.12)
    assert score == 0.9 and merged[1][2] == 0.7
    np.testing.assert_allclose(merged[1][0], boxes[2])


# --- small faces in big plates: tiles ---------------------------------------------------------------------


UHD = (2160, 3840)


def test_tiles_cover_big_frames_with_overlap_and_leave_small_frames_alone():
    for h, w in ((1080, 1920), UHD, (1920, 1080), (1440, 2560)):
        (nw, nh), corners = tile_grid(h, w)
        assert min(nw, nh) == 288 and len(corners) == 8, (h, w)
        for axis, length in ((0, nw), (1, nh)):
            starts = sorted({c[axis] for c in corners})
            assert starts[0] == 0 and starts[-1] + 192 == length  # edge to edge
            assert all(b - a <= 192 * 2 / 3 for a, b in zip(starts, starts[1:], strict=False))  # overlap
    for h, w in ((720, 1280), (1280, 720), (512, 512), (1080, 1080)):
        assert tile_grid(h, w) == ((w, h), [])


@pytest.fixture(scope="module")
def woman_frame(woman_clip) -> np.ndarray:
    return frames_of(woman_clip, [0])[0]


@pytest.fixture(scope="module")
def woman_box(model, woman_frame) -> np.ndarray:
    found = model.detections(woman_frame)
    assert len(found) == 1
    return found[0][0]


def pasted(
    frame: np.ndarray, box: np.ndarray, width: float, centre, shape=UHD
) -> tuple[np.ndarray, np.ndarray]:
    """The frame scaled so that its face's box is `width` px wide, pasted with the box's centre at `centre`
    on a grey plate of `shape`; the plate and where the box lands."""
    s = width / float(box[2] - box[0])
    small = cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    # an integer offset: the scaled frame's pixel i lands on plate pixel i + offset
    offset = np.round(np.asarray(centre, np.float64) - ((box[:2] + box[2:]) / 2 + 0.5) * s + 0.5)
    x, y = int(offset[0]), int(offset[1])
    plate = np.full((*shape, 3), 90, np.uint8)
    plate[y : y + small.shape[0], x : x + small.shape[1]] = small
    # cv2.resize's pixel centres: p in the frame -> (p + 0.5) * s - 0.5 in the scaled frame
    return plate, (box.reshape(2, 2) + 0.5) * s - 0.5 + offset


def test_a_small_face_in_a_uhd_plate_is_found_by_the_tiles(model, woman_frame, woman_box):
    """A 120 px face is 6 px in BlazeFace's 192 px view of a UHD frame: missed, or (on this plain grey)
    given a box far too big; in a 1440 px tile it is 16 px, found, and its box maps back to the plate
    where the face is."""
    plate, want = pasted(woman_frame, woman_box, 120, (1100, 1200))  # inside one tile, clear of its edges
    assert all(box_iou(b, want.ravel()) < 0.5 for b, _, _ in model.detections(plate, tiles=False))
    found = model.detections(plate)
    assert len(found) == 1
    box, keypoints, score = found[0]
    assert score > 0.5
    assert box_iou(box, want.ravel()) > 0.7
    assert np.abs(box - want.ravel()).max() < 12  # px, on a 120 px face
    assert (keypoints[:, 0] > want[0, 0] - 30).all() and (keypoints[:, 0] < want[1, 0] + 30).all()
    assert keypoints[0, 0] < keypoints[1, 0]  # the eyes: the image-left one first


@pytest.mark.parametrize("centre", [(1440, 1000), (1600, 1000), (2242, 1000), (1100, 1440), (2000, 1000)])
def test_a_face_across_a_tile_edge_is_found_once(model, woman_frame, woman_box, centre):
    """UHD tiles are 1440 px, from x = 0, 802, 1598, 2400 and y = 0, 720: a face centred on a tile's edge
    inside the frame (x = 1440, 1598, 2242; y = 1440) is cut there, and whole in the next tile; one at
    x = 2000 is whole in two tiles. Each is found once, with its whole box: a cut tile's part-face box
    (IoU about 0.3 with the face) is dropped, not merged nor kept."""
    plate, want = pasted(woman_frame, woman_box, 120, centre)
    found = model.detections(plate)
    assert len(found) == 1, [f[0] for f in found]
    assert box_iou(found[0][0], want.ravel()) > 0.75


def test_frames_up_to_the_tiling_size_give_the_whole_frame_detections_unchanged(
    model, woman_frame, woman_box
):
    """No tiles at 1280x720 and below: the output is the whole-frame pass's, bit for bit (tracks and
    caches of such plates hold); a UHD frame's whole-frame pass is the same with tiles=False."""
    plate, _ = pasted(woman_frame, woman_box, 200, (640, 360), shape=(720, 1280))
    whole, default = model.detections(plate, tiles=False), model.detections(plate)
    assert len(whole) == 1
    for (b0, k0, s0), (b1, k1, s1) in zip(whole, default, strict=True):
        assert np.array_equal(b0, b1) and np.array_equal(k0, k1) and s0 == s1
    big, want = pasted(woman_frame, woman_box, 400, (1900, 1000))
    ((box, _, _),) = model.detections(big, tiles=False)
    ((tiled, _, _),) = model.detections(big)
    assert box_iou(box, want.ravel()) > 0.7 and box_iou(tiled, box) > 0.8


def test_a_close_up_whose_face_fills_the_frame_is_found(model, dlib_faces, woman_frame, monkeypatch):
    """The full-range BlazeFace misses a face wider than the frame (the woman zoomed 2x: 1.2 frame widths);
    shrunk into the middle of its input, it finds it, and the mesh's 68 points lie where dlib's points on
    the unzoomed frame land."""
    (face,) = dlib_faces.detect(woman_frame)
    cx, cy = (face.box[:2] + face.box[2:]) / 2
    m = np.array([[2.0, 0, 256 - 2 * cx], [0, 2.0, 256 - 2 * cy]])
    close = cv2.warpAffine(woman_frame, m, (512, 512), flags=cv2.INTER_LINEAR)
    want = face.landmarks @ m[:, :2].T + m[:, 2]
    assert want[:, 0].max() - want[:, 0].min() > 512  # the jaw runs past both edges
    monkeypatch.setattr(mesh_module, "CLOSE_UP_ZOOMS", ())
    assert model.detect(close) == []
    monkeypatch.undo()
    (found,) = model.detect(close)
    err = np.linalg.norm(found.landmarks68[17:] - want[17:], axis=1)  # brows, eyes, nose, mouth
    assert np.median(err) < 0.08 * interocular(want), (np.median(err), interocular(want))


# --- 68-point semantics and the face outline ------------------------------------------------------------


MAN_FRONTAL = [0, 60, 120, 180, 300]


@pytest.fixture(scope="module")
def man_frames(footage) -> list[np.ndarray]:
    return frames_of(footage / "man_glasses_720x1280.mp4", MAN_FRONTAL)


def test_mesh_68_points_match_dlib_and_align_alike(model, dlib_faces, man_frames):
    for i, frame in zip(MAN_FRONTAL, man_frames, strict=True):
        (mesh_face,), (dlib_face,) = model.detect(frame), dlib_faces.detect(frame)
        ours, theirs = mesh_face.landmarks68, dlib_face.landmarks
        error = np.linalg.norm(ours - theirs, axis=1)
        eyes = interocular(theirs)
        assert error.mean() < 0.08 * eyes, f"frame {i}: {error.mean() / eyes:.3f} of the eye distance"
        assert np.median(error[36:48]) < 0.05 * eyes  # eye corners and lids, FFHQ's anchor, closer still
        a, b = ffhq_params(ours), ffhq_params(theirs)
        assert np.linalg.norm(a[:2] - b[:2]) < 0.02 * b[2], f"frame {i}: crop centres apart"
        assert abs(a[2] / b[2] - 1) < 0.03, f"frame {i}: crop sizes {a[2]:.0f} and {b[2]:.0f}"
        assert abs(a[3] - b[3]) < np.radians(2), f"frame {i}: crop angles apart"


def test_face_outline_runs_forehead_to_chin_around_the_features(astronaut_mesh):
    outline = face_outline(astronaut_mesh.mesh)
    assert outline.shape == (36, 2) and len(set(FACE_OVAL)) == 36
    top, bottom = outline[:, 1].min(), outline[:, 1].max()
    assert outline[0, 1] - top < 0.03 * (bottom - top)  # 10, mid-forehead, at the top (her head is tilted)
    assert outline[:, 1].argmax() == FACE_OVAL.index(152)  # the chin at the bottom
    polygon = outline.astype(np.float32)
    inner = astronaut_mesh.landmarks68[17:]  # brows, nose, eyes, lips
    assert all(cv2.pointPolygonTest(polygon, (float(x), float(y)), False) > 0 for x, y in inner)
    assert abs(cv2.contourArea(polygon)) > cv2.contourArea(cv2.convexHull(inner)) * 1.5


# --- head pose ----------------------------------------------------------------------------------------


def projected(yaw: float, pitch: float, roll: float, image_size=(640, 480), distance=100.0) -> np.ndarray:
    """68 landmarks (only the rigid ones set) of the generic face at a pose, seen by a 1500 px lens."""
    w, h = image_size
    k = np.array([[1500.0, 0, (w - 1) / 2], [0, 1500.0, (h - 1) / 2], [0, 0, 1]])
    camera = FACE_MODEL @ rotation(yaw, pitch, roll).T + [4.0, -3.0, distance]
    pts = camera @ k.T
    lm = np.full((68, 2), np.nan)
    lm[list(RIGID_POINTS)] = pts[:, :2] / pts[:, 2:]
    return lm


@pytest.mark.parametrize(
    "pose", [(0, 0, 0), (35, 0, 0), (-50, 10, 0), (20, -20, 10), (-15, 25, -20), (60, 0, 5)]
)
def test_head_pose_recovers_known_angles(pose):
    rng = np.random.default_rng(1)
    lm = projected(*pose)
    lm += rng.normal(0, 0.5, lm.shape)  # half a pixel of landmark noise
    np.testing.assert_allclose(head_pose(lm, (640, 480)), pose, atol=3)


def test_head_pose_signs():
    """yaw > 0: nose toward the image's left; pitch > 0: nose up; roll > 0: eye line clockwise."""
    straight = projected(0, 0, 0)
    nose, eyes = RIGID_POINTS.index(30), [RIGID_POINTS.index(i) for i in (36, 45)]
    pts = straight[list(RIGID_POINTS)]
    for pose, axis, sign in [((30, 0, 0), 0, -1), ((0, 20, 0), 1, -1)]:
        moved = projected(*pose)[list(RIGID_POINTS)]
        offset = (moved[nose] - moved[eyes].mean(0)) - (pts[nose] - pts[eyes].mean(0))
        assert np.sign(offset[axis]) == sign
    tilted = projected(0, 0, 15)[[36, 45]]
    assert tilted[1, 1] > tilted[0, 1]  # the image-right eye is lower: clockwise


def test_head_pose_on_real_frames(model, dlib_faces, man_frames, footage):
    for frame in man_frames:  # the man talks to the camera
        h, w = frame.shape[:2]
        for lm in (model.detect(frame)[0].landmarks68, dlib_faces.detect(frame)[0].landmarks):
            assert abs(head_pose(lm, (w, h))[0]) < 20
    # the woman turns to the image's left at frame 20 and to its right (and down) at 277
    left, right = frames_of(footage / "woman_headturns_512.mp4", [20, 277])
    for lm_of in (lambda f: model.detect(f)[0].landmarks68, lambda f: dlib_faces.detect(f)[0].landmarks):
        yaw_left, yaw_right = head_pose(lm_of(left), (512, 512))[0], head_pose(lm_of(right), (512, 512))[0]
        assert yaw_left > 10 and yaw_right < -15


def test_iou_is_intersection_over_union():
    box = np.array([0.0, 0.0, 2.0, 2.0])
    others = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [2, 2, 3, 3], [0, 0, 1, 1]], np.float64)
    np.testing.assert_allclose(iou_with(box, others), [1.0, 1 / 3, 0.0, 1 / 4])
