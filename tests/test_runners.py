"""Task runners: the config file and flags, and a batch on a local Dask cluster of two worker processes
that gives the same frames as the thread runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import write_manifest

from pipeline.config import RunnerSettings, load_runner
from pipeline.errors import PipelineError
from pipeline.media.decode import read_image


def test_runner_from_the_config_file_and_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_runner() == RunnerSettings()
    # by default one chunk a core, at most four: more only add memory (every chunk uses every core)
    assert RunnerSettings().workers == min(4, os.cpu_count() or 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert RunnerSettings().workers == 4
    (tmp_path / "vfx.toml").write_text('[runner]\nkind = "dask"\nworkers = 3\n')
    assert load_runner() == RunnerSettings("dask", 3, None)
    assert load_runner("threads", 2) == RunnerSettings("threads", 2, None)
    assert load_runner(address="tcp://10.0.0.5:8786") == RunnerSettings("dask", 3, "tcp://10.0.0.5:8786")
    (tmp_path / "vfx.toml").write_text('[runner]\nkind = "slurm"\n')
    with pytest.raises(PipelineError, match=r"vfx.toml runner.kind: 'slurm' is not threads or dask"):
        load_runner()
    (tmp_path / "vfx.toml").write_text("[runner]\nnodes = 3\n")
    with pytest.raises(PipelineError, match=r"vfx.toml runner.nodes: unknown key"):
        load_runner()


def demo_sized_shots(folder: Path) -> Path:
    shots = folder / "shots"
    shots.mkdir()
    for i, zoom in enumerate((1.0, 1.1, 1.2, 1.3)):
        write_manifest(
            shots,
            f"""
shot: dk{i:03d}
plate:
  still: builtin:astronaut
  hold: 6
  move: {{zoom: [1.0, {zoom}], pan: [[0, 0], [-6, 4]]}}
output: {{sequence: png8, movies: [h264_review], chunk_size: 3}}
faces: {{crop_size: 128, upsample: 1}}
composite: {{alteration: recolor, blend: laplacian}}
""",
            f"dk{i:03d}.yaml",
        )
    return shots


@pytest.mark.slow
def test_a_batch_on_a_local_dask_cluster_matches_the_thread_runner(tmp_path, prefect_server):
    from pipeline.flows import run_batch

    shots = demo_sized_shots(tmp_path)
    threads = run_batch(str(shots), root=str(tmp_path / "threads"), runner=RunnerSettings("threads", 2))
    dask = run_batch(str(shots), root=str(tmp_path / "dask"), runner=RunnerSettings("dask", 2))
    assert [o["status"] for o in threads] == [o["status"] for o in dask] == ["done"] * 4
    workers = {c["worker"] for i in range(4) for c in _chunks(tmp_path / "dask" / f"dk{i:03d}")}
    assert len(workers) == 2 and not any(w.endswith(f":{os.getpid()}") for w in workers)  # two processes
    for i in range(4):
        a = sorted((tmp_path / "threads" / f"dk{i:03d}" / "v001" / "comp").glob("*.png"))
        b = sorted((tmp_path / "dask" / f"dk{i:03d}" / "v001" / "comp").glob("*.png"))
        assert len(a) == len(b) == 6
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(read_image(x), read_image(y)), x.name


def _chunks(shot_dir: Path) -> list[dict]:
    return json.loads((shot_dir / "v001" / "report.json").read_text())["chunks"]
