"""The projection stage of a shot: its aligned faces into the generator's W+.

The faces are projected once per shot range and kept in the shot's cache under a key made of everything
that changes them (the track, the swap model when the swapped faces are projected, the generator's
checksum, the settings), so a re-render after a composite change, or of a few frames, reuses them.
In keyframe mode only the keys are projected and the latent path (`path.py`) fills in the frames
between them; in every-frame mode each frame starts from the previous frame's result with a short schedule.
With an encoder (pSp/e4e, `stylegan/encoder.py`) each face starts from its encoding and a short polish
finishes it; in every-frame mode the frames are then polished together in batches, each latent held to
its neighbours by the temporal term. The tune stage (`tune.py`) then adapts the generator to the shot.

The generator's fixed noise maps are used throughout (not optimised per frame): noise that changes from
frame to frame shimmers, and frames between keys have no noise of their own to interpolate.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.devices import resolve_device
from pipeline.errors import ManifestError, PipelineError
from pipeline.faces.align import align_face
from pipeline.faces.draw import grid
from pipeline.faces.track import FaceTrack
from pipeline.files import write_atomic
from pipeline.manifest import ProjectSpec, Shot
from pipeline.media.color import to_uint8
from pipeline.media.sequences import write_frame
from pipeline.models import file_digest
from pipeline.progress import Progress
from pipeline.shot.keys import StageKey, code_version, digest
from pipeline.shot.stage import MODEL_LOAD_LOCK, Rendered, Stage, StageJob, StageOutput
from pipeline.shot.swap import SwappedFaces
from pipeline.stylegan.registry import generator_path
from pipeline.workspace import RenderVersion

if TYPE_CHECKING:
    import torch

    from pipeline.stylegan.encoder import Encoder
    from pipeline.stylegan.generator import Generator

PROJECTION_FORMAT = 2  # bump when the stage's code changes what it stores


def project_spec(shot: Shot) -> ProjectSpec | None:
    spec = shot.spec.project
    return spec if spec is not None and spec.enabled else None


def projects_swapped_faces(shot: Shot) -> bool:
    spec = project_spec(shot)
    swap = shot.spec.swap is not None and shot.spec.swap.enabled
    return spec is not None and (spec.source == "swap" or (spec.source == "auto" and swap))


def generator_ref(shot: Shot) -> str:
    """The shot's generator: the path section's when it names one, else the project section's."""
    path, project = shot.spec.path, shot.spec.project
    if path is not None and path.enabled and path.generator:
        return path.generator
    assert project is not None
    return project.generator


def generator_file_of(shot: Shot) -> Path:
    return generator_path(generator_ref(shot), shot.manifest_path.resolve().parent)


@functools.lru_cache(maxsize=2)
def _cached_generator(path: str, size: int, mtime_ns: int, on: str) -> Generator:
    """One copy of a generator per process and device (keyed by the file's identity); chunks share it."""
    from pipeline.stylegan.checkpoints import load_generator

    G, _ = load_generator(Path(path))
    return G.eval().requires_grad_(False).to(on)


def load_generator_file(path: str | Path) -> Generator:
    """A generator file (the shot's, or one tuned to the shot), once per process and device."""
    path = Path(path).resolve()
    st = path.stat()
    with MODEL_LOAD_LOCK:
        return _cached_generator(str(path), st.st_size, st.st_mtime_ns, str(resolve_device()))


def load_shot_generator(shot: Shot, tuned: str | None = None) -> Generator:
    """The shot's generator, or the copy the tune stage adapted to the shot when it handed one on."""
    return load_generator_file(tuned or generator_file_of(shot))


def encoder_file_of(shot: Shot) -> Path | None:
    """The encoder the projection starts from, or None when it starts from the average latent."""
    spec = project_spec(shot)
    if spec is None or not spec.starts_from_encoder:
        return None
    assert spec.encoder is not None
    from pipeline.stylegan.registry import encoder_path

    return encoder_path(spec.encoder, shot.manifest_path.resolve().parent)


