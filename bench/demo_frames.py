"""The SHA-256 of every frame the shipped demo shots render, to show that a change to the code moved no
pixel and no metadata byte (a refactor's check: run it before and after, then compare).

    .venv/bin/python bench/demo_frames.py --work /tmp/demo_frames --out before.json
    ... change the code ...
    .venv/bin/python bench/demo_frames.py --work /tmp/demo_frames --out after.json --compare before.json

It renders `shots/*.yaml`, `shots/swap/*.yaml` and `shots/stylegan/*.yaml` (copied into --work, with the
footage path pointed at ../shared/footage) with the tests' tiny models standing in for the ones the
README trains: a 64 px swap model after one step, a random 32 px generator with a random direction, and
the tests' random-weight mapper, recognisers, encoder and 32 px stylizer for it.
The models are made once into --work and reused, so two runs compare the same models. Needs
../shared/footage for the swap and projection demos. Hashes the comp and element sequences.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOOTAGE = REPO.parent / "shared" / "footage"


def make_models(work: Path) -> None:
    """Crops of the two anonymous people, a one-step swap model, a random generator and direction, and the
    generator demos' other models for it: mapper, recognisers, encoder and stylizer (untrained)."""
    import numpy as np
    import torch

    from pipeline.faces.extract import extract_faces
    from pipeline.stylegan.checkpoints import save_generator
    from pipeline.stylegan.edits import Direction
    from pipeline.stylegan.generator import Generator, GeneratorConfig, default_channels
    from pipeline.swap.train import TrainSettings, train

    crops = work / "crops"
    for who, clip in (("demo_a", "woman_headturns_512.mp4"), ("demo_b", "man_glasses_720x1280.mp4")):
        if not (crops / who).is_dir():
            list(extract_faces(str(FOOTAGE / clip), crops / who, size=64, every=30))
    swap = work / "models" / "demo_swap"
    if not (swap / "swap.pt").is_file():
        torch.manual_seed(0)
        train(crops / "demo_a", crops / "demo_b", swap, TrainSettings(preset="64", batch=2), steps=1)
    gan = work / "models" / "demo_gan"
    if not (gan / "generator.pt").is_file():
        torch.manual_seed(5)
        cfg = GeneratorConfig(
            resolution=32, z_dim=64, w_dim=64, mapping_layers=2, channels=default_channels(32, 512, 64)
        )
        G = Generator(cfg).eval()
        G.compute_w_avg(2000)
        gan.mkdir(parents=True, exist_ok=True)
        save_generator(gan / "generator.pt", G)
        vector = np.zeros((cfg.num_ws, cfg.w_dim))
        vector[:6] = np.random.default_rng(0).normal(size=(6, cfg.w_dim))
        Direction(vector / np.linalg.norm(vector), tuple(range(6)), name="toward_b").save(
            gan / "toward_b.npz"
        )
    # the generator demos' other models, as the tests make them: a random-weight mapper and recognisers
    # (the morph's attribute edits), an untrained encoder (the projection's start) and an untrained
    # 32 px stylizer placed from person a's crops
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import tiny_mapper, tiny_recognisers
    from test_stylize import tiny_stylizer

    from pipeline.models import sha256_file
    from pipeline.stylegan.checkpoints import load_generator
    from pipeline.stylegan.encoder import Encoder, save_encoder

    models = work / "models"
    if not (models / "demo_map" / "mapper.pt").is_file():
        tiny_mapper(gan / "generator.pt", models / "demo_map", seed=1)
    if not (models / "demo_rec" / "recognisers.pt").is_file():
        tiny_recognisers(gan / "generator.pt", models / "demo_rec", seed=2)
    if not (models / "demo_enc" / "encoder.pt").is_file():
        torch.manual_seed(4)
        (models / "demo_enc").mkdir(parents=True, exist_ok=True)
        G, _ = load_generator(gan / "generator.pt")
        save_encoder(
            models / "demo_enc" / "encoder.pt",
            Encoder.for_generator(G),
            sha256_file(gan / "generator.pt"),
            {"steps": 0},
        )
    if not (models / "demo_sty" / "stylizer.pt").is_file():
        tiny_stylizer(models / "demo_sty", crops / "demo_a")


def copy_shots(work: Path) -> list[Path]:
    manifests = []
    for src in sorted(REPO.glob("shots/**/*.yaml")):
        dst = work / src.relative_to(REPO)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(src.read_text().replace("../../../shared/footage", str(FOOTAGE)))
        manifests.append(dst)
    return manifests


def frame_hashes(version: Path) -> dict[str, str]:
    files = sorted(p for sub in ("comp", "element") for p in (version / sub).glob("*") if p.is_file())
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="shots, models and crops (kept between runs)")
    ap.add_argument("--out", type=Path, required=True, help="the hashes, as JSON")
    ap.add_argument("--compare", type=Path, help="an earlier --out: list every frame that differs")
    args = ap.parse_args()
    if not FOOTAGE.is_dir():
        print(f"real footage not found at {FOOTAGE}", file=sys.stderr)
        return 2
    from pipeline.flows import run_render

    work = args.work.resolve()
    make_models(work)
    manifests = copy_shots(work)
    root = work / f"render-{time.strftime('%Y%m%d-%H%M%S')}"
    hashes = {}
    for m in manifests:
        t = time.perf_counter()
        result = run_render(str(m), root=str(root))
        hashes[str(m.relative_to(work))] = frame_hashes(Path(result["path"]))
        print(
            f"{m.relative_to(work)}: {len(hashes[str(m.relative_to(work))])} files in "
            f"{time.perf_counter() - t:.0f} s",
            flush=True,
        )
    args.out.write_text(json.dumps(hashes, indent=1, sort_keys=True))
    total = sum(len(h) for h in hashes.values())
    print(f"{args.out}: {total} files of {len(hashes)} shots")
    if args.compare:
        before = json.loads(args.compare.read_text())
        differ = [
            f"{shot}: {name}"
            for shot in sorted(set(before) | set(hashes))
            for name in sorted(set(before.get(shot, {})) | set(hashes.get(shot, {})))
            if before.get(shot, {}).get(name) != hashes.get(shot, {}).get(name)
        ]
        for line in differ:
            print(f"differs: {line}")
        print(f"{total - len(differ)} of {total} files identical to {args.compare}")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
