"""The tune stage of a shot: the generator adapted to the shot (pivotal tuning), and how well every frame's
drawn face fits the real one.

Between the projected keys the path's latents are a spline, so the generator alone draws an average of the
neighbouring keys there, not the face the actor made on that frame. Pivotal tuning (PTI) fixes the
latents and tunes a copy of the generator instead: with `pivots: frames` (STIT) every frame's latent on
the path is a pivot and its real face the target, so one tuned generator draws every frame as the actor
made it, and the smooth path keeps it coherent; with `pivots: keys` only the projected keys are (PTI). A
locality regulariser keeps the generator as it was away from the pivots, so edits still work. Stitching
tuning (STIT) then pulls the border band of the matte toward the plate.

Whether or not it tunes, the stage measures every frame with a face: LPIPS-VGG of the drawn (unedited)
face against the real one, before and after tuning, the dlib identity distance between them, and the
flicker (LPIPS between consecutive drawn faces) beside the plate's own. The tuned generator and the
figures are kept in the shot's cache under a key of the path, the faces and the tune settings, so a
render that changes only the composite reuses them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.devices import resolve_device
from pipeline.faces.detect import identity_verdict
from pipeline.faces.track import CropMattes, FaceTrack
from pipeline.files import write_json_atomic
from pipeline.manifest import Shot, TuneSpec
from pipeline.progress import Progress
from pipeline.shot.keys import StageKey, code_version, digest
from pipeline.shot.path import GeneratedFaces, path_settings
from pipeline.shot.project import (
    ShotProjection,
    aligned_faces,
    load_shot_generator,
    project_spec,
    projects_swapped_faces,
)
from pipeline.shot.stage import Rendered, Stage, StageJob, StageOutput

if TYPE_CHECKING:
    import torch

    from pipeline.stylegan.generator import Generator

CHUNK = 64  # frames measured at once: a long shot at 1024 px is never held whole
IDENTITY_FRAMES = 48  # frames whose dlib distance is measured, spread over the shot


def tune_spec(shot: Shot) -> TuneSpec | None:
    spec = project_spec(shot)
    return spec.tune if spec is not None else None


def tune_key(shot: Shot, upstream: Mapping[str, StageKey]) -> StageKey:
    """The tuned generator and the fit change with the path's keys (and the spline between them), the faces
    (track, swap), the tune settings, the matte when stitching, and the code."""
    spec = tune_spec(shot)
    faces = shot.spec.faces
    assert faces is not None
    swap = upstream.get("swap")
    stitch = spec is not None and spec.stitch is not None
    composite = shot.spec.composite
    mask = (composite.mask if composite is not None else None) or faces.mask
    edits = shot.spec.path.edits if shot.spec.path is not None and shot.spec.path.enabled else []
    return StageKey(
        "tune",
        {
            "path": upstream["path"].key,
            "track": upstream["track"].key,
            "swap": swap.key if swap is not None and projects_swapped_faces(shot) else "none",
            "frames": digest([shot.range_first, shot.range_last]),
            "spline": digest(path_settings(shot).__dict__),
            "tune settings": digest(spec.model_dump(mode="json") if spec else None),
            "crop size": digest(faces.crop_size),
            "matte": digest(mask.model_dump(mode="json") if stitch else None),
            "edits": digest([e.model_dump(mode="json") for e in edits] if stitch else None),
            "code": code_version("pipeline.shot.tune", "pipeline.stylegan.tune", "pipeline.stylegan.lpips"),
        },
    )


def tune_dir(root: Path, shot: Shot, key: StageKey) -> Path:
    return root / shot.name / "cache" / f"tune-{key.key}"


def frames_with_face(shot: Shot, track: FaceTrack) -> list[int]:
    return [n for n in range(shot.range_first, shot.range_last + 1) if track.has_face[track.index(n)]]


def pivot_frames(shot: Shot, track: FaceTrack, frames: list[int], latents_file: str | None) -> list[int]:
    """The frames the generator is tuned on: the projected keys, or every frame (at most max_pivots, spread
    evenly, always with the keys)."""
    spec = tune_spec(shot)
    assert spec is not None
    keys = [int(f) for f in ShotProjection.load(Path(latents_file)).frames] if latents_file else []
    if spec.pivots == "keys" and keys:
        return keys
    if len(frames) <= spec.max_pivots:
        return frames
    spread = np.linspace(0, len(frames) - 1, max(1, spec.max_pivots - len(keys))).round().astype(int)
    return sorted({*keys, *(frames[i] for i in spread)})


def face_chunks(
    shot: Shot, track: FaceTrack, frames: list[int], size: int, swap_cache: str | None
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """The real (or swapped) aligned faces of `frames` as [-1, 1] tensors, CHUNK frames at a time."""
    from pipeline.stylegan.generator import images_to_tensor

    for i in range(0, len(frames), CHUNK):
        part = frames[i : i + CHUNK]
        yield part, images_to_tensor(aligned_faces(shot, track, part, size, swap_cache))


def consecutive(lpips, images: torch.Tensor) -> np.ndarray:
    """LPIPS between each face and the next (the flicker a viewer sees)."""
    import torch

    if len(images) < 2:
        return np.zeros(0)
    with torch.no_grad():
        return lpips.between(images[1:], images[:-1]).cpu().numpy()


class FitMeter:
    """Every frame's drawn face against its real one, for one or more generators: LPIPS-VGG, the flicker
    of consecutive frames, and the dlib identity distance on a spread of frames."""

    def __init__(self, shot: Shot, track: FaceTrack, frames: list[int], size: int):
        from pipeline.stylegan.lpips import load_lpips

        self.device = resolve_device()
        self.lpips = load_lpips("vgg").to(self.device)
        self.frames = frames
        self.size = size
        self.landmarks = track.crop_landmarks(size)
        self.track = track
        pick = np.linspace(0, len(frames) - 1, min(IDENTITY_FRAMES, len(frames))).round().astype(int)
        self.identity_frames = sorted({frames[i] for i in pick}) if frames else []
        self._meter = None

    def embed(self, faces: np.ndarray, frames: list[int]) -> list[np.ndarray | None]:
        """dlib's 128-d descriptors of aligned faces, with the real faces' landmarks (a drawn face keeps
        the crop's layout), in one batch; None for a frame whose landmarks are unknown."""
        from pipeline.swap.convert import IdentityMeter

        landmarks = self.landmarks[[self.track.index(n) for n in frames]]
        known = [k for k in range(len(frames)) if not np.isnan(landmarks[k]).any()]
        self._meter = self._meter or IdentityMeter()
        described = self._meter.embed_many(faces[known], landmarks[known])
        out: list[np.ndarray | None] = [None] * len(frames)
        for k, d in zip(known, described, strict=True):
            out[k] = d
        return out

    def measure(
        self, chunks: Iterator[tuple[list[int], torch.Tensor]], generators: dict[str, Generator], path
    ) -> dict[str, dict[str, np.ndarray]]:
        """Per generator: `lpips` [frames], `flicker` [frames - 1], `identity` [identity frames] and
        `found` [identity frames] (1 where dlib's detector finds a face in the drawn face); and the plate's
        own flicker under `real`."""
        import torch

        from pipeline.stylegan.generator import tensor_to_images

        out: dict[str, dict[str, list]] = {
            n: {"lpips": [], "flicker": [], "identity": [], "found": []} for n in generators
        }
        out["real"] = {"flicker": []}
        last: dict[str, torch.Tensor] = {}
        for numbers, real in chunks:
            ws = torch.from_numpy(path.latents(numbers, edited=False))
            drawn_by: dict[str, torch.Tensor] = {}
            for name, G in generators.items():
                with torch.no_grad():
                    drawn_by[name] = torch.cat(
                        [
                            G.synthesis(ws[i : i + 16].to(self.device), "const").cpu()
                            for i in range(0, len(ws), 16)
                        ]
                    )
                    out[name]["lpips"].append(
                        self.lpips.between(drawn_by[name].to(self.device), real.to(self.device)).cpu().numpy()
                    )
            for name, images in {"real": real, **drawn_by}.items():
                joined = images if name not in last else torch.cat([last[name], images])
                out[name]["flicker"].append(consecutive(self.lpips, joined.to(self.device)))
                last[name] = images[-1:]
            wanted = [i for i, n in enumerate(numbers) if n in self.identity_frames]
            if wanted:
                frames = [numbers[i] for i in wanted]
                real_described = self.embed(tensor_to_images(real[wanted]), frames)
                for name, images in drawn_by.items():
                    faces = tensor_to_images(images[wanted])
                    described = self.embed(faces, frames)
                    for k, (a, b) in enumerate(zip(real_described, described, strict=True)):
                        if a is not None and b is not None:
                            out[name]["identity"].append(np.array([float(np.linalg.norm(a - b))]))
                            assert self._meter is not None
                            out[name]["found"].append(np.array([float(self._meter.finds_face(faces[k]))]))
        return {
            name: {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
            for name, parts in out.items()
        }


def pivot_mattes(shot: Shot, track: FaceTrack, frames: list[int], size: int) -> torch.Tensor:
    """The composite's matte of each pivot in crop coordinates at the generator's size, [K, 1, R, R]."""
    import torch

    faces, composite = shot.spec.faces, shot.spec.composite
    assert faces is not None
    m = (composite.mask if composite is not None else None) or faces.mask
    crop = faces.crop_size
    crop_mattes = CropMattes(track, crop)
    mattes = []
    for n in frames:
        matte = crop_mattes.matte(track.index(n), m.kind, m.erode, m.erode_sides, m.feather)
        mattes.append(cv2.resize(matte.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA))
    return torch.from_numpy(np.stack(mattes))[:, None]


def tune_shot(
    shot: Shot,
    track: FaceTrack,
    files: Mapping[str, str],
    out: Path,
    log: Callable[[str], None] = print,
) -> dict:
    """Tune the generator to the shot (when the manifest asks) and measure every frame; writes the tuned
    generator and `fit.json` into `out`, and returns the report."""
    import torch

    from pipeline.stylegan.checkpoints import save_generator
    from pipeline.stylegan.generator import images_to_tensor
    from pipeline.stylegan.tune import (
        StitchSettings,
        TuneSettings,
        lpips_per_face,
        stitch_generator,
        tune_generator,
    )

    spec = tune_spec(shot)
    t0 = time.perf_counter()
    G = load_shot_generator(shot)
    size = G.cfg.resolution
    path = GeneratedFaces(shot, files["path"])
    frames = frames_with_face(shot, track)
    swap_cache = files.get("swap")
    meter = FitMeter(shot, track, frames, size)
    generators: dict[str, Generator] = {"before": G}
    report: dict = {"tuned": spec is not None, "frames_measured": len(frames)}
    out.mkdir(parents=True, exist_ok=True)
    if spec is not None:
        pivots = pivot_frames(shot, track, frames, files.get("project"))
        ws = torch.from_numpy(path.latents(pivots, edited=False))
        targets = images_to_tensor(aligned_faces(shot, track, pivots, size, swap_cache))
        lpips = meter.lpips
        before = lpips_per_face(G, ws, targets, lpips)
        settings = TuneSettings(
            steps=spec.steps,
            lr=spec.lr,
            batch=spec.batch,
            lpips_weight=spec.lpips,
            mse_weight=spec.mse,
            locality=spec.locality,
            locality_radius=spec.locality_radius,
        )
        with Progress(f"{shot.name}: tune on {len(pivots)} pivots", spec.steps, emit=log) as bar:
            tuning = tune_generator(
                G, ws, targets, lpips, settings, lambda step, loss: bar.update(step + 1, f"loss {loss:.4f}")
            )
        tuned = tuning.generator
        after = lpips_per_face(tuned, ws, targets, lpips)
        report.update(
            pivots=spec.pivots,
            pivot_count=len(pivots),
            steps=tuning.steps,
            lr=tuning.lr,
            tune_seconds=tuning.seconds,
            lpips_per_pivot=[
                [int(f), float(b), float(a)] for f, b, a in zip(pivots, before, after, strict=True)
            ],
        )
        if spec.stitch is not None:
            stitch = StitchSettings(steps=spec.stitch.steps, lr=spec.stitch.lr, band=spec.stitch.band)
            mattes = pivot_mattes(shot, track, pivots, size)
            edited = torch.from_numpy(path.latents(pivots, edited=True))
            with Progress(f"{shot.name}: stitch", stitch.steps, emit=log) as bar:
                stitched = stitch_generator(
                    tuned,
                    edited,
                    targets,
                    mattes,
                    lpips,
                    stitch,
                    lambda step, loss: bar.update(step + 1, f"loss {loss:.4f}"),
                )
            tuned = stitched.generator
            report.update(stitch_steps=stitched.steps, stitch_seconds=stitched.seconds)
        save_generator(
            out / "generator.pt",
            tuned,
            {"tuned_for": shot.name, "pivots": [int(f) for f in pivots], "steps": tuning.steps},
        )
        generators["after"] = tuned
    with Progress(f"{shot.name}: measure the fit", len(frames), "frame", emit=log) as bar:
        chunks = bar.each(face_chunks(shot, track, frames, size, swap_cache), lambda chunk: len(chunk[0]))
        fit = meter.measure(chunks, generators, path)
    plate_flicker = float(fit["real"]["flicker"].mean()) if len(frames) > 1 else 0.0
    for name in generators:
        f = fit[name]
        report[name] = {
            "lpips_mean": float(f["lpips"].mean()),
            "lpips_max": float(f["lpips"].max()),
            "flicker": float(f["flicker"].mean()) if len(f["flicker"]) else 0.0,
            "identity_mean": float(f["identity"].mean()) if len(f["identity"]) else None,
            "face_found": float(f["found"].mean()) if len(f["found"]) else None,
        }
        if len(f["identity"]):  # the performer is the target: is the drawn face a face, and theirs?
            report[name].update(identity_verdict(float(f["found"].mean()), float(f["identity"].mean())))
    report["plate_flicker"] = plate_flicker
    report["lpips_per_frame"] = [
        [n, *(float(fit[name]["lpips"][i]) for name in generators)] for i, n in enumerate(frames)
    ]
    report["lpips_per_frame_columns"] = ["frame", *generators]
    report["identity_frames"] = meter.identity_frames
    report["seconds_in_stage"] = time.perf_counter() - t0
    write_json_atomic(out / "fit.json", report)
    return report


def fit_markdown(t: dict | None) -> list[str]:
    if not t:
        return []
    lines = ["", "## Fit to the real faces", ""]
    if t.get("tuned"):
        lines.append(
            f"- Generator tuned on {t['pivot_count']} pivots ({t['pivots']}), {t['steps']} steps"
            + (f" at lr {t['lr']:g}" if "lr" in t else "")
            + f" in {t['tune_seconds']:.1f} s"
            + (f", then {t['stitch_steps']} stitching steps" if "stitch_steps" in t else "")
            + (" (cached)" if t.get("cached") else "")
        )
    for name in ("before", "after"):
        if name in t:
            f = t[name]
            ident = f"{f['identity_mean']:.3f}" if f["identity_mean"] is not None else "n/a"
            lines.append(
                f"- {'Shot generator' if name == 'before' else 'Tuned generator'}: LPIPS-VGG to the real "
                f"faces over {t['frames_measured']} frames mean {f['lpips_mean']:.4f} (worst "
                f"{f['lpips_max']:.4f}); flicker {f['flicker']:.4f} (plate {t['plate_flicker']:.4f}); "
                f"dlib distance to the real face {ident}"
                + (f"; identity **{f['verdict']}**: {f['why']}" if "verdict" in f else "")
            )
    return lines


class TuneStage(Stage):
    """The generator tuned to the shot's faces, and every frame's fit. It runs whenever faces are
    projected; without a `project.tune` section it only measures."""

    name = "tune"
    label = "tune"
    report_at = ("faces", "fit")

    def section(self, shot: Shot) -> TuneSpec | None:
        return tune_spec(shot)

    def on(self, shot: Shot) -> bool:
        return project_spec(shot) is not None

    def key(self, shot: Shot, upstream: Mapping[str, StageKey]) -> StageKey:
        return tune_key(shot, upstream)

    def cache_path(self, shot: Shot, root: Path, key: StageKey) -> Path:
        return tune_dir(root, shot, key)

    def cached(self, path: Path) -> str | None:
        if not (path / "fit.json").is_file():
            return None
        return f"{path.name}/generator.pt" if (path / "generator.pt").is_file() else f"{path.name}/fit.json"

    def run(self, shot: Shot, job: StageJob) -> StageOutput:
        folder = tune_dir(job.root, shot, job.key)
        cached = (folder / "fit.json").is_file()
        if cached:
            report = json.loads((folder / "fit.json").read_text())
        else:
            track = FaceTrack.load(Path(job.files["track"]))
            report = tune_shot(shot, track, job.files, folder, job.log)
        report = {**report, "cached": cached, "path": str(folder)}
        last = report.get("after") or report["before"]
        job.log(
            f"{shot.name}: {'tuned generator' if report['tuned'] else 'fit'}: LPIPS-VGG to the real faces "
            f"{last['lpips_mean']:.4f} over {report['frames_measured']} frames"
            + (f" (before tuning {report['before']['lpips_mean']:.4f})" if report["tuned"] else "")
            + (" (cached)" if cached else "")
        )
        files = {"tune": str(folder / "generator.pt")} if report["tuned"] else {}
        return StageOutput(files, report)

    def report(self, r: Rendered) -> dict | None:
        return r.outputs["tune"].report

    def markdown(self, report: dict) -> list[str]:
        return fit_markdown((report.get("faces") or {}).get("fit"))

    def models(self, shot: Shot) -> list[str]:
        return ["tuned-generator:pivotal tuning to the shot"] if tune_spec(shot) else []


TUNE = TuneStage()
