"""Training a latent mapper (mapper.py) for one generator, judged by attribute recognisers and a
face-recognition network, as L2L (Khodadadeh et al. 2022) trains it: no labelled pairs, only losses.

Each step draws latents from the generator's mapping network (w truncated by a psi drawn per face,
broadcast to W+ with a little noise per layer, so the mapper sees W+ and not only W) and, per latent, a
change for a random subset of the attributes (at least one; the others 0), uniform within +-2 typical
scales. The mapper edits the latents and the frozen generator draws the original and the edited faces.
Four losses, as in the paper:
- attribute: the recognisers' reading of the edited face minus that of the original equals the asked
  change on the asked attributes and 0 on every other attribute the recognisers read (Huber, in typical
  scales, averaged over attributes);
- identity: the face-recognition descriptors of the edited and the original face are close (Euclidean
  distance, dlib's convention: the same person is below 0.6);
- cycle: editing by +d then by -d returns the latent (squared W+ error over w's squared spread);
- neighbourhood: the edited latent stays near the original (squared W+ distance over w's squared spread).
The paper's weights are not used: its units are not ours. Ours are in MapperSettings.

The losses are plain functions of tensors and modules, so any `attribute_fn` (images in [-1, 1] ->
[B, K] in attribute units) and `identity_fn` (images -> [B, D]) can judge: after the merge, the
recognisers of recognise.py and dlib's descriptor network cutting its chip out of the generator's aligned
crop (ChipIdentity), wired by `default_judges`.

A model folder holds `mapper.pt` (what edits need: the moving average of the trained weights, as
StyleGAN keeps G_ema), `training.pt` (mapper, its average, optimiser, random states, history, for an
exact `--resume`), `preview.png` (rows: an attribute on a face; columns: the amount in
typical scales) and `loss.png`. Every file is replaced whole; checkpoints every few minutes and on Ctrl-C.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.curves import labelled, loss_curve, write_png
from pipeline.devices import resolve_device
from pipeline.errors import PipelineError
from pipeline.files import refuse_file_at, save_torch_atomic
from pipeline.models import (
    ENCODER_FILE,
    GENERATOR_FILE,
    MAPPER_FILE,
    generator_file,
    load_torch_file,
    sha256_file,
)
from pipeline.stylegan.checkpoints import CheckpointError, load_generator
from pipeline.stylegan.formats import refuse_other_generator
from pipeline.stylegan.generator import Generator, image_grid, to_uint8
from pipeline.stylegan.mapper import REMEDY, LatentMapper, MapperConfig, check_fits, save_mapper
from pipeline.stylegan.project import w_stats
from pipeline.stylegan.recognise import recognisers_file
from pipeline.stylegan.weights import with_loss_weights

TRAINING_NAME = "training.pt"
TRAINING_FORMAT = "vfx-mapper-training"
TRAINING_VERSION = 1
CHIP_SIZE = 150  # dlib's face chip
LOSSES = ("attribute", "identity", "cycle", "neighbourhood")


@dataclass
class MapperSettings:
    batch: int = 8
    lr: float = 5e-4  # Adam
    attribute_weight: float = 1.0  # Huber of the attribute error in typical scales, mean over attributes
    identity_weight: float = 1.0  # descriptor distance (dlib's: same person below 0.6)
    cycle_weight: float = 1.0  # squared W+ error of edit(+d) then edit(-d), over w's squared spread
    neighbourhood_weight: float = 0.1  # squared W+ distance of the edit, over w's squared spread
    attributes: tuple[str, ...] = ()  # the attributes the mapper edits; empty: all the recognisers read
    edit_share: float = 0.5  # each attribute is asked of a latent with this probability (one at least)
    max_change: float = 2.0  # amounts uniform within +- this many typical scales
    psi: tuple[float, float] = (0.5, 1.0)  # truncation drawn per latent from this range
    jitter: float = 0.05  # noise added per W+ layer, in units of w's spread per dimension
    hidden: int = 0  # the mapper's width; 0: w_dim
    depth: int = 2  # its hidden layers per style group
    seed: int = 0
    # the saved mapper is an exponential moving average of the trained one (as StyleGAN's G_ema, Karras et
    # al. 2019): with batches of 8 random edits the raw weights wander from step to step; one training's
    # raw weights at 4300 and 8700 steps scored 0.43-0.51x and 0.58-0.65x in bench/l2l.py (mouth open).
    # Half-life in steps, at most ema_rampup times the steps so far, so a short run is not its start
    ema_half_life: float = 300.0
    ema_rampup: float = 0.1
    checkpoint_minutes: float = 5.0
    snapshot_minutes: float = 5.0
    preview_faces: int = 2
    preview_amounts: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)  # in typical scales

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "attributes": list(self.attributes),
            "psi": list(self.psi),
            "preview_amounts": list(self.preview_amounts),
        }

    def with_weights(self, weights: dict[str, float]) -> MapperSettings:
        """These settings with some weights replaced ({"identity": 0.5, ...}); see with_loss_weights."""
        return with_loss_weights(self, weights, LOSSES)

    def weights(self) -> dict[str, float]:
        return {
            "attribute": self.attribute_weight,
            "identity": self.identity_weight,
            "cycle": self.cycle_weight,
            "neighbourhood": self.neighbourhood_weight,
        }


@dataclass
class Judges:
    """What the mapper is trained against: the recognisers (images in [-1, 1] -> [B, K] in attribute
    units, for `names` in order), each attribute's typical scale and unit, and the identity network
    (images -> [B, D]; None: no identity loss)."""

    attribute_fn: nn.Module
    names: list[str]
    scales: dict[str, float]
    identity_fn: nn.Module | None = None
    units: dict[str, str] = field(default_factory=dict)

    def to(self, device: torch.device) -> Judges:
        for fn in (self.attribute_fn, self.identity_fn):
            if fn is not None:
                fn.to(device).eval().requires_grad_(False)
        return self

    def scale_tensor(self) -> torch.Tensor:
        return torch.tensor([float(self.scales[n]) for n in self.names])


@dataclass
class MapperState:
    mapper: LatentMapper
    opt: torch.optim.Optimizer
    generator_sha256: str
    recognisers_sha256: str
    ema: LatentMapper  # the moving average of `mapper`: what is saved, previewed and used
    step: int = 0
    seconds: float = 0.0  # training time over all runs
    history: list[dict] = field(default_factory=list)


def edited_attributes(judges: Judges, settings: MapperSettings) -> list[str]:
    """The attributes the mapper edits: settings.attributes (each one the recognisers read), or all."""
    names = list(settings.attributes) or list(judges.names)
    unknown = [n for n in names if n not in judges.names]
    if unknown:
        raise PipelineError(
            f"--attributes: {', '.join(unknown)} not read by the recognisers ({', '.join(judges.names)})"
        )
    if len(set(names)) != len(names):
        raise PipelineError(f"--attributes: {', '.join(names)} names one twice")
    return names


def new_state(
    G: Generator, judges: Judges, generator_sha256: str, recognisers_sha256: str, settings: MapperSettings
) -> MapperState:
    torch.manual_seed(settings.seed)
    names = edited_attributes(judges, settings)
    mapper = LatentMapper.for_generator(
        G,
        {n: judges.scales[n] for n in names},
        judges.units,
        hidden=settings.hidden,
        depth=settings.depth,
    )
    opt = torch.optim.Adam(mapper.parameters(), lr=settings.lr, betas=(0.9, 0.999))
    ema = copy.deepcopy(mapper).eval().requires_grad_(False)
    return MapperState(mapper, opt, generator_sha256, recognisers_sha256, ema)


@torch.no_grad()
def update_ema(state: MapperState, s: MapperSettings) -> None:
    """Move the average toward the mapper by one step of the half-life (ramped up over the start)."""
    half_life = min(s.ema_half_life, state.step * s.ema_rampup) if s.ema_rampup else s.ema_half_life
    beta = 0.5 ** (1 / max(half_life, 1e-8))
    for p_ema, p in zip(state.ema.parameters(), state.mapper.parameters(), strict=True):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(state.ema.buffers(), state.mapper.buffers(), strict=True):
        b_ema.copy_(b)


# ---------------------------------------------------------------------------------------------------
# Samples and losses


def sample_latents(G: Generator, n: int, s: MapperSettings, w_std: torch.Tensor) -> torch.Tensor:
    """W+ [n, num_ws, w_dim] of the generator's own faces: w truncated by a psi drawn per face from
    s.psi, repeated per layer, plus normal noise of s.jitter times w's spread per dimension on each
    layer. Drawn on the CPU from torch's global stream: the same latents on any device, an exact resume."""
    device = G.w_avg.device
    z = torch.randn(n, G.cfg.z_dim)
    psi = torch.empty(n).uniform_(*s.psi)
    noise = torch.randn(n, G.num_ws, G.cfg.w_dim)
    with torch.no_grad():
        w = G.w_avg.lerp(G.mapping(z.to(device)), psi[:, None].to(device))
    return w[:, None] + s.jitter * w_std.to(device) * noise.to(device)


