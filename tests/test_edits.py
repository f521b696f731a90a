"""Attribute edits: directions learned in W+ on chosen layers, ramps, and a generated shot with keys from
seeds and files, rendered full frame through the flow with an edit."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_generator_config, write_manifest

from pipeline.cli import main
from pipeline.errors import ManifestError, PipelineError
from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.extract import aligned_face
from pipeline.manifest import load_shot
from pipeline.media.sequences import read_png_text
from pipeline.shot import path as shot_path
from pipeline.stylegan.checkpoints import load_generator
from pipeline.stylegan.edits import Direction, apply_edit, learn_direction, ramp
from pipeline.stylegan.generator import Generator, images_to_tensor
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylegan.project import ProjectSettings, project_to_w_plus

CFG = tiny_generator_config()


@pytest.fixture(scope="module")
def generator_file(tiny_generator_file) -> Path:
    return tiny_generator_file


def test_ramp_is_zero_outside_eases_in_and_out_and_is_one_between():
    f = np.arange(990, 1041)
    w = ramp(f, 1000, 1030, 6)
    assert np.all(w[(f < 1000) | (f > 1030)] == 0)
    assert np.all(w[(f >= 1006) & (f <= 1024)] == 1)
    rise = w[(f >= 1000) & (f <= 1006)]
    assert rise[0] == 0 and np.all(np.diff(rise) > 0)
    assert np.diff(rise)[0] < np.diff(rise)[3]  # smoothstep: starts slowly
    assert np.array_equal(ramp(f, 1000, 1030, 0), ((f >= 1000) & (f <= 1030)).astype(float))


def test_a_learned_direction_finds_the_attribute_on_its_layers_only(tmp_path):
    rng = np.random.default_rng(0)
    true = np.zeros((6, 16))
    true[2:4] = rng.normal(size=(2, 16))
    true /= np.linalg.norm(true)
    base = rng.normal(size=(80, 6, 16))
    pos, neg = base[:40] + 1.5 * true, base[40:] - 1.5 * true
    d = learn_direction(pos, neg, layers=[2, 3])
    assert d.layers == (2, 3) and d.accuracy > 0.95
    assert np.all(d.vector[[0, 1, 4, 5]] == 0) and np.isclose(np.linalg.norm(d.vector), 1)
    assert float((d.vector * true).sum()) > 0.8
    assert d.score(pos).mean() > 0 > d.score(neg).mean()
    # moving a latent by `amount` along the direction moves the classifier's score by exactly that
    moved = apply_edit(neg[:5], d.vector, 2.5, np.ones(5))
    assert np.allclose(d.score(moved) - d.score(neg[:5]), 2.5)
    d.save(tmp_path / "dir.npz")
    back = Direction.load(tmp_path / "dir.npz")
    assert back.layers == (2, 3) and np.allclose(back.vector, d.vector) and np.isclose(back.bias, d.bias)
    with pytest.raises(PipelineError, match=r"the generator's W\+ is \[10, 64\]"):
        back.for_generator(10, 64, "dir.npz")
    np.save(tmp_path / "plain.npy", np.ones(16))
    assert Direction.load(tmp_path / "plain.npy").for_generator(6, 16).shape == (6, 16)
    with pytest.raises(PipelineError, match=r"layers \[7\]: the generator's W\+ has layers 0-5"):
        learn_direction(pos, neg, layers=[7])


def test_keys_and_edits_that_do_not_fit_the_generator_name_their_manifest_field(generator_file, tmp_path):
    """Validate reads the latent and direction files but not the generator, so a size that does not fit
    it is found when the keys are resolved: the error still names the manifest's line and field."""
    np.save(tmp_path / "key.npy", np.zeros((CFG.num_ws, 32), np.float32))  # the generator's w is 64
    np.save(tmp_path / "dir.npy", np.ones(32, np.float32))
    keys = "  keyframes:\n    - {frame: 1001, seed: 1}\n    - {frame: 1010, latent: key.npy}\n"
    head = f"shot: gen\nframes: 1001-1010\npath:\n  generator: {generator_file}\n"
    m = write_manifest(tmp_path, head + keys)
    with pytest.raises(ManifestError) as e:
        shot_path.resolve_keys(load_shot(m), None, log=lambda s: None)
    assert str(e.value).startswith(
        f"{m}:7 path.keyframes[1].latent: {tmp_path / 'key.npy'}: a latent of shape"
    )
    m = write_manifest(
        tmp_path,
        head + keys.replace("key.npy", "ok.npy") + "  edits:\n    - {direction: dir.npy, amount: 1}\n",
    )
    np.save(tmp_path / "ok.npy", np.zeros((CFG.num_ws, 64), np.float32))
    shot = load_shot(m)
    np.savez(tmp_path / "keys.npz", **shot_path.resolve_keys(shot, None, log=lambda s: None))
    with pytest.raises(ManifestError) as e:
        shot_path.GeneratedFaces(shot, tmp_path / "keys.npz")
    assert str(e.value).startswith(f"{m}:9 path.edits[0].direction: {tmp_path / 'dir.npy'}: the direction is")


