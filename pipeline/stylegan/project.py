"""W+ projection: find the per-layer latents (and noise maps) that make the generator draw given faces.

One optimisation loop in the manner of NVIDIA's stylegan2-ada-pytorch projector: start from the average
w, Adam with a short learning-rate ramp-up and a cosine ramp-down, Gaussian noise added to the latent
early on (it decays to zero by 75% of the steps) so the search does not stall in the first basin,
noise maps kept free of structure by a multi-scale autocorrelation penalty. The loss is LPIPS-VGG at
256 px (or the generator's size when smaller) plus a weighted pixel MSE. Unlike that projector it
optimises W+ (a w per layer) by default, and it projects a batch of faces at once, each with its own
latent and noise, their losses summed so that each face's gradient is its own.

For video, `project_sequence` starts each frame from the previous frame's result: neighbouring
frames differ little, so a short schedule suffices, and the latents change smoothly.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.stylegan.generator import Generator
from pipeline.stylegan.lpips import LPIPS, reduce_for_lpips


@dataclass(frozen=True)
class ProjectSettings:
    steps: int = 1000
    lr: float = 0.1
    lr_rampup: float = 0.05  # fraction of the steps
    lr_rampdown: float = 0.25
    latent_noise: float = 0.05  # initial noise on w, times std(w); decays to 0 at noise_ramp
    noise_ramp: float = 0.75
    noise_reg: float = 1e5
    mse_weight: float = 0.1  # times the mean squared error of [-1, 1] images
    w_plus: bool = True  # one w per layer; False: one w for all layers (W)
    optimize_noise: bool = True
    lpips_size: int = 256
    patience: int = 0  # stop when the loss has not improved by 0.1% for this many steps (0: never)
    temporal: float = 0.0  # weight of |w_i - w_prev|^2 in sequences: keeps neighbouring latents close


def polish_settings(steps: int = 100, lr: float = 0.05, **changes) -> ProjectSettings:
    """The short schedule that polishes a good start (an encoder's W+, or the previous frame's result):
    no latent noise, which is there to escape the average latent's basin (ReStyle's observation that an
    encoder's W+ needs only corrections; PTI's pivots start the same way), and half the projector's rate.
    The rate still ramps up over the first fifth: Adam's first steps move every coordinate by about the
    full rate whatever its gradient, which throws a good start away. On 16 held-out crops (64 px generator,
    40 kimg; an encoder of 5299 steps at LPIPS 0.0795) encoder + 100 steps reached 0.0577 without the
    ramp-up and 0.0544 with it (0.0543-0.0540 at lr 0.1 and ramp-ups of 0.1-0.3, 0.0563 at lr 0.2)."""
    return ProjectSettings(
        **{
            "steps": steps,
            "lr": lr,
            "lr_rampup": 0.2,
            "latent_noise": 0.0,
            "optimize_noise": False,
            **changes,
        }
    )


def following_settings(first: ProjectSettings, steps: int = 150, **changes) -> ProjectSettings:
    """The schedule of a frame warm-started from the previous frame's result (`project_sequence`): a fifth
    of the projector's rate and no latent noise, the previous face being already close. No ramp-up: at
    this rate Adam's first step costs little (12 frames of the woman clip, 64 px generator of 40 kimg:
    LPIPS 0.0301 without a ramp-up, 0.0297 with one over the first fifth; flicker 0.0172 and 0.0175)."""
    return replace(first, **{"steps": steps, "lr": 0.02, "lr_rampup": 0.0, "latent_noise": 0.0, **changes})


@dataclass
class Projection:
    latents: torch.Tensor  # [N, num_ws, w_dim]
    noise: list[torch.Tensor]  # per layer [N, 1, r, r]
    losses: np.ndarray  # [steps run, N]: LPIPS + weighted MSE per face and step
    lpips: np.ndarray  # [N] LPIPS-VGG of the final reconstruction (at the loss size)
    steps: int
    seconds: float


_W_STATS: weakref.WeakKeyDictionary[Generator, tuple[torch.Tensor, float]] = weakref.WeakKeyDictionary()


def w_stats(G: Generator, samples: int = 10000) -> tuple[torch.Tensor, float]:
    """The average of 10,000 mapped z and the scalar spread of w around it (NVIDIA's w_avg and w_std).
    Kept per generator, so the frames of a sequence do not map them again each."""
    if G not in _W_STATS:
        with torch.no_grad():
            w = G.sample_w(samples)
        w_avg = w.mean(0)
        _W_STATS[G] = w_avg, float(((w - w_avg).square().sum() / samples).sqrt())
    return _W_STATS[G]


def noise_regularisation(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-face sum over layers and scales of squared autocorrelation at one pixel's shift: zero for white
    noise, large when the optimiser hides image structure in the noise maps."""
    total = 0
    for noise in maps:
        while True:
            total = total + (noise * torch.roll(noise, 1, dims=3)).mean(dim=[1, 2, 3]) ** 2
            total = total + (noise * torch.roll(noise, 1, dims=2)).mean(dim=[1, 2, 3]) ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, 2)
    return total


def learning_rate(step: int, s: ProjectSettings) -> float:
    t = step / s.steps
    ramp = min(1.0, (1.0 - t) / s.lr_rampdown) if s.lr_rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if s.lr_rampup > 0:
        ramp *= min(1.0, t / s.lr_rampup)
    return s.lr * ramp


