"""Tuning settings on one shot: LPIPS-VGG of every frame after pivotal tuning, per learning rate and steps.

    .venv/bin/python bench/tune_sweep.py --generator G --encoder E [--frames 48] [--lr 0.0003 0.001 0.003]
        [--steps 150]

The woman clip's first N frames are rendered once (keys every 12th frame from the encoder + 100 steps,
the path, no tuning), then a copy of the generator is tuned over every frame's latent on the path (STIT's
pivots) for each learning rate, and the drawn faces of all frames are measured against the real ones. The
learning rate that suits a generator depends on its size: PTI's 3e-4 is for 1024 px FFHQ.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from common import print_table

from pipeline.faces.track import FaceTrack
from pipeline.flows import run_render
from pipeline.manifest import load_shot
from pipeline.shot.path import GeneratedFaces
from pipeline.shot.project import aligned_faces, load_shot_generator
from pipeline.shot.tune import frames_with_face
from pipeline.stylegan.generator import images_to_tensor
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylegan.tune import TuneSettings, lpips_per_face, tune_generator

WOMAN = Path(__file__).resolve().parents[2] / "shared" / "footage" / "woman_headturns_512.mp4"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", type=Path, required=True)
    ap.add_argument("--encoder", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--lr", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    ap.add_argument("--steps", type=int, nargs="+", default=[150])
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="vfx-bench-tune-"))
    try:
        manifest = tmp / "shot.yaml"
        manifest.write_text(
            f"shot: tune_sweep\nplate: {{movie: {WOMAN}}}\nframes: 1001-{1000 + args.frames}\n"
            "output: {sequence: png8, movies: [], chunk_size: 12}\nfaces: {crop_size: 128}\n"
            f"project: {{generator: {args.generator.resolve()}, batch: 8, encoder: {args.encoder.resolve()}, "
            "every: 12, steps: 100}\ncomposite: {}\n"
        )
        run_render(str(manifest), root=str(tmp / "render"))
        cache = tmp / "render" / "tune_sweep" / "cache"
        shot = load_shot(manifest)
        track = FaceTrack.load(next(cache.glob("track-*.npz")))
        path = GeneratedFaces(shot, next(cache.glob("keys-*.npz")))
        G = load_shot_generator(shot)
        frames = frames_with_face(shot, track)
        ws = torch.from_numpy(path.latents(frames, edited=False))
        targets = images_to_tensor(aligned_faces(shot, track, frames, G.cfg.resolution))
        lpips = load_lpips("vgg")
        untuned = lpips_per_face(G, ws, targets, lpips)
        rows = [["untuned", "0", f"{untuned.mean():.4f}", f"{untuned.max():.4f}", "", ""]]
        for steps in args.steps:
            for lr in args.lr:
                tuning = tune_generator(G, ws, targets, lpips, TuneSettings(steps=steps, lr=lr))
                after = lpips_per_face(tuning.generator, ws, targets, lpips)
                last = tuning.losses[-max(1, steps // 6) :].mean()
                rows.append(
                    [
                        f"lr {lr:g}",
                        str(steps),
                        f"{after.mean():.4f}",
                        f"{after.max():.4f}",
                        f"{last:.4f}",
                        f"{tuning.seconds:.0f} s",
                    ]
                )
                print(f"lr {lr:g}, {steps} steps: {after.mean():.4f}", flush=True)
        print(
            f"\n{len(frames)} frames of {WOMAN.name}, every frame a pivot; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; generator {args.generator}, encoder {args.encoder}"
        )
        print_table(["tuning", "steps", "LPIPS to real (all)", "worst", "loss (last sixth)", "time"], rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
