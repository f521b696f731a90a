"""One device rule for every model (`pipeline/devices.py`): `--device`, else $VFX_DEVICE, else a CUDA GPU
when there is one, else the CPU; every model of the pipeline follows it.

Most machines that run these tests have no GPU, so a GPU is faked present (torch.cuda.is_available
patched to answer True) to see where each model goes. A model sent to the GPU then fails inside torch
("Torch not compiled with CUDA enabled"), which is the evidence that it followed the rule; a model told to
stay on the CPU runs. On a machine with a real GPU nothing is faked, and the parameters' device is checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import write_manifest

from pipeline.cli import main
from pipeline.devices import ENV, DeviceError, resolve_device

REAL_GPU = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def no_device_setting(monkeypatch):
    """No VFX_DEVICE from the shell, and none left behind (the CLI sets it in this process)."""
    monkeypatch.setenv(ENV, "")
    monkeypatch.delenv(ENV)


def present_gpu(monkeypatch) -> None:
    """A CUDA GPU, real or faked present (one of it); after the fixtures are made, which are made on the
    CPU."""
    if not REAL_GPU:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.fixture
def gpu(monkeypatch) -> None:
    present_gpu(monkeypatch)


@pytest.fixture
def no_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ----------------------------------------------------------------------------------------------------
# The rule


def test_the_default_is_the_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device() == torch.device("cpu")


def test_the_setting_beats_the_variable_which_beats_the_default(monkeypatch, gpu):
    monkeypatch.setenv(ENV, "cpu")
    assert resolve_device() == torch.device("cpu")  # the variable over the GPU
    assert resolve_device("cuda") == torch.device("cuda")  # --device over the variable
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setenv(ENV, "")
    assert resolve_device() == torch.device("cuda")  # set but empty: as if unset


@pytest.mark.parametrize(
    "name, problem",
    [
        ("tpu", "not a device; give cpu, cuda or cuda:N"),
        ("cuda:x", "not a device"),
        ("meta", "the models run on cpu, cuda or cuda:N (or mps), not meta"),
    ],
)
def test_a_name_that_is_no_device_is_refused_naming_the_setting(monkeypatch, name, problem):
    with pytest.raises(DeviceError, match=re.escape(f"--device {name}: {problem}")):
        resolve_device(name)
    monkeypatch.setenv(ENV, name)
    with pytest.raises(DeviceError, match=re.escape(f"{ENV}={name}: {problem}")):
        resolve_device()


def test_a_gpu_the_machine_lacks_is_refused(monkeypatch, no_gpu):
    with pytest.raises(DeviceError, match=r"^--device cuda: no CUDA GPU is available on .*; give cpu$"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match=r"^--device cuda:2: .* has 2 CUDA GPU\(s\), cuda:0 to cuda:1$"):
        resolve_device("cuda:2")


# ----------------------------------------------------------------------------------------------------
# The command line


def run(argv: list[str], capfd) -> tuple[int, list[str]]:
    capfd.readouterr()
    code = main(argv)
    return code, capfd.readouterr().err.splitlines()


@pytest.mark.parametrize(
    "argv",
    [
        ["render", "shot.yaml"],
        ["batch", "shots"],
        ["train", "swap", "--a", "a", "--b", "b", "--out", "m", "--steps", "1"],
        ["train", "generator", "--faces", "a", "--out", "g", "--kimg", "1"],
        ["train", "encoder", "--generator", "g.pt", "--out", "e", "--steps", "1"],
        ["train", "mapper", "--generator", "g.pt", "--recognisers", "r.pt", "--out", "m", "--steps", "1"],
        ["train", "recognisers", "--generator", "g.pt", "--out", "r", "--minutes", "1"],
        ["project", "faces", "--generator", "g", "--out", "p"],
        ["direction", "learn", "--pos", "a", "--neg", "b", "--generator", "g", "--out", "d.npz"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_every_command_that_runs_models_refuses_a_bad_device_first(argv, tmp_path, monkeypatch, capfd):
    """Before anything else is read (none of these inputs exist): one line naming the setting, status 2."""
    monkeypatch.chdir(tmp_path)
    code, err = run([*argv, "--device", "tpu"], capfd)
    assert code == 2 and len(err) == 1 and err[0].startswith("--device tpu: not a device"), err
    monkeypatch.setenv(ENV, "tpu")
    code, err = run(argv, capfd)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"{ENV}=tpu: not a device"), err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def aligned_crops(tmp_path) -> Path:
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(folder / f"f{i}.png"), (rng.random((64, 64, 3)) * 255).astype(np.uint8))
    return folder


def test_the_command_lines_device_reaches_the_models(
    tiny_generator_file, aligned_crops, tmp_path, monkeypatch, capfd
):
    """`vfx project` runs its models in this process: with a GPU present they go there unless --device
    (or $VFX_DEVICE) says otherwise, and --device is passed on as VFX_DEVICE for the flows' tasks."""
    present_gpu(monkeypatch)
    argv = ["project", str(aligned_crops), "--generator", str(tiny_generator_file), "--aligned"]
    argv += ["--steps", "1"]
    code, err = run([*argv, "--out", str(tmp_path / "cpu"), "--device", "cpu"], capfd)
    assert code == 0, err
    assert len(list((tmp_path / "cpu").glob("*.npz"))) == 2
    assert os.environ[ENV] == "cpu"
    if REAL_GPU:
        assert run([*argv, "--out", str(tmp_path / "gpu"), "--device", "cuda"], capfd)[0] == 0
    else:  # the variable says cpu now, and --device cuda beats it
        with pytest.raises((AssertionError, RuntimeError), match="CUDA"):
            main([*argv, "--out", str(tmp_path / "gpu"), "--device", "cuda"])


