"""A learned latent-to-latent mapper (L2L): W+ and the wanted change of named attributes in, the edited W+
out, in one pass, for several attributes at once and keeping the person.

The design follows Khodadadeh et al. 2022 ("Latent to Latent: A Learned Mapper for Identity Preserving
Editing of Multiple Face Attributes in StyleGAN-generated Images", WACV): a fully connected network takes
the latent and the vector of attribute changes and returns the edited latent; it is trained offline through
the frozen generator, with frozen attribute recognisers and a face-recognition network judging the
generator's faces (see mapper_train.py). As in StyleCLIP's mapper and pSp, W+ is split into coarse,
medium and fine layers (encoder.style_groups), each group with its own network shared by its layers.

Two choices of ours. The change enters in attribute units (degrees of yaw, mouth opening over the
inter-ocular distance, a label's probability) divided by each attribute's typical scale (the spread the
recognisers measured on the generator's faces), so that one network sees every attribute at a similar
size; the scales are stored with the mapper. And the edit is a sum over attributes of the change times a
direction that the network draws for this latent and this whole change: offset(w, d) = sum_k d_k v_k(w, d).
Any smooth edit that is zero without a change can be written so, and this form makes an edit by zero
return its input exactly (0 times a finite vector is 0): a frame outside an edit's ramp is untouched.

A mapper belongs to one generator and one set of recognisers: its file records both checksums, and
`load_mapper` refuses another generator. A file is a `torch.save` of tensors and plain containers, read with
`weights_only`: {"format": "vfx-mapper", "version": 1, "config": {...}, "state": state_dict,
"generator_sha256": "...", "recognisers_sha256": "...", "attributes": {name: {"unit", "scale"}},
"meta": {...}}.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import models
from pipeline.errors import PipelineError
from pipeline.files import save_torch_atomic
from pipeline.models import MAPPER_FILE, ModelError, load_torch_file, mapper_file, sha256_file
from pipeline.stylegan.encoder import style_groups
from pipeline.stylegan.formats import MAPPER_FORMAT as FORMAT
from pipeline.stylegan.formats import MAPPER_REMEDY as REMEDY
from pipeline.stylegan.formats import MAPPER_VERSION as VERSION
from pipeline.stylegan.formats import refuse_other_generator
from pipeline.stylegan.generator import Generator

__all__ = [
    "FORMAT",
    "MAPPER_FILE",
    "VERSION",
    "LatentMapper",
    "MapperConfig",
    "change_tensor",
    "edit_latents",
    "load_mapper",
    "mapper_file",
    "save_mapper",
]

# The heads' last weights start at this std over sqrt(fan in): a change of one typical scale then moves
# each layer by about a tenth of w's spread in a random direction, which the training turns into the edit.
HEAD_INIT = 0.1


@dataclass(frozen=True)
class MapperConfig:
    names: tuple[str, ...]  # the attributes, in the order of the change vector
    num_ws: int
    w_dim: int
    units: tuple[str, ...] = field(default=())  # per attribute, for people ("degrees", "ratio", ...)
    hidden: int = 0  # width of each group's network; 0: w_dim
    depth: int = 2  # hidden layers of each group's network

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a mapper needs at least one attribute")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"attribute names {list(self.names)} repeat")
        if not self.units:
            object.__setattr__(self, "units", ("",) * len(self.names))
        if len(self.units) != len(self.names):
            raise ValueError(f"{len(self.units)} units for {len(self.names)} attributes")
        if not self.hidden:
            object.__setattr__(self, "hidden", self.w_dim)
        if self.num_ws < 1 or self.w_dim < 1 or self.depth < 1:
            raise ValueError(f"mapper sizes num_ws {self.num_ws}, w_dim {self.w_dim}, depth {self.depth}")

    @classmethod
    def for_generator(cls, G: Generator, names, **changes) -> MapperConfig:
        return cls(names=tuple(names), num_ws=G.num_ws, w_dim=G.cfg.w_dim, **changes)

    def to_dict(self) -> dict:
        return {**asdict(self), "names": list(self.names), "units": list(self.units)}

    @classmethod
    def from_dict(cls, d: dict) -> MapperConfig:
        return cls(**{**d, "names": tuple(d["names"]), "units": tuple(d.get("units", ()))})


class GroupNet(nn.Module):
    """One style group's network: per W+ layer, [normalised w, normalised change] -> a direction per
    attribute [K, w_dim] (in units of w's spread per dimension). Fully connected with leaky ReLU; the last
    layer starts small (HEAD_INIT)."""

    def __init__(self, w_dim: int, count: int, hidden: int, depth: int):
        super().__init__()
        widths = [w_dim + count] + [hidden] * depth
        self.body = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        for layer in self.body:
            nn.init.kaiming_normal_(layer.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)
        self.head = nn.Linear(hidden, count * w_dim)
        nn.init.normal_(self.head.weight, std=HEAD_INIT / math.sqrt(hidden))
        nn.init.zeros_(self.head.bias)
        self.count, self.w_dim = count, w_dim

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """x [B, n, w_dim], d [B, K] -> directions [B, n, K, w_dim]."""
        h = torch.cat([x, d[:, None].expand(-1, x.shape[1], -1)], dim=-1)
        for layer in self.body:
            h = F.leaky_relu(layer(h), 0.2)
        return self.head(h).unflatten(-1, (self.count, self.w_dim))


class LatentMapper(nn.Module):
    """f(W+ [B, num_ws, w_dim], change [B, K] in attribute units) -> edited W+ [B, num_ws, w_dim]."""

    def __init__(self, cfg: MapperConfig):
        super().__init__()
        self.cfg = cfg
        k = len(cfg.names)
        # a generator from 32 px up has at least 8 layers; a smaller W+ (tests) is one group
        self.groups = style_groups(cfg.num_ws) if cfg.num_ws >= 8 else (cfg.num_ws,)
        self.nets = nn.ModuleList(GroupNet(cfg.w_dim, k, cfg.hidden, cfg.depth) for _ in self.groups)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        self.register_buffer("w_std", torch.ones(cfg.w_dim))
        self.register_buffer("scales", torch.ones(k))  # each attribute's typical scale, in its units

    @property
    def names(self) -> list[str]:
        return list(self.cfg.names)

    @classmethod
    @torch.no_grad()
    def for_generator(
        cls, G: Generator, scales: Mapping[str, float], units: Mapping[str, str] | None = None, **changes
    ) -> LatentMapper:
        """A new (untrained) mapper for G editing the attributes of `scales` (name -> typical scale, in
        the attribute's units): it copies G's average w and w's spread per dimension, which normalise
        the latents it reads and scale the offsets it writes."""
        names = list(scales)
        bad = [n for n in names if not (math.isfinite(scales[n]) and scales[n] > 0)]
        if bad:
            raise ValueError(f"typical scales of {bad} are not positive numbers: {[scales[n] for n in bad]}")
        units = tuple((units or {}).get(n, "") for n in names)
        mapper = cls(MapperConfig.for_generator(G, names, units=units, **changes))
        w = G.sample_w(10000).float().cpu()
        mapper.w_avg.copy_(G.w_avg.detach().cpu())
        mapper.w_std.copy_(w.std(dim=0).clamp_min(1e-8))
        mapper.scales.copy_(torch.tensor([float(scales[n]) for n in names]))
        return mapper.to(G.w_avg.device)

    def offsets(self, w_plus: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        """The edit f(w, d) - w: sum over attributes of d_k (in typical scales) times the direction the
        group's network draws for this layer of w and this change."""
        cfg = self.cfg
        if w_plus.ndim != 3 or w_plus.shape[1:] != (cfg.num_ws, cfg.w_dim):
            raise ValueError(
                f"W+ of shape {list(w_plus.shape)}; the mapper takes [B, {cfg.num_ws}, {cfg.w_dim}]"
            )
        if change.shape != (w_plus.shape[0], len(cfg.names)):
            raise ValueError(
                f"changes of shape {list(change.shape)} for {w_plus.shape[0]} latents and "
                f"{len(cfg.names)} attributes ({', '.join(cfg.names)})"
            )
        x = (w_plus - self.w_avg) / self.w_std
        d = change.to(x) / self.scales
        parts, first = [], 0
        for net, count in zip(self.nets, self.groups, strict=True):
            directions = net(x[:, first : first + count], d)  # [B, n, K, w_dim]
            parts.append(torch.einsum("bnkc,bk->bnc", directions, d))
            first += count
        return torch.cat(parts, dim=1) * self.w_std

    def forward(self, w_plus: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        return w_plus + self.offsets(w_plus, change)


def change_tensor(
    mapper: LatentMapper, changes: Mapping[str, float] | torch.Tensor, count: int
) -> torch.Tensor:
    """The change vector [count, K] in attribute units from {name: amount} (attributes not named: 0),
    or from a tensor [K] (the same for every latent) or [count, K]. Unknown names, non-finite amounts and
    wrong shapes are refused naming what the mapper edits."""
    names = mapper.names
    if isinstance(changes, torch.Tensor):
        change = changes.detach().float().cpu()
        if change.ndim == 1:
            change = change[None].expand(count, -1)
        if change.shape != (count, len(names)):
            raise PipelineError(
                f"a change of shape {list(changes.shape)}; this mapper takes [{len(names)}] or "
                f"[{count}, {len(names)}] ({', '.join(names)})"
            )
    else:
        unknown = [n for n in changes if n not in names]
        if unknown:
            raise PipelineError(f"unknown attribute {unknown[0]!r}: this mapper edits {', '.join(names)}")
        row = torch.zeros(len(names))
        for name, amount in changes.items():
            if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
                raise PipelineError(f"the change of {name} is {amount!r}; a number is needed")
            row[names.index(name)] = float(amount)
        change = row[None].expand(count, -1)
    if not torch.isfinite(change).all():
        raise PipelineError(f"a change that is not finite: {changes!r}")
    return change


@torch.no_grad()
def edit_latents(
    mapper: LatentMapper, w_plus: torch.Tensor, changes: Mapping[str, float] | torch.Tensor
) -> torch.Tensor:
    """W+ [N, num_ws, w_dim] edited by `changes` (see change_tensor), in attribute units: the one way to
    apply a mapper. The result is on w_plus's device; an edit by zero returns w_plus exactly."""
    mapper.eval()
    change = change_tensor(mapper, changes, w_plus.shape[0])
    device = mapper.w_avg.device
    out = mapper(w_plus.to(device, torch.float32), change.to(device))
    return out.to(w_plus.device, w_plus.dtype)


# ---------------------------------------------------------------------------------------------------
# Files


def save_mapper(
    path: Path,
    mapper: LatentMapper,
    generator_sha256: str,
    recognisers_sha256: str,
    meta: dict | None = None,
) -> None:
    """Write the mapper (atomically) with the checksums of the generator and the recognisers it was
    trained with, and each attribute's unit and typical scale."""
    attributes = {
        name: {"unit": unit, "scale": float(scale)}
        for name, unit, scale in zip(mapper.cfg.names, mapper.cfg.units, mapper.scales.tolist(), strict=True)
    }
    data = {
        "format": FORMAT,
        "version": VERSION,
        "config": mapper.cfg.to_dict(),
        "state": {k: v.detach().cpu() for k, v in mapper.state_dict().items()},
        "generator_sha256": generator_sha256,
        "recognisers_sha256": recognisers_sha256,
        "attributes": attributes,
        "meta": meta or {},
    }
    save_torch_atomic(Path(path), data)


def read_mapper_file(path: Path) -> dict:
    """The file's contents, checked to be a mapper of our format; anything else is a one-line error."""
    if not path.is_file():
        raise ModelError(f"{path}: mapper file not found (vfx train mapper makes one)")
    data = load_torch_file(path, "mapper file", ModelError)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{path}: not a latent mapper file (vfx train mapper makes them)")
    if data.get("version") != VERSION:
        raise ModelError(f"{path}: {FORMAT} version {data.get('version')} is not version {VERSION}")
    return data


def check_fits(mapper: LatentMapper, G: Generator, where: Path | str) -> None:
    """Refuse a mapper whose W+ is not the generator's (a file swapped behind the checksum)."""
    c = mapper.cfg
    if (c.num_ws, c.w_dim) != (G.num_ws, G.cfg.w_dim):
        raise ModelError(
            f"{where}: a mapper for W+ [N, {c.num_ws}, {c.w_dim}]; this generator's W+ is "
            f"[N, {G.num_ws}, {G.cfg.w_dim}]"
        )


def load_mapper(
    path: str | Path, generator_file: str | Path | None = None, G: Generator | None = None
) -> tuple[LatentMapper, dict]:
    """A mapper file (or a folder's mapper.pt) and its metadata (with "generator_sha256",
    "recognisers_sha256" and "attributes": {name: {"unit", "scale"}}).

    With `generator_file` (a generator file or folder), a generator other than the one it was trained
    for is refused by checksum: its W+ means nothing to another generator. With `G`, its sizes are
    checked too.
    """
    path = mapper_file(Path(path))
    data = read_mapper_file(path)
    recorded = str(data.get("generator_sha256", ""))
    if generator_file is not None:
        gen = models.generator_file(Path(generator_file))
        try:
            actual = sha256_file(gen)
        except OSError as e:
            raise ModelError(f"{gen}: cannot read the generator: {e.strerror or e}") from None
        refuse_other_generator(path, recorded, gen, actual, REMEDY)
    try:
        mapper = LatentMapper(MapperConfig.from_dict(dict(data["config"])))
        mapper.load_state_dict(data["state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"{path}: a damaged mapper file ({type(e).__name__}: {reason})") from None
    if G is not None:
        check_fits(mapper, G, path)
    meta = {
        **dict(data.get("meta") or {}),
        "generator_sha256": recorded,
        "recognisers_sha256": str(data.get("recognisers_sha256", "")),
        "attributes": dict(data.get("attributes") or {}),
    }
    return mapper.eval(), meta
