"""The losses' weights of a training's settings, as `--weights NAME=VALUE,...` changes them (the encoder's
and the mapper's trainings: each settings class holds a `NAME_weight` field per loss)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TypeVar

from pipeline.errors import PipelineError

S = TypeVar("S")


def with_loss_weights(settings: S, weights: dict[str, float], losses: tuple[str, ...]) -> S:
    """`settings` with some losses' weights replaced ({"identity": 0.5, ...}); a name not in `losses` or
    a weight that is not a finite number from 0 up is refused."""
    for name, value in weights.items():
        if name not in losses:
            raise PipelineError(f"--weights: no loss {name!r} (the losses: {', '.join(losses)})")
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise PipelineError(f"--weights: {name}={value!r}; give a finite number from 0 up")
    return replace(settings, **{f"{name}_weight": float(value) for name, value in weights.items()})
