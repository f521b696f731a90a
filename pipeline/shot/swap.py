"""The swap stage of a shot: the shared-encoder autoencoder draws person A's aligned face as person B (or B's
as A), in batches of `swap.batch` frames in the frame chain on the pipeline's device (`pipeline.devices`),
each swapped face kept in the shot's cache.

The cache is a file per frame under a key of the track, the model file and the swap settings, so a
re-render after a composite change, or of a few frames, converts nothing again. When the shot names
reference crops of both people, every converted face is measured against them (dlib's 128-d descriptor)
and the report says which of the two it looks more like.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.files import write_atomic
from pipeline.manifest import Shot, SwapSpec
from pipeline.models import file_digest
from pipeline.progress import Waiting
from pipeline.shot.keys import StageKey, code_version, digest
from pipeline.shot.stage import MODEL_LOAD_LOCK, Rendered, Stage, StageJob, StageOutput

if TYPE_CHECKING:
    from pipeline.swap.model import SwapModel


def swap_spec(shot: Shot) -> SwapSpec | None:
    spec = shot.spec.swap
    return spec if spec is not None and spec.enabled else None


def model_file(shot: Shot) -> Path:
    swap = swap_spec(shot)
    assert swap is not None
    path = Path(shot.resolve(swap.model))
    return path / "swap.pt" if path.is_dir() else path


def swap_key(shot: Shot, track: StageKey) -> StageKey:
    """The swapped faces change with the track, the model file, the swap settings, the crop size and the
    swap code; not with composite or output settings."""
    swap = swap_spec(shot)
    assert swap is not None and shot.spec.faces is not None
    return StageKey(
        "swap",
        {
            "track": track.key,
            "model": file_digest(model_file(shot))[:16],
            "swap settings": digest([swap.direction, swap.use_model_mask]),
            "crop size": digest(shot.spec.faces.crop_size),
            "code": code_version("pipeline.swap"),
        },
    )


def swap_cache_dir(root: Path, shot: Shot, key: StageKey) -> Path:
    return root / shot.name / "cache" / f"swap-{key.key}"


class SwapCache:
    """The swap stage's result, a file per frame: the swapped face and the model's mask, as float16 (what
    is read back is what is used, so a fresh and a cached render composite the same numbers)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, frame: int) -> Path:
        return self.folder / f"{frame:06d}.npz"

    def get(self, frame: int) -> tuple[np.ndarray, np.ndarray] | None:
        path = self.path(frame)
        if not path.is_file():
            return None
        with np.load(path) as d:
            return d["face"].astype(np.float32), d["mask"].astype(np.float32)

    def put(self, frame: int, face: np.ndarray, mask: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(
            self.path(frame),
            lambda tmp: np.savez(tmp, face=face.astype(np.float16), mask=mask.astype(np.float16)),
        )


@functools.lru_cache(maxsize=2)
def _cached_model(path: str, size: int, mtime_ns: int, on: str) -> SwapModel:
    """One copy of a model per process and device (keyed by the file's identity): chunks share it
    read-only."""
    from pipeline.swap.train import load_model

    return load_model(Path(path), on)


class SwappedFaces:
    """The swap model's link of the frame chain: the other person's face for each aligned crop, through
    the per-frame cache when the shot has one."""

    draws_own_faces = False
    frame_by_frame = False

    def __init__(self, shot: Shot, cache: str | Path | None = None):
        swap = swap_spec(shot)
        assert swap is not None
        self.swap = swap
        self.cache = SwapCache(cache) if cache else None
        from pipeline.devices import resolve_device

        path = model_file(shot)
        st = path.stat()
        with MODEL_LOAD_LOCK:
            self.model = _cached_model(str(path), st.st_size, st.st_mtime_ns, str(resolve_device()))

    def __call__(
        self, numbers: list[int], faces: list[np.ndarray], masks: list[np.ndarray | None]
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        from pipeline.swap import convert

        to = "b" if self.swap.direction == "a_to_b" else "a"
        if self.cache is None:
            new, new_masks = (
                convert.convert_faces(self.model, np.stack(faces), to, self.swap.batch) if faces else ([], [])
            )
        else:
            found = [self.cache.get(n) for n in numbers]
            todo = [i for i, f in enumerate(found) if f is None]
            if todo:
                made = convert.convert_faces(
                    self.model, np.stack([faces[i] for i in todo]), to, self.swap.batch
                )
                for i, face, mask in zip(todo, *made, strict=True):
                    self.cache.put(numbers[i], face, mask)
                    found[i] = self.cache.get(numbers[i])
            new, new_masks = [f[0] for f in found], [f[1] for f in found]  # type: ignore[index]
        return list(new), list(new_masks) if self.swap.use_model_mask else [None] * len(faces)


def identity_references(shot: Shot, out: Path, log: Callable[[str], None] = print) -> Path | None:
    """Centroids of the dlib embeddings of person A's and B's reference crops, saved for the chunks."""
    swap = swap_spec(shot)
    if swap is None or not (swap.reference_a and swap.reference_b):
        return None
    with Waiting(f"{shot.name}: identity references of both people", emit=log):
        refs = [
            _reference_centroid(*_folder_identity(Path(shot.resolve(f))))
            for f in (swap.reference_a, swap.reference_b)
        ]
    np.savez(out, a=refs[0], b=refs[1])
    return out


def _folder_identity(folder: Path) -> tuple[str, tuple]:
    """A folder and the names, sizes and times of its files: what decides whether a result made from it
    can be reused."""
    stats = ((p.name, p.stat()) for p in folder.iterdir() if p.is_file())
    return str(folder), tuple(sorted((name, st.st_size, st.st_mtime_ns) for name, st in stats))


@functools.lru_cache(maxsize=8)
def _reference_centroid(folder: str, files: tuple) -> np.ndarray:
    """Once per process and folder contents: the shots of a batch share their references, and embedding
    40 crops costs about half a second of CPU."""
    from pipeline.swap.convert import IdentityMeter
    from pipeline.swap.data import load_face_set

    faces = load_face_set(Path(folder), 256, "ref")
    pick = np.linspace(0, len(faces.images) - 1, min(40, len(faces.images))).round().astype(int)
    return IdentityMeter().centroid(faces.images[pick], faces.landmarks[pick])


def load_identity_references(path: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    if not path:
        return None
    with np.load(path) as d:
        return d["a"], d["b"]


def identity_summary(rows: list[list[float]], direction: str) -> dict | None:
    """Mean distances to A and B over the converted frames, the share closer to the target person, the
    share in which a face is found at all, and the verdict (faces.detect.identity_verdict)."""
    from pipeline.faces.detect import identity_verdict

    if not rows:
        return None
    d = np.array(rows)
    target_b = direction == "a_to_b"
    closer = (d[:, 2] < d[:, 1]) if target_b else (d[:, 1] < d[:, 2])
    to_target = float(d[:, 2 if target_b else 1].mean())
    found = float(d[:, 3].mean())
    return {
        "frames": len(d),
        "mean_distance_to_a": float(d[:, 1].mean()),
        "mean_distance_to_b": float(d[:, 2].mean()),
        "closer_to_target": float(closer.mean()),
        "face_found": found,
        "target": "b" if target_b else "a",
        **identity_verdict(found, to_target, float(closer.mean())),
    }


def identity_markdown(identity: dict | None) -> list[str]:
    if not identity:
        return ["", "## Identity", "", "- Not measured (give swap.reference_a and reference_b to measure it)"]
    t = identity["target"].upper()
    return [
        "",
        "## Identity",
        "",
        f"- Verdict: **{identity['verdict']}**: {identity['why']}",
        f"- Over {identity['frames']} frames: mean dlib distance to A {identity['mean_distance_to_a']:.3f}, "
        f"to B {identity['mean_distance_to_b']:.3f} (target {t}; the same person is below 0.6)",
        f"- Closer to {t} than to the other person on {identity['closer_to_target']:.0%} of the frames; "
        f"a face found in {identity['face_found']:.0%} of the new faces",
    ]


class SwapStage(Stage):
    """Person A's performance drawn as person B by the shared-encoder autoencoder."""

    name = "swap"
    label = "swap"
    report_at = ("faces",)

    def section(self, shot: Shot) -> SwapSpec | None:
        return swap_spec(shot)

    def key(self, shot: Shot, upstream: Mapping[str, StageKey]) -> StageKey:
        return swap_key(shot, upstream["track"])

    def cache_path(self, shot: Shot, root: Path, key: StageKey) -> Path:
        return swap_cache_dir(root, shot, key)

    def cached(self, path: Path) -> str | None:
        done = len(list(path.glob("*.npz"))) if path.is_dir() else 0
        return f"{done} frames in {path.name}" if done else None

    def run(self, shot: Shot, job: StageJob) -> StageOutput:
        """Nothing is converted here (the frame chain converts and caches each face); the references of
        both people are measured once for the chunks' identity check."""
        files = {"swap": str(swap_cache_dir(job.root, shot, job.key))}
        if job.version is not None:
            t = time.perf_counter()
            refs = identity_references(shot, job.version.path / "identity_refs.npz", job.log)
            if refs is not None:
                files["identity"] = str(refs)
                job.log(f"{shot.name}: identity references in {time.perf_counter() - t:.1f} s")
        return StageOutput(files)

    def face_link(self, shot: Shot, files: Mapping[str, str]) -> SwappedFaces:
        return SwappedFaces(shot, files.get("swap"))

    def report(self, r: Rendered) -> dict | None:
        swap = swap_spec(r.shot)
        assert swap is not None
        rows = sorted(row for c in r.chunks for row in c.identity)
        summary = identity_summary(rows, swap.direction)
        if summary:
            r.log(f"{r.shot.name} {r.version.label}: identity {summary}")
        return {"identity": summary, "identity_per_frame": rows}

    def markdown(self, report: dict) -> list[str]:
        faces = report.get("faces") or {}
        # the key is there (None without references) only when the swap ran
        return identity_markdown(faces["identity"]) if "identity" in faces else []

    def altered(self, shot: Shot, earlier: list[str]) -> str | None:
        swap = swap_spec(shot)
        return f"face swap ({swap.direction})" if swap else None

    def models(self, shot: Shot) -> list[str]:
        swap = swap_spec(shot)
        return [f"swap:{shot.resolve(swap.model)}"] if swap else []


SWAP = SwapStage()
