"""The latent path of a shot: its keys, a latent for every frame, edits, and the faces.

Keys come from the shot's projected keyframes, from portraits projected and placed at a frame (morph
targets: the face becomes that person there and leaves again), from latent files and from seeds (z mapped
to w, for purely generated sequences); each may be truncated toward the average latent. They are
resolved once per shot and cached like the projection. Chunks then take the latents of their frames
from the spline, add the edits, and draw the faces in batches (a link of the frame chain).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.errors import ManifestError, PipelineError
from pipeline.faces.draw import grid
from pipeline.files import read_array, write_atomic
from pipeline.manifest import PathKeySpec, PathSpec, Shot, parse_range
from pipeline.media.color import to_uint8
from pipeline.media.sequences import write_frame
from pipeline.models import file_digest
from pipeline.shot.frames import FrameComposite, in_batches
from pipeline.shot.keys import StageKey, code_version, digest
from pipeline.shot.project import (
    ShotProjection,
    generator_file_of,
    generator_ref,
    load_shot_generator,
)
from pipeline.shot.stage import Rendered, Stage, StageJob, StageOutput
from pipeline.stylegan.edits import Direction, apply_edit, ramp
from pipeline.stylegan.paths import PathSettings, latent_path, period_problem
from pipeline.workspace import RenderVersion

if TYPE_CHECKING:
    import torch

    from pipeline.stylegan.generator import Generator
    from pipeline.stylegan.mapper import LatentMapper

KEYS_FORMAT = 1


def path_spec(shot: Shot) -> PathSpec | None:
    spec = shot.spec.path
    return spec if spec is not None and spec.enabled else None


def path_settings(shot: Shot) -> PathSettings:
    """The spline of the path section, or the default one (centripetal) between projected keyframes."""
    spec = path_spec(shot)
    if spec is None:
        return PathSettings()
    return PathSettings(spec.interpolation, spec.alpha, spec.ends, spec.ease, spec.period)


def path_key(shot: Shot, project: StageKey | None) -> StageKey:
    """The keys change with the projected keyframes (when used), the generator, the path's own keys
    (and their files' contents) and the code that resolves them; not with the spline or the edits, which
    chunks apply when they draw."""
    spec = path_spec(shot)
    keyframes = [
        {
            **k.model_dump(mode="json"),
            "file": file_digest(Path(shot.resolve(k.image or k.latent or "")))
            if k.image or k.latent
            else None,
        }
        for k in (spec.keyframes if spec else [])
    ]
    return StageKey(
        "path",
        {
            "project": project.key if project is not None and (spec is None or spec.projected) else "none",
            "generator": file_digest(generator_file_of(shot))[:16],
            "keyframes": digest(keyframes),
            "steps": digest(spec.steps if spec else None),
            "code": code_version(
                "pipeline.shot.path", "pipeline.stylegan.project", "pipeline.stylegan.lpips"
            ),
        },
    )


def mapper_file_of(shot: Shot) -> Path | None:
    """The path's latent mapper (L2L), or None when the shot names none."""
    spec = path_spec(shot)
    if spec is None or not spec.mapper:
        return None
    from pipeline.stylegan.registry import mapper_path

    try:
        return mapper_path(spec.mapper, shot.manifest_path.resolve().parent)
    except PipelineError as e:
        raise ManifestError(f"{shot.where('path', 'mapper')}: {e.one_line()}") from None


def path_edits(shot: Shot) -> list[dict]:
    """The path's edits with the contents of the files they read (directions, the mapper's weights,
    wherever the names point): what the frames drawn along the path change with, for the stages' keys."""
    spec = path_spec(shot)
    if spec is None:
        return []
    edits: list[dict] = [
        {
            **e.model_dump(mode="json"),
            "file": file_digest(Path(shot.resolve(e.direction))) if e.direction else None,
        }
        for e in spec.edits
    ]
    if any(e.attribute for e in spec.edits):
        mapper = mapper_file_of(shot)
        edits.append({"mapper": file_digest(mapper) if mapper else None})
    return edits


def load_shot_mapper(shot: Shot, G: Generator) -> LatentMapper | None:
    """The path's mapper on the generator's device, checked against the shot's generator: a mapper
    serves the generator it was trained through only (a tuned copy keeps its latent space)."""
    path = mapper_file_of(shot)
    if path is None:
        return None
    from pipeline.stylegan.mapper import load_mapper

    try:
        mapper, _ = load_mapper(path, generator_file_of(shot), G)
    except PipelineError as e:
        raise ManifestError(f"{shot.where('path', 'mapper')}: {e.one_line()}") from None
    return mapper.to(G.w_avg.device)


def keys_path(root: Path, shot: Shot, stage: StageKey) -> Path:
    return root / shot.name / "cache" / f"keys-{stage.key}.npz"


def _truncate(G: Generator, w: torch.Tensor, psi: float) -> torch.Tensor:
    return w if psi == 1 else G.w_avg + psi * (w - G.w_avg)


def key_latent(shot: Shot, G: Generator, key: PathKeySpec, steps: int) -> tuple[np.ndarray, str]:
    """W+ [num_ws, w_dim] of one key, and where it came from."""
    import torch

    with torch.no_grad():
        if key.seed is not None:
            seeded = torch.Generator().manual_seed(key.seed)  # the same z on every device
            z = torch.randn(1, G.cfg.z_dim, generator=seeded).to(G.w_avg.device)
            w, source = G.map(z)[0], f"seed {key.seed}"
        elif key.latent is not None:
            path = Path(shot.resolve(key.latent))
            arr = read_array(path, keys=("latents",), ndims=(1, 2))
            if arr.shape == (G.cfg.w_dim,):
                arr = np.repeat(arr[None], G.num_ws, axis=0)
            if arr.shape != (G.num_ws, G.cfg.w_dim):
                raise PipelineError(
                    f"{path}: a latent of shape {list(arr.shape)}; the generator's W+ is [{G.num_ws}, "
                    f"{G.cfg.w_dim}]"
                )
            w, source = torch.from_numpy(arr).to(G.w_avg.device), f"file {path.name}"
    if key.image is not None:
        w, source = project_portrait(G, Path(shot.resolve(key.image)), steps), f"image {Path(key.image).name}"
    with torch.no_grad():
        return _truncate(G, w, key.psi).cpu().numpy().astype(np.float32), f"{source}, psi {key.psi:g}"


def project_portrait(G: Generator, image: Path, steps: int) -> torch.Tensor:
    """A portrait's largest face, aligned and projected with the generator's fixed noise."""
    from pipeline.faces.detect import FaceAnalyzer
    from pipeline.faces.extract import aligned_face
    from pipeline.stylegan.generator import images_to_tensor
    from pipeline.stylegan.lpips import load_lpips
    from pipeline.stylegan.project import ProjectSettings, project_to_w_plus

    face = aligned_face(image, G.cfg.resolution, False, FaceAnalyzer())
    device = G.w_avg.device  # the shot's generator is on the pipeline's device
    noise = [m.to(device) for m in G.noise_maps()]
    settings = ProjectSettings(steps=steps, optimize_noise=False, patience=20)
    result = project_to_w_plus(
        G, images_to_tensor([face]).to(device), load_lpips("vgg").to(device), settings, init_noise=noise
    )
    return result.latents[0]


def resolve_keys(shot: Shot, latents_file: str | None, log: Callable[[str], None] = print) -> dict:
    """All the shot's keys by frame: the projected keyframes, then the path's own keys over them."""
    spec = path_spec(shot)
    G = load_shot_generator(shot)
    keys: dict[int, tuple[np.ndarray, str]] = {}
    if latents_file and (spec is None or spec.projected):
        p = ShotProjection.load(Path(latents_file))
        keys = {int(f): (w, "projected") for f, w in zip(p.frames, p.latents, strict=True)}
    for i, key in enumerate(spec.keyframes if spec else []):
        try:
            keys[key.frame] = key_latent(shot, G, key, spec.steps if spec else 1000)
        except PipelineError as e:  # the file changed since validate, or does not fit the generator
            kind = "latent" if key.latent else "image" if key.image else "seed"
            raise ManifestError(f"{shot.where('path', 'keyframes', i, kind)}: {e.one_line()}") from None
        log(f"key at frame {key.frame}: {keys[key.frame][1]}")
    frames = sorted(keys)
    return {
        "frames": np.array(frames),
        "latents": np.stack([keys[f][0] for f in frames]).astype(np.float32),
        "sources": np.array([keys[f][1] for f in frames]),
    }


def build_keys(
    shot: Shot, root: Path, stage: StageKey, latents_file: str | None, log: Callable[[str], None] = print
) -> tuple[Path, dict]:
    """The shot's keys file (from the cache when unchanged) and the path's part of the report."""
    path = keys_path(root, shot, stage)
    cached = path.is_file()
    if not cached:
        keys = resolve_keys(shot, latents_file, log)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: np.savez(tmp, **keys))
    with np.load(path) as d:
        frames, sources = d["frames"], d["sources"]
    spec = path_spec(shot)
    settings = path_settings(shot)
    # the manifest's own keys were checked by validate; the projected keyframes can stretch the span
    problem = period_problem(settings.period, [int(f) for f in frames])
    if problem and settings.interpolation == "catmull_rom":
        raise ManifestError(f"{shot.where('path', 'period')}: {problem}, the projected keyframes included")
    return path, {
        "path": str(path),
        "cached": cached,
        "keys": [[int(f), str(s)] for f, s in zip(frames, sources, strict=True)],
        "interpolation": settings.interpolation,
        "alpha": settings.alpha,
        "ends": settings.ends,
        "ease": settings.ease,
        "period": settings.period,
        "edits": [e.model_dump(mode="json") for e in spec.edits] if spec else [],
        "mapper": spec.mapper if spec else None,
    }


