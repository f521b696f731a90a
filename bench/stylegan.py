"""StyleGAN2 speed: generator images per second at 64, 128 and 256 px, and training iterations per
second, on CPU (and on a GPU with --device cuda).

    .venv/bin/python bench/stylegan.py [--device cpu|cuda] [--repeats N] [--batch N]

The reference, measured in the same run on the same weights, is the textbook form of the modulated
convolution (one grouped convolution with a kernel built per sample, as rosinality's model.py and
NVIDIA's fused path compute it); ours scales the input and output around one shared convolution. The
ratio is reference time / our time: above 1 means ours is faster. Speed does not depend on what a
network has learned, so freshly initialised networks are used.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from common import print_table

import pipeline.stylegan.generator as gen
from pipeline.devices import resolve_device
from pipeline.stylegan.generator import Generator, GeneratorConfig, blur_filter, default_channels, upfirdn2d
from pipeline.stylegan.train import GanSettings, new_state, train_step


def grouped_modulated_conv2d(x, weight, styles, demodulate=True, up=False):
    """The reference: each sample's kernel built explicitly, all samples in one grouped convolution."""
    n, c_in, h, w = x.shape
    c_out, _, k, _ = weight.shape
    wts = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        wts = wts * torch.rsqrt(wts.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8)
    x = x.reshape(1, n * c_in, h, w)
    if up:
        wts = wts.transpose(1, 2).reshape(n * c_in, c_out, k, k)
        x = F.conv_transpose2d(x, wts, stride=2, groups=n)
        return upfirdn2d(x.reshape(n, c_out, *x.shape[2:]), blur_filter().to(x.device) * 4, pad=(1, 1))
    return F.conv2d(x, wts.reshape(n * c_out, c_in, k, k), padding=k // 2, groups=n).reshape(n, c_out, h, w)


@contextmanager
def reference_conv():
    ours = gen.modulated_conv2d
    gen.modulated_conv2d = grouped_modulated_conv2d
    try:
        yield
    finally:
        gen.modulated_conv2d = ours


def best(repeats: int, fn: Callable[[], object], device: str) -> float:
    fn()  # warm-up: allocator, kernels
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", help="default: the pipeline's (pipeline/devices.py)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=5, help="training steps per timing")
    args = ap.parse_args(argv)
    dev = str(resolve_device(args.device))
    name = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else f"{os.cpu_count()} CPUs"
    print(
        f"device: {dev} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"batch {args.batch}; best of {args.repeats}; load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    widths = {
        "training widths": {64: (4096, 128), 128: (8192, 256), 256: (16384, 512)},
        "config F (official)": {64: (32768, 512), 128: (32768, 512), 256: (32768, 512)},
    }
    for label, table in widths.items():
        for res, (base, cmax) in table.items():
            torch.manual_seed(0)
            G = (
                Generator(GeneratorConfig(resolution=res, channels=default_channels(res, base, cmax)))
                .to(dev)
                .eval()
            )
            z = torch.randn(args.batch, 512, device=dev)

            def draw(G=G, z=z) -> None:
                with torch.no_grad():
                    G(z)

            ours = best(args.repeats, draw, dev)
            with reference_conv():
                ref = best(args.repeats, draw, dev)
            rows.append(
                [
                    f"generator {res} px, {label}",
                    f"{args.batch / ours:.1f} img/s",
                    f"{args.batch / ref:.1f} img/s",
                    f"{ref / ours:.2f}x",
                ]
            )
            print(rows[-1])
    for res in (64, 128):
        settings = GanSettings(res=res, batch=args.batch)
        state = new_state(settings, dev)
        faces = torch.rand(64, 3, res, res, device=dev) * 2 - 1

        def steps(state=state, faces=faces, settings=settings) -> None:
            for _ in range(args.train_steps):
                train_step(state, faces, settings)

        ours = best(1, steps, dev) / args.train_steps
        with reference_conv():
            ref = best(1, steps, dev) / args.train_steps
        kimg_h = args.batch * 3600 / ours / 1000
        rows.append(
            [
                f"training step {res} px (G+D, R1 every 16)",
                f"{1 / ours:.2f} it/s ({kimg_h:.0f} kimg/h)",
                f"{1 / ref:.2f} it/s",
                f"{ref / ours:.2f}x",
            ]
        )
        print(rows[-1])
    print()
    print_table(["what", "ours", "reference (grouped conv)", "speed-up"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
