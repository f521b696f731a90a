"""Every GPU-capable stage at real sizes on one device: seconds per step or per frame, and peak GPU memory.

    .venv/bin/python bench/gpu.py [--device cuda|cpu|cuda:N] [--small] [--steps N] [--only swap,projection]

Stages, and their sizes (with --small: the tiny sizes in brackets, which a CPU runs in a few minutes):
  swap train        presets 128 and 256 [64]: one step is a batch of each person (16 [4])
  swap convert      presets 128 and 256 [64]: 64 [16] faces in batches of 32 [8]
  generator train   256 px with `vfx train generator`'s widths, 1024 px with the official config F widths
                    [64 px]: batch 8 (4 at 1024 px) [2]; the mean over the steps, so R1 steps count too
  generator draw    256 and 1024 px [64]: the faces the path stage draws, batch 8 [2]
  encoder train     for the 256 and 1024 px generators [64]: batch 8 (4 at 1024 px) [2]
  projection        256 and 1024 px [64]: W+ optimisation steps, batch 8 [2], LPIPS-VGG at 256 px
  tune              256 and 1024 px [64]: pivotal tuning steps, 4 pivots [2] and the locality term
  composite         1080p and UHD [1080p]: colour, grain, warp back, Laplacian blend, element of one frame
                    with a face filling 40% of its height (crop 512); on the CPU, it has no GPU path

The device is the pipeline's rule (`pipeline/devices.py`): --device, else $VFX_DEVICE, else cuda when there is
a GPU. On CUDA the swap model runs as the pipeline runs it, in mixed precision, and again in fp32 for
comparison; the other models run in fp32 everywhere. A row's time is the mean over --steps steps (or one
conversion of all its faces) after a warm-up step. Peak memory is torch's peak allocation over the row on
CUDA. Networks are freshly initialised and the faces synthetic (speed does not depend on either), so the
script needs no footage and runs on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from common import print_table

from pipeline.devices import DeviceError, resolve_device
from pipeline.stylegan.generator import Generator, GeneratorConfig, default_channels
from pipeline.stylegan.train import WIDTHS, GanSettings
from pipeline.swap.data import FaceSet

OFFICIAL = (32768, 512)  # config F's channel widths (base, max): NVIDIA's FFHQ generators


@dataclass
class Row:
    stage: str
    size: str
    device: torch.device
    precision: str
    batch: int
    seconds: float  # per step, or per frame
    unit: str  # "step" or "frame"
    peak: float | None  # GiB
    note: str = ""

    def cells(self) -> list[str]:
        rate = f"{1 / self.seconds:.2f} {self.unit}s/s" if self.seconds > 0 else "-"
        peak = "-" if self.peak is None else f"{self.peak:.2f}"
        return [
            self.stage,
            self.size,
            str(self.device),
            self.precision,
            str(self.batch),
            f"{self.seconds:.4f} s/{self.unit}",
            rate,
            peak,
            self.note,
        ]


HEADER = ["stage", "size", "device", "precision", "batch", "time", "rate", "peak GiB", "note"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, fn: Callable[[], object], repeats: int) -> tuple[float, float | None]:
    """Mean seconds of fn over `repeats` calls after a warm-up call, and the peak GiB allocated on CUDA."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    seconds = (time.perf_counter() - t) / repeats
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return seconds, peak


# Synthetic inputs ----------------------------------------------------------------------------------------


