"""StyleGAN2: the network's properties, checkpoint import in three layouts, refusal of code-running
pickles, training and its exact resume."""

from __future__ import annotations

import argparse
import copy
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import write_manifest

from pipeline.cli import main
from pipeline.errors import ManifestError
from pipeline.manifest import load_shot
from pipeline.models import ModelError, sha256_file
from pipeline.stylegan.augment import diff_augment
from pipeline.stylegan.checkpoints import (
    CheckpointError,
    UnsafePickleError,
    load_generator,
    save_generator,
)
from pipeline.stylegan.discriminator import Discriminator
from pipeline.stylegan.formats import check_generator_file
from pipeline.stylegan.generator import (
    Generator,
    GeneratorConfig,
    blur_filter,
    default_channels,
    mix_styles,
    modulated_conv2d,
    upfirdn2d,
)
from pipeline.stylegan.registry import generator_path, register_generator, registered_generators
from pipeline.stylegan.train import GanSettings, new_state, train_generator, train_step

SMALL = GeneratorConfig(
    resolution=32, z_dim=64, w_dim=64, mapping_layers=3, channels=default_channels(32, 256, 32)
)


def random_generator(cfg: GeneratorConfig = SMALL, seed: int = 0) -> Generator:
    """Every parameter random (a fresh network has zero biases and noise strengths, which would hide a
    wrongly mapped one)."""
    torch.manual_seed(seed)
    G = Generator(cfg)
    with torch.no_grad():
        for p in G.parameters():
            if p.ndim < 2:  # biases and noise strengths; weights keep their (random) initialisation
                p.add_(torch.randn_like(p) * 0.2)
        G.compute_w_avg(2000)
    return G.eval()


def test_modulated_conv_equals_per_sample_grouped_convolution():
    torch.manual_seed(1)
    x, weight, styles = torch.randn(3, 8, 9, 9), torch.randn(5, 8, 3, 3), torch.randn(3, 8)
    for up in (False, True):
        got = modulated_conv2d(x, weight, styles, demodulate=True, up=up)
        for i in range(3):  # the textbook form: build each sample's kernel and convolve
            w = weight * styles[i][None, :, None, None]
            w = w / w.square().sum(dim=[1, 2, 3], keepdim=True).sqrt()
            if up:
                ref = F.conv_transpose2d(x[i : i + 1], w.transpose(0, 1), stride=2)
                ref = upfirdn2d(ref, blur_filter() * 4, pad=(1, 1))
            else:
                ref = F.conv2d(x[i : i + 1], w, padding=1)
            assert ref.shape[-1] == (18 if up else 9)
            assert torch.allclose(got[i : i + 1], ref, atol=1e-4)


def test_upsampling_keeps_a_flat_image_flat():
    up = upfirdn2d(torch.ones(1, 2, 8, 8), blur_filter() * 4, up=2, pad=(2, 1))
    assert up.shape == (1, 2, 16, 16)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.ones(1, 2, 12, 12))


def test_generator_shapes_at_every_resolution():
    for res in (32, 64, 128, 1024):
        cfg = GeneratorConfig(resolution=res, channels=default_channels(res, 256, 16))
        assert cfg.num_ws == {32: 8, 64: 10, 128: 12, 1024: 18}[res]
    G = random_generator()
    ws = G.map(torch.randn(2, 64))
    assert ws.shape == (2, SMALL.num_ws, 64)
    assert G.synthesis(ws).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="W\\+ of shape"):
        G.synthesis(ws[:, :3])
    with pytest.raises(ValueError, match="not a power of two"):
        GeneratorConfig(resolution=48)


def test_truncation_psi_zero_gives_the_average_face_for_every_z():
    G = random_generator()
    with torch.no_grad():
        faces = G(torch.randn(4, 64), psi=0.0)
        average = G.synthesis(G.w_avg[None, None].repeat(1, G.num_ws, 1))
        untruncated = G(torch.randn(4, 64))
    assert (faces - average).abs().max() < 1e-5
    assert (untruncated[0] - untruncated[1]).abs().max() > 0.1
    # a cutoff truncates only the first layers
    ws = G.map(torch.randn(2, 64), psi=0.0, cutoff=3)
    assert torch.allclose(ws[:, :3], G.w_avg.expand(2, 3, -1)) and not torch.allclose(ws[:, 3:], G.w_avg)


