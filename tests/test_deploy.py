"""Render nodes: a real Prefect server on 127.0.0.1, render-shot deployed on a process work pool, a shot
queued with `vfx submit`, and a worker (`prefect worker start --pool`) that picks it up and renders it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, write_manifest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`prefect server start` in its own home; stopped by its process id."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - open for the server's life
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the Prefect server did not start: {(tmp_path / 'server.log').read_text()}"
                    ) from None
                time.sleep(1)
        yield env
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


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
