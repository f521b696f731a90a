"""The W+ encoder (pSp's pyramid, e4e's base-plus-offsets): its shapes, its pairing with one generator by
checksum, that a short training helps (lower loss on unseen faces, a better start for projection than the
average w), an exact resume, and `vfx train encoder` / `vfx models` on the command line."""

from __future__ import annotations

import functools
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_generator_config

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.models import ModelError, sha256_file
from pipeline.stylegan import encoder_train
from pipeline.stylegan.checkpoints import CheckpointError, load_generator, save_generator
from pipeline.stylegan.encoder import (
    Encoder,
    EncoderConfig,
    check_fits,
    load_encoder,
    save_encoder,
    style_groups,
)
from pipeline.stylegan.encoder_train import (
    EncoderSettings,
    annealed_lr,
    encoder_losses,
    new_state,
    run_progress,
    train_encoder,
    weighted,
)
from pipeline.stylegan.generator import Generator, GeneratorConfig
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylegan.project import polish_settings, project_to_w_plus, w_stats
from pipeline.stylegan.registry import encoder_path, registered_encoders

# The tiny generator's training in these tests: the shipped network and losses, a few steps of 4 faces.
# Adam at 3e-4 (1e-3 diverges with these widths) for 20 steps: on four seeds it started projection at
# 0.70-0.79 of the average w's loss, better on 7 or 8 faces of 8 (after 12 steps: 0.74-0.92, 4-8 of 8).
QUICK = EncoderSettings(batch=4, lr=3e-4, preview_faces=2, preview_polish_steps=2)
STEPS = 20


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a 2-core machine busy with other work, two threads that wait for each other
    at every small convolution made these steps ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def G(tiny_generator_file) -> Generator:
    G, _ = load_generator(tiny_generator_file)
    return G.requires_grad_(False)


@pytest.fixture(scope="module")
def lpips():
    return load_lpips("vgg")


@pytest.fixture(scope="module")
def other_generator_file(tmp_path_factory):
    """A second tiny generator of the same sizes (another seed): another file, another checksum."""
    torch.manual_seed(6)
    G = Generator(tiny_generator_config()).eval()
    G.compute_w_avg(500)
    path = tmp_path_factory.mktemp("other") / "other.pt"
    save_generator(path, G)
    return path


@pytest.fixture(scope="module")
def trained(tiny_generator_file, tmp_path_factory):
    """A folder after QUICK's steps on the tiny generator's own faces (no real crops)."""
    out = tmp_path_factory.mktemp("enc") / "enc"
    state = train_encoder(tiny_generator_file, [], out, QUICK, steps=STEPS)
    assert state.step == STEPS
    return out


