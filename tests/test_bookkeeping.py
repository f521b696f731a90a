"""The bookkeeping commands (validate, status, render --dry-run) stay light: they read manifests, model
headers and stage records, and never import torch or Prefect (which cost 2-7 s on a quiet machine)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import write_manifest

from pipeline.errors import PipelineError
from pipeline.files import read_torch_file_without_tensors, save_torch_atomic
from pipeline.models import ModelError, load_torch_file
from pipeline.swap.checkpoint import checkpoint_config
from pipeline.swap.train import read_checkpoint

PROBE = """
import json, sys
from pipeline.cli import main
from pipeline.manifest import load_shot
from pipeline.shot.stages import stage_keys
m, root = sys.argv[1], sys.argv[2]
codes = [
    main(["validate", m]),
    main(["render", m, "--dry-run", "--root", root]),
    main(["status", m, "--root", root]),
]
keys = sorted(stage_keys(load_shot(m)))
heavy = [n for n in ("torch", "prefect") if n in sys.modules]
print(json.dumps({"codes": codes, "keys": keys, "heavy": heavy}))
"""


def test_validate_status_and_dry_run_import_neither_torch_nor_prefect(
    tmp_path, woman_clip, tiny_model, tiny_generator_file
):
    """Yet validate reads every model file the shot names: the generator's, encoder's and mapper's
    headers, and the encoder's and mapper's record of their generator."""
    from conftest import tiny_mapper

    from pipeline.models import sha256_file
    from pipeline.stylegan.checkpoints import load_generator
    from pipeline.stylegan.encoder import Encoder, save_encoder

    G, _ = load_generator(tiny_generator_file)
    save_encoder(tmp_path / "e.pt", Encoder.for_generator(G, samples=100), sha256_file(tiny_generator_file))
    tiny_mapper(tiny_generator_file, tmp_path / "m", seed=0)
    m = write_manifest(
        tmp_path,
        f"""
shot: bk010
plate: {{movie: {woman_clip}}}
frames: 1001-1010
output: {{sequence: png8, movies: []}}
faces: {{crop_size: 64}}
swap: {{model: {tiny_model}, direction: a_to_b}}
project: {{generator: {tiny_generator_file}, encoder: e.pt, steps: 8, tune: {{steps: 10}}}}
path: {{mapper: m, edits: []}}
composite: {{}}
""",
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(m), str(tmp_path / "render")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["codes"] == [0, 0, 0]
    # every stage's key was computed (the dry run and stage_keys), yet neither torch nor Prefect was loaded
    assert out["keys"] == ["composite", "path", "project", "swap", "track", "tune"]
    assert out["heavy"] == []
    assert "swap       runs" in done.stdout and "never rendered" in done.stdout


def test_a_checkpoint_is_read_without_torch_as_torch_reads_it(tiny_model, tmp_path):
    header = read_torch_file_without_tensors(tiny_model / "swap.pt")
    full = read_checkpoint(tiny_model)
    assert header["config"] == full["config"] == checkpoint_config(tiny_model)
    assert header["step"] == full["step"] and header["history"] == full["history"]
    # tensors are left out, their names kept
    assert set(header["model"]) == set(full["model"]) and all(v is None for v in header["model"].values())
    torch.save({"format": 1, "config": {"size": 64}, "w": torch.ones(3)}, tmp_path / "plain.pt")
    plain = read_torch_file_without_tensors(tmp_path / "plain.pt")
    assert plain == {"format": 1, "config": {"size": 64}, "w": None}


def test_the_same_data_saved_anywhere_makes_the_same_model_file(tmp_path):
    """torch names a file's records after the name it writes to; ours go through a temporary named by
    the writer's pid, so without care every save had its own bytes and checksum."""
    data = {"format": 1, "w": torch.arange(6.0).reshape(2, 3)}
    save_torch_atomic(tmp_path / "a.pt", data)
    (tmp_path / "later").mkdir()
    save_torch_atomic(tmp_path / "later" / "b.pt", data)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "later" / "b.pt").read_bytes()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temporary left
    back = torch.load(tmp_path / "a.pt", weights_only=True, mmap=True)
    assert torch.equal(back["w"], data["w"])
    assert read_torch_file_without_tensors(tmp_path / "a.pt") == {"format": 1, "w": None}


class Hostile:
    def __reduce__(self):
        return (Path.touch, (Path("/nonexistent-dir/pwned"),))


def test_a_model_file_torch_cannot_read_says_what_is_wrong_with_it(tmp_path):
    """Not torch's own words, which advise loading the file unsafely or give a memo index."""
    good = {"format": "ours", "state": {"w": torch.ones(3)}}
    torch.save(good, tmp_path / "good.pt")
    assert torch.equal(load_torch_file(tmp_path / "good.pt", "encoder file")["state"]["w"], torch.ones(3))
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("junk text")
    whole = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    torch.save({"format": "ours", "where": Path("/")}, tmp_path / "objects.pt")
    for name, why in [
        ("empty", "the file is empty"),
        ("text", "not a torch.save archive: damaged, cut short, or another kind of file"),
        ("cut", "not a torch.save archive: damaged, cut short, or another kind of file"),
        ("objects", "it holds Python objects besides tensors; files this pipeline writes hold none"),
    ]:
        with pytest.raises(ModelError) as e:
            load_torch_file(tmp_path / f"{name}.pt", "encoder file")
        assert str(e.value) == f"{tmp_path / name}.pt: not a readable encoder file ({why})"


def test_a_hostile_or_broken_checkpoint_is_refused_without_running_it(tmp_path):
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("bad/data.pkl", pickle.dumps({"config": Hostile()}))
    refused = r"bad\.pt: not a readable torch checkpoint: refused class pathlib"
    with pytest.raises(PipelineError, match=refused):
        read_torch_file_without_tensors(bad)
    (tmp_path / "text.pt").write_text("not a zip")
    with pytest.raises(PipelineError, match=r"text\.pt: not a readable torch checkpoint"):
        read_torch_file_without_tensors(tmp_path / "text.pt")
    with zipfile.ZipFile(tmp_path / "empty.pt", "w") as z:
        z.writestr("x/other", b"")
    with pytest.raises(PipelineError, match=r"empty\.pt: not a torch checkpoint \(no data\.pkl inside\)"):
        read_torch_file_without_tensors(tmp_path / "empty.pt")
