"""Swap conversion speed on CPU: the model alone, and the whole chunk (decode, align, convert, composite,
write), for both presets, with decoding of the same frames as the reference measured in the same run.

    .venv/bin/python bench/swap.py [--frames N] [--repeats N]

Speed does not depend on what a model has learned, so freshly initialised models are used.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.manifest import load_shot
from pipeline.shot.composite import Compositor, write_element
from pipeline.shot.frames import render_frames
from pipeline.shot.report import output_metadata
from pipeline.shot.swap import SwappedFaces
from pipeline.shot.track import detect_range, finish_track
from pipeline.swap.convert import convert_faces
from pipeline.swap.model import PRESETS
from pipeline.swap.train import TrainSettings, new_state, save_checkpoint
from pipeline.workspace import new_version

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
CLIP = FOOTAGE / "woman_headturns_512.mp4"


def best(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    if not CLIP.is_file():
        sys.exit(f"bench/swap.py: {CLIP} not found (the footage lives beside the repo in shared/footage)")
    n = args.frames
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads); "
        f"clip {CLIP.name}, {n} frames; best of {args.repeats}; load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="vfx-bench-swap-") as tmp:
        folder = Path(tmp)
        for preset, cfg in PRESETS.items():
            model_dir = folder / f"model{preset}"
            model_dir.mkdir()
            settings = TrainSettings(preset=preset)
            state = new_state(settings)
            save_checkpoint(model_dir / "swap.pt", state, settings)
            manifest = folder / f"swap{preset}.yaml"
            manifest.write_text(
                f"shot: bench{preset}\nplate: {{movie: {CLIP}}}\nframes: 1001-{1000 + n}\n"
                f"output: {{sequence: png8, movies: []}}\nfaces: {{crop_size: {cfg.size}}}\n"
                f"composite: {{color: rct, blend: laplacian}}\nswap: {{model: {model_dir}, batch: 16}}\n",
                encoding="utf-8",
            )
            shot = load_shot(manifest)
            found = detect_range(shot, shot.first, shot.last).faces
            track = finish_track(shot, found, folder / f"track{preset}.npz")
            swapped = SwappedFaces(shot)
            compositor = Compositor(shot, track, [swapped])
            crops = np.random.default_rng(0).random((n, cfg.size, cfg.size, 3)).astype(np.float32)
            model = swapped.model
            t_model = best(args.repeats, lambda m=model, c=crops: convert_faces(m, c, "b", batch=16))
            t_decode = best(args.repeats, lambda s=shot: sum(1 for _ in s.plate.read(0, n)))

            def chunk(s=shot, c=compositor, root=folder / f"render{preset}") -> None:
                v = new_version(root, s.name, "png")
                meta = output_metadata(s, v)
                render_frames(
                    s, v, s.first, s.last, meta, c, write_element=lambda k, e, m: write_element(v, s, k, e, m)
                )

            t_chunk = best(args.repeats, chunk)
            rows.append((preset, cfg.size, n / t_model, n / t_chunk, n / t_decode))
    print()
    print("preset  size  model only fps  whole chunk fps  decode fps  chunk/decode")
    for preset, size, fm, fc, fd in rows:
        print(f"{preset:>6}  {size:>4}  {fm:>14.1f}  {fc:>15.1f}  {fd:>10.0f}  {fc / fd:>11.3f}x")
    print("(whole chunk: decode, align, convert, colour, grain, blend, write PNG and element per frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
