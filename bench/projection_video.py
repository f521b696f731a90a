"""Projection of a shot's consecutive frames: independent (every frame from the average w, the full
schedule) against warm-started (each frame from the previous one's result, a short schedule).

    .venv/bin/python bench/projection_video.py --generator models/gan64 [--frames 60] [--steps 1000]

The bar: warm-started projection reaches the mean LPIPS-VGG of independent projection in at most a
fifth of the total steps. Flicker is the mean LPIPS between consecutive reconstructions, beside the same
between consecutive real frames.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import print_table

from pipeline.faces.extract import extract_faces
from pipeline.stylegan.checkpoints import load_generator
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylegan.project import ProjectSettings, following_settings, project_sequence, project_to_w_plus
from pipeline.swap.data import load_face_set

CLIP = Path(__file__).resolve().parents[2] / "shared" / "footage" / "woman_headturns_512.mp4"


def consecutive_faces(clip: Path, count: int, size: int, folder: Path) -> torch.Tensor:
    for item in extract_faces(str(clip), folder, size=size):
        if item.crop is None:
            raise SystemExit(f"{clip}: frame {item.frame} has no face; choose a clip with a face throughout")
        if len(list(folder.glob("*.png"))) >= count:
            break
    images = load_face_set(folder, size, clip.stem).images[:count]
    return torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1


def flicker(lpips, frames: torch.Tensor) -> float:
    with torch.no_grad():
        return float(lpips(frames[1:], frames[:-1]).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", type=Path, required=True)
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--steps", type=int, default=1000, help="the full schedule")
    ap.add_argument("--warm-steps", type=int, default=150, help="at most, per warm-started frame")
    ap.add_argument("--batch", type=int, default=8, help="faces per batch in independent projection")
    args = ap.parse_args(argv)
    G, _ = load_generator(args.generator)
    lpips = load_lpips("vgg")
    with tempfile.TemporaryDirectory(prefix="vfx-bench-video-") as tmp:
        frames = consecutive_faces(args.clip, args.frames, G.cfg.resolution, Path(tmp))
    full = ProjectSettings(steps=args.steps)
    print(f"{args.clip.name}: {len(frames)} consecutive aligned frames at {G.cfg.resolution} px")

    t = time.perf_counter()
    independent, steps_independent = [], 0
    for start in range(0, len(frames), args.batch):
        r = project_to_w_plus(G, frames[start : start + args.batch], lpips, full, seed=start)
        independent.append(r)
        steps_independent += r.steps * r.latents.shape[0]
        print(f"independent: frames {start}-{start + r.latents.shape[0] - 1}, LPIPS {r.lpips.mean():.4f}")
    t_independent = time.perf_counter() - t
    lp_independent = np.concatenate([r.lpips for r in independent])
    with torch.no_grad():
        recon_independent = torch.cat([G.synthesis(r.latents, r.noise) for r in independent])

    following = following_settings(full, args.warm_steps, patience=20)
    t = time.perf_counter()
    warm = project_sequence(G, frames, lpips, full, following)
    t_warm = time.perf_counter() - t
    lp_warm = np.concatenate([r.lpips for r in warm])
    steps_warm = sum(r.steps for r in warm)
    with torch.no_grad():
        recon_warm = torch.cat([G.synthesis(r.latents, r.noise) for r in warm])

    real_flicker = flicker(lpips, frames)
    rows = [
        [
            "independent, full schedule",
            f"{lp_independent.mean():.4f}",
            str(steps_independent),
            f"{t_independent:.0f} s",
            f"{flicker(lpips, recon_independent):.4f}",
        ],
        [
            "warm-started every frame",
            f"{lp_warm.mean():.4f}",
            str(steps_warm),
            f"{t_warm:.0f} s",
            f"{flicker(lpips, recon_warm):.4f}",
        ],
        ["real frames", "", "", "", f"{real_flicker:.4f}"],
    ]
    print()
    print_table(["projection", "mean LPIPS-VGG", "total steps", "time", "flicker (consecutive LPIPS)"], rows)
    ratio = steps_warm / steps_independent
    met = lp_warm.mean() <= lp_independent.mean() and ratio <= 0.2
    reached = lp_warm.mean() <= lp_independent.mean()
    print(f"warm/independent steps {ratio:.3f} (bar <= 0.2); independent LPIPS reached: {reached}")
    print(f"bar {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
