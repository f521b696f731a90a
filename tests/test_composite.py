from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import OpenEXR
import pytest
from conftest import LAYOUT, write_manifest

from pipeline.composite import (
    FaceElement,
    alter_face,
    blend,
    blur_sigmas,
    blur_to_match,
    match_grain,
    mean_lab_difference,
    motion_streak,
    noise_sigma,
    seam_score,
    sharpen,
    transfer_color,
)
from pipeline.errors import ManifestError
from pipeline.faces.align import PlateRegion, align_face, ffhq_params, transform_points, warp_to_plate
from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.masks import landmark_mask
from pipeline.faces.track import FaceTrack
from pipeline.manifest import load_shot
from pipeline.media.color import to_uint16
from pipeline.media.decode import MoviePlate, load_still, read_image
from pipeline.media.sequences import read_png_text, write_frame
from pipeline.shot.composite import composite_contact_sheet, opencv_serial
from pipeline.shot.review import contact_sheet, frame_thumb, sample_frames, save_review_tile
from pipeline.shot.track import faces_contact_sheet
from pipeline.workspace import RenderVersion


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf")


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(upsample=1)


def prepared(frame: np.ndarray, analyzer: FaceAnalyzer, size: int = 256):
    face = analyzer.detect(frame)[0]
    crop, m = align_face(frame, ffhq_params(face.landmarks), size)
    mask = landmark_mask(transform_points(m, face.landmarks), size, "extended", erode=0.02, feather=0.03)
    return crop, m, mask


def real_frames(footage: Path) -> list[np.ndarray]:
    frames = []
    for name, picks in (("woman_headturns_512.mp4", (0, 120, 240)), ("man_glasses_720x1280.mp4", (50, 200))):
        plate = MoviePlate(footage / name)
        for i in picks:
            frames.append(next(plate.read(i, i + 1)))
    return frames


@pytest.mark.parametrize("mode", ["alpha", "laplacian", "poisson"])
def test_identity_round_trip_every_blend_mode(mode, analyzer):
    plate = load_still("builtin:astronaut")
    crop, m, mask = prepared(plate, analyzer, 512)
    region = warp_to_plate(crop, mask, m, plate.shape)
    out = blend(plate, region, mode)
    touched = np.zeros(plate.shape[:2], bool)
    touched[region.box] = region.alpha > 0
    np.testing.assert_array_equal(out[~touched], plate[~touched])
    assert psnr(out[touched], plate[touched]) >= 40


@pytest.mark.parametrize("mode", ["alpha", "laplacian", "poisson"])
def test_identity_round_trip_on_real_footage(mode, footage, analyzer):
    for plate in real_frames(footage):
        crop, m, mask = prepared(plate, analyzer, 512)
        region = warp_to_plate(crop, mask, m, plate.shape)
        out = blend(plate, region, mode)
        touched = np.zeros(plate.shape[:2], bool)
        touched[region.box] = region.alpha > 0
        assert np.array_equal(out[~touched], plate[~touched])
        assert psnr(out[touched], plate[touched]) >= 40


@pytest.mark.parametrize("magnify", [1.5, 2.3, 4.5, 9.0])
def test_warp_to_plate_stays_with_one_cubic_warp(magnify):
    """A face magnified 2x or more is scaled up by a power of two (cubic) and warped the rest of the way
    bilinearly: on a sharp, high-contrast texture it stays within 1.5/255 RMS and 10/255 of one cubic warp
    at the plate's size (a pixel's shift is 6-11/255 RMS); below 2x it is that cubic warp, bit for bit."""
    from pipeline.faces.align import crop_matrix

    rng = np.random.default_rng(7)
    face = cv2.GaussianBlur(rng.random((256, 256, 3)).astype(np.float32), (0, 0), 1.5)
    face = np.clip((face - 0.5) * 4 + 0.5, 0, 1)
    mask = np.zeros((256, 256), np.float32)
    cv2.ellipse(mask, (128, 136), (90, 110), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 8)
    m = crop_matrix(np.array([1600.0, 1300.0, 256 * magnify, 0.1]), 256)
    region = warp_to_plate(face, mask, m, (2600, 3200, 3))
    assert region is not None
    inverse = cv2.invertAffineTransform(m)
    inverse[:, 2] -= (region.x0, region.y0)
    h, w = region.alpha.shape
    cubic = [
        np.clip(
            cv2.warpAffine(p, inverse, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE), 0, 1
        )
        for p in cv2.split(face)
    ]
    if magnify < 2:
        for got, want in zip(region.planes, cubic, strict=True):
            np.testing.assert_array_equal(got, want)
        return
    inside = region.alpha > 0
    diff = np.stack([a - b for a, b in zip(region.planes, cubic, strict=True)], -1)[inside] * 255
    assert np.sqrt((diff**2).mean()) < 1.5 and np.abs(diff).max() < 10, (
        magnify,
        diff.std(),
        np.abs(diff).max(),
    )


@pytest.mark.parametrize("magnify", [0.4, 1.5, 2.3, 4.5])
def test_the_face_is_finished_only_where_the_warp_back_reads_it(magnify):
    """The colour match and the sharpening run only over the part of the crop that the warp back reads
    (and the sharpening's reach), zero elsewhere: the region is the one made from the face finished whole,
    bit for bit without a colour match, and within the colour statistics' sampling with one."""
    from pipeline.composite import finish_face
    from pipeline.faces.align import crop_matrix, plate_warp

    rng = np.random.default_rng(11)
    face, crop = (
        cv2.GaussianBlur(rng.random((256, 256, 3)).astype(np.float32), (0, 0), 1.2) for _ in range(2)
    )
    mask = np.zeros((256, 256), np.float32)
    cv2.ellipse(mask, (120, 140), (55, 70), 10, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 4)
    m = crop_matrix(np.array([900.0, 700.0, 256 * magnify, 0.15]), 256)
    warp = plate_warp(mask, m, (1400, 1800, 3))
    assert warp is not None
    rows, cols = warp.part
    assert (rows.stop - rows.start) * (cols.stop - cols.start) < 0.9 * 256**2  # the test could fail
    for color, amount in (("none", 0.5), ("rct", 0.3)):
        finished = finish_face(face, crop, mask, color, amount, warp.part)
        outside = np.ones((256, 256), bool)
        outside[rows.start - 4 : rows.stop + 4, cols.start - 4 : cols.stop + 4] = False
        assert not finished[outside].any()
        whole = sharpen(transfer_color(face, crop, mask, color), amount)
        got = warp_to_plate(finished, mask, m, (1400, 1800, 3), warp)
        want = warp_to_plate(whole, mask, m, (1400, 1800, 3))
        assert got is not None and want is not None and got.box == want.box
        np.testing.assert_array_equal(got.alpha, want.alpha)
        for a, b in zip(got.planes, want.planes, strict=True):
            if color == "none":
                np.testing.assert_array_equal(a, b)
            else:
                assert np.abs(a - b)[got.alpha > 0].max() < 1 / 255


@pytest.mark.parametrize("magnify", [1.5, 2.3, 4.5])
def test_a_warped_region_lies_within_0_and_1(magnify):
    """A sharpened face over- and undershoots [0, 1], and the cubic scaling overshoots further; a matte
    may come in above 1 (a model's mask times the landmark matte). The region's planes and alpha are
    held to [0, 1], as the blend and the element expect."""
    from pipeline.faces.align import crop_matrix

    rng = np.random.default_rng(3)
    face = (cv2.GaussianBlur(rng.random((256, 256, 3)).astype(np.float32), (0, 0), 1.0) - 0.5) * 8 + 0.5
    assert face.min() < -0.2 and face.max() > 1.2
    mask = np.zeros((256, 256), np.float32)
    cv2.ellipse(mask, (128, 136), (90, 110), 0, 0, 360, 1.3, -1)
    m = crop_matrix(np.array([1600.0, 1300.0, 256 * magnify, 0.2]), 256)
    region = warp_to_plate(face, mask, m, (2600, 3200, 3))
    assert region is not None
    for plane in (*region.planes, region.alpha):
        assert plane.min() == 0 and plane.max() == 1


