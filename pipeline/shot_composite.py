"""The composite stage of a shot, free of Prefect: a new face into each plate frame, plus the elements.

For each frame with a face: the aligned crop, the new face (from the generator when the shot's faces
were projected, else from the swap model, else a test alteration of the crop), colour matched to the
plate's face inside the matte, sharpened and grained to the plate, warped back and blended. The face
element (RGBA in plate coordinates) is what an "over" of the alpha-blended face gives, for compositors
finishing elsewhere.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.composite import alter_face, blend, match_grain, sharpen, transfer_color
from pipeline.faces.align import align_face, transform_points, warp_to_plate
from pipeline.faces.masks import landmark_mask
from pipeline.faces.track import FaceTrack
from pipeline.files import write_atomic, write_json_atomic
from pipeline.manifest import CompositeSpec, MaskSpec, Shot, SwapSpec
from pipeline.media.color import to_float, to_uint8
from pipeline.media.sequences import extension, write_frame
from pipeline.stages import StageKey, code_version, digest, file_digest
from pipeline.workspace import RenderVersion

if TYPE_CHECKING:
    from pipeline.swap.convert import IdentityMeter
    from pipeline.swap.model import SwapModel


def composite_spec(shot: Shot) -> CompositeSpec | None:
    spec = shot.spec.composite
    return spec if spec is not None and spec.enabled else None


def swap_spec(shot: Shot) -> SwapSpec | None:
    spec = shot.spec.swap
    return spec if spec is not None and spec.enabled else None


def _projecting(shot: Shot) -> bool:
    return shot.spec.project is not None and shot.spec.project.enabled


def _pathing(shot: Shot) -> bool:
    return shot.spec.path is not None and shot.spec.path.enabled


def altered_stages(shot: Shot) -> list[str]:
    """The stages that change faces in this shot's output (for the synthetic-imagery metadata)."""
    stages = []
    if swap := swap_spec(shot):
        stages.append(f"face swap ({swap.direction})")
    if _projecting(shot):
        stages.append("stylegan projection (faces drawn by a generator)")
    if _pathing(shot) and shot.spec.path is not None:
        stages.append("stylegan latent path" + (" with attribute edits" if shot.spec.path.edits else ""))
    spec = composite_spec(shot)
    if not stages and spec and spec.alteration != "none":
        stages.append(f"composite (test alteration: {spec.alteration})")
    return stages


def models_used(shot: Shot) -> str:
    models = []
    if swap := swap_spec(shot):
        models.append(f"swap:{shot.resolve(swap.model)}")
    if _projecting(shot) or _pathing(shot):
        from pipeline.shot_project import generator_ref

        models.append(f"generator:{generator_ref(shot)}")
    return ",".join(models) or "none"


def model_file(shot: Shot) -> Path:
    swap = swap_spec(shot)
    assert swap is not None
    path = Path(shot.resolve(swap.model))
    return path / "swap.pt" if path.is_dir() else path


def swap_stage(shot: Shot, track: StageKey) -> StageKey:
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


def swap_cache_dir(root: Path, shot: Shot, track: StageKey) -> Path:
    return root / shot.name / "cache" / f"swap-{swap_stage(shot, track).key}"


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
def _cached_model(path: str, size: int, mtime_ns: int) -> SwapModel:
    """One copy of a model per process (keyed by the file's identity): chunks share it read-only."""
    from pipeline.swap.train import load_model

    return load_model(Path(path))


