"""Training an encoder (encoder.py) for one generator: its own samples teach it, real crops refine it.

Each step encodes a batch of the generator's own faces, whose W+ is known: z mapped with a truncation
psi drawn from a range, and for some faces two z's switched at a random layer, so the encoder sees W+
and not only W. The faces are drawn with the generator's fixed noise, as the pipeline draws them. The
loss is the squared error to the true W+ (relative to w's spread), LPIPS-VGG and pixel MSE between the
face and the generator's redrawing of the encoder's W+, and e4e's penalty on the per-layer offsets
(Tov et al. 2021), which keeps W+ near W. When folders of real aligned crops are given, every few steps
a batch of them (randomly x-flipped) adds LPIPS, MSE and the offset penalty: their W+ is unknown, so
they are learnt through the frozen generator, as pSp (Richardson et al. 2021) learns all its faces.
Adam's rate is constant, then falls along a cosine over the last quarter of each run (annealed_lr).

A model folder holds `encoder.pt` (what projection needs), `training.pt` (encoder, optimiser, random
states, history, for an exact `--resume`), `preview.png` (rows: face, encoded, encoded then polished)
and `loss.png`. Every file is replaced whole; checkpoints every few minutes and on Ctrl-C.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.curves import labelled, loss_curve, write_png
from pipeline.devices import resolve_device
from pipeline.errors import PipelineError
from pipeline.files import refuse_file_at, save_torch_atomic
from pipeline.models import ENCODER_FILE, GENERATOR_FILE, generator_file, load_torch_file, sha256_file
from pipeline.stylegan.checkpoints import CheckpointError, load_generator
from pipeline.stylegan.encoder import (
    Encoder,
    EncoderConfig,
    check_fits,
    refuse_other_generator,
    save_encoder,
)
from pipeline.stylegan.generator import Generator, image_grid, to_uint8
from pipeline.stylegan.lpips import LPIPS, load_lpips, reduce_for_lpips
from pipeline.stylegan.project import polish_settings, project_to_w_plus, w_stats
from pipeline.stylegan.train import load_faces
from pipeline.stylegan.weights import with_loss_weights
from pipeline.swap.data import MIN_FACES, TrainingDataError

TRAINING_NAME = "training.pt"
TRAINING_FORMAT = "vfx-encoder-training"
TRAINING_VERSION = 1
# Real crops are held in memory at the generator's size up to this, and each batch is enlarged to a larger
# generator's size when drawn: a thousand 1024 px crops would take 12 GB, and the encoder reads them at
# 256 px and LPIPS compares them at 256 px anyway.
MAX_HELD_SIZE = 256
LOSSES = ("latent", "lpips", "mse", "delta")  # each weighted by EncoderSettings' NAME_weight


@dataclass
class EncoderSettings:
    batch: int = 8
    lr: float = 1e-4  # Adam, pSp's rate
    latent_weight: float = 1.0  # squared W+ error over w's squared spread (1 for the average w at psi 1)
    lpips_weight: float = 1.0  # pSp's 0.8, e4e's 0.8: the perceptual term does most of the work
    mse_weight: float = 1.0  # of [-1, 1] images (pSp's L2 weight 1)
    # e4e's delta regulariser (their weight 2e-4 on the sum of 17 offsets' L2 norms in FFHQ's w), here on
    # the mean offset norm relative to w's spread, so one weight suits any depth and w_dim
    delta_weight: float = 0.05
    real_every: int = 2  # with real crops: a batch of them every this many steps
    # the last share of a run (of its --steps in all, or of its --minutes) the rate falls along a cosine to
    # anneal_floor times lr (see annealed_lr); 0: a constant rate
    anneal: float = 0.25
    anneal_floor: float = 0.05
    psi: tuple[float, float] = (0.5, 1.0)  # truncation drawn per face from this range
    mixing: float = 0.5  # share of the generator's faces drawn from two z's switched at a random layer
    seed: int = 0
    checkpoint_minutes: float = 5.0
    snapshot_minutes: float = 5.0
    preview_faces: int = 6
    preview_polish_steps: int = 50
    channels: tuple[int, ...] = field(default=())  # the encoder's widths; empty: encoder.default_widths

    def to_dict(self) -> dict:
        return {**asdict(self), "psi": list(self.psi), "channels": list(self.channels)}

    def with_weights(self, weights: dict[str, float]) -> EncoderSettings:
        """These settings with some losses' weights replaced ({"latent": 0.1, ...}); see with_loss_weights."""
        return with_loss_weights(self, weights, LOSSES)