def blur_sigma(covariance: np.ndarray) -> float:
    """A blur covariance's sigma, averaged over directions."""
    return float(np.sqrt(np.trace(covariance) / 2))


def streak(length: float, degrees: float) -> np.ndarray:
    """A motion blur's kernel: a line of `length` px at `degrees`, drawn with bilinear weights."""
    n = int(length) + 2
    kernel = np.zeros((2 * n + 1, 2 * n + 1), np.float32)
    t = np.radians(degrees)
    for d in np.linspace(-length / 2, length / 2, 400):
        x, y = n + d * np.cos(t), n + d * np.sin(t)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        kernel[y0 : y0 + 2, x0 : x0 + 2] += np.array(
            [[(1 - fx) * (1 - fy), fx * (1 - fy)], [(1 - fx) * fy, fx * fy]]
        )
    return kernel / kernel.sum()


def test_edge_blur_reads_how_soft_a_face_is_and_which_way(analyzer):
    """edge_blur reads a face blurred by sigma as base + sigma^2 (covariances add), its base being the face's
    own edges and Sobel's: the blur it gives back is within 20% of the blur put in, from 1 to 3 px, whatever
    the face's contrast, and under 1.5 times longer one way than the other. A motion blur (a 9 px streak)
    reads along the streak, within 15 degrees, at least 1.6 times longer along it than across."""
    from pipeline.composite.match import edge_blur

    crop, _, mask = prepared(load_still("builtin:astronaut"), analyzer)
    base = edge_blur(crop, mask)
    assert base is not None and 0.3 < blur_sigma(base) < 1.5
    for sigma in (1.0, 2.0, 3.0):
        soft = cv2.GaussianBlur(crop, (0, 0), sigma)
        for image in (soft, 0.25 + 0.5 * soft):  # half the contrast: the same reading
            read = edge_blur(image, mask)
            assert read is not None
            along, across, _ = blur_sigmas(read - base)
            assert abs(blur_sigma(read - base) - sigma) < 0.2 * sigma and along < 1.5 * across, (sigma, read)
    for degrees in (0, 30, 90, 135):
        along, across, angle = blur_sigmas(edge_blur(cv2.filter2D(crop, -1, streak(9, degrees)), mask) - base)
        off = min(abs(angle - degrees), 180 - abs(angle - degrees))
        assert off < 15 and 1.3 < along < 3.2 and along > 1.6 * across, (degrees, along, across, angle)
    assert edge_blur(np.full_like(crop, 0.5), mask) is None  # no edges, no reading


def test_a_sharp_face_is_blurred_to_the_softness_of_the_plates(analyzer):
    """composite.blur: a new face sharper than the plate's face (a generated face on a defocused or
    motion-blurred plate) is blurred until it reads as soft, in the plate's blur's direction; a face as
    soft as the plate's, or softer, is left as it is."""
    from pipeline.composite import finish_face
    from pipeline.composite.match import edge_blur

    crop, _, mask = prepared(load_still("builtin:astronaut"), analyzer)
    face = alter_face(crop, "recolor")  # sharp, another colour
    whole = (slice(0, 256), slice(0, 256))
    plates = {
        "defocus 1.5": cv2.GaussianBlur(crop, (0, 0), 1.5),
        "defocus 2.5": cv2.GaussianBlur(crop, (0, 0), 2.5),
        "motion 9 px at 30 degrees": cv2.filter2D(crop, -1, streak(9, 30)),
    }
    for name, plate_face in plates.items():
        extra = blur_to_match(face, plate_face, mask)
        assert extra is not None, name
        matched = finish_face(face, plate_face, mask, "rct", 0.0, whole, blur=extra)
        plain = finish_face(face, plate_face, mask, "rct", 0.0, whole)
        want = blur_sigmas(edge_blur(plate_face, mask))
        got, before = blur_sigmas(edge_blur(matched, mask)), blur_sigmas(edge_blur(plain, mask))
        assert abs(got[0] - want[0]) < 0.15 * want[0] < abs(before[0] - want[0]), (name, got, want, before)
        assert abs(got[1] - want[1]) < 0.25 * want[0], (name, got, want)
    assert blur_to_match(face, crop, mask) is None  # as sharp as the plate's
    assert blur_to_match(cv2.GaussianBlur(face, (0, 0), 2.0), crop, mask) is None  # softer


def test_the_shutter_blurs_a_face_at_least_by_its_motion(analyzer):
    """composite.shutter: a face moving v px a frame through a shutter open s degrees is smeared over
    |v| s / 360 px along the motion (a box's variance, L^2 / 12); the new face gets at least that along the
    motion, whatever its edges read, and more where the plate's edges read more."""
    crop, _, mask = prepared(load_still("builtin:astronaut"), analyzer)
    face = alter_face(crop, "recolor")
    along, across, angle = blur_sigmas(motion_streak(np.array([12.0, 0.0]), 180))
    assert along == pytest.approx(6 / np.sqrt(12)) and across == pytest.approx(0, abs=1e-9) and angle == 0
    assert blur_sigmas(motion_streak(np.array([-5.0, -5.0]), 360))[2] == pytest.approx(45)
    for velocity in ([12.0, 0.0], [0.0, 9.0], [7.0, -7.0]):
        streak_cov = motion_streak(np.array(velocity), 180)
        alone = blur_to_match(face, crop, mask, edges=False, streak=streak_cov)
        np.testing.assert_allclose(alone, streak_cov, atol=1e-12)
        # the plate's edges as sharp as the face's: the streak is all the face gets, along the motion only
        both = blur_to_match(face, crop, mask, streak=streak_cov)
        got, want = blur_sigmas(both), blur_sigmas(streak_cov)
        assert abs(got[0] - want[0]) < 0.05 * want[0] and got[1] < 0.4, (velocity, got, want)
    # the plate smeared further than the shutter says (a 9 px streak): the edges' reading wins
    plate_face = cv2.filter2D(crop, -1, streak(9, 0))
    read = blur_to_match(face, plate_face, mask)
    floored = blur_to_match(face, plate_face, mask, streak=motion_streak(np.array([6.0, 0.0]), 180))
    assert blur_sigmas(read)[0] > 1.5 * blur_sigmas(motion_streak(np.array([6.0, 0.0]), 180))[0]
    np.testing.assert_allclose(floored, read, atol=1e-9)
    # a slow face (1 px a frame): a streak under MIN_BLUR_MATCH, nothing to do
    slow = motion_streak(np.array([1.0, 0.0]), 180)
    assert blur_to_match(face, crop, mask, edges=False, streak=slow) is None