def test_direction_learn_command(generator_file, crops, tmp_path, capsys):
    out = tmp_path / "attr.npz"
    args = ["direction", "learn", "--pos", str(crops["a"]), "--neg", str(crops["b"])]
    args += [
        "--generator",
        str(generator_file),
        "--out",
        str(out),
        "--aligned",
        "--steps",
        "5",
        "--layers",
        "1-3",
    ]
    assert main(args) == 0
    assert "direction on layers 1-3" in capsys.readouterr().out
    d = Direction.load(out)
    assert d.layers == (1, 2, 3) and d.vector.shape == (CFG.num_ws, 64)
    assert np.all(d.vector[[0, *range(4, CFG.num_ws)]] == 0)
    assert len(list((tmp_path / "attr_latents" / "pos").glob("*.npz"))) == len(list(crops["a"].glob("*.png")))
    # --max-faces takes that many of each folder, spread over it, and writes the direction again
    out2 = tmp_path / "few.npz"
    assert main([*args[:9], str(out2), *args[10:], "--max-faces", "3"]) == 0
    assert "classifier accuracy" in (printed := capsys.readouterr().out) and "on 6 faces" in printed
    assert len(list((tmp_path / "few_latents" / "neg").glob("*.npz"))) == 3


@pytest.mark.slow
def test_a_generated_shot_with_seed_and_file_keys_and_an_edit(generator_file, tmp_path, prefect_server):
    from pipeline.flows import run_render

    G = Generator(CFG)
    latent = np.random.default_rng(1).normal(size=(CFG.num_ws, 64)).astype(np.float32)
    np.savez(tmp_path / "key.npz", latents=latent)
    direction = np.zeros((CFG.num_ws, 64), np.float32)
    direction[1:3] = np.random.default_rng(2).normal(size=(2, 64))
    Direction(direction / np.linalg.norm(direction), (1, 2), name="test").save(tmp_path / "dir.npz")
    assert G.num_ws == CFG.num_ws
    m = write_manifest(
        tmp_path,
        f"""
shot: gen010
frames: 1001-1016
output: {{sequence: png8, movies: [h264_review], chunk_size: 8}}
path:
  generator: {generator_file}
  size: 64
  keyframes:
    - {{frame: 1001, seed: 1, psi: 0.5}}
    - {{frame: 1008, latent: key.npz}}
    - {{frame: 1016, seed: 3}}
  edits:
    - {{direction: dir.npz, amount: 3.0, frames: 1009-1016, ramp: 3}}
""",
    )
    v = Path(run_render(str(m), root=str(tmp_path / "r"))["path"])
    report = json.loads((v / "report.json").read_text())
    assert report["path"]["keys"] == [
        [1001, "seed 1, psi 0.5"],
        [1008, "file key.npz, psi 1"],
        [1016, "seed 3, psi 1"],
    ]
    assert "stylegan latent path with attribute edits" in report["metadata"]["ai_altered_stages"]
    assert report["metadata"]["models"] == f"generator:{generator_file}"
    frames = sorted((v / "comp").glob("*.png"))
    assert len(frames) == 16 and cv2.imread(str(frames[0])).shape == (64, 64, 3)
    assert read_png_text(frames[0])["synthetic_imagery"] == "true"
    # the edit changes the frames inside its range only; the key from the file is drawn at its frame
    shot = load_shot(m)
    faces = shot_path.GeneratedFaces(shot, report["path"]["path"])
    assert np.allclose(faces.latents([1008]), latent, atol=1e-5)
    plain = faces.faces(list(range(1001, 1017)), 64, edited=False)
    written = [cv2.imread(str(f))[..., ::-1].astype(np.float32) / 255 for f in frames]
    diff = [float(np.abs(w - p).mean()) for w, p in zip(written, plain, strict=True)]
    assert max(diff[:9]) < 0.01 and min(diff[10:15]) > 0.01
    assert (v / "path_contact_sheet.png").is_file() and "## Latent path" in (v / "report.md").read_text()


def test_a_portrait_key_is_found_aligned_and_projected(generator_file, woman_clip, tmp_path):
    from pipeline.media.decode import open_plate
    from pipeline.media.sequences import write_frame

    frame = next(open_plate("movie", str(woman_clip)).read(0, 1))
    write_frame(tmp_path / "portrait.png", frame, "png8", {})
    m = write_manifest(
        tmp_path,
        f"""
shot: morph010
frames: 1-10
path:
  generator: {generator_file}
  steps: 3
  keyframes:
    - {{frame: 10, seed: 1}}
    - {{frame: 1, image: portrait.png, psi: 0.5}}
""",
    )
    keys = shot_path.resolve_keys(load_shot(m), None, log=lambda _: None)
    assert list(keys["frames"]) == [1, 10]
    assert list(keys["sources"]) == ["image portrait.png, psi 0.5", "seed 1, psi 1"]
    assert keys["latents"].shape == (2, CFG.num_ws, 64) and np.isfinite(keys["latents"]).all()

    # The portrait's key is that portrait's projection: its face aligned and projected here the same way
    # (3 steps, the generator's fixed noise), then moved halfway (psi 0.5) toward the average w.
    G, _ = load_generator(generator_file)
    face = images_to_tensor([aligned_face(tmp_path / "portrait.png", CFG.resolution, False, FaceAnalyzer())])
    lpips = load_lpips("vgg")
    settings = ProjectSettings(steps=3, optimize_noise=False, patience=20)
    projected = project_to_w_plus(G, face, lpips, settings, init_noise=G.noise_maps()).latents[0]
    w_avg = G.w_avg.numpy()
    off = np.abs(keys["latents"][0] - (w_avg + 0.5 * (projected.numpy() - w_avg))).max()
    assert off < 1e-5, f"the key is {off:.3g} away from the portrait's projection truncated by psi 0.5"
    # and not the average: undone, the truncation gives a latent that draws the portrait's face better
    untruncated = torch.from_numpy(w_avg + (keys["latents"][0] - w_avg) / 0.5)
    with torch.no_grad():
        fit = lpips(G.synthesis(untruncated[None], "const"), face).item()
        start = lpips(G.synthesis(G.w_avg.repeat(1, CFG.num_ws, 1), "const"), face).item()
    assert np.abs(keys["latents"][0] - w_avg).max() > 0.01 and fit < start, (fit, start)
