"""Generators, encoders and latent mappers registered by name: each with its path, checksum and what the
file holds, so manifests can say `generator: ffhq` and every render node finds (and checks) the same file.

The registries are `$VFX_MODELS/generators.json`, `$VFX_MODELS/encoders.json` and `$VFX_MODELS/mappers.json`.
Registering reads the file with the safe checkpoint reader (it may be an official pickle) only to learn its
sizes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.files import read_torch_file_without_tensors, write_json_atomic
from pipeline.models import (
    ENCODER_FILE,
    MAPPER_FILE,
    ModelError,
    ModelFile,
    encoder_file,
    generator_file,
    mapper_file,
    models_dir,
    sha256_file,
    verify,
)
from pipeline.stylegan.formats import ENCODER_FORMAT, MAPPER_FORMAT

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


@dataclass(frozen=True)
class GeneratorEntry:
    name: str
    path: str
    sha256: str
    format: str  # vfx-stylegan2, rosinality-pt, nvidia-pkl
    resolution: int
    w_dim: int
    num_ws: int
    mapping_layers: int
    size_bytes: int

    def describe(self) -> str:
        return (
            f"{self.name}: {self.resolution} px, w {self.w_dim}, {self.num_ws} layers (W+ [N, {self.num_ws}, "
            f"{self.w_dim}]), mapping {self.mapping_layers}, {self.format}, sha256 {self.sha256[:16]}..., "
            f"{self.path}"
        )


def registry_file() -> Path:
    return models_dir() / "generators.json"


def registered_generators() -> dict[str, GeneratorEntry]:
    path = registry_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {name: GeneratorEntry(**entry) for name, entry in data.items()}
    except (ValueError, TypeError) as e:
        raise ModelError(f"{path}: unreadable generator registry: {e}") from None


def register_generator(name: str, path: str | Path) -> GeneratorEntry:
    """Read the file (safely: it may be an official pickle) to learn its sizes, checksum it, and record
    it under `name`. Re-registering a name replaces its entry."""
    from pipeline.stylegan.checkpoints import load_generator  # torch: only when registering

    if not re.fullmatch(NAME, name):
        raise ModelError(f"generator name {name!r}: use letters, digits, '.', '_' and '-'")
    path = generator_file(Path(path).resolve())
    G, info = load_generator(path)
    entry = GeneratorEntry(
        name=name,
        path=str(path),
        sha256=sha256_file(path),
        format=info["format"],
        resolution=G.cfg.resolution,
        w_dim=G.cfg.w_dim,
        num_ws=G.num_ws,
        mapping_layers=G.cfg.mapping_layers,
        size_bytes=path.stat().st_size,
    )
    entries = {**registered_generators(), name: entry}
    registry_file().parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(registry_file(), {n: asdict(e) for n, e in sorted(entries.items())})
    return entry


def generator_path(ref: str, base: Path | None = None) -> Path:
    """A generator by registered name (its checksum checked) or by path (relative to `base`)."""
    entries = registered_generators()
    if ref in entries:
        entry = entries[ref]
        model = ModelFile(
            entry.name, Path(entry.path).name, entry.sha256, None, f"vfx models add {entry.name} PATH"
        )
        path = Path(entry.path)
        if not path.is_file():
            raise ModelError(
                f"{path}: registered generator {ref!r} is missing; register it again with vfx models add"
            )
        verify(path, model)
        return path
    path = generator_file(Path(ref) if base is None else base / ref)
    if not path.is_file():
        known = ", ".join(entries) or "none registered"
        raise ModelError(f"{ref}: neither a registered generator ({known}) nor a file ({path})")
    return path


# ---------------------------------------------------------------------------------------------------
# Encoders (vfx train encoder): each belongs to one generator, whose checksum its file records


@dataclass(frozen=True)
class EncoderEntry:
    name: str
    path: str
    sha256: str
    generator_sha256: str  # the generator it was trained for
    resolution: int
    w_dim: int
    num_ws: int
    steps: int
    size_bytes: int

    def describe(self) -> str:
        return (
            f"{self.name}: {self.resolution} px, {self.num_ws} layers (W+ [N, {self.num_ws}, {self.w_dim}]), "
            f"{self.steps} steps, for the generator with sha256 {self.generator_sha256[:16]}..., "
            f"sha256 {self.sha256[:16]}..., {self.path}"
        )


def encoders_file() -> Path:
    return models_dir() / "encoders.json"


def registered_encoders() -> dict[str, EncoderEntry]:
    path = encoders_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {name: EncoderEntry(**entry) for name, entry in data.items()}
    except (ValueError, TypeError) as e:
        raise ModelError(f"{path}: unreadable encoder registry: {e}") from None


def is_encoder(path: str | Path) -> bool:
    """Whether `vfx models add` was given an encoder: a folder holding encoder.pt, or a torch file of
    format vfx-encoder (read with mmap, so a large generator file is not read to find out)."""
    path = Path(path)
    return (path / ENCODER_FILE).is_file() if path.is_dir() else saved_format(path) == ENCODER_FORMAT


def saved_format(path: Path) -> str | None:
    """The "format" a torch file of ours records (its pickle only: no tensor is read, torch is not
    imported), or None for any other file."""
    try:
        data = read_torch_file_without_tensors(path)
    except PipelineError:  # not a torch file, or one holding other classes (rosinality's .pt)
        return None
    return str(data.get("format")) if isinstance(data, dict) else None


def register_encoder(name: str, path: str | Path) -> EncoderEntry:
    """Read the encoder file to learn its sizes and generator, checksum it, and record it under `name`.
    Re-registering a name replaces its entry."""
    from pipeline.stylegan.encoder import load_encoder  # torch: only when registering

    if not re.fullmatch(NAME, name):
        raise ModelError(f"encoder name {name!r}: use letters, digits, '.', '_' and '-'")
    path = encoder_file(Path(path).resolve())
    encoder, meta = load_encoder(path)
    cfg = encoder.cfg
    entry = EncoderEntry(
        name=name,
        path=str(path),
        sha256=sha256_file(path),
        generator_sha256=meta["generator_sha256"],
        resolution=cfg.resolution,
        w_dim=cfg.w_dim,
        num_ws=cfg.num_ws,
        steps=int(meta.get("steps", 0)),
        size_bytes=path.stat().st_size,
    )
    entries = {**registered_encoders(), name: entry}
    encoders_file().parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(encoders_file(), {n: asdict(e) for n, e in sorted(entries.items())})
    return entry


def encoder_path(ref: str, base: Path | None = None) -> Path:
    """An encoder by registered name (its checksum checked) or by file or folder (relative to `base`).
    Whether it fits a generator is `load_encoder(path, generator_file)`'s check."""
    return registered_path(ref, registered_encoders(), "encoder", encoder_file, base)


