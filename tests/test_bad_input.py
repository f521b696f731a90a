"""Bad input through the whole command line (issue 16: nothing lost, nothing mixed, no traceback).

Each row of CASES is one bad manifest, plate, model file or argument, run through `vfx` as a user runs
it. Each must end with status 2 and exactly one line on stderr that names the file (or the argument) and
the field (`path:LINE field: ...`) or frame, with no traceback, and must write nothing: no render
version, no crops, no out file. A new class of bad input found in the field is a new row.

The rows run in-process (`pipeline.cli.main`), and fail before any Prefect flow or torch work starts, so
the table stays fast; a few real processes prove the exit status a shell sees.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from conftest import REPO, hdr_movie, tiny_generator_config, tiny_mapper, write_manifest
from PIL import Image

from pipeline.cli import main
from pipeline.errors import MediaError
from pipeline.manifest import load_shot


@dataclass
class Case:
    argv: list[str]
    names: list[str]  # what the one stderr line must contain: the file or argument, the field or frame
    stdout: list[str] = field(default_factory=list)  # what stdout must still report (the other manifests)


Build = Callable[[Path, Path], Case]  # (an empty folder, the test clip) -> the case


def run_cli(argv: list[str], capfd) -> tuple[int, str, str]:
    """`vfx ARGV` in this process: its status, stdout and stderr as a user would see them (a crash is
    shown as the traceback and status 1 a process would give)."""
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except Exception:
        traceback.print_exc()
        code = 1
    out, err = capfd.readouterr()
    return code, out, err


def files_under(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


# ----------------------------------------------------------------------------------------------------
# Manifests whose text is the problem: `{m}` is the manifest's path, `{clip}` a small real movie.

GOOD_MOVIE = "shot: a\nplate:\n  movie: {clip}\n"
STILL = "shot: a\nplate:\n  still: builtin:astronaut\n  hold: 10\n"
# A shot without a plate: the generator's faces along a path. Validate reads the generator file (the render
# would), so a real one stands in: tiny and random.
PATH_SHOT = "shot: gen\nframes: 1001-1010\npath:\n  generator: g.pt\n  keyframes:\n"


@functools.cache
def tiny_generator_bytes(seed: int = 5) -> bytes:
    """A generator file of ours (32 px, random weights), made once per seed."""
    import torch

    from pipeline.stylegan.checkpoints import save_generator
    from pipeline.stylegan.generator import Generator

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as t:
        save_generator(Path(t) / "g.pt", Generator(tiny_generator_config()).eval())
        return (Path(t) / "g.pt").read_bytes()


def mapper_of_another_generator(folder: Path) -> None:
    other = folder.parent / "other.pt"
    other.write_bytes(tiny_generator_bytes(6))
    tiny_mapper(other, folder, seed=1)


def manifest(text: str, *names: str, raw: bytes | None = None) -> Build:
    def build(d: Path, clip: Path) -> Case:
        (d / "g.pt").write_bytes(tiny_generator_bytes())
        m = d / "shot.yaml"
        if raw is not None:
            m.write_bytes(raw)
        else:
            write_manifest(d, text.replace("{clip}", str(clip)))
        return Case(["validate", str(m)], [n.replace("{m}", str(m)) for n in names])

    return build


def big_manifest() -> bytes:
    comment = b"# " + b"x" * 98 + b"\n"
    return STILL.encode() + comment * 20_000  # 2 MB


def alias_bomb() -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return (
        "shot: a\nplate:\n  still: builtin:astronaut\n  hold: 10\nx:\n"
        + "".join(f"  {line}\n" for line in lines)
        + "path:\n  keyframes: *a8\n"
    )


MANIFEST_CASES = {
    # the file itself
    "not-utf8": manifest(
        "", "{m}:1 manifest: ", "UTF-8", raw=b"shot: caf\xe9\nplate:\n  still: builtin:astronaut\n"
    ),
    "binary-file": manifest(
        "", "{m}:1 manifest: ", "UTF-8", raw=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"
    ),
    "utf16": manifest("", "{m}:1 manifest: ", "UTF-8", raw=STILL.encode("utf-16")),
    "nul-byte": manifest("", "{m}:1 yaml: ", raw=b"shot: a\x00b\n"),
    "too-big": manifest("", "{m} manifest: ", "256 KB", raw=big_manifest()),
    "alias-bomb": manifest(alias_bomb(), "{m}:1 manifest: ", "100000"),
    "deep-nesting": manifest("shot: a\nx: " + "[" * 100 + "]" * 100 + "\n", "{m}:2 yaml: ", "nested"),
    "duplicate-key": manifest("shot: a\nshot: b\nplate:\n  movie: {clip}\n", "{m}:2 shot: duplicate key"),
    "duplicate-nested-key": manifest(STILL + "  hold: 20\n", "{m}:5 plate.hold: duplicate key"),
    "yaml-syntax": manifest("shot: a\nplate: [movie: {clip}\n", "{m}:3 yaml: "),
    "not-a-mapping": manifest("- shot: a\n- plate: x\n", "{m}:1 manifest:"),
    "empty": manifest("", "{m}:1 manifest:"),
    # numbers out of range
    "fps-inf": manifest(GOOD_MOVIE + "fps: .inf\n", "{m}:4 fps:"),
    "fps-nan": manifest(GOOD_MOVIE + "fps: .nan\n", "{m}:4 fps:"),
    "fps-inf-text": manifest(GOOD_MOVIE + "fps: 'inf'\n", "{m}:4 fps:"),
    "fps-huge": manifest(GOOD_MOVIE + "fps: 1e9\n", "{m}:4 fps:", "1000"),
    "fps-zero-denominator": manifest(GOOD_MOVIE + "fps: 24/0\n", "{m}:4 fps:"),
    "fps-bool": manifest(GOOD_MOVIE + "fps: true\n", "{m}:4 fps:"),
    "hold-huge": manifest(STILL.replace("10", "2000000000"), "{m}:4 plate.hold:", "100000"),
    "hold-zero": manifest(STILL.replace("10", "0"), "{m}:4 plate.hold:"),
    "first-frame-huge": manifest(GOOD_MOVIE + "  first_frame: 1000000000000\n", "{m}:4 plate.first_frame:"),
    "frames-float": manifest(GOOD_MOVIE + "frames: 1001.5\n", "{m}:4 frames:"),
    "frames-reversed": manifest(GOOD_MOVIE + "frames: 1040-1010\n", "{m}:4 frames:"),
    "no-plate-frames-huge": manifest(
        PATH_SHOT.replace("1001-1010", "1001-150000") + "    - {frame: 1001, seed: 1}\n",
        "{m}:2 frames:",
        "100000",
    ),
    "move-zoom-nan": manifest(STILL + "  move: {zoom: [1, .nan]}\n", "{m}:5 plate.move.zoom[1]:"),
    "move-pan-inf": manifest(STILL + "  move: {pan: [[0, 0], [.inf, 0]]}\n", "{m}:5 plate.move.pan[1][0]:"),
    "move-zoom-zero": manifest(STILL + "  move: {zoom: [1, 0]}\n", "{m}:5 plate.move.zoom[1]:"),
    "crop-size-huge": manifest(STILL + "faces:\n  crop_size: 5000\n", "{m}:6 faces.crop_size:", "1024"),
    "mask-erode-side-huge": manifest(
        STILL + "faces: {}\ncomposite:\n  mask: {erode_sides: {bottom: 5}}\n",
        "{m}:7 composite.mask.erode_sides.bottom:",
        "0.3",
    ),
    "landmark-smoothing-negative": manifest(
        STILL + "faces:\n  smooth: {landmarks: -1}\n", "{m}:6 faces.smooth.landmarks:", "0"
    ),
    "grain-size-too-coarse": manifest(
        STILL + "faces: {}\ncomposite:\n  grain_size: 3\n", "{m}:7 composite.grain_size:", "1.5"
    ),
    "shutter-past-a-turn": manifest(
        STILL + "faces: {}\ncomposite:\n  shutter: 400\n", "{m}:7 composite.shutter:", "360"
    ),
    "chunk-size-zero": manifest(GOOD_MOVIE + "output:\n  chunk_size: 0\n", "{m}:5 output.chunk_size:"),
    "path-size-huge": manifest(
        PATH_SHOT + "    - {frame: 1001, seed: 1}\n  size: 100000\n", "{m}:7 path.size:", "8192"
    ),
    "key-frame-negative": manifest(
        PATH_SHOT + "    - {frame: -5, seed: 1}\n", "{m}:6 path.keyframes[0].frame:"
    ),
    "key-seed-huge": manifest(
        PATH_SHOT + "    - {frame: 1001, seed: 100000000000000000000000}\n", "{m}:6 path.keyframes[0].seed:"
    ),
    "path-period-huge": manifest(
        PATH_SHOT + "    - {frame: 1001, seed: 1}\n  period: 1000000000\n", "{m}:7 path.period:", "100000"
    ),
    "edit-amount-nan": manifest(
        PATH_SHOT + "    - {frame: 1001, seed: 1}\n  edits:\n    - {direction: d.npy, amount: .nan}\n",
        "{m}:8 path.edits[0].amount:",
    ),
    # YAML's booleans (true, yes, on) where a number is wanted: pydantic read them as 1
    "hold-true": manifest(STILL.replace("10", "true"), "{m}:4 plate.hold:", "true is not a number"),
    "chunk-size-yes": manifest(GOOD_MOVIE + "output:\n  chunk_size: yes\n", "{m}:5 output.chunk_size:"),
    "move-zoom-on": manifest(STILL + "  move: {zoom: [on, 1]}\n", "{m}:5 plate.move.zoom:", "boolean"),
    "edit-amount-yes": manifest(
        PATH_SHOT + "    - {frame: 1001, seed: 1}\n  edits:\n    - {direction: d.npy, amount: yes}\n",
        "{m}:8 path.edits[0].amount:",
        "true is not a number",
    ),
    # a path that would not draw what it says
    "key-frame-twice": manifest(
        PATH_SHOT + "    - {frame: 1001, seed: 1}\n    - {frame: 1001, seed: 2}\n",
        "{m}:7 path.keyframes[1].frame:",
        "path.keyframes[0]",
    ),
    "path-period-shorter-than-keys": manifest(
        PATH_SHOT + "    - {frame: 1001, seed: 1}\n    - {frame: 1010, seed: 2}\n  period: 5\n",
        "{m}:8 path.period:",
        "span, 9 frames",
    ),
    # plates that are not there
    "movie-missing": manifest("shot: a\nplate:\n  movie: gone.mp4\n", "{m}:3 plate.movie:", "gone.mp4"),
    "movie-is-a-folder": manifest("shot: a\nplate:\n  movie: .\n", "{m}:3 plate.movie:"),
    "sequence-without-files": manifest("shot: a\nplate:\n  sequence: pl.####.png\n", "{m}:3 plate.sequence:"),
}


def grey_png(path: Path) -> None:
    """A real 8x8 grey PNG."""
    Image.new("L", (8, 8), 128).save(path)


def layered_exr(path: Path) -> None:
    """A renderer's multi-layer EXR: beauty.R, beauty.G, beauty.B and depth.Z, no top-level picture."""
    plane = np.full((8, 8), 0.5, np.float16)
    channels = {"beauty.R": plane, "beauty.G": plane, "beauty.B": plane, "depth.Z": plane.astype(np.float32)}
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, channels) as f:
        f.write(str(path))