@functools.lru_cache(maxsize=2)
def _cached_encoder(path: str, size: int, mtime_ns: int, generator: str, on: str) -> Encoder:
    from pipeline.stylegan.encoder import load_encoder

    E, _ = load_encoder(Path(path), Path(generator))
    return E.eval().requires_grad_(False).to(on)


def load_shot_encoder(shot: Shot) -> Encoder:
    """The shot's encoder, checked against the shot's generator (an encoder serves one generator only)."""
    path = encoder_file_of(shot)
    assert path is not None
    st = path.resolve().stat()
    try:
        with MODEL_LOAD_LOCK:
            return _cached_encoder(
                str(path.resolve()),
                st.st_size,
                st.st_mtime_ns,
                str(generator_file_of(shot).resolve()),
                str(resolve_device()),
            )
    except PipelineError as e:
        raise ManifestError(f"{shot.where('project', 'encoder')}: {e.one_line()}") from None


def project_key(shot: Shot, track: StageKey, swap: StageKey | None) -> StageKey:
    """The latents change with the faces projected (the track, and the swap when swapped faces are
    projected), the generator file, the projection settings and code; not with composite or output."""
    spec = project_spec(shot)
    assert spec is not None and shot.spec.faces is not None
    return StageKey(
        "project",
        {
            "track": track.key,
            "swap": swap.key if swap is not None and projects_swapped_faces(shot) else "none",
            "frames": digest([shot.range_first, shot.range_last]),
            "generator": file_digest(generator_file_of(shot))[:16],
            "encoder": file_digest(encoder)[:16] if (encoder := encoder_file_of(shot)) else "none",
            "project settings": digest(
                spec.model_dump(mode="json", exclude={"generator", "encoder", "tune"})
            ),
            "crop size": digest(shot.spec.faces.crop_size),
            "code": code_version(
                "pipeline.shot.project",
                "pipeline.stylegan.project",
                "pipeline.stylegan.lpips",
                "pipeline.stylegan.encoder",
            ),
        },
    )


def latents_path(root: Path, shot: Shot, stage: StageKey) -> Path:
    return root / shot.name / "cache" / f"latents-{stage.key}.npz"


def key_frames(shot: Shot, track: FaceTrack) -> list[int]:
    """The frames to project: the listed keys, every k-th frame (and the last), or every frame with a face.
    A k-th frame without a face moves to the nearest frame that has one."""
    spec = project_spec(shot)
    assert spec is not None
    first, last = shot.range_first, shot.range_last
    with_face = [n for n in range(first, last + 1) if track.has_face[track.index(n)]]
    if not with_face:
        raise ManifestError(f"{shot.manifest_path}: project: no face in frames {first}-{last} to project")
    if spec.mode == "every_frame":
        return with_face
    if spec.key_frames:
        missing = [k for k in spec.key_frames if not track.has_face[track.index(k)]]
        if missing:
            raise ManifestError(
                f"{shot.manifest_path}: project.key_frames: frame {missing[0]} has no face in the track"
            )
        return sorted(set(spec.key_frames))
    wanted = sorted({*range(first, last + 1, spec.every), last})
    faces = np.array(with_face)
    return sorted({int(faces[np.argmin(np.abs(faces - n))]) for n in wanted})


def aligned_faces(
    shot: Shot, track: FaceTrack, frames: list[int], size: int, swap_cache: str | Path | None = None
) -> np.ndarray:
    """[N, size, size, 3] float32 faces of `frames`: the plate's aligned crops, or those crops swapped when
    the swapped faces are projected. Aligned at the shot's crop size, then reduced to the generator's."""
    assert shot.spec.faces is not None
    crop_size = shot.spec.faces.crop_size
    wanted = set(frames)
    crops = []
    plates = shot.read_frames(frames[0], frames[-1])
    try:
        for n in range(frames[0], frames[-1] + 1):
            plate = next(plates)
            if n in wanted:
                crops.append(align_face(plate, track.params[track.index(n)], crop_size, track.x_scale)[0])
    finally:
        plates.close()
    if projects_swapped_faces(shot):
        crops, _ = SwappedFaces(shot, swap_cache)(frames, crops, [None] * len(crops))
    interp = cv2.INTER_AREA if crop_size > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(c, (size, size), interpolation=interp) for c in crops]).astype(np.float32)


