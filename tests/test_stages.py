"""Re-renders redo only what changed: stage keys, their parts, and a composite-only change that runs
neither detection nor swap nor projection again and still matches a render from scratch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_manifest

from pipeline.manifest import load_shot
from pipeline.media.decode import read_image
from pipeline.shot import project as shot_project
from pipeline.shot import track as shot_track
from pipeline.shot.keys import StageKey, code_version
from pipeline.shot.stages import stage_keys


def shot_text(
    clip: Path, model: Path, generator: Path, composite: str = "{blend: laplacian}", swap: str = ""
) -> str:
    return f"""
shot: st010
plate: {{movie: {clip}}}
frames: 1001-1008
output: {{sequence: png8, movies: [], chunk_size: 4}}
faces: {{crop_size: 64}}
swap: {{model: {model}, batch: 4{swap}}}
project: {{generator: {generator}, every: 4, steps: 4, patience: 0}}
composite: {composite}
"""


def test_stage_keys_change_with_their_own_parts_only(tmp_path, woman_clip, tiny_model, tiny_generator_file):
    base = stage_keys(
        load_shot(write_manifest(tmp_path, shot_text(woman_clip, tiny_model, tiny_generator_file)))
    )
    assert list(base) == ["track", "swap", "project", "path", "tune", "composite"]
    comp = stage_keys(
        load_shot(
            write_manifest(tmp_path, shot_text(woman_clip, tiny_model, tiny_generator_file, "{blend: alpha}"))
        )
    )
    assert all(comp[k].key == base[k].key for k in ("track", "swap", "project", "path", "tune"))
    assert comp["composite"].changes(base["composite"].parts) == ["composite settings"]
    swap = stage_keys(
        load_shot(
            write_manifest(
                tmp_path,
                shot_text(woman_clip, tiny_model, tiny_generator_file, swap=", use_model_mask: false"),
            )
        )
    )
    assert swap["track"].key == base["track"].key
    assert swap["swap"].changes(base["swap"].parts) == ["swap settings"]
    assert swap["project"].changes(base["project"].parts) == ["swap"]  # it projects the swapped faces
    assert swap["path"].changes(base["path"].parts) == ["project"]
    assert swap["tune"].changes(base["tune"].parts) == ["path", "swap"]  # it measures the swapped faces
    assert swap["composite"].changes(base["composite"].parts) == ["path", "project", "swap", "tune"]
    assert StageKey("x", {"a": "1"}).changes(None) == ["no earlier render"]
    assert len(code_version("pipeline.swap")) == 16 and code_version("pipeline.swap") != code_version(
        "pipeline.faces"
    )


@pytest.mark.slow
def test_a_composite_change_only_recomposites_and_matches_a_fresh_render(
    tmp_path, woman_clip, tiny_model, tiny_generator_file, prefect_server, monkeypatch
):
    from pipeline.flows import run_render
    from pipeline.swap import convert

    calls = {"detect": 0, "swap": 0, "project": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(shot_track, "detect_range", counting("detect", shot_track.detect_range))
    monkeypatch.setattr(convert, "convert_faces", counting("swap", convert.convert_faces))
    monkeypatch.setattr(shot_project, "project_faces", counting("project", shot_project.project_faces))

    first = write_manifest(tmp_path, shot_text(woman_clip, tiny_model, tiny_generator_file), "a.yaml")
    run_render(str(first), root=str(tmp_path / "r"))
    after_first = dict(calls)
    # two detection chunks; the swap of the three keys that are projected, then of the other frames, whose
    # swapped faces the tune stage measures the drawn faces against; one projection
    assert after_first == {"detect": 2, "swap": 2, "project": 1}

    changed = write_manifest(
        tmp_path,
        shot_text(woman_clip, tiny_model, tiny_generator_file, "{blend: alpha, grain: false}"),
        "b.yaml",
    )
    again = Path(run_render(str(changed), root=str(tmp_path / "r"))["path"])
    assert calls == after_first  # nothing but the composite ran again

    fresh = Path(run_render(str(changed), root=str(tmp_path / "fresh"))["path"])
    assert calls["detect"] == after_first["detect"] + 2  # a new root has no cache
    frames = sorted((again / "comp").glob("*.png"))
    assert len(frames) == 8
    for a in frames:  # the same pixels (the metadata names each version)
        b = fresh / "comp" / a.name.replace("v002", "v001")
        assert np.array_equal(read_image(a), read_image(b)), a.name


@pytest.mark.slow
def test_overnight_renders_only_the_shots_that_changed(tmp_path, prefect_server, capsys):
    from pipeline.cli import main

    shots = tmp_path / "shots"
    shots.mkdir()
    for name in ("n010", "n020"):
        write_manifest(
            shots,
            f"shot: {name}\nplate: {{still: builtin:astronaut, hold: 2}}\noutput: {{movies: []}}\n",
            f"{name}.yaml",
        )
    root = tmp_path / "render"
    assert main(["overnight", str(shots), "--root", str(root)]) == 0
    assert "2 rendered, 0 failed, 0 up to date" in capsys.readouterr().out
    assert main(["status", str(shots), "--root", str(root)]) == 0
    assert capsys.readouterr().out.count(" done ") == 2

    assert main(["overnight", str(shots), "--root", str(root)]) == 0
    assert "0 rendered, 0 failed, 2 up to date" in capsys.readouterr().out

    write_manifest(
        shots,
        "shot: n020\nplate: {still: builtin:astronaut, hold: 2}\noutput: {movies: [], sequence: png8}\n",
        "n020.yaml",
    )
    assert main(["status", str(shots), "--root", str(root)]) == 0
    assert "stale           output settings changed" in capsys.readouterr().out
    assert main(["overnight", str(shots), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert (
        "1 rendered, 0 failed, 1 up to date" in out
        and "| stale: output settings changed | rendered | v002 |" in out
    )
    assert len(list((root / "overnight").glob("*.md"))) == 3

    # a copy of n010 whose shot was not renamed: it and n010 are skipped each night, naming each other,
    # instead of each rendering again because the other's version looked stale
    (shots / "n030.yaml").write_text((shots / "n010.yaml").read_text())
    assert main(["overnight", str(shots), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "0 rendered, 0 failed, 1 up to date, 2 skipped" in out
    assert out.count("'n010' is the shot of") == 2
    assert sorted(p.name for p in (root / "n010").iterdir() if p.name.startswith("v")) == ["v001"]

    assert main(["serve", str(shots), "--cron", "99 * * *"]) == 2
    assert "--cron '99 * * *'" in capsys.readouterr().err