def with_files(text: str, files: dict[str, Callable[[Path], object]], *names: str) -> Build:
    """A manifest with files beside it; `{f:NAME}` in `names` is that file's full path."""

    def build(d: Path, clip: Path) -> Case:
        (d / "g.pt").write_bytes(tiny_generator_bytes())
        for name, make in files.items():
            make(d / name)
        m = write_manifest(d, text.replace("{clip}", str(clip)))
        out = []
        for n in names:
            n = n.replace("{m}", str(m))
            for name in files:
                n = n.replace(f"{{f:{name}}}", str((d / name).resolve()))
            out.append(n)
        return Case(["validate", str(m)], out)

    return build


def save(array: np.ndarray, pickled: bool = False) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(_npy_bytes(array, pickled))


def _npy_bytes(array: np.ndarray, pickled: bool = False) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=pickled)
    return buf.getvalue()


def _torch_bytes(data: dict, **plain: str) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({**{k: torch.from_numpy(v) for k, v in data.items()}, **plain}, buf)
    return buf.getvalue()


def nan_latent() -> np.ndarray:
    w = np.zeros((8, 64), np.float32)
    w[3, 5] = np.nan
    return w


def direction_npz(vector: np.ndarray, meta: str) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, direction=vector, meta=meta)

    return make