@dataclass
class EncoderState:
    encoder: Encoder
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    generator_sha256: str
    step: int = 0
    seconds: float = 0.0  # training time over all runs
    history: list[dict] = field(default_factory=list)


def new_state(G: Generator, generator_sha256: str, settings: EncoderSettings) -> EncoderState:
    torch.manual_seed(settings.seed)
    changes = {"channels": tuple(settings.channels)} if settings.channels else {}
    encoder = Encoder.for_generator(G, **changes)
    opt = torch.optim.Adam(encoder.parameters(), lr=settings.lr, betas=(0.9, 0.999))
    return EncoderState(encoder, opt, np.random.default_rng(settings.seed), generator_sha256)


# ---------------------------------------------------------------------------------------------------
# Faces and losses


def sample_latents(G: Generator, n: int, s: EncoderSettings) -> torch.Tensor:
    """W+ of n of the generator's own faces: psi per face from s.psi, and with probability s.mixing
    the layers from a random cut on taken from a second z (style mixing), so that the encoder learns
    W+ and not only W. The random numbers are drawn on the CPU from torch's global stream: the same
    faces on any device, and an exact resume."""
    device = G.w_avg.device
    z = torch.randn(2, n, G.cfg.z_dim)
    psi = torch.empty(n).uniform_(*s.psi)
    mixed = torch.rand(n) < s.mixing
    cut = torch.randint(1, G.num_ws, (n,))
    with torch.no_grad():
        w = G.mapping(z.reshape(2 * n, -1).to(device)).reshape(2, n, -1)
    second = mixed[:, None] & (torch.arange(G.num_ws)[None] >= cut[:, None])  # [n, num_ws]
    ws = torch.where(second[..., None].to(device), w[1][:, None], w[0][:, None])
    return G.w_avg.lerp(ws, psi[:, None, None].to(device))


def at_size(images: torch.Tensor, G: Generator) -> torch.Tensor:
    """Held crops on G's device at G's size (enlarged when held smaller, see MAX_HELD_SIZE)."""
    images = images.to(G.w_avg.device)
    res = G.cfg.resolution
    if images.shape[2] == res:
        return images
    return F.interpolate(images, size=(res, res), mode="bicubic", align_corners=False).clamp(-1, 1)


