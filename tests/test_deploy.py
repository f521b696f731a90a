"""Render nodes: a real Prefect server on 127.0.0.1, render-shot deployed on a process work pool, a shot
queued with `vfx submit`, and a worker (`prefect worker start --pool`) that picks it up and renders it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, write_manifest

BIN = Path(sys.executable).parent


@pytest.fixture
def server(tmp_path):
    """`prefect server start` in its own home; stopped by its process id."""
    from pipeline.flows import local_server

    with local_server(tmp_path / "prefect-home") as env:
        yield env


@pytest.mark.slow
def test_a_worker_on_a_process_pool_renders_a_queued_shot(tmp_path, server):
    def vfx(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "vfx"), *args], env=server, cwd=REPO, capture_output=True, text=True)

    deployed = vfx("deploy", "--pool", "nodes")
    assert deployed.returncode == 0, deployed.stderr
    assert "deployment render-shot/render-shot on work pool nodes" in deployed.stdout
    m = write_manifest(
        tmp_path,
        "shot: node010\nplate: {still: builtin:astronaut, hold: 3}\noutput: {sequence: png8, movies: []}\n",
    )
    root = tmp_path / "render"
    submitted = vfx("submit", str(m), "--root", str(root))
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip().split()[-1]
    assert not (root / "node010").exists()  # queued, not rendered

    worker = subprocess.run(
        [str(BIN / "prefect"), "worker", "start", "--pool", "nodes", "--run-once"],
        env=server,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert len(list((root / "node010" / "v001" / "comp").glob("*.png"))) == 3
    report = json.loads((root / "node010" / "v001" / "report.json").read_text())
    assert report["frames_written"] == 3
    url = f"{server['PREFECT_API_URL']}/flow_runs/{run_id}"
    with urllib.request.urlopen(url, timeout=10) as r:
        assert json.loads(r.read())["state"]["type"] == "COMPLETED"
