"""A Domain Transfer Network (Taigman, Polyak and Wolf 2017, "Unsupervised cross-domain image generation"):
a face redrawn in another domain, learnt from unpaired faces of both.

A frozen feature encoder f describes a face; a generator g draws the target domain from f's features; a
three-way discriminator D tells apart g's drawings of source faces, g's drawings of target images and real
target images. The losses (the functions below), as in the paper:
- L_D: D's cross-entropy with the paper's labels, 0 for g(f(x)) of a source face x, 1 for g(f(t)) of a
  target image t, 2 for a real t (`D_SOURCE_DRAWN`, `D_TARGET_DRAWN`, `D_TARGET_REAL`);
- L_GANG: g wants D to call both its drawings real target images (class 2);
- L_CONST: f(g(f(x))) stays f(x) for source faces, so the drawing keeps the person;
- L_TID: g(f(t)) reproduces t, so g is the identity on the target domain;
- L_TV: total variation of g's drawings of source faces, for smooth drawings;
- L_COLOUR (not in the paper): the drawing's coarse colours stay the source face's.

f is the project's identity network, dlib's face descriptor in torch (faces/descriptor.py), read on its
150 px chip cut from the aligned crop by one fixed affine (`ChipFeatures`). Its 128-d descriptor says who;
for video, g must also follow the performance (pose, expression, mouth), which the descriptor is trained
to forget, so f also gives one of the descriptor network's feature maps (the 17 px map at the end of its
second stage by default: the 8 px map of its third stage keeps the head's pose but hardly the expression),
whose layout carries where the eyes, the mouth and the head are. L_CONST compares both (the map weighted by
`spatial_const`). g draws from the map alone unless told to join the descriptor to it (`use_vector`, the
paper's input): a target domain of one person gives g one descriptor for all its targets, so the
descriptor tells g "source face" from "target image" and nothing of use, and g tinted every source face's
drawing (measured: bench/stylize.py, README). Any module images [B, 3, R, R] in -1..1 -> (map
[B, C, S, S], vector [B, D]) can be f: the tests use tiny ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

D_SOURCE_DRAWN, D_TARGET_DRAWN, D_TARGET_REAL = 0, 1, 2


@dataclass(frozen=True)
class DTNConfig:
    resolution: int  # the aligned crops' and the drawings' size
    feature_channels: int  # f's map
    feature_size: int  # f's map is feature_size x feature_size
    vector_dim: int  # f's vector (the descriptor)
    width: int = 128  # g's channels at its first block (halved per doubling, at least 32)
    use_vector: bool = True  # g also draws from f's vector (the descriptor), broadcast over the map
    colours: int = 0  # g also draws from the face's colours, area-averaged to colours x colours (0: not)

    def __post_init__(self) -> None:
        log2 = math.log2(self.resolution)
        if log2 != int(log2) or not 32 <= self.resolution <= 512:
            raise ValueError(f"resolution {self.resolution} is not a power of two from 32 to 512")
        if (
            self.feature_size < 1
            or self.resolution % self.feature_size
            or self.feature_size > self.resolution
        ):
            raise ValueError(f"feature maps of {self.feature_size} px do not divide {self.resolution} px")
        if not 0 <= self.colours <= self.feature_size or (self.colours and self.feature_size % self.colours):
            raise ValueError(f"colours at {self.colours} px do not divide g's {self.feature_size} px map")

    @property
    def doublings(self) -> int:
        return int(round(math.log2(self.resolution / self.feature_size)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DTNConfig:
        sizes = ("resolution", "feature_channels", "feature_size", "vector_dim", "width")
        return cls(
            **{k: int(d[k]) for k in sizes},
            use_vector=bool(d.get("use_vector", True)),
            colours=int(d.get("colours", 0)),
        )


def _up_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.LeakyReLU(0.2),
    )


class StyleDrawer(nn.Module):
    """g: f's map (and vector, and the face's colours) -> a drawing [B, 3, R, R] in -1..1. The vector,
    where the config takes it, is broadcast over the map and joined to it; convolution blocks double the
    size to the resolution (nearest upsampling then 3x3 convolutions: no checkerboard of transposed
    convolutions).

    The colours (`cfg.colours`): the face itself area-averaged to a few pixels a side, stretched over the
    map and joined to it. f is an identity network: its map keeps where the eyes and the mouth are, not
    what colour the hair, the skin or the background is, so g drew every source face in colours guessed
    from the target domain's one person. A coarse thumbnail carries the colours and no detail to copy
    (the look still comes from the three-way D); on target images L_TID teaches g to read it. Alone it
    drew closer to the domain but flickered more; with L_COLOUR and a stronger L_TV it drew closer and
    steadier on three seeds (README), so the training gives g its map's size of colours by default."""

    def __init__(self, cfg: DTNConfig):
        super().__init__()
        self.cfg = cfg
        width = cfg.width
        joined = cfg.feature_channels + (cfg.vector_dim if cfg.use_vector else 0) + (3 if cfg.colours else 0)
        self.stem = nn.Sequential(nn.Conv2d(joined, width, 3, padding=1), nn.LeakyReLU(0.2))
        blocks, c = [], width
        for _ in range(cfg.doublings):
            blocks.append(_up_block(c, max(32, c // 2)))
            c = max(32, c // 2)
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Conv2d(c, 3, 1)

    def forward(
        self, feature_map: torch.Tensor, vector: torch.Tensor, faces: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The drawings from f's reading (map, vector) of `faces` [B, 3, R, R] in -1..1, which g reads
        for their colours where its config says so."""
        s = self.cfg.feature_size
        if feature_map.shape[-2:] != (s, s):
            feature_map = F.adaptive_avg_pool2d(feature_map, s)
        if self.cfg.use_vector:
            feature_map = torch.cat([feature_map, vector[:, :, None, None].expand(-1, -1, s, s)], 1)
        if self.cfg.colours:
            if faces is None:
                raise ValueError("this g draws from the faces' colours: give it the faces")
            colours = F.adaptive_avg_pool2d(faces.to(feature_map.dtype), self.cfg.colours)
            feature_map = torch.cat([feature_map, F.interpolate(colours, size=(s, s), mode="nearest")], 1)
        x = self.blocks(self.stem(feature_map))
        return torch.tanh(self.to_rgb(x))


class ThreeWayDiscriminator(nn.Module):
    """D: an image [B, 3, R, R] in -1..1 -> logits over (g's drawing of a source face, g's drawing of a
    target image, a real target image): [B, 3] for the whole image (the paper's D: stride-2 convolutions
    to 4x4, then a linear layer), or [B, 3, P, P] with `patch` P, one verdict per patch, each seeing about
    a third of the face (stride-2 convolutions down to P x P, then a 1x1 convolution).

    Why patches: a target domain made from few people (the project's: one person's crops, cartoon-filtered)
    lets a whole-image D learn "a real target image is that person", and g then draws that person for
    every source face, which L_CONST through the same f can be fooled into accepting. A D that sees only
    patches judges the look (flat paint, outlines), not who it is (after PatchGAN, Isola et al. 2017)."""

    def __init__(self, resolution: int, width: int = 16, patch: int = 0):
        super().__init__()
        if patch and (patch < 2 or resolution % patch or patch > resolution // 2):
            raise ValueError(
                f"a {patch} x {patch} patch grid does not divide {resolution} px by a power of 2"
            )
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.2)]
        c, size = width, resolution
        while size > (patch or 4):
            layers += [nn.Conv2d(c, min(256, c * 2), 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c, size = min(256, c * 2), size // 2
        self.features = nn.Sequential(*layers)
        self.patch = patch
        self.out: nn.Module = nn.Conv2d(c, 3, 1) if patch else nn.Linear(c * 16, 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.features(images)
        return self.out(x) if self.patch else self.out(x.flatten(1))


def _labelled(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of logits [N, 3] or [N, 3, P, P] with one label per image [N]."""
    if logits.ndim == 4:
        label = label[:, None, None].expand(-1, *logits.shape[2:])
    return F.cross_entropy(logits, label.to(logits.device))


# what a cell of the crop's grid off dlib's chip reads: grid_sample's padding
OFF_CHIP = {"zero": "zeros", "edge": "border"}


class ChipFeatures(nn.Module):
    """f from dlib's descriptor network: its chip cut from the aligned crop by one fixed affine (`transform`
    [2, 3], crop pixels -> chip pixels; `cut` is descriptor.extract_chips), then its `map_size` map and its
    descriptor. Frozen; images come in -1..1.

    `on_crop`: the map is resampled onto the crop's own grid (`map_on_crop`), so that each of its cells
    describes the part of the crop that g draws at that place. On the chip's grid it is not: the chip is
    the face from brows to chin, the middle 44 px of a 64 px aligned crop and 17 px below its top, and g,
    which draws the whole crop from the map stretched over it, must then put the hair and the background
    where the map speaks of the forehead and the cheeks. `off_chip`: what the crop's cells off the chip
    read, "zero" or "edge" (the chip's nearest edge carried outward: no step where the chip ends)."""

    def __init__(
        self,
        network: nn.Module,
        transform: np.ndarray,
        cut: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
        chip_size: int = 150,
        map_size: int = 8,
        on_crop: bool = False,
        off_chip: str = "zero",
    ):
        super().__init__()
        if off_chip not in OFF_CHIP:
            raise ValueError(f"off_chip is one of {', '.join(OFF_CHIP)}, not {off_chip!r}")
        self.network = network.requires_grad_(False).eval()
        self.register_buffer("transform", torch.as_tensor(np.asarray(transform), dtype=torch.float32))
        self.cut, self.chip_size, self.map_size, self.on_crop = cut, chip_size, map_size, on_crop
        self.off_chip = off_chip

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = (images + 1) * 127.5
        chips = self.cut(rgb, self.transform.expand(images.shape[0], -1, -1), self.chip_size)
        feature_map, vector = self.network.features(chips.to(images.dtype), self.map_size)
        if self.on_crop:
            feature_map = map_on_crop(
                feature_map, self.transform, self.chip_size, images.shape[-1], off_chip=self.off_chip
            )
        return feature_map, vector


def map_on_crop(
    feature_map: torch.Tensor, transform: torch.Tensor, chip_size: int, crop_size: int, off_chip: str = "zero"
) -> torch.Tensor:
    """A map of the chip [B, C, M, M] resampled onto the crop's grid at the power of two at most M a side
    (bilinear at each cell's centre, taken through `transform`, crop pixels -> chip pixels; where the cell
    is off the chip, zero or, with `off_chip` "edge", the chip's nearest edge)."""
    b, n = len(feature_map), 2 ** int(math.log2(feature_map.shape[-1]))
    centres = (torch.arange(n, dtype=torch.float32, device=feature_map.device) + 0.5) * crop_size / n - 0.5
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    t = transform.to(feature_map.device, torch.float32)
    chip = torch.stack([t[i, 0] * x + t[i, 1] * y + t[i, 2] for i in range(2)], -1)
    grid = ((chip + 0.5) / chip_size * 2 - 1)[None].expand(b, -1, -1, -1).to(feature_map.dtype)
    padding = OFF_CHIP[off_chip]
    return F.grid_sample(feature_map, grid, mode="bilinear", padding_mode=padding, align_corners=False)


# ---------------------------------------------------------------------------------------------------
# The losses


def discriminator_loss(
    D: nn.Module, drawn_source: torch.Tensor, drawn_target: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """L_D: the three-way cross-entropy with the paper's labels (g's drawings detached)."""
    logits = D(torch.cat([drawn_source.detach(), drawn_target.detach(), target]))
    labels = torch.cat(
        [
            torch.full((len(drawn_source),), D_SOURCE_DRAWN),
            torch.full((len(drawn_target),), D_TARGET_DRAWN),
            torch.full((len(target),), D_TARGET_REAL),
        ]
    )
    return _labelled(logits, labels)


def generator_gan_loss(D: nn.Module, drawn_source: torch.Tensor, drawn_target: torch.Tensor) -> torch.Tensor:
    """L_GANG: both of g's drawings classified as real target images."""
    logits = D(torch.cat([drawn_source, drawn_target]))
    return _labelled(logits, torch.full((len(logits),), D_TARGET_REAL))


def const_loss(
    f_source: tuple[torch.Tensor, torch.Tensor],
    f_drawn: tuple[torch.Tensor, torch.Tensor],
    spatial_weight: float,
) -> torch.Tensor:
    """L_CONST: f of the drawing equals f of the source face (squared error of the vectors, plus the
    maps' mean squared error weighted by `spatial_weight`)."""
    (map_x, vec_x), (map_d, vec_d) = f_source, f_drawn
    loss = (vec_d - vec_x.detach()).square().sum(1).mean()
    if spatial_weight:
        loss = loss + spatial_weight * (map_d - map_x.detach()).square().mean()
    return loss


def tid_loss(drawn_target: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_TID: g(f(t)) reproduces t (mean squared error, in -1..1)."""
    return (drawn_target - target).square().mean()


def tv_loss(images: torch.Tensor) -> torch.Tensor:
    """L_TV: mean absolute difference of neighbouring pixels."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return dx + dy


def colour_loss(drawn_source: torch.Tensor, source: torch.Tensor, size: int) -> torch.Tensor:
    """L_COLOUR (not in the paper): the drawing's colours, area-averaged to `size` x `size`, stay the source
    face's (mean squared error in -1..1). f is an identity network, blind to colour, so L_CONST lets g
    paint a source face in the target domain's colours (its one person's skin, hair and background); a
    domain that keeps colours and changes their rendering (flat paint, outlines, caricature) wants them
    kept, the training's default; one that changes colours (green emoji skin) wants its weight at 0."""
    return (F.adaptive_avg_pool2d(drawn_source, size) - F.adaptive_avg_pool2d(source, size)).square().mean()


def draw(f: nn.Module, g: StyleDrawer, images: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """g(f(images)) and f(images) (f frozen: no gradient to it)."""
    with torch.no_grad():
        features = f(images)
    return g(*features, images), features
