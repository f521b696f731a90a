"""W+ projection on a small random generator: the loop recovers drawn faces, W+ fits better than W,
warm starts need fewer steps, and the schedule and early stop behave."""

from __future__ import annotations

import copy
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.media.sequences import read_png_text
from pipeline.stylegan.checkpoints import save_generator
from pipeline.stylegan.generator import Generator, GeneratorConfig, default_channels
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylegan.project import (
    ProjectSettings,
    learning_rate,
    noise_regularisation,
    project_sequence,
    project_to_w_plus,
    w_stats,
)

CFG = GeneratorConfig(
    resolution=32, z_dim=64, w_dim=64, mapping_layers=2, channels=default_channels(32, 512, 64)
)


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(3)
    G = Generator(CFG).eval()
    G.compute_w_avg(2000)
    return G


@pytest.fixture(scope="module")
def lpips():
    return load_lpips("vgg")


def drawn(G: Generator, n: int, seed: int, spread: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces drawn from known W+ latents (each layer's w moved on its own) with the fixed noise."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ws = G.map(torch.randn(n, 64, generator=g), psi=0.7)
        ws = ws + spread * torch.randn(ws.shape, generator=g) * ws.std()
        return ws, G.synthesis(ws, "const")


def test_projection_recovers_drawn_faces_and_w_plus_beats_w(G, lpips):
    _, target = drawn(G, 2, seed=1)
    settings = ProjectSettings(steps=120, lr=0.1)
    wplus = project_to_w_plus(G, target, lpips, settings)
    w = project_to_w_plus(G, target, lpips, ProjectSettings(steps=120, lr=0.1, w_plus=False))
    assert wplus.latents.shape == (2, CFG.num_ws, 64) and wplus.losses.shape == (120, 2)
    assert len(wplus.noise) == len(G.noise_shapes()) and wplus.noise[0].shape[0] == 2
    start = wplus.losses[0]
    assert (wplus.lpips < 0.35 * start).all(), (start, wplus.lpips)
    assert wplus.lpips.mean() < w.lpips.mean()
    assert torch.equal(w.latents[:, 0], w.latents[:, -1])  # W: one w shared by every layer
    with torch.no_grad():  # the returned latents and noise reproduce the reported distance
        again = lpips(G.synthesis(wplus.latents, wplus.noise), target).numpy()
    assert np.allclose(again, wplus.lpips, atol=1e-5)


def test_faces_in_a_batch_are_projected_independently(G, lpips):
    _, target = drawn(G, 2, seed=2)
    s = ProjectSettings(steps=10, latent_noise=0.0, optimize_noise=False)
    both = project_to_w_plus(G, target, lpips, s)
    alone = project_to_w_plus(G, target[:1], lpips, s)
    assert torch.allclose(both.latents[:1], alone.latents, atol=1e-3)  # float summation order only


def test_warm_start_from_the_previous_frame_needs_fewer_steps(G, lpips):
    G = copy.deepcopy(G)  # with noise that shows (a fresh generator's noise strengths are all 0)
    for layer in G.synthesis.layers():
        layer.noise_strength.data.fill_(0.2)
    ws, _ = drawn(G, 1, seed=4)
    with torch.no_grad():  # a "shot": three frames along a small move in W+
        frames = torch.cat([G.synthesis(ws + 0.05 * k * ws.std(), "const") for k in range(3)])
    first = ProjectSettings(steps=20)
    following = ProjectSettings(steps=4, lr=0.02, lr_rampup=0.0, latent_noise=0.0)
    results = project_sequence(G, frames, lpips, first, following)
    assert [r.steps for r in results] == [20, 4, 4]
    w_avg, _ = w_stats(G)

    def loss(latents: torch.Tensor, noise: list[torch.Tensor], target: torch.Tensor) -> float:
        """The projection's per-face loss at a point: LPIPS (at 32 px, the loss size) + weighted MSE."""
        with torch.no_grad():
            image = G.synthesis(latents, noise)
            return (lpips(image, target) + following.mse_weight * (image - target).square().mean()).item()

    # With no ramp-up and no latent noise, step 0's loss is that of the starting point: each frame must
    # start where the previous frame ended (its latents and its noise), far better than the average w.
    for i in (1, 2):
        prev, target = results[i - 1], frames[i : i + 1]
        warm = loss(prev.latents, prev.noise, target)
        cold = loss(w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1), prev.noise, target)
        assert results[i].losses[0, 0] == pytest.approx(warm, abs=1e-5), (i, warm, cold)
        assert warm < 0.7 * cold, (i, warm, cold)


def test_schedule_and_early_stop():
    s = ProjectSettings(steps=1000)
    lrs = [learning_rate(i, s) for i in range(1000)]
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(0.1)
    assert lrs[50] == pytest.approx(0.1) and lrs[700] == pytest.approx(0.1)  # flat between the ramps
    assert lrs[999] < 0.001 and all(a >= b for a, b in zip(lrs[750:], lrs[751:], strict=False))
    white = [torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))]
    smooth = [torch.ones(1, 1, 32, 32)]
    assert noise_regularisation(white).item() < 0.01 and noise_regularisation(smooth).item() > 1