def empty_npz(p: Path) -> None:
    with open(p, "wb") as f:
        np.savez(f)


def mapper_for_g(folder: Path) -> None:
    tiny_mapper(folder.parent / "g.pt", folder, seed=1)


ATTRIBUTE_EDIT = (
    PATH_SHOT
    + "    - {frame: 1001, seed: 1}\n  mapper: m\n  edits:\n    - {attribute: yaw, amount: 5, EDIT}\n"
)
LATENT_KEY = PATH_SHOT + "    - {frame: 1001, latent: key.npy}\n"
EDIT = PATH_SHOT + "    - {frame: 1001, seed: 1}\n  edits:\n    - {direction: d.npy, amount: 2}\n"
EDIT_NPZ = EDIT.replace("d.npy", "d.npz")
LATENT_FIELD = ("{m}:6 path.keyframes[0].latent: ", "{f:key.npy}")
DIRECTION_FIELD = ("{m}:8 path.edits[0].direction: ",)

FILE_CASES = {
    # edits by attribute whose frames or ramp would leave them undone or partly done
    "edit-frames-outside-the-shot": with_files(
        ATTRIBUTE_EDIT.replace("EDIT", "frames: 1100-1200"),
        {"m": mapper_for_g},
        "{m}:9 path.edits[0].frames:",
        "1001-1010",
    ),
    "edit-ramp-longer-than-the-edit": with_files(
        ATTRIBUTE_EDIT.replace("EDIT", "frames: 1005-1010, ramp: 4"),
        {"m": mapper_for_g},
        "{m}:9 path.edits[0].ramp:",
        "at most 2",
    ),
    # latents and directions: user .npy/.npz files, read without unpickling and checked at load
    "latent-object-dtype": with_files(
        LATENT_KEY, {"key.npy": save(np.array([{"w": 1}, None], dtype=object), pickled=True)}, *LATENT_FIELD
    ),
    "latent-nan": with_files(LATENT_KEY, {"key.npy": save(nan_latent())}, *LATENT_FIELD, "NaN"),
    "latent-3d": with_files(LATENT_KEY, {"key.npy": save(np.zeros((2, 8, 64), np.float32))}, *LATENT_FIELD),
    "latent-text-file": with_files(
        LATENT_KEY, {"key.npy": lambda p: p.write_text("0.1 0.2\n")}, *LATENT_FIELD
    ),
    "latent-a-pickle": with_files(
        LATENT_KEY, {"key.npy": lambda p: p.write_bytes(pickle.dumps([0.1] * 64))}, *LATENT_FIELD
    ),
    "latent-truncated": with_files(
        LATENT_KEY,
        {"key.npy": lambda p: p.write_bytes(_npy_bytes(np.zeros((8, 64), np.float32))[:300])},
        *LATENT_FIELD,
    ),
    "latent-strings": with_files(LATENT_KEY, {"key.npy": save(np.array(["a", "b"]))}, *LATENT_FIELD),
    "latent-empty-npz": with_files(
        LATENT_KEY.replace("key.npy", "key.npz"),
        {"key.npz": empty_npz},
        "{m}:6 path.keyframes[0].latent: ",
        "{f:key.npz}",
    ),
    "latent-empty-file": with_files(LATENT_KEY, {"key.npy": lambda p: p.write_bytes(b"")}, *LATENT_FIELD),
    "direction-object-dtype": with_files(
        EDIT, {"d.npy": save(np.array([None, 1], dtype=object), pickled=True)}, *DIRECTION_FIELD, "{f:d.npy}"
    ),
    "direction-nan": with_files(
        EDIT_NPZ, {"d.npz": direction_npz(nan_latent(), "{}")}, *DIRECTION_FIELD, "{f:d.npz}", "NaN"
    ),
    "direction-bad-meta": with_files(
        EDIT_NPZ,
        {"d.npz": direction_npz(np.ones(64, np.float32), json.dumps({"bias": "high"}))},
        *DIRECTION_FIELD,
        "{f:d.npz}",
        "bias",
    ),
    "direction-meta-not-json": with_files(
        EDIT_NPZ, {"d.npz": direction_npz(np.ones(64, np.float32), "{oops")}, *DIRECTION_FIELD, "{f:d.npz}"
    ),
    # plates that are not what they say
    "movie-not-a-movie": with_files(
        "shot: a\nplate:\n  movie: notes.mp4\n",
        {"notes.mp4": lambda p: p.write_text("not a movie")},
        "{m}:3 plate.movie: ",
        "{f:notes.mp4}",
    ),
    "movie-empty-file": with_files(
        "shot: a\nplate:\n  movie: empty.mov\n",
        {"empty.mov": lambda p: p.write_bytes(b"")},
        "{m}:3 plate.movie: ",
    ),
    "still-not-an-image": with_files(
        "shot: a\nplate:\n  still: still.png\n  hold: 5\n",
        {"still.png": lambda p: p.write_text("not a png")},
        "{m}:3 plate.still: ",
        "{f:still.png}",
    ),
    "hdr-plate-to-8-bit-frames": with_files(
        "shot: a\nplate:\n  movie: pq.mp4\noutput:\n  sequence: png8\n",
        {"pq.mp4": lambda p: hdr_movie(p, frames=3)},
        "{m}:5 output.sequence: ",
        "PQ",
    ),
    "sequence-frame-not-an-image": with_files(
        "shot: a\nplate:\n  sequence: pl.####.png\n",
        {"pl.0001.png": lambda p: p.write_text("not a png")},
        "{m}:3 plate.sequence: ",
    ),
    "sequence-frame-padded-twice": with_files(
        "shot: a\nplate:\n  sequence: pl.####.png\n",
        {"pl.0001.png": grey_png, "pl.00001.png": grey_png, "pl.0002.png": grey_png},
        "{m}:3 plate.sequence: ",
        "pl.0001.png is frame 1 too",
    ),
    # a renderer's multi-layer EXR: its picture is a layer, named or not, there or not
    "sequence-exr-layers-without-layer": with_files(
        "shot: a\nplate:\n  sequence: pl.####.exr\n",
        {"pl.0001.exr": layered_exr},
        "{m}:3 plate.sequence: ",
        "its layers: beauty, depth",
        "plate.layer",
    ),
    "sequence-exr-layer-missing": with_files(
        "shot: a\nplate:\n  sequence: pl.####.exr\n  layer: diffuse\n",
        {"pl.0001.exr": layered_exr},
        "{m}:4 plate.layer: ",
        "'diffuse'",
        "its layers: beauty, depth",
    ),
    "movie-with-a-layer": manifest(GOOD_MOVIE + "  layer: beauty\n", "{m}:2 plate: ", "not movies"),
    # a plate's colour space (OpenColorIO): a name the config lacks, a config that is not there or not one
    "colorspace-unknown": manifest(
        GOOD_MOVIE + "  colorspace: ARRI LogC\n", "{m}:4 plate.colorspace: ", "'ARRI LogC4'"
    ),
    "colorspace-config-missing": manifest(
        GOOD_MOVIE + "  colorspace: ADX10\n  ocio_config: show.ocio\n",
        "{m}:5 plate.ocio_config: ",
        "not found",
    ),
    "colorspace-config-a-folder": with_files(
        GOOD_MOVIE + "  colorspace: ADX10\n  ocio_config: configs\n",
        {"configs/config.ocio": lambda p: (p.parent.mkdir(), p.write_text("ocio_profile_version: 2\n"))},
        "{m}:5 plate.ocio_config: ",
        "a folder, not an OpenColorIO config file",
    ),
    "colorspace-config-not-a-config": with_files(
        GOOD_MOVIE + "  colorspace: ADX10\n  ocio_config: show.ocio\n",
        {"show.ocio": lambda p: p.write_text("roles: [\n")},
        "{m}:5 plate.ocio_config: ",
        "{f:show.ocio}",
    ),
    "comp-in-the-plates-encoding-without-one": manifest(
        GOOD_MOVIE + "output:\n  colorspace: plate\n", "{m}:5 output.colorspace: ", "plate.colorspace"
    ),
    "comp-in-the-plates-encoding-as-another-format": manifest(
        GOOD_MOVIE + "  colorspace: ADX10\noutput:\n  sequence: exr\n  colorspace: plate\n",
        "{m}:7 output.colorspace: ",
        "png16",
    ),
    "colorspace-config-without-colorspace": manifest(
        GOOD_MOVIE + "  ocio_config: ocio://cg-config-latest\n", "{m}:2 plate: ", "colorspace"
    ),
    # an image key and the actor's reference: images that are not images
    "key-image-not-an-image": with_files(
        PATH_SHOT + "    - {frame: 1001, image: face.jpg}\n",
        {"face.jpg": lambda p: p.write_text("not a jpeg")},
        "{m}:6 path.keyframes[0].image: ",
        "{f:face.jpg}",
    ),
    "reference-not-an-image": with_files(
        STILL + "faces:\n  reference: actor.png\n",
        {"actor.png": lambda p: p.write_text("not a png")},
        "{m}:6 faces.reference: ",
        "{f:actor.png}",
    ),
    # model files: each is read by validate, so a render worker does not find out after the face track
    "generator-not-a-torch-file": with_files(
        PATH_SHOT + "    - {frame: 1001, seed: 1}\n",
        {"g.pt": lambda p: p.write_text("placeholder")},
        "{m}:4 path.generator: ",
        "{f:g.pt}: not a readable torch checkpoint: not a torch.save archive",
    ),
    "generator-empty-file": with_files(
        PATH_SHOT + "    - {frame: 1001, seed: 1}\n",
        {"g.pt": lambda p: p.write_bytes(b"")},
        "{m}:4 path.generator: ",
        "{f:g.pt}: not a readable torch checkpoint: the file is empty",
    ),
    "generator-of-no-known-kind": with_files(
        PATH_SHOT + "    - {frame: 1001, seed: 1}\n",
        {"g.pt": lambda p: p.write_bytes(_torch_bytes({"weights": np.zeros(3, np.float32)}))},
        "{m}:4 path.generator: ",
        "{f:g.pt}: not a generator we know",
    ),
    "generator-is-an-encoder": with_files(
        PATH_SHOT + "    - {frame: 1001, seed: 1}\n",
        {"g.pt": lambda p: p.write_bytes(_torch_bytes({"w": np.zeros(3, np.float32)}, format="vfx-encoder"))},
        "{m}:4 path.generator: ",
        "{f:g.pt}: not a generator we know (ours, rosinality g_ema, NVIDIA G_ema); it is a vfx-encoder file",
    ),
    "mapper-of-another-generator": with_files(
        PATH_SHOT + "    - {frame: 1001, seed: 1}\n  mapper: m\n",
        {"m": mapper_of_another_generator},
        "{m}:7 path.mapper: ",
        "{f:m}/mapper.pt: trained for the generator with sha256",
    ),
}