def registered_path(
    ref: str, entries: dict, what: str, file_of: Callable[[Path], Path], base: Path | None
) -> Path:
    """A model by registered name in `entries` (its checksum checked), or a file or model folder
    (`file_of` finds the file in a folder) relative to `base`; `what` names the kind in errors."""
    if ref in entries:
        entry = entries[ref]
        model = ModelFile(
            entry.name, Path(entry.path).name, entry.sha256, None, f"vfx models add {entry.name} PATH"
        )
        path = Path(entry.path)
        if not path.is_file():
            raise ModelError(
                f"{path}: registered {what} {ref!r} is missing; register it again with vfx models add"
            )
        verify(path, model)
        return path
    path = file_of(Path(ref) if base is None else base / ref)
    if not path.is_file():
        known = ", ".join(entries) or "none registered"
        raise ModelError(f"{ref}: neither a registered {what} ({known}) nor a file ({path})")
    return path


# ---------------------------------------------------------------------------------------------------
# Latent mappers (vfx train mapper): each belongs to one generator, whose checksum its file records


@dataclass(frozen=True)
class MapperEntry:
    name: str
    path: str
    sha256: str
    generator_sha256: str  # the generator it was trained for
    recognisers_sha256: str  # the recognisers that judged its training
    attributes: list[str]  # what it edits, in its change vector's order
    num_ws: int
    w_dim: int
    steps: int
    size_bytes: int

    def describe(self) -> str:
        return (
            f"{self.name}: edits {', '.join(self.attributes)}; W+ [N, {self.num_ws}, {self.w_dim}], "
            f"{self.steps} steps, for the generator with sha256 {self.generator_sha256[:16]}..., "
            f"sha256 {self.sha256[:16]}..., {self.path}"
        )


def mappers_file() -> Path:
    return models_dir() / "mappers.json"


def registered_mappers() -> dict[str, MapperEntry]:
    path = mappers_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {name: MapperEntry(**entry) for name, entry in data.items()}
    except (ValueError, TypeError) as e:
        raise ModelError(f"{path}: unreadable mapper registry: {e}") from None


def is_mapper(path: str | Path) -> bool:
    """Whether `vfx models add` was given a latent mapper: a folder holding mapper.pt, or a torch file
    of format vfx-mapper."""
    path = Path(path)
    return (path / MAPPER_FILE).is_file() if path.is_dir() else saved_format(path) == MAPPER_FORMAT


def register_mapper(name: str, path: str | Path) -> MapperEntry:
    """Read the mapper file to learn its attributes, sizes and generator, checksum it, and record it
    under `name`. Re-registering a name replaces its entry."""
    from pipeline.stylegan.mapper import load_mapper  # torch: only when registering

    if not re.fullmatch(NAME, name):
        raise ModelError(f"mapper name {name!r}: use letters, digits, '.', '_' and '-'")
    path = mapper_file(Path(path).resolve())
    mapper, meta = load_mapper(path)
    entry = MapperEntry(
        name=name,
        path=str(path),
        sha256=sha256_file(path),
        generator_sha256=meta["generator_sha256"],
        recognisers_sha256=meta["recognisers_sha256"],
        attributes=mapper.names,
        num_ws=mapper.cfg.num_ws,
        w_dim=mapper.cfg.w_dim,
        steps=int(meta.get("steps", 0)),
        size_bytes=path.stat().st_size,
    )
    entries = {**registered_mappers(), name: entry}
    mappers_file().parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(mappers_file(), {n: asdict(e) for n, e in sorted(entries.items())})
    return entry


def mapper_path(ref: str, base: Path | None = None) -> Path:
    """A mapper by registered name (its checksum checked) or by file or folder (relative to `base`).
    Whether it fits a generator is `load_mapper(path, generator_file)`'s check."""
    return registered_path(ref, registered_mappers(), "mapper", mapper_file, base)