def test_patience_stops_a_projection_that_no_longer_improves(G, lpips):
    _, target = drawn(G, 1, seed=5)
    s = ProjectSettings(steps=400, lr=0.0, latent_noise=0.0, noise_ramp=0.0, optimize_noise=False, patience=5)
    result = project_to_w_plus(G, target, lpips, s)  # a zero learning rate never improves
    assert result.steps == 6


def test_images_must_match_the_generator(G, lpips):
    with pytest.raises(ValueError, match="the generator draws 3x32"):
        project_to_w_plus(G, torch.zeros(1, 3, 64, 64), lpips)


def test_project_command_for_stills(G, lpips, crops, tmp_path, capsys):
    save_generator(tmp_path / "g.pt", G)
    faces = tmp_path / "faces"
    faces.mkdir()
    for p in sorted(crops["a"].glob("*.png"))[:2]:
        shutil.copy(p, faces / p.name)
    out = tmp_path / "out"
    args = ["project", str(faces), "--generator", str(tmp_path / "g.pt"), "--out", str(out), "--aligned"]
    assert main([*args, "--steps", "15"]) == 0
    assert "2 projected (0 already there)" in capsys.readouterr().out
    for p in faces.glob("*.png"):
        data = np.load(out / f"{p.stem}.npz")
        assert data["latents"].shape == (CFG.num_ws, 64) and data["losses"].shape == (15,)
        record = json.loads(str(data["record"]))
        assert record["steps"] == 15
        # the reported LPIPS is that of the generator's image from the saved latents and noise against
        # the crop (read here: RGB in [-1, 1], area-reduced to the generator's 32 px)
        rgb = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        face = cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA)
        target = torch.from_numpy(face).permute(2, 0, 1)[None] * 2 - 1
        noise = [torch.from_numpy(data[f"noise{k}"])[None, None] for k in range(len(G.noise_shapes()))]
        with torch.no_grad():
            again = lpips(G.synthesis(torch.from_numpy(data["latents"])[None], noise), target).item()
        assert record["lpips_vgg"] == pytest.approx(again, abs=1e-5)
        recon = out / f"{p.stem}_reconstruction.png"
        assert read_png_text(recon)["synthetic_imagery"] == "true"
        side = cv2.imread(str(out / f"{p.stem}_side_by_side.png"))
        assert side.shape == (32, 64, 3)
    assert main([*args, "--steps", "15"]) == 0  # a re-run keeps what is there
    assert "0 projected (2 already there)" in capsys.readouterr().out

    cv2.imwrite(str(tmp_path / "wide.png"), np.zeros((20, 30, 3), np.uint8))
    assert (
        main(
            [
                "project",
                str(tmp_path / "wide.png"),
                "--generator",
                str(tmp_path / "g.pt"),
                "--out",
                str(out),
                "--aligned",
            ]
        )
        == 2
    )
    assert "wide.png: an aligned crop must be square, this is 30x20" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((200, 200, 3), 128, np.uint8))
    assert (
        main(
            ["project", str(tmp_path / "blank.png"), "--generator", str(tmp_path / "g.pt"), "--out", str(out)]
        )
        == 2
    )
    assert "blank.png: no face found" in capsys.readouterr().err
    assert main(["project", str(faces), "--generator", "unregistered", "--out", str(out)]) == 2
    assert "unregistered: neither a registered generator" in capsys.readouterr().err
