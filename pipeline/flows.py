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

import base64  # noqa: E402
import contextlib  # noqa: E402
import contextvars  # noqa: E402
import fnmatch  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from concurrent.futures import as_completed as threads_completed  # noqa: E402
from dataclasses import asdict, replace  # noqa: E402
from pathlib import Path  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import (  # noqa: E402
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.context import FlowRunContext  # noqa: E402
from prefect.futures import as_completed  # noqa: E402
from prefect.logging.handlers import PrefectConsoleHandler  # noqa: E402
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from pipeline.config import RunnerSettings, default_workers  # noqa: E402
from pipeline.errors import ManifestError, PipelineError  # noqa: E402
from pipeline.faces.track import FaceTrack  # noqa: E402
from pipeline.manifest import Shot, load_shot, shot_name_clashes  # noqa: E402
from pipeline.media.encode import encode_movie  # noqa: E402
from pipeline.media.sequences import extension  # noqa: E402
from pipeline.processes import popen  # noqa: E402
from pipeline.progress import Progress, Waiting  # noqa: E402
from pipeline.shot.frames import ChunkResult, chunk_ranges, render_progress_key  # noqa: E402
from pipeline.shot.keys import settings_sections  # noqa: E402
from pipeline.shot.movies import MovieResult, encode_movies, movie_count  # noqa: E402
from pipeline.shot.render import ShotRender, resume_problem  # noqa: E402
from pipeline.shot.render import render_chunk as render_frames_of_chunk  # noqa: E402
from pipeline.shot.report import output_metadata, report_markdown, write_report  # noqa: E402
from pipeline.shot.review import drop_review_tiles  # noqa: E402
from pipeline.shot.stage import Rendered, Stage, StageJob, StageOutput  # noqa: E402
from pipeline.shot.stages import BY_NAME, shot_status, stage_keys  # noqa: E402
from pipeline.shot.track import (  # noqa: E402
    TRACK,
    faces_spec,
    overlay_dir,
    overlay_path,
    render_overlay,
)
from pipeline.workspace import (  # noqa: E402
    RenderVersion,
    ShotCache,
    check_new_version,
    clean_temporaries,
    ensure_writable,
    new_version,
    resume_version,
)

WORKERS = default_workers()
SHOTS_AT_ONCE = 2  # a batch's (and a night's) shots rendered side by side


class BadInputWithoutTraceback(logging.Filter):
    """Bad input (a PipelineError) fails the same way on every try and the command line prints it as one
    line, so on the console Prefect's record of it keeps its message and drops the traceback. The Prefect
    server's log, written before the record reaches the console, keeps the whole of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PipelineError):
            record.exc_info, record.exc_text = None, None
        return True


def console_log_to_stdout() -> None:
    """Prefect's console log (progress, states) goes to stdout, beside the results, so that stderr holds
    the errors alone: one line for bad input, at every entry point."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.console.file = None  # rich then writes to whatever sys.stdout is at the time
            if not any(isinstance(f, BadInputWithoutTraceback) for f in handler.filters):
                handler.addFilter(BadInputWithoutTraceback())


console_log_to_stdout()


class _SubprocessDyingWithUs(types.ModuleType):
    """The `subprocess` module as Prefect's temporary-server code sees it: the same, except that a server
    started from the main thread asks the kernel to die with this process (`processes.popen`)."""

    def __getattr__(self, name: str):
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args, **kwargs):  # noqa: N802 - it stands in for subprocess.Popen
        if threading.current_thread() is threading.main_thread() and not args and "preexec_fn" not in kwargs:
            return popen(**kwargs)
        return subprocess.Popen(*args, **kwargs)  # a worker thread's child would die with the thread


def temporary_server_dies_with_us() -> None:
    """Prefect's temporary server (run when no PREFECT_API_URL is set) is a uvicorn child that Prefect
    stops at exit. A command killed by SIGKILL (a render to be resumed, a farm's pre-emption), or by
    SIGTERM (Prefect marks the run crashed, then dies of the signal), runs no exit code: the server lived
    on, holding 200 MB and its SQLite file, one more on the node for every killed command. Started from
    the main thread, as the command line's flows start it, it now dies with the command."""
    from prefect.server.api import server

    if not isinstance(server.subprocess, _SubprocessDyingWithUs):
        server.subprocess = _SubprocessDyingWithUs("subprocess")