def face_landmarks(size: int) -> np.ndarray:
    """68 points in dlib's order, laid out like an aligned face in a `size` px crop."""

    def arc(cx, cy, rx, ry, a0, a1, n):
        t = np.linspace(a0, a1, n)
        return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)

    parts = [
        arc(0.5, 0.45, 0.32, 0.45, math.pi, 0, 17),  # jaw: below the eyes, from the image's left
        np.stack([np.linspace(0.25, 0.45, 5), np.full(5, 0.38)], 1),  # brows
        np.stack([np.linspace(0.55, 0.75, 5), np.full(5, 0.38)], 1),
        np.stack([np.full(4, 0.5), np.linspace(0.42, 0.58, 4)], 1),  # nose
        np.stack([np.linspace(0.44, 0.56, 5), np.full(5, 0.62)], 1),
        arc(0.36, 0.45, 0.06, 0.025, math.pi, 3 * math.pi, 7)[:6],  # eyes
        arc(0.64, 0.45, 0.06, 0.025, math.pi, 3 * math.pi, 7)[:6],
        arc(0.5, 0.75, 0.12, 0.05, math.pi, 3 * math.pi, 13)[:12],  # mouth
        arc(0.5, 0.75, 0.08, 0.025, math.pi, 3 * math.pi, 9)[:8],
    ]
    return (np.concatenate(parts) * size).astype(np.float32)


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """n float32 RGB images in [0, 1]: blurred noise, so that colour transfer and warps see real variation."""
    rng = np.random.default_rng(seed)
    small = rng.random((n, 8, 8, 3)).astype(np.float32)
    return np.stack([cv2.resize(s, (size, size), interpolation=cv2.INTER_CUBIC) for s in small]).clip(0, 1)


def face_set(size: int, seed: int, count: int = 32) -> FaceSet:
    landmarks = np.repeat(face_landmarks(size)[None], count, 0)
    return FaceSet(f"synthetic{seed}", smooth_images(count, size, seed), landmarks, size)


def generator(res: int, widths: tuple[int, int], device: torch.device) -> Generator:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=res, channels=default_channels(res, *widths)))
    G = G.to(device).eval().requires_grad_(False)
    G.compute_w_avg(2000)
    return G


def widths_for(res: int) -> tuple[tuple[int, int], str]:
    return (WIDTHS[res], "training widths") if res in WIDTHS and res <= 256 else (OFFICIAL, "config F")


# Stages ---------------------------------------------------------------------------------------------------


def swap_rows(device: torch.device, preset: str, small: bool, steps: int) -> list[Row]:
    """Training steps and conversion of one preset; on CUDA in mixed precision (as the pipeline runs
    them) and in fp32."""
    from pipeline.swap.convert import convert_faces
    from pipeline.swap.data import Augment, make_batch
    from pipeline.swap.model import PRESETS
    from pipeline.swap.train import TrainSettings, new_state, train_step

    batch, frames, convert_batch = (4, 16, 8) if small else (16, 64, 32)
    size = PRESETS[preset].size
    faces = {"a": face_set(size, 1), "b": face_set(size, 2)}
    crops = smooth_images(frames, size, 3)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(steps):
        for who in faces.values():
            make_batch(who, rng.integers(0, len(who.images), batch), rng, Augment())
    note = f"{(time.perf_counter() - t) / steps:.3f} s of it preparing batches on the CPU"
    rows = []
    for mixed in [True, False] if device.type == "cuda" else [False]:
        label = "mixed" if mixed else "fp32"
        settings = TrainSettings(preset=preset, batch=batch, mixed_precision=mixed)
        state = new_state(settings, device)
        seconds, peak = measure(device, lambda s=state, st=settings: train_step(s, faces, st), steps)
        rows.append(Row("swap train", f"{size} px", device, label, batch, seconds, "step", peak, note))
        print("done: " + ", ".join(rows[-1].cells()), flush=True)  # as it goes: the real sizes take minutes
        model = state.model.eval()
        seconds, peak = measure(
            device,
            lambda m=model, x=mixed: convert_faces(m, crops, "b", convert_batch, x),
            1,
        )
        per_frame = seconds / frames
        rows.append(Row("swap convert", f"{size} px", device, label, convert_batch, per_frame, "frame", peak))
        print("done: " + ", ".join(rows[-1].cells()), flush=True)  # as it goes: the real sizes take minutes
        state = model = None  # freed before the next precision's model is made
    return rows


