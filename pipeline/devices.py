"""Where the models run: one rule for every model of the pipeline, and when mixed precision is used.

The device is `--device` on the command line, else the `VFX_DEVICE` environment variable, else the first
CUDA GPU when there is one, else the CPU. The command line checks `--device` and passes it on as
`VFX_DEVICE`, so the Prefect tasks and the local Dask worker processes that the command starts follow it;
render nodes (a work pool's workers, an existing Dask cluster) follow their own `VFX_DEVICE`.

Mixed precision is used on a CUDA GPU only, and only by the models where it is safe (see `autocast`);
on the CPU everything runs in fp32.
"""

from __future__ import annotations

import contextlib
import os
import platform
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError

# torch is imported where it is used: the stage modules import this module, and vfx status must not load torch
if TYPE_CHECKING:
    import torch

ENV = "VFX_DEVICE"


class DeviceError(PipelineError):
    """A device setting that names no device this machine has."""


def resolve_device(name: str | torch.device | None = None, setting: str = "--device") -> torch.device:
    """The device models run on: `name` when given (checked, and named as `setting` in the error), else
    $VFX_DEVICE (checked), else cuda when a CUDA GPU is available, else cpu."""
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    if name is None:
        name, setting = os.environ.get(ENV) or None, ENV
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = f"{ENV}={name}" if setting == ENV else f"{setting} {name}"
    try:
        device = torch.device(name.strip())
    except (RuntimeError, ValueError):
        raise DeviceError(f"{where}: not a device; give cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{where}: no CUDA GPU is available on {platform.node()}; give cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            gpus = f"cuda:0 to cuda:{count - 1}"
            raise DeviceError(f"{where}: {platform.node()} has {count} CUDA GPU(s), {gpus}")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"{where}: no Apple GPU (mps) is available on {platform.node()}; give cpu")
        return device
    raise DeviceError(f"{where}: the models run on cpu, cuda or cuda:N (or mps), not {device.type}")


def half_dtype(device: torch.device) -> torch.dtype:
    """The 16-bit type for training on a CUDA GPU: bf16 where the GPU computes it natively (it has fp32's
    range, so no loss scaling is needed), else fp16 (with a GradScaler)."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype, enabled: bool = True):
    """The forward pass in `dtype` on a CUDA GPU (matrix products and convolutions in 16 bits, reductions
    in fp32); a no-op elsewhere, so CPU results stay fp32. Callers compute their losses in fp32."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cuda", dtype=dtype)


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a model's parameters are (the device its inputs must go to)."""
    return next(module.parameters()).device