def test_composite_shutter_blurs_a_panning_face_by_its_tracked_motion(tmp_path, woman_clip):
    """A plate panning 8 px a frame: the track reads the face's motion in crop pixels (central differences,
    one-sided at the shot's ends and at a camera cut), and `composite.shutter: 180` blurs each new face
    by half of it along the motion; without the setting nothing is blurred. The setting is in the key."""
    from pipeline.shot.composite import Compositor, composite_key
    from pipeline.shot.track import detect_range, finish_track

    source = next(MoviePlate(woman_clip).read(0, 1))
    folder = tmp_path / "pan"
    folder.mkdir()
    for n in range(1, 7):
        moved = cv2.warpAffine(
            source, np.float32([[1, 0, 8 * n - 28], [0, 1, 0]]), (512, 512), borderMode=cv2.BORDER_REFLECT101
        )
        write_frame(folder / f"pan.{n:04d}.png", moved, "png8", {})
    blurs, keys = {}, set()
    for shutter in (None, 180):
        spec = "{}" if shutter is None else f"{{shutter: {shutter}}}"
        plate = f"{{sequence: {folder}/pan.####.png}}"
        m = write_manifest(tmp_path, f"shot: pan\nplate: {plate}\nfaces: {{}}\ncomposite: {spec}\n")
        shot = load_shot(m)
        keys.add(composite_key(shot, {}).key)
        track = finish_track(shot, detect_range(shot, 1, 6).faces, tmp_path / f"{shutter}.npz")
        compositor = Compositor(shot, track, [])
        size = compositor.size
        wanted = {}
        for n in range(1, 7):
            wanted[n] = track.matrix(n, size)[:, :2] @ np.array([8.0, 0.0])  # the plate's motion in the crop
            got = track.crop_velocity(n, size)
            assert np.linalg.norm(got - wanted[n]) < 0.06 * np.linalg.norm(wanted[n]), (n, got, wanted[n])
        blurs[shutter] = [d.blur for d in compositor.frames(list(range(1, 7)), list(shot.read_frames(1, 6)))]
    assert len(keys) == 2
    assert blurs[None] == [None] * 6
    for n, got in zip(range(1, 7), blurs[180], strict=True):
        want = blur_sigmas(motion_streak(wanted[n], 180))
        assert got is not None and abs(got[0] - want[0]) < 0.05 * want[0] and got[1] < 0.1, (n, got, want)
        assert min(abs(got[2] - want[2]), 180 - abs(got[2] - want[2])) < 3, (n, got, want)
    # a camera cut before frame 4: frames 3 and 4 read their motion from their own side only
    track.cuts = np.array([4])
    track.params[track.index(4) :, 0] += 40  # the next camera shot's face is elsewhere
    for n in (3, 4):
        got = track.crop_velocity(n, size)
        assert np.linalg.norm(got - wanted[n]) < 0.06 * np.linalg.norm(wanted[n]), (n, got, wanted[n])


@pytest.mark.parametrize("method", ["rct", "hist", "lct"])
def test_colour_transfer_undoes_a_known_lab_shift(method, analyzer):
    crop, _, mask = prepared(load_still("builtin:astronaut"), analyzer)
    shifted = alter_face(crop, "recolor")  # L x0.85 + 6, a - 12, b - 10
    before = mean_lab_difference(shifted, crop, mask)
    after = mean_lab_difference(transfer_color(shifted, crop, mask, method), crop, mask)
    assert before > 10
    assert after * 5 <= before, (before, after)


def test_linear_transfer_gives_the_target_mean_and_covariance_inside_the_matte():
    """lct maps the source's colours inside the matte to the target's mean and full 3 x 3 covariance
    (Ct^1/2 Cs^-1/2: a rotated or mixed colour cast is undone, not only each channel's spread)."""
    rng = np.random.default_rng(3)
    base = cv2.GaussianBlur(rng.random((128, 128, 3), dtype=np.float32), (0, 0), 2) * 0.5 + 0.25
    mix = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.1], [0.2, 0.1, 0.5]], np.float32)
    target = np.clip(base @ mix.T + np.float32([0.1, 0.05, 0.15]), 0, 1)  # inside [0, 1]: no clipping
    mask = np.zeros((128, 128), np.float32)
    cv2.circle(mask, (64, 64), 50, 1.0, -1)
    out = transfer_color(base, target, mask, "lct")
    inside = mask > 0.5
    np.testing.assert_allclose(out[inside].mean(0), target[inside].mean(0), atol=1e-4)
    want = np.cov(target[inside].astype(np.float64), rowvar=False)
    got = np.cov(out[inside].astype(np.float64), rowvar=False)
    np.testing.assert_allclose(got, want, rtol=0.01)  # up to the 1e-6 added to both diagonals
    before = np.cov(base[inside].astype(np.float64), rowvar=False)
    assert np.abs(before - want).max() > 0.5 * np.abs(want).max()  # it had to move


def test_retouch_changes_the_face_where_the_colour_match_cannot_undo_it(analyzer):
    """The demo's alteration: the eyes larger and the jaw slimmer. After rct, recolor leaves almost no
    difference (by design) while retouch leaves a visible one, inside the face only."""
    frame = load_still("builtin:astronaut")
    face = analyzer.detect(frame)[0]
    crop, m = align_face(frame, ffhq_params(face.landmarks), 256)
    landmarks = transform_points(m, face.landmarks)
    mask = landmark_mask(landmarks, 256, "extended", erode=0.02, feather=0.03)

    def left_after_rct(how: str) -> float:
        altered = transfer_color(alter_face(crop, how, landmarks), crop, mask, "rct")
        return float(np.abs(altered - crop)[mask > 0.5].mean())

    assert left_after_rct("recolor") < 0.01 < 0.03 < left_after_rct("retouch")
    out = alter_face(crop, "retouch", landmarks)
    # the eyes grow: the dark pixels (iris, lashes) around each eye's centre become more
    for eye in (landmarks[36:42], landmarks[42:48]):
        (x0, y0), (x1, y1) = eye.min(0).astype(int) - 6, eye.max(0).astype(int) + 6
        before, after = ((im[y0:y1, x0:x1].mean(-1) < 0.3).sum() for im in (crop, out))
        assert after > 1.3 * before, (after, before)
    # far from the face (the crop's top corners) nothing moves; without landmarks it refuses
    for corner in (np.s_[:20, :20], np.s_[:20, -20:]):
        assert np.abs(out[corner] - crop[corner]).max() < 1e-3
    with pytest.raises(ValueError, match="needs the face's 68 landmarks"):
        alter_face(crop, "retouch", None)


def test_rct_on_real_footage_fivefold(footage, analyzer):
    for plate in real_frames(footage):
        crop, _, mask = prepared(plate, analyzer)
        shifted = alter_face(crop, "recolor")
        before = mean_lab_difference(shifted, crop, mask)
        after = mean_lab_difference(transfer_color(shifted, crop, mask, "rct"), crop, mask)
        assert after * 5 <= before, (before, after)


@pytest.mark.parametrize("alteration", ["mirror", "recolor"])
def test_laplacian_and_poisson_seams_beat_a_hard_paste(alteration, footage, analyzer):
    for plate in real_frames(footage):
        crop, m, mask = prepared(plate, analyzer)
        region = warp_to_plate(alter_face(crop, alteration), mask, m, plate.shape)
        hard = seam_score(blend(plate, region, "hard"), plate, region)
        for mode in ("laplacian", "poisson"):
            assert seam_score(blend(plate, region, mode), plate, region) < hard, mode