def fresh_faces(G: Generator, n: int = 8, seed: int = 99) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces none of the training drew: their W+ and the generator's images of them (fixed noise)."""
    z = torch.randn(n, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ws = G.map(z, psi=0.7)
        return ws, G.synthesis(ws, "const")


# ---------------------------------------------------------------------------------------------------
# The network and its file


def test_shapes_groups_and_an_untrained_encoder_gives_the_average_w(G):
    torch.manual_seed(0)  # the heads' random start; the suite's earlier tests leave the generator elsewhere
    enc = Encoder.for_generator(G)
    assert (enc.cfg.resolution, enc.cfg.num_ws, enc.cfg.w_dim, enc.cfg.input_size) == (32, 8, 64, 32)
    assert torch.equal(enc.w_avg, G.w_avg)
    _, images = fresh_faces(G, 3)
    ws, deltas = enc.encode(images)
    assert ws.shape == (3, 8, 64) and deltas.shape == (3, 7, 64)
    assert torch.equal(enc(images), ws)
    # e4e's form: layer 0 is the base, each further layer the base plus its offset
    assert torch.allclose(ws[:, 1:] - ws[:, :1], deltas, atol=1e-5)
    # the last layers start near zero: an untrained encoder's W+ is within a few % of w's spread
    # from the average w (it draws about the average face; 0.4-0.9% on eight seeds)
    _, spread = w_stats(G)
    assert ((ws - G.w_avg).norm(dim=-1) < 0.03 * spread).all()
    with pytest.raises(ValueError, match=r"the encoder takes \[N, 3, 32, 32\]"):
        enc(torch.zeros(1, 3, 64, 64))

    assert style_groups(18) == (3, 4, 11) and style_groups(10) == (3, 3, 4) and style_groups(8) == (3, 2, 3)
    big = EncoderConfig(resolution=1024, num_ws=18, w_dim=16)  # read at 256 px: the same network
    assert big.input_size == 256 and EncoderConfig.from_dict(big.to_dict()) == big
    with torch.no_grad():
        assert Encoder(big)(torch.zeros(1, 3, 1024, 1024)).shape == (1, 18, 16)
    with pytest.raises(ValueError, match="9 W\\+ layers for a 64 px generator"):
        EncoderConfig(resolution=64, num_ws=9, w_dim=8)


def test_an_encoder_is_refused_for_another_generator(G, tiny_generator_file, other_generator_file, tmp_path):
    enc = Encoder.for_generator(G)
    (tmp_path / "enc").mkdir()
    path = tmp_path / "enc" / "encoder.pt"
    mine = sha256_file(tiny_generator_file)
    save_encoder(path, enc, mine, {"steps": 0})
    loaded, meta = load_encoder(tmp_path / "enc", tiny_generator_file, G)  # a folder means its encoder.pt
    assert meta == {"steps": 0, "generator_sha256": mine}
    for (name, a), b in zip(enc.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    theirs = sha256_file(other_generator_file)
    with pytest.raises(ModelError) as refused:
        load_encoder(path, other_generator_file)
    message = str(refused.value)
    assert message.startswith(f"{path}: trained for the generator with sha256 {mine[:16]}..., not ")
    assert f"{other_generator_file} (sha256 {theirs[:16]}...)" in message
    assert "vfx train encoder" in message and "\n" not in message
    load_encoder(path)  # without a generator there is nothing to compare

    other_size = Generator(GeneratorConfig(resolution=64, z_dim=8, w_dim=64, mapping_layers=1))
    with pytest.raises(ModelError, match="an encoder for 32 px generators with W\\+ \\[N, 8, 64\\]"):
        check_fits(loaded, other_size, path)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="junk.pt: not a readable encoder file"):
        load_encoder(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="g.pt: not an encoder file"):
        load_encoder(tiny_generator_file)
    with pytest.raises(ModelError, match="nothing.pt: encoder file not found"):
        load_encoder(tmp_path / "nothing.pt")


# ---------------------------------------------------------------------------------------------------
# Training


def assert_labelled_grid(preview: np.ndarray, height: int, width: int) -> None:
    """A preview of `height` x `width` faces with its row names on the left and its step below."""
    assert preview.shape[0] == height + 18 and width + 30 < preview.shape[1] < width + 120, preview.shape
    band, caption = preview[:height, : preview.shape[1] - width], preview[height:]
    assert (band < 128).any() and (caption < 128).any()  # dark text on white


def test_a_short_training_lowers_the_loss_on_unseen_faces(G, lpips, trained, tiny_generator_file):
    untrained = new_state(G, "", QUICK).encoder.eval()  # the same seed: the trained encoder's start
    enc, meta = load_encoder(trained, tiny_generator_file, G)
    assert meta["steps"] == STEPS and meta["generator_sha256"] == sha256_file(tiny_generator_file)
    ws, faces = fresh_faces(G)
    with torch.no_grad():
        before = encoder_losses(G, untrained, lpips, faces, ws)
        after = encoder_losses(G, enc, lpips, faces, ws)
    total_before, total_after = weighted(before, QUICK).item(), weighted(after, QUICK).item()
    assert total_after < 0.85 * total_before, (before, after)
    assert after["lpips"].mean() < 0.9 * before["lpips"].mean()
    assert after["mse"].mean() < 0.7 * before["mse"].mean()
    for name in ("encoder.pt", "training.pt", "preview.png", "loss.png"):
        assert (trained / name).is_file(), name
    # rows face, encoded, polished (named in a band on the left), a column per face, the step below
    assert_labelled_grid(cv2.imread(str(trained / "preview.png")), 3 * 32, QUICK.preview_faces * 32)


def test_the_encoders_w_plus_starts_projection_better_than_the_average_w(G, lpips, trained):
    """What the encoder is for: with no latent noise (polish_settings), step 0's loss is that of the
    start, on faces the training never drew."""
    enc, _ = load_encoder(trained)
    _, faces = fresh_faces(G)
    noise = [m.expand(len(faces), -1, -1, -1) for m in G.noise_maps()]
    with torch.no_grad():
        start = enc(faces)
    encoded = project_to_w_plus(G, faces, lpips, polish_settings(1), init=start, init_noise=noise).losses[0]
    average = project_to_w_plus(G, faces, lpips, polish_settings(1), init_noise=noise).losses[0]
    assert encoded.mean() < 0.85 * average.mean(), (encoded, average)
    assert (encoded < average).sum() >= 6, (encoded, average)


def test_the_weights_scale_their_losses_and_unknown_ones_are_refused():
    terms = {
        k: torch.tensor([v]) for k, v in {"latent": 0.5, "lpips": 0.1, "mse": 0.02, "delta": 2.0}.items()
    }
    s = EncoderSettings()
    assert weighted(terms, s).item() == pytest.approx(0.5 + 0.1 + 0.02 + 0.05 * 2.0)
    lighter = s.with_weights({"latent": 0.1, "delta": 0})
    assert (lighter.latent_weight, lighter.delta_weight, lighter.lpips_weight) == (0.1, 0.0, 1.0)
    assert weighted(terms, lighter).item() == pytest.approx(0.05 + 0.1 + 0.02)
    for bad in ({"identity": 1.0}, {"latent": -1.0}, {"mse": float("inf")}):
        with pytest.raises(PipelineError, match="--weights"):
            s.with_weights(bad)


def test_the_rate_anneals_over_the_last_share_of_a_run_of_steps_or_minutes():
    s = EncoderSettings(lr=1e-4, anneal=0.25, anneal_floor=0.1)
    assert run_progress(300, 1000, 5.0, None) == 0.3
    assert run_progress(300, None, 30.0, 1.0) == 0.5
    assert run_progress(900, 1000, 30.0, 1.0) == 0.9  # the further of the two
    assert run_progress(2000, 1000, 0.0, None) == 1.0
    assert annealed_lr(s, 0.0) == annealed_lr(s, 0.75) == 1e-4
    assert annealed_lr(s, 0.875) == pytest.approx(0.55e-4)
    assert annealed_lr(s, 1.0) == pytest.approx(1e-5)
    assert annealed_lr(replace(s, anneal=0.0), 1.0) == 1e-4


def test_training_resumes_exactly(G, crops, tiny_generator_file, other_generator_file, tmp_path):
    folders = [crops["a"]]  # real crops every second step: their draws are in the resumed state too
    # narrow widths: exactness does not need the shipped network, and its state is 3x the encoder's size
    # the rate anneals over the last 3/4 of the steps: a run killed halfway and resumed with the same
    # --steps goes on along the same schedule
    s = EncoderSettings(
        batch=2, lr=3e-4, preview_faces=2, preview_polish_steps=1, channels=(8, 16, 32, 32), anneal=0.75
    )
    straight = train_encoder(tiny_generator_file, folders, tmp_path / "straight", s, steps=4)

    class Killed(Exception):
        pass

    def kill_after_two(record: dict) -> None:
        if record["step"] == 2:
            raise Killed

    with pytest.raises(Killed):
        train_encoder(tiny_generator_file, folders, tmp_path / "split", s, steps=4, on_step=kill_after_two)
    resumed = train_encoder(tiny_generator_file, folders, tmp_path / "split", s, steps=4, resume=True)
    assert resumed.step == straight.step == 4
    assert "real_lpips" in resumed.history[1] and "real_lpips" not in resumed.history[2]
    rates = [h["lr"] for h in straight.history]
    assert rates[0] == rates[1] == s.lr > rates[2] > rates[3] > s.anneal_floor * s.lr, rates

    def losses(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert losses(resumed.history) == losses(straight.history)
    for (name, a), b in zip(
        straight.encoder.state_dict().items(), resumed.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    on_disk, meta = load_encoder(tmp_path / "split", tiny_generator_file)
    assert meta["steps"] == 4 and meta["faces"] == [str(crops["a"])] and on_disk.cfg.channels == s.channels
    for a, b in zip(on_disk.state_dict().values(), resumed.encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    with pytest.raises(CheckpointError, match="holds an encoder already; use --resume"):
        train_encoder(tiny_generator_file, folders, tmp_path / "split", s, steps=6)
    with pytest.raises(
        ModelError, match=f"training.pt: trained for the generator .* not {other_generator_file}"
    ):
        train_encoder(other_generator_file, folders, tmp_path / "split", s, steps=6, resume=True)
    with pytest.raises(CheckpointError, match="no encoder training state to resume"):
        train_encoder(tiny_generator_file, folders, tmp_path / "new", s, steps=6, resume=True)
    (tmp_path / "gan").mkdir()
    save_generator(tmp_path / "gan" / "generator.pt", G)
    with pytest.raises(CheckpointError, match="gan: holds a generator; give the encoder a folder of its own"):
        train_encoder(tiny_generator_file, folders, tmp_path / "gan", s, steps=1)


# ---------------------------------------------------------------------------------------------------
# The command line


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_arguments_and_inputs_end_in_one_line(
    tiny_generator_file, other_generator_file, trained, tmp_path, capsys
):
    base = ["train", "encoder", "--generator", str(tiny_generator_file), "--out", str(tmp_path / "e")]
    cases = [
        (base, "give one of --steps or --minutes"),
        ([*base, "--steps", "0"], "--steps"),
        ([*base, "--steps", "5", "--batch", "0"], "--batch"),
        ([*base, "--steps", "5", "--lr", "nan"], "--lr"),
        ([*base, "--steps", "5", "--anneal", "1.5"], "--anneal: 1.5 is out of range"),
        (
            [*base, "--steps", "5", "--weights", "identity=1"],
            "--weights: no loss 'identity' (the losses: latent",
        ),
        ([*base, "--steps", "5", "--weights", "latent=-1"], "--weights"),
        ([*base, "--steps", "5", "--faces", str(tmp_path / "none")], "none: folder of face crops not found"),
        ([*base[:4], "--out", str(trained), "--steps", "5"], f"{trained}: holds an encoder already"),
        (
            [
                *base[:2],
                "--generator",
                str(other_generator_file),
                "--out",
                str(trained),
                "--steps",
                "5",
                "--resume",
            ],
            f"not {other_generator_file}",
        ),
        (
            [*base[:2], "--generator", "nope", *base[4:], "--steps", "5"],
            "nope: neither a registered generator",
        ),
    ]
    for argv, expected in cases:
        code, _, err = run(argv, capsys)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert "Traceback" not in err
    assert not (tmp_path / "e").exists()


def test_train_encoder_command_runs_as_a_prefect_flow_and_registers(
    crops, tiny_generator_file, tmp_path, monkeypatch, prefect_server, capsys
):
    monkeypatch.setenv("VFX_MODELS", str(tmp_path / "models"))
    # the preview's 50 polish steps of six faces are most of a two-step run on a busy CPU
    monkeypatch.setattr(
        encoder_train, "EncoderSettings", functools.partial(EncoderSettings, preview_polish_steps=2)
    )
    out = tmp_path / "enc"
    argv = ["train", "encoder", "--generator", str(tiny_generator_file), "--faces", str(crops["a"])]
    code, stdout, err = run([*argv, "--out", str(out), "--steps", "2", "--batch", "2", "--seed", "3"], capsys)
    assert code == 0, err
    assert f"{out}: step 2, " in stdout and "real LPIPS" in stdout
    # --real-every reaches the training: with 3, two steps see no real crop
    rare = [*argv, "--out", str(tmp_path / "rare"), "--steps", "2", "--batch", "2", "--real-every", "3"]
    code, rare_out, err = run(rare, capsys)
    assert code == 0, err
    assert "step 2, " in rare_out and "real LPIPS" not in rare_out and "LPIPS" in rare_out
    # --weights reach it too: with LPIPS weighed 0, VGG is not run and the file records the weights
    light = [*argv, "--out", str(tmp_path / "light"), "--steps", "1", "--batch", "2"]
    code, light_out, err = run([*light, "--weights", "lpips=0,latent=0.5"], capsys)
    assert code == 0, err
    assert "step 1, " in light_out and "LPIPS" not in light_out and "latent" in light_out
    saved = torch.load(tmp_path / "light" / "training.pt", weights_only=False)["settings"]
    assert (saved["lpips_weight"], saved["latent_weight"], saved["mse_weight"]) == (0.0, 0.5, 1.0)
    for name in ("encoder.pt", "training.pt", "preview.png", "loss.png"):
        assert (out / name).is_file(), name
    assert_labelled_grid(cv2.imread(str(out / "preview.png")), 3 * 32, 6 * 32)

    code, stdout, err = run(["models", "add", "enc", str(out)], capsys)
    assert code == 0, err
    assert "registered encoder enc: 32 px, 8 layers (W+ [N, 8, 64]), 2 steps" in stdout
    entry = registered_encoders()["enc"]
    assert entry.generator_sha256 == sha256_file(tiny_generator_file)
    assert entry.sha256 == sha256_file(out / "encoder.pt")
    assert encoder_path("enc") == out / "encoder.pt" and encoder_path("enc", tmp_path) == out / "encoder.pt"
    assert encoder_path(str(out)) == out / "encoder.pt"
    code, stdout, err = run(["models", "add", "enc-file", str(out / "encoder.pt")], capsys)
    assert code == 0 and "registered encoder enc-file: 32 px" in stdout, err
    code, stdout, _ = run(["models"], capsys)
    assert code == 0
    listing = stdout[stdout.index("encoders (") :]
    assert "enc: 32 px" in listing and entry.generator_sha256[:16] in listing
    generators = stdout[stdout.index("generators (") : stdout.index("encoders (")]
    assert "none registered" in generators  # registered as an encoder, not as a generator

    # a generator file that is not one fails inside the flow: still one line, status 2
    (tmp_path / "fake.pt").write_bytes(b"not a generator")
    code, _, err = run(
        [
            "train",
            "encoder",
            "--generator",
            str(tmp_path / "fake.pt"),
            "--out",
            str(tmp_path / "x"),
            "--steps",
            "1",
        ],
        capsys,
    )
    assert code == 2 and "fake.pt: not a readable torch checkpoint" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()

    with open(out / "encoder.pt", "ab") as f:  # the registered file changed
        f.write(b"\0")
    with pytest.raises(ModelError, match="checksum mismatch for encoder.pt"):
        encoder_path("enc")