# ----------------------------------------------------------------------------------------------------
# Every model follows the rule


def swap_training(fx: dict, out: Path) -> list[torch.nn.Module]:
    from pipeline.swap.train import TrainSettings, train

    settings = TrainSettings(batch=2, preview_every=1000)
    state = train(fx["crops"]["a"], fx["crops"]["b"], out, settings, steps=1)
    return [state.model]


def swap_conversion(fx: dict, out: Path) -> list[torch.nn.Module]:
    """The swap stage's link of the frame chain, and the faces it converts."""
    from pipeline.manifest import load_shot
    from pipeline.shot.swap import SwappedFaces

    m = write_manifest(
        out.parent,
        f"shot: dev\nplate: {{movie: {fx['woman_clip']}}}\nfaces: {{crop_size: 64}}\ncomposite: {{}}\n"
        f"swap: {{model: {fx['tiny_model']}, batch: 2}}\n",
    )
    link = SwappedFaces(load_shot(m))
    faces, _ = link([1001, 1002], [np.full((64, 64, 3), 0.5, np.float32)] * 2, [None, None])
    assert len(faces) == 2 and faces[0].shape == (64, 64, 3)
    return [link.model]


def generator_training(fx: dict, out: Path) -> list[torch.nn.Module]:
    from pipeline.stylegan.train import GanSettings, train_generator

    state = train_generator([fx["crops"]["a"]], out, GanSettings(res=64, batch=2), kimg=0.001)
    return [state.G, state.D, state.G_ema]


def encoder_training(fx: dict, out: Path) -> list[torch.nn.Module]:
    from pipeline.stylegan.encoder_train import EncoderSettings, train_encoder

    settings = EncoderSettings(batch=2, preview_faces=2, preview_polish_steps=1)
    return [train_encoder(fx["tiny_generator_file"], [], out, settings, steps=1).encoder]


