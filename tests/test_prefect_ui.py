"""What the Prefect UI shows of a render, read back from the Prefect API: runs named by shot and version,
chunks by frame range, and a batch's shots each with their own logs and report artifact."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_manifest

from pipeline.flows import SHEET_WIDTH_IN_UI, run_batch, run_render
from pipeline.shot.frames import chunk_ranges

pytestmark = pytest.mark.slow


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def flow_runs(**filters):
    from prefect.client.schemas.filters import FlowRunFilter

    with client() as c:
        return c.read_flow_runs(flow_run_filter=FlowRunFilter(**filters))


def runs_named(name: str):
    from prefect.client.schemas.filters import FlowRunFilterName

    return flow_runs(name=FlowRunFilterName(any_=[name]))


def task_runs_of(run_id, count: int) -> list:
    """The flow run's task runs, once there are `count` of them."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    def read() -> list:
        with client() as c:
            return c.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id]))
            )

    return until(read, lambda runs: len(runs) >= count)


def until(read: Callable[[], list], done: Callable[[list], bool], timeout: float = 20.0) -> list:
    """What `read` returns once `done` says so, or at the deadline: the server records logs and task runs
    in batches, a moment after they happen."""
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    deadline = time.monotonic() + timeout
    while not done(found := read()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def log_messages(run_id, expected: str) -> list[str]:
    """The run's log messages, once one of them contains `expected`."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    def read() -> list[str]:
        with client() as c:
            logs = c.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        return [log.message for log in logs]

    return until(read, lambda messages: any(expected in m for m in messages))


def artifacts_of(run_id) -> list:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with client() as c:
        return c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )


def test_a_render_is_named_by_shot_version_and_frames(tmp_path, prefect_server):
    m = write_manifest(
        tmp_path,
        "shot: nm030\nplate: {still: builtin:astronaut, hold: 5}\n"
        "output: {sequence: png8, movies: [], chunk_size: 2}\n",
        "nm030_plate.yaml",
    )
    run_render(str(m), root=str(tmp_path / "r"))
    run_render(str(m), root=str(tmp_path / "r"), frames="1002-1004")
    [whole] = runs_named("nm030 v001")
    [part] = runs_named("nm030 v002 1002-1004")
    for run, (first, last) in ((whole, (1001, 1005)), (part, (1002, 1004))):
        chunks = sorted(f"chunk {a}-{b}" for a, b in chunk_ranges(first, last, 2))
        names = sorted(t.name for t in task_runs_of(run.id, len(chunks) + 1))  # and the movies' task
        assert names == sorted([*chunks, "movies"])
    # a run that fails before its version is open keeps its manifest's name (not a random one)
    bad = write_manifest(
        tmp_path, "shot: nm031\nplate: {still: builtin:astronaut, hold: 5}\n", "nm031_bad.yaml"
    )
    from pipeline.flows import render_shot

    bad.write_text("shot: nm031\nplate: {movie: missing.mov}\n")
    with pytest.raises(Exception, match="plate not found"):
        render_shot(str(bad), root=str(tmp_path / "r"))
    [failed] = runs_named("nm031_bad")
    assert failed.state.is_failed()


def test_a_batch_files_each_shots_logs_and_report_on_the_shots_own_run(tmp_path, prefect_server):
    shots = tmp_path / "shots"
    shots.mkdir()
    write_manifest(  # with a face track: the chunks wait for the track's task run
        shots,
        "shot: nm010\nplate: {still: builtin:astronaut, hold: 4}\n"
        "output: {sequence: png8, movies: [], chunk_size: 2}\n"
        "faces: {crop_size: 128, upsample: 1}\ncomposite: {alteration: recolor}\n",
        "nm010.yaml",
    )
    write_manifest(
        shots,
        "shot: nm020\nplate: {still: builtin:astronaut, hold: 3}\noutput: {sequence: png8, movies: []}\n",
        "nm020.yaml",
    )
    write_manifest(shots, "shot: nm015\nplate: {movie: missing.mov}\n", "nm015.yaml")
    root = tmp_path / "render"
    outcomes = run_batch(str(shots), root=str(root))
    assert [o["status"] for o in outcomes] == ["done", "failed", "done"]

    [batch] = runs_named(f"batch {shots}")
    from prefect.client.schemas.filters import FlowRunFilterParentFlowRunId

    children = flow_runs(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[batch.id]))
    by_name = {r.name: r for r in children}
    assert set(by_name) == {"nm010 v001", "nm015", "nm020 v001"}  # each shot a subflow run of the batch
    assert by_name["nm015"].state.is_failed() and by_name["nm010 v001"].state.is_completed()

    batch_logs = log_messages(batch.id, "nm015.yaml")
    assert any(
        "nm015.yaml" in m and "plate not found" in m for m in batch_logs
    )  # the batch names its failure
    for shot in ("nm010", "nm020"):
        run = by_name[f"{shot} v001"]
        messages = log_messages(run.id, f"{shot} v001: done in")
        assert any(m.startswith(f"{shot} v001: done in") for m in messages)
        assert any(re.match(rf"{shot}: frames 1001-100\d: \d written", m) for m in messages)  # a chunk's own
        assert not any(shot in m for m in batch_logs)  # none of the shot's lines are filed on the batch

        [report] = [a for a in artifacts_of(run.id) if a.key == f"{shot}-report"]
        assert report.task_run_id is None  # on the shot's run, not on a task
        folder = (root / shot / "v001").resolve()
        assert json.loads((folder / "report.json").read_text())["folder"] == str(folder)
        assert (
            f"Folder: `{folder}`" in report.data
            and f"Folder: `{folder}`" in (folder / "report.md").read_text()
        )
        # the contact sheet is in the artifact, as an image the browser shows: a downsized JPEG of the PNG
        data = re.search(r"!\[contact_sheet\]\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)", report.data)
        shown = cv2.imdecode(np.frombuffer(base64.b64decode(data.group(1)), np.uint8), cv2.IMREAD_COLOR)
        sheet = cv2.imread(str(folder / "contact_sheet.png"))
        assert shown.shape[1] == min(SHEET_WIDTH_IN_UI, sheet.shape[1])
        small = cv2.resize(sheet, shown.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert np.abs(shown.astype(float) - small).mean() < 8  # the same picture, up to JPEG

    tasks = {t.name: t for t in task_runs_of(by_name["nm010 v001"].id, 6)}
    assert set(tasks) == {
        "track 1001-1002",
        "track 1003-1004",
        "track",
        "chunk 1001-1002",
        "chunk 1003-1004",
        "movies",
    }
    for name in ("chunk 1001-1002", "chunk 1003-1004"):  # the UI lists the track as the chunk's input
        assert [i.id for i in tasks[name].task_inputs["wait_for"]] == [tasks["track"].id]
    assert Path(outcomes[0]["path"]) == root / "nm010" / "v001"
