"""The StyleGAN2 generator (config F, skip architecture), written to be read top to bottom.

z --mapping--> w (one per layer: W+) --synthesis--> image

The parameter names are those of NVIDIA's stylegan2-ada-pytorch (`mapping.fc0.weight`,
`synthesis.b8.conv0.affine.bias`, ...), so their checkpoints map onto this network name for name and
rosinality's by a fixed renaming (see `checkpoints.py`). The arithmetic follows both: equalised learning
rate (weights stored at unit variance and scaled at run time), modulated 3x3 convolutions with weight
demodulation, upsampling by a transposed convolution followed by a [1, 3, 3, 1] blur, per-layer noise
with a learned strength, and an RGB output at every resolution that is upsampled and summed ("skip").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)  # keeps the variance of a leaky ReLU(0.2) output at that of its input


def default_channels(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> tuple[int, ...]:
    """Feature maps per block from 4x4 up to `resolution`: min(base / res, max), NVIDIA's rule."""
    return tuple(min(channel_base // (2**i), channel_max) for i in range(2, int(math.log2(resolution)) + 1))


@dataclass(frozen=True)
class GeneratorConfig:
    resolution: int = 256
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    channels: tuple[int, ...] = field(default=())  # one per block, 4x4 first; empty: default_channels
    conv_clamp: float | None = None  # clamp activations (NVIDIA's fp16 safety); None in config F
    w_avg_beta: float = 0.995

    def __post_init__(self) -> None:
        log2 = math.log2(self.resolution)
        if log2 != int(log2) or not 32 <= self.resolution <= 1024:
            raise ValueError(f"generator resolution {self.resolution} is not a power of two from 32 to 1024")
        if not self.channels:
            object.__setattr__(self, "channels", default_channels(self.resolution))
        if len(self.channels) != int(log2) - 1:
            raise ValueError(f"{len(self.channels)} channel widths for {int(log2) - 1} blocks (4x4 up)")

    @property
    def resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        """One w for each modulated layer: 2 per block, but 1 conv at 4x4 and a last toRGB."""
        return 2 * int(math.log2(self.resolution)) - 2

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        return cls(**{**d, "channels": tuple(d.get("channels", ()))})


# ---------------------------------------------------------------------------------------------------
# Primitives


def blur_filter() -> torch.Tensor:
    """The separable [1, 3, 3, 1] low-pass filter of StyleGAN2's resampling, normalised to sum 1."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
    """Upsample by zero insertion, pad, filter (true convolution) and downsample: each channel alone."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    kernel = f.flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    x = F.conv2d(x, kernel, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def bias_lrelu(x: torch.Tensor, bias: torch.Tensor, clamp: float | None = None) -> torch.Tensor:
    """Bias, leaky ReLU(0.2), gain sqrt(2): the activation of every StyleGAN2 layer."""
    x = F.leaky_relu(x + bias.reshape(1, -1, *([1] * (x.ndim - 2))), 0.2) * LRELU_GAIN
    return x.clamp(-clamp, clamp) if clamp is not None else x


class FullyConnected(nn.Module):
    """A linear layer with equalised learning rate: the stored weight has unit variance and is scaled
    by lr_mul / sqrt(fan_in) when used, so Adam's step size means the same for every layer."""

    def __init__(
        self, in_dim: int, out_dim: int, lr_mul: float = 1.0, bias_init: float = 0.0, act: bool = True
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x @ (self.weight * self.weight_gain).t()
        b = self.bias * self.lr_mul
        return bias_lrelu(x, b) if self.act else x + b


def modulated_conv2d(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, up: bool = False
) -> torch.Tensor:
    """A 3x3 (or 1x1) convolution whose kernel's input channels are scaled by each sample's style and
    whose output channels are renormalised to unit norm (demodulation: it replaces AdaIN without its
    droplet artefacts).

    Computed as scale-input, shared convolution, scale-output (NVIDIA's non-fused form): the same
    numbers as a per-sample grouped convolution, and several times faster on a CPU.
    """
    x = x * styles[:, :, None, None]
    if up:
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        x = upfirdn2d(x, blur_filter().to(x.device) * 4, pad=(1, 1))
    else:
        x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    if demodulate:  # 1 / |w * s| per sample and output channel, without building per-sample kernels
        dcoefs = torch.rsqrt(styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8)  # [N, out]
        x = x * dcoefs[:, :, None, None]
    return x


# ---------------------------------------------------------------------------------------------------
# Mapping network: z -> w


class MappingNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.num_layers = cfg.mapping_layers
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        for i in range(cfg.mapping_layers):
            setattr(self, f"fc{i}", FullyConnected(dims[i], dims[i + 1], lr_mul=cfg.mapping_lr_mul))
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)  # pixel norm: z on a sphere
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


# ---------------------------------------------------------------------------------------------------
# Synthesis network: W+ -> image


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling 2x), plus noise, bias and leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, res: int, up: bool, clamp: float | None):
        super().__init__()
        self.affine = FullyConnected(w_dim, c_in, bias_init=1.0, act=False)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(res, res))
        self.up, self.res, self.clamp = up, res, clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | str = "const") -> torch.Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w), up=self.up)
        if isinstance(noise, torch.Tensor):
            x = x + noise * self.noise_strength
        elif noise == "const":
            x = x + self.noise_const * self.noise_strength
        elif noise == "random":
            x = x + torch.randn(x.shape[0], 1, self.res, self.res, device=x.device) * self.noise_strength
        return bias_lrelu(x, self.bias, self.clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB, no demodulation (colour is absolute)."""

    def __init__(self, c_in: int, w_dim: int, clamp: float | None):
        super().__init__()
        self.affine = FullyConnected(w_dim, c_in, bias_init=1.0, act=False)
        self.weight = nn.Parameter(torch.randn(3, c_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))
        self.weight_gain = 1 / math.sqrt(c_in)
        self.clamp = clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False)
        x = x + self.bias.reshape(1, -1, 1, 1)
        return x.clamp(-self.clamp, self.clamp) if self.clamp is not None else x


class SynthesisBlock(nn.Module):
    """One resolution: (upsampling conv0), conv1, toRGB. The 4x4 block starts from a learned constant."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, res: int, clamp: float | None):
        super().__init__()
        if res == 4:
            self.const = nn.Parameter(torch.randn(c_out, 4, 4))
        else:
            self.conv0 = SynthesisLayer(c_in, c_out, w_dim, res, up=True, clamp=clamp)
        self.conv1 = SynthesisLayer(c_out, c_out, w_dim, res, up=False, clamp=clamp)
        self.torgb = ToRGB(c_out, w_dim, clamp)
        self.res = res
        self.num_conv = 1 if res == 4 else 2

    def forward(self, x, img, ws: torch.Tensor, noise: list) -> tuple[torch.Tensor, torch.Tensor]:
        """`ws` holds this block's conv w's then its toRGB w (the next block's first)."""
        if self.res == 4:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise[0])
        else:
            x = self.conv0(x, ws[:, 0], noise[0])
            x = self.conv1(x, ws[:, 1], noise[1])
        y = self.torgb(x, ws[:, self.num_conv])
        if img is not None:
            img = upfirdn2d(img, blur_filter().to(img.device) * 4, up=2, pad=(2, 1))
            y = y + img
        return x, y


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.resolutions = cfg.resolutions
        chans = dict(zip(self.resolutions, cfg.channels, strict=True))
        for res in self.resolutions:
            c_in = chans.get(res // 2, 0)
            setattr(self, f"b{res}", SynthesisBlock(c_in, chans[res], cfg.w_dim, res, cfg.conv_clamp))
        self.num_ws = cfg.num_ws

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.resolutions]

    def layers(self) -> list[SynthesisLayer]:
        """The noise-taking conv layers, in order (one noise map each)."""
        out = []
        for b in self.blocks():
            out += [b.conv1] if b.res == 4 else [b.conv0, b.conv1]
        return out

    def forward(self, ws: torch.Tensor, noise: str | list[torch.Tensor] = "const") -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"synthesis needs W+ of shape [N, {self.num_ws}, w_dim], got {list(ws.shape)}")
        maps = noise if isinstance(noise, list) else [noise] * len(self.layers())
        x = img = None
        w_idx = n_idx = 0
        for block in self.blocks():
            x, img = block(
                x, img, ws[:, w_idx : w_idx + block.num_conv + 1], maps[n_idx : n_idx + block.num_conv]
            )
            w_idx += block.num_conv
            n_idx += block.num_conv
        return img


