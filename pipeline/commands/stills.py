"""`vfx project` for stills: align the face of each image, project it into a generator's W+, and write the
latents, the reconstruction and a side-by-side for review. No Prefect: a still is minutes, not a job."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pipeline import TOOL_NAME, __version__
from pipeline.devices import resolve_device
from pipeline.errors import PipelineError
from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.extract import IMAGE_SUFFIXES, aligned_face
from pipeline.files import write_atomic
from pipeline.media.sequences import write_frame
from pipeline.models import sha256_file
from pipeline.stylegan.checkpoints import load_generator
from pipeline.stylegan.encoder import load_encoder
from pipeline.stylegan.generator import images_to_tensor, tensor_to_images
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylegan.project import Projection, ProjectSettings, project_to_w_plus
from pipeline.stylegan.registry import encoder_path, generator_path


def image_files(source: Path) -> list[Path]:
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise PipelineError(f"{source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files
    if not source.is_file():
        raise PipelineError(f"{source}: not found")
    return [source]


def project_stills(
    source: Path | list[Path],
    generator: str,
    out: Path,
    settings: ProjectSettings,
    aligned: bool = False,
    batch: int = 8,
    on_step: Callable[[int, np.ndarray], None] | None = None,
    encoder: str | None = None,
) -> list[dict]:
    """Project every image of `source` (an image, a folder, or a list of images); returns one summary per
    image. Existing outputs are kept: an image whose .npz exists is skipped, so a re-run finishes an
    interrupted one. With an `encoder` (trained for this generator), each face starts from its encoding
    and `settings` is the polish (see `polish_settings`)."""
    gpath = generator_path(generator, Path.cwd())
    G, info = load_generator(gpath)
    device = resolve_device()
    G = G.to(device)
    E = None
    if encoder is not None:
        E, _ = load_encoder(encoder_path(encoder, Path.cwd()), gpath, G)
        E = E.eval().requires_grad_(False).to(device)
    lpips = load_lpips("vgg").to(device)
    files = source if isinstance(source, list) else image_files(source)
    out.mkdir(parents=True, exist_ok=True)
    todo = [p for p in files if not (out / f"{p.stem}.npz").is_file()]
    analyzer = None if aligned else FaceAnalyzer()
    size = G.cfg.resolution
    meta = {
        "synthetic_imagery": "true",
        "ai_altered_stages": "stylegan projection (reconstruction drawn by a generator)",
        "software": f"{TOOL_NAME} {__version__}",
        "models": f"{gpath} ({info['format']})",
    }
    digest = sha256_file(gpath)
    results = []
    for start in range(0, len(todo), batch):
        paths = todo[start : start + batch]
        faces = [aligned_face(p, size, aligned, analyzer) for p in paths]
        fixed = (
            None if settings.optimize_noise else [m.expand(len(paths), -1, -1, -1) for m in G.noise_maps()]
        )
        images = images_to_tensor(faces).to(device)
        with torch.no_grad():
            init = None if E is None else E(images)
        result: Projection = project_to_w_plus(
            G, images, lpips, settings, init=init, init_noise=fixed, on_step=on_step
        )
        with torch.no_grad():
            recon = tensor_to_images(G.synthesis(result.latents, result.noise))
        for i, p in enumerate(paths):
            record = {
                "image": str(p),
                "generator": str(gpath),
                "generator_sha256": digest,
                "lpips_vgg": float(result.lpips[i]),
                "steps": result.steps,
                "w_plus": settings.w_plus,
                "init": "mean" if encoder is None else f"encoder {encoder}",
            }
            arrays = dict(
                latents=result.latents[i].cpu().numpy(),
                losses=result.losses[:, i],
                settings=json.dumps(asdict(settings)),
                record=json.dumps(record),
                **{f"noise{k}": m[i, 0].cpu().numpy() for k, m in enumerate(result.noise)},
            )
            write_atomic(out / f"{p.stem}.npz", lambda tmp, a=arrays: np.savez(tmp, **a))
            write_frame(out / f"{p.stem}_reconstruction.png", recon[i], "png8", {**meta, "source": str(p)})
            side = np.concatenate([faces[i], recon[i]], axis=1)
            write_frame(out / f"{p.stem}_side_by_side.png", side, "png8", {**meta, "source": str(p)})
            results.append(record)
    return results
