"""Training a StyleGAN2 generator on face crops (a shot-specific prior, or a generator for offline use).

The recipe is StyleGAN2's: non-saturating logistic loss, lazy R1 regularisation of the discriminator,
optional path-length regularisation, style mixing, an exponential moving average of the generator
(the one that is saved and used), plus DiffAugment for data sets of a few hundred crops.

A model folder holds `generator.pt` (the averaged generator: all that rendering needs), `training.pt`
(both networks, optimisers, random states and the loss history, for an exact `--resume`), sample
grids from fixed z (`samples.png`, and one per snapshot in `samples/`), `reals.png` and `losses.png`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.curves import loss_curve, write_png
from pipeline.devices import resolve_device
from pipeline.errors import PipelineError
from pipeline.files import save_torch_atomic
from pipeline.models import GENERATOR_FILE, load_torch_file
from pipeline.stylegan.augment import diff_augment
from pipeline.stylegan.checkpoints import CheckpointError, save_generator
from pipeline.stylegan.discriminator import Discriminator
from pipeline.stylegan.generator import (
    Generator,
    GeneratorConfig,
    default_channels,
    image_grid,
    mix_styles,
    to_uint8,
)
from pipeline.swap.data import load_face_set

TRAINING_NAME = "training.pt"
TRAINING_FORMAT = 1
# Channel widths (base, max) per training resolution: narrow enough to train on a CPU in an hour.
WIDTHS = {64: (4096, 128), 128: (8192, 256), 256: (16384, 512)}


@dataclass
class GanSettings:
    res: int = 64
    batch: int = 16
    lr: float = 0.0025
    gamma: float | None = None  # R1 weight; None: NVIDIA's heuristic 0.0002 * res^2 / batch
    r1_every: int = 16
    pl_weight: float = 0.0  # path-length regularisation (2 in the paper); off by default on CPU
    pl_every: int = 4
    mixing: float = 0.9
    ema_kimg: float | None = None  # half-life of the generator average; None: batch * 10 / 32
    ema_rampup: float = 0.05
    augment: tuple[str, ...] = ("color", "translation", "cutout")
    mapping_layers: int = 8
    seed: int = 0
    checkpoint_minutes: float = 5.0
    snapshot_minutes: float = 10.0

    @property
    def r1_gamma(self) -> float:
        return self.gamma if self.gamma is not None else 0.0002 * self.res**2 / self.batch

    def config(self) -> GeneratorConfig:
        if self.res not in WIDTHS:
            raise PipelineError(f"--res {self.res}: training resolutions are {', '.join(map(str, WIDTHS))}")
        base, cmax = WIDTHS[self.res]
        return GeneratorConfig(
            resolution=self.res,
            mapping_layers=self.mapping_layers,
            channels=default_channels(self.res, base, cmax),
        )


@dataclass
class GanState:
    G: Generator
    D: Discriminator
    G_ema: Generator
    g_opt: torch.optim.Optimizer
    d_opt: torch.optim.Optimizer
    rng: np.random.Generator
    step: int = 0
    nimg: int = 0
    pl_mean: float = 0.0
    history: list[dict] = field(default_factory=list)


def _adam(params, lr: float, every: int) -> torch.optim.Adam:
    """Lazy regularisation runs every `every` steps, so the main step's lr and betas are scaled to keep
    the effective optimiser the same (StyleGAN2, appendix B)."""
    c = every / (every + 1) if every > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(0.0, 0.99**c), eps=1e-8)


def new_state(settings: GanSettings, device: torch.device | str = "cpu") -> GanState:
    torch.manual_seed(settings.seed)
    cfg = settings.config()
    G = Generator(cfg).to(device)
    D = Discriminator(cfg.resolution, cfg.channels).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    pl_every = settings.pl_every if settings.pl_weight > 0 else 0
    return GanState(
        G,
        D,
        G_ema,
        _adam(G.parameters(), settings.lr, pl_every),
        _adam(D.parameters(), settings.lr, settings.r1_every),
        np.random.default_rng(settings.seed),
    )


def load_faces(folders: list[Path], res: int) -> torch.Tensor:
    """All crops of all folders at `res`, as one [-1, 1] NCHW tensor held in memory."""
    sets = [load_face_set(Path(f), res, Path(f).name).images for f in folders]
    return torch.from_numpy(np.concatenate(sets)).permute(0, 3, 1, 2).contiguous() * 2 - 1


def real_batch(faces: torch.Tensor, state: GanState, batch: int) -> torch.Tensor:
    idx = state.rng.integers(0, len(faces), batch)
    x = faces[torch.from_numpy(idx).to(faces.device)]
    flip = torch.from_numpy(state.rng.random(batch) < 0.5).to(faces.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)  # faces are left-right symmetric enough


def latents(G: Generator, batch: int, mixing: float) -> torch.Tensor:
    """W+ for a batch; with probability `mixing` two z's switched at a random layer, so that the
    network does not learn that neighbouring layers' styles are correlated."""
    device = G.w_avg.device
    ws = G.map(torch.randn(batch, G.cfg.z_dim, device=device))
    if mixing > 0 and torch.rand(()) < mixing:
        cut = int(torch.randint(1, G.num_ws, ()))
        ws = mix_styles(ws, G.map(torch.randn(batch, G.cfg.z_dim, device=device)), cut)
    return ws