# ----------------------------------------------------------------------------------------------------
# Folders of manifests: one bad one is reported, the others still are.


def folder_with_one_bad(d: Path, clip: Path) -> Case:
    shots = d / "shots"
    shots.mkdir()
    write_manifest(shots, GOOD_MOVIE.replace("{clip}", str(clip)), "a_good.yaml")
    (shots / "b_bad.yaml").write_bytes(b"shot: b\nplate:\n  movie: caf\xe9.mp4\n")
    write_manifest(
        shots, GOOD_MOVIE.replace("{clip}", str(clip)).replace("shot: a", "shot: c"), "c_good.yaml"
    )
    return Case(
        ["validate", str(shots)],
        [f"{shots / 'b_bad.yaml'}:3 ", "UTF-8"],
        stdout=[f"{shots / 'a_good.yaml'}: ok", f"{shots / 'c_good.yaml'}: ok"],
    )


def files_with_one_bad(d: Path, clip: Path) -> Case:
    good = write_manifest(d, GOOD_MOVIE.replace("{clip}", str(clip)), "good.yaml")
    bad = d / "bad.yaml"
    bad.write_bytes(STILL.encode("latin-1") + b"# r\xe9sum\xe9\n")
    return Case(["validate", str(bad), str(good)], [f"{bad}:5 ", "UTF-8"], stdout=[f"{good}: ok"])


