"""What each stage's cached result depends on, so that a re-render redoes only what changed.

A stage's key is a digest of named parts: its settings, the keys of the stages it reads from, the
fingerprints of its input files (plate, models) and the version of its code (a digest of its modules'
source). The parts are kept in each render's record, so `vfx render --dry-run` can say which part
changed since the last render.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.media.decode import ConvertedPlate
from pipeline.media.probe import sequence_path

if TYPE_CHECKING:
    from pipeline.manifest import Shot


@functools.lru_cache(maxsize=64)
def code_version(*modules: str) -> str:
    """A digest of the source files of the given modules or packages (packages: every .py below them)."""
    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ValueError(f"no module {name}")
        if spec.submodule_search_locations:
            files = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py"))
        else:
            assert spec.origin is not None
            files = [Path(spec.origin)]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def settings_sections(shot: Shot) -> dict[str, str]:
    """A digest of each top-level section of the manifest (the plate's with its resolved path): written
    into every frame and the version's record, so that a resume can say which setting differs."""
    settings = shot.spec.model_dump(mode="json")
    if shot.spec.plate is not None:
        settings["plate"] = {**settings["plate"], "resolved": shot.resolve(shot.spec.plate.source)}
    return {name: digest(value)[:8] for name, value in sorted(settings.items())}


def sections_text(sections: dict[str, str]) -> str:
    """The section digests as one metadata string: `faces=1a2b3c4d,plate=...`."""
    return ",".join(f"{k}={v}" for k, v in sections.items())


def parse_sections(text: str) -> dict[str, str]:
    """The section digests from their metadata string (`sections_text`)."""
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


@dataclass
class StageKey:
    stage: str
    parts: dict[str, str] = field(default_factory=dict)  # part name -> digest

    @property
    def key(self) -> str:
        return digest([self.stage, self.parts])[:20]

    def changes(self, before: dict[str, str] | None) -> list[str]:
        """The parts that differ from an earlier record of this stage's parts."""
        if before is None:
            return ["no earlier render"]
        names = sorted(set(self.parts) | set(before))
        return [n for n in names if self.parts.get(n) != before.get(n)]


def plate_fingerprint(shot: Shot) -> dict:
    """What identifies the plate's pixels without reading them: files' sizes and modification times, and
    the code that reads them (which turns, numbers and deepens frames: a change there is a new plate)."""
    info = shot.plate.info
    reader = code_version("pipeline.media.decode", "pipeline.media.probe")
    if isinstance(shot.plate, ConvertedPlate):  # the conversion, and its code, are part of the pixels
        reader = f"{reader}:{code_version('pipeline.media.colorspace')}:{shot.plate.colorspace.key}"
    if info.kind == "sequence":
        h = hashlib.sha256()
        for n in info.frame_numbers:
            st = sequence_path(Path(info.path), n).stat()
            h.update(f"{n}:{st.st_size}:{st.st_mtime_ns};".encode())
        return {"path": info.path, "files": h.hexdigest(), "reader": reader}
    if info.path.startswith("builtin:"):
        return {"path": info.path, "reader": reader}
    st = Path(info.path).stat()
    return {"path": info.path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "reader": reader}
