"""The mesh backend in the face track: the analyzer's choice of detector and landmarks, turned heads marked
"profile" and left alone, and a matte that reaches the chin on an open mouth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.faces.align import crop_matrix, transform_points
from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.masks import chin_drop, chin_guard, forehead_points, landmark_mask, matte_points
from pipeline.faces.track import CropMattes, TrackSettings, build_track, detect_frames
from pipeline.media.decode import MoviePlate, load_still

OPEN_MOUTH = (306, 322)  # the woman clip's widest open mouth (an "O"), found by bench/landmarks.py
TURNING = (255, 290)  # her head turns to about 22 degrees of yaw and back


@pytest.fixture(scope="module")
def mesh_analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(landmarks="mesh")


@pytest.fixture(scope="module")
def woman_plate(footage) -> MoviePlate:
    return MoviePlate(footage / "woman_headturns_512.mp4")


def test_the_analyzer_pairs_each_landmark_backend_with_its_detector(footage, mesh_analyzer):
    image = load_still(str(footage / "two_faces.jpg"))
    dlib_faces = FaceAnalyzer().detect(image, embed=True)
    mesh_faces = mesh_analyzer.detect(image, embed=True)
    assert mesh_analyzer.detector_kind == "mediapipe" and FaceAnalyzer().detector_kind == "hog"
    assert len(dlib_faces) == len(mesh_faces) == 2
    for d, m in zip(dlib_faces, mesh_faces, strict=True):  # the same two people, largest first
        assert d.mesh is None and m.mesh is not None and m.mesh.shape == (478, 2)
        eyes = np.linalg.norm(d.landmarks[36:42].mean(0) - d.landmarks[42:48].mean(0))
        assert np.linalg.norm(m.landmarks - d.landmarks, axis=1).mean() < 0.15 * eyes
        assert np.linalg.norm(m.embedding - d.embedding) < 0.3  # one person, two sets of 68 points
        assert m.pose is not None and abs(m.pose[0]) < 30
    assert np.linalg.norm(mesh_faces[0].embedding - mesh_faces[1].embedding) > 0.6
    # dlib's boxes with the mesh fitted on them
    hog_mesh = FaceAnalyzer(detector="hog", landmarks="mesh").detect(image)
    assert [f.mesh is not None for f in hog_mesh] == [True, True]
    np.testing.assert_allclose(hog_mesh[0].box, dlib_faces[0].box)
    with pytest.raises(ValueError, match="unknown landmarks"):
        FaceAnalyzer(landmarks="dlib5")


def test_a_head_turned_past_the_threshold_is_profile_and_left_alone(woman_plate, mesh_analyzer):
    frames = list(woman_plate.read(*TURNING))
    found = detect_frames(mesh_analyzer, enumerate(frames, TURNING[0]), TrackSettings(cut_threshold=None))
    yaw = np.array([abs(ff.faces[0].pose[0]) for ff in found])
    threshold = 18.0
    assert (yaw > threshold).sum() >= 5 and (yaw <= threshold).sum() >= 5  # the test means something
    track = build_track(found, TrackSettings(profile_yaw=threshold, max_gap=30, cut_threshold=None))
    turned = yaw > threshold
    np.testing.assert_array_equal(track.profile, turned)
    assert not track.has_face[turned].any()  # no stage gets these frames, not even by interpolation
    assert track.has_face[~turned].all() and track.detected[~turned].all()
    assert {track.state(i) for i in np.flatnonzero(turned)} == {"profile"}
    assert np.isfinite(track.mesh[~turned]).all() and np.isfinite(track.landmarks[turned]).all()
    summary = track.summary()
    assert summary["profile_frames"] == turned.sum() and summary["landmarks"] == "mesh"
    assert summary["profile_ranges"][0][0] == TURNING[0] + int(np.argmax(turned))
    assert summary["largest_yaw"] == pytest.approx(yaw.max(), abs=0.1)
    # the default threshold (60 degrees) leaves her all to the face stages
    assert not build_track(found, TrackSettings(cut_threshold=None)).profile.any()


def test_the_matte_covers_the_chin_on_an_open_mouth(woman_plate, mesh_analyzer):
    """On the widest "O" of the woman clip the mesh puts the chin 0.08 of the crop below the lower lip
    (0.13 on her other frames) and dlib 0.10, nearer the chin in the picture; the matte must still cover
    the chin that dlib's jaw points outline below the lip: the chin guard pushes the matte's chin down to
    the shot's typical drop."""
    everyday = [f for i, f in enumerate(woman_plate.read(0, 300)) if i % 30 == 0]
    frames = everyday + [f for i, f in enumerate(woman_plate.read(*OPEN_MOUTH)) if i % 3 == 0]
    # frames 3 to 30 apart, not a shot: smoothing the landmarks over them would mix poses (on every frame
    # of 300-329 tracked in a row, smoothed as by default, the chin is covered 0.95-0.99, as unsmoothed)
    settings = TrackSettings(cut_threshold=None, smooth_landmarks=0)
    mesh_track = build_track(detect_frames(mesh_analyzer, enumerate(frames, 1), settings), settings)
    dlib_found = detect_frames(FaceAnalyzer(), enumerate(frames, 1), settings, identify=False)
    size = 256
    mattes = CropMattes(mesh_track, size)
    open_frames = range(len(everyday), len(frames))
    for i in open_frames:
        matrix = crop_matrix(mesh_track.params[i], 1)
        dlib_landmarks = transform_points(matrix, dlib_found[i].faces[0].landmarks) * size
        below_lip = np.zeros((size, size), np.uint8)  # dlib's jaw hull below its lower lip: the chin
        cv2.fillConvexPoly(below_lip, cv2.convexHull(np.round(dlib_landmarks[0:17]).astype(np.int32)), 1)
        below_lip[: int(dlib_landmarks[57, 1])] = 0
        chin = below_lip > 0
        matte = mattes.matte(i, "hull") > 0.5
        bare = landmark_mask(mattes.landmarks[i], size, "hull", oval=mattes.oval[i]) > 0.5
        assert matte[chin].mean() > 0.85, i  # measured 0.87-0.97 (without the guard 0.58-0.72)
        assert matte[chin].mean() > bare[chin].mean() + 0.1, i
        # and the guard does not reach far past dlib's chin
        assert matte[int(dlib_landmarks[8, 1]) + 12 :].sum() == 0, i