def empty_folder(d: Path, clip: Path) -> Case:
    (d / "shots").mkdir()
    return Case(["validate", str(d / "shots")], [str(d / "shots"), "no shot manifests"])


# ----------------------------------------------------------------------------------------------------
# Arguments.


def args(command: str, *names: str) -> Build:
    """A command line (split like a shell's); `{d}` is the case's folder, `{clip}` the test clip, `{m}` a
    good manifest."""

    def build(d: Path, clip: Path) -> Case:
        m = write_manifest(d, GOOD_MOVIE.replace("{clip}", str(clip)))
        (d / "crops").mkdir()

        def sub(s: str) -> str:
            return s.replace("{d}", str(d)).replace("{clip}", str(clip)).replace("{m}", str(m))

        return Case([sub(a) for a in shlex.split(command)], [sub(n) for n in names])

    return build


def out_is_a_file(d: Path, clip: Path) -> Case:
    out = d / "crops.txt"
    out.write_text("my notes\n")
    return Case(["extract", str(clip), "--out", str(out)], [str(out), "--out"])


def out_file_for(command: str) -> Build:
    """`command` (as for args) with --out a file: refused by name before any model loads or Prefect starts
    (project, edit and the generator and swap trainings made the folder and died with a traceback)."""

    def build(d: Path, clip: Path) -> Case:
        (d / "g.pt").write_bytes(tiny_generator_bytes())
        tiny_mapper(d / "g.pt", d / "m", seed=1)
        np.save(d / "w.npy", np.zeros((8, 64), np.float32))
        out = d / "notes.txt"
        out.write_text("my notes\n")
        return args(f"{command} --out {out}", str(out), "--out", "a file is there")(d, clip)

    return build


def edit_an_image_by_an_unknown_attribute(d: Path, clip: Path) -> Case:
    """Refused before the image's projection (which wrote out/projected/ first, then failed)."""
    import cv2

    (d / "g.pt").write_bytes(tiny_generator_bytes())
    tiny_mapper(d / "g.pt", d / "m", seed=1)
    cv2.imwrite(str(d / "face.png"), np.full((64, 64, 3), 128, np.uint8))
    argv = f"edit {d}/face.png --mapper {d}/m --generator {d}/g.pt --set smile_width=0.1 --out {d}/e"
    return Case(shlex.split(argv), ["smile_width", "mouth_open, yaw"])


def labels_from_one_folder(d: Path, clip: Path) -> Case:
    """The same folder for faces with a label and without it: the recognisers trained, then were refused
    as no better than chance."""
    import cv2

    from pipeline.stylegan.recognise_train import MIN_FACES

    (d / "g.pt").write_bytes(tiny_generator_bytes())
    (d / "faces").mkdir()
    for i in range(MIN_FACES):
        cv2.imwrite(str(d / "faces" / f"{i}.png"), np.full((32, 32, 3), 8 * i, np.uint8))
    argv = (
        f"train recognisers --generator {d}/g.pt --out {d}/r --minutes 1 --attribute hat={d}/faces,{d}/faces"
    )
    return Case(shlex.split(argv), ["--attribute hat", f"{d}/faces", "both sides"])


def extract_a_layer_the_exr_lacks(d: Path, clip: Path) -> Case:
    """`vfx extract --layer` names a layer the renderer's EXR sequence does not have: refused naming its
    layers, before the crop folder is made."""
    layered_exr(d / "pl.0001.exr")
    return Case(
        ["extract", f"{d}/pl.####.exr", "--out", f"{d}/crops", "--layer", "diffuse"],
        ["'diffuse'", "beauty, depth"],
    )


def an_image_without_a_face(command: str) -> Build:
    """`command` on a picture with no face in it: refused naming it, with no empty --out folder left
    behind (project and edit made theirs before looking for the face)."""

    def build(d: Path, clip: Path) -> Case:
        import cv2

        (d / "g.pt").write_bytes(tiny_generator_bytes())
        tiny_mapper(d / "g.pt", d / "m", seed=1)
        noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
        cv2.imwrite(str(d / "wall.png"), cv2.GaussianBlur(noise, (0, 0), 2))
        argv = command.replace("{d}", str(d))
        return Case(shlex.split(argv), [f"{d}/wall.png", "no face found"])

    return build


