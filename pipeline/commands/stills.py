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
from pipeline.files import refuse_file_at, write_atomic
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
        out.mkdir(parents=True, exist_ok=True)  # once a face is found: a failed run leaves no empty folder
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


LATENT_SUFFIXES = (".npz", ".npy")
SHEET_AMOUNTS = (-2.0, -1.0, 0.0, 1.0, 2.0)  # the attribute sheet's columns, in typical scales


def read_still_latent(path: Path) -> tuple[np.ndarray, list[np.ndarray] | None, dict]:
    """W+ (or w) of a latent file, with the noise maps and the record `vfx project` writes beside it."""
    from pipeline.files import read_array

    latents = read_array(path, keys=("latents",), ndims=(1, 2))
    noise, record = None, {}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as d:
            maps = sorted((k for k in d.files if k.startswith("noise")), key=lambda k: int(k[5:] or 0))
            noise = [d[k].astype(np.float32) for k in maps] or None
            if "record" in d.files:
                try:
                    record = json.loads(str(d["record"]))
                except ValueError:
                    record = {}
    return latents, noise, record


def edit_still(
    source: Path,
    mapper: str,
    changes: dict[str, float],
    out: Path,
    generator: str | None = None,
    encoder: str | None = None,
    steps: int | None = None,
    aligned: bool = False,
) -> dict:
    """Edit one face by a latent mapper (L2L): an image is projected first (with `encoder`, if given, and
    kept under out/projected, so a second edit of it costs nothing), a latent file is read as it is.
    Writes the edited face, original | edited, the edited latent and the attribute sheet (a row per
    attribute, a column per amount: the review picture that stands in for L2L's sliders)."""
    from pipeline.stylegan.mapper import edit_latents, load_mapper, read_mapper_file
    from pipeline.stylegan.mapper_train import preview
    from pipeline.stylegan.project import polish_settings
    from pipeline.stylegan.registry import mapper_path

    mfile = mapper_path(mapper, Path.cwd())
    mapper_data = read_mapper_file(mfile)
    mapper_meta = dict(mapper_data.get("meta") or {})
    config = mapper_data.get("config")
    names = [str(n) for n in config.get("names") or ()] if isinstance(config, dict) else []
    unknown = [n for n in changes if names and n not in names]
    if unknown:  # before an image's projection, not minutes after (load_mapper checks the rest)
        raise PipelineError(f"unknown attribute {unknown[0]!r}: this mapper edits {', '.join(names)}")
    is_latent = source.suffix.lower() in LATENT_SUFFIXES
    if not source.is_file():
        raise PipelineError(f"{source}: not found")
    refuse_file_at(out, "the edited face and its sheets")
    record = read_still_latent(source)[2] if is_latent else {}
    ref = generator or record.get("generator") or mapper_meta.get("generator")
    if not ref:
        raise PipelineError(f"{source}: which generator drew it is not recorded; give --generator")
    gpath = generator_path(str(ref), Path.cwd())
    if not is_latent:
        settings = polish_settings(steps or 100) if encoder else ProjectSettings(steps=steps or 1000)
        project_stills([source], str(gpath), out / "projected", settings, aligned, encoder=encoder)
        source = out / "projected" / f"{source.stem}.npz"
    latents, noise_maps, _ = read_still_latent(source)
    G, _ = load_generator(gpath)
    device = resolve_device()
    G = G.to(device).eval()
    M, _ = load_mapper(mfile, gpath, G)
    M = M.to(device)
    w = torch.from_numpy(np.asarray(latents, np.float32)).to(device)
    if w.ndim == 1:
        w = w[None].expand(G.num_ws, -1)
    if tuple(w.shape) != (G.num_ws, G.cfg.w_dim):
        raise PipelineError(
            f"{source}: a latent of shape {list(latents.shape)}; the generator's W+ is "
            f"[{G.num_ws}, {G.cfg.w_dim}]"
        )
    edited = edit_latents(M, w[None], changes)
    noise = (
        "const" if noise_maps is None else [torch.from_numpy(m)[None, None].to(device) for m in noise_maps]
    )
    with torch.no_grad():
        before, after = tensor_to_images(G.synthesis(torch.cat([w[None], edited]), noise))
    stem = source.stem
    asked = ", ".join(f"{k} {v:+g}" for k, v in changes.items())
    meta = {
        "synthetic_imagery": "true",
        "ai_altered_stages": f"stylegan latent mapper edit ({asked})",
        "software": f"{TOOL_NAME} {__version__}",
        "models": f"generator:{gpath}; mapper:{mfile}",
        "source": str(source),
    }
    record = {
        "source": str(source),
        "generator": str(gpath),
        "mapper": str(mfile),
        "changes": changes,
        "latent_change": float((edited[0] - w).norm()),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(
        out / f"{stem}_edited.npz",
        lambda tmp: np.savez(tmp, latents=edited[0].cpu().numpy(), record=json.dumps(record)),
    )
    write_frame(out / f"{stem}_edited.png", after, "png8", meta)
    write_frame(out / f"{stem}_before_after.png", np.concatenate([before, after], axis=1), "png8", meta)
    sheet = preview(G, M, torch.cat([w[None], edited]), SHEET_AMOUNTS, "rows: the original, then the edit")
    write_frame(out / f"{stem}_attributes.png", sheet, "png8", meta)
    return {**record, "out": str(out / f"{stem}_edited.png"), "sheet": str(out / f"{stem}_attributes.png")}
