"""Latent paths: a latent for every frame from latents at key frames.

A Catmull-Rom spline passes through every key with a continuous first derivative, and moving a key changes
only the two segments beside it. Its alpha parameterisation spaces the knots by distance**alpha between
keys: 0 is uniform, 0.5 centripetal (no cusps or loops within a segment, no overshoot at sharp turns),
1 chordal. The knots give the curve its shape; when each key is reached is set by its frame number, so
a monotone cubic retiming maps frames to knot parameter. Both are C1, so the path is C1 in frames too,
whatever the key spacing. Geometry and retiming are scipy Hermite splines; the tangents are the
Barry-Goldman ones (Yuksel, Schaefer and Keyser, "Parameterization and applications of Catmull-Rom
curves", 2011).

In W+ every layer gets its own curve (its own knots), so a layer whose latents barely move between two
keys does not inherit another layer's timing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.interpolate import CubicHermiteSpline

Interpolation = Literal["catmull_rom", "linear", "slerp"]
Ends = Literal["clamped", "extrapolated"]


@dataclass(frozen=True)
class PathSettings:
    interpolation: Interpolation = "catmull_rom"
    alpha: float = 0.5  # 0 uniform, 0.5 centripetal, 1 chordal
    ends: Ends = "extrapolated"  # end tangents: along the chord to the neighbour, or zero
    ease: bool = False  # start and stop at rest (the timing eases; the shape is unchanged)
    period: int | None = None  # closed loop: key 0 comes round again this many frames after itself


def _monotone_slopes(x: np.ndarray, y: np.ndarray, periodic: bool) -> np.ndarray:
    """Fritsch-Carlson slopes (those of scipy's PCHIP) for increasing y, also for a periodic sequence
    whose last point repeats the first one period on."""
    h, d = np.diff(x), np.diff(y) / np.diff(x)
    m = np.zeros_like(y)
    if periodic:
        hp, dp = np.r_[h[-1], h], np.r_[d[-1], d]  # the interval before each point, wrapping round
        w1, w2 = 2 * h + hp[:-1], h + 2 * hp[:-1]
        m[:-1] = (w1 + w2) / (w1 / dp[:-1] + w2 / d)
        m[-1] = m[0]
        return m
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    m[1:-1] = (w1 + w2) / (w1 / d[:-1] + w2 / d[1:])
    for end, near, next_ in ((0, 0, 1), (-1, -1, -2)):
        if len(h) > 1:  # PCHIP's one-sided three-point end slope, kept within [0, 3 * secant]
            hh, dd = h[near], d[near]
            v = ((2 * hh + h[next_]) * dd - hh * d[next_]) / (hh + h[next_])
            m[end] = min(max(v, 0.0), 3 * dd)
        else:
            m[end] = d[near]
    return m


def period_problem(period: int | None, frames: Sequence[float] | np.ndarray) -> str | None:
    """Why a closed loop of `period` frames cannot go through keys at `frames` (None when it can): key 0
    comes back `period` frames after its own, so that must be after the last key."""
    if period is None or len(frames) < 2:
        return None
    first, last = min(frames), max(frames)
    if period > last - first:
        return None
    return (
        f"a loop of {period} frames is not longer than the keys' span, {last - first:g} frames "
        f"({first:g}-{last:g}): key 0 would come back before the last key"
    )


class CatmullRom:
    """One Catmull-Rom curve through `keys` [K, D], reached at the increasing `frames` [K]."""

    def __init__(
        self,
        frames: np.ndarray,
        keys: np.ndarray,
        alpha: float = 0.5,
        ends: Ends = "extrapolated",
        ease: bool = False,
        period: int | None = None,
    ):
        f = np.asarray(frames, np.float64)
        p = np.asarray(keys, np.float64).reshape(len(f), -1)
        if len(f) < 2 or np.any(np.diff(f) <= 0):
            raise ValueError("a path needs at least two keys at increasing frames")
        closed = period is not None
        if closed:
            problem = period_problem(period, f)
            if problem:
                raise ValueError(problem)
            p, f = np.vstack([p, p[:1]]), np.r_[f, f[0] + period]
        self.first, self.last, self.period = f[0], f[-1], period
        # knots: distance**alpha between neighbours; a repeated key gets a tiny interval, not a zero one
        dist = np.linalg.norm(np.diff(p, axis=0), axis=1)
        scale = dist.mean() if dist.any() else 1.0
        dt = np.maximum(dist, 1e-9 * scale) ** alpha if alpha else np.ones_like(dist)
        t = np.r_[0.0, np.cumsum(dt)]
        # Barry-Goldman tangents at each key from its neighbours (wrapping round a closed loop)
        m = np.zeros_like(p)
        for i in range(len(p)):
            if closed:
                prev_p, prev_dt = p[i - 1 if i else -2], dt[i - 1 if i else -1]
                next_p, next_dt = p[i + 1 if i < len(p) - 1 else 1], dt[i if i < len(dt) else 0]
            elif 0 < i < len(p) - 1:
                prev_p, prev_dt, next_p, next_dt = p[i - 1], dt[i - 1], p[i + 1], dt[i]
            else:
                chord = (p[1] - p[0]) / dt[0] if i == 0 else (p[-1] - p[-2]) / dt[-1]
                m[i] = chord if ends == "extrapolated" else 0.0
                continue
            m[i] = (
                (p[i] - prev_p) / prev_dt
                - (next_p - prev_p) / (prev_dt + next_dt)
                + (next_p - p[i]) / next_dt
            )
        self.shape = CubicHermiteSpline(t, p, m)
        slopes = _monotone_slopes(f, t, closed)
        if ease and not closed:
            slopes[0] = slopes[-1] = 0.0
        self.timing = CubicHermiteSpline(f, t, slopes)

    def _frames(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.asarray(at, np.float64)
        if self.period is not None:
            return self.first + np.mod(at - self.first, self.period), np.ones_like(at, bool)
        inside = (at >= self.first) & (at <= self.last)
        return np.clip(at, self.first, self.last), inside

    def __call__(self, at: np.ndarray, derivative: int = 0) -> np.ndarray:
        """Values [T, D] at frames `at` (held at the end keys outside an open path), or with
        derivative=1 the velocity per frame (zero outside an open path)."""
        f, inside = self._frames(at)
        u = self.timing(f)
        if derivative == 0:
            return self.shape(u)
        if derivative != 1:
            raise ValueError("only the value and the first derivative")
        return self.shape(u, 1) * (self.timing(f, 1) * inside)[:, None]


def linear_path(frames: np.ndarray, keys: np.ndarray, at: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys, np.float64).reshape(len(frames), -1)
    return np.stack([np.interp(at, frames, keys[:, j]) for j in range(keys.shape[1])], axis=1)


def slerp_path(
    frames: np.ndarray, keys: np.ndarray, at: np.ndarray, center: np.ndarray | None = None
) -> np.ndarray:
    """Great-circle interpolation of each key's offset from `center` (the average w), with its length
    interpolated linearly: a path that keeps its distance from the average face."""
    frames = np.asarray(frames, np.float64)
    keys = np.asarray(keys, np.float64).reshape(len(frames), -1)
    c = np.zeros(keys.shape[1]) if center is None else np.asarray(center, np.float64).reshape(-1)
    at = np.clip(np.asarray(at, np.float64), frames[0], frames[-1])
    seg = np.clip(np.searchsorted(frames, at, side="right") - 1, 0, len(frames) - 2)
    u = ((at - frames[seg]) / (frames[seg + 1] - frames[seg]))[:, None]
    a, b = keys[seg] - c, keys[seg + 1] - c
    la, lb = np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(b, axis=1, keepdims=True)
    na, nb = a / np.maximum(la, 1e-12), b / np.maximum(lb, 1e-12)
    omega = np.arccos(np.clip((na * nb).sum(1, keepdims=True), -1, 1))
    so = np.sin(omega)
    small = so < 1e-6
    wa = np.where(small, 1 - u, np.sin((1 - u) * omega) / np.where(small, 1, so))
    wb = np.where(small, u, np.sin(u * omega) / np.where(small, 1, so))
    return c + (wa * na + wb * nb) * ((1 - u) * la + u * lb)


def latent_path(
    frames: np.ndarray,
    keys: np.ndarray,
    at: np.ndarray,
    settings: PathSettings = PathSettings(),
    center: np.ndarray | None = None,
) -> np.ndarray:
    """Latents [T, L, D] at frames `at` from W+ keys [K, L, D] at `frames`, one curve per layer.
    `center` ([D], the average w) is what slerp turns around."""
    keys = np.asarray(keys, np.float64)
    frames = np.asarray(frames, np.float64)
    order = np.argsort(frames)
    frames, keys = frames[order], keys[order]
    at = np.asarray(at, np.float64)
    if len(frames) == 1:
        return np.repeat(keys, len(at), axis=0)
    s = settings
    out = np.empty((len(at), *keys.shape[1:]))
    for layer in range(keys.shape[1]):
        k = keys[:, layer]
        if s.interpolation == "linear":
            out[:, layer] = linear_path(frames, k, at)
        elif s.interpolation == "slerp":
            out[:, layer] = slerp_path(frames, k, at, center)
        else:
            out[:, layer] = CatmullRom(frames, k, s.alpha, s.ends, s.ease, s.period)(at)
    return out
