"""Latent paths on a real shot: smoothness at the keys, identity under an edit, and keyframe projection plus
path against projecting every frame independently, both as real `vfx render` runs.

    .venv/bin/python bench/paths.py --generator models/gan64 [--frames 36] [--every 12] [--steps 1000]

1. Smoothness: the same keys (seeds at uneven frames) joined by Catmull-Rom and by linear interpolation;
   the frame-to-frame LPIPS-VGG d(t) of the rendered faces, and its second difference |d(t+1) - 2d(t) +
   d(t-1)| at the keys against between them. Linear changes direction at each key, so d jumps there.
2. Speed and flicker: `vfx render` (the Prefect flow, in this process) of the shot with keyframes every
   k-th frame plus the path, against the same shot with every frame a key (every: 1), both with the full
   schedule. Flicker is the mean LPIPS between consecutive generated faces, beside the real frames'.
3. Identity under an edit: a mouth-open direction learned (`vfx direction learn`'s code) from the clip's
   crops split by how far the lips part (landmarks), on layers 2-5; applied to the keyframe shot's path.
   Reported: the classifier's score change in W+ (the set amount), the score change of the edited faces
   projected back, and the dlib distance of each edited face to the unedited one (bar: under 0.4).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import print_table

from pipeline.faces.align import transform_points
from pipeline.faces.extract import extract_faces
from pipeline.faces.track import FaceTrack
from pipeline.manifest import load_shot
from pipeline.shot.path import GeneratedFaces
from pipeline.shot.project import aligned_faces
from pipeline.stylegan.checkpoints import load_generator
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylegan.paths import PathSettings, latent_path

CLIP = Path(__file__).resolve().parents[2] / "shared" / "footage" / "woman_headturns_512.mp4"


def consecutive_lpips(lpips, faces: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() * 2 - 1
    with torch.no_grad():
        return lpips(x[1:], x[:-1]).flatten().numpy()


def smoothness(G, lpips) -> None:
    frames = np.array([0, 9, 20, 28, 40])
    with torch.no_grad():
        z = torch.randn(len(frames), G.cfg.z_dim, generator=torch.Generator().manual_seed(11))
        keys = G.map(z, psi=0.7).numpy()
    at = np.arange(0, 41)
    rows = []
    for name, settings in (
        ("Catmull-Rom (centripetal)", PathSettings("catmull_rom", 0.5)),
        ("Catmull-Rom (uniform)", PathSettings("catmull_rom", 0.0)),
        ("linear", PathSettings("linear")),
    ):
        ws = torch.from_numpy(latent_path(frames, keys, at, settings).astype(np.float32))
        with torch.no_grad():
            faces = ((G.synthesis(ws, "const").clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
        d = consecutive_lpips(lpips, faces)  # d[i]: between frames i and i+1
        # the second difference of the distance travelled along the path, centred on frame c, is
        # d[c] - d[c-1]: how abruptly the per-frame change speeds up or slows down there
        second = np.abs(np.diff(d))
        key = np.isin(np.arange(1, len(d)), frames[1:-1])
        rows.append(
            [
                name,
                f"{second[key].mean():.5f}",
                f"{second[~key].mean():.5f}",
                f"{second[~key].max():.5f}",
                f"{second[key].mean() / second[~key].mean():.2f}x",
            ]
        )
    print("## 1. Smoothness: keys (seeds, psi 0.7) at frames", ", ".join(map(str, frames)))
    print_table(["path", "|Δ²s| at keys", "|Δ²s| between: mean", "max", "keys / between"], rows)


def render(manifest: Path, root: Path) -> tuple[dict, float]:
    from pipeline.flows import run_render

    t = time.perf_counter()
    result = run_render(str(manifest), root=str(root))
    return json.loads((Path(result["path"]) / "report.json").read_text()), time.perf_counter() - t


def mouth_open(landmarks: np.ndarray) -> float:
    """Inner-lip gap over the face height (landmarks 62 and 66 of dlib's 68, 0-based)."""
    return float(np.linalg.norm(landmarks[66] - landmarks[62]) / np.linalg.norm(landmarks[8] - landmarks[27]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", type=Path, required=True)
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--frames", type=int, default=36)
    ap.add_argument("--every", type=int, default=12)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--edit-faces", type=int, default=24, help="faces per side for learning the direction")
    ap.add_argument("--skip-independent", action="store_true")
    ap.add_argument("--save-direction", type=Path, help="keep the learned mouth-open direction here")
    ap.add_argument("--direction", type=Path, help="use this mouth-open direction instead of learning one")
    args = ap.parse_args(argv)
    G, _ = load_generator(args.generator)
    G.eval().requires_grad_(False)
    lpips = load_lpips("vgg")
    print(
        f"generator {args.generator} ({G.cfg.resolution} px), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    smoothness(G, lpips)

    tmp = Path(tempfile.mkdtemp(prefix="vfx-bench-paths-"))
    try:
        last = 1000 + args.frames
        manifests = {}
        for name, every in (("keyframes", args.every), ("independent", 1)):
            text = (
                f"shot: bench_{name}\nplate: {{movie: {args.clip.resolve()}}}\nframes: 1001-{last}\n"
                f"output: {{sequence: png8, movies: [], chunk_size: 12}}\nfaces: {{crop_size: 128}}\n"
                f"project: {{generator: {args.generator.resolve()}, every: {every}, steps: {args.steps}, "
                f"patience: 0, batch: 8}}\ncomposite: {{}}\n"
            )
            manifests[name] = tmp / f"{name}.yaml"
            manifests[name].write_text(text)
        reports, times = {}, {}
        for name in ("keyframes", "independent"):
            if name == "independent" and args.skip_independent:
                continue
            reports[name], times[name] = render(manifests[name], tmp / "render")
            print(f"{name}: vfx render {times[name]:.0f} s")

        shot = load_shot(manifests["keyframes"])
        track = FaceTrack.load(Path(reports["keyframes"]["faces"]["path"]))
        numbers = list(range(1001, last + 1))
        real = aligned_faces(shot, track, numbers, G.cfg.resolution)
        rows = []
        for name, r in reports.items():
            faces = np.stack(GeneratedFaces(shot, r["path"]["path"]).faces(numbers, G.cfg.resolution))
            x = torch.from_numpy(faces).permute(0, 3, 1, 2) * 2 - 1
            y = torch.from_numpy(real).permute(0, 3, 1, 2) * 2 - 1
            with torch.no_grad():
                fit = float(lpips(x, y).mean())
            p = r["faces"]["projection"]
            rows.append(
                [
                    f"{name} ({p['frames_projected']} keys)",
                    f"{times[name]:.0f} s",
                    str(p["total_steps"]),
                    f"{fit:.4f}",
                    f"{consecutive_lpips(lpips, faces).mean():.4f}",
                ]
            )
        rows.append(["real frames", "", "", "", f"{consecutive_lpips(lpips, real).mean():.4f}"])
        print(
            f"\n## 2. {args.frames} frames of {args.clip.name}, keys every {args.every}, {args.steps} steps"
        )
        print_table(["vfx render", "wall", "steps", "LPIPS to the real faces", "flicker"], rows)
        if "independent" in times:
            print(f"speed-up {times['independent'] / times['keyframes']:.1f}x (bar >= 5x)")

        edit_identity(args, G, lpips, shot, track, reports["keyframes"], tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def learn_mouth_direction(args, G, tmp: Path):
    """A mouth-open direction on layers 2-5 from the clip's crops split by lip gap, and its info."""
    from pipeline.commands.directions import learn_from_folders
    from pipeline.stylegan.edits import Direction
    from pipeline.stylegan.project import ProjectSettings

    if args.direction:
        d = Direction.load(args.direction)
        meta = json.loads(str(np.load(args.direction)["meta"]))
        return d, meta, f"from {args.direction}"
    crops = tmp / "crops"
    for _ in extract_faces(str(args.clip), crops, size=G.cfg.resolution, every=2):
        pass
    openness = {}
    for j in sorted(crops.glob("*.json")):
        openness[j.with_suffix(".png")] = mouth_open(np.array(json.loads(j.read_text())["landmarks"]))
    ranked = sorted(openness, key=openness.get)
    n = min(args.edit_faces, len(ranked) // 3)
    for side, files in (("pos", ranked[-n:]), ("neg", ranked[:n])):
        (tmp / side).mkdir()
        for f in files:
            shutil.copy(f, tmp / side / f.name)
    t = time.perf_counter()
    settings = ProjectSettings(steps=300, optimize_noise=False, patience=20)
    out = tmp / "mouth.npz"
    d = learn_from_folders(tmp / "pos", tmp / "neg", str(args.generator), out, settings, [2, 3, 4, 5], True)
    meta = json.loads(str(np.load(out)["meta"]))
    if args.save_direction:
        d.save(
            args.save_direction,
            learned_from=f"{n}+{n} crops of {args.clip.name} split by lip gap",
            generator=args.generator.name,
            mean_score=meta["mean_score"],
        )
    how = (
        f"learned from {n}+{n} crops (lip gap {openness[ranked[-n]]:.3f}+ vs {openness[ranked[n - 1]]:.3f}-) "
        f"in {time.perf_counter() - t:.0f} s"
    )
    return d, meta, how


def edit_identity(args, G, lpips, shot, track: FaceTrack, report: dict, tmp: Path) -> None:
    from pipeline.stylegan.edits import apply_edit
    from pipeline.stylegan.project import ProjectSettings, project_to_w_plus
    from pipeline.swap.convert import IdentityMeter

    d, meta, how = learn_mouth_direction(args, G, tmp)
    swing = meta["mean_score"][0] - meta["mean_score"][1]
    print(
        f"\n## 3. Edit: mouth open on layers 2-5, {how}; classifier accuracy {d.accuracy:.3f}, mean scores "
        f"{meta['mean_score'][0]:+.2f} (open) / {meta['mean_score'][1]:+.2f} (closed): a swing of {swing:.2f}"
    )
    faces = GeneratedFaces(shot, report["path"]["path"])
    numbers = list(range(shot.first, shot.last + 1))
    plain_ws = faces.latents(numbers)

    def draw(ws: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            img = G.synthesis(torch.from_numpy(ws.astype(np.float32)), "const")
        return ((img.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()

    plain = draw(plain_ws)
    meter = IdentityMeter()
    size = G.cfg.resolution
    landmarks = [transform_points(track.matrix(n, size), track.landmarks[track.index(n)]) for n in numbers]
    plain_embed = [meter.embed(f, lm) for f, lm in zip(plain, landmarks, strict=True)]
    pick = np.linspace(0, len(numbers) - 1, 8).round().astype(int)
    settings = ProjectSettings(steps=200, optimize_noise=False, patience=20)
    noise = [m.expand(16, -1, -1, -1) for m in G.noise_maps()]
    rows = []
    for fraction in (0.25, 0.5, 1.0):
        amount = fraction * swing
        edited_ws = apply_edit(plain_ws, d.vector, amount, np.ones(len(numbers)))
        edited = draw(edited_ws)
        dist = np.array(
            [
                np.linalg.norm(meter.embed(e, lm) - p)
                for e, lm, p in zip(edited, landmarks, plain_embed, strict=True)
            ]
        )
        # the attribute as the faces show it: 8 edited and 8 plain faces projected back and scored
        both = torch.from_numpy(np.concatenate([edited[pick], plain[pick]])).permute(0, 3, 1, 2) * 2 - 1
        back = project_to_w_plus(G, both, lpips, settings, init_noise=noise).latents.numpy()
        rows.append(
            [
                f"{amount:.2f} ({fraction:g} of the swing)",
                f"{(d.score(edited_ws) - d.score(plain_ws)).mean():.2f}",
                f"{(d.score(back[:8]) - d.score(back[8:])).mean():.2f}",
                f"{dist.mean():.3f}",
                f"{dist.max():.3f}",
                "yes" if dist.max() < 0.4 else "no",
            ]
        )
    print_table(
        [
            "amount",
            "score change in W+",
            "score change, faces projected back",
            "dlib distance to unedited: mean",
            "max",
            "under 0.4",
        ],
        rows,
    )


if __name__ == "__main__":
    raise SystemExit(main())
