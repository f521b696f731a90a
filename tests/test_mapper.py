"""The latent-to-latent mapper (L2L): an edit by zero is exact, each of the four losses moves its quantity
the right way, several attributes combine, the file is paired with one generator, training resumes
exactly, and `vfx train mapper` / `vfx models` on the command line.

The judges are tiny real networks with fixed random weights: a small conv net reading three "attributes"
(its outputs, in their own units; their typical scales are their spread over the generator's faces) and
another giving a 16-d "identity" descriptor. Any differentiable image -> vector function is a judge for
the mapper's training; the recognisers and dlib's descriptor come with the merge (default_judges).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_generator_config
from torch import nn

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.models import ModelError, sha256_file
from pipeline.stylegan import mapper_train
from pipeline.stylegan.checkpoints import CheckpointError, load_generator, save_generator
from pipeline.stylegan.generator import Generator, GeneratorConfig
from pipeline.stylegan.mapper import LatentMapper, check_fits, edit_latents, load_mapper, save_mapper
from pipeline.stylegan.mapper_train import (
    ChipIdentity,
    Judges,
    MapperSettings,
    landmark_template,
    mapper_losses,
    new_state,
    sample_changes,
    sample_latents,
    train_mapper,
    train_step,
    update_ema,
)
from pipeline.stylegan.registry import mapper_path, registered_mappers

NAMES = ["a", "b", "c"]
ALL = {"attribute": 1.0, "identity": 1.0, "cycle": 1.0, "neighbourhood": 1.0}  # measure every term
# The tiny mapper's training in these tests: Adam at 3e-3, 100 steps of 8 latents, the attribute loss
# alone unless a test adds another. On seeds 0-2 the attribute error fell to 0.50-0.56 of the untrained
# mapper's; adding the identity, cycle or neighbourhood loss (weight 1) cut its quantity to 0.33-0.36,
# 0.24-0.34 and 0.38-0.51 of the attribute-only mapper's; the combined edits passed on all three.
ATTRIBUTE_ONLY = MapperSettings(
    batch=8, lr=3e-3, identity_weight=0, cycle_weight=0, neighbourhood_weight=0, preview_faces=1
)
STEPS = 100


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a 2-core machine busy with other work, two threads that wait for each other
    at every small convolution made these steps ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyJudge(nn.Module):
    """Two stride-2 convolutions, a global average and a linear layer, with fixed random weights."""

    def __init__(self, outputs: int, seed: int):
        super().__init__()
        self.c1, self.c2, self.fc = (
            nn.Conv2d(3, 8, 3, 2, 1),
            nn.Conv2d(8, 16, 3, 2, 1),
            nn.Linear(16, outputs),
        )
        g = torch.Generator().manual_seed(seed)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.c2(F.leaky_relu(self.c1(images), 0.2)), 0.2)
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def G(tiny_generator_file) -> Generator:
    G, _ = load_generator(tiny_generator_file)
    return G.requires_grad_(False)


def tiny_judges(G: Generator) -> Judges:
    """The recogniser's typical scales are its outputs' spread over 256 of the generator's faces."""
    recogniser = TinyJudge(len(NAMES), seed=1)
    z = torch.randn(256, G.cfg.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        spread = recogniser(G(z, psi=0.8)).std(dim=0)
    scales = {n: float(s) for n, s in zip(NAMES, spread, strict=True)}
    units = {"a": "degrees", "b": "ratio", "c": "ratio"}
    return Judges(recogniser, list(NAMES), scales, TinyJudge(16, seed=2), units)


@pytest.fixture(scope="module")
def judges(G) -> Judges:
    return tiny_judges(G)


@pytest.fixture(scope="module")
def recognisers_file(tmp_path_factory) -> str:
    """What `train_mapper` checksums as the recognisers (the tests hand it the modules themselves)."""
    path = tmp_path_factory.mktemp("rec") / "recognisers.pt"
    torch.save(TinyJudge(len(NAMES), seed=1).state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def other_generator_file(tmp_path_factory):
    """A second tiny generator of the same sizes (another seed): another file, another checksum."""
    torch.manual_seed(6)
    G = Generator(tiny_generator_config()).eval()
    G.compute_w_avg(500)
    path = tmp_path_factory.mktemp("other") / "other.pt"
    save_generator(path, G)
    return path


def held_out(G: Generator, mapper: LatentMapper, n: int = 32, seed: int = 99):
    """Latents and changes none of the training drew (another seed), as training draws them."""
    torch.manual_seed(seed)
    w = sample_latents(G, n, MapperSettings(), mapper.w_std)
    return w, sample_changes(n, len(mapper.names), MapperSettings()) * mapper.scales


def measured(G: Generator, mapper: LatentMapper, judges: Judges) -> dict[str, float]:
    """Each loss term's mean on the held-out edits."""
    w, change = held_out(G, mapper)
    with torch.no_grad():
        return {k: v.mean().item() for k, v in mapper_losses(G, mapper, judges, w, change, ALL).items()}


TRAINED: dict[tuple, tuple[LatentMapper, LatentMapper]] = {}


def trained(G: Generator, judges: Judges, **weights: float) -> tuple[LatentMapper, LatentMapper]:
    """The untrained mapper and the same one after STEPS steps of ATTRIBUTE_ONLY plus `weights` (made
    once per module: the attribute-only one serves several tests)."""
    key = (id(G), id(judges), *sorted(weights.items()))
    if key not in TRAINED:
        s = ATTRIBUTE_ONLY.with_weights(weights)
        state = new_state(G, judges, "", "", s)
        untrained = new_state(G, judges, "", "", s).mapper  # the same seed: the same start
        for _ in range(STEPS):
            train_step(state, G, judges, s)
        TRAINED[key] = untrained.eval(), state.mapper.eval()
    return TRAINED[key]


# ---------------------------------------------------------------------------------------------------
# The network


def test_an_edit_by_zero_returns_the_input_exactly(G, judges):
    torch.manual_seed(0)
    mapper = LatentMapper.for_generator(G, judges.scales, judges.units)
    with torch.no_grad():  # large random weights everywhere: zero must not come from small outputs
        for p in mapper.parameters():
            p.normal_(0, 1)
    w, _ = held_out(G, mapper, n=4)
    for zero in ({}, {"a": 0.0}, {"a": 0, "b": np.float32(0), "c": -0.0}, torch.zeros(3), torch.zeros(4, 3)):
        assert torch.equal(edit_latents(mapper, w, zero), w), zero
    change = torch.tensor([[0.0, 0, 0], [judges.scales["a"], 0, 0], [0, 0, 0], [0, -judges.scales["b"], 0]])
    edited = edit_latents(mapper, w, change)
    assert torch.equal(edited[[0, 2]], w[[0, 2]])  # a latent's zero change is exact beside others' edits
    assert (edited[[1, 3]] - w[[1, 3]]).norm(dim=-1).min() > 0  # every layer of an edited one moves
    assert edited.shape == w.shape and edited.dtype == w.dtype

    for bad, message in (
        ({"z": 1.0}, "unknown attribute 'z': this mapper edits a, b, c"),
        ({"a": float("nan")}, "a change that is not finite"),
        ({"a": "1"}, "the change of a is '1'; a number is needed"),
        (torch.zeros(2, 3), r"a change of shape \[2, 3\]; this mapper takes \[3\] or \[4, 3\] \(a, b, c\)"),
    ):
        with pytest.raises(PipelineError, match=message):
            edit_latents(mapper, w, bad)
    with pytest.raises(ValueError, match=r"the mapper takes \[B, 8, 64\]"):
        mapper(w[:, :4], torch.zeros(4, 3))


def test_the_attribute_loss_lowers_the_attribute_error(G, judges):
    untrained, mapper = trained(G, judges)
    before, after = measured(G, untrained, judges), measured(G, mapper, judges)
    assert after["attribute"] < 0.75 * before["attribute"], (before, after)


@pytest.mark.parametrize("loss", ["identity", "cycle", "neighbourhood"])
def test_each_conserving_loss_lowers_its_quantity(G, judges, loss):
    """Against the mapper trained with the attribute loss alone (the same seed, the same batches): the
    identity distance of the edited faces, the cycle error, the distance the edit moves the latent."""
    _, alone = trained(G, judges)
    _, with_loss = trained(G, judges, **{loss: 1.0})
    without, with_it = measured(G, alone, judges)[loss], measured(G, with_loss, judges)[loss]
    assert with_it < 0.6 * without, (loss, without, with_it)


def test_several_attributes_combine(G, judges):
    """Editing a and b together differs from editing either alone, and is an edit of both: the
    recogniser reads both changes, while editing a alone barely changes b and the other way round."""
    _, mapper = trained(G, judges)
    w, _ = held_out(G, mapper, n=16)
    amount = {"a": 1.5 * judges.scales["a"], "b": -1.5 * judges.scales["b"]}
    scales = judges.scale_tensor()

    def change_read(changes: dict) -> tuple[torch.Tensor, torch.Tensor]:
        edited = edit_latents(mapper, w, changes)
        with torch.no_grad():
            before = judges.attribute_fn(G.synthesis(w, "const"))
            after = judges.attribute_fn(G.synthesis(edited, "const"))
        return edited, ((after - before) / scales).mean(dim=0)  # in typical scales

    only_a, read_a = change_read({"a": amount["a"]})
    only_b, read_b = change_read({"b": amount["b"]})
    both, read_both = change_read(amount)
    for alone in (only_a, only_b):
        assert (both - alone).norm(dim=-1).mean() > 0.2 * (alone - w).norm(dim=-1).mean()
    assert read_both[0] > 0.5 * 1.5 and read_both[1] < -0.5 * 1.5, read_both  # asked +1.5, -1.5
    assert abs(read_a[1]) < 0.5 * abs(read_both[1]), (read_a, read_both)
    assert abs(read_b[0]) < 0.5 * abs(read_both[0]), (read_b, read_both)


# ---------------------------------------------------------------------------------------------------
# The file


def test_a_mapper_file_round_trips_and_refuses_another_generator(
    G, judges, tiny_generator_file, other_generator_file, tmp_path
):
    _, mapper = trained(G, judges)
    (tmp_path / "m").mkdir()
    path = tmp_path / "m" / "mapper.pt"
    mine = sha256_file(tiny_generator_file)
    save_mapper(path, mapper, mine, "r" * 64, {"steps": STEPS})
    loaded, meta = load_mapper(tmp_path / "m", tiny_generator_file, G)  # a folder means its mapper.pt
    assert loaded.names == NAMES and meta["steps"] == STEPS
    assert meta["generator_sha256"] == mine and meta["recognisers_sha256"] == "r" * 64
    assert meta["attributes"] == {n: {"unit": judges.units[n], "scale": judges.scales[n]} for n in NAMES}
    for (name, a), b in zip(mapper.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    w, change = held_out(G, mapper, n=4)
    assert torch.equal(edit_latents(loaded, w, change), edit_latents(mapper, w, change))

    theirs = sha256_file(other_generator_file)
    with pytest.raises(ModelError) as refused:
        load_mapper(path, other_generator_file)
    message = str(refused.value)
    assert message.startswith(f"{path}: trained for the generator with sha256 {mine[:16]}..., not ")
    assert f"{other_generator_file} (sha256 {theirs[:16]}...)" in message
    assert "vfx train mapper" in message and "\n" not in message
    load_mapper(path)  # without a generator there is nothing to compare

    other_size = Generator(GeneratorConfig(resolution=64, z_dim=8, w_dim=64, mapping_layers=1))
    with pytest.raises(
        ModelError, match=r"a mapper for W\+ \[N, 8, 64\]; this generator's W\+ is \[N, 10, 64\]"
    ):
        check_fits(loaded, other_size, path)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="junk.pt: not a readable mapper file"):
        load_mapper(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="g.pt: not a latent mapper file"):
        load_mapper(tiny_generator_file)
    with pytest.raises(ModelError, match="nothing.pt: mapper file not found"):
        load_mapper(tmp_path / "nothing.pt")


# ---------------------------------------------------------------------------------------------------
# Training runs


def test_training_resumes_exactly(
    G, judges, tiny_generator_file, other_generator_file, recognisers_file, tmp_path
):
    s = MapperSettings(batch=2, lr=1e-3, identity_weight=0.5, preview_faces=1, hidden=16)

    def run(out, steps, resume=False, generator=tiny_generator_file, recognisers=recognisers_file):
        return train_mapper(
            generator, recognisers, tmp_path / out, s, steps=steps, resume=resume, judges=judges
        )

    straight = run("straight", 4)
    run("split", 2)
    resumed = run("split", 4, resume=True)
    assert resumed.step == straight.step == 4 and [h["step"] for h in resumed.history] == [1, 2, 3, 4]

    def losses(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert losses(resumed.history) == losses(straight.history)
    assert set(resumed.history[-1]) >= {"attribute", "identity", "cycle", "neighbourhood", "loss"}
    for net in ("mapper", "ema"):  # the trained weights and their moving average both resume exactly
        for (name, a), b in zip(
            getattr(straight, net).state_dict().items(),
            getattr(resumed, net).state_dict().values(),
            strict=True,
        ):
            assert torch.equal(a, b), (net, name)
    on_disk, meta = load_mapper(tmp_path / "split", tiny_generator_file)
    assert meta["steps"] == 4 and meta["recognisers_sha256"] == sha256_file(recognisers_file)
    assert meta["weights"]["identity"] == 0.5 and on_disk.cfg.hidden == 16
    # the file holds the average, which lags the last step's weights
    for a, b in zip(on_disk.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert any(
        not torch.equal(a, b) for a, b in zip(on_disk.parameters(), resumed.mapper.parameters(), strict=True)
    )
    # the preview: a row per attribute (one face), a column per amount, names left, amounts above, step below
    shown = cv2.imread(str(tmp_path / "split" / "preview.png"))
    assert shown.shape[0] == 18 + 3 * 32 + 18 and shown.shape[1] > 5 * 32, shown.shape
    assert (tmp_path / "split" / "loss.png").is_file()

    with pytest.raises(CheckpointError, match="holds a mapper already; use --resume"):
        run("split", 6)
    with pytest.raises(
        ModelError, match=f"training.pt: trained for the generator .* not {other_generator_file}"
    ):
        run("split", 6, resume=True, generator=other_generator_file)
    with pytest.raises(CheckpointError, match="trained with the recognisers of sha256 .* not .*g.pt"):
        run("split", 6, resume=True, recognisers=tiny_generator_file)
    with pytest.raises(CheckpointError, match="no mapper training state to resume"):
        run("new", 6, resume=True)
    (tmp_path / "gan").mkdir()
    save_generator(tmp_path / "gan" / "generator.pt", G)
    with pytest.raises(CheckpointError, match="gan: holds a generator; give the mapper a folder of its own"):
        run("gan", 1)
    with pytest.raises(PipelineError, match=r"--attributes: z not read by the recognisers \(a, b, c\)"):
        train_mapper(
            tiny_generator_file,
            recognisers_file,
            tmp_path / "z",
            MapperSettings(attributes=("a", "z")),
            steps=1,
            judges=judges,
        )


def test_the_saved_average_moves_by_the_half_life_ramped_up_over_the_start(G, judges):
    s = replace(ATTRIBUTE_ONLY, ema_half_life=4.0, ema_rampup=0.5)
    state = new_state(G, judges, "", "", s)
    with torch.no_grad():
        for p in state.mapper.parameters():
            p.fill_(1.0)
        for p in state.ema.parameters():
            p.zero_()
    state.step = 2  # half-life min(4, 2 * 0.5) = 1 step: halfway to the weights
    update_ema(state, s)
    assert all(torch.allclose(p, torch.full_like(p, 0.5)) for p in state.ema.parameters())
    state.step = 100  # half-life 4 steps: 1 - 0.5 ** (1 / 4) of the remaining way
    update_ema(state, s)
    moved = 0.5 + 0.5 * (1 - 0.5**0.25)
    assert all(torch.allclose(p, torch.full_like(p, moved)) for p in state.ema.parameters())
    assert not any(p.requires_grad for p in state.ema.parameters())


def test_the_identity_judge_cuts_its_chip_and_a_template_needs_faces(G):
    """ChipIdentity hands the descriptor the chip its fixed transform cuts (here a plain affine warp);
    gradients reach the generator's image. The landmark template refuses a generator whose samples
    dlib finds no face on (the tiny random one)."""

    def cut(images: torch.Tensor, transforms: torch.Tensor, size: int) -> torch.Tensor:
        """Chip pixel (u, v) samples the image at the inverse of `transforms` (image -> chip pixels)."""
        n, _, h, w = images.shape
        full = torch.cat([transforms, torch.tensor([0.0, 0, 1]).expand(n, 1, 3)], dim=1)
        inverse = torch.linalg.inv(full)[:, :2]
        u = torch.arange(size, dtype=torch.float32)
        grid_uv = torch.stack(torch.meshgrid(u, u, indexing="xy"), dim=-1).reshape(-1, 2)
        xy = grid_uv @ inverse[:, :, :2].transpose(1, 2) + inverse[:, None, :, 2]
        norm = torch.stack([(xy[..., 0] + 0.5) / w * 2 - 1, (xy[..., 1] + 0.5) / h * 2 - 1], dim=-1)
        return F.grid_sample(images, norm.reshape(n, size, size, 2), align_corners=False)

    descriptor = TinyJudge(16, seed=4)
    shift = np.array([[1.0, 0, -4], [0, 1, -4]])  # the chip: the crop's 24 x 24 px from (4, 4)
    identity = ChipIdentity(descriptor, shift, cut, size=24)
    w = G.map(torch.randn(2, G.cfg.z_dim, generator=torch.Generator().manual_seed(1)))
    images = G.synthesis(w.requires_grad_(True), "const")
    expected = ((images + 1) * 127.5)[:, :, 4:28, 4:28]
    assert torch.allclose(
        cut((images + 1) * 127.5, identity.transform.expand(2, -1, -1), 24), expected, atol=1e-3
    )
    descriptors = identity(images)
    assert torch.allclose(descriptors, descriptor(expected), atol=1e-4)
    descriptors.square().sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0

    with pytest.raises(PipelineError, match="dlib found faces on 0 of 4 of the generator's samples"):
        landmark_template(G.requires_grad_(False), count=4)


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
    G, judges, tiny_generator_file, recognisers_file, tmp_path, capsys
):
    held = tmp_path / "held"
    train_mapper(
        tiny_generator_file,
        recognisers_file,
        held,
        MapperSettings(batch=2, preview_faces=1),
        steps=1,
        judges=judges,
    )
    base = ["train", "mapper", "--generator", str(tiny_generator_file), "--recognisers", recognisers_file]
    out = ["--out", str(tmp_path / "m")]
    cases = [
        ([*base, *out], "give one of --steps or --minutes"),
        ([*base, *out, "--steps", "0"], "--steps"),
        ([*base, *out, "--steps", "5", "--weights", "identity"], "is not NAME=NUMBER"),
        ([*base, *out, "--steps", "5", "--weights", "identity=-1"], "--weights"),
        ([*base, *out, "--steps", "5", "--weights", "colour=1"], "--weights: no loss 'colour'"),
        ([*base, *out, "--steps", "5", "--attributes", "a,,b"], "has an empty name"),
        (
            [*base[:4], "--recognisers", str(tmp_path / "none.pt"), *out, "--steps", "5"],
            "none.pt: recognisers file not found",
        ),
        ([*base, "--out", str(held), "--steps", "5"], f"{held}: holds a mapper already"),
        (
            [*base[:2], "--generator", "nope", *base[4:], *out, "--steps", "5"],
            "nope: neither a registered generator",
        ),
    ]
    for argv, expected in cases:
        code, _, err = run(argv, capsys)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_train_mapper_command_runs_as_a_prefect_flow_and_registers(
    G, tiny_generator_file, recognisers_file, tmp_path, monkeypatch, prefect_server, capsys
):
    """The judges that `vfx train mapper` loads from the recognisers' file come with the merge; here the
    command gets the tiny ones through the one function that makes them (default_judges)."""
    monkeypatch.setenv("VFX_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(mapper_train, "default_judges", lambda recognisers, G, device: tiny_judges(G))
    out = tmp_path / "map"
    argv = ["train", "mapper", "--generator", str(tiny_generator_file), "--recognisers", recognisers_file]
    code, stdout, err = run(
        [
            *argv,
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch",
            "2",
            "--attributes",
            "b,a",
            "--weights",
            "identity=0.5",
        ],
        capsys,
    )
    assert code == 0, err
    assert f"{out}: step 2, " in stdout and "edits b, a; loss " in stdout and "identity " in stdout
    for name in ("mapper.pt", "training.pt", "preview.png", "loss.png"):
        assert (out / name).is_file(), name
    mapper, meta = load_mapper(out, tiny_generator_file)
    assert mapper.names == ["b", "a"] and meta["weights"]["identity"] == 0.5

    code, stdout, err = run(["models", "add", "m", str(out)], capsys)
    assert code == 0, err
    assert "registered mapper m: edits b, a; W+ [N, 8, 64], 2 steps" in stdout
    entry = registered_mappers()["m"]
    assert entry.generator_sha256 == sha256_file(tiny_generator_file)
    assert entry.recognisers_sha256 == sha256_file(recognisers_file)
    assert mapper_path("m") == out / "mapper.pt" and mapper_path(str(out)) == out / "mapper.pt"
    code, stdout, _ = run(["models"], capsys)
    assert code == 0 and "m: edits b, a" in stdout[stdout.index("mappers (") :]

    # an attribute the recognisers do not read fails inside the flow: still one line, status 2
    code, _, err = run([*argv, "--out", str(tmp_path / "x"), "--steps", "1", "--attributes", "a,z"], capsys)
    assert code == 2 and "--attributes: z not read by the recognisers (a, b, c)" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
