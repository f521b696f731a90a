"""What a render's outputs say of synthetic (AI-altered) imagery: each frame for itself, and an output
made of frames (a movie, a contact sheet) for all of them.

A frame says true only when a face in it was altered (a new face composited, or a generated frame); a
plate frame passed through (no face found, or a shot whose stages alter nothing) says false, even in a
shot whose stages alter faces. Outputs made of frames read the frames' own metadata back, so a resumed
render, whose finished frames an earlier run wrote, says the same as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pipeline import TOOL_NAME
from pipeline.media.sequences import read_frame_metadata

SYNTHETIC_NOTE = (
    "Made by the {tool} face-VFX pipeline. Face stages that altered this imagery with AI: {stages}."
)


def synthetic_fields(altered_by: Sequence[str]) -> dict[str, str]:
    """The metadata fields that say whether, and by which stages, the imagery was altered."""
    return {
        "synthetic_imagery": "true" if altered_by else "false",
        "ai_altered_stages": ",".join(altered_by) or "none",
        "comment": SYNTHETIC_NOTE.format(
            tool=TOOL_NAME, stages=", ".join(altered_by) or "none (plate passthrough)"
        ),
    }


def says_synthetic(metadata: Mapping[str, str]) -> bool:
    return metadata.get("synthetic_imagery") == "true"


def unaltered(metadata: dict[str, str]) -> dict[str, str]:
    """The render's metadata for an output in which no face was altered (its origin fields kept)."""
    return {**metadata, **synthetic_fields([])}


def frame_metadata(metadata: dict[str, str], altered: bool) -> dict[str, str]:
    """One frame's metadata: the render's when a face in it was altered, else the unaltered form."""
    return metadata if altered else unaltered(metadata)


def sequence_metadata(metadata: dict[str, str], frames: Iterable[Path]) -> dict[str, str]:
    """For an output made of written frames: the render's metadata when any frame says it holds an
    altered face, else the unaltered form. Stops at the first frame that says so."""
    if not says_synthetic(metadata):
        return metadata
    if any(says_synthetic(read_frame_metadata(p)) for p in frames):
        return metadata
    return unaltered(metadata)
