"""`vfx project` for stills: align the face of each image, project it into a generator's W+, and write the
latents, the reconstruction and a side-by-side for review. No Prefect: a still is minutes, not a job."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline import TOOL_NAME, __version__
from pipeline.errors import PipelineError
from pipeline.faces.align import align_face, ffhq_params
from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.extract import IMAGE_SUFFIXES
from pipeline.media.decode import read_image
from pipeline.media.sequences import write_frame
from pipeline.models import generator_path, sha256_file
from pipeline.stylegan.checkpoints import load_generator
from pipeline.stylegan.lpips import load_lpips
from pipeline.stylegan.project import Projection, ProjectSettings, project_to_w_plus
from pipeline.workspace import write_atomic


def image_files(source: Path) -> list[Path]:
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise PipelineError(f"{source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files
    if not source.is_file():
        raise PipelineError(f"{source}: not found")
    return [source]


def aligned_face(path: Path, size: int, aligned: bool, analyzer: FaceAnalyzer | None) -> np.ndarray:
    """The image's largest face aligned FFHQ-style at `size` (float32 RGB in [0, 1]); with `aligned`,
    the image is taken as an aligned crop already and only resized."""
    image = read_image(path)
    if image.dtype != np.float32:
        image = image.astype(np.float32) / (65535.0 if image.dtype == np.uint16 else 255.0)
    if aligned:
        h, w = image.shape[:2]
        if h != w:
            raise PipelineError(f"{path}: an aligned crop must be square, this is {w}x{h}")
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if h > size else cv2.INTER_CUBIC)
    assert analyzer is not None
    faces = analyzer.detect(image)
    if not faces:
        raise PipelineError(f"{path}: no face found (give --aligned for crops made by vfx extract)")
    crop, _ = align_face(image, ffhq_params(faces[0].landmarks), max(size, 256))  # then reduced: no aliasing
    return crop if size >= 256 else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def to_tensor(faces: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() * 2 - 1


def to_rgb(images: torch.Tensor) -> np.ndarray:
    return ((images.detach().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)


def project_stills(
    source: Path | list[Path],
    generator: str,
    out: Path,
    settings: ProjectSettings,
    aligned: bool = False,
    batch: int = 8,
    on_step: Callable[[int, np.ndarray], None] | None = None,
) -> list[dict]:
    """Project every image of `source` (an image, a folder, or a list of images); returns one summary per
    image. Existing outputs are kept: an image whose .npz exists is skipped, so a re-run finishes an
    interrupted one."""
    gpath = generator_path(generator, Path.cwd())
    G, info = load_generator(gpath)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    G = G.to(device)
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
        result: Projection = project_to_w_plus(
            G, to_tensor(faces).to(device), lpips, settings, init_noise=fixed, on_step=on_step
        )
        with torch.no_grad():
            recon = to_rgb(G.synthesis(result.latents, result.noise))
        for i, p in enumerate(paths):
            record = {
                "image": str(p),
                "generator": str(gpath),
                "generator_sha256": digest,
                "lpips_vgg": float(result.lpips[i]),
                "steps": result.steps,
                "w_plus": settings.w_plus,
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