def sample_changes(n: int, count: int, s: MapperSettings) -> torch.Tensor:
    """[n, count] amounts in typical scales: each attribute asked with probability s.edit_share and at
    least one per latent, its amount uniform within +-s.max_change; the others 0."""
    asked = torch.rand(n, count) < s.edit_share
    asked[torch.arange(n), torch.randint(0, count, (n,))] = True
    amounts = (torch.rand(n, count) * 2 - 1) * s.max_change
    return amounts * asked


def attribute_loss(
    attribute_fn: nn.Module,
    edited_images: torch.Tensor,
    original_values: torch.Tensor,
    target: torch.Tensor,
    scales: torch.Tensor,
) -> torch.Tensor:
    """Per face [B]: Huber (smooth L1 with beta 1) between the recognisers' change from the original
    face (`original_values` = attribute_fn of it) and the asked `target` [B, K] (0 where not asked),
    both in typical scales, averaged over the K attributes the recognisers read."""
    measured = attribute_fn(edited_images) - original_values
    return F.smooth_l1_loss(measured / scales, target / scales, reduction="none").mean(dim=-1)


def identity_loss(
    identity_fn: nn.Module, edited_images: torch.Tensor, original_descriptors: torch.Tensor
) -> torch.Tensor:
    """Per face [B]: the Euclidean distance between the identity descriptors of the edited and the
    original face (dlib's measure; the small epsilon keeps the gradient finite at distance 0)."""
    difference = identity_fn(edited_images) - original_descriptors
    return (difference.square().sum(dim=-1) + 1e-12).sqrt()


