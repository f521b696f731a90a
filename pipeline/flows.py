"""Prefect flows: one shot, or a folder of shots. The only module that knows about Prefect.

With no PREFECT_API_URL set, Prefect starts a temporary local server; with it set, runs report there.
"""

from __future__ import annotations

import os

# A busy 2-core machine needs longer than Prefect's default 20 s to start its temporary server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import (  # noqa: E402
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import as_completed  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from pipeline.errors import ManifestError, PipelineError  # noqa: E402
from pipeline.manifest import Shot, load_shot, parse_range  # noqa: E402
from pipeline.media.sequences import extension  # noqa: E402
from pipeline.render import (  # noqa: E402
    ChunkResult,
    chunk_ranges,
    encode_movies,
    output_metadata,
    render_frames,
    report_markdown,
    write_report,
)
from pipeline.workspace import (  # noqa: E402
    RenderVersion,
    clean_temporaries,
    ensure_writable,
    new_version,
    resume_version,
)

WORKERS = max(1, min(4, os.cpu_count() or 1))


def _retry_unless_bad_input(task, task_run, state) -> bool:
    """Retry transient failures; bad input fails the same way every time, so it is not retried."""
    try:
        state.result()
    except PipelineError:
        return False
    except Exception:
        return True
    return False


def _artifact_key(shot: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", shot.lower())


def prepare_shot(manifest: str, frames: str | None) -> Shot:
    shot = load_shot(manifest)
    if frames:
        try:
            first, last = parse_range(frames)
        except ValueError as e:
            raise ManifestError(f"--frames: {e}") from None
        shot = shot.with_frames(first, last)
    return shot


def open_version(shot: Shot, root: Path, resume: bool, version: int | None) -> RenderVersion:
    ext = extension(shot.spec.output.sequence)
    if resume:
        v = resume_version(root, shot.name, ext, version)
        v.lock()
        state = v.read_state()
        if state.get("settings_hash") not in (None, shot.settings_hash) or state.get("frames") not in (
            None,
            [shot.first, shot.last],
        ):
            v.unlock()
            raise ManifestError(
                f"{shot.manifest_path}: the manifest or frame range changed since {v.path} was started; "
                "render a new version instead of resuming"
            )
        clean_temporaries(v)
    else:
        v = new_version(root, shot.name, ext, version)
        v.lock()
    v.write_state(
        shot=shot.name,
        manifest=str(shot.manifest_path),
        settings_hash=shot.settings_hash,
        frames=[shot.first, shot.last],
        status="running",
    )
    return v


@task(
    name="render-chunk",
    retries=2,
    retry_delay_seconds=[1, 4],
    retry_condition_fn=_retry_unless_bad_input,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def render_chunk(manifest: str, frames: str | None, version_path: str, first: int, last: int) -> ChunkResult:
    """One chunk of frames; opens the plate itself so a chunk can run anywhere the files are."""
    shot = prepare_shot(manifest, frames)
    version = RenderVersion(
        shot.name, int(Path(version_path).name[1:]), Path(version_path), extension(shot.spec.output.sequence)
    )
    state = version.read_state()
    if state.get("settings_hash") != shot.settings_hash:
        raise ManifestError(f"{manifest}: the manifest changed while {version_path} was rendering")
    return render_frames(shot, version, first, last, output_metadata(shot, version))


@task(
    name="encode-movies",
    retries=1,
    retry_condition_fn=_retry_unless_bad_input,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def encode_movies_task(shot: Shot, version: RenderVersion, metadata: dict[str, str]):
    return encode_movies(shot, version, metadata)


@flow(name="render-shot", persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=WORKERS))
def render_shot(
    manifest: str,
    frames: str | None = None,
    resume: bool = False,
    version: int | None = None,
    root: str = "render",
) -> dict:
    """Render one shot into a new version folder (or finish one with resume=True)."""
    log = get_run_logger()
    t0 = time.perf_counter()
    shot = prepare_shot(manifest, frames)
    ensure_writable(Path(root))
    v = open_version(shot, Path(root), resume, version)
    try:
        metadata = output_metadata(shot, v)
        ranges = chunk_ranges(shot.first, shot.last, shot.spec.output.chunk_size)
        log.info(
            f"{shot.name} {v.label}: frames {shot.first}-{shot.last} in {len(ranges)} chunks -> {v.path}"
        )
        progress_id = create_progress_artifact(
            progress=0.0,
            key=f"{_artifact_key(shot.name)}-progress",
            description=f"{shot.name} {v.label} frames",
        )
        futures = [render_chunk.submit(manifest, frames, str(v.path), a, b) for a, b in ranges]
        chunks: list[ChunkResult] = []
        errors: list[BaseException] = []
        done = 0
        for fut in as_completed(futures):
            try:
                c = fut.result()
            except Exception as e:  # let the other chunks finish before failing: nothing writes after unlock
                errors.append(e)
                continue
            chunks.append(c)
            done += c.last - c.first + 1
            pct = 100.0 * done / shot.frame_count
            log.info(
                f"{shot.name} {v.label}: frames {c.first}-{c.last} done ({c.written} written, "
                f"{c.skipped} already complete) {pct:.0f}%"
            )
            update_progress_artifact(progress_id, pct)
        if errors:
            raise errors[0]
        chunks.sort(key=lambda c: c.first)
        t_frames = time.perf_counter()
        movies = encode_movies_task(shot, v, metadata)
        for m in movies:
            log.info(f"{shot.name} {v.label}: movie {Path(m.path).name} ({m.seconds:.1f} s)")
        t_movies = time.perf_counter()
        timings = {"frames_s": t_frames - t0, "movies_s": t_movies - t_frames}
        report = write_report(
            shot, v, chunks, movies, metadata, {**timings, "total_s": time.perf_counter() - t0}
        )
        create_markdown_artifact(
            markdown=report_markdown(report),
            key=f"{_artifact_key(shot.name)}-report",
            description=f"{shot.name} {v.label} render report",
        )
        v.write_state(status="done")
        log.info(f"{shot.name} {v.label}: done in {time.perf_counter() - t0:.1f} s")
        return {"shot": shot.name, "version": v.label, "path": str(v.path), "report": report}
    except BaseException as e:
        v.write_state(status="failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise
    finally:
        v.unlock()


@flow(name="render-batch", persist_result=False)
def render_batch(folder: str, root: str = "render") -> list[dict]:
    """Render every manifest in a folder; one failing shot does not stop the others."""
    log = get_run_logger()
    manifests = sorted(str(p) for p in Path(folder).glob("*.y*ml"))
    if not manifests:
        raise ManifestError(f"{folder}: no shot manifests (*.yaml) found")
    outcomes = []
    for m in manifests:
        try:
            r = render_shot(m, root=root)
            outcomes.append({"manifest": m, "status": "done", "version": r["version"], "path": r["path"]})
        except PipelineError as e:
            log.error(str(e))
            outcomes.append({"manifest": m, "status": "failed", "error": str(e)})
    lines = ["| manifest | status | version / error |", "|---|---|---|"]
    lines += [f"| {o['manifest']} | {o['status']} | {o.get('version') or o.get('error')} |" for o in outcomes]
    create_markdown_artifact(markdown="\n".join(lines), key="batch-report", description=f"batch {folder}")
    return outcomes


def run_render(
    manifest: str,
    frames: str | None = None,
    resume: bool = False,
    version: int | None = None,
    root: str = "render",
) -> dict:
    """Check the manifest and the output folder before Prefect starts, so bad input fails fast and plainly."""
    prepare_shot(manifest, frames)
    ensure_writable(Path(root))
    return render_shot(manifest, frames=frames, resume=resume, version=version, root=root)