@dataclass
class ShotProjection:
    frames: np.ndarray  # [K] the projected frames
    latents: np.ndarray  # [K, num_ws, w_dim] float32
    lpips: np.ndarray  # [K] LPIPS-VGG of each reconstruction against its face
    steps: np.ndarray  # [K] optimisation steps each frame took (a batch's steps for each of its faces)
    targets: np.ndarray  # [K, r, r, 3] uint8: the faces that were projected, for review
    mode: str
    seconds: float
    encoder_lpips: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # [K]: the encoding's
    init: str = "mean"  # where the projections started: mean or encoder

    def save(self, path: Path) -> None:
        arrays = {k: v for k, v in asdict(self).items() if isinstance(v, np.ndarray)}
        meta = json.dumps(
            {"mode": self.mode, "seconds": self.seconds, "init": self.init, "format": PROJECTION_FORMAT}
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: np.savez(tmp, meta=meta, **arrays))

    @classmethod
    def load(cls, path: Path) -> ShotProjection:
        with np.load(path) as d:
            meta = json.loads(str(d["meta"]))
            return cls(
                d["frames"],
                d["latents"],
                d["lpips"],
                d["steps"],
                d["targets"],
                meta["mode"],
                meta["seconds"],
                d["encoder_lpips"],
                meta["init"],
            )


def encode_faces(shot: Shot, G: Generator, images: torch.Tensor, batch: int) -> torch.Tensor:
    """The encoder's W+ of each face: the start of its polish."""
    import torch

    E = load_shot_encoder(shot)
    with torch.no_grad():
        return torch.cat([E(images[i : i + batch]) for i in range(0, len(images), batch)])