@dataclass
class WidthsGan(GanSettings):
    """`vfx train generator`'s recipe at any of the widths (the official config F's too)."""

    widths: tuple[int, int] = WIDTHS[64]

    def config(self) -> GeneratorConfig:
        channels = default_channels(self.res, *self.widths)
        return GeneratorConfig(resolution=self.res, mapping_layers=self.mapping_layers, channels=channels)


def generator_rows(device: torch.device, res: int, small: bool, steps: int) -> list[Row]:
    """Training steps (G and D, R1 and the average) and drawing, at one resolution."""
    from pipeline.stylegan.train import new_state, train_step

    widths, kind = widths_for(res)
    label = f"{res} px ({kind})"
    batch = 2 if small else (4 if res >= 1024 else 8)
    settings = WidthsGan(res=res, batch=batch, widths=widths)
    state = new_state(settings, device)
    reals = torch.rand(64, 3, res, res, device=device) * 2 - 1
    # on a GPU the mean is over at least 16 steps, so that it holds an R1 step (every 16th)
    n = max(steps, settings.r1_every) if device.type == "cuda" else steps
    seconds, peak = measure(device, lambda: train_step(state, reals, settings), n)
    rows = [Row("generator train", label, device, "fp32", batch, seconds, "step", peak)]
    print("done: " + ", ".join(rows[-1].cells()), flush=True)  # as it goes: the real sizes take minutes
    state = reals = None
    G = generator(res, widths, device)
    draw_batch = 2 if small else 8
    ws = G.map(torch.randn(draw_batch, G.cfg.z_dim, device=device))

    def draw() -> None:
        with torch.no_grad():
            G.synthesis(ws, "const")

    seconds, peak = measure(device, draw, steps)
    rows.append(Row("generator draw", label, device, "fp32", draw_batch, seconds / draw_batch, "frame", peak))
    print("done: " + ", ".join(rows[-1].cells()), flush=True)  # as it goes: the real sizes take minutes
    return rows


def inversion_rows(device: torch.device, res: int, small: bool, steps: int, lpips) -> list[Row]:
    """The encoder's training, projection and pivotal tuning at one resolution: the stages that put a
    shot's faces into W+."""
    from pipeline.stylegan.encoder_train import EncoderSettings, train_step
    from pipeline.stylegan.encoder_train import new_state as new_encoder
    from pipeline.stylegan.project import ProjectSettings, project_to_w_plus
    from pipeline.stylegan.tune import TuneSettings, tune_generator

    widths, kind = widths_for(res)
    G = generator(res, widths, device)
    label = f"{res} px ({kind})"
    batch = 2 if small else (4 if res >= 1024 else 8)
    settings = EncoderSettings(batch=batch)
    state = new_encoder(G, "bench", settings)
    seconds, peak = measure(device, lambda: train_step(state, G, lpips, None, settings), steps)
    rows = [Row("encoder train", label, device, "fp32", batch, seconds, "step", peak)]
    print("done: " + ", ".join(rows[-1].cells()), flush=True)  # as it goes: the real sizes take minutes
    state = None
    batch = 2 if small else 8
    images = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    seconds, peak = measure(
        device, lambda: project_to_w_plus(G, images, lpips, ProjectSettings(steps=steps)), 1
    )
    note = f"{seconds / batch:.2f} s a face for {steps} steps"
    rows.append(Row("projection", label, device, "fp32", batch, seconds / steps, "step", peak, note))
    print("done: " + ", ".join(rows[-1].cells()), flush=True)  # as it goes: the real sizes take minutes
    pivots = 2 if small else 4
    latents = G.map(torch.randn(8, G.cfg.z_dim, device=device)).cpu()
    targets = torch.rand(8, 3, res, res) * 2 - 1
    tune = TuneSettings(steps=steps, batch=pivots, locality_batch=2)
    seconds, peak = measure(device, lambda: tune_generator(G, latents, targets, lpips, tune), 1)
    rows.append(Row("tune", label, device, "fp32", pivots, seconds / steps, "step", peak))
    print("done: " + ", ".join(rows[-1].cells()), flush=True)  # as it goes: the real sizes take minutes
    return rows


