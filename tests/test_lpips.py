"""LPIPS in plain torch against the published values, and the weights reader's refusals."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.models import ModelError, model_path
from pipeline.stylegan.checkpoints import UnsafePickleError
from pipeline.stylegan.lpips import load_lpips, read_weights

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "lpips"


def image(name: str) -> torch.Tensor:
    if not FIXTURES.is_dir():
        pytest.skip(f"{FIXTURES} not found (the LPIPS example images live beside the repo in shared/)")
    rgb = cv2.cvtColor(cv2.imread(str(FIXTURES / f"{name}.png")), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.mark.parametrize("net, p0, p1", [("alex", 0.722, 0.138), ("vgg", 0.569, 0.422)])
def test_lpips_on_the_upstream_example_images(net, p0, p1):
    """AlexNet's figures are the published ones; VGG's are ours, kept so that a change shows."""
    lpips = load_lpips(net)
    ref = image("ex_ref")
    d0, d1 = lpips(ref, image("ex_p0")).item(), lpips(ref, image("ex_p1")).item()
    assert (round(d0, 3), round(d1, 3)) == (p0, p1)
    assert lpips(ref, ref).item() == 0.0
    both = lpips(torch.cat([ref, ref]), torch.cat([image("ex_p0"), image("ex_p1")]))
    assert torch.allclose(both, torch.tensor([d0, d1]), atol=1e-6)  # batched = one by one
    spatial = lpips(ref, image("ex_p0"), spatial=True)
    assert spatial.shape == (1, 1, 64, 64) and abs(spatial.mean().item() - d0) < 0.01


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
