"""The project config file: how tasks run (threads, or a Dask cluster), read from `vfx.toml`.

    [runner]
    kind = "dask"                       # threads (the default) or dask
    workers = 4                         # threads per shot, or the local Dask cluster's worker processes
                                        # (default: one a core, at most 4)
    dask_address = "tcp://10.0.0.5:8786"  # an existing Dask scheduler; leave out for a local cluster

The file is `$VFX_CONFIG`, else `vfx.toml` in the current folder; command-line flags override it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pipeline.errors import ManifestError


def default_workers() -> int:
    """Chunks of a shot rendered at once: one a core, at most four. Every chunk holds its own batch of
    frames and composites it on every core, so more chunks than cores only add memory (a 96-frame UHD render
    peaked at 5.15 GB with 4 on 2 cores, 2.91 GB with 2, and ran no faster)."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class RunnerSettings:
    kind: Literal["threads", "dask"] = "threads"
    workers: int = field(default_factory=default_workers)
    dask_address: str | None = None


def config_file() -> Path:
    return Path(os.environ.get("VFX_CONFIG") or "vfx.toml")


def load_runner(
    kind: str | None = None, workers: int | None = None, address: str | None = None
) -> RunnerSettings:
    """The runner of the config file (if there is one), with the command line's choices over it."""
    settings = RunnerSettings()
    path = config_file()
    if path.is_file():
        try:
            section = tomllib.loads(path.read_text(encoding="utf-8")).get("runner", {})
        except tomllib.TOMLDecodeError as e:
            raise ManifestError(f"{path}: {e}") from None
        unknown = set(section) - {"kind", "workers", "dask_address"}
        if unknown:
            raise ManifestError(f"{path} runner.{sorted(unknown)[0]}: unknown key")
        settings = replace(settings, **section)
    if kind:
        settings = replace(settings, kind=kind)  # type: ignore[arg-type]
    if workers:
        settings = replace(settings, workers=workers)
    if address:
        settings = replace(settings, kind="dask", dask_address=address)
    if settings.kind not in ("threads", "dask"):
        raise ManifestError(f"{path} runner.kind: {settings.kind!r} is not threads or dask")
    if not isinstance(settings.workers, int) or settings.workers < 1:
        raise ManifestError(f"{path} runner.workers: {settings.workers!r} is not a positive whole number")
    return settings