temporary_server_dies_with_us()


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
        proc = popen(  # it dies with this thread: the block's own thread waits for it at the end
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


def manifest_run_name() -> str:
    """A shot's flow run is named by its manifest's file (`sh010.yaml`: `sh010`, and the frames of a partial
    render) until its version is open, so that the Prefect UI's list of runs says which shot each is, also
    of one that fails before it has a version; then by the shot and version (name_shot_run)."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    name = Path(parameters["manifest"]).stem
    return f"{name} {parameters['frames']}" if parameters.get("frames") else name


def name_shot_run(shot: Shot, v: RenderVersion, frames: str | None) -> None:
    """Rename the running flow run to its shot and version (`sh010 v003`, and the frames of a partial
    render, `sh010 v004 1040-1060`): known only once the version is open, after the run has started."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    name = f"{shot.name} {v.label}" + (f" {shot.first}-{shot.last}" if frames else "")
    context.client.set_flow_run_name(context.flow_run.id, name)
    context.flow_run.name = name  # for the loggers made from here on


def prepare_shot(manifest: str, frames: str | None) -> Shot:
    return load_shot(manifest, frames)


def open_version(shot: Shot, root: Path, resume: bool, version: int | None) -> RenderVersion:
    """A new version, locked; or, with `resume`, the version to finish, locked and checked against the
    manifest (a finished one is returned as it is: the caller leaves it so)."""
    ext = extension(shot.spec.output.sequence)
    if resume:
        v = resume_version(root, shot.name, ext, version)
        v.lock()
        try:
            if not needs_finishing(shot, v):
                return v
        except BaseException:
            v.unlock()
            raise
        clean_temporaries(v)
    else:
        v = new_version(root, shot.name, ext, version)
        v.lock()
    v.write_state(
        shot=shot.name,
        manifest=str(shot.manifest_path),
        settings_hash=shot.settings_hash,
        settings_sections=settings_sections(shot),
        frames=[shot.first, shot.last],
        status="running",
    )
    return v


def needs_finishing(shot: Shot, v: RenderVersion) -> bool:
    """Whether --resume has work in `v`: False for a finished version (left as it is), and an error for
    one that this manifest and frame range did not start."""
    if v.finished:
        return False
    if problem := resume_problem(shot, v):
        raise ManifestError(f"{shot.manifest_path}: {problem}; render a new version instead of resuming")
    return True


@contextlib.contextmanager
def writing(
    shot: Shot, root: Path, resume: bool, version: int | None, force: str | None = None
) -> Iterator[tuple[RenderVersion, ShotCache]]:
    """The version a render writes (new, or the one to finish), locked, and the shot's cache held: shared,
    or alone when `force` is to clear entries (refused while another render of the shot runs). Both are
    let go however the render ends, and the OS lets them go if it is killed."""
    cache = ShotCache(root, shot.name)
    if force:
        cache.claim(f"--force {force}")
    else:
        cache.share()
    try:
        v = open_version(shot, root, resume, version)
        try:
            yield v, cache
        finally:
            v.unlock()
    finally:
        cache.release()


def finished_already(shot: Shot, v: RenderVersion) -> dict:
    """The result of resuming a finished version: nothing to do, and nothing in it is rewritten."""
    try:
        report = json.loads((v.path / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = {}
    note = "finished already: nothing to resume"
    return {"shot": shot.name, "version": v.label, "path": str(v.path), "report": report, "note": note}


def _version_for_task(shot: Shot, version_path: str) -> RenderVersion:
    path = Path(version_path)
    version = RenderVersion(shot.name, int(path.name[1:]), path, extension(shot.spec.output.sequence))
    if version.read_state().get("settings_hash") != shot.settings_hash:
        raise ManifestError(f"{shot.manifest_path}: the manifest changed while {version_path} was rendering")
    return version


@task(name="render-chunk", task_run_name="chunk {first}-{last}", **CHUNK_TASK)
def render_chunk(
    manifest: str, frames: str | None, version_path: str, files: dict[str, str], first: int, last: int
) -> ChunkResult:
    """One chunk of frames; it opens the plate and the stages' files itself, so a chunk can run anywhere."""
    shot = prepare_shot(manifest, frames)
    result = render_frames_of_chunk(shot, _version_for_task(shot, version_path), files, first, last)
    get_run_logger().info(
        f"{shot.name}: frames {first}-{last}: {result.written} written, {result.skipped} already complete, "
        f"{result.wall_s:.1f} s on {result.worker}"
    )
    return result


@task(name="stage-chunk", task_run_name="{stage} {first}-{last}", **CHUNK_TASK)
def stage_chunk(stage: str, manifest: str, frames: str | None, first: int, last: int) -> object:
    """A stage's chunked work on frames first..last (the track's face detection)."""
    return BY_NAME[stage].work_chunk(prepare_shot(manifest, frames), first, last)


@task(name="stage", task_run_name="{stage}", **CHUNK_TASK)
def stage_task(
    stage: str,
    manifest: str,
    frames: str | None,
    root: str,
    version_path: str | None,
    files: dict,
    parts: list,
) -> StageOutput:
    """A stage's shot-level work (from the shot's cache when its key is unchanged)."""
    shot = prepare_shot(manifest, frames)
    version = _version_for_task(shot, version_path) if version_path else None
    key = stage_keys(shot)[stage]
    job = StageJob(Path(root), key, files, version, parts, get_run_logger().info)
    return BY_NAME[stage].run(shot, job)


def upstream(render: ShotRender) -> list[dict[str, str]]:
    """What the stages so far handed on, as the `wait_for` of a task that reads their files: Prefect then
    lists those stages' task runs as the task's inputs and draws them upstream of it in the run's graph
    (a task's plain arguments show as empty inputs). The task takes the files from its own arguments."""
    return [out.files for out in render.outputs.values()]


def run_stage(render: ShotRender, stage: Stage, manifest: str, frames: str | None) -> StageOutput:
    """A stage's work as Prefect tasks: its chunked part one task per chunk, then its shot-level part."""
    shot = render.shot
    parts: list = []
    if span := stage.chunk_range(shot, render.root, render.keys[stage.name]):
        chunk = stage_chunk.with_options(name=f"{stage.name}-chunk")
        parts = run_chunks(
            lambda a, b: chunk.submit(stage.name, manifest, frames, a, b),
            *span,
            shot.spec.output.chunk_size,
            f"{shot.name}: {stage.name}",
            render_progress_key(shot, stage.name),
        )
    version_path = str(render.version.path) if render.version else None
    files = render.files
    return stage_task.with_options(name=stage.name)(
        stage.name, manifest, frames, str(render.root), version_path, files, parts, wait_for=upstream(render)
    )


@task(name="overlay-chunk", task_run_name="overlay {first}-{last}", **CHUNK_TASK)
def overlay_chunk(
    manifest: str, frames: str | None, version_path: str, track_file: str, first: int, last: int
) -> ChunkResult:
    shot = prepare_shot(manifest, frames)
    version = _version_for_task(shot, version_path)
    track = FaceTrack.load(Path(track_file))
    return render_overlay(shot, version, track, first, last, output_metadata(shot, version))


@task(
    name="encode-movies",
    task_run_name="movies",
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


def run_chunks(
    submit: Callable[[int, int], object], first: int, last: int, size: int, what: str, key: str | None = None
) -> list:
    """Submit one task per chunk of frames and show their progress (also as a Prefect artifact when the
    work lasts): chunks on this process's threads count their frames under `key` as they go, the others
    when they end.

    If a chunk fails, the others still finish before the error is raised, so nothing is left writing.
    """
    ranges = chunk_ranges(first, last, size)
    total = last - first + 1
    progress = ProgressArtifact(what)
    results, errors, done = [], [], 0
    with Progress(what, total, "frame", emit=get_run_logger().info, key=key) as bar:
        futures = {submit(a, b): (a, b) for a, b in ranges}
        for fut in as_completed(list(futures)):
            a, b = futures[fut]
            try:
                results.append(fut.result())
            except Exception as e:
                errors.append(e)
                continue
            done += b - a + 1
            bar.finish_part((a, b))
            progress.update(100.0 * done / total)
    if errors:
        raise errors[0]
    return results


SHEET_WIDTH_IN_UI = 640  # px: a contact sheet as the report artifact shows it


def sheets_markdown(v: RenderVersion) -> str:
    """The version's contact sheets as images in Markdown, for the report artifact: the Prefect UI cannot
    open files on the render filesystem, so each is a downsized JPEG inside a data: URI (a 4x4 sheet of
    detailed frames is about 140 kB of the artifact, which the server's database keeps)."""
    import cv2

    sheets = sorted(v.path.glob("*contact_sheet.png"), key=lambda p: (p.name != "contact_sheet.png", p.name))
    lines = ["", "## Contact sheets"] if sheets else []
    for path in sheets:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        h, w = image.shape[:2]
        if w > SHEET_WIDTH_IN_UI:
            size = (SHEET_WIDTH_IN_UI, max(1, round(h * SHEET_WIDTH_IN_UI / w)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])[1]
        data = base64.b64encode(jpeg.tobytes()).decode("ascii")
        lines += ["", f"`{path.resolve()}`", "", f"![{path.stem}](data:image/jpeg;base64,{data})"]
    return "\n".join(lines) + "\n" if lines else ""


def _finish(shot: Shot, v: RenderVersion, report: dict, t0: float) -> dict:
    create_markdown_artifact(
        markdown=report_markdown(report) + sheets_markdown(v),
        key=f"{_artifact_key(shot.name)}-report",
        description=f"{shot.name} {v.label} report",
    )
    v.write_state(status="done")
    get_run_logger().info(f"{shot.name} {v.label}: done in {time.perf_counter() - t0:.1f} s")
    return {"shot": shot.name, "version": v.label, "path": str(v.path), "report": report}


def _failed(v: RenderVersion, e: BaseException) -> None:
    v.write_state(status="failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)


@flow(
    name="render-shot",
    flow_run_name=manifest_run_name,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=WORKERS),
)
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
    shot = prepare_shot(manifest, frames)
    ensure_writable(Path(root))
    render = ShotRender(shot, Path(root), get_run_logger().info)
    with writing(shot, Path(root), resume, version, force) as (v, cache):
        name_shot_run(shot, v, frames)
        if resume and v.finished:
            render.log(f"{shot.name} {v.label}: finished already: nothing to resume")
            return finished_already(shot, v)
        return render_version(render, v, cache, manifest, frames, force)


def render_version(
    render: ShotRender,
    v: RenderVersion,
    cache: ShotCache,
    manifest: str,
    frames: str | None,
    force: str | None,
) -> dict:
    """The plan, the stages, the frames, the review, the movies and the report of a render, into the open
    version (marked failed when anything fails)."""
    shot = render.shot
    try:
        render.plan(force)
        cache.share()  # the cleared entries are gone: other renders of the shot may start
        render.open(v)
        for stage in render.shot_stages:  # track, swap, project, path
            render.run_stage(stage, lambda s: run_stage(render, s, manifest, frames))
        with render.clock("frames"):
            files, after = render.files, upstream(render)
            chunks = run_chunks(
                lambda a, b: render_chunk.submit(manifest, frames, str(v.path), files, a, b, wait_for=after),
                shot.first,
                shot.last,
                shot.spec.output.chunk_size,
                f"{shot.name} {v.label}",
                render_progress_key(shot, "frames"),
            )
        chunks.sort(key=lambda c: c.first)
        with render.clock("review"):
            render.review(chunks)  # each stage's report section and contact sheet
        with (
            render.clock("movies"),
            Progress(
                f"{shot.name} {v.label}",
                movie_count(shot),
                "movie",
                emit=render.log,
                key=render_progress_key(shot, "movies"),
            ),
        ):
            movies = encode_movies_task(shot, v, render.metadata)
        for m in movies:
            render.log(f"{shot.name} {v.label}: movie {Path(m.path).name} ({m.seconds:.1f} s)")
        report = render.write_report(chunks, movies)
        drop_review_tiles(v)
        return _finish(shot, v, report, render.clock.t0)
    except BaseException as e:
        _failed(v, e)
        raise


@flow(
    name="track-shot",
    flow_run_name=manifest_run_name,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=WORKERS),
)
def track_shot(manifest: str, frames: str | None = None, root: str = "render") -> dict:
    """Track the shot's faces and write a look at it: an overlay movie and an aligned-crop contact sheet."""
    shot = prepare_shot(manifest, frames)
    faces_spec(shot)
    ensure_writable(Path(root))
    render = ShotRender(shot, Path(root), get_run_logger().info)
    with writing(shot, Path(root), False, None) as (v, _):
        name_shot_run(shot, v, frames)
        return track_version(render, v, manifest, frames)


def track_version(render: ShotRender, v: RenderVersion, manifest: str, frames: str | None) -> dict:
    """The track, its overlay frames and movie and the report, into the open version (marked failed when
    anything fails)."""
    shot = render.shot
    try:
        render.open(v, alters_faces=False)  # the overlay draws on the plate
        out = render.run_stage(TRACK, lambda s: run_stage(render, s, manifest, frames))
        track_file = out.files["track"]
        overlay_dir(v).mkdir(exist_ok=True)
        after = upstream(render)
        chunks = run_chunks(
            lambda a, b: overlay_chunk.submit(
                manifest, frames, str(v.path), track_file, a, b, wait_for=after
            ),
            shot.first,
            shot.last,
            shot.spec.output.chunk_size,
            f"{shot.name} {v.label} overlay",
            render_progress_key(shot, "overlay"),
        )
        chunks.sort(key=lambda c: c.first)
        movie = v.path / f"{shot.name}_overlay_{v.label}.mp4"
        t = time.perf_counter()
        pattern = overlay_dir(v) / f"{shot.name}_overlay_{v.label}.%04d.png"
        with Waiting(f"{shot.name} {v.label}: overlay movie", emit=render.log):
            cmd = encode_movie(
                pattern,
                shot.first,
                shot.frame_count,
                shot.fps,
                movie,
                "h264_review",
                render.metadata,
                color=shot.plate.info.color,
                pixel_aspect=shot.plate.info.pixel_aspect,
                timecode=shot.frame_timecode(shot.first),
            )
        movies = [MovieResult("h264_review", str(movie), time.perf_counter() - t, command=cmd)]
        faces = TRACK.report(Rendered(shot, v, render.metadata, render.files, render.outputs, chunks))
        timings = {"faces_s": render.clock.seconds["track"], "total_s": time.perf_counter() - render.clock.t0}
        report = write_report(
            shot,
            v,
            chunks,
            movies,
            render.metadata,
            timings,
            sections={"faces": faces},
            frame_path=lambda n: overlay_path(v, n),
            stages=["decode", "track faces", "overlay", "encode"],
        )
        return _finish(shot, v, report, render.clock.t0)
    except BaseException as e:
        _failed(v, e)
        raise


def render_batch_shot(manifest: str, root: str, runner: dict | None = None, resume: bool = False) -> dict:
    """One shot of a batch, run in a thread of the batch's flow as a render-shot subflow run: the shot's
    logs and report artifact are on its own run (a flow called inside a task files them on the task).
    With `resume`, an interrupted latest version is finished and an up-to-date one is left as it is."""
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
        flow_ = render_shot.with_options(task_runner=make_task_runner(settings))
        return flow_(manifest, root=root, resume=finish)


def render_shots(
    manifests: list[str], root: str, runner: dict | None = None, resume: bool = False
) -> Iterator[tuple[str, dict, str | None]]:
    """Render shots side by side (SHOTS_AT_ONCE threads, each in a copy of the calling flow's context, so
    each shot is a subflow run of it); yield each as it ends with its result, or with its error's first
    line: a failing shot is logged and does not stop the others."""
    log = get_run_logger()
    # Prefect numbers a flow's subflow runs on its one event-loop thread, so threads may start them at once
    pool = ThreadPoolExecutor(max_workers=SHOTS_AT_ONCE, thread_name_prefix="shot")
    failed = 0
    try:
        futures = {
            pool.submit(contextvars.copy_context().run, render_batch_shot, m, root, runner, resume): m
            for m in manifests
        }
        with Progress("batch", len(manifests), "shot", emit=log.info) as bar:
            for fut in threads_completed(futures):
                m = futures[fut]
                try:
                    result, message = fut.result(), None
                except Exception as e:
                    message = str(e).splitlines()[0] if str(e) else type(e).__name__
                    log.error(f"{m}: {message}")
                    result, failed = {}, failed + 1
                bar.advance(note=f"{failed} failed" if failed else None)
                yield m, result, message
    finally:  # interrupted (Ctrl-C): the shots not started yet are not started
        pool.shutdown(wait=True, cancel_futures=True)


def batch_manifests(folder: str, only: str | None = None) -> list[str]:
    manifests = sorted(str(p) for p in Path(folder).glob("*.y*ml"))
    if only:
        manifests = [m for m in manifests if fnmatch.fnmatch(Path(m).stem, only)]
    if not manifests:
        raise ManifestError(
            f"{folder}: no shot manifests (*.yaml)" + (f" matching --only {only}" if only else "") + " found"
        )
    return manifests


def batch_run_name() -> str:
    """`batch shots/`, or `batch shots/ sh01*` for the shots that --only picks."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    only = [parameters["only"]] if parameters.get("only") else []
    return " ".join(["batch", parameters["folder"], *only])


@flow(name="render-batch", flow_run_name=batch_run_name, persist_result=False)
def render_batch(
    folder: str,
    root: str = "render",
    only: str | None = None,
    runner: dict | None = None,
    resume: bool = False,
) -> list[dict]:
    """Render every manifest in a folder (or those whose name matches `only`), two shots at a time; a
    shot that fails does not stop the others, and the report lists each shot's outcome."""
    manifests = batch_manifests(folder, only)
    clashes = shot_name_clashes([Path(m) for m in manifests])
    outcomes = [
        {"manifest": m, "status": "failed", "error": clashes[Path(m)]}
        for m in manifests
        if Path(m) in clashes
    ]
    for o in outcomes:
        get_run_logger().error(o["error"])
    manifests = [m for m in manifests if Path(m) not in clashes]
    for m, r, error in render_shots(manifests, root, runner, resume):
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


@flow(name="overnight", flow_run_name="overnight {folder}", persist_result=False)
def overnight(folder: str, root: str = "render") -> dict:
    """Render the shots whose manifest, plate, models or code changed since their last render (and those
    never rendered, failed or interrupted); leave the rest. Writes the night's summary as a Markdown file
    in render/overnight/ and as a Prefect artifact."""
    started = time.strftime("%Y-%m-%d %H:%M")
    todo, rows = [], []
    manifests = batch_manifests(folder)
    clashes = shot_name_clashes([Path(m) for m in manifests])
    for m in manifests:
        if Path(m) in clashes:
            rows.append(
                {"manifest": m, "before": "invalid", "outcome": "skipped", "detail": clashes[Path(m)]}
            )
            continue
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
    except ValidationError as e:  # its first error's message alone: "Invalid cron string: ..."
        why = e.errors()[0]["msg"].removeprefix("Value error, ")
        raise ManifestError(f"--cron {cron!r}: {why}") from None
    batch_manifests(folder)
    parameters = {"folder": str(Path(folder).resolve()), "root": str(Path(root).resolve())}
    overnight.serve(name="overnight", cron=cron, parameters=parameters)


def start_prefect() -> None:
    """Prefect's temporary server, when no PREFECT_API_URL is set, started now with lines saying so: it
    takes 10-20 s on two busy cores, which the first flow would otherwise spend in silence. The flows of
    this process then use it (Prefect keeps one and stops it at exit)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    with Waiting("starting Prefect's temporary server"), get_client(sync_client=True) as client:
        client.api_healthcheck()


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
    # what the flow would refuse is refused here too, in one line, before Prefect starts; the flow checks
    # again under its locks, for a render that starts in between
    if resume:
        v = resume_version(Path(root), shot.name, extension(shot.spec.output.sequence), version)
        v.check_free()
        if not needs_finishing(shot, v):
            return finished_already(shot, v)
    else:
        check_new_version(Path(root), shot.name, version)
    if force:
        cache = ShotCache(Path(root), shot.name)
        cache.claim(f"--force {force}")
        cache.release()
    flow_ = render_shot.with_options(task_runner=make_task_runner(runner))
    start_prefect()
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
    start_prefect()
    with shared_cluster(runner) as shared:
        runner_dict = asdict(shared) if shared else None
        return render_batch(folder, root=root, only=only, runner=runner_dict, resume=resume)


def run_track(manifest: str, frames: str | None = None, root: str = "render") -> dict:
    faces_spec(_precheck(manifest, frames, root))
    start_prefect()
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
    budget = None if steps else 60 * (minutes or 0)
    bar = Progress(f"train swap {out}", steps, "step", seconds=budget, emit=log.info)

    def on_step(record: dict) -> None:
        bar.update(record["step"], note=f"loss A {record['a_total']:.4f}, B {record['b_total']:.4f}")
        if record["step"] % 50 == 0:
            done = record["step"] / steps if steps else (time.monotonic() - started) / (60 * (minutes or 1))
            update_progress_artifact(progress_id, min(100.0, 100 * done))

    with bar:
        state = train(Path(a), Path(b), Path(out), settings, steps, minutes, resume=resume, on_step=on_step)
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
    budget = None if kimg else 60 * (minutes or 0)
    bar = Progress(f"train generator {out}", None, "step", seconds=budget, emit=log.info)

    def on_step(record: dict) -> None:
        if kimg and bar.total is None:  # the steps to show kimg thousand images, from where it starts
            images_left = 1000 * kimg - round(1000 * record["kimg"])  # shown so far: a whole number
            bar.total = record["step"] + max(0, math.ceil(images_left / batch - 1e-9))
        bar.update(
            record["step"],
            note=f"{record['kimg']:.1f} kimg, D loss {record['d_loss']:.3f}, G loss {record['g_loss']:.3f}, "
            f"D(real) {record['real_score']:+.2f}, D(fake) {record['fake_score']:+.2f}",
        )
        if record["step"] % 100 == 0:
            done = record["kimg"] / kimg if kimg else (time.monotonic() - started) / (60 * (minutes or 1))
            update_progress_artifact(progress_id, min(100.0, 100 * done))

    with bar:
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


def step_progress(
    label: str, artifact: str, steps: int | None, minutes: float | None, describe: Callable[[dict], str]
) -> tuple[Progress, Callable[[dict], None]]:
    """A training's progress bar and the callback its steps report to: the share done (of the steps left
    when it started, or of the minutes) goes to the run's progress artifact, the losses to the log."""
    log = get_run_logger()
    progress = ProgressArtifact(artifact)
    started = time.monotonic()
    first_step: int | None = None
    bar = Progress(label, steps, "step", seconds=None if steps else 60 * (minutes or 0), emit=log.info)

    def on_step(record: dict) -> None:
        nonlocal first_step
        step, now = record["step"], time.monotonic()
        first_step = step if first_step is None else first_step
        if steps:
            done = (step - first_step + 1) / max(1, steps - first_step + 1)
        else:
            done = (now - started) / (60 * (minutes or 1))
        progress.update(min(100.0, 100 * done))
        bar.update(step, note=describe(record))

    return bar, on_step


@flow(name="train-encoder", persist_result=False)
def train_encoder(
    generator: str,
    faces: list[str],
    out: str,
    steps: int | None = None,
    minutes: float | None = None,
    batch: int = 8,
    lr: float = 1e-4,
    seed: int = 0,
    resume: bool = False,
    real_every: int = 2,
    anneal: float = 0.25,
    weights: dict[str, float] | None = None,
) -> dict:
    """Train an encoder for a generator (a file or folder) as a Prefect run (an overnight job on a render
    node): its own samples teach it, the crops in `faces` (optional) refine it. `weights`: the losses'
    weights that differ from EncoderSettings' ({"latent": 0.1})."""
    from pipeline.stylegan.encoder_train import EncoderSettings, describe_losses, recent_losses
    from pipeline.stylegan.encoder_train import train_encoder as train

    settings = EncoderSettings(batch=batch, lr=lr, seed=seed, real_every=real_every, anneal=anneal)
    settings = settings.with_weights(weights or {})
    started = time.monotonic()
    bar, on_step = step_progress(
        f"train encoder {out}", f"encoder training {out}", steps, minutes, describe_losses
    )

    with bar:
        state = train(
            generator,
            [Path(f) for f in faces],
            Path(out),
            settings,
            steps=steps,
            minutes=minutes,
            resume=resume,
            on_step=on_step,
        )
    return {
        "out": out,
        "step": state.step,
        "seconds": time.monotonic() - started,
        "losses": describe_losses(recent_losses(state.history)),
    }


@flow(name="train-mapper", persist_result=False)
def train_mapper(
    generator: str,
    recognisers: str,
    out: str,
    steps: int | None = None,
    minutes: float | None = None,
    attributes: list[str] | None = None,
    weights: dict[str, float] | None = None,
    batch: int = 8,
    lr: float = 5e-4,
    seed: int = 0,
    resume: bool = False,
) -> dict:
    """Train a latent-to-latent mapper (L2L) for a generator, judged by its attribute recognisers and a
    face-recognition network, as a Prefect run (an overnight job on a render node)."""
    from pipeline.stylegan.encoder_train import recent_losses
    from pipeline.stylegan.mapper_train import MapperSettings, describe_losses
    from pipeline.stylegan.mapper_train import train_mapper as train

    settings = MapperSettings(batch=batch, lr=lr, seed=seed, attributes=tuple(attributes or ()))
    settings = settings.with_weights(weights or {})
    started = time.monotonic()
    bar, on_step = step_progress(
        f"train mapper {out}", f"mapper training {out}", steps, minutes, describe_losses
    )

    with bar:
        state = train(
            generator,
            recognisers,
            Path(out),
            settings,
            steps=steps,
            minutes=minutes,
            resume=resume,
            on_step=on_step,
        )
    return {
        "out": out,
        "step": state.step,
        "seconds": time.monotonic() - started,
        "attributes": state.mapper.names,
        "losses": describe_losses(recent_losses(state.history)),
    }


@flow(name="train-stylize", persist_result=False)
def train_stylize(
    sources: list[str],
    targets: list[str],
    out: str,
    steps: int | None = None,
    minutes: float | None = None,
    resolution: int = 64,
    weights: dict[str, float] | None = None,
    batch: int = 8,
    lr: float = 2e-4,
    patches: int = 8,
    seed: int = 0,
    resume: bool = False,
    feature_map: int = 17,
    map_on_crop: bool = True,
    off_chip: str = "edge",
    descriptor: bool = False,
    colours: int | None = None,
) -> dict:
    """Train a domain transfer network (DTN) from folders of source faces and target images as a Prefect
    run."""
    from pipeline.stylize.dtn_train import DTNSettings, describe
    from pipeline.stylize.dtn_train import train_stylizer as train

    settings = DTNSettings(
        resolution=resolution,
        batch=batch,
        lr=lr,
        seed=seed,
        d_patch=patches,
        feature_map=feature_map,
        map_on_crop=map_on_crop,
        off_chip=off_chip,
        use_vector=descriptor,
        colours=colours,
    )
    settings = settings.with_weights(weights or {})
    started = time.monotonic()
    bar, on_step = step_progress(f"train stylize {out}", f"stylizer training {out}", steps, minutes, describe)

    with bar:
        state = train(
            [Path(p) for p in sources],
            [Path(p) for p in targets],
            Path(out),
            settings,
            steps=steps,
            minutes=minutes,
            resume=resume,
            on_step=on_step,
            keep_weights=not weights,
        )
    last = state.history[-1] if state.history else {}
    return {"out": out, "step": state.step, "seconds": time.monotonic() - started, "losses": describe(last)}


@flow(name="train-recognisers", persist_result=False)
def train_recognisers(
    generator: str,
    out: str,
    minutes: float | None,
    labels: dict[str, list[str]] | None = None,
    samples: int = 2000,
    measures: list[str] | None = None,
    batch: int = 32,
    lr: float = 3e-4,
    seed: int = 0,
    resume: bool = False,
    steps: int | None = None,
) -> dict:
    """Train attribute recognisers for a generator (a file or folder) as a Prefect run: draw and measure
    its faces, read the label folders (name -> [with, without]), train for `minutes` (or until `steps` in
    all), judge on held-out faces; an attribute no better than chance fails the run (nothing written for
    the mapper)."""
    from pipeline.faces.attributes import GEOMETRIC_ATTRIBUTES
    from pipeline.stylegan.recognise_train import RecogniserSettings, describe_figures
    from pipeline.stylegan.recognise_train import train_recognisers as train

    log = get_run_logger()
    chosen = GEOMETRIC_ATTRIBUTES if measures is None else tuple(measures)
    settings = RecogniserSettings(measures=chosen, batch=batch, lr=lr, seed=seed)
    progress = ProgressArtifact(f"recogniser training {out}")
    started = time.monotonic()
    bars: dict[str, Progress] = {}  # the sampling's (not on a resume), then the training's
    training_started = 0.0

    def on_progress(record: dict) -> None:
        nonlocal training_started
        phase = record["phase"]
        if phase == "sampling":
            if "sampling" not in bars:
                label = f"recognisers {out}: draw and measure faces"
                bars["sampling"] = Progress(label, record["total"], "face", emit=log.info)
            bars["sampling"].update(record["drawn"], note=f"dlib found a face on {record['found']}")
        elif phase == "training":
            if "training" not in bars:
                if "sampling" in bars:
                    bars["sampling"].close()
                label = f"train recognisers {out}"
                seconds = None if minutes is None else 60 * minutes
                bars["training"] = Progress(label, steps, "step", seconds=seconds, emit=log.info)
                training_started = time.monotonic()
            if steps is not None:
                progress.update(min(100.0, 100 * record["step"] / steps))
            else:
                assert minutes is not None
                progress.update(min(100.0, 100 * (time.monotonic() - training_started) / (60 * minutes)))
            bars["training"].update(record["step"], note=f"loss {record['loss']:.4f}")
        elif phase == "evaluated":
            for name, figures in record["figures"].items():
                log.info(f"held out: {describe_figures(name, figures)}")

    try:
        state, figures = train(
            generator,
            Path(out),
            minutes,
            labels={name: (Path(a), Path(b)) for name, (a, b) in (labels or {}).items()},
            samples=samples,
            resume=resume,
            progress=on_progress,
            settings=settings,
            steps=steps,
        )
    finally:
        for bar in bars.values():
            bar.close()
    return {
        "out": out,
        "step": state.step,
        "seconds": time.monotonic() - started,
        "figures": {name: describe_figures(name, f) for name, f in figures.items()},
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
    from prefect.exceptions import ObjectNotFound

    shot = _precheck(manifest, None, root)
    if deployment.count("/") != 1 or not all(deployment.split("/")):
        raise ManifestError(f"--deployment {deployment}: not a deployment name like render-shot/render-shot")
    parameters = {"manifest": str(Path(manifest).resolve()), "root": str(Path(root).resolve())}
    try:
        run = run_deployment(deployment, parameters=parameters, timeout=0, flow_run_name=shot.name)
    except ObjectNotFound:
        raise ManifestError(
            f"--deployment {deployment}: no such deployment on the Prefect server (vfx deploy makes it)"
        ) from None
    return str(run.id)