def test_the_chin_guard_restores_a_chin_that_collapsed_to_the_mouth():
    """dlib's 68 points on an extreme expression put the chin at mouth level (issue 19)."""
    landmarks = np.zeros((68, 2))
    landmarks[36:42] = [80, 100]
    landmarks[42:48] = [176, 100]
    landmarks[57] = [128, 190]  # lower lip
    landmarks[5:12] = [[95, 215], [100, 225], [110, 235], [128, 240], [146, 235], [156, 225], [161, 215]]
    assert chin_drop(landmarks) == pytest.approx(50)
    assert np.allclose(chin_guard(landmarks, 40), landmarks[5:12])  # a chin low enough is left where it is
    collapsed = landmarks.copy()
    collapsed[5:12] = [[95, 185], [100, 190], [110, 193], [128, 195], [146, 193], [156, 190], [161, 185]]
    guard = chin_guard(collapsed, 40)
    assert guard[3, 1] == pytest.approx(230) and np.allclose(guard[:, 0], collapsed[5:12, 0])
    assert collapsed[5, 1] < guard[0, 1] < guard[1, 1] < guard[2, 1]  # the neighbours follow in part


def test_the_chin_guard_adds_to_the_matte_and_takes_nothing_from_the_forehead():
    landmarks = (
        FaceAnalyzer(upsample=1).detect(load_still("builtin:astronaut"))[0].landmarks.astype(np.float64)
    )
    guard = chin_guard(landmarks, chin_drop(landmarks) + 10)
    points = matte_points(landmarks, "extended", chin=guard)
    for part in (landmarks, forehead_points(landmarks), guard):  # dlib's track: the forehead stays
        assert all((points == p).all(1).any() for p in part)
    size = 640
    with_guard = landmark_mask(landmarks, size, "extended", chin=guard)
    plain = landmark_mask(landmarks, size, "extended")
    assert (with_guard >= plain - 0.1).all() and with_guard.sum() > plain.sum()  # (anti-aliased edges)
