"""W+ projection speed: optimisation steps per second and seconds per frame (full 1000-step schedule) at
64, 128 and 256 px, batch 1 and 8, on CPU (and on a GPU with --device cuda).

    .venv/bin/python bench/projection.py [--device cpu|cuda] [--steps N] [--sizes 64,128,256]

The reference, measured in the same run, is LPIPS-VGG alone (forward and backward through VGG16 at
the same size and batch): the part of a step that no generator can avoid. The ratio step/reference
shows what the generator and the optimiser add. Freshly initialised generators are used (speed does
not depend on training), with the training widths of `vfx train generator`.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import print_table

from pipeline.devices import resolve_device
from pipeline.stylegan.generator import Generator, GeneratorConfig, default_channels
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylegan.project import ProjectSettings, project_to_w_plus
from pipeline.stylegan.train import WIDTHS


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", help="default: the pipeline's (pipeline/devices.py)")
    ap.add_argument("--steps", type=int, default=10, help="steps timed per configuration")
    ap.add_argument("--sizes", default="64,128,256")
    args = ap.parse_args(argv)
    dev = str(resolve_device(args.device))
    name = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else f"{os.cpu_count()} CPUs"
    print(
        f"device: {dev} ({name}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps} steps per timing; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    lpips = load_lpips("vgg").to(dev)
    rows = []
    for res in [int(s) for s in args.sizes.split(",")]:
        base, cmax = WIDTHS[res]
        torch.manual_seed(0)
        G = (
            Generator(GeneratorConfig(resolution=res, channels=default_channels(res, base, cmax)))
            .to(dev)
            .eval()
        )
        G.compute_w_avg(2000)
        for batch in (1, 8):
            images = torch.rand(batch, 3, res, res, device=dev) * 2 - 1
            settings = ProjectSettings(steps=args.steps)
            project_to_w_plus(G, images, lpips, ProjectSettings(steps=2))  # warm-up
            sync(dev)
            t = time.perf_counter()
            project_to_w_plus(G, images, lpips, settings)
            sync(dev)
            step = (time.perf_counter() - t) / args.steps
            x = images.clone().requires_grad_(True)
            target = lpips.features(images.flip(0))
            sync(dev)
            t = time.perf_counter()
            for _ in range(args.steps):
                lpips.distance(lpips.features(x), target).sum().backward()
            sync(dev)
            ref = (time.perf_counter() - t) / args.steps
            rows.append(
                [
                    f"{res} px, batch {batch}",
                    f"{1 / step:.2f}",
                    f"{step * 1000 / batch:.1f} s",
                    f"{ref * 1000:.0f} ms",
                    f"{step / ref:.2f}x",
                ]
            )
            print(rows[-1])
    header = [
        "size, batch",
        "steps/s",
        "s per frame (1000 steps)",
        "LPIPS-VGG alone per step",
        "step / LPIPS",
    ]
    print()
    print_table(header, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
