"""The stages of a shot, in order, and what iterates them: the stage keys, where each keeps its result,
the plan of what runs and why (`vfx render --dry-run`), clearing caches (`--force STAGE`), the shot's
status (`vfx status`) and the per-frame chain of a chunk.

A new stage is a module with a `Stage` and one line in STAGES.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from pipeline.manifest import Shot
from pipeline.media.sequences import extension
from pipeline.shot.composite import COMPOSITE
from pipeline.shot.frames import FaceLink
from pipeline.shot.keys import StageKey
from pipeline.shot.path import PATH
from pipeline.shot.project import PROJECT
from pipeline.shot.stage import Stage
from pipeline.shot.stylize import STYLIZE
from pipeline.shot.swap import SWAP
from pipeline.shot.track import TRACK
from pipeline.shot.tune import TUNE
from pipeline.workspace import RenderVersion, existing_versions

STAGES: tuple[Stage, ...] = (TRACK, SWAP, PROJECT, PATH, TUNE, STYLIZE, COMPOSITE)
STAGE_NAMES = tuple(s.name for s in STAGES)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


def active_stages(shot: Shot) -> list[Stage]:
    """The stages this shot runs, in order."""
    return [s for s in STAGES if s.on(shot)]


def stage_keys(shot: Shot) -> dict[str, StageKey]:
    """The keys of the stages this shot runs, in order; each stage sees the keys of those before it."""
    keys: dict[str, StageKey] = {}
    for stage in active_stages(shot):
        keys[stage.name] = stage.key(shot, keys)
    return keys


def cache_paths(shot: Shot, root: Path, keys: Mapping[str, StageKey]) -> dict[str, Path]:
    """Where each cached stage keeps its result (the composite's is the version folder)."""
    paths = {}
    for name, key in keys.items():
        if (path := BY_NAME[name].cache_path(shot, root, key)) is not None:
            paths[name] = path
    return paths


def face_links(shot: Shot, files: Mapping[str, str]) -> list[FaceLink]:
    """The stages' links of the per-frame chain, in stage order, for a chunk that has their files."""
    return [link for stage in active_stages(shot) if (link := stage.face_link(shot, files)) is not None]


def latest_record(root: Path, shot: Shot) -> tuple[str, dict] | None:
    """The stage records of the shot's latest version that has a report: (its label, its stages)."""
    shot_dir = root / shot.name
    for n in reversed(existing_versions(shot_dir)):
        report = shot_dir / f"v{n:03d}" / "report.json"
        if report.is_file():
            try:
                return f"v{n:03d}", json.loads(report.read_text()).get("stages") or {}
            except ValueError:
                continue
    return None


def plan(shot: Shot, root: Path, force: str | None = None) -> list[tuple[str, bool, str]]:
    """Per stage: (name, will it run, why), for `vfx render --dry-run` and the render's record."""
    keys = stage_keys(shot)
    latest = latest_record(root, shot)
    forced_from = STAGE_NAMES.index(force) if force else len(STAGES)
    out = []
    for name, key in keys.items():
        before = latest[1].get(name, {}).get("parts") if latest else None
        since = f" since {latest[0]}" if latest else ""
        changed = key.changes(before)
        why = ", ".join(changed) + (" changed" + since if before is not None else "")
        path = BY_NAME[name].cache_path(shot, root, key)
        if STAGE_NAMES.index(name) >= forced_from:
            out.append((name, True, f"forced (--force {force})"))
        elif path is None:  # its result is the new version itself
            out.append(
                (name, True, f"a new version; {why}" if changed else f"a new version; nothing changed{since}")
            )
        elif found := BY_NAME[name].cached(path):
            out.append((name, False, f"cached ({found})"))
        else:
            out.append((name, True, why or "not cached"))
    return out


def clear_cache(shot: Shot, root: Path, force: str) -> list[Path]:
    """Remove the cached results of stage `force` and of every stage after it, so they run again."""
    removed = []
    for name, path in cache_paths(shot, root, stage_keys(shot)).items():
        if STAGE_NAMES.index(name) < STAGE_NAMES.index(force) or not path.exists():
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        removed.append(path)
    return removed


def stage_record(shot: Shot, planned: list[tuple[str, bool, str]]) -> dict:
    """What goes into report.json: each stage's key and parts, whether it ran or came from the cache, and
    why (the parts are what the next `--dry-run` compares against)."""
    keys = stage_keys(shot)
    return {
        name: {"key": keys[name].key, "ran": ran, "why": why, "parts": keys[name].parts}
        for name, ran, why in planned
    }


def shot_status(shot: Shot, root: Path) -> dict:
    """The latest version of a shot and its state: done, failed, running, stale (done, but the manifest,
    plate, models or code changed since), interrupted, or never rendered."""
    shot_dir = root / shot.name
    versions = existing_versions(shot_dir)
    if not versions:
        return {"shot": shot.name, "version": None, "state": "never rendered", "detail": ""}
    n = versions[-1]
    v = RenderVersion(shot.name, n, shot_dir / f"v{n:03d}", extension(shot.spec.output.sequence))
    state = v.read_state()
    status = state.get("status", "unknown")
    detail = state.get("error", "") if status == "failed" else state.get("updated", "")
    if status == "running":
        status = "running" if v.locked_by_another() else "interrupted"
        detail = "" if status == "running" else "resume it with vfx render --resume"
    elif status == "done":
        latest = latest_record(root, shot)
        before = latest[1].get("composite", {}).get("parts") if latest else None
        changed = stage_keys(shot)["composite"].changes(before)
        if before is None:
            status, detail = "stale", "rendered without a stage record (an older pipeline)"
        elif changed:
            status, detail = "stale", ", ".join(changed) + " changed"
    return {"shot": shot.name, "version": v.label, "state": status, "detail": detail}
