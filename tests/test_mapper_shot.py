"""Edits by attribute in shots: `path.mapper` and `path.edits[].attribute` (L2L's learned mapper beside the
linear directions), checked at validate, applied per frame with their ramps, part of the output's key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_mapper, tiny_recognisers, write_manifest

from pipeline.cli import main
from pipeline.errors import ManifestError
from pipeline.manifest import load_shot
from pipeline.shot import path as shot_path
from pipeline.shot.composite import composite_key
from pipeline.stylegan.checkpoints import load_generator
from pipeline.stylegan.mapper import edit_latents

NAMES = ["mouth_open", "yaw"]


def manifest(tmp_path: Path, generator_file: Path, edits: str, mapper: str = "m") -> Path:
    return write_manifest(
        tmp_path,
        f"""
shot: gen011
frames: 1001-1012
output: {{sequence: png8, movies: [], chunk_size: 6}}
path:
  generator: {generator_file}
  size: 64
  mapper: {mapper}
  keyframes:
    - {{frame: 1001, seed: 1}}
    - {{frame: 1012, seed: 2}}
  edits:
{edits}""",
    )


def test_attribute_edits_are_ramped_combined_and_keyed_by_the_mapper_file(tiny_generator_file, tmp_path):
    tiny_mapper(tiny_generator_file, tmp_path / "m", seed=0)
    edits = (
        "    - {attribute: mouth_open, amount: 0.2, frames: 1005-1012, ramp: 2}\n"
        "    - {attribute: yaw, amount: -15, frames: 1009-1012}\n"
    )
    m = manifest(tmp_path, tiny_generator_file, edits)
    shot = load_shot(m)
    keys = tmp_path / "keys.npz"
    np.savez(keys, **shot_path.resolve_keys(shot, None, log=lambda s: None))
    faces = shot_path.GeneratedFaces(shot, keys)
    frames = list(range(1001, 1013))
    change = faces.attribute_changes(frames)
    assert np.allclose(change[:, 0], [0, 0, 0, 0, 0, 0.1, 0.2, 0.2, 0.2, 0.2, 0.1, 0])  # eased in and out
    assert np.allclose(change[:, 1], [0] * 8 + [-15] * 4)
    plain, edited = faces.latents(frames, edited=False), faces.latents(frames)
    assert np.array_equal(plain[:4], edited[:4])  # an edit by zero is no edit
    assert np.abs(edited[5:11] - plain[5:11]).max() > 1e-3
    # the frames with both edits get the mapper's edit of both at once, not one after the other
    both = edit_latents(faces.mapper, torch.from_numpy(plain[8:10]), torch.tensor([0.2, -15.0])).numpy()
    assert np.allclose(edited[8:10], both, atol=1e-5)

    # the output's key follows the mapper's weights, not only its name; other settings leave it alone
    before = composite_key(shot, {}).key
    assert composite_key(load_shot(m), {}).key == before
    tiny_mapper(tiny_generator_file, tmp_path / "m", seed=1)
    assert composite_key(load_shot(m), {}).key != before
    assert "mapper:m" in shot_path.PATH.models(shot)


def test_attribute_edits_are_refused_at_validate_naming_the_field(tiny_generator_file, tmp_path, capsys):
    tiny_mapper(tiny_generator_file, tmp_path / "m", seed=0)
    m = manifest(tmp_path, tiny_generator_file, "    - {attribute: smile_width, amount: 0.2}\n")
    with pytest.raises(ManifestError) as e:
        load_shot(m)
    assert str(e.value) == (
        f"{m}:13 path.edits[0].attribute: 'smile_width' is not an attribute of mapper m (mouth_open, yaw)"
    )
    assert main(["validate", str(m)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"{m}:13 path.edits[0].attribute")

    m = manifest(tmp_path, tiny_generator_file, "    - {attribute: yaw, amount: 5}\n", mapper="nowhere")
    with pytest.raises(ManifestError, match=r":8 path.mapper: .*nowhere"):
        load_shot(m)
    m = manifest(tmp_path, tiny_generator_file, "    - {attribute: yaw, amount: 5, direction: d.npz}\n")
    with pytest.raises(ManifestError, match="give exactly one of direction or attribute"):
        load_shot(m)
    text = m.read_text().replace("  mapper: m\n", "").replace(", direction: d.npz", "")
    m.write_text(text)
    with pytest.raises(
        ManifestError, match=r"path.edits\[0\].attribute: an edit by attribute needs path.mapper"
    ):
        load_shot(m)


def test_a_mapper_for_another_generator_is_refused_when_the_path_draws(
    tiny_generator_file, tmp_path, tmp_path_factory
):
    from conftest import tiny_generator_config

    from pipeline.stylegan.checkpoints import save_generator
    from pipeline.stylegan.generator import Generator

    torch.manual_seed(5)
    other = tmp_path_factory.mktemp("other") / "generator.pt"
    save_generator(other, Generator(tiny_generator_config()))
    tiny_mapper(tiny_generator_file, tmp_path / "m", seed=0)
    m = manifest(tmp_path, tiny_generator_file, "    - {attribute: yaw, amount: 5}\n")
    shot = load_shot(m)
    keys = tmp_path / "keys.npz"
    np.savez(keys, **shot_path.resolve_keys(shot, None, log=lambda s: None))
    tiny_mapper(other, tmp_path / "m", seed=0)  # the file changes after the manifest was read
    for refuse in (lambda: load_shot(m), lambda: shot_path.GeneratedFaces(shot, keys)):
        with pytest.raises(ManifestError) as e:
            refuse()
        assert str(e.value).startswith(f"{m}:8 path.mapper: ") and "trained for the generator" in str(e.value)
        assert json.dumps(str(e.value)).count("\\n") == 0


def test_vfx_edit_edits_a_latent_and_an_image_and_draws_the_attribute_sheet(
    tiny_generator_file, crops, tmp_path, capsys
):
    import cv2

    from pipeline.commands.stills import read_still_latent
    from pipeline.media.sequences import read_png_text

    tiny_mapper(tiny_generator_file, tmp_path / "m", seed=0)
    G, _ = load_generator(tiny_generator_file)
    w = G.map(torch.randn(1, G.cfg.z_dim, generator=torch.Generator().manual_seed(4)))[0].detach().numpy()
    np.savez(tmp_path / "face.npz", latents=w)
    base = ["edit", "--mapper", str(tmp_path / "m"), "--generator", str(tiny_generator_file)]
    out = tmp_path / "out"
    assert (
        main(
            [
                *base,
                str(tmp_path / "face.npz"),
                "--set",
                "yaw=+15",
                "--set",
                "mouth_open=-0.1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "yaw +15, mouth_open -0.1" in capsys.readouterr().out
    edited = read_still_latent(out / "face_edited.npz")[0]
    from pipeline.stylegan.mapper import load_mapper

    M, _ = load_mapper(tmp_path / "m", tiny_generator_file, G)
    want = edit_latents(M, torch.from_numpy(w)[None], {"yaw": 15.0, "mouth_open": -0.1})[0].numpy()
    assert np.allclose(edited, want, atol=1e-6) and np.abs(edited - w).max() > 1e-3
    sheet = cv2.imread(str(out / "face_attributes.png"))
    assert sheet.shape[0] > 4 * 32 and sheet.shape[1] > 5 * 32  # 2 attributes x 2 faces, 5 amounts
    assert read_png_text(out / "face_edited.png")["synthetic_imagery"] == "true"
    assert "mapper" in read_png_text(out / "face_edited.png")["models"]

    # an image is projected first (kept under projected/, so the next edit of it reuses the projection)
    image = sorted(crops["a"].glob("*.png"))[0]
    assert main([*base, str(image), "--aligned", "--steps", "3", "--set", "yaw=-10", "--out", str(out)]) == 0
    assert (out / "projected" / f"{image.stem}.npz").is_file() and (
        out / f"{image.stem}_edited.png"
    ).is_file()

    # an attribute the mapper does not edit, or a change that is not NAME=AMOUNT: one line, exit 2
    capsys.readouterr()
    assert main([*base, str(tmp_path / "face.npz"), "--set", "smile_width=1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("unknown attribute 'smile_width': this mapper edits mouth_open, yaw")
    with pytest.raises(SystemExit) as e:
        main([*base, str(tmp_path / "face.npz"), "--set", "yaw", "--out", str(out)])
    assert e.value.code == 2


def test_the_report_measures_each_edit_against_the_frames_without_it(tiny_generator_file, tmp_path):
    tiny_mapper(tiny_generator_file, tmp_path / "m", seed=0)
    tiny_recognisers(tiny_generator_file, tmp_path / "r", seed=0)
    edits = (
        "    - {attribute: mouth_open, amount: 0.2, frames: 1005-1012, ramp: 2}\n"
        "    - {attribute: yaw, amount: -15, frames: 1009-1012}\n"
    )
    m = manifest(tmp_path, tiny_generator_file, edits)
    m.write_text(m.read_text().replace("  mapper: m\n", "  mapper: m\n  recognisers: r\n"))
    shot = load_shot(m)
    keys = tmp_path / "keys.npz"
    np.savez(keys, **shot_path.resolve_keys(shot, None, log=lambda s: None))
    faces = shot_path.GeneratedFaces(shot, keys)
    measured = shot_path.measure_edits(shot, faces, list(range(1003, 1011)))  # a part of the shot
    assert [e["edit"] for e in measured] == ["mouth_open", "yaw"]
    mouth, yaw = measured
    # the frames each edit touches among those rendered, with its ramp as the asked change
    assert [r["frame"] for r in mouth["frames"]] == [1006, 1007, 1008, 1009, 1010]  # 1005: ramp at 0
    assert [r["asked"] for r in mouth["frames"]] == pytest.approx([0.1, 0.2, 0.2, 0.2, 0.2])
    assert [r["frame"] for r in yaw["frames"]] == [1009, 1010] and yaw["asked"] == -15
    # the recognisers read the change of the edited attribute, against the same frame without this edit
    from pipeline.stylegan.recognise import load_recognisers

    R, _ = load_recognisers(tmp_path / "r")
    with torch.no_grad():
        want = R(faces.images([1009, 1010])) - R(faces.images([1009, 1010], without=1))
    assert [r["recognised"] for r in yaw["frames"]] == pytest.approx(want[:, 0].tolist(), rel=1e-4)
    assert all(r["recognised"] != 0 for r in mouth["frames"])
    # the tiny generator draws no face dlib finds: no landmark or identity figure is made up
    assert mouth["frames_found"] == 0 and mouth["landmarks"] is None and mouth["identity"] is None
    assert all(r["identity"] is None and r["measures"] is None for r in mouth["frames"])
    lines = "\n".join(
        shot_path.path_markdown(
            {
                **shot_path.build_keys(
                    shot, tmp_path, shot_path.path_key(shot, None), None, log=lambda s: None
                )[1],
                "edits_measured": measured,
            }
        )
    )
    assert "### Edits measured" in lines and "| yaw | 2 (0) | -15 |" in lines

    # recognisers of another generator's faces are refused at validate, naming the field
    from pipeline.stylegan.recognise import AttributeRecogniser, RecogniserConfig, save_recognisers

    other = AttributeRecogniser(RecogniserConfig(faces.G.cfg.resolution, ("yaw",), ("measure",)))
    save_recognisers(tmp_path / "r" / "recognisers.pt", other, {"generator_sha256": "0" * 64})
    with pytest.raises(ManifestError, match=r":9 path.recognisers: trained on the faces of the generator"):
        load_shot(m)
