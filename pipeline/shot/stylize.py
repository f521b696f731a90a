"""The stylise stage of a shot: each tracked face redrawn in another domain by a domain transfer network
(DTN, Taigman et al. 2017; `vfx train stylize`), then composited like a swapped face.

It is the last link of the frame chain before the composite, so it draws whatever face the chain made:
the plate's own, the swap model's or the generator's along the latent path. f (dlib's descriptor network
with its 8x8 map) reads each face at the model's size on the chip the model was trained with; g draws it;
`strength` mixes the drawing over the face beneath. Each drawing is kept in the shot's cache, a file per
frame, under a key of everything upstream, the model file and the settings, so a re-render after a
composite change draws nothing again. The composite's colour transfer is off unless the shot sets
composite.color: the domain's colours are the point.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from pipeline.manifest import Shot, StylizeSpec
from pipeline.models import file_digest
from pipeline.shot.keys import StageKey, code_version, digest
from pipeline.shot.path import path_edits
from pipeline.shot.stage import MODEL_LOAD_LOCK, Rendered, Stage, StageJob, StageOutput
from pipeline.shot.swap import SwapCache


def stylize_spec(shot: Shot) -> StylizeSpec | None:
    spec = shot.spec.stylize
    return spec if spec is not None and spec.enabled else None


def stylizer_path(shot: Shot) -> Path:
    from pipeline.stylize.dtn_train import stylizer_file

    spec = stylize_spec(shot)
    assert spec is not None
    return stylizer_file(Path(shot.resolve(spec.model)))


def stylize_key(shot: Shot, upstream: Mapping[str, StageKey]) -> StageKey:
    """The drawings change with every face stage before it (and the path's spline and edits, when the
    generator draws the faces), the model file, the strength, the crop size and the code."""
    spec = stylize_spec(shot)
    assert spec is not None and shot.spec.faces is not None
    path = shot.spec.path
    return StageKey(
        "stylize",
        {
            **{name: key.key for name, key in upstream.items()},
            "path settings": digest(
                path.model_dump(mode="json", exclude={"keyframes", "edits", "steps"}) if path else None
            ),
            "edits": digest(path_edits(shot)),
            "model": file_digest(stylizer_path(shot))[:16],
            "stylize settings": digest(spec.strength),
            "crop size": digest(shot.spec.faces.crop_size),
            "code": code_version("pipeline.stylize", "pipeline.shot.stylize"),
        },
    )


def stylize_cache_dir(root: Path, shot: Shot, key: StageKey) -> Path:
    return root / shot.name / "cache" / f"stylize-{key.key}"


class Stylizer:
    """g and f of one model file, on one device: aligned crops (float32 RGB 0..1, any size) -> drawings
    at the crops' size."""

    def __init__(self, path: Path, device: str):
        from pipeline.stylize.dtn_train import load_stylizer, stylizer_features

        self.g, rest = load_stylizer(path, device)
        self.f = stylizer_features(rest, device)
        self.resolution = self.g.cfg.resolution
        self.device = device

    def __call__(self, faces: np.ndarray, batch: int = 16) -> np.ndarray:
        import torch

        size = faces.shape[1]
        r = self.resolution
        interp = cv2.INTER_AREA if size > r else cv2.INTER_CUBIC
        small = np.stack([cv2.resize(f, (r, r), interpolation=interp) for f in faces])
        out = []
        for i in range(0, len(small), batch):
            x = torch.from_numpy(small[i : i + batch]).permute(0, 3, 1, 2).to(self.device) * 2 - 1
            with torch.no_grad():
                drawn = self.g(*self.f(x.float()), x.float())
            out.append(((drawn.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy())
        drawn_all = np.concatenate(out)
        back = cv2.INTER_CUBIC if size > r else cv2.INTER_AREA
        return np.stack([np.clip(cv2.resize(d, (size, size), interpolation=back), 0, 1) for d in drawn_all])


@functools.lru_cache(maxsize=2)
def _cached_stylizer(path: str, size: int, mtime_ns: int, on: str) -> Stylizer:
    """One copy per process and device (keyed by the file's identity): chunks share it read-only."""
    return Stylizer(Path(path), on)


def load_shot_stylizer(shot: Shot) -> Stylizer:
    from pipeline.devices import resolve_device

    path = stylizer_path(shot)
    st = path.stat()
    with MODEL_LOAD_LOCK:
        return _cached_stylizer(str(path), st.st_size, st.st_mtime_ns, str(resolve_device()))


class StylizedFaces:
    """The stylise link of the frame chain: each face drawn in the model's domain, through the per-frame
    cache. The masks of the links before it (the swap model's) pass through."""

    draws_own_faces = False
    frame_by_frame = False

    def __init__(self, shot: Shot, cache: str | Path | None = None):
        spec = stylize_spec(shot)
        assert spec is not None
        self.spec = spec
        self.cache = SwapCache(cache) if cache else None
        self.stylizer = load_shot_stylizer(shot)

    def _draw(self, faces: list[np.ndarray]) -> list[np.ndarray]:
        drawn = self.stylizer(np.stack(faces).astype(np.float32), self.spec.batch)
        s = self.spec.strength
        return [s * d + (1 - s) * f for d, f in zip(drawn, faces, strict=True)]

    def __call__(
        self, numbers: list[int], faces: list[np.ndarray], masks: list[np.ndarray | None]
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        if not faces:
            return [], []
        if self.cache is None:
            return self._draw(faces), masks
        found = [self.cache.get(n) for n in numbers]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            for i, drawn in zip(todo, self._draw([faces[i] for i in todo]), strict=True):
                self.cache.put(numbers[i], drawn, np.ones(drawn.shape[:2], np.float32))
                found[i] = self.cache.get(numbers[i])
        return [f[0] for f in found], masks  # type: ignore[index]


class StylizeStage(Stage):
    """Each tracked face redrawn in a target domain (a caricature, a cartoon) by a DTN."""

    name = "stylize"
    label = "stylize"
    report_at = ("stylize",)

    def section(self, shot: Shot) -> StylizeSpec | None:
        return stylize_spec(shot)

    def key(self, shot: Shot, upstream: Mapping[str, StageKey]) -> StageKey:
        return stylize_key(shot, upstream)

    def cache_path(self, shot: Shot, root: Path, key: StageKey) -> Path:
        return stylize_cache_dir(root, shot, key)

    def cached(self, path: Path) -> str | None:
        done = len(list(path.glob("*.npz"))) if path.is_dir() else 0
        return f"{done} frames in {path.name}" if done else None

    def run(self, shot: Shot, job: StageJob) -> StageOutput:
        """Nothing is drawn here (the frame chain draws and caches each face)."""
        spec = stylize_spec(shot)
        assert spec is not None
        return StageOutput(
            {"stylize": str(stylize_cache_dir(job.root, shot, job.key))},
            {"model": spec.model, "strength": spec.strength},
        )

    def face_link(self, shot: Shot, files: Mapping[str, str]) -> StylizedFaces:
        return StylizedFaces(shot, files.get("stylize"))

    def report(self, r: Rendered) -> dict | None:
        folder = Path(r.files["stylize"])
        drawn = sorted(int(p.stem) for p in folder.glob("*.npz")) if folder.is_dir() else []
        frames = [n for n in drawn if r.shot.first <= n <= r.shot.last]
        return {**(r.outputs["stylize"].report or {}), "frames_stylised": len(frames), "cache": str(folder)}

    def markdown(self, report: dict) -> list[str]:
        s = report.get("stylize")
        if not s:
            return []
        return [
            "",
            "## Stylisation",
            "",
            f"- Model {s['model']} (a domain transfer network), strength {s['strength']:g}; "
            f"{s['frames_stylised']} frames drawn (the composite contact sheet's new face column)",
        ]

    def altered(self, shot: Shot, earlier: list[str]) -> str | None:
        spec = stylize_spec(shot)
        return f"stylised by a domain transfer network ({spec.model})" if spec else None

    def models(self, shot: Shot) -> list[str]:
        spec = stylize_spec(shot)
        return (
            [f"stylize:{shot.resolve(spec.model)}", "dlib:face_recognition_resnet_model_v1"] if spec else []
        )


STYLIZE = StylizeStage()
