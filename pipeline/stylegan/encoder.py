"""An encoder from aligned face crops to a generator's W+: the fast start that projection polishes.

The network follows pSp (Richardson et al. 2021, "Encoding in Style: a StyleGAN Encoder for
Image-to-Image Translation"): a residual convolutional backbone whose last three scales form a feature
pyramid, the coarsest map predicting the coarse styles (pose, face shape), the middle one the medium
styles and the finest map the fine styles (colour, texture), as StyleGAN's layers divide the work. It is
parametrised like e4e (Tov et al. 2021, "Designing an Encoder for StyleGAN Image Manipulation"): one
base w and an offset per further layer, W+ = w_avg + [w, w + d_1, ..., w + d_{n-1}], so that a penalty
on the offsets keeps the result near W, where the generator draws faces well and edits behave.

An encoder belongs to one generator: it holds that generator's w_avg (and w's spread per dimension,
which scales its outputs) and its file records the generator's SHA-256, so `load_encoder` refuses to pair
it with another generator. A file is a `torch.save` of tensors and plain containers, read with
`weights_only`: {"format": "vfx-encoder", "version": 1, "config": {...}, "state": state_dict,
"generator_sha256": "...", "meta": {...}}.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import models
from pipeline.files import save_torch_atomic
from pipeline.models import ENCODER_FILE, ModelError, encoder_file, load_torch_file, sha256_file
from pipeline.stylegan.formats import ENCODER_FORMAT as FORMAT
from pipeline.stylegan.formats import ENCODER_VERSION as VERSION
from pipeline.stylegan.formats import refuse_other_generator
from pipeline.stylegan.generator import Generator, GeneratorConfig

__all__ = [
    "ENCODER_FILE",
    "FORMAT",
    "VERSION",
    "Encoder",
    "EncoderConfig",
    "check_fits",
    "encoder_file",
    "load_encoder",
    "save_encoder",
    "style_groups",
]

MAX_INPUT = 256  # larger faces are area-reduced to this first: pSp encodes 1024 px faces at 256
WIDTH_BASE, WIDTH_MAX = 32, 256
HEAD_INIT = 1e-3  # the heads' last weights start at this std (over sqrt(fan in)): W+ starts at w_avg


def style_groups(num_ws: int) -> tuple[int, int, int]:
    """How many W+ layers the coarse, medium and fine heads predict: pSp's 3 / 4 / 11 of 18 (4-8 px,
    16-32 px, 64 px and up), and for smaller generators 3 coarse, about half the rest medium (at most 4)
    and the others fine: 10 layers (64 px) split 3 / 3 / 4, 8 layers (32 px) 3 / 2 / 3."""
    coarse = 3
    medium = min(4, (num_ws - coarse) // 2)
    return coarse, medium, num_ws - coarse - medium


def default_widths(input_size: int) -> tuple[int, ...]:
    """Channels of the stem and of each stride-2 stage: 32, 64, 128, 256, then 256 (narrow enough for a CPU
    at 64 px; faces above 256 px are encoded at 256, so one network serves every size)."""
    stages = int(math.log2(input_size // final_size(input_size)))
    return tuple(min(WIDTH_BASE * 2**i, WIDTH_MAX) for i in range(stages + 1))


def final_size(input_size: int) -> int:
    """The backbone's last (coarsest) map: 4x4, or 8x8 from 128 px inputs, so the coarse head keeps a
    spatial layout to read pose from."""
    return 8 if input_size >= 128 else 4


@dataclass(frozen=True)
class EncoderConfig:
    resolution: int = 256  # the generator's
    num_ws: int = 14
    w_dim: int = 512
    input_size: int = 0  # 0: min(resolution, 256)
    channels: tuple[int, ...] = field(default=())  # stem, then each stage; empty: default_widths

    def __post_init__(self) -> None:
        log2 = math.log2(self.resolution)
        if log2 != int(log2) or not 32 <= self.resolution <= 1024:
            raise ValueError(f"encoder resolution {self.resolution} is not a power of two from 32 to 1024")
        if self.num_ws != 2 * int(log2) - 2:
            raise ValueError(
                f"{self.num_ws} W+ layers for a {self.resolution} px generator (it has {2 * int(log2) - 2})"
            )
        if not self.input_size:
            object.__setattr__(self, "input_size", min(self.resolution, MAX_INPUT))
        in_log2 = math.log2(self.input_size)
        if in_log2 != int(in_log2) or not 32 <= self.input_size <= min(self.resolution, MAX_INPUT):
            raise ValueError(f"encoder input size {self.input_size}: a power of two from 32 to min(res, 256)")
        if not self.channels:
            object.__setattr__(self, "channels", default_widths(self.input_size))
        stages = int(math.log2(self.input_size // final_size(self.input_size)))
        if len(self.channels) != stages + 1:
            raise ValueError(f"{len(self.channels)} channel widths for a stem and {stages} stages")

    @classmethod
    def for_generator(cls, cfg: GeneratorConfig, **changes) -> EncoderConfig:
        return cls(resolution=cfg.resolution, num_ws=cfg.num_ws, w_dim=cfg.w_dim, **changes)

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        return cls(**{**d, "channels": tuple(d.get("channels", ()))})


def _conv(c_in: int, c_out: int, k: int = 3, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """He initialisation for leaky ReLU(0.2): activations keep their scale through the stages."""
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=bias)
    nn.init.kaiming_normal_(conv.weight, a=0.2, nonlinearity="leaky_relu")
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


class ResidualStage(nn.Module):
    """Halve the size: a stride-2 3x3 conv and a 3x3 conv beside an average-pooled 1x1 shortcut, summed
    and scaled by 1/sqrt(2) (the residual form of StyleGAN2's discriminator; no normalisation layers, so
    a face's code never depends on the others in its batch)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv0 = _conv(c_in, c_out, stride=2)
        self.conv1 = _conv(c_out, c_out)
        self.skip = _conv(c_in, c_out, k=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv1(F.leaky_relu(self.conv0(x), 0.2)), 0.2)
        return (y + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


class StyleHead(nn.Module):
    """One pyramid level's styles: stride-2 convs down to 2x2, flattened, one linear layer to
    [count, w_dim] (pSp's map2style, shared by the level's layers rather than one per layer). The linear
    layer starts near zero, so an untrained encoder gives the average face."""

    def __init__(self, channels: int, size: int, count: int, w_dim: int):
        super().__init__()
        convs = []
        while size > 2:
            convs.append(_conv(channels, channels, stride=2))
            size //= 2
        self.convs = nn.ModuleList(convs)
        self.linear = nn.Linear(channels * size * size, count * w_dim)
        nn.init.normal_(self.linear.weight, std=HEAD_INIT / math.sqrt(self.linear.in_features))
        nn.init.zeros_(self.linear.bias)
        self.count, self.w_dim = count, w_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return self.linear(x.flatten(1)).reshape(-1, self.count, self.w_dim)


class Encoder(nn.Module):
    """Faces [N, 3, R, R] in [-1, 1] (R the generator's size) -> W+ [N, num_ws, w_dim]."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        widths = cfg.channels
        self.stem = _conv(3, widths[0])
        self.stages = nn.ModuleList(ResidualStage(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        # the last three scales: fine (largest), medium, coarse (the backbone's end)
        smallest = final_size(cfg.input_size)
        self.level_sizes = (smallest * 4, smallest * 2, smallest)
        level_widths = widths[-3:]
        top = widths[-1]
        self.lateral = nn.ModuleList(_conv(c, top, k=1) for c in level_widths)
        groups = style_groups(cfg.num_ws)
        self.heads = nn.ModuleList(
            StyleHead(top, size, count, cfg.w_dim)
            for size, count in zip(reversed(self.level_sizes), groups, strict=True)
        )  # coarse, medium, fine: the order of the W+ layers
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        self.register_buffer("w_std", torch.ones(cfg.w_dim))

    @classmethod
    @torch.no_grad()
    def for_generator(cls, G: Generator, samples: int = 10000, **changes) -> Encoder:
        """A new (untrained) encoder for G: it copies G's w_avg and w's spread per dimension, which scales
        its outputs so that one learning rate suits any generator's w."""
        enc = cls(EncoderConfig.for_generator(G.cfg, **changes))
        w = G.sample_w(samples).float().cpu()
        enc.w_avg.copy_(G.w_avg.detach().cpu())
        enc.w_std.copy_(w.std(dim=0).clamp_min(1e-8))
        return enc.to(G.w_avg.device)

    def pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Coarse, medium and fine feature maps, top-down as in pSp's FPN: each finer level adds the
        upsampled coarser one, so fine styles also see the whole face."""
        feats = [F.leaky_relu(self.stem(x), 0.2)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        fine, medium, coarse = (lat(f) for lat, f in zip(self.lateral, feats[-3:], strict=True))
        medium = medium + F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
        fine = fine + F.interpolate(medium, scale_factor=2, mode="bilinear", align_corners=False)
        return coarse, medium, fine

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """W+ [N, num_ws, w_dim] and the e4e offsets [N, num_ws - 1, w_dim] (in w's units) for the
        regulariser that keeps W+ near W."""
        cfg = self.cfg
        if images.ndim != 4 or images.shape[1:] != (3, cfg.resolution, cfg.resolution):
            raise ValueError(
                f"images of shape {list(images.shape)}; the encoder takes [N, 3, {cfg.resolution}, "
                f"{cfg.resolution}] (its generator's size)"
            )
        x = images.to(self.w_avg.device, torch.float32)
        if cfg.input_size < cfg.resolution:
            x = F.interpolate(x, size=(cfg.input_size, cfg.input_size), mode="area")
        levels = self.pyramid(x)
        raw = torch.cat([head(level) for head, level in zip(self.heads, levels, strict=True)], dim=1)
        base, deltas = raw[:, :1], raw[:, 1:]
        offsets = torch.cat([base, base + deltas], dim=1)
        return self.w_avg + self.w_std * offsets, deltas * self.w_std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)[0]


# ---------------------------------------------------------------------------------------------------
# Files


def save_encoder(path: Path, encoder: Encoder, generator_sha256: str, meta: dict | None = None) -> None:
    """Write the encoder (atomically) with the checksum of the generator it was trained for."""
    data = {
        "format": FORMAT,
        "version": VERSION,
        "config": encoder.cfg.to_dict(),
        "state": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
        "generator_sha256": generator_sha256,
        "meta": meta or {},
    }
    save_torch_atomic(Path(path), data)


def read_encoder_file(path: Path) -> dict:
    """The file's contents, checked to be an encoder of our format; anything else is a one-line error."""
    if not path.is_file():
        raise ModelError(f"{path}: encoder file not found (vfx train encoder makes one)")
    data = load_torch_file(path, "encoder file", ModelError)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{path}: not an encoder file (vfx train encoder makes them)")
    if data.get("version") != VERSION:
        raise ModelError(f"{path}: {FORMAT} version {data.get('version')} is not version {VERSION}")
    return data


def check_fits(encoder: Encoder, G: Generator, where: Path | str) -> None:
    """Refuse an encoder whose sizes are not the generator's (a file swapped behind the checksum)."""
    c, g = encoder.cfg, G.cfg
    if (c.resolution, c.num_ws, c.w_dim) != (g.resolution, g.num_ws, g.w_dim):
        raise ModelError(
            f"{where}: an encoder for {c.resolution} px generators with W+ [N, {c.num_ws}, {c.w_dim}]; this "
            f"generator is {g.resolution} px with W+ [N, {g.num_ws}, {g.w_dim}]"
        )


def load_encoder(
    path: str | Path, generator_file: str | Path | None = None, G: Generator | None = None
) -> tuple[Encoder, dict]:
    """An encoder file (or a folder's encoder.pt) and its metadata (with "generator_sha256").

    With `generator_file` (a generator file or folder), a generator other than the one it was trained
    for is refused by checksum: an encoder's W+ means nothing to another generator. With `G`, its sizes
    are checked too.
    """
    path = encoder_file(Path(path))
    data = read_encoder_file(path)
    recorded = str(data.get("generator_sha256", ""))
    if generator_file is not None:
        gen = models.generator_file(Path(generator_file))
        try:
            actual = sha256_file(gen)
        except OSError as e:
            raise ModelError(f"{gen}: cannot read the generator: {e.strerror or e}") from None
        refuse_other_generator(path, recorded, gen, actual)
    try:
        encoder = Encoder(EncoderConfig.from_dict(dict(data["config"])))
        encoder.load_state_dict(data["state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"{path}: a damaged encoder file ({type(e).__name__}: {reason})") from None
    if G is not None:
        check_fits(encoder, G, path)
    return encoder.eval(), {**dict(data.get("meta") or {}), "generator_sha256": recorded}