def project_faces(
    shot: Shot, track: FaceTrack, log: Callable[[str], None] = print, swap_cache: str | Path | None = None
) -> ShotProjection:
    """Project the shot's key faces (or every face) with the manifest's settings."""
    import torch

    from pipeline.stylegan.generator import images_to_tensor
    from pipeline.stylegan.lpips import load_lpips
    from pipeline.stylegan.project import (
        ProjectSettings,
        following_settings,
        polish_settings,
        project_sequence,
        project_to_w_plus,
    )
    from pipeline.stylegan.tune import lpips_per_face

    spec = project_spec(shot)
    assert spec is not None
    t0 = time.perf_counter()
    G = load_shot_generator(shot)
    device = resolve_device()
    lpips = load_lpips("vgg").to(device)
    frames = key_frames(shot, track)
    faces = aligned_faces(shot, track, frames, G.cfg.resolution, swap_cache)
    images = images_to_tensor(faces).to(device)
    noise = [m.to(device) for m in G.noise_maps()]
    common = dict(mse_weight=spec.mse, w_plus=spec.w_plus, patience=spec.patience, temporal=spec.temporal)
    encoded = None
    if spec.starts_from_encoder:
        encoded = encode_faces(shot, G, images, spec.batch)
        encoded_lpips = lpips_per_face(G, encoded, images, lpips)
        log(f"encoded {len(frames)} faces: LPIPS {encoded_lpips.mean():.4f} before the polish")
    if spec.mode == "every_frame" and encoded is None:
        settings = ProjectSettings(steps=spec.steps, optimize_noise=False, **common)
        following = following_settings(settings, spec.following_steps)

        bar = Progress(f"{shot.name}: project", len(frames), "frame", emit=log)

        def on_frame(i: int, r) -> None:
            bar.update(i + 1, f"frame {frames[i]}: LPIPS {r.lpips[0]:.4f} in {r.steps} steps")

        def on_step(step: int, losses: np.ndarray) -> None:  # the frames' steps: the first takes hundreds
            bar.update(bar.done, f"frame {frames[int(bar.done)]}: step {step + 1}, loss {losses.mean():.4f}")

        with bar:
            results = project_sequence(
                G, images, lpips, settings, following, on_frame=on_frame, noise=noise, on_step=on_step
            )
        latents = torch.cat([r.latents for r in results])
        scores = np.concatenate([r.lpips for r in results])
        steps = np.array([r.steps for r in results])
    else:
        # keys from the average or from their encodings; every frame from its encoding, in order, each
        # batch held to the last latent of the batch before by the temporal term
        sequence = spec.mode == "every_frame"
        if encoded is None:
            settings = ProjectSettings(steps=spec.steps, optimize_noise=False, **common)
        else:
            settings = polish_settings(spec.steps, **common)
        parts: list = []
        batches = -(-len(frames) // spec.batch)
        with Progress(f"{shot.name}: project", batches * settings.steps, emit=log) as bar:
            for start in range(0, len(frames), spec.batch):
                batch = images[start : start + spec.batch]
                batch_noise = [m.expand(len(batch), -1, -1, -1) for m in noise]
                r = project_to_w_plus(
                    G,
                    batch,
                    lpips,
                    settings,
                    init=None if encoded is None else encoded[start : start + spec.batch],
                    init_noise=batch_noise,
                    previous=parts[-1].latents[-1:] if sequence and parts else None,
                    seed=start,
                    on_step=lambda step, losses: bar.update(  # a batch that stops early counts in full
                        len(parts) * settings.steps + step + 1, f"loss {losses.mean():.4f}"
                    ),
                    sequence=sequence,
                )
                parts.append(r)
                log(
                    f"projected {'frames' if sequence else 'keys'} {frames[start]}-"
                    f"{frames[start + len(batch) - 1]} ({start + len(batch)}/{len(frames)}): "
                    f"LPIPS {r.lpips.mean():.4f}, {r.steps} steps"
                )
        latents = torch.cat([r.latents for r in parts])
        scores = np.concatenate([r.lpips for r in parts])
        steps = np.concatenate([[r.steps] * r.latents.shape[0] for r in parts])
    return ShotProjection(
        np.array(frames),
        latents.cpu().numpy().astype(np.float32),
        scores.astype(np.float32),
        steps,
        to_uint8(faces),
        spec.mode,
        time.perf_counter() - t0,
        encoded_lpips.astype(np.float32) if encoded is not None else np.zeros(0, np.float32),
        "encoder" if encoded is not None else "mean",
    )


def projection_report(shot: Shot, p: ShotProjection, path: Path, cached: bool) -> dict:
    spec = project_spec(shot)
    assert spec is not None
    return {
        "path": str(path),
        "cached": cached,
        "projection_seconds": p.seconds,
        "mode": p.mode,
        "source": "swapped faces" if projects_swapped_faces(shot) else "plate faces",
        "generator": str(generator_file_of(shot)),
        "generator_sha256": file_digest(generator_file_of(shot)),
        "frames_projected": len(p.frames),
        "total_steps": int(p.steps.sum()),  # summed over faces: a batch's steps count once per face
        "lpips_mean": float(p.lpips.mean()),
        "lpips_max": float(p.lpips.max()),
        "lpips_per_frame": [[int(f), float(v)] for f, v in zip(p.frames, p.lpips, strict=True)],
        "w_plus": spec.w_plus,
        "init": p.init,
        **(
            {
                "encoder": str(encoder_file_of(shot)),
                "encoder_sha256": file_digest(encoder_file_of(shot)),
                "encoder_lpips_mean": float(p.encoder_lpips.mean()),
                "encoder_lpips_per_frame": [
                    [int(f), float(v)] for f, v in zip(p.frames, p.encoder_lpips, strict=True)
                ],
            }
            if p.init == "encoder"
            else {}
        ),
    }


def projection_contact_sheet(
    shot: Shot,
    version: RenderVersion,
    latents_file: str | Path,
    metadata: dict[str, str],
    tuned: str | None = None,
    count: int = 8,
) -> Path:
    """Projected faces (up to `count` across the shot): the real face, the pivot (what the shot's generator
    draws from its latent) and, when the tune stage adapted the generator, what the tuned copy draws."""
    import torch

    from pipeline.stylegan.generator import tensor_to_images

    p = ShotProjection.load(Path(latents_file))
    pick = np.unique(np.linspace(0, len(p.frames) - 1, min(count, len(p.frames))).round().astype(int))
    ws = torch.from_numpy(p.latents[pick]).to(resolve_device())
    columns = [p.targets[pick]]
    with torch.no_grad():
        for G in [load_shot_generator(shot)] + ([load_generator_file(tuned)] if tuned else []):
            columns.append(to_uint8(tensor_to_images(G.synthesis(ws, "const"))))
    tiles = []
    for k, i in enumerate(pick):
        row = np.concatenate([c[k] for c in columns], axis=1)
        row = cv2.resize(row, (128 * len(columns), 128), interpolation=cv2.INTER_NEAREST)
        cv2.putText(
            row, f"{p.frames[i]} {p.lpips[i]:.3f}", (4, 122), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1
        )
        tiles.append(row)
    path = version.path / "projection_contact_sheet.png"
    write_frame(path, grid(tiles, 4 if len(columns) == 2 else 2), "png8", metadata)
    return path


def projection_markdown(p: dict | None) -> list[str]:
    if not p:
        return []
    how = "reused from the cache" if p["cached"] else f"projected in {p['projection_seconds']:.1f} s"
    return [
        "",
        "## Projection",
        "",
        f"- {p['frames_projected']} {p['source']} projected ({p['mode']}, "
        f"{'W+' if p['w_plus'] else 'W'}) into {p['generator']}; {how}",
        f"- LPIPS-VGG of the reconstructions: mean {p['lpips_mean']:.4f}, worst {p['lpips_max']:.4f}; "
        f"{p['total_steps']} optimisation steps in all",
    ] + (
        [
            f"- Started from the encoder {p['encoder']}: LPIPS-VGG {p['encoder_lpips_mean']:.4f} before the "
            "polish"
        ]
        if p.get("init") == "encoder"
        else []
    )


class ProjectStage(Stage):
    """The shot's faces (or its swapped faces) as W+ latents of the generator."""

    name = "project"
    label = "project"
    report_at = ("faces", "projection")

    def section(self, shot: Shot) -> ProjectSpec | None:
        return project_spec(shot)

    def key(self, shot: Shot, upstream: Mapping[str, StageKey]) -> StageKey:
        return project_key(shot, upstream["track"], upstream.get("swap"))

    def cache_path(self, shot: Shot, root: Path, key: StageKey) -> Path:
        return latents_path(root, shot, key)

    def run(self, shot: Shot, job: StageJob) -> StageOutput:
        """The shot's projection, from the cache when nothing it depends on changed; and its report."""
        path = latents_path(job.root, shot, job.key)
        cached = path.is_file()
        if cached:
            projection = ShotProjection.load(path)
        else:
            track = FaceTrack.load(Path(job.files["track"]))
            projection = project_faces(shot, track, job.log, job.files.get("swap"))
            projection.save(path)
        report = projection_report(shot, projection, path, cached)
        job.log(
            f"{shot.name}: {report['frames_projected']} faces projected ({report['mode']}), mean LPIPS "
            f"{report['lpips_mean']:.4f}" + (" (cached latents)" if cached else "")
        )
        return StageOutput({"project": str(path)}, report)

    def report(self, r: Rendered) -> dict | None:
        sheet = projection_contact_sheet(
            r.shot, r.version, r.files["project"], r.metadata, r.files.get("tune")
        )
        return {**(r.outputs["project"].report or {}), "contact_sheet": str(sheet)}

    def markdown(self, report: dict) -> list[str]:
        return projection_markdown((report.get("faces") or {}).get("projection"))

    def altered(self, shot: Shot, earlier: list[str]) -> str | None:
        return "stylegan projection (faces drawn by a generator)"

    def models(self, shot: Shot) -> list[str]:
        spec = project_spec(shot)
        encoder = [f"encoder:{spec.encoder}"] if spec is not None and spec.starts_from_encoder else []
        return [f"generator:{generator_ref(shot)}", *encoder]


PROJECT = ProjectStage()