def real_batch(faces: torch.Tensor, rng: np.random.Generator, n: int) -> torch.Tensor:
    """n crops drawn at random, each x-flipped with probability 1/2 (faces are symmetric enough)."""
    x = faces[torch.from_numpy(rng.integers(0, len(faces), n))]
    flip = torch.from_numpy(rng.random(n) < 0.5)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def encoder_losses(
    G: Generator,
    encoder: Encoder,
    lpips: LPIPS | None,
    images: torch.Tensor,
    true_ws: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The per-face terms [N] for faces `images`: "lpips" (unless `lpips` is None: VGG is most of a
    step's cost), "mse", "delta" (e4e's offset norm relative to w's spread) and, when their W+ is known,
    "latent" (squared W+ error relative to w's squared spread, averaged over layers)."""
    _, spread = w_stats(G)
    ws, deltas = encoder.encode(images)
    drawn = G.synthesis(ws, "const")
    out = {}
    if lpips is not None:
        with torch.no_grad():
            target = lpips.features(reduce_for_lpips(images))
        out["lpips"] = lpips.distance(lpips.features(reduce_for_lpips(drawn)), target)
    out["mse"] = (drawn - images).square().mean(dim=[1, 2, 3])
    out["delta"] = deltas.norm(dim=-1).mean(dim=1) / spread
    if true_ws is not None:
        out["latent"] = (ws - true_ws).square().sum(dim=-1).mean(dim=1) / spread**2
    return out


def weighted(terms: dict[str, torch.Tensor], s: EncoderSettings) -> torch.Tensor:
    return sum(getattr(s, f"{k}_weight") * v.mean() for k, v in terms.items())


def run_progress(step: int, steps: int | None, elapsed: float, minutes: float | None) -> float:
    """How far (0-1) a run is at `step` (steps done in all) after `elapsed` seconds of it: of its target
    `steps` in all (so a killed run resumed with the same --steps continues the same schedule), or of its
    `minutes`; the further of the two when both are given."""
    done = [step / steps] if steps else []
    done += [elapsed / (60 * minutes)] if minutes else []
    return min(1.0, max(done, default=0.0))


def annealed_lr(s: EncoderSettings, progress: float) -> float:
    """The rate at `progress` through a run: s.lr, then over the last s.anneal share a cosine fall to
    s.anneal_floor * s.lr (the cosine annealing of SGDR, Loshchilov & Hutter 2017). At a constant rate
    Adam's steps on batches of 8 keep bouncing around the minimum: on the 64 px generator's encoder (3658
    steps at 1e-4) a fall to 2e-5 took the real crops' LPIPS from 0.090 to 0.081 in 400 steps (0.092 ->
    0.090 in the 1000 steps before), and a further fall to 4e-6 to 0.079 in 440 more. A resumed run starts
    at s.lr again (SGDR's warm restart)."""
    if s.anneal <= 0:
        return s.lr
    through = min(1.0, max(0.0, (progress - (1.0 - s.anneal)) / s.anneal))
    return s.lr * (s.anneal_floor + (1.0 - s.anneal_floor) * 0.5 * (1.0 + math.cos(math.pi * through)))


def train_step(
    state: EncoderState,
    G: Generator,
    lpips: LPIPS,
    faces: torch.Tensor | None,
    s: EncoderSettings,
    lr: float,
) -> dict:
    """One Adam step on a batch of the generator's faces (and of real crops every s.real_every steps), at
    rate `lr` (annealed_lr's)."""
    state.encoder.train()
    state.step += 1
    for group in state.opt.param_groups:
        group["lr"] = lr
    true_ws = sample_latents(G, s.batch, s)
    with torch.no_grad():
        images = G.synthesis(true_ws, "const")
    used = lpips if s.lpips_weight else None
    terms = encoder_losses(G, state.encoder, used, images, true_ws)
    loss = weighted(terms, s)
    record = {"step": state.step, "lr": lr, **{k: v.mean().item() for k, v in terms.items()}}
    if faces is not None and s.real_every > 0 and state.step % s.real_every == 0:
        real = encoder_losses(G, state.encoder, used, at_size(real_batch(faces, state.rng, s.batch), G))
        loss = loss + weighted(real, s)
        record.update({f"real_{k}": v.mean().item() for k, v in real.items()})
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    state.opt.step()
    record["loss"] = loss.item()
    state.history.append(record)
    return record


def recent_losses(history: list[dict], count: int = 20) -> dict:
    """Each loss averaged over the last `count` steps that have it (real crops' come every few steps)."""
    keys = {k for h in history[-count:] for k in h if k not in ("step", "seconds", "lr")}
    return {k: float(np.mean([h[k] for h in history[-count:] if k in h])) for k in sorted(keys)}


def describe_losses(record: dict) -> str:
    """A history record's losses in words, for logs and the command's last line."""
    names = {"loss": "loss", "latent": "latent", "lpips": "LPIPS", "mse": "MSE", "delta": "delta"}
    parts = [f"{label} {record[k]:.4f}" for k, label in names.items() if k in record]
    parts += [
        f"real {label} {record[f'real_{k}']:.4f}" for k, label in names.items() if f"real_{k}" in record
    ]
    return ", ".join(parts) or "no steps"


# ---------------------------------------------------------------------------------------------------
# Checkpoints and figures


def save_training(path: Path, state: EncoderState, settings: EncoderSettings, generator: Path) -> None:
    data = {
        "format": TRAINING_FORMAT,
        "version": TRAINING_VERSION,
        "settings": settings.to_dict(),
        "config": state.encoder.cfg.to_dict(),
        "encoder": {k: v.detach().cpu() for k, v in state.encoder.state_dict().items()},
        "opt": state.opt.state_dict(),
        "step": state.step,
        "seconds": state.seconds,
        "numpy_rng": state.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": state.history,
        "generator_sha256": state.generator_sha256,
        "generator": str(generator),
    }
    save_torch_atomic(path, data)


def read_training(path: Path, mmap: bool = False) -> dict:
    """The training state, checked to be an encoder's; `mmap` leaves the tensors on disk (for a look
    at its generator's checksum)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no encoder training state to resume (start without --resume)")
    data = load_torch_file(path, "training state", CheckpointError, mmap=mmap)
    if not isinstance(data, dict) or data.get("format") != TRAINING_FORMAT:
        raise CheckpointError(f"{path}: not an encoder training state (vfx train encoder writes them)")
    if data.get("version") != TRAINING_VERSION:
        raise CheckpointError(f"{path}: encoder training state version {data.get('version')} is not 1")
    return data


def load_training(
    path: Path, G: Generator, generator: Path, generator_sha256: str, settings: EncoderSettings
) -> EncoderState:
    data = read_training(path)
    refuse_other_generator(path, str(data.get("generator_sha256")), generator, generator_sha256)
    try:
        cfg = EncoderConfig.from_dict(dict(data["config"]))
        state = new_state(G, generator_sha256, replace(settings, channels=cfg.channels))
        check_fits(state.encoder, G, path)
        state.encoder.load_state_dict(data["encoder"])
        state.opt.load_state_dict(data["opt"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: a damaged encoder training state ({type(e).__name__})") from None
    state.rng.bit_generator.state = data["numpy_rng"]
    torch.set_rng_state(data["torch_rng"])
    state.step, state.seconds = int(data["step"]), float(data["seconds"])
    state.history = list(data["history"])
    return state


def preview_faces(G: Generator, faces: torch.Tensor | None, count: int) -> torch.Tensor:
    """The same faces at every snapshot: real crops spread over the set, else fixed generator samples."""
    if faces is not None:
        return at_size(faces[:: max(1, len(faces) // count)][:count], G)
    z = torch.randn(count, G.cfg.z_dim, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return G.synthesis(G.map(z.to(G.w_avg.device), psi=0.7), "const")


def preview(
    G: Generator, encoder: Encoder, lpips: LPIPS, faces: torch.Tensor, polish_steps: int, caption: str = ""
) -> np.ndarray:
    """A grid: the faces, the generator's drawing of their encoded W+, and that W+ after a short polish
    (how projection uses the encoder); one face per column."""
    encoder.eval()
    with torch.no_grad():
        ws = encoder(faces)
        rows = [faces, G.synthesis(ws, "const")]
    if polish_steps > 0:
        n = faces.shape[0]
        polished = project_to_w_plus(
            G,
            faces,
            lpips,
            polish_settings(polish_steps),
            init=ws,
            init_noise=[m.expand(n, -1, -1, -1) for m in G.noise_maps()],
        )
        with torch.no_grad():
            rows.append(G.synthesis(polished.latents, polished.noise))
    names = ["face", "encoded"] + ([f"polished {polish_steps}"] if polish_steps > 0 else [])
    return labelled(image_grid(to_uint8(torch.cat(rows)), faces.shape[0]), rows=names, caption=caption)


def write_outputs(
    out: Path, state: EncoderState, settings: EncoderSettings, generator: Path, folders: list[Path]
) -> None:
    """The training state and the encoder; each file replaced whole."""
    save_training(out / TRAINING_NAME, state, settings, generator)
    last = state.history[-1] if state.history else {}
    meta = {
        "steps": state.step,
        "seconds": round(state.seconds, 1),
        "generator": str(generator),
        "faces": [str(f) for f in folders],
        "losses": {k: v for k, v in last.items() if k != "step"},
    }
    save_encoder(out / ENCODER_FILE, state.encoder, state.generator_sha256, meta)


def write_figures(
    out: Path, state: EncoderState, G: Generator, lpips: LPIPS, faces: torch.Tensor, settings: EncoderSettings
) -> None:
    shown = preview(G, state.encoder, lpips, faces, settings.preview_polish_steps, f"step {state.step}")
    write_png(out / "preview.png", shown)
    # the parts, not the total: with real crops every few steps the total zigzags between two sums
    series = {"latent": "latent", "LPIPS": "lpips", "MSE": "mse", "real LPIPS": "real_lpips"}
    present = {label: key for label, key in series.items() if any(key in h for h in state.history)}
    write_png(out / "loss.png", loss_curve(state.history, present))


# ---------------------------------------------------------------------------------------------------
# The training run


def check_inputs(generator: Path, folders: list[Path], out: Path, resume: bool) -> Path:
    """What can be checked without loading anything big, before a long run starts: the generator file,
    the crop folders, and whether --out may be written (or resumed). Returns the generator file."""
    gen = generator_file(Path(generator))
    if not gen.is_file():
        raise CheckpointError(f"{gen}: generator file not found")
    for folder in folders:
        if not Path(folder).is_dir():
            raise TrainingDataError(f"{folder}: folder of face crops not found")
        count = sum(1 for p in Path(folder).glob("*.png") if not p.name.startswith("."))
        if count < MIN_FACES:
            raise TrainingDataError(
                f"{folder}: {count} face crops; training needs at least {MIN_FACES} (vfx extract makes them)"
            )
    refuse_file_at(out, "the encoder")
    if (out / GENERATOR_FILE).exists():
        raise CheckpointError(f"{out}: holds a generator; give the encoder a folder of its own")
    if resume:
        recorded = str(read_training(out / TRAINING_NAME, mmap=True).get("generator_sha256"))
        refuse_other_generator(out / TRAINING_NAME, recorded, gen, sha256_file(gen))
    elif (out / TRAINING_NAME).exists() or (out / ENCODER_FILE).exists():
        raise CheckpointError(
            f"{out}: holds an encoder already; use --resume to continue it or another --out"
        )
    return gen


def train_encoder(
    generator: str | Path,
    folders: list[Path],
    out: Path,
    settings: EncoderSettings,
    steps: int | None = None,
    minutes: float | None = None,
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
    device: torch.device | str | None = None,
) -> EncoderState:
    """Train (or with `resume` continue) the encoder in `out` for the generator file (or folder)
    `generator` until `steps` steps in all, or for `minutes` of this run. `folders` of real aligned
    crops are optional. `device`: default the pipeline's rule (`resolve_device`)."""
    if steps is None and minutes is None:
        raise PipelineError("training needs --steps or --minutes")
    out, folders = Path(out), [Path(f) for f in folders]
    gen = check_inputs(Path(generator), folders, out, resume)
    device = resolve_device(device)
    G, _ = load_generator(gen)
    G = G.to(device).eval().requires_grad_(False)
    sha = sha256_file(gen)
    faces = load_faces(folders, min(G.cfg.resolution, MAX_HELD_SIZE)) if folders else None
    lpips = load_lpips("vgg").to(device)
    w_stats(G)  # mapped once, before the clock starts
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        state = load_training(out / TRAINING_NAME, G, gen, sha, settings)
    else:
        state = new_state(G, sha, settings)
    state.encoder.to(device)
    shown = preview_faces(G, faces, settings.preview_faces)
    started = last_save = last_snap = time.monotonic()
    run_start_seconds = state.seconds
    try:
        while (steps is None or state.step < steps) and (
            minutes is None or time.monotonic() - started < minutes * 60
        ):
            progress = run_progress(state.step, steps, time.monotonic() - started, minutes)
            record = train_step(state, G, lpips, faces, settings, annealed_lr(settings, progress))
            now = time.monotonic()
            state.seconds = run_start_seconds + now - started
            record["seconds"] = round(state.seconds, 2)
            if on_step:
                on_step(record)
            if now - last_save > settings.checkpoint_minutes * 60:
                write_outputs(out, state, settings, gen, folders)
                last_save = now
            if now - last_snap > settings.snapshot_minutes * 60:
                write_figures(out, state, G, lpips, shown, settings)
                last_snap = time.monotonic()
    finally:  # also on Ctrl-C: nothing since the last checkpoint is lost
        write_outputs(out, state, settings, gen, folders)
        write_figures(out, state, G, lpips, shown, settings)
    return state
