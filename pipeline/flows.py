"""Prefect flows: one shot, a shot's face track, or a folder of shots. The only module that knows Prefect.

With no PREFECT_API_URL set, Prefect starts a temporary local server; with it set, runs report there.
"""

from __future__ import annotations

import os

# A busy 2-core machine needs longer than Prefect's default 20 s to start its temporary server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# For the servers started from here (Prefect's temporary one, local_server): the task run recorder writes
# task runs in batches, not one transaction per state change. On SQLite every write that meets another
# is refused as "database is locked" and its client waits 2 s (then 4, 8) before trying again; a batch of
# 16 two-chunk shots ran in 9 s instead of 15 with this. A farm's server should set the same.
os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "50")
os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE", "50")
os.environ.setdefault("DO_NOT_TRACK", "1")

import contextlib  # noqa: E402
import fnmatch  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import asdict, replace  # noqa: E402
from pathlib import Path  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import (  # noqa: E402
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import as_completed  # noqa: E402
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from pipeline import shot_faces, shot_path, shot_project  # noqa: E402
from pipeline.config import RunnerSettings  # noqa: E402
from pipeline.errors import ManifestError, PipelineError  # noqa: E402
from pipeline.faces.track import FaceTrack  # noqa: E402
from pipeline.manifest import Shot, load_shot, parse_range  # noqa: E402
from pipeline.media.encode import encode_movie  # noqa: E402
from pipeline.media.sequences import extension  # noqa: E402
from pipeline.render import (  # noqa: E402
    ChunkResult,
    MovieResult,
    StageClock,
    chunk_ranges,
    drop_review_tiles,
    encode_movies,
    output_metadata,
    render_frames,
    report_markdown,
    write_report,
)
from pipeline.shot_composite import (  # noqa: E402
    Compositor,
    composite_spec,
    identity_references,
    identity_summary,
    load_identity_references,
    swap_cache_dir,
    swap_spec,
    write_transforms,
)
from pipeline.shot_review import (  # noqa: E402
    ReviewTiles,
    composite_contact_sheet,
    faces_contact_sheet,
)
from pipeline.shot_stages import clear_cache, plan, stage_keys, stage_record  # noqa: E402
from pipeline.workspace import (  # noqa: E402
    RenderVersion,
    clean_temporaries,
    ensure_writable,
    new_version,
    resume_version,
)

WORKERS = max(1, min(4, os.cpu_count() or 1))
SHOTS_AT_ONCE = 2  # a batch's (and a night's) shots rendered side by side


def make_task_runner(runner: RunnerSettings | None):
    """Threads in this process (the default), or a Dask cluster: an existing one at an address, or a
    local one of worker processes, so that the chunks of a shot spread over processes or machines."""
    runner = runner or RunnerSettings(workers=WORKERS)
    if runner.kind == "dask":
        from prefect_dask import DaskTaskRunner

        if runner.dask_address:
            return DaskTaskRunner(address=runner.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": runner.workers, "threads_per_worker": 1})
    return ThreadPoolTaskRunner(max_workers=runner.workers)


@contextlib.contextmanager
def shared_cluster(runner: RunnerSettings | None) -> Iterator[RunnerSettings | None]:
    """For a batch on a local Dask cluster: one cluster for all its shots, started here, closed after."""
    if runner is None or runner.kind != "dask" or runner.dask_address:
        yield runner
        return
    from distributed import LocalCluster

    with LocalCluster(n_workers=runner.workers, threads_per_worker=1, dashboard_address=None) as cluster:
        yield replace(runner, dask_address=cluster.scheduler_address)


@contextlib.contextmanager
def local_server(home: Path, startup_timeout: float = 180) -> Iterator[dict[str, str]]:
    """`prefect server start` on a free port of 127.0.0.1 with its own home (and SQLite database there),
    for tests and benches.

    Yields the environment that points a subprocess at it; runs in this process report there too while
    it is open. The server is stopped by its process id, however the block ends."""
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_API_URL

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url}
    log_path = home / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1"]
            + ["--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"the Prefect server did not start; its log {log_path}:\n{log_path.read_text()}"
                        ) from None
                    time.sleep(0.5)
            with temporary_settings({PREFECT_API_URL: url}):
                try:
                    yield env
                finally:
                    APILogHandler().flush()  # send this process's last logs while the server is up
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have died at start
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def _retry_unless_bad_input(task, task_run, state) -> bool:
    """Retry transient failures; bad input fails the same way every time, so it is not retried."""
    try:
        state.result()
    except PipelineError:
        return False
    except Exception:
        return True
    return False


CHUNK_TASK = {
    "retries": 2,
    "retry_delay_seconds": [1, 4],
    "retry_condition_fn": _retry_unless_bad_input,
    "cache_policy": NO_CACHE,
    "persist_result": False,
}


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


def _version_for_task(shot: Shot, version_path: str) -> RenderVersion:
    path = Path(version_path)
    version = RenderVersion(shot.name, int(path.name[1:]), path, extension(shot.spec.output.sequence))
    if version.read_state().get("settings_hash") != shot.settings_hash:
        raise ManifestError(f"{shot.manifest_path}: the manifest changed while {version_path} was rendering")
    return version


@task(name="render-chunk", **CHUNK_TASK)
def render_chunk(
    manifest: str,
    frames: str | None,
    version_path: str,
    track_file: str | None,
    identity_file: str | None,
    first: int,
    last: int,
    keys_file: str | None = None,
    swap_cache: str | None = None,
) -> ChunkResult:
    """One chunk of frames; opens the plate (and the face track) itself so a chunk can run anywhere."""
    shot = prepare_shot(manifest, frames)
    version = _version_for_task(shot, version_path)
    track = FaceTrack.load(Path(track_file)) if track_file else None
    compositor = None
    if composite_spec(shot) is not None:
        assert track is not None
        refs = load_identity_references(identity_file)
        compositor = Compositor(shot, track, refs, keys_file, swap_cache)
    elif keys_file is not None:  # no plate: the path's faces, full frame
        compositor = shot_path.GeneratedFrames(shot, keys_file)
    metadata = output_metadata(shot, version)
    return render_frames(shot, version, first, last, metadata, compositor, ReviewTiles(shot, version, track))


@task(name="project-faces", **CHUNK_TASK)
def project_faces_task(
    manifest: str, frames: str | None, track_file: str, root: str, swap_cache: str | None = None
) -> tuple[str, dict]:
    """The shot's faces in the generator's W+ (from the shot's cache when unchanged)."""
    shot = prepare_shot(manifest, frames)
    track = FaceTrack.load(Path(track_file))
    log = get_run_logger()
    stage = stage_keys(shot)["project"]
    path, report = shot_project.project_shot(shot, track, stage, Path(root), log.info, swap_cache)
    log.info(
        f"{shot.name}: {report['frames_projected']} faces projected ({report['mode']}), mean LPIPS "
        f"{report['lpips_mean']:.4f}" + (" (cached latents)" if report["cached"] else "")
    )
    return str(path), report


@task(name="path-keys", **CHUNK_TASK)
def path_keys_task(
    manifest: str, frames: str | None, latents_file: str | None, root: str
) -> tuple[str, dict]:
    """The latent path's keys: projected keyframes, portraits, latent files, seeds (cached when unchanged)."""
    shot = prepare_shot(manifest, frames)
    log = get_run_logger()
    path, report = shot_path.build_keys(shot, Path(root), stage_keys(shot)["path"], latents_file, log.info)
    log.info(
        f"{shot.name}: latent path through {len(report['keys'])} keys ({report['interpolation']})"
        + (" (cached keys)" if report["cached"] else "")
    )
    return str(path), report


@task(name="detect-faces", **CHUNK_TASK)
def detect_chunk(manifest: str, first: int, last: int) -> shot_faces.DetectChunk:
    return shot_faces.detect_range(load_shot(manifest), first, last)


@task(name="overlay-chunk", **CHUNK_TASK)
def overlay_chunk(
    manifest: str, frames: str | None, version_path: str, track_file: str, first: int, last: int
) -> ChunkResult:
    shot = prepare_shot(manifest, frames)
    version = _version_for_task(shot, version_path)
    track = FaceTrack.load(Path(track_file))
    return shot_faces.render_overlay(shot, version, track, first, last, output_metadata(shot, version))


@task(
    name="encode-movies",
    retries=1,
    retry_condition_fn=_retry_unless_bad_input,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def encode_movies_task(shot: Shot, version: RenderVersion, metadata: dict[str, str]) -> list[MovieResult]:
    return encode_movies(shot, version, metadata)


PROGRESS_EVERY_S = 5.0


class ProgressArtifact:
    """A Prefect progress artifact for work that lasts: made once the work has run PROGRESS_EVERY_S, then
    updated at most that often. Each update is a write on the server, and on a SQLite-backed server two
    writes at once make one of them wait two seconds (its client backs off); short chunks of small shots
    report in the log alone."""

    def __init__(self, description: str):
        self.description = description
        self.updated = time.monotonic()
        self.artifact_id = None

    def update(self, percent: float) -> None:
        now = time.monotonic()
        if now - self.updated < PROGRESS_EVERY_S and not (self.artifact_id and percent >= 100):
            return
        self.updated = now
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(progress=percent, description=self.description)
        else:
            update_progress_artifact(self.artifact_id, percent)


def run_chunks(submit: Callable[[int, int], object], first: int, last: int, size: int, what: str) -> list:
    """Submit one task per chunk of frames, log progress as they finish (also as a Prefect artifact when
    the work lasts).

    If a chunk fails, the others still finish before the error is raised, so nothing is left writing.
    """
    log = get_run_logger()
    ranges = chunk_ranges(first, last, size)
    total = last - first + 1
    progress = ProgressArtifact(what)
    futures = {submit(a, b): (a, b) for a, b in ranges}
    results, errors, done = [], [], 0
    for fut in as_completed(list(futures)):
        a, b = futures[fut]
        try:
            results.append(fut.result())
        except Exception as e:
            errors.append(e)
            continue
        done += b - a + 1
        log.info(f"{what}: frames {a}-{b} done, {100.0 * done / total:.0f}%")
        progress.update(100.0 * done / total)
    if errors:
        raise errors[0]
    return results


def track_faces(manifest: str, shot: Shot, root: Path) -> tuple[FaceTrack, dict]:
    """The shot's face track: from the cache when plate, frame range and faces settings are unchanged."""
    t0 = time.perf_counter()
    path = shot_faces.track_path(root, shot)
    found_chunks = []
    if path.is_file():
        track, cached = FaceTrack.load(path), True
    else:
        found_chunks = run_chunks(
            lambda a, b: detect_chunk.submit(manifest, a, b),
            shot.range_first,
            shot.range_last,
            shot.spec.output.chunk_size,
            f"{shot.name}: face detection",
        )
        found = [f for chunk in sorted(found_chunks, key=lambda c: c.first) for f in chunk.faces]
        track, cached = shot_faces.finish_track(shot, found, path), False
    report = shot_faces.track_report(track, cached, path, time.perf_counter() - t0, found_chunks)
    get_run_logger().info(
        f"{shot.name}: faces on {report['with_face']} of {report['frames']} frames "
        f"({report['detected']} detected, {report['filled']} filled)" + (" (cached track)" if cached else "")
    )
    return track, report


def _finish(shot: Shot, v: RenderVersion, report: dict, t0: float) -> dict:
    create_markdown_artifact(
        markdown=report_markdown(report),
        key=f"{_artifact_key(shot.name)}-report",
        description=f"{shot.name} {v.label} report",
    )
    v.write_state(status="done")
    get_run_logger().info(f"{shot.name} {v.label}: done in {time.perf_counter() - t0:.1f} s")
    return {"shot": shot.name, "version": v.label, "path": str(v.path), "report": report}


def _failed(v: RenderVersion, e: BaseException) -> None:
    v.write_state(status="failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)


@flow(name="render-shot", persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=WORKERS))
def render_shot(
    manifest: str,
    frames: str | None = None,
    resume: bool = False,
    version: int | None = None,
    root: str = "render",
    force: str | None = None,
) -> dict:
    """Render one shot into a new version folder (or finish one with resume=True). Stages whose inputs,
    settings and code are unchanged come from the shot's cache; `force` reruns a stage and those after."""
    log = get_run_logger()
    clock = StageClock()
    shot = prepare_shot(manifest, frames)
    ensure_writable(Path(root))
    with clock("plan"):
        if force:
            for removed in clear_cache(shot, Path(root), force):
                log.info(f"{shot.name}: --force {force}: removed {removed}")
        planned = plan(shot, Path(root), force)
    for name, runs, why in planned:
        log.info(f"{shot.name}: {name}: {'runs' if runs else 'from the cache'} ({why})")
    v = open_version(shot, Path(root), resume, version)
    try:
        metadata = output_metadata(shot, v)
        log.info(f"{shot.name} {v.label}: frames {shot.first}-{shot.last} -> {v.path}")
        faces, track = None, None
        stages = ["decode"]
        if shot.spec.faces and shot.spec.faces.enabled:
            with clock("track"):
                track, faces = track_faces(manifest, shot, Path(root))
            stages.append("track faces")
        if swap_spec(shot) is not None:
            stages.append("swap")
        latents_file = keys_file = path_report = swap_cache = None
        if track is not None and swap_spec(shot) is not None:
            swap_cache = str(swap_cache_dir(Path(root), shot, stage_keys(shot)["track"]))
        if shot_project.project_spec(shot) is not None and faces is not None:
            with clock("project"):
                latents_file, faces["projection"] = project_faces_task(
                    manifest, frames, faces["path"], root, swap_cache
                )
            stages.append("project")
        if latents_file is not None or shot_path.path_spec(shot) is not None:
            with clock("path"):
                keys_file, path_report = path_keys_task(manifest, frames, latents_file, root)
            stages.append("path")
        if composite_spec(shot) is not None:
            stages.append("composite")
        with clock("frames"):
            identity_file = identity_references(shot, v.path / "identity_refs.npz")
            track_file = faces["path"] if faces else None
            chunks = run_chunks(
                lambda a, b: render_chunk.submit(
                    manifest,
                    frames,
                    str(v.path),
                    track_file,
                    str(identity_file) if identity_file else None,
                    a,
                    b,
                    keys_file,
                    swap_cache,
                ),
                shot.first,
                shot.last,
                shot.spec.output.chunk_size,
                f"{shot.name} {v.label}",
            )
        chunks.sort(key=lambda c: c.first)
        if (swap := swap_spec(shot)) is not None and faces is not None:
            rows = sorted(r for c in chunks for r in c.identity)
            faces["identity"] = identity_summary(rows, swap.direction)
            faces["identity_per_frame"] = rows
            if faces["identity"]:
                log.info(f"{shot.name} {v.label}: identity {faces['identity']}")
        with clock("review"):
            if track is not None and faces is not None:
                faces["contact_sheet"] = str(
                    faces_contact_sheet(shot, v, track, metadata, shot.first, shot.last)
                )
            if composite_spec(shot) is not None and track is not None and faces is not None:
                faces["transforms"] = str(write_transforms(v, shot, track))
                faces["composite_contact_sheet"] = str(
                    composite_contact_sheet(shot, v, track, metadata, keys_file, swap_cache)
                )
            if latents_file is not None and faces is not None:
                faces["projection"]["contact_sheet"] = str(
                    shot_project.projection_contact_sheet(shot, v, latents_file, metadata)
                )
            if keys_file is not None and path_report is not None:
                path_report["contact_sheet"] = str(shot_path.path_contact_sheet(shot, v, keys_file, metadata))
        with clock("movies"):
            movies = encode_movies_task(shot, v, metadata)
        for m in movies:
            log.info(f"{shot.name} {v.label}: movie {Path(m.path).name} ({m.seconds:.1f} s)")
        report = write_report(
            shot,
            v,
            chunks,
            movies,
            metadata,
            clock.timings(chunks, faces.get("chunks", []) if faces else []),
            faces=faces,
            stages=[*stages, "write", "encode"],
            path=path_report,
            record=stage_record(shot, planned),
        )
        drop_review_tiles(v)
        return _finish(shot, v, report, clock.t0)
    except BaseException as e:
        _failed(v, e)
        raise
    finally:
        v.unlock()


@flow(name="track-shot", persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=WORKERS))
def track_shot(manifest: str, frames: str | None = None, root: str = "render") -> dict:
    """Track the shot's faces and write a look at it: an overlay movie and an aligned-crop contact sheet."""
    t0 = time.perf_counter()
    shot = prepare_shot(manifest, frames)
    shot_faces.faces_spec(shot)
    ensure_writable(Path(root))
    v = open_version(shot, Path(root), False, None)
    try:
        metadata = output_metadata(shot, v)
        track, faces = track_faces(manifest, shot, Path(root))
        t_track = time.perf_counter()
        shot_faces.overlay_dir(v).mkdir(exist_ok=True)
        chunks = run_chunks(
            lambda a, b: overlay_chunk.submit(manifest, frames, str(v.path), faces["path"], a, b),
            shot.first,
            shot.last,
            shot.spec.output.chunk_size,
            f"{shot.name} {v.label} overlay",
        )
        chunks.sort(key=lambda c: c.first)
        movie = v.path / f"{shot.name}_overlay_{v.label}.mp4"
        t = time.perf_counter()
        pattern = shot_faces.overlay_dir(v) / f"{shot.name}_overlay_{v.label}.%04d.png"
        cmd = encode_movie(pattern, shot.first, shot.frame_count, shot.fps, movie, "h264_review", metadata)
        movies = [MovieResult("h264_review", str(movie), time.perf_counter() - t, command=cmd)]
        faces["contact_sheet"] = str(faces_contact_sheet(shot, v, track, metadata, shot.first, shot.last))
        timings = {"faces_s": t_track - t0, "total_s": time.perf_counter() - t0}
        report = write_report(
            shot,
            v,
            chunks,
            movies,
            metadata,
            timings,
            faces=faces,
            frame_path=lambda n: shot_faces.overlay_path(v, n),
            stages=["decode", "track faces", "overlay", "encode"],
        )
        return _finish(shot, v, report, t0)
    except BaseException as e:
        _failed(v, e)
        raise
    finally:
        v.unlock()


@task(name="render-shot", cache_policy=NO_CACHE, persist_result=False)
def render_shot_task(manifest: str, root: str, runner: dict | None = None, resume: bool = False) -> dict:
    """One shot of a batch, as a task so that shots run side by side (each a render-shot flow run).
    With `resume`, an interrupted latest version is finished and an up-to-date one is left as it is."""
    from pipeline.shot_stages import shot_status

    settings = RunnerSettings(**runner) if runner else None
    finish = False
    if resume:
        status = shot_status(load_shot(manifest), Path(root))
        if status["state"] == "done":
            return {
                "version": status["version"],
                "path": str(Path(root) / status["shot"] / status["version"]),
                "skipped": True,
            }
        finish = status["state"] == "interrupted"
    # The batch's own flow run keeps the heartbeat of this process; a shot's run sending its own would
    # only make it wait for the heartbeat thread's next one-second tick at its end (half a second a shot).
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return render_shot.with_options(task_runner=make_task_runner(settings))(
            manifest, root=root, resume=finish
        )


def render_shots(
    manifests: list[str], root: str, runner: dict | None = None, resume: bool = False
) -> Iterator[tuple[str, dict, str | None]]:
    """Render shots side by side (the calling flow's task runner); yield each as it ends with its result,
    or with its error's first line: a failing shot is logged and does not stop the others."""
    log = get_run_logger()
    futures = {render_shot_task.submit(m, root, runner, resume): m for m in manifests}
    for fut in as_completed(list(futures)):
        m = futures[fut]
        try:
            yield m, fut.result(), None
        except Exception as e:
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            log.error(f"{m}: {message}")
            yield m, {}, message


def batch_manifests(folder: str, only: str | None = None) -> list[str]:
    manifests = sorted(str(p) for p in Path(folder).glob("*.y*ml"))
    if only:
        manifests = [m for m in manifests if fnmatch.fnmatch(Path(m).stem, only)]
    if not manifests:
        raise ManifestError(
            f"{folder}: no shot manifests (*.yaml)" + (f" matching --only {only}" if only else "") + " found"
        )
    return manifests


@flow(name="render-batch", persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=SHOTS_AT_ONCE))
def render_batch(
    folder: str,
    root: str = "render",
    only: str | None = None,
    runner: dict | None = None,
    resume: bool = False,
) -> list[dict]:
    """Render every manifest in a folder (or those whose name matches `only`), two shots at a time; a
    shot that fails does not stop the others, and the report lists each shot's outcome."""
    outcomes = []
    for m, r, error in render_shots(batch_manifests(folder, only), root, runner, resume):
        if error is not None:
            outcomes.append({"manifest": m, "status": "failed", "error": error})
        else:
            status = "already done" if r.get("skipped") else "done"
            outcomes.append({"manifest": m, "status": status, "version": r["version"], "path": r["path"]})
    outcomes.sort(key=lambda o: o["manifest"])
    lines = ["| manifest | status | version / error |", "|---|---|---|"]
    lines += [f"| {o['manifest']} | {o['status']} | {o.get('version') or o.get('error')} |" for o in outcomes]
    create_markdown_artifact(markdown="\n".join(lines), key="batch-report", description=f"batch {folder}")
    return outcomes