def mapper_training(fx: dict, out: Path) -> list[torch.nn.Module]:
    """The mapper and its judges (test_mapper's tiny ones; the generator file stands in as the
    recognisers' file, which training only checksums when given the judges)."""
    from test_mapper import tiny_judges

    from pipeline.stylegan.checkpoints import load_generator
    from pipeline.stylegan.mapper_train import MapperSettings, train_mapper

    judges = tiny_judges(load_generator(fx["tiny_generator_file"])[0])
    settings = MapperSettings(batch=2, preview_faces=1)
    gen = fx["tiny_generator_file"]
    state = train_mapper(gen, gen, out, settings, steps=1, judges=judges)
    return [state.mapper, state.ema, judges.attribute_fn, judges.identity_fn]


def shot_generator(fx: dict, out: Path) -> list[torch.nn.Module]:
    """The generator the project, path and tune stages draw with."""
    from pipeline.shot.project import load_generator_file

    return [load_generator_file(fx["tiny_generator_file"])]


MODELS: dict[str, Callable[[dict, Path], list[torch.nn.Module]]] = {
    "swap training": swap_training,
    "swap conversion": swap_conversion,
    "generator training": generator_training,
    "encoder training": encoder_training,
    "mapper training": mapper_training,
    "shot generator": shot_generator,
}


@pytest.fixture
def fx(request) -> Callable[[str], dict]:
    return lambda *names: {n: request.getfixturevalue(n) for n in names}


NEEDS = {
    "swap training": ("crops",),
    "swap conversion": ("woman_clip", "tiny_model"),
    "generator training": ("crops",),
    "encoder training": ("tiny_generator_file",),
    "mapper training": ("tiny_generator_file",),
    "shot generator": ("tiny_generator_file",),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_goes_to_the_gpu_by_default(name, fx, tmp_path, monkeypatch):
    fixtures = fx(*NEEDS[name])
    present_gpu(monkeypatch)
    if not REAL_GPU:
        with pytest.raises((AssertionError, RuntimeError), match="CUDA"):
            MODELS[name](fixtures, tmp_path / "out")
        return
    for model in MODELS[name](fixtures, tmp_path / "out"):
        assert {p.device.type for p in model.parameters()} == {"cuda"}, name


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_stays_on_the_cpu_when_the_variable_says_so(name, fx, tmp_path, monkeypatch):
    fixtures = fx(*NEEDS[name])
    present_gpu(monkeypatch)
    monkeypatch.setenv(ENV, "cpu")
    for model in MODELS[name](fixtures, tmp_path / "out"):
        assert {p.device.type for p in model.parameters()} == {"cpu"}, name


# ----------------------------------------------------------------------------------------------------
# On a real GPU only: mixed precision stays close to fp32


@pytest.mark.skipif(not REAL_GPU, reason="needs a CUDA GPU")
def test_mixed_precision_conversion_matches_fp32_on_the_gpu(tiny_model, crops):
    from pipeline.swap.convert import convert_faces
    from pipeline.swap.data import load_face_set
    from pipeline.swap.train import load_model

    faces = load_face_set(crops["a"], 64, "a").images[:8]
    want, want_mask = convert_faces(load_model(tiny_model, "cpu"), faces, "b")
    got, got_mask = convert_faces(load_model(tiny_model, "cuda"), faces, "b", mixed_precision=True)
    np.testing.assert_allclose(got, want, atol=1e-2)
    np.testing.assert_allclose(got_mask, want_mask, atol=1e-2)


@pytest.mark.skipif(not REAL_GPU, reason="needs a CUDA GPU")
def test_mixed_precision_training_follows_fp32_on_the_gpu(crops, tmp_path):
    """A few steps in mixed precision on the GPU and in fp32 on the CPU, from the same start: the losses
    agree to a few per cent."""
    from pipeline.swap.train import TrainSettings, train

    settings = TrainSettings(batch=4, lr=1e-4, preview_every=1000)
    cpu = train(crops["a"], crops["b"], tmp_path / "cpu", settings, steps=3, device="cpu")
    gpu = train(crops["a"], crops["b"], tmp_path / "gpu", settings, steps=3, device="cuda")
    for a, b in zip(cpu.history, gpu.history, strict=True):
        assert abs(a["a_total"] - b["a_total"]) < 0.05 * a["a_total"], (a, b)
