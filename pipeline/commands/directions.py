"""`vfx direction learn`: an attribute direction from two folders of faces, with and without it.

Both folders are projected into the generator's W+ (the latents are kept beside the direction file, so
a re-run with other layers does not project again), a linear classifier is fitted between them on the
chosen layers, and its unit normal is written with the classifier's bias and accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.commands.stills import image_files, project_stills
from pipeline.errors import PipelineError
from pipeline.stylegan.edits import Direction, learn_direction
from pipeline.stylegan.project import ProjectSettings


def parse_layers(text: str | None) -> list[int] | None:
    """'0-3,6' -> [0, 1, 2, 3, 6]; None means every layer."""
    if not text:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            a, _, b = part.partition("-")
            out += list(range(int(a), int(b or a) + 1))
    except ValueError:
        raise PipelineError(f"--layers {text!r}: give layers like 0-3,6") from None
    return out


def pick_faces(folder: Path, most: int | None) -> list[Path]:
    """The folder's images, or `most` of them spread evenly over it (a clip's crops are in frame order)."""
    files = image_files(folder)
    if most is None or len(files) <= most:
        return files
    return [files[i] for i in np.linspace(0, len(files) - 1, most).round().astype(int)]


def folder_latents(
    files: list[Path],
    generator: str,
    cache: Path,
    settings: ProjectSettings,
    aligned: bool,
    batch: int,
    on_step: Callable | None,
) -> np.ndarray:
    project_stills(files, generator, cache, settings, aligned=aligned, batch=batch, on_step=on_step)
    return np.stack([np.load(cache / f"{p.stem}.npz")["latents"] for p in files])


def check_direction_paths(positive: Path, negative: Path, out: Path) -> None:
    """What is wrong before any face is projected: --out a folder, or one folder on both sides (both were
    projected, then found no direction)."""
    if out.is_dir():
        raise PipelineError(f"--out {out}: a folder is there; give the direction's file (.npz)")
    if Path(positive).resolve() == Path(negative).resolve():
        raise PipelineError(f"--pos and --neg are both {positive}: give faces with the attribute and without")


def learn_from_folders(
    positive: Path,
    negative: Path,
    generator: str,
    out: Path,
    settings: ProjectSettings,
    layers: list[int] | None = None,
    aligned: bool = False,
    batch: int = 8,
    on_step: Callable | None = None,
    max_faces: int | None = None,
) -> Direction:
    check_direction_paths(positive, negative, out)
    cache = out.with_name(out.stem + "_latents")
    pos_files, neg_files = pick_faces(positive, max_faces), pick_faces(negative, max_faces)
    pos = folder_latents(pos_files, generator, cache / "pos", settings, aligned, batch, on_step)
    neg = folder_latents(neg_files, generator, cache / "neg", settings, aligned, batch, on_step)
    if len(pos) < 2 or len(neg) < 2:
        raise PipelineError(f"{positive} / {negative}: need at least two faces in each folder")
    direction = learn_direction(pos, neg, layers, name=out.stem)
    direction.save(
        out,
        positive=str(positive),
        negative=str(negative),
        generator=generator,
        faces=[len(pos), len(neg)],
        mean_score=[float(direction.score(pos).mean()), float(direction.score(neg).mean())],
    )
    return direction
