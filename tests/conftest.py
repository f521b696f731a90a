from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parents[1]
FOOTAGE = REPO.parent / "shared" / "footage"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_shared(message: str) -> NoReturn:
    """Something from ../shared is missing: a skip on a developer's machine, a failure under CI (the CI
    variable set true), where a missing ../shared would otherwise pass the suite with its integration
    tests quietly skipped."""
    __tracebackhide__ = True  # the skip or failure is reported at the caller's line
    if in_ci():
        pytest.fail(f"{message}; CI is set, so this is an error, not a skip", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def footage() -> Path:
    if not FOOTAGE.is_dir():
        missing_shared(f"real footage not found at {FOOTAGE} (the shared/ folder beside the repo)")
    return FOOTAGE


@pytest.fixture(scope="session")
def woman_clip(footage) -> Path:
    """A real plate of an anonymous person filmed for this project: what swap and projection tests use
    (the astronaut photograph is a public figure's face, never a swap source or target)."""
    return footage / "woman_headturns_512.mp4"


def make_clip(
    path: Path,
    frames: int = 50,
    size: str = "128x96",
    rate: int = 25,
    gop: int = 10,
    audio: bool = True,
    codec: str = "libx264",
    options: Sequence[str] = (),
) -> Path:
    """A small real H.264 (or other) clip made by ffmpeg, with a short GOP so seeking is exercised;
    `options` are more output options (a filter, interlaced coding)."""
    from pipeline.media.encode import ffmpeg_executable

    cmd = [
        ffmpeg_executable(),
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}:duration={frames / rate}",
    ]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={frames / rate}"]
    cmd += ["-c:v", codec, "-g", str(gop), "-pix_fmt", "yuv420p", *options]
    if audio:
        cmd += ["-c:a", "aac", "-shortest"]
    cmd += [str(path)]
    subprocess.run(cmd, check=True)
    return path