def textbook_laplacian_blend(plate: np.ndarray, face: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Burt & Adelson's blend as the paper draws it, in float64: the face's and the plate's Laplacian
    pyramids mixed band by band with the matte's Gaussian pyramid, then collapsed."""
    from pipeline.composite.blend import matte_pyramid

    gm = matte_pyramid(alpha.astype(np.float64))

    def bands(x: np.ndarray) -> list[np.ndarray]:
        g = [x]
        for _ in range(len(gm) - 1):
            g.append(cv2.pyrDown(g[-1]))
        return [g[k] - cv2.pyrUp(g[k + 1], dstsize=g[k].shape[1::-1]) for k in range(len(g) - 1)] + [g[-1]]

    mixed = [
        m[..., None] * a + (1 - m[..., None]) * b
        for m, a, b in zip(gm, bands(face), bands(plate), strict=True)
    ]
    out = mixed[-1]
    for band in mixed[-2::-1]:
        out = cv2.pyrUp(out, dstsize=band.shape[1::-1]) + band
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_laplacian_blend_is_burt_and_adelsons(dtype):
    """The one-pyramid form (the difference's bands) gives the textbook blend: within one step of the
    sample type inside the matte, the plate bit for bit outside it. A constant matte a gives exactly
    plate + a x (face - plate): every band of the difference comes back whole."""
    rng = np.random.default_rng(11)
    h, w = 150, 170
    plate01 = cv2.GaussianBlur(rng.random((h, w, 3)), (0, 0), 2) * 0.8 + 0.1
    face = np.clip(cv2.GaussianBlur(rng.random((120, 130, 3)), (0, 0), 1) * 1.2 - 0.1, 0, 1).astype(
        np.float32
    )
    alpha = np.zeros((120, 130), np.float32)
    cv2.ellipse(alpha, (64, 60), (45, 50), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 6) * (alpha > 0)
    top = 1.0 if dtype == np.float32 else float(np.iinfo(dtype).max)
    plate = (plate01 * top + (0.5 if top > 1 else 0)).astype(dtype)
    region = PlateRegion(20, 15, face, alpha)
    out = blend(plate, region, "laplacian").astype(np.float64) / top
    box = plate[region.box].astype(np.float64) / top
    want = textbook_laplacian_blend(box, face.astype(np.float64), alpha)
    inside = alpha > 0
    step = 1.0 / top if top > 1 else 1e-5
    assert np.abs(out[region.box][inside] - np.clip(want, 0, 1)[inside]).max() <= step * 1.001
    untouched = np.ones(plate.shape[:2], bool)
    untouched[region.box] = ~inside
    np.testing.assert_array_equal(blend(plate, region, "laplacian")[untouched], plate[untouched])
    half = PlateRegion(20, 15, face, np.full_like(alpha, 0.5))
    mixed = blend(plate, half, "laplacian").astype(np.float64)[half.box] / top
    assert np.abs(mixed - (box + 0.5 * (face - box))).max() <= step * 1.001


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_laplacian_blend_made_a_block_of_rows_at_a_time_is_the_whole_planes(dtype, monkeypatch):
    """The finest band is made a block of rows at a time; every block size (odd box sides, blocks of 2
    rows, blocks across the box's last row) gives the comp of the whole plane made at once, bit for bit."""
    blend_module = sys.modules["pipeline.composite.blend"]
    rng = np.random.default_rng(5)
    top = 1.0 if dtype == np.float32 else float(np.iinfo(dtype).max)
    plate = (cv2.GaussianBlur(rng.random((340, 200, 3)), (0, 0), 1.5) * top).astype(dtype)
    face = rng.random((301, 171, 3), dtype=np.float32)
    alpha = np.zeros((301, 171), np.float32)
    cv2.ellipse(alpha, (85, 150), (70, 130), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 8) * (alpha > 0)
    region = PlateRegion(17, 9, face, alpha)
    monkeypatch.setattr(blend_module, "LEVEL0_ROWS", 10**6)
    whole = blend(plate, region, "laplacian")
    assert np.abs(whole.astype(np.float64) - plate).max() > 0.1 * top  # the face went in
    for rows in (2, 6, 128, 300, 302):
        monkeypatch.setattr(blend_module, "LEVEL0_ROWS", rows)
        np.testing.assert_array_equal(
            blend(plate, region, "laplacian"), whole, err_msg=f"blocks of {rows} rows"
        )


def detail(image: np.ndarray) -> np.ndarray:
    """The fine detail of an image (minus a blurred copy): what a Poisson clone takes from its source."""
    x = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    return x - cv2.GaussianBlur(x, (0, 0), 2)


@pytest.mark.parametrize("alteration", ["mirror", "recolor"])
def test_poisson_puts_the_new_face_in(alteration, analyzer):
    """Poisson keeps the plate's colours at the matte's edge but the new face's detail inside it: the
    region's detail must be the altered face's, not the plate's (a no-op clone keeps the plate's)."""
    plate = load_still("builtin:astronaut")
    crop, m, mask = prepared(plate, analyzer)
    region = warp_to_plate(alter_face(crop, alteration), mask, m, plate.shape)
    out = blend(plate, region, "poisson")[region.box]
    inner = cv2.erode((region.alpha > 0.5).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    assert inner.sum() > 3000
    changed = np.abs(out.astype(np.float32) - plate[region.box])[inner].mean() / 255
    assert changed > 0.015, changed
    to_face = np.abs(detail(out) - detail(region.face))[inner].mean()
    to_plate = np.abs(detail(out) - detail(plate[region.box]))[inner].mean()
    assert to_face * 4 < to_plate, (to_face, to_plate)


def poisson_frame(dx: int, dy: int, even: bool) -> tuple[np.ndarray, PlateRegion]:
    """A plate and a face region whose content (plate, face and matte alike) is moved by (dx, dy) while the
    region's box stays where it is; the matte sits off the box's centre, so a clone centred on the box
    rather than on the matte would land in the wrong place. Its bounding box is odd or even in size."""
    rng = np.random.default_rng(3)
    canvas = cv2.GaussianBlur(rng.random((180, 220, 3)).astype(np.float32), (0, 0), 6) * 0.6 + 0.2
    plate = (canvas[10 - dy : 170 - dy, 10 - dx : 210 - dx] * 255 + 0.5).astype(np.uint8)
    texture = cv2.GaussianBlur(rng.random((120, 120, 3)).astype(np.float32), (0, 0), 1.0)
    alpha = np.zeros((120, 120), np.float32)
    cv2.ellipse(alpha, (50 + dx, 56 + dy), (31, 24), 0, 0, 360, 1.0, -1)  # 63 x 49 px
    if even:
        alpha = cv2.dilate(alpha, np.ones((2, 2), np.uint8))  # 64 x 50 px
    face = np.clip(np.roll(texture * 2 - 0.5, (dy, dx), axis=(0, 1)), 0, 1)
    return np.ascontiguousarray(plate), PlateRegion(40, 20, face, alpha)


@pytest.mark.parametrize("even", [False, True])
def test_poisson_clone_stays_on_the_matte_between_frames(even):
    """README: Poisson's clone centre is pinned to the matte's own box, so it cannot drift between frames."""
    plate, region = poisson_frame(0, 0, even)
    assert cv2.boundingRect((region.alpha > 0.5).astype(np.uint8))[2] % 2 == (0 if even else 1)
    out = blend(plate, region, "poisson")
    # the same face moved by whole pixels in the next frames: the comp moves by exactly as much
    for dx, dy in [(1, 0), (0, 1), (3, -2), (5, 4)]:
        moved_plate, moved = poisson_frame(dx, dy, even)
        again = blend(moved_plate, moved, "poisson")
        np.testing.assert_array_equal(again[20 + dy : 140 + dy, 40 + dx : 160 + dx], out[20:140, 40:160])
    # and the pasted detail lines up with the region's face: one pixel off in any direction is far worse
    inner = cv2.erode((region.alpha > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    got = detail(out[region.box])
    err = {
        (sy, sx): np.abs(got - detail(np.roll(region.face, (sy, sx), axis=(0, 1))))[inner].mean()
        for sy, sx in [(0, 0), (0, 1), (1, 0), (0, -1), (-1, 0)]
    }
    assert all(err[(0, 0)] * 5 < e for k, e in err.items() if k != (0, 0)), err


def test_opencv_runs_in_the_callers_thread_while_frames_run_side_by_side():
    """Inside opencv_serial OpenCV uses no pool of its own; blocks in several threads (a render's chunks)
    overlap in any order, and OpenCV gets its threads back when the last one ends."""
    import threading

    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        with opencv_serial(False):
            assert cv2.getNumThreads() == 3
        first_in, second_in, first_may_leave = threading.Event(), threading.Event(), threading.Event()
        seen = []

        def first() -> None:
            with opencv_serial():
                first_in.set()
                second_in.wait(5)
                first_may_leave.wait(5)
            seen.append(("first left", cv2.getNumThreads()))

        thread = threading.Thread(target=first)
        thread.start()
        first_in.wait(5)
        with opencv_serial():
            second_in.set()
            assert cv2.getNumThreads() == 1
            with opencv_serial():  # nested
                assert cv2.getNumThreads() == 1
            first_may_leave.set()
            thread.join(5)
            assert seen == [("first left", 1)]  # this block still runs
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_composite_blur_softens_a_sharp_face_on_a_soft_plate(tmp_path, woman_clip):
    """`composite.blur: true` on a plate softer than the new face (the woman's frames blurred by 2 px, the
    faces from the sharp frames, as a sharp model's would come): the faces that go in read as soft as the
    plate's own; without it they stay sharp. The setting is part of the composite's key."""
    from pipeline.composite.match import edge_blur
    from pipeline.shot.composite import Compositor, composite_key
    from pipeline.shot.track import detect_range, finish_track

    readings = {}
    keys = set()
    for blur in (False, True):
        m = write_manifest(
            tmp_path,
            f"shot: soft\nplate: {{movie: {woman_clip}}}\nfaces: {{}}\ncomposite: {{blur: {blur}}}\n",
        )
        shot = load_shot(m)
        keys.add(composite_key(shot, {}).key)
        shot = shot.with_frames(shot.first, shot.first + 3)
        track = finish_track(shot, detect_range(shot, shot.first, shot.last).faces, tmp_path / f"{blur}.npz")
        numbers = list(range(shot.first, shot.last + 1))
        sharp = list(shot.read_frames(shot.first, shot.last))
        soft = [cv2.GaussianBlur(p, (0, 0), 2.0) for p in sharp]
        compositor = Compositor(shot, track, [])
        size = compositor.size
        params = {n: track.params[track.index(n)] for n in numbers}
        crops = {
            n: align_face(p, params[n], size, track.x_scale)[0] for n, p in zip(numbers, sharp, strict=True)
        }

        class SharpFaces:  # the sharp frames' faces, as a sharp model's would come
            draws_own_faces = False
            frame_by_frame = True

            def __init__(self, crops):
                self.crops = crops

            def __call__(self, ns, faces, masks):
                return [self.crops[n] for n in ns], masks

        compositor.chain = [SharpFaces(crops)]
        done = compositor.frames(numbers, soft)
        readings[blur] = [
            (
                blur_sigma(edge_blur(d.new_face, d.matte)),
                blur_sigma(edge_blur(align_face(p, params[n], size, track.x_scale)[0], d.matte)),
            )
            for n, p, d in zip(numbers, soft, done, strict=True)
        ]
    assert len(keys) == 2
    for (plain, plate), (matched, _) in zip(readings[False], readings[True], strict=True):
        assert abs(matched - plate) < 0.15 * plate < abs(plain - plate), (plain, matched, plate)


def test_a_frame_by_frame_chain_composites_as_the_batch_path_does(tmp_path, woman_clip):
    """The test alteration works frame by frame, so Compositor.stream runs each frame's crop, new face and
    composite as one task, a few frames at work at once; the same alteration as a batch link (crops of the
    whole batch, then the link, then the composites) gives the same comps, faces, mattes and elements bit
    for bit, in the same order, each blended into the plate the stream was handed. Closed early, the stream
    stops: no frame is handed out after."""
    from pipeline.shot.composite import AlteredFaces, Compositor
    from pipeline.shot.track import detect_range, finish_track

    m = write_manifest(
        tmp_path,
        f"""
shot: byframe
plate: {{movie: {woman_clip}}}
faces: {{}}
composite: {{alteration: retouch, blend: laplacian, element: {{format: png16}}}}
""",
    )
    shot = load_shot(m)
    shot = shot.with_frames(shot.first, shot.first + 5)
    track = finish_track(shot, detect_range(shot, shot.first, shot.last).faces, tmp_path / "t.npz")
    numbers = list(range(shot.first, shot.last + 1))
    plates = list(shot.read_frames(shot.first, shot.last))

    class AsABatch:  # the same alteration, as a link that works on the batch at once
        draws_own_faces = False
        frame_by_frame = False

        def __init__(self, altered: AlteredFaces):
            self.altered = altered
            self.batches: list[list[int]] = []

        def __call__(self, numbers, faces, masks):
            self.batches.append(list(numbers))
            return [self.altered.alter(n, f) for n, f in zip(numbers, faces, strict=True)], masks

    by_frame = Compositor(shot, track, [])
    assert all(link.frame_by_frame for link in by_frame.chain)
    batched = Compositor(shot, track, [])
    link = AsABatch(batched.chain[0])
    batched.chain = [link]
    assert by_frame.frame_by_frame and not batched.frame_by_frame
    # the stream composites into the plates it is handed: each gets its own copies
    mine, theirs = [p.copy() for p in plates], [p.copy() for p in plates]
    a = list(by_frame.stream(zip(numbers, mine, strict=True), 3))
    b = list(batched.stream(zip(numbers, theirs, strict=True), len(numbers)))
    assert all(x.comp is p for x, p in zip(a, mine, strict=True))
    assert all(y.comp is p for y, p in zip(b, theirs, strict=True))
    assert link.batches == [numbers]  # one call for the whole batch
    assert len(a) == len(b) == len(numbers)
    assert sum(done.altered for done in a) == len(numbers)  # the woman is found in every frame
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.comp, y.comp)
        np.testing.assert_array_equal(x.new_face, y.new_face)
        np.testing.assert_array_equal(x.matte, y.matte)
        np.testing.assert_array_equal(x.element.rgba(), y.element.rgba())
    assert by_frame.new_faces_s > 0 and batched.new_faces_s > 0
    # Compositor.frames blends into copies unless told the plates are its own: the same comps, and the
    # plates stay as decoded
    apart = by_frame.frames(numbers, plates)
    for x, z, plate, decoded in zip(a, apart, plates, shot.read_frames(shot.first, shot.last), strict=True):
        assert z.comp is not plate
        np.testing.assert_array_equal(x.comp, z.comp)
        np.testing.assert_array_equal(plate, decoded)

    handed_in = []

    def plates_in():
        for pair in zip(numbers, plates, strict=True):
            handed_in.append(pair[0])
            yield pair

    stream = by_frame.stream(plates_in(), 2)
    np.testing.assert_array_equal(next(stream).comp, a[0].comp)
    stream.close()
    assert handed_in == numbers[:2]  # two frames at work when the first came out; none taken after
    assert next(stream, None) is None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_grain_matches_the_plate_noise_and_repeats_per_frame(dtype):
    """match_grain adds to a clean face the grain the plate has under the matte, read at the plate's
    resolution on its own samples (8-bit, 16-bit or float); the same seed gives the same grain, another
    seed other grain."""
    rng = np.random.default_rng(5)
    smooth = cv2.GaussianBlur(rng.random((128, 128, 3)).astype(np.float32), (0, 0), 8) * 0.5 + 0.25
    noisy = np.clip(smooth + rng.normal(0, 0.03, (128, 128, 1)), 0, 1)
    top = 1.0 if dtype == np.float32 else float(np.iinfo(dtype).max)
    plate = np.zeros((160, 170, 3), dtype)
    plate[20:148, 30:158] = (noisy * top + (0.5 if top > 1 else 0)).astype(dtype)
    alpha = np.ones((128, 128), np.float32)
    plate_sigma = noise_sigma(plate[20:148, 30:158], alpha)
    assert plate_sigma == pytest.approx(0.03 * 0.8, rel=0.35)  # the median residual keeps part of the noise

    def grained(seed: int) -> np.ndarray:
        return match_grain(PlateRegion(30, 20, smooth.copy(), alpha), plate, seed=seed).face

    once = grained(1001)
    assert noise_sigma(smooth, alpha) < 0.1 * plate_sigma
    assert noise_sigma(once, alpha) == pytest.approx(plate_sigma, rel=0.1)
    np.testing.assert_array_equal(once, grained(1001))
    assert not np.array_equal(once, grained(1002))
    assert once.min() >= 0 and once.max() <= 1


@pytest.mark.parametrize("bits", [16, 8])
def test_a_film_scans_coarse_grain_is_matched_at_the_size_the_shot_gives(bits):
    """composite.grain_size: a plate with grain of 1 px (3 steps of 8 bits, a film scan's, coarser than a
    pixel), 16 or 8 bits. The 3x3 median's residual reads a quarter of it, so a clean face got a third of
    its strength as white grain; given the size, the face gets grain of the plate's strength (within 15%)
    and the same correlation between neighbouring pixels (within 0.1)."""
    rng = np.random.default_rng(8)
    h, w = 300, 320
    base = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 12) * 0.4 + 0.3
    grain = cv2.GaussianBlur(
        np.random.default_rng(9).standard_normal((h + 32, w + 32)).astype(np.float32), (0, 0), 1.0
    )
    grain = grain[16 : 16 + h, 16 : 16 + w] / grain[16 : 16 + h, 16 : 16 + w].std() * 3 / 255
    top = 2**bits - 1
    plate = (np.clip(base + grain[..., None], 0, 1) * top + 0.5).astype(np.uint16 if bits == 16 else np.uint8)
    alpha = np.zeros((240, 260), np.float32)
    cv2.ellipse(alpha, (130, 120), (110, 100), 0, 0, 360, 1.0, -1)
    inside = alpha > 0.99
    clean = base[30:270, 30:290]

    def added(size: float) -> tuple[float, float]:
        """The grain put in: its grey's sd and its correlation with the next pixel across, under the matte."""
        face = match_grain(PlateRegion(30, 30, clean.copy(), alpha), plate, seed=3, size=size).face
        r = np.where(inside, (face - clean).mean(axis=-1), 0)
        return float(r[inside].std()), float((r[:, 1:] * r[:, :-1]).sum() / (r * r).sum())

    want = grain[30:270, 30:290]
    want_sd, want_corr = (
        float(want[inside].std()),
        float((want[:, 1:] * want[:, :-1]).mean() / (want * want).mean()),
    )
    sd, corr = added(1.0)
    assert sd == pytest.approx(want_sd, rel=0.15) and abs(corr - want_corr) < 0.1, (
        sd,
        corr,
        want_sd,
        want_corr,
    )
    sd, corr = added(0.0)  # read as fine grain
    assert sd < 0.5 * want_sd and corr < 0.1, (sd, corr)


@pytest.mark.parametrize("size", [64, 256])
def test_grain_of_a_magnified_face_matches_the_plate_at_its_resolution(size):
    """A face aligned at `size` px from a 256 px face square (1x and 4x magnified on the way back) gets the
    plate's grain at the plate's resolution, not its crop's: under the matte the comp's noise is the
    plate's (grain added to the 64 px crop and warped up 4x read as none: 0.00 against 3.41 / 255)."""
    rng = np.random.default_rng(size)
    h, w = 360, 400
    base = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 12) * 0.4 + 0.3
    plate = (np.clip(base + rng.normal(0, 4 / 255, (h, w, 1)), 0, 1) * 255 + 0.5).astype(np.uint8)
    params = np.array([200.0, 180.0, 256.0, 0.0])  # centre x, y, square side, angle (ffhq_params' form)
    crop, matrix = align_face(plate, params, size)
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, (size // 2, size // 2), (size * 3 // 8, size * 7 // 16), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), size / 64)
    clean = cv2.GaussianBlur(crop, (0, 0), max(1.0, size / 128))  # a model's face: none of the plate's grain
    region = warp_to_plate(clean, mask, matrix, plate.shape)
    inside = (region.alpha > 0.99).astype(np.float32)
    plate_sigma = noise_sigma(plate[region.box], inside)
    assert plate_sigma > 2 / 255
    assert noise_sigma(region.planes, inside) < 0.3 * plate_sigma
    comp = blend(plate, match_grain(region, plate, seed=7), "alpha")
    assert noise_sigma(comp[region.box], inside) == pytest.approx(plate_sigma, rel=0.1)


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_noise_read_on_a_grid_is_the_every_pixel_estimate(size):
    """noise_sigma reads the residual on a grid of about 4 thousand pixels (1.6 thousand under this matte, so
    its sampling error is about 3%): within 8% of the same estimate over every pixel under the matte."""
    rng = np.random.default_rng(size)
    smooth = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), size / 32) * 0.5 + 0.25
    noisy = np.clip(smooth + rng.normal(0, 0.02, (size, size, 3)), 0, 1).astype(np.float32)
    mask = np.zeros((size, size), np.float32)
    cv2.circle(mask, (size // 2, size // 2), int(0.35 * size), 1.0, -1)
    gray = cv2.cvtColor(noisy, cv2.COLOR_RGB2GRAY)
    values = (gray - cv2.medianBlur(gray, 3))[mask > 0.5]
    every_pixel = 1.4826 * np.median(np.abs(values - np.median(values)))
    assert noise_sigma(noisy, mask) == pytest.approx(every_pixel, rel=0.08)


def test_a_small_matte_is_read_on_every_pixel():
    """A matte too small for the grid to see 64 of its pixels (100 pixels: 25 on the grid) is read on every
    pixel, so its noise is still measured, and rct still matches its colours."""
    rng = np.random.default_rng(5)
    noisy = np.clip(0.5 + rng.normal(0, 0.02, (256, 256, 3)), 0, 1).astype(np.float32)
    mask = np.zeros((256, 256), np.float32)
    mask[100:110, 100:110] = 1.0
    assert noise_sigma(noisy, mask) == pytest.approx(0.02 * 0.8, rel=0.35)
    shifted = np.clip(noisy * 0.8 + 0.2, 0, 1)
    out = transfer_color(shifted, noisy, mask, "rct")
    assert mean_lab_difference(out, noisy, mask) < 0.2 * mean_lab_difference(shifted, noisy, mask)


def test_sharpen_adds_detail_and_zero_is_a_no_op():
    img = cv2.GaussianBlur(np.random.default_rng(0).random((64, 64, 3)).astype(np.float32), (0, 0), 2)
    assert sharpen(img, 0.0) is img
    lap = lambda x: np.abs(cv2.Laplacian(x, cv2.CV_32F)).mean()  # noqa: E731
    assert lap(sharpen(img, 1.0)) > 1.2 * lap(img)


@pytest.mark.parametrize("dtype", [np.uint16, np.float16])
def test_a_face_element_is_its_box_on_the_plate(dtype):
    """An element keeps the samples of its region's box (16-bit, or half floats as NumPy casts them)
    and where the box lies; at plate size it is zero elsewhere. An empty element is one empty pixel at the
    corner, which a file can hold."""
    rng = np.random.default_rng(9)
    face = rng.random((30, 40, 3)).astype(np.float32)
    alpha = np.zeros((30, 40), np.float32)
    alpha[5:25, 8:30] = rng.random((20, 22)).astype(np.float32)
    region = PlateRegion(12, 7, face, alpha)
    element = FaceElement.of((60, 80), region, dtype)
    samples, origin = element.window()
    assert origin == (12, 7) and samples.shape == (30, 40, 4) and samples.dtype == dtype
    rgba = np.dstack([face, alpha])
    if dtype == np.uint16:  # rounded in float32 arithmetic: within one step of the exact rounding
        assert np.abs(samples.astype(int) - np.round(rgba.astype(np.float64) * 65535)).max() <= 1
    else:
        np.testing.assert_array_equal(samples, rgba.astype(np.float16))
    whole = element.rgba()
    assert whole.shape == (60, 80, 4) and whole.dtype == dtype
    np.testing.assert_array_equal(whole[7:37, 12:52], samples)
    assert (
        not whole[:7].any() and not whole[37:].any() and not whole[:, :12].any() and not whole[:, 52:].any()
    )
    empty = FaceElement.of((60, 80), None, dtype)
    samples, origin = empty.window()
    assert origin == (0, 0) and samples.shape == (1, 1, 4) and not samples.any()
    assert empty.rgba().shape == (60, 80, 4) and not empty.rgba().any()


def test_composite_needs_faces_and_png_for_the_prores_element(tmp_path, face_sequence):
    m = write_manifest(
        tmp_path, f"shot: a\nplate: {{sequence: {face_sequence}}}\ncomposite: {{blend: alpha}}\n"
    )
    with pytest.raises(ManifestError, match=rf"{m}:3 composite: needs an enabled faces section"):
        load_shot(m)
    m = write_manifest(
        tmp_path,
        f"shot: a\nplate: {{sequence: {face_sequence}}}\nfaces: {{}}\n"
        "composite:\n  element: {format: exr, prores4444: true}\n",
    )
    with pytest.raises(ManifestError, match=r":5 composite\.element\.prores4444: the ProRes element"):
        load_shot(m)


@pytest.mark.slow
def test_composite_render_elements_transforms_and_empty_mattes(tmp_path, face_sequence, prefect_server):
    from pipeline.flows import run_render

    m = write_manifest(
        tmp_path,
        f"""
shot: cp010
plate: {{sequence: {face_sequence}}}
fps: 24
output: {{sequence: png16, movies: [h264_review], chunk_size: 8}}
faces: {{crop_size: 256, max_gap: 3}}
composite:
  alteration: mirror
  color: rct
  blend: alpha
  grain: false
  shutter: 360
  element: {{format: png16, prores4444: true}}
""",
    )
    v = Path(run_render(str(m), root=str(tmp_path / "r"))["path"])
    shot = load_shot(m)
    # the run record times each step and each chunk's stages; the steps and the rest add up to the total
    report = json.loads((v / "report.json").read_text())
    t = report["timings"]
    assert min(t["track_s"], t["frames_s"], t["review_s"], t["movies_s"]) > 0
    steps = sum(x for k, x in t.items() if k.endswith("_s") and k not in ("total_s", "contact_sheet_s"))
    assert steps == pytest.approx(t["total_s"])
    assert all(x > 0 for x in t["chunk_seconds"].values()), t["chunk_seconds"]  # each stage took time
    assert [(c["first"], c["last"]) for c in report["faces"]["chunks"]] == [(1, 8), (9, 16), (17, 24)]
    assert sum(c["new_faces_s"] for c in report["chunks"]) == pytest.approx(t["chunk_seconds"]["new_faces"])
    assert all(c["worker"].endswith(f":{os.getpid()}") for c in report["faces"]["chunks"])
    # composite.shutter: the face panning 3 px a frame (frames 1-8) is blurred along x, frames without a
    # face are not; each frame's blur is in the report
    blurred = {int(row[0]): row[1:] for row in report["faces"]["blur_per_frame"]}
    assert set(range(2, 8)) <= set(blurred) and not blurred.keys() & {9, 10, *range(15, 23)}, blurred
    assert all(0.4 < along < 1.5 and min(angle, 180 - angle) < 10 for along, _, angle in blurred.values())
    assert report["faces"]["blur"]["frames"] == len(blurred)
    assert (
        f"New face blurred to the plate (composite.blur, composite.shutter) on {len(blurred)} of 24"
        in (v / "report.md").read_text()
    )
    plates = list(shot.plate.read(0, 24))
    for n in range(1, 25):
        plate = plates[n - 1].astype(np.float64) / 255
        comp = (
            cv2.cvtColor(
                cv2.imread(str(v / "comp" / f"cp010_comp_v001.{n:04d}.png"), cv2.IMREAD_UNCHANGED),
                cv2.COLOR_BGR2RGB,
            ).astype(np.float64)
            / 65535
        )
        element = cv2.imread(str(v / "element" / f"cp010_faceElement_v001.{n:04d}.png"), cv2.IMREAD_UNCHANGED)
        rgba = cv2.cvtColor(element, cv2.COLOR_BGRA2RGBA).astype(np.float64) / 65535
        alpha = rgba[..., 3:]
        over = rgba[..., :3] * alpha + plate * (1 - alpha)  # "over", straight alpha
        assert np.abs(over - comp).max() <= 1 / 255, n
        if LAYOUT[n][0] == "blank" and n >= 15:  # the long gap: no face, an empty matte, the plate as it was
            assert alpha.max() == 0
            assert np.abs(comp - plate).max() < 1e-4
        if LAYOUT[n][0] == "face":
            assert alpha.max() == pytest.approx(1.0, abs=1e-4)
            assert np.abs(comp - plate)[alpha[..., 0] > 0.99].mean() > 0.005  # the altered face went in
    assert read_png_text(v / "comp" / "cp010_comp_v001.0005.png")["synthetic_imagery"] == "true"
    transforms = json.loads((v / "transforms.json").read_text())
    assert len(transforms["frames"]) == 24 and transforms["frames"][15]["plate_to_crop"] is None
    assert transforms["frames"][0]["state"] == "detected"
    with av.open(str(v / "cp010_faceElement_v001_prores4444.mov")) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.pix_fmt.startswith("yuva444")
        assert c.metadata["synthetic_imagery"] == "true"
        frame = next(c.decode(stream)).to_ndarray(format="rgba64le")
        assert frame[..., 3].max() > 60000 and frame[..., 3].min() == 0
    with av.open(str(v / "cp010_comp_v001_h264_review.mp4")) as c:
        assert c.metadata["synthetic_imagery"] == "true"
    assert (v / "composite_contact_sheet.png").is_file()

    # The contact sheets come from tiles the chunks saved while they held the frames (dropped once the
    # sheets are written); made again by decoding and compositing, they look the same.
    assert not (v / "review").exists()
    made = {n: read_image(v / f"{n}_contact_sheet.png") for n in ("faces", "composite")}
    made["frames"] = read_image(v / "contact_sheet.png")
    version = RenderVersion("cp010", 1, v, "png")
    track = FaceTrack.load(Path(json.loads((v / "report.json").read_text())["faces"]["path"]))
    meta = {"shot": "cp010"}
    again = {
        "faces": read_image(faces_contact_sheet(shot, version, track, meta, 1, 24)),
        "composite": read_image(composite_contact_sheet(shot, version, track, meta)),
        "frames": read_image(
            contact_sheet(
                [frame_thumb(read_image(version.frame_path(n)), n) for n in sample_frames(1, 24)],
                tmp_path / "sheet.png",
                meta,
            )
        ),
    }
    assert np.array_equal(made["faces"], again["faces"])
    for name in ("composite", "frames"):  # the chunks thumbnail the float comp, not the 16-bit file
        assert made[name].shape == again[name].shape
        assert np.abs(made[name].astype(int) - again[name].astype(int)).max() <= 1, name
    # and a saved tile is what the sheet shows, in place of decoding that frame again
    save_review_tile(version, "faces", 1, np.full((256, 256, 3), 255, np.uint8))
    planted = read_image(faces_contact_sheet(shot, version, track, meta, 1, 24))
    assert planted[:256, :256].min() == 255 and np.array_equal(planted[:, 256:], again["faces"][:, 256:])


def test_a_batch_holds_fewer_frames_where_they_are_big():
    from pipeline.shot.frames import BATCH_BYTES, batch_frames

    assert batch_frames(8, 1920 * 1080 * 3) == 8  # 1080p, 8-bit: the work's own batch
    assert batch_frames(8, 3840 * 2160 * 3) == 5  # UHD, 8-bit: 25 MB a frame
    assert batch_frames(8, 3840 * 2160 * 3 * 4) == 1  # UHD EXR as float32: one at a time, never none
    assert batch_frames(2, 64) == 2
    assert batch_frames(8, 3840 * 2160 * 3) * 3840 * 2160 * 3 <= BATCH_BYTES


def test_a_uhd_shot_renders_end_to_end(tmp_path, woman_clip, prefect_server):
    """A UHD plate (3840x2160, generated from the footage: the 512 px picture scaled to 2160 px and
    centred on a grey canvas) goes through tracking, compositing, elements and writing; the comps are UHD
    and differ from the plate only under the face element's matte. The EXR element holds only the face's
    box, as its data window in the plate's display window."""
    from pipeline.flows import run_render
    from pipeline.media.sequences import write_frame

    folder = tmp_path / "plate"
    folder.mkdir()
    plates = []
    for n, frame in enumerate(MoviePlate(woman_clip).read(0, 3), start=1001):
        plate = np.full((2160, 3840, 3), 60, np.uint8)
        plate[:, 840:3000] = cv2.resize(frame, (2160, 2160), interpolation=cv2.INTER_CUBIC)
        write_frame(folder / f"uhd.{n:04d}.png", plate, "png8", {})
        plates.append(plate)
    m = write_manifest(
        tmp_path,
        f"""
shot: uhd010
plate: {{sequence: {folder / "uhd.####.png"}}}
fps: 24
output: {{sequence: png8, movies: [], chunk_size: 2}}
faces: {{}}
composite: {{alteration: recolor, blend: laplacian, element: {{format: exr}}}}
""",
    )
    v = Path(run_render(str(m), root=str(tmp_path / "r"))["path"])
    for n, plate in zip(range(1001, 1004), plates, strict=True):
        comp = read_image(v / "comp" / f"uhd010_comp_v001.{n:04d}.png")
        with OpenEXR.File(str(v / "element" / f"uhd010_faceElement_v001.{n:04d}.exr")) as f:
            header = f.header()
            (x0, y0), (x1, y1) = (w.tolist() for w in header["dataWindow"])
            assert [w.tolist() for w in header["displayWindow"]] == [[0, 0], [3839, 2159]]
            assert header["synthetic_imagery"] == "true"
            alpha = f.channels()["RGBA"].pixels[..., 3]
        assert comp.shape == (2160, 3840, 3) and alpha.shape == (y1 - y0 + 1, x1 - x0 + 1)
        assert alpha.size < 0.4 * 3840 * 2160  # the face's box (a third of this plate), not the plate
        changed = (comp != plate).any(-1)
        matte = np.zeros(changed.shape, bool)
        matte[y0 : y1 + 1, x0 : x1 + 1] = alpha > 0
        assert changed.sum() > 200_000, n  # the recoloured face went in (a face about 1100 px wide)
        # and nothing changed outside its matte (but where the half-float element rounds its faintest
        # edge to 0)
        assert (changed & ~matte).sum() <= 1e-3 * changed.sum(), n
        assert read_png_text(v / "comp" / f"uhd010_comp_v001.{n:04d}.png")["synthetic_imagery"] == "true"


def test_a_10_bit_movie_plate_keeps_its_depth_through_the_faces_and_the_comp(tmp_path, woman_clip):
    """A ProRes 422 plate (10-bit) is read as 16-bit samples, as a 16-bit PNG sequence is: faces are found
    on it, and the comp keeps more than 8 bits outside and inside the face."""
    from pipeline.media.encode import ffmpeg_executable
    from pipeline.shot.composite import Compositor
    from pipeline.shot.track import detect_range, finish_track

    deep = tmp_path / "plate.mov"
    cmd = [ffmpeg_executable(), "-v", "error", "-i", str(woman_clip), "-frames:v", "4", "-c:v", "prores_ks"]
    subprocess.run([*cmd, "-profile:v", "3", "-pix_fmt", "yuv422p10le", str(deep)], check=True)
    m = write_manifest(
        tmp_path,
        f"""
shot: deep
plate: {{movie: {deep}}}
output: {{sequence: png16, movies: []}}
faces: {{}}
composite: {{alteration: retouch, blend: laplacian}}
""",
    )
    shot = load_shot(m)
    plates = list(shot.read_frames(shot.first, shot.last))
    assert len(plates) == 4 and plates[0].dtype == np.uint16
    track = finish_track(shot, detect_range(shot, shot.first, shot.last).faces, tmp_path / "t.npz")
    done = Compositor(shot, track, []).frames(list(range(shot.first, shot.last + 1)), plates)
    assert sum(d.altered for d in done) == 4  # the woman is found in every frame
    comp = to_uint16(done[0].comp)
    changed = np.any(comp != plates[0], axis=2)
    assert 0 < changed.mean() < 0.7 and not changed[:64].any()  # the face changed, above the head did not
    assert np.count_nonzero(comp[changed] % 257) > changed.sum()  # 16-bit samples, not 8-bit ones stretched


def test_an_anamorphic_plates_faces_are_found_and_composited_in_square_pixels(tmp_path, woman_clip):
    """A 2:1 anamorphic plate (a cinema lens's squeeze: the woman clip stored 256 px wide, shown 512) has
    its faces found, aligned and composited in square pixels: worked in its stored pixels, the squeezed
    face was found on 5 of 48 frames, and every crop held a face half its width. Its landmarks land where
    the unsqueezed clip's do, and its comp, unsqueezed, carries the same alteration."""
    from pipeline.media.encode import ffmpeg_executable
    from pipeline.shot.composite import Compositor
    from pipeline.shot.track import detect_range, finish_track

    frames = 8
    squeezed = tmp_path / "anamorphic.mp4"
    cmd = [ffmpeg_executable(), "-v", "error", "-i", str(woman_clip), "-frames:v", str(frames)]
    cmd += ["-vf", "scale=256:512,setsar=2", "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p"]
    subprocess.run([*cmd, str(squeezed)], check=True)
    results = {}
    for name, movie in (("anamorphic", squeezed), ("square", woman_clip)):
        m = write_manifest(
            tmp_path,
            f"""
shot: {name}
plate: {{movie: {movie}}}
output: {{sequence: png8, movies: []}}
faces: {{}}
composite: {{alteration: retouch, blend: laplacian}}
""",
            name=f"{name}.yaml",
        )
        shot = load_shot(m)
        shot = shot.with_frames(shot.first, shot.first + frames - 1)
        track = finish_track(shot, detect_range(shot, shot.first, shot.last).faces, tmp_path / f"{name}.npz")
        plates = list(shot.read_frames(shot.first, shot.last))
        done = Compositor(shot, track, []).frames(
            list(range(shot.first, shot.last + 1)), [p.copy() for p in plates]
        )
        results[name] = (track, plates, done)
    track, plates, done = results["anamorphic"]
    square_track, square_plates, square_done = results["square"]
    assert track.x_scale == 2.0 and square_track.x_scale == 1.0
    assert track.detected.all() and square_track.detected.all()
    assert sum(d.altered for d in done) == frames and plates[0].shape == (512, 256, 3)
    # the landmarks, in square pixels, where the square clip's are
    gap = np.linalg.norm(track.landmarks - square_track.landmarks, axis=-1)
    assert np.median(gap) < 3.0, np.median(gap)

    # the alteration (comp - plate), unsqueezed, is the square clip's
    def unsqueezed(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image.astype(np.float32), (512, 512), interpolation=cv2.INTER_LINEAR)

    off, size = [], []
    for d, p, sd, sp in zip(done, plates, square_done, square_plates, strict=True):
        ours = unsqueezed(d.comp) - unsqueezed(p)
        theirs = sd.comp.astype(np.float32) - sp.astype(np.float32)
        where = np.abs(theirs).max(-1) > 4
        off.append(np.abs(ours - theirs)[where].mean())
        size.append(np.abs(theirs)[where].mean())
    assert np.mean(off) < 0.3 * np.mean(size), (np.mean(off), np.mean(size))