class GeneratedFaces:
    """The generator's face for any frame: the latent path through the shot's keys, plus its edits. As a
    link of the frame chain it draws its own faces, so the links before it (a swap) are left out."""

    draws_own_faces = True
    frame_by_frame = False

    def __init__(self, shot: Shot, keys_file: str | Path, tuned: str | None = None):
        with np.load(keys_file) as d:
            self.frames, self.keys = d["frames"], d["latents"]
        self.G = load_shot_generator(shot, tuned)  # the copy tuned to the shot, when the tune stage made one
        self.settings = path_settings(shot)
        self.center = self.G.w_avg.cpu().numpy()
        # (the edit's index in path.edits, vector or the mapper's attribute index, amount, first, last, ramp)
        self.edits: list[tuple[int, np.ndarray, float, int, int, int]] = []
        self.attribute_edits: list[tuple[int, int, float, int, int, int]] = []
        spec = path_spec(shot)
        by_attribute = spec is not None and any(e.attribute for e in spec.edits)
        self.mapper = load_shot_mapper(shot, self.G) if by_attribute else None
        for i, e in enumerate(spec.edits if spec else []):
            first, last = parse_range(e.frames) if e.frames else (shot.range_first, shot.range_last)
            if e.attribute is not None:
                assert self.mapper is not None  # validate refuses attribute edits without a mapper
                if e.attribute not in self.mapper.names:  # the mapper file changed since validate
                    raise ManifestError(
                        f"{shot.where('path', 'edits', i, 'attribute')}: {e.attribute!r} is not an attribute "
                        f"of the mapper ({', '.join(self.mapper.names)})"
                    )
                self.attribute_edits.append(
                    (i, self.mapper.names.index(e.attribute), e.amount, first, last, e.ramp)
                )
                continue
            assert e.direction is not None
            file = shot.resolve(e.direction)
            try:
                vector = Direction.load(Path(file)).for_generator(self.G.num_ws, self.G.cfg.w_dim, file)
            except PipelineError as err:
                raise ManifestError(
                    f"{shot.where('path', 'edits', i, 'direction')}: {err.one_line()}"
                ) from None
            self.edits.append((i, vector, e.amount, first, last, e.ramp))

    def attribute_changes(self, numbers: list[int], without: int | None = None) -> np.ndarray:
        """[T, K]: each frame's change of the mapper's attributes (all edits by attribute, ramped, summed;
        `without`: leave out the edit of path.edits at that index)."""
        at = np.array(numbers, np.float64)
        change = np.zeros((len(at), len(self.mapper.names) if self.mapper else 0))
        for i, index, amount, first, last, ramp_frames in self.attribute_edits:
            if i != without:
                change[:, index] += amount * ramp(at, first, last, ramp_frames)
        return change

    def latents(self, numbers: list[int], edited: bool = True, without: int | None = None) -> np.ndarray:
        """W+ [T, num_ws, w_dim] of the frames: the path's, edited (but for the edit at index `without`)."""
        at = np.array(numbers, np.float64)
        ws = latent_path(self.frames, self.keys, at, self.settings, self.center)
        change = self.attribute_changes(numbers, without)
        if edited and change.any():  # the mapper reads the path's latent, before any direction
            import torch

            from pipeline.stylegan.mapper import edit_latents

            change_t = torch.from_numpy(change).float()
            ws = edit_latents(self.mapper, torch.from_numpy(ws).float(), change_t).numpy().astype(np.float64)
        for i, vector, amount, first, last, ramp_frames in self.edits if edited else []:
            if i != without:
                ws = apply_edit(ws, vector, amount, ramp(at, first, last, ramp_frames))
        return ws.astype(np.float32)

    def images(
        self, numbers: list[int], edited: bool = True, without: int | None = None, batch: int = 16
    ) -> torch.Tensor:
        """The generator's faces [T, 3, R, R] in -1..1 (on the CPU), drawn with its fixed noise."""
        import torch

        ws = torch.from_numpy(self.latents(numbers, edited, without))
        out = []
        for i in range(0, len(ws), batch):
            with torch.no_grad():
                out.append(self.G.synthesis(ws[i : i + batch].to(self.G.w_avg.device), "const").cpu())
        return torch.cat(out) if out else torch.zeros(0, 3, self.G.cfg.resolution, self.G.cfg.resolution)

    def faces(self, numbers: list[int], size: int, batch: int = 16, edited: bool = True) -> list[np.ndarray]:
        from pipeline.stylegan.generator import tensor_to_images

        out = []
        for i in range(0, len(numbers), batch):
            images = tensor_to_images(self.images(numbers[i : i + batch], edited))
            interp = cv2.INTER_CUBIC if size > images.shape[1] else cv2.INTER_AREA
            out += [np.clip(cv2.resize(f, (size, size), interpolation=interp), 0, 1) for f in images]
        return out

    def __call__(
        self, numbers: list[int], faces: list[np.ndarray], masks: list[np.ndarray | None]
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """The generator's faces at the size of the aligned crops it replaces."""
        new = self.faces(numbers, faces[0].shape[0]) if faces else []
        return new, [None] * len(faces)


class GeneratedFrames:
    """A shot without a plate: the path's faces, full frame (the frame loop's work in place of a
    composite)."""

    def __init__(self, shot: Shot, keys_file: str | Path, batch_size: int = 8):
        self.faces = GeneratedFaces(shot, keys_file)
        self.batch_size = batch_size
        self.new_faces_s = 0.0

    def frames(self, numbers: list[int], plates: list[np.ndarray]) -> list[FrameComposite]:
        size = plates[0].shape[0] if plates else 0
        t = time.perf_counter()
        faces = self.faces.faces(numbers, size)
        self.new_faces_s += time.perf_counter() - t
        return [FrameComposite(f.astype(np.float32), None, f, None) for f in faces]

    def stream(self, plates: Iterable[tuple[int, np.ndarray]], batch_size: int) -> Iterator[FrameComposite]:
        return in_batches(self.frames, plates, batch_size)


MAX_MEASURED_FRAMES = 48  # per edit, spread evenly over its frames: the report stays seconds, not minutes


def recognisers_file_of(shot: Shot) -> Path | None:
    """The path's attribute recognisers (what the edit report reads the edits with), or None."""
    spec = path_spec(shot)
    if spec is None or not spec.recognisers:
        return None
    from pipeline.stylegan.recognise import recognisers_file

    return recognisers_file(Path(shot.resolve(spec.recognisers)))


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def measure_edits(shot: Shot, faces: GeneratedFaces, frames: list[int]) -> list[dict]:
    """Each edit judged on the rendered frames it touches (at most MAX_MEASURED_FRAMES), each frame against
    the same frame without that edit: the asked change; the change the recognisers read (when the path
    names them); the change dlib's landmarks measure, independent of any network trained with the edit;
    the other measured attributes' drift (mean |change| over typical scales: the recognisers' spreads, or
    the mapper's); and the identity distance (dlib's descriptor, one person is below 0.6). L2L
    (Khodadadeh et al. 2022) claims its edits keep the person and the other attributes: this is the check,
    frame by frame. A direction is judged on the attribute it is named after, when that is a measure."""
    import torch

    from pipeline.faces.attributes import GEOMETRIC_ATTRIBUTES, measure_faces
    from pipeline.faces.detect import FaceAnalyzer
    from pipeline.stylegan.generator import to_uint8

    spec = path_spec(shot)
    if spec is None or not spec.edits:
        return []
    recognisers, scales = None, {}
    if faces.mapper is not None:
        scales = dict(zip(faces.mapper.names, faces.mapper.scales.cpu().tolist(), strict=True))
    rec_file = recognisers_file_of(shot)
    if rec_file is not None:
        from pipeline.stylegan.recognise import load_recognisers

        try:
            recognisers, _ = load_recognisers(rec_file, faces.G.w_avg.device)
        except PipelineError as e:
            raise ManifestError(f"{shot.where('path', 'recognisers')}: {e.one_line()}") from None
        for name, kind, spread in zip(
            recognisers.names, recognisers.kinds, recognisers.spread.cpu().tolist(), strict=True
        ):
            scales[name] = spread if kind == "measure" else 1.0
    analyzer = FaceAnalyzer(detector="hog", landmarks="dlib68")
    names = list(GEOMETRIC_ATTRIBUTES)
    out = []
    for i, e in enumerate(spec.edits):
        first, last = parse_range(e.frames) if e.frames else (shot.range_first, shot.range_last)
        at = np.array(frames, np.float64)
        weight = ramp(at, first, last, e.ramp) if len(at) else at
        touched = [f for f, w in zip(frames, weight, strict=True) if w > 0]
        if len(touched) > MAX_MEASURED_FRAMES:
            touched = [
                touched[j] for j in np.linspace(0, len(touched) - 1, MAX_MEASURED_FRAMES).round().astype(int)
            ]
        attribute = e.attribute
        if attribute is None and e.direction is not None:
            attribute = Direction.load(Path(shot.resolve(e.direction))).name
        rows = []
        if touched:
            edited, plain = faces.images(touched), faces.images(touched, without=i)
            after, before = (
                measure_faces(to_uint8(edited), analyzer),
                measure_faces(to_uint8(plain), analyzer),
            )
            read = None
            if recognisers is not None:
                with torch.no_grad():
                    read = (recognisers(edited) - recognisers(plain)).cpu().numpy()
            asked = e.amount * ramp(np.array(touched, np.float64), first, last, e.ramp)
            for j, f in enumerate(touched):
                found = bool(after.found[j] and before.found[j])
                change = after.attributes[j] - before.attributes[j]
                row = {"frame": f, "asked": float(asked[j]), "found": found}
                row["recognised"] = (
                    float(read[j, recognisers.names.index(attribute)])
                    if read is not None and attribute in recognisers.names
                    else None
                )
                row["landmarks"] = (
                    float(change[names.index(attribute)]) if found and attribute in names else None
                )
                others = [
                    abs(change[k]) / scales[n]
                    for k, n in enumerate(names)
                    if n != attribute and n in scales and found and scales[n] > 0
                ]
                row["others"] = float(np.mean(others)) if others else None
                row["identity"] = (
                    float(np.linalg.norm(after.descriptors[j] - before.descriptors[j])) if found else None
                )
                row["measures"] = {n: float(change[k]) for k, n in enumerate(names)} if found else None
                rows.append(row)
        identities = [r["identity"] for r in rows if r["identity"] is not None]
        out.append(
            {
                "edit": e.attribute or e.direction,
                "attribute": attribute,
                "frames_measured": len(rows),
                "frames_found": sum(r["found"] for r in rows),
                "asked": _mean([r["asked"] for r in rows]),
                "recognised": _mean([r["recognised"] for r in rows]),
                "landmarks": _mean([r["landmarks"] for r in rows]),
                "others": _mean([r["others"] for r in rows]),
                "identity": _mean(identities),
                "identity_max": max(identities) if identities else None,
                "frames": rows,
            }
        )
    return out


def path_contact_sheet(
    shot: Shot,
    version: RenderVersion,
    faces: GeneratedFaces,
    metadata: dict[str, str],
    columns: int = 6,
) -> Path:
    """The path's faces at every key and half-way between keys: what the spline does between them."""
    keys = [int(f) for f in faces.frames if shot.first <= f <= shot.last] or [shot.first]
    frames = sorted({*keys, *[(a + b) // 2 for a, b in zip(keys[:-1], keys[1:], strict=True)]})[:24]
    tiles = []
    for n, face in zip(frames, faces.faces(frames, 128), strict=True):
        tile = to_uint8(face).copy()
        label = f"{n}{' key' if n in keys else ''}"
        cv2.putText(tile, label, (4, 122), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    path = version.path / "path_contact_sheet.png"
    write_frame(path, grid(tiles, columns), "png8", metadata)
    return path


def path_markdown(p: dict) -> list[str]:
    shape = p["interpolation"] + (f" (alpha {p['alpha']:g})" if p["interpolation"] == "catmull_rom" else "")
    lines = [
        "",
        "## Latent path",
        "",
        f"- {shape}, ends {p['ends']}{', eased' if p['ease'] else ''}"
        + (f", closed loop of {p['period']} frames" if p["period"] else "")
        + f"; {len(p['keys'])} keys"
        + (" (cached)" if p["cached"] else ""),
        "- Keys: "
        + "; ".join(f"{f}: {s}" for f, s in p["keys"][:24])
        + (" ..." if len(p["keys"]) > 24 else ""),
    ]
    for e in p["edits"]:
        lines.append(
            f"- Edit {e.get('direction') or e.get('attribute')}: amount {e['amount']:g} over frames "
            f"{e['frames'] or 'all'}, ramp {e['ramp']} frames"
            + (f" (mapper {p['mapper']})" if e.get("attribute") else "")
        )
    measured = p.get("edits_measured") or []
    if measured:
        lines += [
            "",
            "### Edits measured",
            "",
            "Each edit against the same frames without it (mean over the frames it touches): the change"
            " asked, read by the recognisers and measured by dlib's landmarks; the other attributes' drift"
            " (mean |change| in typical scales); the identity distance (dlib, one person < 0.6).",
            "",
            "| edit | frames (dlib found) | asked | recognisers | landmarks | others' drift "
            "| identity mean / max |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]

        def show(v: float | None, form: str = "+.3g") -> str:
            return "-" if v is None else format(v, form)

        for m in measured:
            lines.append(
                f"| {m['edit']} | {m['frames_measured']} ({m['frames_found']}) | {show(m['asked'])} | "
                f"{show(m['recognised'])} | {show(m['landmarks'])} | {show(m['others'], '.3f')} | "
                f"{show(m['identity'], '.3f')} / {show(m['identity_max'], '.3f')} |"
            )
    return lines


class PathStage(Stage):
    """A latent for every frame: a spline through the key latents, plus edits. It runs whenever faces are
    projected (between the projected keys), with or without a path section of its own."""

    name = "path"
    label = "path"
    report_at = ("path",)

    def section(self, shot: Shot) -> PathSpec | None:
        return path_spec(shot)

    def on(self, shot: Shot) -> bool:
        project = shot.spec.project
        return path_spec(shot) is not None or (project is not None and project.enabled)

    def key(self, shot: Shot, upstream: Mapping[str, StageKey]) -> StageKey:
        return path_key(shot, upstream.get("project"))

    def cache_path(self, shot: Shot, root: Path, key: StageKey) -> Path:
        return keys_path(root, shot, key)

    def run(self, shot: Shot, job: StageJob) -> StageOutput:
        path, report = build_keys(shot, job.root, job.key, job.files.get("project"), job.log)
        job.log(
            f"{shot.name}: latent path through {len(report['keys'])} keys ({report['interpolation']})"
            + (" (cached keys)" if report["cached"] else "")
        )
        return StageOutput({"path": str(path)}, report)

    def face_link(self, shot: Shot, files: Mapping[str, str]) -> GeneratedFaces:
        return GeneratedFaces(shot, files["path"], files.get("tune"))

    def report(self, r: Rendered) -> dict | None:
        faces = GeneratedFaces(r.shot, r.files["path"], r.files.get("tune"))
        sheet = path_contact_sheet(r.shot, r.version, faces, r.metadata)
        measured = measure_edits(r.shot, faces, list(range(r.shot.first, r.shot.last + 1)))
        if measured:
            r.log(f"{r.shot.name}: {len(measured)} edits measured by landmarks, identity and recognisers")
        return {**(r.outputs["path"].report or {}), "contact_sheet": str(sheet), "edits_measured": measured}

    def markdown(self, report: dict) -> list[str]:
        return path_markdown(report["path"]) if report.get("path") else []

    def altered(self, shot: Shot, earlier: list[str]) -> str | None:
        spec = path_spec(shot)
        if spec is None:
            return None
        return "stylegan latent path" + (" with attribute edits" if spec.edits else "")

    def models(self, shot: Shot) -> list[str]:
        spec = path_spec(shot)
        mapper = (
            [f"mapper:{spec.mapper}"] if spec and spec.mapper and any(e.attribute for e in spec.edits) else []
        )
        return [f"generator:{generator_ref(shot)}", *mapper]


PATH = PathStage()
