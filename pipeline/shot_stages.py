"""The stage keys of a shot, in order: what each cached result depends on (see `stages.py`), whether it is
in the cache, what changed since the last render, and clearing a stage's cache to force it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline import shot_faces, shot_path, shot_project
from pipeline.manifest import Shot
from pipeline.shot_composite import swap_cache_dir, swap_spec, swap_stage
from pipeline.stages import STAGES, StageKey, code_version, digest, file_digest
from pipeline.workspace import existing_versions


def composite_stage(shot: Shot, upstream: dict[str, StageKey]) -> StageKey:
    """The output frames: everything upstream, plus what the chunks do with it (the path's spline and
    edits, compositing, the output format) and their code."""
    path = shot.spec.path
    edits = []
    if path is not None and path.enabled:
        edits = [
            {**e.model_dump(mode="json"), "file": file_digest(Path(shot.resolve(e.direction)))}
            for e in path.edits
        ]
    return StageKey(
        "composite",
        {
            **{name: key.key for name, key in upstream.items()},
            "plate": digest(shot_faces.plate_fingerprint(shot)),  # also for shots with no face stage
            "plate settings": digest(shot.spec.plate.model_dump(mode="json") if shot.spec.plate else None),
            "path settings": digest(
                path.model_dump(mode="json", exclude={"keyframes", "edits", "steps"}) if path else None
            ),
            "edits": digest(edits),
            "composite settings": digest(
                shot.spec.composite.model_dump(mode="json") if shot.spec.composite else None
            ),
            "output settings": digest(shot.spec.output.model_dump(mode="json")),
            "frames": digest([shot.first, shot.last]),
            "code": code_version(
                "pipeline.composite", "pipeline.shot_composite", "pipeline.render", "pipeline.media"
            ),
        },
    )


def stage_keys(shot: Shot) -> dict[str, StageKey]:
    """The keys of the stages this shot runs, in order: track, swap, project, path, composite."""
    keys: dict[str, StageKey] = {}
    if shot.spec.faces is not None and shot.spec.faces.enabled:
        keys["track"] = shot_faces.track_stage(shot)
    if swap_spec(shot) is not None:
        keys["swap"] = swap_stage(shot, keys["track"])
    if shot_project.project_spec(shot) is not None:
        keys["project"] = shot_project.project_stage(shot, keys["track"], keys.get("swap"))
    if "project" in keys or shot_path.path_spec(shot) is not None:
        keys["path"] = shot_path.path_stage(shot, keys.get("project"))
    keys["composite"] = composite_stage(shot, dict(keys))
    return keys


def cache_paths(shot: Shot, root: Path, keys: dict[str, StageKey]) -> dict[str, Path]:
    """Where each cached stage keeps its result (the composite's is the version folder)."""
    paths = {}
    if "track" in keys:
        paths["track"] = shot_faces.track_path(root, shot)
    if "swap" in keys:
        paths["swap"] = swap_cache_dir(root, shot, keys["track"])
    if "project" in keys:
        paths["project"] = shot_project.latents_path(root, shot, keys["project"])
    if "path" in keys:
        paths["path"] = shot_path.keys_path(root, shot, keys["path"])
    return paths


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
    paths = cache_paths(shot, root, keys)
    latest = latest_record(root, shot)
    forced_from = STAGES.index(force) if force else len(STAGES)
    out = []
    for name, key in keys.items():
        before = latest[1].get(name, {}).get("parts") if latest else None
        since = f" since {latest[0]}" if latest else ""
        changed = key.changes(before)
        why = ", ".join(changed) + (" changed" + since if before is not None else "")
        if STAGES.index(name) >= forced_from:
            out.append((name, True, f"forced (--force {force})"))
        elif name == "composite":
            out.append(
                (name, True, f"a new version; {why}" if changed else f"a new version; nothing changed{since}")
            )
        elif name == "swap":
            folder = paths["swap"]
            done = len(list(folder.glob("*.npz"))) if folder.is_dir() else 0
            out.append(
                (name, not done, f"cached ({done} frames in {folder.name})" if done else why or "not cached")
            )
        elif paths[name].is_file():
            out.append((name, False, f"cached ({paths[name].name})"))
        else:
            out.append((name, True, why or "not cached"))
    return out


def clear_cache(shot: Shot, root: Path, force: str) -> list[Path]:
    """Remove the cached results of stage `force` and of every stage after it, so they run again."""
    keys = stage_keys(shot)
    removed = []
    for name, path in cache_paths(shot, root, keys).items():
        if STAGES.index(name) < STAGES.index(force) or not path.exists():
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
    from pipeline.media.sequences import extension
    from pipeline.workspace import RenderVersion

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