def project_to_w_plus(
    G: Generator,
    images: torch.Tensor,
    lpips: LPIPS,
    settings: ProjectSettings = ProjectSettings(),
    init: torch.Tensor | None = None,
    init_noise: list[torch.Tensor] | None = None,
    previous: torch.Tensor | None = None,
    seed: int = 0,
    on_step: Callable[[int, np.ndarray], None] | None = None,
    sequence: bool = False,
) -> Projection:
    """Project [N, 3, H, W] images in [-1, 1] (H = W = the generator's size).

    `init` (W+ [N, num_ws, w_dim]) and `init_noise` start from a given solution instead of the average;
    `previous` (W+ of the preceding frames) adds the temporal term when settings.temporal > 0.
    `sequence`: the images are consecutive frames, polished together; the temporal term then joins each
    face's latent to the one before it in the batch (and the first to `previous` [1, num_ws, w_dim], the
    last result of the batch before), so the frames' latents move smoothly as a whole.
    """
    s = settings
    device = G.w_avg.device
    n = images.shape[0]
    if images.shape[1:] != (3, G.cfg.resolution, G.cfg.resolution):
        raise ValueError(
            f"images of shape {list(images.shape[1:])}; the generator draws 3x{G.cfg.resolution}^2"
        )
    G.requires_grad_(False)
    # one random stream per face, so that a face's result does not depend on the batch it is in
    gens = [torch.Generator().manual_seed(seed * 100_003 + i) for i in range(n)]

    def randn(shape) -> torch.Tensor:
        return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in gens]).to(device)

    w_avg, w_std = w_stats(G)
    size = s.lpips_size
    target = images.to(device)
    target_feats = lpips.features(reduce_for_lpips(target, size))

    if init is not None:
        start = init.to(device).clone()
        if not s.w_plus:
            start = start.mean(dim=1, keepdim=True)
    else:
        start = w_avg.reshape(1, 1, -1).repeat(n, G.num_ws if s.w_plus else 1, 1)
    w_opt = start.detach().requires_grad_(True)
    if init_noise is not None:
        noise = [m.to(device).clone().detach() for m in init_noise]
    else:
        noise = [randn(shape) for shape in G.noise_shapes()]
    for m in noise:
        m.requires_grad_(s.optimize_noise)
    params = [w_opt] + (noise if s.optimize_noise else [])
    opt = torch.optim.Adam(params, lr=s.lr, betas=(0.9, 0.999))

    history, best, best_step = [], math.inf, 0
    started = time.perf_counter()
    step = 0
    for step in range(s.steps):
        t = step / s.steps
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, s)
        scale = w_std * s.latent_noise * max(0.0, 1.0 - t / s.noise_ramp) ** 2 if s.noise_ramp > 0 else 0.0
        jitter = randn(w_opt.shape) * scale
        ws = w_opt + jitter
        if not s.w_plus:
            ws = ws.expand(-1, G.num_ws, -1)
        synth = G.synthesis(ws, noise)
        synth_small = reduce_for_lpips(synth, size)
        per_face = lpips.distance(lpips.features(synth_small), target_feats)
        if s.mse_weight:
            per_face = per_face + s.mse_weight * (synth - target).square().mean(dim=[1, 2, 3])
        loss = per_face.sum()
        if s.optimize_noise and s.noise_reg:
            loss = loss + s.noise_reg * noise_regularisation(noise).sum()
        if s.temporal and sequence:
            before = None if previous is None else previous.to(device)[:1]
            if before is not None and not s.w_plus:
                before = before.mean(dim=1, keepdim=True)
            chain = w_opt if before is None else torch.cat([before, w_opt])
            loss = loss + s.temporal * (chain[1:] - chain[:-1]).square().sum(dim=-1).mean(dim=-1).sum()
        elif s.temporal and previous is not None:
            loss = loss + s.temporal * (w_opt - previous.to(device)).square().sum(dim=-1).mean(dim=-1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if s.optimize_noise:
            with torch.no_grad():  # keep the noise maps unit Gaussian
                for m in noise:
                    m -= m.mean(dim=[1, 2, 3], keepdim=True)
                    m *= m.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        values = per_face.detach().cpu().numpy()
        history.append(values)
        if on_step:
            on_step(step, values)
        total = float(values.sum())
        if total < best * (1 - 1e-3):
            best, best_step = total, step
        elif s.patience and step - best_step >= s.patience and (t >= s.noise_ramp or not s.latent_noise):
            break

    latents = w_opt.detach()
    if not s.w_plus:
        latents = latents.expand(-1, G.num_ws, -1).clone()
    noise = [m.detach() for m in noise]
    with torch.no_grad():
        drawn = reduce_for_lpips(G.synthesis(latents, noise), size)
        final = lpips.distance(lpips.features(drawn), target_feats)
    return Projection(
        latents, noise, np.stack(history), final.cpu().numpy(), step + 1, time.perf_counter() - started
    )


def project_sequence(
    G: Generator,
    frames: torch.Tensor,
    lpips: LPIPS,
    first: ProjectSettings = ProjectSettings(),
    following: ProjectSettings | None = None,
    on_frame: Callable[[int, Projection], None] | None = None,
    noise: list[torch.Tensor] | None = None,
    on_step: Callable[[int, np.ndarray], None] | None = None,
) -> list[Projection]:
    """Every frame of a shot, in order: the first with the full schedule from the average w, each next
    one warm-started from the previous result with the (much shorter) `following` schedule. `noise`
    starts the first frame's noise maps (fixed ones, such as the generator's own, with optimize_noise
    off). `on_step` is each frame's `project_to_w_plus` on_step."""
    following = following or following_settings(first, patience=20)
    out: list[Projection] = []
    for i in range(frames.shape[0]):
        prev = out[-1] if out else None
        result = project_to_w_plus(
            G,
            frames[i : i + 1],
            lpips,
            first if prev is None else following,
            init=None if prev is None else prev.latents,
            init_noise=noise if prev is None else prev.noise,
            previous=None if prev is None else prev.latents,
            seed=i,
            on_step=on_step,
        )
        out.append(result)
        if on_frame:
            on_frame(i, result)
    return out
