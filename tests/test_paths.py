"""Latent paths: through every key, C1 at every key, no loops where the uniform spline makes one."""

import numpy as np
import pytest

from pipeline.stylegan.paths import (
    CatmullRom,
    PathSettings,
    latent_path,
    linear_path,
    period_problem,
    slerp_path,
)

UNEVEN = np.array([1001.0, 1004.0, 1019.0, 1022.0, 1050.0])


def _keys(seed: int = 0, k: int = 5, d: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(k, d))


def _self_intersections(points: np.ndarray) -> int:
    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    segs = list(zip(points[:-1], points[1:], strict=True))
    hits = 0
    for i, (a, b) in enumerate(segs):
        for c, d in segs[i + 2 :]:
            if cross(a, b, c) * cross(a, b, d) < 0 and cross(c, d, a) * cross(c, d, b) < 0:
                hits += 1
    return hits


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("ends", ["extrapolated", "clamped"])
@pytest.mark.parametrize("ease", [False, True])
def test_catmull_rom_passes_through_keys_with_continuous_velocity(alpha, ends, ease):
    keys = _keys()
    curve = CatmullRom(UNEVEN, keys, alpha, ends, ease)
    assert np.abs(curve(UNEVEN) - keys).max() < 1e-5
    eps = 1e-6
    before, after = curve(UNEVEN[1:-1] - eps, 1), curve(UNEVEN[1:-1] + eps, 1)
    scale = np.abs(before).max()
    assert scale > 1e-3  # the path really moves through the keys
    assert np.abs(before - after).max() < 1e-4 * scale
    # velocity is the derivative of the values (checked by finite differences between keys)
    mid = (UNEVEN[:-1] + UNEVEN[1:]) / 2
    numeric = (curve(mid + 1e-4) - curve(mid - 1e-4)) / 2e-4
    assert np.allclose(numeric, curve(mid, 1), rtol=1e-4, atol=1e-6)
    speed_at_ends = np.abs(curve(UNEVEN[[0, -1]], 1)).max()
    assert (speed_at_ends < 1e-9) == (ease or ends == "clamped")


def test_a_loop_no_longer_than_its_keys_span_is_refused_naming_the_span():
    frames = np.array([0.0, 5.0, 20.0])
    assert period_problem(21, frames) is None and period_problem(None, frames) is None
    assert period_problem(5, [3.0]) is None  # one key: nothing to loop through
    for period in (20, 7):
        problem = period_problem(period, frames)
        assert (
            problem is not None and f"a loop of {period} frames" in problem and "20 frames (0-20)" in problem
        )
        with pytest.raises(ValueError) as e:
            CatmullRom(frames, _keys(1, k=3), period=period)
        assert str(e.value) == problem


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_closed_loop_comes_round_smoothly(alpha):
    keys = _keys(1, k=4)
    frames = np.array([0.0, 5.0, 17.0, 20.0])
    curve = CatmullRom(frames, keys, alpha, period=30)
    assert np.abs(curve(frames) - keys).max() < 1e-5
    assert np.abs(curve(frames + 30) - keys).max() < 1e-5  # one period on
    eps = 1e-6
    for f in frames:  # including the join at frame 30 == frame 0
        jump = np.abs(curve([f + 30 - eps], 1) - curve([f + eps], 1)).max()
        assert jump < 1e-4 * np.abs(curve([f], 1)).max()


def test_centripetal_has_no_loop_where_uniform_overshoots():
    # a sharp turn with a short middle segment: the uniform spline loops round it
    keys = np.array([[0.0, 0.0], [1.0, 1.0], [1.1, 1.0], [2.0, 0.0]])
    frames = np.array([0.0, 10.0, 13.0, 30.0])
    at = np.linspace(0, 30, 601)
    assert _self_intersections(CatmullRom(frames, keys, 0.0)(at)) > 0
    assert _self_intersections(CatmullRom(frames, keys, 0.5)(at)) == 0
    assert _self_intersections(CatmullRom(frames, keys, 1.0)(at)) == 0


def test_moving_one_key_changes_only_its_neighbouring_segments():
    keys = _keys(2, k=6)
    frames = np.arange(6) * 10.0
    moved = keys.copy()
    moved[4] += 1.0
    at = np.arange(0, 51)
    a, b = CatmullRom(frames, keys)(at), CatmullRom(frames, moved)(at)
    changed = np.flatnonzero(np.abs(a - b).max(axis=1) > 1e-12)
    assert changed.min() > 20 and changed.max() < 50  # segments 2-3, 3-4, 4-5 only, not 0-1 or 1-2


def test_linear_and_slerp_pass_through_keys_and_linear_has_a_kink():
    keys = _keys(3)
    assert np.abs(linear_path(UNEVEN, keys, UNEVEN) - keys).max() < 1e-9
    assert np.abs(slerp_path(UNEVEN, keys, UNEVEN) - keys).max() < 1e-9
    v_before = linear_path(UNEVEN, keys, UNEVEN[1:2] - 0.5) - linear_path(UNEVEN, keys, UNEVEN[1:2] - 1.5)
    v_after = linear_path(UNEVEN, keys, UNEVEN[1:2] + 1.5) - linear_path(UNEVEN, keys, UNEVEN[1:2] + 0.5)
    assert np.abs(v_before - v_after).max() > 0.1
    # slerp keeps the length from the centre between two keys of the same length
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    mid = slerp_path(np.array([0.0, 2.0]), np.vstack([a, b]), np.array([1.0]))
    assert np.allclose(np.linalg.norm(mid), 1.0) and np.allclose(mid, [[2**-0.5, 2**-0.5]])


def test_latent_path_gives_each_layer_its_own_curve():
    keys = np.random.default_rng(4).normal(size=(4, 3, 16))
    keys[:, 1] = keys[0, 1]  # a layer that does not move
    frames = np.array([10.0, 20.0, 25.0, 40.0])
    out = latent_path(frames, keys, np.arange(10, 41), PathSettings(alpha=0.5))
    assert out.shape == (31, 3, 16)
    assert np.abs(out[[0, 10, 15, 30]] - keys).max() < 1e-5
    assert np.abs(out[:, 1] - keys[0, 1]).max() < 1e-6
    # keys in any order give the same path
    order = [2, 0, 3, 1]
    assert np.allclose(latent_path(frames[order], keys[order], np.arange(10, 41)), out)