def latent_distance(a: torch.Tensor, b: torch.Tensor, spread: float) -> torch.Tensor:
    """Per latent [B]: the squared distance between W+ a and b, averaged over layers, over w's squared
    spread (1 for two average faces apart)."""
    return (a - b).square().sum(dim=-1).mean(dim=1) / spread**2


def cycle_loss(
    mapper: LatentMapper, w_plus: torch.Tensor, edited: torch.Tensor, change: torch.Tensor, spread: float
) -> torch.Tensor:
    """Per latent [B]: how far editing the edited latent by the opposite change lands from the start."""
    return latent_distance(mapper(edited, -change), w_plus, spread)


def neighbourhood_loss(w_plus: torch.Tensor, edited: torch.Tensor, spread: float) -> torch.Tensor:
    """Per latent [B]: how far the edit moved the latent."""
    return latent_distance(edited, w_plus, spread)


def full_target(judges: Judges, edited: list[str], change: torch.Tensor) -> torch.Tensor:
    """The asked change [B, K] over every attribute the recognisers read: the mapper's change on the
    attributes it edits, 0 on the others."""
    index = torch.tensor([judges.names.index(n) for n in edited], device=change.device)
    target = torch.zeros(change.shape[0], len(judges.names), device=change.device, dtype=change.dtype)
    return target.index_copy(1, index, change)


