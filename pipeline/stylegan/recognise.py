"""Attribute recognisers for one generator: a small CNN that reads a face's attributes from its pixels.

Why a network: the latent-to-latent mapper (L2L, Khodadadeh et al. 2022) is trained through the frozen
generator with frozen recognisers that judge whether the edit asked for happened and whether the other
attributes stayed. dlib's landmarks are neither differentiable nor found on every face; a CNN trained on
the generator's own faces (on those where dlib found landmarks) reads the same measures from pixels, on
every face, with gradients.

Two kinds of attribute: a "measure" (`faces.attributes.GEOMETRIC_ATTRIBUTES`: head pose in degrees,
mouth, eyes and brows as scale-free ratios), regressed; a "label" (glasses), learnt from folders of crops
with and without it, read as a probability. `recognise_train.py` trains them and refuses any that is no
better than chance on held-out faces.

A file is a `torch.save` of tensors and plain containers, read with `weights_only`: {"format":
"vfx-recognisers", "version": 1, "config": {...}, "state": state_dict, "meta": {"generator_sha256": ...,
"attributes": {name: {"kind", "unit", "held_out": figures, ...}}, ...}}.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.devices import resolve_device
from pipeline.files import save_torch_atomic
from pipeline.models import ModelError, load_torch_file
from pipeline.stylegan.encoder import MAX_INPUT, ResidualStage, _conv, default_widths, final_size

FORMAT = "vfx-recognisers"
VERSION = 1
RECOGNISERS_FILE = "recognisers.pt"
KINDS = ("measure", "label")
HIDDEN = 256


def recognisers_file(path: Path) -> Path:
    """A recognisers file, or the one inside a model folder."""
    return path / RECOGNISERS_FILE if path.is_dir() else path


# ---------------------------------------------------------------------------------------------------
# The network


def default_channels(input_size: int) -> tuple[int, ...]:
    """Half the encoder's widths (16, 32, 64, 128, then 128): it reads a few numbers, not a W+, and at
    64 px a CPU takes a third of the time for a step (0.18 s for 32 faces against 0.55 s)."""
    return tuple(max(8, c // 2) for c in default_widths(input_size))


@dataclass(frozen=True)
class RecogniserConfig:
    resolution: int  # the generator's
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    input_size: int = 0  # 0: min(resolution, 256): larger faces are area-reduced to it
    channels: tuple[int, ...] = field(default=())  # stem, then each stage; empty: default_channels

    def __post_init__(self) -> None:
        log2 = math.log2(self.resolution)
        if log2 != int(log2) or not 32 <= self.resolution <= 1024:
            raise ValueError(f"resolution {self.resolution} is not a power of two from 32 to 1024")
        if len(self.names) != len(self.kinds) or not self.names:
            raise ValueError(f"{len(self.names)} names for {len(self.kinds)} kinds; give one kind a name")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"attribute names repeat: {', '.join(self.names)}")
        if bad := [k for k in self.kinds if k not in KINDS]:
            raise ValueError(f"attribute kinds {bad}: each is one of {', '.join(KINDS)}")
        if not self.input_size:
            object.__setattr__(self, "input_size", min(self.resolution, MAX_INPUT))
        if not self.channels:
            object.__setattr__(self, "channels", default_channels(self.input_size))
        stages = int(math.log2(self.input_size // final_size(self.input_size)))
        if len(self.channels) != stages + 1:
            raise ValueError(f"{len(self.channels)} channel widths for a stem and {stages} stages")

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "names": list(self.names),
            "kinds": list(self.kinds),
            "channels": list(self.channels),
        }

    @classmethod
    def from_dict(cls, d: dict) -> RecogniserConfig:
        return cls(
            resolution=int(d["resolution"]),
            names=tuple(d["names"]),
            kinds=tuple(d["kinds"]),
            input_size=int(d.get("input_size", 0)),
            channels=tuple(d.get("channels", ())),
        )


class AttributeRecogniser(nn.Module):
    """Faces [B, 3, R, R] in [-1, 1] -> attributes [B, K] in their units: a measure in degrees or as a
    ratio, a label as a probability in 0..1. The backbone is the encoder's (residual stride-2 stages, no
    normalisation layers, so a face's reading never depends on its batch) down to 4x4 (8x8 from 128 px
    inputs), flattened so pose keeps its spatial layout, then two linear layers."""

    def __init__(self, cfg: RecogniserConfig):
        super().__init__()
        self.cfg = cfg
        widths = cfg.channels
        self.stem = _conv(3, widths[0])
        self.stages = nn.ModuleList(ResidualStage(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        side = final_size(cfg.input_size)
        self.hidden = nn.Linear(widths[-1] * side * side, HIDDEN)
        self.out = nn.Linear(HIDDEN, len(cfg.names))
        nn.init.zeros_(self.out.bias)
        # measures: value = centre + spread * raw; set from the training set (a label's stay 0 and 1)
        self.register_buffer("centre", torch.zeros(len(cfg.names)))
        self.register_buffer("spread", torch.ones(len(cfg.names)))
        self.register_buffer("is_label", torch.tensor([k == "label" for k in cfg.kinds]))

    @property
    def names(self) -> list[str]:
        return list(self.cfg.names)

    @property
    def kinds(self) -> list[str]:
        return list(self.cfg.kinds)

    def raw(self, images: torch.Tensor) -> torch.Tensor:
        """[B, K]: the measures centred and scaled (what the loss sees), the labels' logits."""
        size = self.cfg.input_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ValueError(f"images of shape {list(images.shape)}; give [B, 3, R, R] in -1..1")
        if images.shape[2] < size:
            raise ValueError(f"{images.shape[2]} px faces; these recognisers read {size} px or larger")
        x = images.to(self.centre.device, torch.float32)
        if x.shape[2] > size:
            x = F.interpolate(x, size=(size, size), mode="area")
        x = F.leaky_relu(self.stem(x), 0.2)
        for stage in self.stages:
            x = stage(x)
        return self.out(F.leaky_relu(self.hidden(x.flatten(1)), 0.2))

    def to_units(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.where(self.is_label, torch.sigmoid(raw), self.centre + self.spread * raw)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.to_units(self.raw(images))


def save_recognisers(path: Path, model: AttributeRecogniser, meta: dict) -> None:
    """Write the recognisers (atomically); `meta` must carry "generator_sha256"."""
    if "generator_sha256" not in meta:
        raise ValueError("recognisers' meta needs the generator's sha256 (generator_sha256)")
    data = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.cfg.to_dict(),
        "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    save_torch_atomic(Path(path), data)


def load_recognisers(
    path: str | Path, device: torch.device | str | None = None
) -> tuple[AttributeRecogniser, dict]:
    """Recognisers (a file or a folder's recognisers.pt), frozen in eval mode, and their meta: the
    generator's sha256, each attribute's kind, unit, centre, spread and held-out figures."""
    path = recognisers_file(Path(path))
    if not path.is_file():
        raise ModelError(f"{path}: recognisers file not found (vfx train recognisers makes one)")
    data = load_torch_file(path, "recognisers file", ModelError)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{path}: not a recognisers file (vfx train recognisers makes them)")
    if data.get("version") != VERSION:
        raise ModelError(f"{path}: {FORMAT} version {data.get('version')} is not version {VERSION}")
    try:
        model = AttributeRecogniser(RecogniserConfig.from_dict(dict(data["config"])))
        model.load_state_dict(data["state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"{path}: a damaged recognisers file ({type(e).__name__}: {reason})") from None
    model = model.to(resolve_device(device)).eval().requires_grad_(False)
    return model, dict(data.get("meta") or {})