def status_root_is_a_file(d: Path, clip: Path) -> Case:
    m = write_manifest(d, GOOD_MOVIE.replace("{clip}", str(clip)))
    root = d / "render"
    root.write_text("")
    return Case(["status", str(m), "--root", str(root)], [str(root), "--root"])


def render_root_is_a_file(d: Path, clip: Path) -> Case:
    m = write_manifest(d, GOOD_MOVIE.replace("{clip}", str(clip)))
    root = d / "render"
    root.write_text("")
    return Case(["render", str(m), "--root", str(root)], [str(root)])


EXTRACT = "extract {clip} --out {d}/out"
TRAIN_SWAP = "train swap --a {d}/crops --b {d}/crops --out {d}/m"
TRAIN_GENERATOR = "train generator --faces {d}/crops --out {d}/g"
TRAIN_ENCODER = "train encoder --generator {d}/g.pt --faces {d}/crops --out {d}/e"
TRAIN_RECOGNISERS = "train recognisers --generator {d}/g.pt --out {d}/r"
PROJECT = "project {d}/crops --generator g --out {d}/p"
DIRECTION = "direction learn --pos {d}/crops --neg {d}/crops --generator g --out {d}/d.npz"

ARG_CASES = {
    "extract-every-zero": args(f"{EXTRACT} --every 0", "--every"),
    "extract-every-negative": args(f"{EXTRACT} --every -2", "--every"),
    "extract-size-tiny": args(f"{EXTRACT} --size 5", "--size", "64"),
    "extract-size-huge": args(f"{EXTRACT} --size 9000", "--size", "1024"),
    "extract-out-is-a-file": out_is_a_file,
    "extract-plate-missing": args("extract {d}/gone.mp4 --out {d}/out", "{d}/gone.mp4"),
    "extract-plate-not-a-movie": args("extract {m} --out {d}/out", "{m}"),
    "extract-no-out": args("extract {clip}", "--out"),
    "extract-exr-layer-missing": extract_a_layer_the_exr_lacks,
    "extract-colorspace-unknown": args(f"{EXTRACT} --colorspace LogC", "--colorspace", "'ARRI LogC4'"),
    "extract-ocio-config-missing": args(
        f"{EXTRACT} --colorspace ADX10 --ocio-config {{d}}/gone.ocio", "--ocio-config", "{d}/gone.ocio"
    ),
    "extract-ocio-config-alone": args(f"{EXTRACT} --ocio-config ocio://cg-config-latest", "--ocio-config"),
    "render-frames-reversed": args("render {m} --frames 1040-1010", "--frames"),
    "render-frames-text": args("render {m} --frames all", "--frames"),
    "render-frames-huge": args("render {m} --frames 1001-99999999999", "--frames"),
    "render-frames-outside": args("render {m} --frames 1040-1060", "--frames", "1050"),
    "render-version-zero": args("render {m} --render-version 0", "--render-version"),
    "render-workers-zero": args("render {m} --workers 0", "--workers"),
    "render-force-unknown": args("render {m} --force paint", "--force"),
    "render-unknown-option": args("render {m} --colour red", "--colour"),
    "render-runner-unknown": args("render {m} --runner slurm", "--runner"),
    "render-root-is-a-file": render_root_is_a_file,
    "render-device-unknown": args("render {m} --device tpu", "--device tpu"),
    "train-swap-device-absent": args(f"{TRAIN_SWAP} --steps 1 --device cuda:99", "--device cuda:99"),
    "unknown-command": args("paint", "paint"),
    "train-swap-steps-zero": args(f"{TRAIN_SWAP} --steps 0", "--steps"),
    "train-swap-steps-negative": args(f"{TRAIN_SWAP} --steps -1", "--steps"),
    "train-swap-batch-zero": args(f"{TRAIN_SWAP} --steps 5 --batch 0", "--batch"),
    "train-swap-minutes-negative": args(f"{TRAIN_SWAP} --minutes -1", "--minutes"),
    "train-swap-lr-nan": args(f"{TRAIN_SWAP} --steps 5 --lr nan", "--lr"),
    "train-generator-kimg-zero": args(f"{TRAIN_GENERATOR} --kimg 0", "--kimg"),
    "train-generator-batch-zero": args(f"{TRAIN_GENERATOR} --kimg 1 --batch 0", "--batch"),
    "train-encoder-steps-zero": args(f"{TRAIN_ENCODER} --steps 0", "--steps"),
    "train-encoder-no-length": args(TRAIN_ENCODER, "--steps", "--minutes"),
    "train-encoder-batch-zero": args(f"{TRAIN_ENCODER} --steps 5 --batch 0", "--batch"),
    "train-encoder-lr-nan": args(f"{TRAIN_ENCODER} --steps 5 --lr nan", "--lr"),
    "train-encoder-seed-negative": args(f"{TRAIN_ENCODER} --steps 5 --seed -1", "--seed"),
    "train-encoder-real-every-zero": args(f"{TRAIN_ENCODER} --steps 5 --real-every 0", "--real-every"),
    "train-encoder-generator-missing": args(f"{TRAIN_ENCODER} --steps 5", "{d}/g.pt"),
    "train-recognisers-no-minutes": args(TRAIN_RECOGNISERS, "--minutes"),
    "train-recognisers-attribute-bad": args(
        f"{TRAIN_RECOGNISERS} --minutes 1 --attribute glasses", "--attribute"
    ),
    "train-recognisers-labels-from-one-folder": labels_from_one_folder,
    "train-recognisers-generator-missing": args(f"{TRAIN_RECOGNISERS} --minutes 1", "{d}/g.pt"),
    "project-out-is-a-file": out_file_for("project {d}/crops --generator {d}/g.pt"),
    "edit-out-is-a-file": out_file_for("edit {d}/w.npy --mapper {d}/m --generator {d}/g.pt --set yaw=5"),
    "train-generator-out-is-a-file": out_file_for("train generator --faces {d}/crops --kimg 1"),
    "train-swap-out-is-a-file": out_file_for("train swap --a {d}/crops --b {d}/crops --steps 1"),
    "edit-image-unknown-attribute": edit_an_image_by_an_unknown_attribute,
    "extract-image-without-a-face": an_image_without_a_face("extract {d}/wall.png --out {d}/crops"),
    "project-image-without-a-face": an_image_without_a_face(
        "project {d}/wall.png --generator {d}/g.pt --steps 2 --out {d}/p"
    ),
    "edit-image-without-a-face": an_image_without_a_face(
        "edit {d}/wall.png --mapper {d}/m --generator {d}/g.pt --set yaw=5 --steps 2 --out {d}/e"
    ),
    "project-steps-zero": args(f"{PROJECT} --steps 0", "--steps"),
    "project-batch-zero": args(f"{PROJECT} --batch 0", "--batch"),
    "project-mse-negative": args(f"{PROJECT} --mse -1", "--mse"),
    "direction-out-is-a-folder": args(
        f"{DIRECTION.replace('{d}/d.npz', '{d}/crops')}", "--out", "a folder is there"
    ),
    "direction-one-folder-both-sides": args(
        "direction learn --pos {d}/crops --neg {d}/crops/ --generator g --out {d}/d.npz", "--pos and --neg"
    ),
    "direction-max-faces-zero": args(f"{DIRECTION} --max-faces 0", "--max-faces"),
    "direction-steps-zero": args(f"{DIRECTION} --steps 0", "--steps"),
    "status-root-is-a-file": status_root_is_a_file,
    "batch-folder-missing": args("batch {d}/gone", "{d}/gone"),
    "overnight-folder-missing": args("overnight {d}/gone", "{d}/gone"),  # before Prefect's server starts
    "status-manifest-missing": args("status {d}/gone.yaml", "{d}/gone.yaml", "no such manifest"),
    "serve-cron-bad": args("serve {d} --cron '99 99 * * *'", "--cron"),
}

