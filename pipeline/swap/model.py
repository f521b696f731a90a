"""The face-swap autoencoder: one encoder shared by both people, one decoder per person.

The shared encoder has to describe both faces with the same code, so it learns what they have in
common (pose, expression, gaze, light); each decoder learns to draw one person from that code. Encode
A's face and decode it with B's decoder, and B appears with A's performance.

Presets:
- "64": the classic faceswap "original" model: 64 px input; encoder convs 128-256-512-1024 (5x5, stride
  2), dense 1024, dense 4x4x1024, upscale to 8x8x512; decoders upscale 256-128-64 and end in a 5x5 conv
  to RGB plus a mask channel.
- "128": 128 px, narrower convolutions with residual blocks in the decoders; slower, sharper.
- "256": the 128 preset one level deeper (one more encoder conv and decoder stage), for a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class SwapConfig:
    preset: str
    size: int
    encoder_channels: tuple[int, ...]
    latent: int  # width of the dense bottleneck
    bottleneck_channels: int  # channels of the 4x4 map after the dense layers
    decoder_channels: tuple[int, ...]
    residual_blocks: int  # per decoder stage

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SwapConfig:
        return cls(
            **{
                **d,
                "encoder_channels": tuple(d["encoder_channels"]),
                "decoder_channels": tuple(d["decoder_channels"]),
            }
        )


PRESETS = {
    "64": SwapConfig("64", 64, (128, 256, 512, 1024), 1024, 1024, (512, 256, 128, 64), 0),
    "128": SwapConfig("128", 128, (64, 128, 256, 512, 768), 512, 512, (512, 256, 128, 64, 32), 1),
    "256": SwapConfig("256", 256, (64, 128, 256, 512, 768, 1024), 512, 512, (512, 256, 128, 64, 32, 32), 1),
}


class Upscale(nn.Module):
    """Conv to 4x the channels, then pixel shuffle: doubles the size without checkerboard artefacts."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.act(self.conv(x)))


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(c, c, 3, padding=1)
        )
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class Encoder(nn.Module):
    def __init__(self, cfg: SwapConfig):
        super().__init__()
        layers, cin = [], 3
        for c in cfg.encoder_channels:
            layers += [nn.Conv2d(cin, c, 5, stride=2, padding=2), nn.LeakyReLU(0.1)]
            cin = c
        self.convs = nn.Sequential(*layers)
        side = cfg.size >> len(cfg.encoder_channels)
        self.flat = cin * side * side
        self.dense = nn.Linear(self.flat, cfg.latent)
        self.expand = nn.Linear(cfg.latent, 4 * 4 * cfg.bottleneck_channels)
        self.bottleneck_channels = cfg.bottleneck_channels
        self.up = Upscale(cfg.bottleneck_channels, cfg.decoder_channels[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x).flatten(1)
        h = self.expand(self.dense(h)).view(-1, self.bottleneck_channels, 4, 4)
        return self.up(h)  # 8x8


class Decoder(nn.Module):
    def __init__(self, cfg: SwapConfig):
        super().__init__()
        stages, cin = [], cfg.decoder_channels[0]
        for c in cfg.decoder_channels[1:]:
            stages.append(Upscale(cin, c))
            stages += [Residual(c) for _ in range(cfg.residual_blocks)]
            cin = c
        self.stages = nn.Sequential(*stages)
        self.rgb = nn.Conv2d(cin, 3, 5, padding=2)
        self.mask = nn.Conv2d(cin, 1, 5, padding=2)

    def forward(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stages(code)
        return torch.sigmoid(self.rgb(h)), torch.sigmoid(self.mask(h))


class SwapModel(nn.Module):
    def __init__(self, cfg: SwapConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoders = nn.ModuleDict({"a": Decoder(cfg), "b": Decoder(cfg)})

    def forward(self, x: torch.Tensor, identity: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Faces (N, 3, S, S) in [0, 1] drawn as `identity` ("a" or "b"): RGB and mask."""
        return self.decoders[identity](self.encoder(x))
