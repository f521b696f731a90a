"""Training the swap model: both people each step, atomic checkpoints, exact resume, previews.

A checkpoint holds the model, the optimiser, the step, the random generators and the loss history,
so training killed at any moment continues from the last checkpoint exactly as if it had not stopped.

Training runs on the pipeline's device (`pipeline.devices`); on a CUDA GPU the model's forward pass runs
in 16 bits (bf16, or fp16 with loss scaling) and the loss in fp32: SSIM subtracts squared means, which
16 bits would cancel away.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.curves import labelled, loss_curve, write_png
from pipeline.devices import autocast, half_dtype, module_device, resolve_device
from pipeline.errors import PipelineError
from pipeline.files import save_torch_atomic
from pipeline.models import load_torch_file
from pipeline.swap.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_NAME, CheckpointError, checkpoint_file
from pipeline.swap.data import Augment, FaceSet, load_face_set, make_batch
from pipeline.swap.loss import swap_loss
from pipeline.swap.model import PRESETS, SwapConfig, SwapModel


@dataclass
class TrainSettings:
    preset: str = "64"
    batch: int = 16
    lr: float = 5e-5
    warp: bool = True
    seed: int = 0
    checkpoint_minutes: float = 5.0
    preview_every: int = 200
    mixed_precision: bool = True  # on a CUDA GPU; the CPU always trains in fp32


@dataclass
class TrainState:
    model: SwapModel
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator
    scaler: torch.amp.GradScaler  # loss scaling for fp16 on a GPU without bf16; disabled otherwise
    step: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return module_device(self.model)


def new_state(settings: TrainSettings, device: torch.device | str = "cpu") -> TrainState:
    """A fresh model on `device`; initialised on the CPU first, so the weights are the same on any device."""
    if settings.preset not in PRESETS:
        raise CheckpointError(f"unknown preset {settings.preset!r} (one of {', '.join(PRESETS)})")
    torch.manual_seed(settings.seed)
    device = torch.device(device)
    model = SwapModel(PRESETS[settings.preset]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    fp16 = settings.mixed_precision and device.type == "cuda" and half_dtype(device) == torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    return TrainState(model, optimizer, np.random.default_rng(settings.seed), scaler)


def save_checkpoint(path: Path, state: TrainState, settings: TrainSettings) -> None:
    """Write to a temporary file and rename: a checkpoint on disk is always whole."""
    data = {
        "format": CHECKPOINT_FORMAT,
        "config": state.model.cfg.to_dict(),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "step": state.step,
        "numpy_rng": state.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "scaler": state.scaler.state_dict(),
        "history": state.history,
        "settings": settings.__dict__,
    }
    save_torch_atomic(path, data)


def read_checkpoint(path: Path) -> dict:
    path = checkpoint_file(path)
    # mmap, so reading the config does not read a 1 GB file
    data = load_torch_file(path, "swap checkpoint", CheckpointError, mmap=True)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "config" not in data:
        raise CheckpointError(f"{path}: not a swap checkpoint of format {CHECKPOINT_FORMAT}")
    return data


def load_model(path: Path, device: torch.device | str = "cpu") -> SwapModel:
    data = read_checkpoint(path)
    model = SwapModel(SwapConfig.from_dict(data["config"]))
    model.load_state_dict(data["model"])
    return model.to(device).eval()


def load_state(path: Path, settings: TrainSettings, device: torch.device | str = "cpu") -> TrainState:
    data = read_checkpoint(path)
    cfg = SwapConfig.from_dict(data["config"])
    if cfg.preset != settings.preset:
        raise CheckpointError(
            f"{path}: the checkpoint is preset {cfg.preset}; --preset {settings.preset} was asked"
        )
    state = new_state(settings, device)
    state.model.load_state_dict(data["model"])
    state.optimizer.load_state_dict(data["optimizer"])  # its moments follow the parameters' device
    if state.scaler.is_enabled() and data.get("scaler"):
        state.scaler.load_state_dict(data["scaler"])
    for g in state.optimizer.param_groups:
        g["lr"] = settings.lr
    state.rng.bit_generator.state = data["numpy_rng"]
    torch.set_rng_state(data["torch_rng"])
    state.step = int(data["step"])
    state.history = list(data["history"])
    return state


def train_step(state: TrainState, faces: dict[str, FaceSet], settings: TrainSettings) -> dict:
    aug = Augment(warp=settings.warp)
    state.model.train()
    device = state.device
    losses, total = {}, 0.0
    for who, fs in faces.items():
        idx = state.rng.integers(0, len(fs.images), settings.batch)
        batch = {k: torch.from_numpy(v).to(device) for k, v in make_batch(fs, idx, state.rng, aug).items()}
        with autocast(device, half_dtype(device), settings.mixed_precision):
            rgb, mask = state.model(batch["input"], who)
        parts = swap_loss(rgb.float(), mask.float(), batch)
        total = total + parts["total"]
        losses.update({f"{who}_{k}": v.item() for k, v in parts.items()})
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(total).backward()
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.step += 1
    record = {"step": state.step, **losses}
    state.history.append(record)
    return record


PREVIEW_COLUMNS = ("A", "A->A", "A->B", "B", "B->B", "B->A")


@torch.no_grad()
def preview(model: SwapModel, faces: dict[str, FaceSet], step: int, count: int = 4) -> np.ndarray:
    """Columns A, A->A, A->B, B, B->B, B->A for a few fixed faces (uint8 RGB), named, with the step."""
    model.eval()
    device = module_device(model)
    cols = []
    for who, other in (("a", "b"), ("b", "a")):
        x = torch.from_numpy(faces[who].images[:count].transpose(0, 3, 1, 2).copy()).to(device)
        same, _ = model(x, who)
        swapped, _ = model(x, other)
        for t in (x, same, swapped):
            cols.append(np.concatenate(list(t.float().permute(0, 2, 3, 1).cpu().numpy()), axis=0))
    grid = (np.clip(np.concatenate(cols, axis=1), 0, 1) * 255 + 0.5).astype(np.uint8)
    return labelled(grid, columns=list(PREVIEW_COLUMNS), caption=f"step {step}")


def train(
    a_dir: Path,
    b_dir: Path,
    out: Path,
    settings: TrainSettings,
    steps: int | None = None,
    minutes: float | None = None,
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
    device: torch.device | str | None = None,
) -> TrainState:
    """Train until `steps` (total, counting resumed ones) or `minutes` of this run; checkpoint on the way
    and on Ctrl-C. `device` (default: the pipeline's rule, `resolve_device`) may differ from the one a
    resumed checkpoint was trained on."""
    if steps is None and minutes is None:
        raise PipelineError("training needs --steps or --minutes")
    device = resolve_device(device)
    size = PRESETS[settings.preset].size if settings.preset in PRESETS else 64
    faces = {"a": load_face_set(a_dir, size, "a"), "b": load_face_set(b_dir, size, "b")}
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT_NAME
    state = load_state(ckpt, settings, device) if resume else new_state(settings, device)
    if not resume and ckpt.exists():
        raise CheckpointError(f"{ckpt}: a checkpoint exists; use --resume to continue it or another --out")
    started = last_save = time.monotonic()
    try:
        while (steps is None or state.step < steps) and (
            minutes is None or time.monotonic() - started < minutes * 60
        ):
            record = train_step(state, faces, settings)
            if on_step:
                on_step(record)
            if state.step % settings.preview_every == 0:
                write_png(out / "preview.png", preview(state.model, faces, state.step))
            if time.monotonic() - last_save > settings.checkpoint_minutes * 60:
                save_checkpoint(ckpt, state, settings)
                last_save = time.monotonic()
    finally:  # also on Ctrl-C: nothing since the last checkpoint is lost
        save_checkpoint(ckpt, state, settings)
        write_png(out / "preview.png", preview(state.model, faces, state.step))
        write_png(out / "loss.png", loss_curve(state.history, {"loss A": "a_total", "loss B": "b_total"}))
    return state
