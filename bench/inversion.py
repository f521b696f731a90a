"""Inversion with an encoder and pivotal tuning, against projection from the average latent.

    .venv/bin/python bench/inversion.py --generator G --encoder E [--frames 48] [--tune-steps N]
        [--tune-lr LR] [--held-out-only] [--baseline-cache DIR]

1. Held-out faces: 16 aligned crops from odd frames of the two anonymous clips (the generator and the
   encoder are trained on every 2nd frame from frame 0, `vfx extract --every 2`, so odd frames are unseen),
   8 spread over each clip. Each is projected from the average latent for 1000 steps (the baseline) and 100
   steps, encoded alone, and encoded then polished for 100 steps (and `--polish`'s other lengths): mean
   LPIPS-VGG against the crop at the generator's size, the seconds each took (batches of 8, as the
   projection stage runs them), and issue 17's bars (encoder + 100 steps no worse than the baseline,
   encoder alone within 1.5x).
2. The woman clip's first N frames as `vfx render` runs (the Prefect flow, in this process; each manifest
   a shot of its own, so each pays its own tracking), all with keys every k-th frame and the latent path
   unless said: keys from the average at 1000 steps (today's projection); keys from the encoder + 100
   steps, then the generator tuned over every frame of the path (STIT) or over the keys alone (PTI); and
   every frame from the encoder + 100 steps with the temporal term. Reported from each render's report: the
   LPIPS-VGG of the drawn faces to the real ones over all frames (and over the frames the generator never
   saw), the flicker (LPIPS between consecutive drawn faces) against the plate's own, the dlib distance
   between real and drawn faces, before and after tuning, and the wall time of the whole render. The
   time of every frame projected on its own at 1000 steps is part 1's per-face time of that schedule
   times N (`--independent` renders it instead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from common import print_table

from pipeline.faces.align import align_face, ffhq_params
from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.extract import open_any_plate
from pipeline.models import generator_file, sha256_file
from pipeline.stylegan.checkpoints import load_generator
from pipeline.stylegan.encoder import encoder_file, load_encoder
from pipeline.stylegan.generator import images_to_tensor
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylegan.project import ProjectSettings, polish_settings, project_to_w_plus
from pipeline.stylegan.tune import lpips_per_face

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
CLIPS = (FOOTAGE / "woman_headturns_512.mp4", FOOTAGE / "man_glasses_720x1280.mp4")


def held_out_faces(size: int, per_clip: int = 8) -> tuple[np.ndarray, list[str]]:
    """Aligned crops (float RGB at `size`) of odd frames spread over each clip, and their names."""
    analyzer = FaceAnalyzer()
    faces, names = [], []
    for clip in CLIPS:
        plate = open_any_plate(str(clip))
        count = plate.info.frame_count
        wanted = {int(i) | 1 for i in np.linspace(1, count - 2, per_clip).round()}
        for index, frame in enumerate(plate.read(0, count)):
            if index not in wanted:
                continue
            found = analyzer.detect(frame)
            if not found:
                continue
            crop, _ = align_face(frame, ffhq_params(found[0].landmarks), 256)
            crop = crop.astype(np.float32) / (255.0 if crop.dtype == np.uint8 else 1.0)
            faces.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
            names.append(f"{clip.stem}:{index}")
    return np.stack(faces), names


def held_out_table(
    G,
    E,
    lpips,
    polish: tuple[int, ...] = (100,),
    batch: int = 8,
    cache: Path | None = None,
    generator_sha256: str = "",
) -> float:
    """Part 1; returns the seconds per face of 1000 steps from the average (the independent baseline).
    `polish`: the polish lengths from the encoder to measure (100 is the one with a bar; longer ones show
    how many steps the encoder's start needs to match the baseline). `cache`: a folder where the baseline's
    scores and seconds are kept per generator and crops (it is deterministic, and half an hour on a CPU
    core at 64 px): a later run with another encoder reuses its scores, and takes its time as ten times
    this run's 100 steps from the mean (a step costs the same whatever the schedule's length; the cached
    run's seconds were measured on another occasion, on a machine maybe busier or quieter). The key
    covers the generator, the crops and the baseline's settings, not the projector's code."""
    faces, names = held_out_faces(G.cfg.resolution)
    images = images_to_tensor(faces)
    noise = [m.expand(batch, -1, -1, -1) for m in G.noise_maps()]
    rows, results = [], {}

    def project(settings: ProjectSettings, init: torch.Tensor | None) -> tuple[np.ndarray, float]:
        scores, t = [], time.perf_counter()
        for i in range(0, len(images), batch):
            part = images[i : i + batch]
            start = None if init is None else init[i : i + batch]
            r = project_to_w_plus(
                G, part, lpips, settings, init=start, init_noise=[m[: len(part)] for m in noise]
            )
            scores.append(r.lpips)
        return np.concatenate(scores), time.perf_counter() - t

    t = time.perf_counter()
    with torch.no_grad():
        encoded = torch.cat([E(images[i : i + batch]) for i in range(0, len(images), batch)])
    encode_s = time.perf_counter() - t
    results["encoder alone"] = (lpips_per_face(G, encoded, images, lpips), encode_s)
    runs = [
        ("mean + 1000 steps (baseline)", ProjectSettings(steps=1000, optimize_noise=False), None),
        ("mean + 100 steps", ProjectSettings(steps=100, optimize_noise=False), None),
    ] + [(f"encoder + {n} steps", polish_settings(n), encoded) for n in polish]
    kept, cached = None, 0.0
    if cache is not None:
        faces_sha = hashlib.sha256(np.ascontiguousarray(faces).tobytes()).hexdigest()[:12]
        settings_sha = hashlib.sha256(repr(runs[0][1]).encode()).hexdigest()[:8]
        kept = cache / f"baseline-{generator_sha256[:12]}-{faces_sha}-{settings_sha}.npz"
    for name, settings, init in runs:
        if kept is not None and kept.is_file() and init is None and settings.steps == 1000:
            with np.load(kept) as data:
                results[name] = (data["scores"], float(data["seconds"]))
            cached = results[name][1]
            print(f"baseline from {kept} (measured in an earlier run)")
            continue
        scores, seconds = project(settings, init)
        results[name] = (scores, seconds + (encode_s if init is not None else 0.0))
        if kept is not None and init is None and settings.steps == 1000:
            kept.parent.mkdir(parents=True, exist_ok=True)
            np.savez(kept, scores=scores, seconds=seconds)
    base, base_s = results["mean + 1000 steps (baseline)"]
    if cached:
        base_s = 10 * results["mean + 100 steps"][1]
        results["mean + 1000 steps (baseline)"] = base, base_s
        print(
            f"baseline's time: 10 x this run's 100 steps from the mean: {base_s:.0f} s (cached {cached:.0f})"
        )
    bars = {"encoder alone": 1.5, "encoder + 100 steps": 1.0}  # issue 17's, as ratios to the baseline
    order = ["mean + 1000 steps (baseline)", "mean + 100 steps", "encoder alone"]
    for name in order + [f"encoder + {n} steps" for n in polish]:
        scores, seconds = results[name]
        ratio = scores.mean() / base.mean()
        bar = bars.get(name)
        rows.append(
            [
                name,
                f"{scores.mean():.4f}",
                f"{ratio:.2f}x",
                f"{seconds:.1f} s",
                f"{base_s / seconds:.0f}x",
                "" if bar is None else f"<= {bar:.2f}x",
                "" if bar is None else ("PASS" if ratio <= bar else "FAIL"),
            ]
        )
    print(f"\n## 1. {len(names)} held-out crops (odd frames): {', '.join(names)}")
    print_table(
        [
            "start + polish",
            "LPIPS-VGG",
            "vs baseline",
            "time (16 faces)",
            "faster than baseline",
            "bar",
            "result",
        ],
        rows,
    )
    return base_s / len(names)


def render(manifest: Path, root: Path) -> tuple[dict, float]:
    from pipeline.flows import run_render

    t = time.perf_counter()
    result = run_render(str(manifest), root=str(root))
    return json.loads((Path(result["path"]) / "report.json").read_text()), time.perf_counter() - t


def shot_table(args, per_face_s: float, tmp: Path) -> None:
    last = 1000 + args.frames
    gen, enc = args.generator.resolve(), args.encoder.resolve()
    given = {"steps": args.tune_steps, "lr": args.tune_lr}
    tune_settings = [f"{k}: {v}" for k, v in given.items() if v is not None]
    tune = f"tune: {{{', '.join(tune_settings)}}}"
    tune_keys = f"tune: {{{', '.join([*tune_settings, 'pivots: keys'])}}}"
    keys = f"encoder: {enc}, every: {args.every}, steps: 100"
    variants = {
        "keys: mean + 1000 steps, path": f"every: {args.every}, steps: 1000, patience: 0",
        "keys: encoder + 100, path, tuned (frames)": f"{keys}, {tune}",
        "keys: encoder + 100, path, tuned (keys)": f"{keys}, {tune_keys}",
        "every frame: encoder + 100, temporal": f"encoder: {enc}, mode: every_frame, steps: 100, "
        f"temporal: {args.temporal}",
    }
    if args.independent:
        variants["every frame: mean + 1000 steps"] = "every: 1, steps: 1000, patience: 0"
    rows = []
    for i, (name, project) in enumerate(variants.items()):
        if args.only and str(i) not in args.only.split(","):
            continue
        manifest = tmp / f"v{i}.yaml"
        manifest.write_text(
            f"shot: bench_inversion_{i}\nplate: {{movie: {CLIPS[0]}}}\nframes: 1001-{last}\n"
            f"output: {{sequence: png8, movies: [], chunk_size: 12}}\nfaces: {{crop_size: 128}}\n"
            f"project: {{generator: {gen}, batch: 8, {project}}}\ncomposite: {{}}\n"
        )
        report, wall = render(manifest, tmp / "render")
        fit = report["faces"]["fit"]
        per_frame = np.array([row[1:] for row in fit["lpips_per_frame"]])  # before[, after]
        frames = np.array([row[0] for row in fit["lpips_per_frame"]])
        unseen = (frames - 1001) % 2 == 1  # odd plate indices: not in the generator's training crops
        drawn = fit.get("after") or fit["before"]
        col = per_frame[:, -1]
        p = report["faces"]["projection"]
        rows.append(
            [
                name,
                f"{drawn['lpips_mean']:.4f}",
                f"{col[unseen].mean():.4f}",
                f"{drawn['flicker'] / fit['plate_flicker']:.2f}x",
                f"{fit['before']['identity_mean']:.3f}"
                + (f" -> {fit['after']['identity_mean']:.3f}" if "after" in fit else ""),
                f"{fit['before']['lpips_mean']:.4f}" if "after" in fit else "",
                str(p["total_steps"]),
                f"{report['timings'].get('project_s', 0):.0f} / {report['timings'].get('tune_s', 0):.0f} s",
                f"{wall:.0f} s",
                f"{per_face_s * args.frames / wall:.1f}x",
            ]
        )
        print(f"{name}: {wall:.0f} s", flush=True)
    plate = fit["plate_flicker"]
    print(
        f"\n## 2. {args.frames} frames of {CLIPS[0].name}, keys every {args.every}; plate flicker "
        f"{plate:.4f}; "
        f"every frame projected on its own at 1000 steps: {per_face_s:.1f} s a face x {args.frames} = "
        f"{per_face_s * args.frames:.0f} s (part 1's schedule and batch)"
    )
    print_table(
        [
            "vfx render",
            "LPIPS to real (all)",
            "(unseen frames)",
            "flicker / plate",
            "dlib real-drawn (before -> after)",
            "LPIPS before tuning",
            "steps",
            "project / tune",
            "wall",
            "independent / this",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", type=Path, required=True)
    ap.add_argument("--encoder", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--every", type=int, default=12)
    # default: project.tune's defaults (400 steps, the rate by the generator's size: tune_lr)
    ap.add_argument("--tune-steps", type=int)
    ap.add_argument("--tune-lr", type=float, help="the tuning's learning rate")
    ap.add_argument("--temporal", type=float, default=0.01)
    ap.add_argument("--independent", action="store_true", help="render every frame at 1000 steps too")
    ap.add_argument("--skip-held-out", action="store_true")
    ap.add_argument(
        "--polish",
        default="100,200,400",
        help="part 1: polish lengths from the encoder (default 100,200,400)",
    )
    ap.add_argument("--only", help="part 2's variants to render, by number (0,1,...); default all")
    ap.add_argument("--held-out-only", action="store_true", help="part 1 alone")
    ap.add_argument(
        "--baseline-cache",
        type=Path,
        help="part 1: keep the 1000-step baseline here (per generator, crops and settings) and reuse it",
    )
    args = ap.parse_args(argv)
    gfile = generator_file(args.generator)
    G, meta = load_generator(gfile)
    G = G.eval().requires_grad_(False)
    E, emeta = load_encoder(encoder_file(args.encoder), gfile)
    E = E.eval().requires_grad_(False)
    lpips = load_lpips("vgg")
    print(
        f"generator {gfile} ({G.cfg.resolution} px, {meta.get('kimg', '?')} kimg, sha256 "
        f"{sha256_file(gfile)[:12]}), encoder {args.encoder} ({emeta.get('steps', '?')} steps), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    polish = tuple(int(n) for n in args.polish.split(","))
    per_face_s = 0.0
    if not args.skip_held_out:
        per_face_s = held_out_table(
            G, E, lpips, polish, cache=args.baseline_cache, generator_sha256=sha256_file(gfile)
        )
    if args.held_out_only:
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="vfx-bench-inversion-"))
    try:
        shot_table(args, per_face_s, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
