"""The formats of the model files `vfx train` writes, and what can be known of a model file without torch:
`vfx validate`, `status` and `--dry-run` must not import it (2-7 s), yet should refuse a damaged, foreign
or mismatched file before a render worker finds out after the face track."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.files import ForeignObjectsError, read_torch_file_without_tensors
from pipeline.models import ModelError

GENERATOR_FORMAT, GENERATOR_VERSION = "vfx-stylegan2", 1
ENCODER_FORMAT, ENCODER_VERSION = "vfx-encoder", 1
MAPPER_FORMAT, MAPPER_VERSION = "vfx-mapper", 1
ENCODER_REMEDY = "an encoder for it with vfx train encoder"
MAPPER_REMEDY = "a mapper for it with vfx train mapper"


def read_header(path: Path, format: str, version: int, what: str, maker: str) -> dict:
    """A model file of ours with its tensors left out, checked to be `format` at `version`: a damaged
    or foreign file is refused by validate, not by a render worker after the face track."""
    try:
        data = read_torch_file_without_tensors(path)
    except PipelineError as e:
        raise ModelError(e.one_line()) from None
    if not isinstance(data, dict) or data.get("format") != format:
        raise ModelError(f"{path}: not {what} file ({maker} makes them)")
    if data.get("version") != version:
        raise ModelError(f"{path}: {format} version {data.get('version')} is not version {version}")
    return data


def check_generator_file(path: Path) -> None:
    """What can be known of a generator file without torch: ours (its format and version), rosinality's
    (a g_ema of its layer names); its pickles' other classes, and NVIDIA's .pkl, are judged by the safe
    loader when the render reads it."""
    if path.suffix == ".pkl":
        if path.stat().st_size == 0:
            raise ModelError(f"{path}: the file is empty")
        return
    try:
        data = read_torch_file_without_tensors(path)
    except ForeignObjectsError:
        return  # rosinality's checkpoints hold an argparse.Namespace
    except PipelineError as e:
        raise ModelError(e.one_line()) from None
    if isinstance(data, dict) and data.get("format") == GENERATOR_FORMAT:
        if data.get("version") != GENERATOR_VERSION:
            raise ModelError(
                f"{path}: {GENERATOR_FORMAT} version {data.get('version')} is not version {GENERATOR_VERSION}"
            )
        return
    g_ema = data.get("g_ema") if isinstance(data, dict) else None
    if isinstance(g_ema, dict) and "input.input" in g_ema:
        return
    raise ModelError(
        f"{path}: not a generator we know (ours, rosinality g_ema, NVIDIA G_ema); {what_it_holds(data)}"
    )


def what_it_holds(data: object) -> str:
    """For an error about a torch file of the wrong kind: the kind of ours it is, else its first keys."""
    if isinstance(data, dict) and isinstance(data.get("format"), str):
        return f"it is a {data['format']} file"
    keys = ", ".join(map(str, list(data)[:8])) if isinstance(data, dict) else type(data).__name__
    return f"keys: {keys}"


def refuse_other_generator(
    path: Path, recorded: str, generator: Path, actual: str, remedy: str = ENCODER_REMEDY
) -> None:
    """An encoder (or a mapper, or its training state at `path`) made for the generator with checksum
    `recorded` is not used with another one: its W+ would draw other faces. `remedy`: what to train."""
    if recorded != actual:
        raise ModelError(
            f"{path}: trained for the generator with sha256 {recorded[:16]}..., not {generator} "
            f"(sha256 {actual[:16]}...); train {remedy}"
        )
