"""Attribute edits in W+: a direction, an amount, and the frames over which it ramps in and out.

A direction is learned from latents of faces with and without an attribute (say mouth open and closed):
a linear classifier in W+ separates them, and its unit normal is the direction, so moving a latent by
`amount` along it moves the classifier's score by exactly `amount`. Restricting it to chosen layers
(W+ rows) leaves the others, and what they carry (identity in the coarse layers, colour in the fine
ones), alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from pipeline.errors import PipelineError
from pipeline.files import ZIP_MAGIC, read_array, write_atomic


@dataclass(frozen=True)
class Direction:
    vector: np.ndarray  # [num_ws, w_dim], unit norm, zero outside `layers`
    layers: tuple[int, ...]
    bias: float = 0.0  # the classifier's: score(w) = <w, vector> + bias
    name: str = ""
    accuracy: float = float("nan")  # of the classifier on the latents it was learned from

    def score(self, latents: np.ndarray) -> np.ndarray:
        """The classifier's signed score of latents [N, num_ws, w_dim]: positive means the attribute."""
        return np.tensordot(latents, self.vector, axes=([-2, -1], [0, 1])) + self.bias

    def save(self, path: Path, **info) -> None:
        meta = json.dumps(
            {
                "layers": list(self.layers),
                "bias": self.bias,
                "name": self.name,
                "accuracy": self.accuracy,
                **info,
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: np.savez(tmp, direction=self.vector.astype(np.float32), meta=meta))

    @classmethod
    def load(cls, path: Path) -> Direction:
        """A direction file written by `vfx direction learn`, or a plain .npy/.npz array ([w_dim] for
        every layer, or [num_ws, w_dim]): read without unpickling, and its values and settings checked
        here, so a bad file is refused when the manifest is loaded."""
        if not path.is_file():
            raise PipelineError(f"{path}: direction file not found")
        vector = read_array(path, keys=("direction",), skip=("meta",), dtype=np.float64)
        meta = _read_meta(path)
        default_layers = list(range(vector.shape[0] if vector.ndim == 2 else 0))
        layers = meta.get("layers", default_layers)
        if not isinstance(layers, list) or not all(type(i) is int and i >= 0 for i in layers):
            raise PipelineError(f"{path}: meta layers is {layers!r}; a list of W+ layer numbers is needed")
        numbers = {}
        for key, default in (("bias", 0.0), ("accuracy", float("nan"))):
            value = meta.get(key, default)
            if type(value) not in (int, float) or (key == "bias" and not math.isfinite(value)):
                raise PipelineError(f"{path}: meta {key} is {value!r}; a number is needed")
            numbers[key] = float(value)
        return cls(
            vector, tuple(layers), numbers["bias"], str(meta.get("name", path.stem)), numbers["accuracy"]
        )

    def for_generator(self, num_ws: int, w_dim: int, source: str = "") -> np.ndarray:
        """The direction as [num_ws, w_dim] for a generator, or an error naming what does not fit."""
        v = self.vector
        if v.ndim == 1:
            v = np.repeat(v[None], num_ws, axis=0)
        if v.shape != (num_ws, w_dim):
            raise PipelineError(
                f"{source or self.name}: the direction is {list(self.vector.shape)}; the generator's W+ is "
                f"[{num_ws}, {w_dim}]"
            )
        return v


def _read_meta(path: Path) -> dict:
    """The settings `vfx direction learn` stores beside the vector (a JSON string); {} for a bare array."""
    with open(path, "rb") as f:
        if f.read(4) not in ZIP_MAGIC:
            return {}
    try:
        with np.load(path, allow_pickle=False) as d:
            if "meta" not in d.files:
                return {}
            meta = json.loads(str(d["meta"]))
    except (OSError, ValueError) as e:
        raise PipelineError(f"{path}: its meta cannot be read ({str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise PipelineError(f"{path}: its meta is {type(meta).__name__}, not a JSON object")
    return meta


def learn_direction(
    positive: np.ndarray,
    negative: np.ndarray,
    layers: list[int] | None = None,
    l2: float = 1e-2,
    name: str = "",
) -> Direction:
    """A logistic-regression classifier between latents with (`positive`) and without the attribute, both
    [N, num_ws, w_dim], on the chosen layers; its unit normal is the direction."""
    num_ws = positive.shape[1]
    layers = sorted(set(range(num_ws) if layers is None else layers))
    if not layers or min(layers) < 0 or max(layers) >= num_ws:
        raise PipelineError(f"layers {layers}: the generator's W+ has layers 0-{num_ws - 1}")
    x = np.concatenate([positive[:, layers], negative[:, layers]]).reshape(len(positive) + len(negative), -1)
    y = np.r_[np.ones(len(positive)), -np.ones(len(negative))]
    mean = x.mean(0)
    xc = x - mean

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        margin = y * (xc @ w + b)
        value = np.logaddexp(0, -margin).mean() + l2 * w @ w
        g = -y * 0.5 * (1 - np.tanh(margin / 2)) / len(y)  # d/dmargin of log(1 + e^-m), times y
        return value, np.r_[xc.T @ g + 2 * l2 * w, g.sum()]

    fit = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B")
    w, b = fit.x[:-1], fit.x[-1]
    norm = float(np.linalg.norm(w))
    if norm == 0:
        raise PipelineError("the two sets of faces cannot be told apart: no direction")
    accuracy = float(((xc @ w + b) * y > 0).mean())
    vector = np.zeros(positive.shape[1:])
    vector[layers] = (w / norm).reshape(len(layers), -1)
    bias = (b - mean @ w) / norm  # the score in latent units, on uncentred latents
    return Direction(vector, tuple(layers), float(bias), name, accuracy)


def ramp(frames: np.ndarray, first: int, last: int, ramp_frames: int) -> np.ndarray:
    """0..1 weight per frame: 0 outside first..last; inside, easing in over the first `ramp_frames` and out
    over the last ones (smoothstep, so the edit starts and stops without a jolt), 1 between."""
    f = np.asarray(frames, np.float64)
    inside = (f >= first) & (f <= last)
    if ramp_frames <= 0:
        return inside.astype(np.float64)
    rise = np.clip((f - first) / ramp_frames, 0, 1)
    fall = np.clip((last - f) / ramp_frames, 0, 1)
    t = np.minimum(rise, fall)
    return t * t * (3 - 2 * t) * inside


def apply_edit(latents: np.ndarray, direction: np.ndarray, amount: float, weights: np.ndarray) -> np.ndarray:
    """latents [T, num_ws, w_dim] moved by amount * weight along the direction [num_ws, w_dim]."""
    return latents + amount * weights[:, None, None] * direction[None]