CASES: dict[str, Build] = {
    **MANIFEST_CASES,
    **FILE_CASES,
    "validate-folder-one-bad": folder_with_one_bad,
    "validate-files-one-bad": files_with_one_bad,
    "validate-empty-folder": empty_folder,
    **ARG_CASES,
}


def test_the_table_is_large():
    assert len(CASES) >= 40, len(CASES)


@pytest.mark.parametrize("build", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_line_and_status_2(build, tmp_path, clip, capfd, monkeypatch):
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.chdir(d)  # a default output root (render/, models/) would land here, and be seen
    case = build(d, clip)
    before = files_under(tmp_path)
    code, out, err = run_cli(case.argv, capfd)
    assert "Traceback" not in out + err, err
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].strip(), (code, err)
    for name in case.names:
        assert name in lines[0], (name, lines[0])
    for text in case.stdout:
        assert text in out, (text, out)
    assert files_under(tmp_path) == before, "bad input wrote files"


# ----------------------------------------------------------------------------------------------------
# Real processes: the exit status and stderr a shell sees.


@pytest.mark.parametrize(
    "argv, name",
    [
        (["validate", "bad.yaml"], "bad.yaml:1 "),
        (["extract", "CLIP", "--out", "out", "--every", "0"], "--every"),
        (["render", "good.yaml", "--colour", "red"], "--colour"),
        (["render", "good.yaml", "--device", "tpu"], "--device tpu"),
    ],
    ids=["manifest", "int-argument", "argparse", "device"],
)
def test_a_process_exits_2_with_one_line(tmp_path, clip, argv, name):
    (tmp_path / "bad.yaml").write_bytes(b"shot: caf\xe9\n")
    write_manifest(tmp_path, GOOD_MOVIE.replace("{clip}", str(clip)), "good.yaml")
    before = files_under(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    vfx = Path(sys.executable).with_name("vfx")
    cmd = [str(vfx)] if vfx.is_file() and argv[0] == "validate" else [sys.executable, "-m", "pipeline"]
    argv = [str(clip) if a == "CLIP" else a for a in argv]
    p = subprocess.run(cmd + argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and name in lines[0], p.stderr
    assert files_under(tmp_path) == before


# ----------------------------------------------------------------------------------------------------
# vfx status only reads: a bad manifest is one row among the others, a read-only root is fine.


def test_status_reports_the_other_manifests_beside_a_bad_one(tmp_path, clip, capfd):
    shots = tmp_path / "shots"
    shots.mkdir()
    write_manifest(shots, GOOD_MOVIE.replace("{clip}", str(clip)), "a.yaml")
    (shots / "b.yaml").write_bytes(b"shot: b\xff\n")
    code, out, err = run_cli(["status", str(shots), "--root", str(tmp_path / "render")], capfd)
    assert code == 0 and "Traceback" not in out + err, err
    rows = out.splitlines()
    assert len(rows) == 2
    assert "a.yaml" in rows[0] and "never rendered" in rows[0]
    assert "b.yaml" in rows[1] and "invalid" in rows[1] and "UTF-8" in rows[1]
    assert not (tmp_path / "render").exists()


def test_status_on_a_read_only_root(clip):
    """A render root the user may read but not write (another artist's, a mounted archive): status only
    reads, so it reports. Root ignores permissions, so as root the command runs as nobody."""
    unprivileged: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: a read-only folder cannot be made")
        unprivileged = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        if subprocess.run([*unprivileged, sys.executable, "-c", "pass"], capture_output=True).returncode:
            pytest.skip("as root, and nobody cannot run this Python: no read-only folder can be made")
    d = Path(tempfile.mkdtemp(prefix="vfx-ro-"))  # not under pytest's private tmp folder: nobody reads it
    try:
        d.chmod(0o755)
        shutil.copy(clip, d / "c.mp4")
        write_manifest(d, "shot: a\nplate:\n  movie: c.mp4\n", "a.yaml")
        v = d / "render" / "a" / "v001"
        v.mkdir(parents=True)
        (v / "render.json").write_text(json.dumps({"status": "running"}))
        (v / ".lock").write_text("pid 1 on elsewhere")
        for p in (v / "render.json", v / ".lock", v, v.parent, v.parent.parent):
            p.chmod(0o444 if p.is_file() else 0o555)
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
        p = subprocess.run(
            [*unprivileged, sys.executable, "-m", "pipeline", "status", "a.yaml", "--root", "render"],
            cwd=d,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        assert "v001" in p.stdout and "interrupted" in p.stdout, p.stdout
        assert sorted(x.name for x in v.iterdir()) == [".lock", "render.json"]
    finally:
        for p in d.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(d)


# ----------------------------------------------------------------------------------------------------
# A corrupt plate: the error names the frame by the shot's number (what the artist sees), not by its
# position in the movie file.


def corrupt_copy(clip: Path, dest: Path) -> Path:
    data = bytearray(clip.read_bytes())
    mdat = data.find(b"mdat")
    start = mdat + (len(data) - mdat) // 2
    data[start : start + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    dest.write_bytes(bytes(data))
    return dest


def test_a_decode_error_names_the_shots_frame_number(tmp_path, clip):
    bad = corrupt_copy(clip, tmp_path / "corrupt.mp4")
    m = write_manifest(tmp_path, f"shot: a\nplate:\n  movie: {bad}\n  first_frame: 5001\n")
    shot = load_shot(m)
    with pytest.raises(MediaError, match=r"corrupt\.mp4: frame \d+: (decode error|corrupt packet)") as e:
        list(shot.read_frames(shot.first, shot.last))
    frame = int(str(e.value).split("frame ")[1].split(":")[0])
    assert 5006 < frame < 5050, str(e.value)  # the movie's frames 5-49 are the shot's 5006-5050


# The one case here that needs a Prefect flow: the damage is found only when a chunk decodes it. It runs
# as a real process (on the session's Prefect server), so that Prefect's own log lines are seen as a
# user sees them: on stdout, without the traceback of the failed task.
@pytest.mark.slow
def test_a_render_of_a_corrupt_plate_names_the_shots_frame(tmp_path, clip, prefect_server):
    bad = corrupt_copy(clip, tmp_path / "corrupt.mp4")
    m = write_manifest(
        tmp_path, f"shot: bad\nplate:\n  movie: {bad}\noutput: {{sequence: png8, chunk_size: 10}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": prefect_server}
    p = subprocess.run(
        [sys.executable, "-m", "pipeline", "render", str(m), "--root", str(tmp_path / "r")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and lines, p.stderr
    assert lines[-1].startswith(f"{bad}: frame 10"), lines[-1]  # the shot's numbers start at 1001
    frame = int(lines[-1].split("frame ")[1].split(":")[0])
    assert 1006 < frame <= 1050, lines[-1]
    v = tmp_path / "r" / "bad" / "v001"
    assert json.loads((v / "render.json").read_text())["status"] == "failed"
    assert not list(v.glob("*.mp4")) and not (v / "report.json").exists()  # no finished movie or report
    assert len(lines) == 1 and "Traceback" not in p.stdout + p.stderr, p.stdout + p.stderr


def fake_ffmpeg(folder: Path, says: str) -> Path:
    """A program in ffmpeg's place that prints `says` and exits 0, writing nothing."""
    exe = folder / "fake-ffmpeg"
    exe.write_text(f"#!/bin/sh\necho '{says}'\nexit 0\n")
    exe.chmod(0o755)
    return exe


def test_a_wrong_vfx_ffmpeg_is_refused_before_the_render(tmp_path, clip, capfd, monkeypatch):
    """It made every movie of a render fail with a traceback, after all the frames were rendered."""
    from pipeline.media.encode import ffmpeg_executable

    m = write_manifest(
        tmp_path, GOOD_MOVIE.replace("{clip}", str(clip)) + "output: {movies: [h264_review]}\n"
    )
    nothing = tmp_path / "nowhere" / "ffmpeg"
    for value, problem in (
        (str(nothing), "not an executable file"),
        (str(fake_ffmpeg(tmp_path, "hello")), "an ffmpeg that does not say so (-version)"),
    ):
        monkeypatch.setenv("VFX_FFMPEG", value)
        ffmpeg_executable.cache_clear()
        before = files_under(tmp_path)
        try:
            code, out, err = run_cli(["render", str(m), "--root", str(tmp_path / "render")], capfd)
        finally:
            ffmpeg_executable.cache_clear()
        assert code == 2 and "Traceback" not in out + err
        assert err.splitlines() == [
            f"{m}:4 output.movies: VFX_FFMPEG={value}: {problem}; point it at an ffmpeg, or unset it"
        ]
        assert files_under(tmp_path) == before


def test_an_ffmpeg_that_writes_no_movie_is_an_error_naming_the_movie(tmp_path, monkeypatch):
    from fractions import Fraction

    from pipeline.errors import MediaError
    from pipeline.media.encode import encode_movie, ffmpeg_executable
    from pipeline.media.sequences import write_frame

    for n in (1, 2):
        write_frame(tmp_path / f"f.{n:04d}.png", np.zeros((64, 64, 3), np.uint8), "png8", {})
    monkeypatch.setenv("VFX_FFMPEG", str(fake_ffmpeg(tmp_path, "ffmpeg version 0 (a stand-in)")))
    ffmpeg_executable.cache_clear()
    out = tmp_path / "m.mp4"
    try:
        with pytest.raises(MediaError) as e:
            encode_movie(tmp_path / "f.%04d.png", 1, 2, Fraction(24), out, "h264_review", {})
    finally:
        ffmpeg_executable.cache_clear()
    assert (
        str(e.value)
        == f"{out}: {tmp_path / 'fake-ffmpeg'} ended without an error and without writing the movie"
    )
    assert not out.exists() and not list(tmp_path.glob(".m*"))