def mapper_losses(
    G: Generator,
    mapper: LatentMapper,
    judges: Judges,
    w_plus: torch.Tensor,
    change: torch.Tensor,
    weights: dict[str, float],
) -> dict[str, torch.Tensor]:
    """The per-latent terms [B] of the four losses for latents `w_plus` edited by `change` [B, K_mapper]
    in attribute units; a term whose weight is 0 is not computed (the identity network is most of a
    step's cost), except the two on latents, which cost nothing."""
    _, spread = w_stats(G)
    device = w_plus.device
    with torch.no_grad():
        original = G.synthesis(w_plus, "const")
        original_values = judges.attribute_fn(original)
    edited = mapper(w_plus, change)
    images = G.synthesis(edited, "const")
    scales = judges.scale_tensor().to(device)
    target = full_target(judges, mapper.names, change)
    terms = {"attribute": attribute_loss(judges.attribute_fn, images, original_values, target, scales)}
    if judges.identity_fn is not None and weights.get("identity", 0) > 0:
        with torch.no_grad():
            original_descriptors = judges.identity_fn(original)
        terms["identity"] = identity_loss(judges.identity_fn, images, original_descriptors)
    if weights.get("cycle", 0) > 0:
        terms["cycle"] = cycle_loss(mapper, w_plus, edited, change, spread)
    terms["neighbourhood"] = neighbourhood_loss(w_plus, edited, spread)
    return terms