PLATES = {"1080p": (1080, 1920), "UHD": (2160, 3840)}


def composite_rows(name: str, repeats: int) -> list[Row]:
    """The per-frame composite of one new face on the CPU, as Compositor does it: align, matte, colour,
    warp back, grain, Laplacian blend, element."""
    from pipeline.composite import blend, match_grain, transfer_color
    from pipeline.faces.align import align_face, crop_matrix, ffhq_params, warp_to_plate
    from pipeline.faces.masks import landmark_mask

    h, w = PLATES[name]
    crop, cpu = 512, torch.device("cpu")
    rng = np.random.default_rng(0)
    plate = cv2.resize(smooth_images(1, 64, 4)[0] * 200 + 20, (w, h), interpolation=cv2.INTER_CUBIC)
    plate = np.clip(plate + rng.normal(0, 3, plate.shape), 0, 255).astype(np.uint8)  # grain to match
    face_px = 0.4 * h
    points = face_landmarks(int(face_px)) + [w / 2 - face_px / 2, h / 2 - face_px / 2]
    params = ffhq_params(points)
    matrix = crop_matrix(params, crop)
    crop_points = points @ matrix[:, :2].T + matrix[:, 2]
    new_face = smooth_images(1, crop, 5)[0]

    def frame() -> None:
        aligned, _ = align_face(plate, params, crop)
        matte = landmark_mask(crop_points, crop, "extended", 0.02, None, 0.03)
        face = transfer_color(new_face, aligned, matte, "rct")
        region = warp_to_plate(face, matte, matrix, plate.shape)
        if region is not None:
            region = match_grain(region, plate, seed=1001)
        blend(plate, region, "laplacian")
        element = np.zeros((h, w, 4), np.float32)
        if region is not None:
            element[region.box] = np.concatenate([region.face, region.alpha[..., None]], axis=-1)

    seconds, _ = measure(cpu, frame, repeats)
    rows = [Row("composite", f"{name} {w}x{h}", cpu, "fp32", 1, seconds, "frame", None, "no GPU path")]
    print("done: " + ", ".join(rows[-1].cells()), flush=True)  # as it goes: the real sizes take minutes
    return rows


STAGES = ("swap", "generator", "inversion", "composite")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", help="cpu, cuda or cuda:N (default: $VFX_DEVICE, else cuda when present)")
    ap.add_argument("--small", action="store_true", help="tiny sizes: a few minutes on a CPU")
    ap.add_argument("--steps", type=int, help="steps timed per row (default 20 on a GPU, 3 on a CPU)")
    ap.add_argument("--only", help=f"comma-separated stages among {', '.join(STAGES)}")
    args = ap.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except DeviceError as e:
        ap.error(e.one_line())
    steps = args.steps or (20 if device.type == "cuda" else 3)
    only = set(args.only.split(",")) if args.only else set(STAGES)
    if only - set(STAGES):
        ap.error(f"--only: unknown stage {sorted(only - set(STAGES))[0]} (one of {', '.join(STAGES)})")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPUs"
    print(
        f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{'small sizes' if args.small else 'real sizes'}; {steps} steps per row; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    presets = ["64"] if args.small else ["128", "256"]
    gan_sizes = [64] if args.small else [256, 1024]
    plates = ["1080p"] if args.small else ["1080p", "UHD"]
    rows: list[Row] = []
    started = time.perf_counter()
    for preset in presets if "swap" in only else []:
        rows += swap_rows(device, preset, args.small, steps)
    for res in gan_sizes if "generator" in only else []:
        rows += generator_rows(device, res, args.small, steps)
    if "inversion" in only:
        from pipeline.stylegan.lpips import load_lpips

        lpips = load_lpips("vgg").to(device)
        for res in gan_sizes:
            rows += inversion_rows(device, res, args.small, steps, lpips)
    for plate in plates if "composite" in only else []:
        rows += composite_rows(plate, steps)
    print()
    print_table(HEADER, [r.cells() for r in rows])
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