# ---------------------------------------------------------------------------------------------------
# The generator


class Generator(nn.Module):
    """Images in [-1, 1], NCHW RGB. `ws` everywhere means W+: [N, num_ws, w_dim]."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    @property
    def num_ws(self) -> int:
        return self.cfg.num_ws

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def map(self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """z -> W+ (the same w repeated per layer), truncated toward the average w by psi on the first
        `cutoff` layers (all when None): psi=0 draws the average face, psi=1 leaves w alone."""
        w = self.mapping(z)
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if psi != 1:
            cut = self.num_ws if cutoff is None else cutoff
            ws[:, :cut] = self.w_avg.lerp(ws[:, :cut], psi)
        return ws

    def forward(
        self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None, noise="const"
    ) -> torch.Tensor:
        return self.synthesis(self.map(z, psi, cutoff), noise)

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        return [(1, 1, layer.res, layer.res) for layer in self.synthesis.layers()]

    def noise_maps(self) -> list[torch.Tensor]:
        """The fixed per-layer noise, as maps that can be passed (and optimised) in place of 'const'."""
        return [layer.noise_const[None, None].clone() for layer in self.synthesis.layers()]

    @torch.no_grad()
    def update_w_avg(self, w: torch.Tensor) -> None:
        """Training tracks the average w as a moving average of the batches' w."""
        self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, self.cfg.w_avg_beta))

    @torch.no_grad()
    def sample_w(self, samples: int = 10000, seed: int = 0) -> torch.Tensor:
        """w for `samples` seeded random z: [samples, w_dim]."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(samples, self.cfg.z_dim, generator=g).to(self.w_avg.device)
        return torch.cat([self.mapping(c) for c in z.split(1000)])

    @torch.no_grad()
    def compute_w_avg(self, samples: int = 10000, seed: int = 0) -> torch.Tensor:
        """The average w from many mapped z (for checkpoints that did not track it)."""
        self.w_avg.copy_(self.sample_w(samples, seed).double().mean(0).to(self.w_avg))
        return self.w_avg


def mix_styles(ws_a: torch.Tensor, ws_b: torch.Tensor, layer: int) -> torch.Tensor:
    """Style mixing: the coarse layers (< `layer`: pose, face shape) from A, the fine ones from B."""
    if ws_a.shape != ws_b.shape:
        raise ValueError(
            f"style mixing needs two W+ of one shape, got {list(ws_a.shape)} and {list(ws_b.shape)}"
        )
    out = ws_b.clone()
    out[:, :layer] = ws_a[:, :layer]
    return out


def images_to_tensor(images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """NHWC float RGB images in [0, 1] to the generator's [-1, 1] NCHW tensors."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() * 2 - 1


def tensor_to_images(images: torch.Tensor) -> np.ndarray:
    """The generator's [-1, 1] NCHW tensors to NHWC float32 RGB images in [0, 1]."""
    return ((images.detach().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW tensors to uint8 NHWC RGB arrays."""
    x = (images.detach().float().clamp(-1, 1) + 1) * 127.5
    return (x + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def image_grid(images: np.ndarray, cols: int) -> np.ndarray:
    """NHWC images as one grid image, row by row."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    grid = np.zeros((rows * h, cols * w, c), images.dtype)
    for i, img in enumerate(images):
        grid[(i // cols) * h : (i // cols + 1) * h, (i % cols) * w : (i % cols + 1) * w] = img
    return grid
