"""`vfx cartoon`: a folder of aligned crops redrawn in the procedural cartoon look, the target domain that
ships with the project for `vfx train stylize` (no caricature data can be had offline)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.commands.stills import image_files
from pipeline.curves import write_png
from pipeline.errors import PipelineError
from pipeline.files import refuse_file_at
from pipeline.media.color import to_uint8
from pipeline.media.decode import read_image
from pipeline.stylize.cartoon import cartoon


def cartoon_folder(source: Path, out: Path, on_file: Callable[[Path], None] | None = None) -> list[Path]:
    """Each image of `source` (a folder or one image) cartoon-filtered into `out` as PNG, same names.
    An image already in `out` is not overwritten: the folder is refused before anything is written."""
    files = image_files(Path(source))
    refuse_file_at(out, "the cartoon crops")
    there = [out / f"{f.stem}.png" for f in files if (out / f"{f.stem}.png").exists()]
    if there:
        raise PipelineError(f"{there[0]}: already there ({len(there)} of {len(files)}); give an empty --out")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        image = read_image(f)
        if image.ndim != 3 or image.shape[2] < 3:
            raise PipelineError(f"{f}: not an RGB image")
        image = to_uint8(image)
        path = out / f"{f.stem}.png"
        write_png(path, cartoon(image[..., :3].copy()))
        written.append(path)
        if on_file:
            on_file(path)
    return written
