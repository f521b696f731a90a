"""Projection quality with a trained generator: recovery of faces drawn from known W+ latents, and W+
against W on real aligned crops.

    .venv/bin/python bench/projection_quality.py --generator models/gan64 --crops crops/a --crops crops/b

Recovery: faces drawn from random W+ latents (each layer's w moved on its own, fixed noise) are
projected back from the average w; LPIPS-VGG against the drawn faces should be under 0.1. Real faces:
the same crops projected in W+ (a w per layer) and in W (one w), same schedule, LPIPS-VGG of each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import print_table

from pipeline.stylegan.checkpoints import load_generator
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylegan.project import ProjectSettings, project_to_w_plus
from pipeline.swap.data import load_face_set


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", type=Path, required=True)
    ap.add_argument("--crops", type=Path, action="append", required=True, help="vfx extract folders")
    ap.add_argument("--faces", type=int, default=8, help="faces per test (default 8)")
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args(argv)
    G, info = load_generator(args.generator)
    lpips = load_lpips("vgg")
    res = G.cfg.resolution
    print(
        f"generator {args.generator} ({info['format']}, {res} px, {info.get('kimg', '?')} kimg); "
        f"{args.steps} steps"
    )

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ws = G.map(torch.randn(args.faces, G.cfg.z_dim, generator=g))
        ws = ws + 0.2 * torch.randn(ws.shape, generator=g) * ws.std()
        drawn = G.synthesis(ws, "const")
    recovered = project_to_w_plus(G, drawn, lpips, ProjectSettings(steps=args.steps))
    print(f"recovery: LPIPS-VGG per face {np.round(recovered.lpips, 4).tolist()}, {recovered.seconds:.0f} s")

    per_folder = -(-args.faces // len(args.crops))
    crops = []
    for folder in args.crops:
        images = load_face_set(folder, res, folder.name).images
        crops.append(images[np.linspace(0, len(images) - 1, per_folder).astype(int)])
    real = torch.from_numpy(np.concatenate(crops)[: args.faces]).permute(0, 3, 1, 2) * 2 - 1
    wplus = project_to_w_plus(G, real, lpips, ProjectSettings(steps=args.steps))
    w = project_to_w_plus(G, real, lpips, ProjectSettings(steps=args.steps, w_plus=False))
    rows = [
        [
            "drawn from known W+, projected in W+",
            f"{recovered.lpips.mean():.4f}",
            f"{recovered.lpips.max():.4f}",
        ],
        ["real crops, W+", f"{wplus.lpips.mean():.4f}", f"{wplus.lpips.max():.4f}"],
        ["real crops, W", f"{w.lpips.mean():.4f}", f"{w.lpips.max():.4f}"],
    ]
    print()
    print_table(["projection", "mean LPIPS-VGG", "worst"], rows)
    print(f"W+ better than W on {int((wplus.lpips < w.lpips).sum())} of {len(w.lpips)} real faces")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