def weighted(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    return sum(weights[k] * v.mean() for k, v in terms.items())


def train_step(state: MapperState, G: Generator, judges: Judges, s: MapperSettings) -> dict:
    """One Adam step on a batch of the generator's latents, each with its random change."""
    mapper = state.mapper.train()
    state.step += 1
    w_plus = sample_latents(G, s.batch, s, mapper.w_std)
    change = (sample_changes(s.batch, len(mapper.names), s) * mapper.scales.cpu()).to(w_plus.device)
    weights = s.weights()
    terms = mapper_losses(G, mapper, judges, w_plus, change, weights)
    loss = weighted(terms, weights)
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    state.opt.step()
    update_ema(state, s)
    record = {"step": state.step, **{k: v.mean().item() for k, v in terms.items()}, "loss": loss.item()}
    state.history.append(record)
    return record


def describe_losses(record: dict) -> str:
    """A history record's losses in words, for logs and the command's last line."""
    parts = [f"{k} {record[k]:.4f}" for k in ("loss", *LOSSES) if k in record]
    return ", ".join(parts) or "no steps"


# ---------------------------------------------------------------------------------------------------
# The judges after the merge: the recognisers (recognise.py) and dlib's descriptor network (descriptor.py)


class ChipIdentity(nn.Module):
    """The identity descriptor of the generator's faces: a fixed affine cuts the descriptor's chip out
    of the aligned crop (the generator draws FFHQ-aligned crops, so one transform serves every face),
    then the descriptor network reads it. `cut(images 0..255, transforms [B, 2, 3], size)` is the
    differentiable chip extraction; images come in [-1, 1] as the generator draws them."""

    def __init__(
        self,
        descriptor: nn.Module,
        transform: np.ndarray,
        cut: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
        size: int = CHIP_SIZE,
    ):
        super().__init__()
        self.descriptor = descriptor
        self.register_buffer("transform", torch.as_tensor(np.asarray(transform), dtype=torch.float32))
        self.cut, self.size = cut, size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rgb = (images + 1) * 127.5
        chips = self.cut(rgb, self.transform.expand(images.shape[0], -1, -1), self.size)
        return self.descriptor(chips)


def landmark_template(G: Generator, count: int = 48, analyzer=None) -> np.ndarray:
    """The mean 68 landmarks [68, 2] of the generator's faces, in unit crop coordinates (0..1 across the
    aligned crop): dlib's landmarks (`find_aligned_landmarks`, the measure the recognisers learn from)
    on `count` of its faces (psi 0.7, seeded). The generator's own faces give the template that fits its
    crops."""
    from pipeline.faces.attributes import find_aligned_landmarks  # dlib: only when a template is needed

    z = torch.randn(count, G.cfg.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        faces = to_uint8(G.synthesis(G.map(z.to(G.w_avg.device), psi=0.7), "const"))
    landmarks, found = find_aligned_landmarks(faces, analyzer)
    if found.sum() < max(1, count // 4):
        raise PipelineError(
            f"dlib found faces on {int(found.sum())} of {count} of the generator's samples: too few for the "
            "identity network's chip (is it a face generator?)"
        )
    return ((landmarks[found] + 0.5) / G.cfg.resolution).mean(axis=0)


def crop_to_chip_transform(resolution: int, template: np.ndarray) -> np.ndarray:
    """The fixed affine [2, 3] from the generator's aligned crop (`resolution` px) to dlib's 150 px
    face chip: dlib's chip fit (descriptor.chip_transforms) of the mean landmarks `template` [68, 2] in
    unit crop coordinates (landmark_template)."""
    from pipeline.faces.descriptor import chip_transforms

    points = np.asarray(template, np.float64).reshape(68, 2) * resolution - 0.5  # pixel centres
    return np.asarray(chip_transforms(points[None], size=CHIP_SIZE), np.float64)[0]


def default_judges(recognisers: Path, G: Generator, device: torch.device) -> Judges:
    """The recognisers of `vfx train recognisers` and dlib's descriptor network on a chip cut from the
    generator's crop by a fixed transform."""
    from pipeline.faces.descriptor import extract_chips, load_face_descriptor
    from pipeline.stylegan.recognise import load_recognisers

    recogniser, meta = load_recognisers(recognisers, device=device)
    names = list(recogniser.names)
    figures = dict(meta.get("attributes") or {})
    scales, units = {}, {}
    for name in names:  # each attribute's typical scale: a measure's spread over G's faces; a label's 0.5
        info = dict(figures.get(name) or {})
        scale = info.get("spread", 0.5 if info.get("kind") == "label" else None)
        if scale is None or not float(scale) > 0:
            raise PipelineError(f"{recognisers}: no typical scale (spread) recorded for {name}")
        scales[name], units[name] = float(scale), str(info.get("unit", ""))
    transform = crop_to_chip_transform(G.cfg.resolution, landmark_template(G))
    identity = ChipIdentity(load_face_descriptor(device=device), transform, extract_chips)
    return Judges(recogniser, names, scales, identity, units).to(device)


# ---------------------------------------------------------------------------------------------------
# Checkpoints and figures


def save_training(path: Path, state: MapperState, settings: MapperSettings, generator: Path) -> None:
    data = {
        "format": TRAINING_FORMAT,
        "version": TRAINING_VERSION,
        "settings": settings.to_dict(),
        "config": state.mapper.cfg.to_dict(),
        "mapper": {k: v.detach().cpu() for k, v in state.mapper.state_dict().items()},
        "ema": {k: v.detach().cpu() for k, v in state.ema.state_dict().items()},
        "opt": state.opt.state_dict(),
        "step": state.step,
        "seconds": state.seconds,
        "torch_rng": torch.get_rng_state(),
        "history": state.history,
        "generator_sha256": state.generator_sha256,
        "recognisers_sha256": state.recognisers_sha256,
        "generator": str(generator),
    }
    save_torch_atomic(path, data)


def read_training(path: Path, mmap: bool = False) -> dict:
    """The training state, checked to be a mapper's; `mmap` leaves the tensors on disk (for a look at
    its checksums)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no mapper training state to resume (start without --resume)")
    data = load_torch_file(path, "training state", CheckpointError, mmap=mmap)
    if not isinstance(data, dict) or data.get("format") != TRAINING_FORMAT:
        raise CheckpointError(f"{path}: not a mapper training state (vfx train mapper writes them)")
    if data.get("version") != TRAINING_VERSION:
        raise CheckpointError(f"{path}: mapper training state version {data.get('version')} is not 1")
    return data


def refuse_other_recognisers(path: Path, recorded: str, recognisers: Path, actual: str) -> None:
    """A mapper is continued with the recognisers it started with: others measure other things."""
    if recorded != actual:
        raise CheckpointError(
            f"{path}: trained with the recognisers of sha256 {recorded[:16]}..., not {recognisers} "
            f"(sha256 {actual[:16]}...); give those, or start a new mapper in another --out"
        )


def load_training(
    path: Path,
    G: Generator,
    judges: Judges,
    generator: Path,
    generator_sha256: str,
    recognisers: Path,
    recognisers_sha256: str,
    settings: MapperSettings,
) -> MapperState:
    data = read_training(path)
    refuse_other_generator(path, str(data.get("generator_sha256")), generator, generator_sha256, REMEDY)
    refuse_other_recognisers(path, str(data.get("recognisers_sha256")), recognisers, recognisers_sha256)
    try:
        cfg = MapperConfig.from_dict(dict(data["config"]))
        # the network's shape and attributes are the file's, whatever this run's settings say
        kept = replace(settings, attributes=cfg.names, hidden=cfg.hidden, depth=cfg.depth)
        state = new_state(G, judges, generator_sha256, recognisers_sha256, kept)
        check_fits(state.mapper, G, path)
        state.mapper.load_state_dict(data["mapper"])
        state.ema.load_state_dict(data.get("ema", data["mapper"]))  # states saved before the average
        state.opt.load_state_dict(data["opt"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: a damaged mapper training state ({type(e).__name__})") from None
    for group in state.opt.param_groups:  # --lr may change on resume
        group["lr"] = settings.lr
    torch.set_rng_state(data["torch_rng"])
    state.step, state.seconds = int(data["step"]), float(data["seconds"])
    state.history = list(data["history"])
    return state


def preview_latents(G: Generator, count: int) -> torch.Tensor:
    """The same faces at every snapshot: fixed generator samples (psi 0.7)."""
    z = torch.randn(count, G.cfg.z_dim, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return G.map(z.to(G.w_avg.device), psi=0.7)


def preview(
    G: Generator, mapper: LatentMapper, w_plus: torch.Tensor, amounts: tuple[float, ...], caption: str = ""
) -> np.ndarray:
    """A grid: one row per attribute and face, one column per amount (in typical scales) of that
    attribute alone; the column at 0 is the face itself."""
    mapper.eval()
    k, n = len(mapper.names), w_plus.shape[0]
    steps = torch.tensor(amounts, dtype=torch.float32)
    rows, names = [], []
    with torch.no_grad():
        for i, name in enumerate(mapper.names):
            change = torch.zeros(len(steps), k)
            change[:, i] = steps * mapper.scales[i].cpu()
            for face in range(n):
                ws = w_plus[face : face + 1].expand(len(steps), -1, -1)
                rows.append(G.synthesis(mapper(ws, change.to(ws.device)), "const"))
                names.append(name)
    grid = image_grid(to_uint8(torch.cat(rows)), len(steps))
    columns = [f"{a:+g}" if a else "0" for a in amounts]
    return labelled(grid, columns=columns, rows=names, caption=caption)


def write_outputs(
    out: Path, state: MapperState, settings: MapperSettings, generator: Path, recognisers: Path
) -> None:
    """The training state and the mapper; each file replaced whole."""
    save_training(out / TRAINING_NAME, state, settings, generator)
    last = state.history[-1] if state.history else {}
    meta = {
        "steps": state.step,
        "seconds": round(state.seconds, 1),
        "generator": str(generator),
        "recognisers": str(recognisers),
        "weights": settings.weights(),
        "losses": {k: v for k, v in last.items() if k != "step"},
    }
    save_mapper(out / MAPPER_FILE, state.ema, state.generator_sha256, state.recognisers_sha256, meta)


def write_figures(
    out: Path, state: MapperState, G: Generator, shown: torch.Tensor, settings: MapperSettings
) -> None:
    caption = f"step {state.step}; columns: the change in typical scales"
    write_png(out / "preview.png", preview(G, state.ema, shown, settings.preview_amounts, caption))
    series = {
        "attribute": "attribute",
        "identity": "identity",
        "cycle": "cycle",
        "neighbourhood": "neighbourhood",
    }
    present = {label: key for label, key in series.items() if any(key in h for h in state.history)}
    write_png(out / "loss.png", loss_curve(state.history, present))


# ---------------------------------------------------------------------------------------------------
# The training run


def check_inputs(generator: Path, recognisers: Path, out: Path, resume: bool) -> tuple[Path, Path]:
    """What can be checked without loading anything big, before a long run starts: the generator and
    recognisers files, and whether --out may be written (or resumed). Returns the two files."""
    gen = generator_file(Path(generator))
    if not gen.is_file():
        raise CheckpointError(f"{gen}: generator file not found")
    rec = recognisers_file(Path(recognisers))
    if not rec.is_file():
        raise PipelineError(f"{rec}: recognisers file not found (vfx train recognisers makes one)")
    refuse_file_at(out, "the mapper")
    for other, what in ((GENERATOR_FILE, "a generator"), (ENCODER_FILE, "an encoder")):
        if (out / other).exists():
            raise CheckpointError(f"{out}: holds {what}; give the mapper a folder of its own")
    if resume:
        data = read_training(out / TRAINING_NAME, mmap=True)
        refuse_other_generator(
            out / TRAINING_NAME, str(data.get("generator_sha256")), gen, sha256_file(gen), REMEDY
        )
        refuse_other_recognisers(
            out / TRAINING_NAME, str(data.get("recognisers_sha256")), rec, sha256_file(rec)
        )
    elif (out / TRAINING_NAME).exists() or (out / MAPPER_FILE).exists():
        raise CheckpointError(f"{out}: holds a mapper already; use --resume to continue it or another --out")
    return gen, rec


def train_mapper(
    generator: str | Path,
    recognisers: str | Path,
    out: Path,
    settings: MapperSettings,
    steps: int | None = None,
    minutes: float | None = None,
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
    device: torch.device | str | None = None,
    judges: Judges | None = None,
) -> MapperState:
    """Train (or with `resume` continue) the mapper in `out` for the generator file (or folder)
    `generator`, judged by the recognisers file (or folder) `recognisers`, until `steps` steps in all, or
    for `minutes` of this run. `judges`: default the recognisers and dlib's descriptor (default_judges);
    a test gives its own modules (the recognisers' file is still checksummed into the mapper).
    `device`: default the pipeline's rule (`resolve_device`)."""
    if steps is None and minutes is None:
        raise PipelineError("training needs --steps or --minutes")
    out = Path(out)
    gen, rec = check_inputs(Path(generator), Path(recognisers), out, resume)
    device = resolve_device(device)
    G, _ = load_generator(gen)
    G = G.to(device).eval().requires_grad_(False)
    sha, rec_sha = sha256_file(gen), sha256_file(rec)
    judges = (judges or default_judges(rec, G, device)).to(device)
    if not resume:
        edited_attributes(judges, settings)  # an unknown --attributes before the folder is made
    w_stats(G)  # mapped once, before the clock starts
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        state = load_training(out / TRAINING_NAME, G, judges, gen, sha, rec, rec_sha, settings)
    else:
        state = new_state(G, judges, sha, rec_sha, settings)
    state.mapper.to(device)
    state.ema.to(device)
    shown = preview_latents(G, settings.preview_faces)
    started = last_save = last_snap = time.monotonic()
    run_start_seconds = state.seconds
    try:
        while (steps is None or state.step < steps) and (
            minutes is None or time.monotonic() - started < minutes * 60
        ):
            record = train_step(state, G, judges, settings)
            now = time.monotonic()
            state.seconds = run_start_seconds + now - started
            record["seconds"] = round(state.seconds, 2)
            if on_step:
                on_step(record)
            if now - last_save > settings.checkpoint_minutes * 60:
                write_outputs(out, state, settings, gen, rec)
                last_save = now
            if now - last_snap > settings.snapshot_minutes * 60:
                write_figures(out, state, G, shown, settings)
                last_snap = time.monotonic()
    finally:  # also on Ctrl-C: nothing since the last checkpoint is lost
        write_outputs(out, state, settings, gen, rec)
        write_figures(out, state, G, shown, settings)
    return state