def hdr_movie(path: Path, frames: int = 12, size: str = "128x96", transfer: str = "smpte2084") -> Path:
    """A small 10-bit H.264 movie coded and tagged as HDR: BT.2020 primaries and matrix, PQ (or HLG)."""
    from pipeline.media.encode import ffmpeg_executable

    tags = f"color_primaries=bt2020:color_trc={transfer}:colorspace=bt2020nc"
    vf = f"scale=out_color_matrix=bt2020:out_range=tv,format=yuv420p10le,setparams=range=tv:{tags}"
    cmd = [ffmpeg_executable(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24"]
    cmd += ["-frames:v", str(frames), "-vf", vf, "-c:v", "libx264", "-g", "6", str(path)]
    subprocess.run(cmd, check=True)
    return path


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4")


def write_manifest(folder: Path, text: str, name: str = "shot.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server for the whole session (about 10-20 s to start)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


# frame -> what is on it: a face moving right, two blank frames (a short gap), a face cut by the left
# edge, eight blank frames (a long gap), the face again.
LAYOUT = {
    **{n: ("face", 3 * n) for n in range(1, 9)},
    9: ("blank", 0),
    10: ("blank", 0),
    11: ("face", 30),
    12: ("face", 33),
    13: ("edge", 0),
    14: ("face", 36),
    **{n: ("blank", 0) for n in range(15, 23)},
    23: ("face", 40),
    24: ("face", 42),
}


@pytest.fixture(scope="session")
def face_sequence(tmp_path_factory) -> Path:
    """A 24-frame PNG sequence of the astronaut with gaps, for tracking and compositing tests."""
    import cv2
    import numpy as np

    from pipeline.media.decode import load_still
    from pipeline.media.sequences import write_frame

    folder = tmp_path_factory.mktemp("plate")
    image = cv2.resize(load_still("builtin:astronaut"), (640, 640), interpolation=cv2.INTER_CUBIC)
    for n, (kind, shift) in LAYOUT.items():
        if kind == "blank":
            frame = np.full_like(image, 90)
        elif kind == "edge":  # her face (around x=230) moved so its left half is off the frame
            frame = cv2.warpAffine(image, np.float32([[1, 0, -190], [0, 1, 0]]), (640, 640))
        else:
            frame = cv2.warpAffine(
                image, np.float32([[1, 0, shift], [0, 1, 0]]), (640, 640), borderMode=cv2.BORDER_REFLECT101
            )
        write_frame(folder / f"pl.{n:04d}.png", frame, "png8", {})
    return folder / "pl.####.png"


@pytest.fixture(scope="session")
def crops(footage, tmp_path_factory) -> dict[str, Path]:
    """A handful of real aligned crops of each of the two anonymous people."""
    from pipeline.faces.extract import extract_faces

    root = tmp_path_factory.mktemp("crops")
    out = {}
    for who, clip in (("a", "woman_headturns_512.mp4"), ("b", "man_glasses_720x1280.mp4")):
        folder = root / who
        items = list(extract_faces(str(footage / clip), folder, size=128, every=40))
        assert sum(i.crop is not None for i in items) >= 8
        out[who] = folder
    return out


@pytest.fixture(scope="session")
def tiny_model(crops, tmp_path_factory) -> Path:
    """A swap model (64 px preset) after one training step: enough to run the swap stage."""
    from pipeline.swap.train import TrainSettings, train

    out = tmp_path_factory.mktemp("model")
    train(crops["a"], crops["b"], out, TrainSettings(preset="64", batch=2, preview_every=1000), steps=1)
    return out


@pytest.fixture(scope="session")
def tiny_generator_file(tmp_path_factory) -> Path:
    """A random 32 px generator in our format (its w_avg computed): enough to run projection and paths."""
    import torch

    from pipeline.stylegan.checkpoints import save_generator
    from pipeline.stylegan.generator import Generator

    torch.manual_seed(5)
    G = Generator(tiny_generator_config()).eval()
    G.compute_w_avg(2000)
    path = tmp_path_factory.mktemp("gen") / "g.pt"
    save_generator(path, G)
    return path


def tiny_generator_config():
    from pipeline.stylegan.generator import GeneratorConfig, default_channels

    return GeneratorConfig(
        resolution=32, z_dim=64, w_dim=64, mapping_layers=2, channels=default_channels(32, 512, 64)
    )


def tiny_mapper(generator_file: Path, out: Path, seed: int) -> Path:
    """An untrained mapper (random weights, bigger than a new one's) for the tiny generator: edits by it
    move the latent, which is all the shot's plumbing needs."""
    import torch

    from pipeline.models import sha256_file
    from pipeline.stylegan.checkpoints import load_generator
    from pipeline.stylegan.mapper import LatentMapper, save_mapper

    G, _ = load_generator(generator_file)
    torch.manual_seed(seed)
    mapper = LatentMapper.for_generator(G, {"mouth_open": 0.1, "yaw": 10.0}, {"yaw": "degrees"})
    with torch.no_grad():
        for p in mapper.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    out.mkdir(parents=True, exist_ok=True)
    save_mapper(out / "mapper.pt", mapper, sha256_file(generator_file), "0" * 64)
    return out


def tiny_recognisers(generator_file: Path, out: Path, seed: int) -> Path:
    """Untrained recognisers of yaw and mouth_open for the tiny generator (random readings that move
    when the face does)."""
    import torch

    from pipeline.models import sha256_file
    from pipeline.stylegan.checkpoints import load_generator
    from pipeline.stylegan.recognise import AttributeRecogniser, RecogniserConfig, save_recognisers

    G, _ = load_generator(generator_file)
    torch.manual_seed(seed)
    model = AttributeRecogniser(RecogniserConfig(G.cfg.resolution, ("yaw", "mouth_open"), ("measure",) * 2))
    with torch.no_grad():
        model.out.weight.mul_(50)
    model.spread.copy_(torch.tensor([8.0, 0.05]))
    out.mkdir(parents=True, exist_ok=True)
    save_recognisers(out / "recognisers.pt", model, {"generator_sha256": sha256_file(generator_file)})
    return out