NEEDS_RENDER = ("never rendered", "stale", "failed", "interrupted")


@flow(name="overnight", persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=SHOTS_AT_ONCE))
def overnight(folder: str, root: str = "render") -> dict:
    """Render the shots whose manifest, plate, models or code changed since their last render (and those
    never rendered, failed or interrupted); leave the rest. Writes the night's summary as a Markdown file
    in render/overnight/ and as a Prefect artifact."""
    from pipeline.shot_stages import shot_status

    started = time.strftime("%Y-%m-%d %H:%M")
    todo, rows = [], []
    for m in batch_manifests(folder):
        try:
            status = shot_status(load_shot(m), Path(root))
        except PipelineError as e:
            rows.append({"manifest": m, "before": "invalid", "outcome": "skipped", "detail": str(e)})
            continue
        if status["state"] in NEEDS_RENDER:
            todo.append((m, status))
        else:
            rows.append(
                {
                    "manifest": m,
                    "before": status["state"],
                    "outcome": "up to date",
                    "detail": status["version"],
                }
            )
    before = {m: f"{st['state']}: {st['detail']}".rstrip(": ") for m, st in todo}
    for m, r, error in render_shots(list(before), root):
        outcome, detail = ("failed", error) if error is not None else ("rendered", r["version"])
        rows.append({"manifest": m, "before": before[m], "outcome": outcome, "detail": detail})
    rows.sort(key=lambda r: r["manifest"])
    counts = {
        k: sum(r["outcome"] == k for r in rows) for k in ("rendered", "failed", "up to date", "skipped")
    }
    lines = [
        f"# Overnight {started}: {folder}",
        "",
        ", ".join(f"{v} {k}" for k, v in counts.items()),
        "",
        "| manifest | before | outcome | version / error |",
        "|---|---|---|---|",
        *[f"| {r['manifest']} | {r['before']} | {r['outcome']} | {r['detail']} |" for r in rows],
    ]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    summary = Path(root) / "overnight" / f"{stamp}.md"
    summary.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while summary.exists():  # two runs in one second keep both summaries
        n += 1
        summary = summary.with_name(f"{stamp}-{n}.md")
    summary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    create_markdown_artifact(
        markdown="\n".join(lines), key="overnight-summary", description=f"overnight {folder}"
    )
    return {"summary": str(summary), "shots": rows, **counts}