def train_step(state: GanState, faces: torch.Tensor, s: GanSettings) -> dict:
    G, D, aug = state.G, state.D, (lambda x: diff_augment(x, s.augment))
    state.step += 1
    record: dict = {"step": state.step}

    # Discriminator: real up, fake down
    G.requires_grad_(False)
    D.requires_grad_(True)
    real = real_batch(faces, state, s.batch)
    with torch.no_grad():
        fake = G.synthesis(latents(G, s.batch, s.mixing), noise="random")
    fake_score, real_score = D(aug(fake)), D(aug(real))
    d_loss = F.softplus(fake_score).mean() + F.softplus(-real_score).mean()
    state.d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    state.d_opt.step()
    record.update(
        d_loss=d_loss.item(), real_score=real_score.mean().item(), fake_score=fake_score.mean().item()
    )

    if state.step % s.r1_every == 0:  # lazy R1: penalise D's gradient on real images
        real.requires_grad_(True)
        score = D(aug(real))
        (grad,) = torch.autograd.grad(score.sum(), real, create_graph=True)
        r1 = grad.square().sum(dim=[1, 2, 3]).mean()
        state.d_opt.zero_grad(set_to_none=True)
        (r1 * (s.r1_gamma / 2) * s.r1_every).backward()
        state.d_opt.step()
        record["r1"] = r1.item()

    # Generator: make D call the fakes real
    G.requires_grad_(True)
    D.requires_grad_(False)
    ws = latents(G, s.batch, s.mixing)
    G.update_w_avg(ws[:, 0])
    g_loss = F.softplus(-D(aug(G.synthesis(ws, noise="random")))).mean()
    state.g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    state.g_opt.step()
    record["g_loss"] = g_loss.item()

    if s.pl_weight > 0 and state.step % s.pl_every == 0:  # path length: a step in w moves the image evenly
        ws = latents(G, max(1, s.batch // 2), s.mixing).detach().requires_grad_(True)
        img = G.synthesis(ws, noise="random")
        probe = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * probe).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        state.pl_mean += 0.01 * (lengths.mean().item() - state.pl_mean)
        penalty = (lengths - state.pl_mean).square().mean()
        state.g_opt.zero_grad(set_to_none=True)
        (penalty * s.pl_weight * s.pl_every).backward()
        state.g_opt.step()
        record["pl"] = penalty.item()

    state.nimg += s.batch
    update_ema(state, s)
    record["kimg"] = state.nimg / 1000
    state.history.append(record)
    return record


@torch.no_grad()
def update_ema(state: GanState, s: GanSettings) -> None:
    ema_nimg = (s.ema_kimg if s.ema_kimg is not None else s.batch * 10 / 32) * 1000
    if s.ema_rampup:
        ema_nimg = min(ema_nimg, state.nimg * s.ema_rampup)
    beta = 0.5 ** (s.batch / max(ema_nimg, 1e-8))
    for p_ema, p in zip(state.G_ema.parameters(), state.G.parameters(), strict=True):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(state.G_ema.buffers(), state.G.buffers(), strict=True):
        b_ema.copy_(b)


def fixed_z(G: Generator, count: int = 32, seed: int = 123) -> torch.Tensor:
    return torch.randn(count, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample_grid(G: Generator, cols: int = 8) -> np.ndarray:
    """The same 32 z at every snapshot, so grids over time show the generator learning."""
    return image_grid(to_uint8(G(fixed_z(G).to(G.w_avg.device), noise="const")), cols)


def save_training(path: Path, state: GanState, settings: GanSettings) -> None:
    data = {
        "format": TRAINING_FORMAT,
        "settings": {**asdict(settings), "augment": list(settings.augment)},
        "config": state.G.cfg.to_dict(),
        "G": state.G.state_dict(),
        "D": state.D.state_dict(),
        "G_ema": state.G_ema.state_dict(),
        "g_opt": state.g_opt.state_dict(),
        "d_opt": state.d_opt.state_dict(),
        "step": state.step,
        "nimg": state.nimg,
        "pl_mean": state.pl_mean,
        "numpy_rng": state.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": state.history,
    }
    device = state.G.w_avg.device
    if device.type == "cuda":  # z, noise and augmentation are drawn on the GPU, from its own stream
        data["cuda_rng"] = torch.cuda.get_rng_state(device)
    save_torch_atomic(path, data)


def load_training(path: Path, settings: GanSettings, device: torch.device | str = "cpu") -> GanState:
    if not path.is_file():
        raise CheckpointError(f"{path}: no training state to resume (start without --resume)")
    data = load_torch_file(path, "training state", CheckpointError)
    if not isinstance(data, dict) or data.get("format") != TRAINING_FORMAT:
        raise CheckpointError(f"{path}: not a generator training state of format {TRAINING_FORMAT}")
    if data["config"] != settings.config().to_dict():
        raise CheckpointError(
            f"{path}: trained at {data['config']['resolution']} px with other sizes; "
            f"--res {settings.res} was asked"
        )
    state = new_state(settings, device)
    for key in ("G", "D", "G_ema"):
        getattr(state, key).load_state_dict(data[key])
    state.g_opt.load_state_dict(data["g_opt"])
    state.d_opt.load_state_dict(data["d_opt"])
    state.rng.bit_generator.state = data["numpy_rng"]
    torch.set_rng_state(data["torch_rng"])
    if "cuda_rng" in data and state.G.w_avg.device.type == "cuda":
        torch.cuda.set_rng_state(data["cuda_rng"], state.G.w_avg.device)
    state.step, state.nimg, state.pl_mean = int(data["step"]), int(data["nimg"]), float(data["pl_mean"])
    state.history = list(data["history"])
    return state


def write_outputs(out: Path, state: GanState, settings: GanSettings, folders: list[Path]) -> None:
    """Both checkpoints and the figures; each file is replaced whole."""
    save_training(out / TRAINING_NAME, state, settings)
    meta = {"kimg": round(state.nimg / 1000, 3), "steps": state.step, "faces": [str(f) for f in folders]}
    save_generator(out / GENERATOR_FILE, state.G_ema, meta)
    write_png(out / "samples.png", sample_grid(state.G_ema))
    series = {"D loss": "d_loss", "G loss": "g_loss"}
    write_png(out / "losses.png", loss_curve(state.history, series, log=False))


def train_generator(
    folders: list[Path],
    out: Path,
    settings: GanSettings,
    kimg: float | None = None,
    minutes: float | None = None,
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
    device: torch.device | str | None = None,
) -> GanState:
    """Train until `kimg` thousand real images have been shown in all (counting resumed ones), or for
    `minutes` of this run; checkpoint every few minutes and on Ctrl-C. `device`: default the pipeline's
    rule (`resolve_device`). No mixed precision: NVIDIA's trainer runs only the four highest-resolution
    layers in fp16, with activations clamped, which this generator does not do."""
    if kimg is None and minutes is None:
        raise PipelineError("training needs --kimg or --minutes")
    device = resolve_device(device)
    faces = load_faces(folders, settings.res).to(device)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        state = load_training(out / TRAINING_NAME, settings, device)
    elif (out / TRAINING_NAME).exists() or (out / GENERATOR_FILE).exists():
        raise CheckpointError(
            f"{out}: holds a generator already; use --resume to continue it or another --out"
        )
    else:
        state = new_state(settings, device)
        write_png(out / "reals.png", image_grid(to_uint8(faces[:: max(1, len(faces) // 32)][:32]), 8))
    (out / "samples").mkdir(exist_ok=True)
    started = last_save = last_snap = time.monotonic()
    try:
        while (kimg is None or state.nimg < kimg * 1000) and (
            minutes is None or time.monotonic() - started < minutes * 60
        ):
            record = train_step(state, faces, settings)
            if on_step:
                on_step(record)
            now = time.monotonic()
            if now - last_snap > settings.snapshot_minutes * 60 or state.step == 1:
                write_png(out / "samples" / f"kimg{state.nimg / 1000:08.2f}.png", sample_grid(state.G_ema))
                last_snap = now
            if now - last_save > settings.checkpoint_minutes * 60:
                write_outputs(out, state, settings, folders)
                last_save = now
    finally:  # also on Ctrl-C: nothing since the last checkpoint is lost
        write_outputs(out, state, settings, folders)
        write_png(out / "samples" / f"kimg{state.nimg / 1000:08.2f}.png", sample_grid(state.G_ema))
    return state
