"""Pivotal tuning: adapt a copy of the generator so that fixed latents (the pivots) draw given faces.

PTI (Roich et al. 2022, "Pivotal Tuning for Latent-based Editing of Real Images") first inverts each face
to a latent, the pivot, then tunes the generator's weights with LPIPS and pixel L2 so that the pivot
reproduces the face exactly; a locality regulariser keeps the generator unchanged away from the pivots:
latents on a ball of fixed radius around a pivot, toward random mapped samples, must draw what the
original generator drew there. STIT (Tzaban et al. 2022, "Stitch it in Time") tunes once over all frames
of a shot, so one generator serves every frame and stays temporally coherent, and adds a stitching tuning:
the band around the matte's edge is tuned toward the plate, so that the pasted face meets the plate
without a seam, while inside the matte the face keeps what the tuned generator drew.

Only the synthesis network is tuned (the pivots are W+ latents, the mapping does not take part); the
generator's fixed noise is used, as everywhere the pipeline draws faces.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.stylegan.generator import Generator
from pipeline.stylegan.lpips import LPIPS
from pipeline.stylegan.project import w_stats


@dataclass(frozen=True)
class TuneSettings:
    steps: int = 400
    lr: float | None = None  # None: tune_lr of the generator's resolution
    batch: int = 4  # pivots per step
    lpips_weight: float = 1.0
    mse_weight: float = 1.0  # times the mean squared error of [-1, 1] images
    locality: float = 0.1  # weight of the locality regulariser (PTI's 0.1); 0: off
    locality_radius: float = 1.0  # the ball around a pivot, in units of the generator's w spread
    locality_batch: int = 2  # latents on the ball per step
    lpips_size: int = 256
    seed: int = 0


def tune_lr(resolution: int) -> float:
    """Adam's rate for tuning a generator drawing `resolution` px faces. PTI's 3e-4 was chosen for 1024 px
    FFHQ; on our 64 px generator (40 kimg) it is too slow: over the woman clip's first 48 frames (keys from
    the encoder, STIT's pivots on every frame) tuning left the drawn faces at LPIPS-VGG 0.0357 at 300 steps
    and 3e-4, and 0.0250 at 400 steps and 3e-3 (bench/inversion.py; bench/tune_sweep.py's best rate).
    Between the two sizes the rate falls log-linearly with the resolution: an interpolation between PTI's
    choice and our measurement, not a measurement."""
    through = min(1.0, max(0.0, (math.log2(resolution) - 6) / 4))
    return 3e-3 * 0.1**through


@dataclass(frozen=True)
class StitchSettings:
    steps: int = 100
    lr: float = 3e-4
    batch: int = 4
    band: float = 0.06  # half the width of the border band, as a fraction of the crop
    lpips_size: int = 256
    seed: int = 0


@dataclass
class Tuning:
    generator: Generator  # the tuned copy
    losses: np.ndarray  # [steps]: pivot loss per step (without the regulariser)
    locality_losses: np.ndarray  # [steps]: the regulariser's loss per step (0 when off)
    steps: int
    seconds: float
    lr: float  # Adam's rate it ran at


def tunable_copy(G: Generator) -> Generator:
    """A copy of G whose synthesis weights train; the original is left as it was."""
    tuned = copy.deepcopy(G).eval()
    tuned.requires_grad_(False)
    tuned.synthesis.requires_grad_(True)
    return tuned


def locality_latents(
    G: Generator, pivots: torch.Tensor, count: int, radius: float, gen: torch.Generator
) -> torch.Tensor:
    """PTI's regulariser samples: from a pivot, a step of `radius` (times the w spread) toward the mapped w
    of a random z, per W+ layer: latents the shot's faces do not use, whose drawing should not change."""
    device = pivots.device
    _, w_std = w_stats(G)
    pick = torch.randint(0, pivots.shape[0], (count,), generator=gen)
    z = torch.randn(count, G.cfg.z_dim, generator=gen).to(device)
    with torch.no_grad():
        w = G.map(z)  # [count, num_ws, w_dim]
    start = pivots[pick.to(device)]
    direction = w - start
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return start + radius * w_std * direction


def pivot_batches(count: int, batch: int, gen: torch.Generator) -> Iterator[list[int]]:
    """Endless batches of pivot indices: every pivot once per pass, the passes in random orders."""
    batch = min(batch, count)
    order: list[int] = []
    while True:
        if len(order) < batch:
            order += torch.randperm(count, generator=gen).tolist()
        yield order[:batch]
        order = order[batch:]


def tune_generator(
    G: Generator,
    latents: torch.Tensor,
    targets: torch.Tensor,
    lpips: LPIPS,
    settings: TuneSettings = TuneSettings(),
    on_step: Callable[[int, float], None] | None = None,
) -> Tuning:
    """Tune a copy of G so that the pivots `latents` [K, num_ws, w_dim] draw `targets` [K, 3, R, R] in
    [-1, 1] (on CPU or the generator's device; moved batch by batch). The pivots cycle in a random order,
    `batch` per step; at settings.lr, or tune_lr's rate for G's size when that is None."""
    s = settings
    device = G.w_avg.device
    k = latents.shape[0]
    if targets.shape[0] != k or targets.shape[1:] != (3, G.cfg.resolution, G.cfg.resolution):
        raise ValueError(f"{k} pivots and targets of shape {list(targets.shape)}")
    G.requires_grad_(False)
    tuned = tunable_copy(G)
    lr = s.lr if s.lr is not None else tune_lr(G.cfg.resolution)
    opt = torch.optim.Adam([p for p in tuned.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(s.seed)
    pivots = latents.to(device)
    losses, local_losses = [], []
    started = time.perf_counter()
    batches = pivot_batches(k, s.batch, gen)
    for step in range(s.steps):
        pick = next(batches)
        w = pivots[pick]
        target = targets[pick].to(device)
        synth = tuned.synthesis(w, "const")
        loss = s.lpips_weight * lpips.between(synth, target, s.lpips_size).mean()
        loss = loss + s.mse_weight * (synth - target).square().mean()
        total = loss
        local = torch.zeros(())
        if s.locality > 0 and s.locality_batch > 0:
            w_r = locality_latents(G, pivots, s.locality_batch, s.locality_radius, gen)
            with torch.no_grad():
                before = G.synthesis(w_r, "const")
            after = tuned.synthesis(w_r, "const")
            local = lpips.between(after, before, s.lpips_size).mean() + (after - before).square().mean()
            total = total + s.locality * local
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        losses.append(loss.item())
        local_losses.append(local.item())
        if on_step:
            on_step(step, losses[-1])
    tuned.requires_grad_(False)
    seconds = time.perf_counter() - started
    return Tuning(tuned, np.array(losses), np.array(local_losses), s.steps, seconds, lr)


def border_band(mattes: torch.Tensor, band: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The band around a matte's edge and the matte's inside, as [K, 1, R, R] weights: the matte grown and
    shrunk by `band` of the crop (max and min filters), their difference, and what the shrunk one keeps."""
    r = max(1, round(band * mattes.shape[-1]))
    hard = (mattes > 0.5).float()
    grown = F.max_pool2d(hard, 2 * r + 1, stride=1, padding=r)
    shrunk = -F.max_pool2d(-hard, 2 * r + 1, stride=1, padding=r)
    return grown - shrunk, shrunk


def stitch_generator(
    G: Generator,
    latents: torch.Tensor,
    plates: torch.Tensor,
    mattes: torch.Tensor,
    lpips: LPIPS,
    settings: StitchSettings = StitchSettings(),
    on_step: Callable[[int, float], None] | None = None,
) -> Tuning:
    """STIT's stitching tuning of a copy of the (tuned) generator G: for latents [K, num_ws, w_dim] and the
    plate's aligned crops [K, 3, R, R] with their mattes [K, 1, R, R] in [0, 1], the border band is pulled
    toward the plate and the inside of the matte toward what G drew there, so the face is unchanged and its
    edge meets the plate."""
    s = settings
    device = G.w_avg.device
    k = latents.shape[0]
    G.requires_grad_(False)
    band, inside = border_band(mattes, s.band)
    with torch.no_grad():
        drawn = torch.cat([G.synthesis(latents[i : i + 8].to(device), "const").cpu() for i in range(0, k, 8)])
    stitched = tunable_copy(G)
    opt = torch.optim.Adam([p for p in stitched.parameters() if p.requires_grad], lr=s.lr)
    gen = torch.Generator().manual_seed(s.seed)
    losses = []
    started = time.perf_counter()
    batches = pivot_batches(k, s.batch, gen)
    for step in range(s.steps):
        pick = next(batches)
        b, i = band[pick].to(device), inside[pick].to(device)
        plate, face = plates[pick].to(device), drawn[pick].to(device)
        synth = stitched.synthesis(latents[pick].to(device), "const")
        # the target: the plate in the band, the drawn face inside, the drawn face elsewhere
        target = face * (1 - b) + plate * b
        loss = (b * (synth - plate)).square().sum() / b.sum().clamp_min(1) / 3
        loss = loss + (i * (synth - face)).square().sum() / i.sum().clamp_min(1) / 3
        loss = loss + lpips.between(synth, target, s.lpips_size).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if on_step:
            on_step(step, losses[-1])
    stitched.requires_grad_(False)
    seconds = time.perf_counter() - started
    return Tuning(stitched, np.array(losses), np.zeros(len(losses)), s.steps, seconds, s.lr)


@torch.no_grad()
def lpips_per_face(
    G: Generator, latents: torch.Tensor, targets: torch.Tensor, lpips: LPIPS, batch: int = 16
) -> np.ndarray:
    """LPIPS-VGG of what G draws from each latent against its target ([K] numpy), at the loss size."""
    device = G.w_avg.device
    out = []
    for i in range(0, latents.shape[0], batch):
        synth = G.synthesis(latents[i : i + batch].to(device), "const")
        out.append(lpips.between(synth, targets[i : i + batch].to(device)).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)