def test_style_mixing_takes_coarse_layers_from_the_first_and_fine_from_the_second():
    G = random_generator()
    k = 4
    with torch.no_grad():
        a, b = G.map(torch.randn(1, 64)), G.map(torch.randn(1, 64))
        mixed = G.synthesis(mix_styles(a, b, k))
        a_fine_changed = a.clone()
        a_fine_changed[:, k:] += 1.0
        b_coarse_changed = b.clone()
        b_coarse_changed[:, :k] += 1.0
        same = G.synthesis(mix_styles(a_fine_changed, b_coarse_changed, k))
        a_coarse_changed = a.clone()
        a_coarse_changed[:, :k] += 1.0
        other = G.synthesis(mix_styles(a_coarse_changed, b, k))
    assert (mixed - same).abs().max() < 1e-6  # A's fine layers and B's coarse ones are not used
    assert (mixed - other).abs().max() > 0.05  # A's coarse layers are
    assert (mixed - G.synthesis(a)).abs().max() > 0.05 and (mixed - G.synthesis(b)).abs().max() > 0.05


def test_noise_fixed_random_or_given():
    G = random_generator()
    ws = G.map(torch.randn(1, 64))
    with torch.no_grad():
        const1, const2 = G.synthesis(ws, "const"), G.synthesis(ws, "const")
        given = G.synthesis(ws, G.noise_maps())
        rand1, rand2 = G.synthesis(ws, "random"), G.synthesis(ws, "random")
        other = G.synthesis(ws, [torch.randn(s) for s in G.noise_shapes()])
    assert torch.equal(const1, const2) and (const1 - given).abs().max() < 1e-6
    assert (rand1 - rand2).abs().max() > 1e-3 and (const1 - other).abs().max() > 1e-3


def test_discriminator_scores_a_batch():
    D = Discriminator(32, default_channels(32, 256, 32))
    assert D(torch.randn(8, 3, 32, 32)).shape == (8, 1)
    assert D(torch.randn(3, 3, 32, 32)).shape == (3, 1)  # a batch not divisible by the mbstd group


# ---------------------------------------------------------------------------------------------------
# The official layouts, written by the test from their documented names