class FaceSource:
    """Where the new faces come from: the generator along the shot's latent path (given its keys file),
    else the swap model when the shot has one, else the test alteration."""

    def __init__(self, shot: Shot, keys_file: str | Path | None = None, swap_cache: str | Path | None = None):
        self.generated = None
        self.cache = SwapCache(swap_cache) if swap_cache else None
        if keys_file is not None:
            from pipeline.shot_path import GeneratedFaces

            self.generated = GeneratedFaces(shot, keys_file)
        self.swap = swap_spec(shot)
        self.alteration = composite_spec(shot).alteration if composite_spec(shot) else "none"
        self.model = None
        self.seconds = 0.0  # spent making faces, for the run record
        if self.swap:
            path = model_file(shot)
            st = path.stat()
            self.model = _cached_model(str(path), st.st_size, st.st_mtime_ns)

    def convert(
        self, numbers: list[int], crops: list[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """New faces for the aligned crops of frames `numbers`, and the model's masks where it has them."""
        t = time.perf_counter()
        try:
            return self._convert(numbers, crops)
        finally:
            self.seconds += time.perf_counter() - t

    def _convert(
        self, numbers: list[int], crops: list[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        if self.generated is not None:
            faces = self.generated.faces(numbers, crops[0].shape[0]) if crops else []
            return faces, [None] * len(crops)
        if self.model is None or self.swap is None:
            return [alter_face(c, self.alteration) for c in crops], [None] * len(crops)
        from pipeline.swap import convert

        to = "b" if self.swap.direction == "a_to_b" else "a"
        if self.cache is None:
            faces, masks = (
                convert.convert_faces(self.model, np.stack(crops), to, self.swap.batch) if crops else ([], [])
            )
        else:
            found = [self.cache.get(n) for n in numbers]
            todo = [i for i, f in enumerate(found) if f is None]
            if todo:
                new = convert.convert_faces(
                    self.model, np.stack([crops[i] for i in todo]), to, self.swap.batch
                )
                for i, face, mask in zip(todo, *new, strict=True):
                    self.cache.put(numbers[i], face, mask)
                    found[i] = self.cache.get(numbers[i])
            faces, masks = [f[0] for f in found], [f[1] for f in found]
        return list(faces), list(masks) if self.swap.use_model_mask else [None] * len(crops)


@dataclass
class FrameComposite:
    comp: np.ndarray
    element: np.ndarray | None  # RGBA, float32, straight alpha, plate size; None when not written
    new_face: np.ndarray | None  # the crop that went in (for contact sheets)
    matte: np.ndarray | None  # its matte in crop coordinates
    identity: tuple[float, float] | None = None  # the new face's distance to person A and to B


class Compositor:
    def __init__(
        self,
        shot: Shot,
        track: FaceTrack,
        identity_refs: tuple[np.ndarray, np.ndarray] | None = None,
        keys_file: str | Path | None = None,
        swap_cache: str | Path | None = None,
    ):
        spec = composite_spec(shot)
        assert spec is not None and shot.spec.faces is not None
        self.spec = spec
        self.mask_spec: MaskSpec = spec.mask or shot.spec.faces.mask
        self.size = shot.spec.faces.crop_size
        self.track = track
        self.crop_landmarks = self._crop_landmarks()
        self.source = FaceSource(shot, keys_file, swap_cache)
        self.batch_size = self.source.swap.batch if self.source.swap else 8
        self.identity: tuple[IdentityMeter, np.ndarray, np.ndarray] | None = None
        if identity_refs is not None:
            from pipeline.swap.convert import IdentityMeter

            self.identity = (IdentityMeter(), identity_refs[0], identity_refs[1])

    @property
    def new_faces_s(self) -> float:
        return self.source.seconds

    def _crop_landmarks(self) -> np.ndarray:
        """Landmarks in crop coordinates for every frame with a face; frames filled by interpolation
        borrow the nearest detected frame's (in the aligned crop the face barely moves)."""
        t = self.track
        out = np.full(t.landmarks.shape, np.nan)
        detected = np.flatnonzero(t.detected)
        for i in detected:
            out[i] = transform_points(t.matrix(int(t.frames[i]), 1), t.landmarks[i]) * self.size
        for i in np.flatnonzero(t.has_face & ~t.detected):
            if len(detected):
                out[i] = out[detected[np.argmin(np.abs(detected - i))]]
        return out

    def matte(self, index: int) -> np.ndarray:
        m = self.mask_spec
        return landmark_mask(self.crop_landmarks[index], self.size, m.kind, m.erode, m.erode_sides, m.feather)

    def frame(self, number: int, plate: np.ndarray) -> FrameComposite:
        return self.frames([number], [plate])[0]

    def frames(self, numbers: list[int], plates: list[np.ndarray]) -> list[FrameComposite]:
        """Composite several frames; their new faces are made in one batch."""
        crops, todo = [], []
        for k, n in enumerate(numbers):
            i = self.track.index(n)
            if self.track.has_face[i] and not np.isnan(self.crop_landmarks[i, 0, 0]):
                crops.append(align_face(plates[k], self.track.params[i], self.size)[0])
                todo.append(k)
        faces, masks = self.source.convert([numbers[k] for k in todo], crops)
        out = [FrameComposite(p, self._empty_element(p), None, None) for p in plates]
        for k, crop, face, model_mask in zip(todo, crops, faces, masks, strict=True):
            out[k] = self._composite(numbers[k], plates[k], crop, face, model_mask)
            if self.identity is not None:
                meter, ref_a, ref_b = self.identity
                e = meter.embed(face, self.crop_landmarks[self.track.index(numbers[k])])
                out[k].identity = (float(np.linalg.norm(e - ref_a)), float(np.linalg.norm(e - ref_b)))
        return out

    def _composite(
        self,
        number: int,
        plate: np.ndarray,
        crop: np.ndarray,
        face: np.ndarray,
        model_mask: np.ndarray | None,
    ) -> FrameComposite:
        i = self.track.index(number)
        matrix = self.track.matrix(number, self.size)
        assert matrix is not None
        matte = self.matte(i)
        if model_mask is not None:
            matte = matte * model_mask
        face = transfer_color(face, crop, matte, self.spec.color)
        face = sharpen(face, self.spec.sharpen)
        if self.spec.grain:
            face = match_grain(face, crop, matte, seed=number)
        region = warp_to_plate(face, matte, matrix, plate.shape)
        comp = blend(plate, region, self.spec.blend)
        element = self._empty_element(plate)
        if element is not None and region is not None:
            element[region.box] = np.concatenate([region.face, region.alpha[..., None]], axis=-1)
        return FrameComposite(comp, element, face, matte)

    def _empty_element(self, plate: np.ndarray) -> np.ndarray | None:
        if self.spec.element.format == "none":
            return None
        return np.zeros((*plate.shape[:2], 4), np.float32)


def element_path(version: RenderVersion, shot: Shot, frame: int) -> Path:
    spec = composite_spec(shot)
    assert spec is not None
    ext = extension(spec.element.format)
    return version.path / "element" / f"{version.shot}_faceElement_{version.label}.{frame:04d}.{ext}"


def write_element(version: RenderVersion, shot: Shot, frame: int, element: np.ndarray, meta: dict) -> None:
    spec = composite_spec(shot)
    assert spec is not None
    path = element_path(version, shot, frame)
    path.parent.mkdir(exist_ok=True)
    write_frame(path, element, spec.element.format, meta)


def write_transforms(version: RenderVersion, shot: Shot, track: FaceTrack) -> Path:
    """Per-frame plate->crop matrices, so a compositor can redo the paste-back in their own tool."""
    size = shot.spec.faces.crop_size if shot.spec.faces else 256
    frames = []
    for n in range(shot.first, shot.last + 1):
        i = track.index(n)
        m = track.matrix(n, size)
        state = "detected" if track.detected[i] else "filled" if track.filled[i] else "no face"
        frames.append(
            {"frame": n, "state": state, "plate_to_crop": None if m is None else m.round(6).tolist()}
        )
    path = version.path / "transforms.json"
    write_json_atomic(
        path,
        {
            "shot": shot.name,
            "version": version.label,
            "crop_size": size,
            "convention": "x_crop = M @ [x_plate, y_plate, 1], pixel centres",
            "frames": frames,
        },
    )
    return path


def composite_row(frame: int, plate: np.ndarray, done: FrameComposite, comp: np.ndarray) -> np.ndarray:
    """plate | new face | matte | comp of one frame, 256 px each, for the composite contact sheet."""
    tile = 256
    blank = np.zeros((tile, tile, 3), np.float32)
    row = [
        _fit(plate, tile),
        _fit(done.new_face, tile) if done.new_face is not None else blank,
        _fit(np.repeat(done.matte[..., None], 3, -1), tile) if done.matte is not None else blank,
        _fit(comp, tile),
    ]
    tiles = []
    for img, label in zip(row, (f"{frame} plate", "new face", "matte", "comp"), strict=True):
        img = to_uint8(img).copy()
        cv2.putText(img, label, (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(img)
    return np.concatenate(tiles, axis=1)


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    img = to_float(image)
    h, w = img.shape[:2]
    k = size / max(h, w)
    small = cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size, 3), np.float32)
    y, x = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def identity_references(shot: Shot, out: Path) -> Path | None:
    """Centroids of the dlib embeddings of person A's and B's reference crops, saved for the chunks."""
    swap = swap_spec(shot)
    if swap is None or not (swap.reference_a and swap.reference_b):
        return None
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
    40 crops costs about 1.5 s of CPU."""
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
    """Mean distances to A and B over the converted frames, and the share closer to the target person."""
    if not rows:
        return None
    d = np.array(rows)
    target_b = direction == "a_to_b"
    closer = (d[:, 2] < d[:, 1]) if target_b else (d[:, 1] < d[:, 2])
    return {
        "frames": len(d),
        "mean_distance_to_a": float(d[:, 1].mean()),
        "mean_distance_to_b": float(d[:, 2].mean()),
        "closer_to_target": float(closer.mean()),
        "target": "b" if target_b else "a",
    }