def serve_overnight(folder: str, cron: str, root: str = "render") -> None:
    """Serve the overnight flow on a cron schedule (blocks; Ctrl-C stops it). Paths are made absolute."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError as e:
        raise ManifestError(f"--cron {cron!r}: {e}") from None
    batch_manifests(folder)
    parameters = {"folder": str(Path(folder).resolve()), "root": str(Path(root).resolve())}
    overnight.serve(name="overnight", cron=cron, parameters=parameters)


def _precheck(manifest: str, frames: str | None, root: str) -> Shot:
    """Check the manifest and the output folder before Prefect starts, so bad input fails fast and plainly."""
    shot = prepare_shot(manifest, frames)
    ensure_writable(Path(root))
    return shot


def run_render(
    manifest: str,
    frames: str | None = None,
    resume: bool = False,
    version: int | None = None,
    root: str = "render",
    force: str | None = None,
    runner: RunnerSettings | None = None,
) -> dict:
    shot = _precheck(manifest, frames, root)
    if resume:  # a version that is not there is bad input too: one line, before Prefect starts
        resume_version(Path(root), shot.name, extension(shot.spec.output.sequence), version)
    flow_ = render_shot.with_options(task_runner=make_task_runner(runner))
    return flow_(manifest, frames=frames, resume=resume, version=version, root=root, force=force)


def run_batch(
    folder: str,
    root: str = "render",
    only: str | None = None,
    runner: RunnerSettings | None = None,
    resume: bool = False,
) -> list[dict]:
    """A batch, with one local Dask cluster for all its shots when the runner is a local Dask one."""
    batch_manifests(folder, only)  # fails plainly before Prefect starts
    with shared_cluster(runner) as shared:
        runner_dict = asdict(shared) if shared else None
        return render_batch(folder, root=root, only=only, runner=runner_dict, resume=resume)


def dry_run(manifest: str, frames: str | None = None, root: str = "render", force: str | None = None) -> list:
    """Which stages a render would run and why; runs nothing and needs no Prefect server."""
    shot = _precheck(manifest, frames, root)
    return plan(shot, Path(root), force)


def run_track(manifest: str, frames: str | None = None, root: str = "render") -> dict:
    shot_faces.faces_spec(_precheck(manifest, frames, root))
    return track_shot(manifest, frames=frames, root=root)


@flow(name="train-swap", persist_result=False)
def train_swap(
    a: str,
    b: str,
    out: str,
    preset: str = "64",
    steps: int | None = None,
    minutes: float | None = None,
    batch: int = 16,
    lr: float = 5e-5,
    warp: bool = True,
    resume: bool = False,
) -> dict:
    """Train the swap model as a Prefect run (an overnight job on a render node)."""
    from pipeline.swap.train import TrainSettings, train

    log = get_run_logger()
    settings = TrainSettings(preset=preset, batch=batch, lr=lr, warp=warp)
    progress_id = create_progress_artifact(progress=0.0, description=f"swap training {out}")
    started = time.monotonic()

    def on_step(record: dict) -> None:
        if record["step"] % 50 == 0:
            done = record["step"] / steps if steps else (time.monotonic() - started) / (60 * (minutes or 1))
            update_progress_artifact(progress_id, min(100.0, 100 * done))
            log.info(f"step {record['step']}: loss A {record['a_total']:.4f}, B {record['b_total']:.4f}")

    state = train(
        Path(a), Path(b), Path(out), settings, steps=steps, minutes=minutes, resume=resume, on_step=on_step
    )
    last = state.history[-1] if state.history else {}
    return {"out": out, "step": state.step, "loss_a": last.get("a_total"), "loss_b": last.get("b_total")}


@flow(name="train-generator", persist_result=False)
def train_generator(
    faces: list[str],
    out: str,
    res: int = 64,
    kimg: float | None = None,
    minutes: float | None = None,
    batch: int = 16,
    lr: float = 0.0025,
    gamma: float | None = None,
    pl_weight: float = 0.0,
    resume: bool = False,
) -> dict:
    """Train a StyleGAN2 generator on face crops as a Prefect run (an overnight job on a render node)."""
    from pipeline.stylegan.train import GanSettings
    from pipeline.stylegan.train import train_generator as train

    log = get_run_logger()
    settings = GanSettings(res=res, batch=batch, lr=lr, gamma=gamma, pl_weight=pl_weight)
    progress_id = create_progress_artifact(progress=0.0, description=f"generator training {out}")
    started = time.monotonic()

    def on_step(record: dict) -> None:
        if record["step"] % 100 == 0:
            done = record["kimg"] / kimg if kimg else (time.monotonic() - started) / (60 * (minutes or 1))
            update_progress_artifact(progress_id, min(100.0, 100 * done))
            log.info(
                f"step {record['step']} ({record['kimg']:.1f} kimg): D loss {record['d_loss']:.3f}, "
                f"G loss {record['g_loss']:.3f}, D(real) {record['real_score']:+.2f}, "
                f"D(fake) {record['fake_score']:+.2f}"
            )

    state = train(
        [Path(f) for f in faces],
        Path(out),
        settings,
        kimg=kimg,
        minutes=minutes,
        resume=resume,
        on_step=on_step,
    )
    last = state.history[-1] if state.history else {}
    return {
        "out": out,
        "step": state.step,
        "kimg": state.nimg / 1000,
        "d_loss": last.get("d_loss"),
        "g_loss": last.get("g_loss"),
    }


# ---------------------------------------------------------------------------------------------------
# Render nodes: a deployment of render-shot on a process work pool; `prefect worker start --pool NAME` on
# each node takes shot runs from the shared queue. Paths are absolute, on a filesystem every node shares.

REPO = Path(__file__).resolve().parents[1]


def deploy_render(pool: str, name: str = "render-shot") -> str:
    """Create the process work pool if it is missing and deploy render-shot on it from this checkout."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
    source = render_shot.from_source(source=str(REPO), entrypoint="pipeline/flows.py:render_shot")
    source.deploy(name=name, work_pool_name=pool, build=False, push=False, print_next_steps=False)
    return f"render-shot/{name}"


def submit_render(manifest: str, root: str = "render", deployment: str = "render-shot/render-shot") -> str:
    """Queue one shot on the deployment (a render node's worker runs it); returns the flow run's id."""
    from prefect.deployments import run_deployment

    shot = _precheck(manifest, None, root)
    parameters = {"manifest": str(Path(manifest).resolve()), "root": str(Path(root).resolve())}
    run = run_deployment(deployment, parameters=parameters, timeout=0, flow_run_name=shot.name)
    return str(run.id)