def write_rosinality(G: Generator, path: Path) -> None:
    """rosinality/stylegan2-pytorch `model.py` names: style.N, input.input, conv1, to_rgb1, convs.N,
    to_rgbs.N, noises.noise_N, with its extra leading dimensions."""
    sd = G.state_dict()
    out = {}
    for i in range(G.cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    blur = torch.tensor([1.0, 3.0, 3.0, 1.0])

    def styled(ours: str, theirs: str, noise: int, up: bool) -> None:
        out[f"{theirs}.conv.weight"] = sd[f"{ours}.weight"][None]
        out[f"{theirs}.conv.modulation.weight"] = sd[f"{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = sd[f"{ours}.affine.bias"]
        out[f"{theirs}.noise.weight"] = sd[f"{ours}.noise_strength"].reshape(1)
        out[f"{theirs}.activate.bias"] = sd[f"{ours}.bias"]
        out[f"noises.noise_{noise}"] = sd[f"{ours}.noise_const"][None, None]
        if up:
            out[f"{theirs}.conv.blur.kernel"] = torch.outer(blur, blur) / 16 * 4

    def rgb(ours: str, theirs: str) -> None:
        out[f"{theirs}.conv.weight"] = sd[f"{ours}.weight"][None]
        out[f"{theirs}.conv.modulation.weight"] = sd[f"{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = sd[f"{ours}.affine.bias"]
        out[f"{theirs}.bias"] = sd[f"{ours}.bias"].reshape(1, 3, 1, 1)

    styled("synthesis.b4.conv1", "conv1", 0, False)
    rgb("synthesis.b4.torgb", "to_rgb1")
    for i, res in enumerate(G.cfg.resolutions[1:]):
        styled(f"synthesis.b{res}.conv0", f"convs.{2 * i}", 2 * i + 1, True)
        styled(f"synthesis.b{res}.conv1", f"convs.{2 * i + 1}", 2 * i + 2, False)
        rgb(f"synthesis.b{res}.torgb", f"to_rgbs.{i}")
        out[f"to_rgbs.{i}.upsample.kernel"] = torch.outer(blur, blur) / 16 * 4
    args = argparse.Namespace(size=G.cfg.resolution, channel_multiplier=2, latent=G.cfg.w_dim)
    torch.save({"g_ema": out, "latent_avg": G.w_avg.clone(), "args": args}, path)


MODULE_SRC = "import os\nos.system('echo this source must never run')\nclass Generator: pass\n"


def write_nvidia_pickle(G: Generator, path: Path, monkeypatch) -> None:
    """A stylegan2-ada-pytorch network pickle: {'G', 'D', 'G_ema', 'augment_pipe',
    'training_set_kwargs'}, where each network object is reduced by torch_utils.persistence to
    _reconstruct_persistent_obj(meta) with meta = {type, version, module_src, class_name, state}, and
    state is the module's __dict__. Fake `torch_utils` and `dnnlib` modules exist only while writing."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the loader must not call the checkpoint's code")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util.EasyDict = EasyDict

    class Persistent:
        def __init__(self, class_name: str, params=(), buffers=(), modules=(), **attrs):
            self.class_name = class_name
            self.state = {
                "training": False,
                "_parameters": OrderedDict(params),
                "_buffers": OrderedDict(buffers),
                "_non_persistent_buffers_set": set(),
                "_modules": OrderedDict(modules),
                "_forward_hooks": OrderedDict(),
                "_forward_pre_hooks": OrderedDict(),
                **attrs,
            }

        def __reduce__(self):
            meta = dict(
                type="class", version=4, module_src=MODULE_SRC, class_name=self.class_name, state=self.state
            )
            return (_reconstruct_persistent_obj, (meta,))

    sd = G.state_dict()
    filt = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64

    def param(name):
        return torch.nn.Parameter(sd[name].clone())

    def fc(prefix, **attrs):
        return Persistent(
            "FullyConnectedLayer",
            [("weight", param(f"{prefix}.weight")), ("bias", param(f"{prefix}.bias"))],
            **attrs,
        )

    def layer(prefix, res):
        return Persistent(
            "SynthesisLayer",
            [(n, param(f"{prefix}.{n}")) for n in ("weight", "noise_strength", "bias")],
            [("resample_filter", filt), ("noise_const", sd[f"{prefix}.noise_const"].clone())],
            [("affine", fc(f"{prefix}.affine", activation="linear"))],
            resolution=res,
        )

    def torgb(prefix):
        return Persistent(
            "ToRGBLayer",
            [("weight", param(f"{prefix}.weight")), ("bias", param(f"{prefix}.bias"))],
            modules=[("affine", fc(f"{prefix}.affine"))],
        )

    blocks = []
    for res in G.cfg.resolutions:
        p = f"synthesis.b{res}"
        mods = ([] if res == 4 else [("conv0", layer(f"{p}.conv0", res))]) + [
            ("conv1", layer(f"{p}.conv1", res)),
            ("torgb", torgb(f"{p}.torgb")),
        ]
        params = [("const", param(f"{p}.const"))] if res == 4 else []
        blocks.append((f"b{res}", Persistent("SynthesisBlock", params, [("resample_filter", filt)], mods)))
    mapping = Persistent(
        "MappingNetwork",
        buffers=[("w_avg", sd["mapping.w_avg"].clone())],
        modules=[(f"fc{i}", fc(f"mapping.fc{i}")) for i in range(G.cfg.mapping_layers)],
    )
    kwargs = EasyDict(
        z_dim=G.cfg.z_dim,
        c_dim=0,
        w_dim=G.cfg.w_dim,
        img_resolution=G.cfg.resolution,
        img_channels=3,
        mapping_kwargs=EasyDict(num_layers=G.cfg.mapping_layers),
        synthesis_kwargs=EasyDict(channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=None),
    )
    g_ema = Persistent(
        "Generator",
        modules=[("synthesis", Persistent("SynthesisNetwork", modules=blocks)), ("mapping", mapping)],
        _init_args=(),
        _init_kwargs=kwargs,
        z_dim=G.cfg.z_dim,
    )
    data = {
        "G": g_ema,
        "D": None,
        "G_ema": g_ema,
        "augment_pipe": None,
        "training_set_kwargs": EasyDict(path="faces.zip"),
    }
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
        m.setitem(sys.modules, "torch_utils.persistence", persistence)
        m.setitem(sys.modules, "dnnlib", types.ModuleType("dnnlib"))
        m.setitem(sys.modules, "dnnlib.util", util)
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4)
    assert "torch_utils" not in sys.modules


def test_the_three_formats_import_to_the_same_images(tmp_path, monkeypatch):
    G = random_generator()
    save_generator(tmp_path / "ours.pt", G, {"note": "random"})
    write_rosinality(G, tmp_path / "rosinality.pt")
    write_nvidia_pickle(G, tmp_path / "network-snapshot.pkl", monkeypatch)
    ws = G.map(torch.randn(3, 64, generator=torch.Generator().manual_seed(5)))
    noise = [torch.randn(s) for s in G.noise_shapes()]
    with torch.no_grad():
        reference = G.synthesis(ws, noise)
    formats = {}
    for name in ("ours.pt", "rosinality.pt", "network-snapshot.pkl"):
        loaded, info = load_generator(tmp_path / name)
        formats[name] = info["format"]
        assert loaded.cfg.channels == G.cfg.channels and loaded.num_ws == G.num_ws
        assert torch.allclose(loaded.w_avg, G.w_avg)
        with torch.no_grad():
            diff = (loaded.synthesis(ws, noise) - reference).abs().max().item()
        assert diff < 1e-4, (name, diff)
    assert formats == {
        "ours.pt": "vfx-stylegan2",
        "rosinality.pt": "rosinality-pt",
        "network-snapshot.pkl": "nvidia-pkl",
    }
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    for name in formats:  # and validate, which reads them without torch, passes each
        check_generator_file(tmp_path / name)


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "it-ran"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"G_ema": RunsCode(marker)}, f)
    torch.save({"g_ema": {"style.1.weight": RunsCode(marker)}}, tmp_path / "evil.pt")
    for name in ("evil.pkl", "evil.pt"):
        with pytest.raises(
            UnsafePickleError, match=f"{name}: refused: the pickle asks for .*system, which could run code"
        ):
            load_generator(tmp_path / name)
    assert not marker.exists()


def test_bad_generator_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable torch checkpoint"):
        load_generator(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="nothing.pt: generator file not found"):
        load_generator(tmp_path / "nothing.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a generator we know"):
        load_generator(tmp_path / "other.pt")
    # validate's reading without torch refuses the same files
    for name, why in [("junk", "not a readable torch checkpoint"), ("other", "not a generator we know")]:
        with pytest.raises(ModelError, match=f"{name}.pt: {why}"):
            check_generator_file(tmp_path / f"{name}.pt")
    sd = random_generator().state_dict()
    torch.save({"g_ema": {"style.1.weight": sd["mapping.fc0.weight"]}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="partial.pt: not a rosinality generator"):
        load_generator(tmp_path / "partial.pt")


# ---------------------------------------------------------------------------------------------------
# Training


def test_training_resumes_exactly_and_writes_its_outputs(crops, tmp_path):
    folders = [crops["a"], crops["b"]]
    s = GanSettings(res=64, batch=4, r1_every=2)  # R1 runs within the few steps
    straight = train_generator(folders, tmp_path / "straight", s, kimg=0.016)
    train_generator(folders, tmp_path / "split", s, kimg=0.008)
    resumed = train_generator(folders, tmp_path / "split", s, kimg=0.016, resume=True)
    assert resumed.step == straight.step == 4 and resumed.nimg == 16
    assert [h["d_loss"] for h in resumed.history] == [h["d_loss"] for h in straight.history]
    assert any("r1" in h for h in resumed.history)
    for (name, p), q in zip(
        straight.G_ema.state_dict().items(), resumed.G_ema.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    out = tmp_path / "split"
    for name in ("generator.pt", "training.pt", "samples.png", "reals.png", "losses.png"):
        assert (out / name).is_file(), name
    # the same weights make the same file (stages keyed by a model's checksum reuse their renders)
    assert (out / "generator.pt").read_bytes() == (tmp_path / "straight" / "generator.pt").read_bytes()
    assert len(list((out / "samples").glob("kimg*.png"))) >= 2
    G, info = load_generator(out)
    assert G.cfg.resolution == 64 and info["kimg"] == 0.016 and info["steps"] == 4
    with pytest.raises(CheckpointError, match="holds a generator already; use --resume"):
        train_generator(folders, out, s, kimg=0.02)
    with pytest.raises(CheckpointError, match="trained at 64 px with other sizes; --res 128 was asked"):
        train_generator(folders, out, GanSettings(res=128, batch=4), kimg=0.02, resume=True)


def test_augmentation_is_differentiable_and_keeps_shapes():
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    y = diff_augment(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_train_generator_command_runs_as_a_prefect_flow(crops, tmp_path, prefect_server, capsys):
    out = tmp_path / "g"
    args = ["train", "generator", "--faces", str(crops["a"]), "--faces", str(crops["b"]), "--out", str(out)]
    assert main([*args, "--kimg", "0.008", "--batch", "4"]) == 0
    assert "step 2, 0.0 kimg" in capsys.readouterr().out
    assert main(args) == 2  # neither --kimg nor --minutes
    assert "give one of --kimg or --minutes" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# Registry


def test_generators_are_registered_by_name_and_found_by_name_or_path(tmp_path, monkeypatch, clip, capsys):
    monkeypatch.setenv("VFX_MODELS", str(tmp_path / "models"))
    save_generator(tmp_path / "tiny.pt", random_generator())
    assert main(["models", "add", "tiny", str(tmp_path / "tiny.pt")]) == 0
    listing = capsys.readouterr().out
    assert "tiny: 32 px, w 64, 8 layers" in listing and "vfx-stylegan2" in listing
    entry = registered_generators()["tiny"]
    assert entry.sha256 == sha256_file(tmp_path / "tiny.pt") and entry.mapping_layers == 3
    assert main(["models"]) == 0
    assert "tiny: 32 px" in capsys.readouterr().out
    assert generator_path("tiny") == tmp_path / "tiny.pt"
    assert generator_path("tiny.pt", tmp_path) == tmp_path / "tiny.pt"

    shot = "shot: g\nplate:\n  movie: {clip}\nproject:\n  generator: {ref}\nfaces: {{}}\ncomposite: {{}}\n"
    load_shot(write_manifest(tmp_path, shot.format(clip=clip, ref="tiny")))
    load_shot(write_manifest(tmp_path, shot.format(clip=clip, ref="tiny.pt")))
    with pytest.raises(ManifestError, match=r"shot.yaml:5 project.generator: nope: neither a registered"):
        load_shot(write_manifest(tmp_path, shot.format(clip=clip, ref="nope")))

    save_generator(tmp_path / "tiny.pt", random_generator(seed=1))  # the registered file changed
    with pytest.raises(ModelError, match="checksum mismatch for tiny.pt"):
        generator_path("tiny")
    with pytest.raises(ModelError, match="generator name"):
        register_generator("no spaces", tmp_path / "tiny.pt")


def watch_synthesis(G: Generator) -> list[tuple[dict, torch.Tensor, torch.Tensor]]:
    """Each call of G.synthesis as (its weights, the ws, the random state) just before it runs: a hook that
    observes only, so that the test can replay a call outside train_step."""
    calls = []

    def before(module, args):
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        calls.append((state, args[0].detach().clone(), torch.get_rng_state()))

    G.synthesis.register_forward_pre_hook(before)
    return calls


def test_path_length_regularisation_step():
    s = GanSettings(res=64, batch=4, pl_weight=2.0, pl_every=2)
    state = new_state(s)
    calls = watch_synthesis(state.G)
    faces = torch.rand(8, 3, 64, 64) * 2 - 1
    record = train_step(state, faces, s)  # step 1: lazy, no path-length pass
    assert len(calls) == 2
    assert "pl" not in record and state.pl_mean == 0.0
    record = train_step(state, faces, s)
    assert np.isfinite([record["d_loss"], record["g_loss"]]).all()
    assert len(calls) == 5  # the fakes for D, for G, and the path-length pass
    # Replay the path-length pass with StyleGAN2's definitions: a probe y ~ N(0, 1/(H*W)) on the image,
    # lengths |J^T y| (per layer, averaged over layers), pl_mean an EMA (decay 0.01) starting at 0,
    # penalty (lengths - pl_mean)^2 scaled by pl_weight * pl_every.
    weights, ws, rng = calls[-1]
    synthesis = copy.deepcopy(state.G.synthesis)
    synthesis.load_state_dict(weights)
    ws = ws.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):  # the same random noise maps and probe, then back
        torch.set_rng_state(rng)
        img = synthesis(ws, noise="random")
        probe = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
    (grad,) = torch.autograd.grad((img * probe).sum(), ws, create_graph=True)
    lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()
    pl_mean = 0.01 * lengths.mean().item()  # the EMA's first move from 0
    penalty = (lengths - pl_mean).square().mean()
    assert ws.shape[0] == s.batch // 2 and lengths.min() > 0
    assert state.pl_mean == pytest.approx(pl_mean, rel=1e-4)
    assert record["pl"] == pytest.approx(penalty.item(), rel=1e-4)
    # the generator's last gradient is that of the weighted penalty
    (penalty * s.pl_weight * s.pl_every).backward()
    mine = dict(synthesis.named_parameters())
    theirs = {k: p.grad for k, p in state.G.synthesis.named_parameters() if p.grad is not None}
    assert theirs.keys() == {k for k, p in mine.items() if p.grad is not None} and theirs
    for k, g in theirs.items():
        assert torch.allclose(g, mine[k].grad, rtol=1e-3, atol=1e-6), k

    # pl_weight 0: no path-length pass at all, no pl figure, pl_mean untouched
    s0 = GanSettings(res=64, batch=2, pl_weight=0.0, pl_every=1)
    state0 = new_state(s0)
    calls0 = watch_synthesis(state0.G)
    record0 = train_step(state0, faces, s0)
    assert len(calls0) == 2
    assert "pl" not in record0 and state0.pl_mean == 0.0
