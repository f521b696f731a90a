"""Training a Domain Transfer Network (dtn.py) from unpaired folders of aligned crops: source faces (the
people of the shots) and target images (the domain, such as cartoon faces of other people).

Each step takes a batch of source faces x and of target images t (flipped left to right at random), draws
g(f(x)) and g(f(t)), and takes one Adam step of the three-way discriminator on L_D and one of g on
L_GANG + const * L_CONST + tid * L_TID + tv * L_TV (the weights are settings: with gan 0 and const 0 it
is the plain autoencoder baseline, g trained to redraw target images from f alone). D judges 8 x 8 patches
by default (`d_patch`; 0 is the paper's whole-image D): see dtn.ThreeWayDiscriminator for why.

f reads faces on dlib's 150 px chip cut by one fixed affine: the mean landmarks dlib finds on up to 64 of
the source crops (all crops are aligned the same way), fitted as dlib fits its chips. A fifth of the source
faces (every fifth file, sorted) is held out from training: the preview draws them, and measures of how
well the domain was learnt use them.

A model folder holds `stylizer.pt` (g's moving average, `update_average`, its config, the chip affine and
the settings: what stylising needs), `training.pt` (g, its average, D, both optimisers, the random states
and the history, for an exact `--resume`), `preview.png` (held-out source faces over their drawings,
target images over theirs) and `loss.png`. Every file is replaced whole; checkpoints every few minutes
and on Ctrl-C.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.curves import labelled, loss_curve, write_png
from pipeline.devices import resolve_device
from pipeline.errors import PipelineError
from pipeline.faces.draw import grid
from pipeline.files import refuse_file_at, save_torch_atomic
from pipeline.media.color import to_uint8 as image_to_uint8
from pipeline.media.decode import read_image
from pipeline.models import load_torch_file
from pipeline.stylize.dtn import (
    OFF_CHIP,
    DTNConfig,
    StyleDrawer,
    ThreeWayDiscriminator,
    colour_loss,
    const_loss,
    discriminator_loss,
    generator_gan_loss,
    tid_loss,
    tv_loss,
)

STYLIZER_FILE = "stylizer.pt"
STYLIZER_FORMAT = "vfx-stylizer"
TRAINING_NAME = "training.pt"
TRAINING_FORMAT = "vfx-stylizer-training"
VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff")
MIN_FACES = 4
HELD_OUT_EVERY = 5
# the maps of dlib's descriptor network on its 150 px chip, size: channels (the end of its third, second
# and first stage)
FEATURE_MAPS = {8: 128, 17: 64, 35: 32}


class StylizerError(PipelineError):
    pass


@dataclass(frozen=True)
class DTNSettings:
    resolution: int = 64
    batch: int = 8
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    gan_weight: float = 1.0
    const_weight: float = 10.0  # squared descriptor distance (the same person: under 0.36)
    spatial_const: float = 1.0  # the map's mean squared error, inside L_CONST
    tid_weight: float = 50.0  # mean squared pixel error in -1..1
    tv_weight: float = 30.0  # mean absolute neighbour difference in -1..1 (drawings of source faces)
    colour_weight: float = 50.0  # L_COLOUR: mean squared error of the coarse colours in -1..1 (dtn.py)
    colour_size: int = 8  # L_COLOUR compares the colours area-averaged to this many pixels a side
    d_patch: int = 8  # D's verdicts per side (0: one for the whole image, the paper's D)
    feature_map: int = 17  # the size of f's map that g draws from and L_CONST compares (FEATURE_MAPS)
    map_on_crop: bool = True  # f's map resampled onto the crop's grid (dtn.ChipFeatures; False: the chip's)
    off_chip: str = "edge"  # what the crop's cells off the chip read: the chip's edge, or zero (dtn.OFF_CHIP)
    width: int = 128  # g's first block; a CPU step of 8 faces at 64 px takes about 1 s on one thread
    use_vector: bool = False  # g also draws from f's descriptor (the paper's input; see dtn.py)
    colours: int | None = None  # g also draws from the face's colours at this many pixels a side (0: not;
    # None: g's map size, 16 for the 17 px map; dtn.py)
    ema_steps: float = 100.0  # half-life in steps of the moving average of g that is saved (0: g itself)
    seed: int = 0
    checkpoint_minutes: float = 5.0
    snapshot_minutes: float = 5.0
    preview_faces: int = 8

    def to_dict(self) -> dict:
        return {**asdict(self), "betas": list(self.betas)}

    def weights(self) -> dict[str, float]:
        return {
            "gan": self.gan_weight,
            "const": self.const_weight,
            "spatial_const": self.spatial_const,
            "tid": self.tid_weight,
            "tv": self.tv_weight,
            "colour": self.colour_weight,
        }

    def with_weights(self, weights: dict[str, float]) -> DTNSettings:
        names = {"gan": "gan_weight", "const": "const_weight", "spatial_const": "spatial_const"}
        names |= {"tid": "tid_weight", "tv": "tv_weight", "colour": "colour_weight"}
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise StylizerError(f"unknown loss weights {', '.join(unknown)}: give some of {', '.join(names)}")
        return replace(self, **{names[k]: float(v) for k, v in weights.items()})


# ---------------------------------------------------------------------------------------------------
# Faces


def list_faces(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise StylizerError(f"{folder}: folder of aligned crops not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_faces(files: list[Path], resolution: int) -> np.ndarray:
    """Crops [N, R, R, 3] uint8 RGB at the resolution (area-reduced or cubic-enlarged)."""
    out = np.empty((len(files), resolution, resolution, 3), np.uint8)
    for i, f in enumerate(files):
        image = image_to_uint8(read_image(f))
        if image.ndim != 3 or image.shape[0] != image.shape[1]:
            raise StylizerError(f"{f}: not a square aligned crop ({image.shape[1]}x{image.shape[0]})")
        if image.shape[0] != resolution:
            interp = cv2.INTER_AREA if image.shape[0] > resolution else cv2.INTER_CUBIC
            image = cv2.resize(image, (resolution, resolution), interpolation=interp)
        out[i] = image[..., :3]
    return out


def faces_from(folders: list[Path], resolution: int, what: str) -> tuple[list[Path], np.ndarray]:
    files = [f for folder in folders for f in list_faces(folder)]
    if len(files) < MIN_FACES:
        where = ", ".join(str(f) for f in folders)
        raise StylizerError(f"{where}: {len(files)} {what} crops; give at least {MIN_FACES}")
    return files, read_faces(files, resolution)


def split_held_out(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) indices: every HELD_OUT_EVERY-th face is held out."""
    idx = np.arange(n)
    held = idx % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
    return idx[~held], idx[held]


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """uint8 crops [N, R, R, 3] -> [N, 3, R, R] in -1..1."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, R, R] in -1..1 -> uint8 crops [N, R, R, 3]."""
    x = (images.detach().float().clamp(-1, 1) + 1) * 127.5
    return (x + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def chip_affine(crops: np.ndarray, analyzer=None, count: int = 64) -> np.ndarray:
    """The fixed crop -> dlib chip affine [2, 3] for crops aligned like these: dlib's chip fit of the mean
    landmarks it finds on up to `count` of them (spread over the set)."""
    from pipeline.faces.attributes import find_aligned_landmarks
    from pipeline.faces.descriptor import chip_transforms

    pick = np.unique(np.linspace(0, len(crops) - 1, min(count, len(crops))).round().astype(int))
    landmarks, found = find_aligned_landmarks(crops[pick], analyzer)
    if found.sum() < max(1, len(pick) // 4):
        raise StylizerError(
            f"dlib found faces on {int(found.sum())} of {len(pick)} source crops: too few to place the "
            "identity network's chip (are they aligned face crops?)"
        )
    return np.asarray(chip_transforms(landmarks[found].mean(axis=0)[None]), np.float64)[0]


def dlib_features(
    transform: np.ndarray,
    device: torch.device | str = "cpu",
    *,
    map_size: int,
    on_crop: bool = False,
    off_chip: str = "zero",
) -> nn.Module:
    """f: dlib's descriptor network on the chip cut by `transform` (its `map_size` map, on the crop's grid
    with `on_crop`, reading `off_chip` there, and its descriptor)."""
    from pipeline.faces.descriptor import extract_chips, load_face_descriptor
    from pipeline.stylize.dtn import ChipFeatures

    if map_size not in FEATURE_MAPS:
        sizes = ", ".join(map(str, FEATURE_MAPS))
        raise StylizerError(f"f has no {map_size} px feature map (one of {sizes})")
    network = load_face_descriptor(device=device)
    f = ChipFeatures(network, transform, extract_chips, map_size=map_size, on_crop=on_crop, off_chip=off_chip)
    return f.to(device)


def stylizer_features(rest: dict, device: torch.device | str = "cpu") -> nn.Module:
    """The f a stylizer file's g was trained with, from the rest of the file (`load_stylizer`)."""
    return dlib_features(
        rest["transform"],
        device,
        map_size=rest["feature_map"],
        on_crop=rest["map_on_crop"],
        off_chip=rest["off_chip"],
    )


# ---------------------------------------------------------------------------------------------------
# State


@dataclass
class DTNState:
    g: StyleDrawer
    g_ema: StyleDrawer  # the moving average of g's weights (g itself where the settings keep none)
    D: ThreeWayDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rng: torch.Generator
    transform: np.ndarray
    step: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)


def feature_shape(f: nn.Module, resolution: int, device: torch.device) -> tuple[int, int, int]:
    """(map channels, the size g draws from, vector size) of f: its map's size, or the power of two below
    it (g's blocks double the size to the resolution; it pools dlib's 17 px map to 16)."""
    with torch.no_grad():
        m, v = f(torch.zeros(1, 3, resolution, resolution, device=device))
    return int(m.shape[1]), 2 ** int(np.log2(m.shape[-1])), int(v.shape[1])


def new_state(f: nn.Module, transform: np.ndarray, s: DTNSettings, device: torch.device) -> DTNState:
    torch.manual_seed(s.seed)
    channels, size, dim = feature_shape(f, s.resolution, device)
    colours = size if s.colours is None else s.colours
    try:
        cfg = DTNConfig(s.resolution, channels, size, dim, s.width, s.use_vector, colours)
    except ValueError as e:  # a --colours that does not divide g's map (8 px for --feature-map 8)
        raise StylizerError(f"--colours {s.colours}: {e}") from None
    g, D = StyleDrawer(cfg).to(device), ThreeWayDiscriminator(s.resolution, patch=s.d_patch).to(device)
    return DTNState(
        g,
        copy.deepcopy(g).eval().requires_grad_(False),
        D,
        torch.optim.Adam(g.parameters(), lr=s.lr, betas=s.betas),
        torch.optim.Adam(D.parameters(), lr=s.lr, betas=s.betas),
        torch.Generator().manual_seed(s.seed),
        np.asarray(transform, np.float64),
    )


@dataclass
class FaceSet:
    """Training faces and f's reading of each, as they are and flipped left to right: f is frozen, so it
    reads each face once, not at every step (two thirds of a step's cost)."""

    images: torch.Tensor  # [N, 3, R, R] in -1..1
    maps: torch.Tensor  # [2, N, C, S, S]: as they are, flipped
    vectors: torch.Tensor  # [2, N, D]


def face_set(images: torch.Tensor, f: nn.Module, device: torch.device, batch: int = 32) -> FaceSet:
    maps, vectors = [], []
    with torch.no_grad():
        for view in (images, images.flip(-1)):
            read = [f(view[i : i + batch].to(device)) for i in range(0, len(view), batch)]
            maps.append(torch.cat([m for m, _ in read]).cpu())
            vectors.append(torch.cat([v for _, v in read]).cpu())
    return FaceSet(images, torch.stack(maps), torch.stack(vectors))


def batch_of(
    faces: FaceSet, n: int, rng: torch.Generator
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """n faces drawn at random (with replacement), half of them flipped left to right, and f's reading."""
    pick = torch.randint(len(faces.images), (n,), generator=rng)
    flip = (torch.rand(n, generator=rng) < 0.5).long()
    images = faces.images[pick].clone()
    images[flip.bool()] = images[flip.bool()].flip(-1)
    return images, (faces.maps[flip, pick], faces.vectors[flip, pick])


def train_step(state: DTNState, f: nn.Module, source: FaceSet, target: FaceSet, s: DTNSettings) -> dict:
    """One step of D, then one of g. Returns the losses (floats) and the step."""
    device = next(state.g.parameters()).device
    x, fx = batch_of(source, s.batch, state.rng)  # g draws from f's reading (and the colours)
    t, ft = batch_of(target, s.batch, state.rng)
    x, t = x.to(device), t.to(device)
    fx = (fx[0].to(device), fx[1].to(device))
    ft = (ft[0].to(device), ft[1].to(device))
    state.g.train()
    gx, gt = state.g(*fx, x), state.g(*ft, t)
    record: dict = {"step": state.step + 1}
    if s.gan_weight:
        loss_d = discriminator_loss(state.D, gx, gt, t)
        state.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        state.opt_d.step()
        record["d"] = float(loss_d.detach())
    terms = {"tid": tid_loss(gt, t), "tv": tv_loss(gx)}
    if s.gan_weight:
        state.D.requires_grad_(False)
        terms["gan"] = generator_gan_loss(state.D, gx, gt)
    if s.const_weight:
        terms["const"] = const_loss(fx, f(gx), s.spatial_const)
    if s.colour_weight:
        terms["colour"] = colour_loss(gx, x, s.colour_size)
    weights = {"gan": s.gan_weight, "const": s.const_weight, "tid": s.tid_weight, "tv": s.tv_weight}
    weights["colour"] = s.colour_weight
    loss_g = sum(weights[k] * v for k, v in terms.items())
    state.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    state.opt_g.step()
    state.D.requires_grad_(True)
    update_average(state.g_ema, state.g, s.ema_steps, state.step)
    state.step += 1
    record |= {k: float(v.detach()) for k, v in terms.items()}
    record["g"] = float(loss_g.detach())
    state.history.append(record)
    return record


def update_average(g_ema: nn.Module, g: nn.Module, half_life: float, step: int) -> None:
    """g_ema moves toward g by a share that halves its distance every `half_life` steps (ramped up over
    the first steps, so the early random weights wash out), after Karras et al. 2018 and Yazici et al.
    2019: the average of a GAN's generator draws with less of its step-to-step oscillation. `half_life`
    0: g_ema is g."""
    beta = 0.5 ** (1 / half_life) if half_life > 0 else 0.0
    beta = min(beta, (1 + step) / (10 + step))
    with torch.no_grad():
        for a, b in zip(g_ema.parameters(), g.parameters(), strict=True):
            a.lerp_(b, 1 - beta)


def describe(record: dict) -> str:
    order = ("d", "gan", "const", "tid", "tv", "colour")
    return ", ".join(f"{k} {record[k]:.4f}" for k in order if k in record)


# ---------------------------------------------------------------------------------------------------
# Files


def save_stylizer(
    path: Path, g: StyleDrawer, transform: np.ndarray, settings: DTNSettings, meta: dict
) -> None:
    """Write what stylising needs (atomically): g, its config, f's chip affine [2, 3], the settings."""
    data = {
        "format": STYLIZER_FORMAT,
        "version": VERSION,
        "config": g.cfg.to_dict(),
        "state": {k: v.detach().cpu() for k, v in g.state_dict().items()},
        "transform": torch.from_numpy(np.asarray(transform, np.float64)),
        "settings": settings.to_dict(),
        "meta": meta,
    }
    save_torch_atomic(path, data)


def stylizer_file(path: Path) -> Path:
    return path / STYLIZER_FILE if path.is_dir() else path


def load_stylizer(path: str | Path, device: torch.device | str | None = None) -> tuple[StyleDrawer, dict]:
    """g (frozen, in eval mode) and the rest of the file: "transform" (the chip affine, numpy),
    "feature_map" (the size of dlib's map g draws from), "map_on_crop" (that map on the crop's grid),
    "settings", "meta"; `stylizer_features(rest)` is its f."""
    path = stylizer_file(Path(path))
    if not path.is_file():
        raise StylizerError(f"{path}: stylizer file not found (vfx train stylize makes one)")
    data = load_torch_file(path, "stylizer file", StylizerError)
    if not isinstance(data, dict) or data.get("format") != STYLIZER_FORMAT:
        raise StylizerError(f"{path}: not a stylizer file (vfx train stylize makes them)")
    if data.get("version") != VERSION:
        raise StylizerError(f"{path}: {STYLIZER_FORMAT} version {data.get('version')} is not {VERSION}")
    try:
        g = StyleDrawer(DTNConfig.from_dict(dict(data["config"])))
        g.load_state_dict(data["state"])
        transform = data["transform"].numpy().astype(np.float64).reshape(2, 3)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise StylizerError(f"{path}: a damaged stylizer file ({type(e).__name__})") from None
    settings, meta = dict(data.get("settings") or {}), dict(data.get("meta") or {})
    feature_map = int(settings.get("feature_map", 8))  # files from before the setting drew from the 8 px map
    if meta.get("features", "dlib_descriptor") == "dlib_descriptor":
        channels = FEATURE_MAPS.get(feature_map)
        if channels != g.cfg.feature_channels:
            raise StylizerError(
                f"{path}: a damaged stylizer file (its settings name f's {feature_map} px map, with "
                f"{channels} channels; its g draws from {g.cfg.feature_channels})"
            )
    g = g.to(resolve_device(device)).eval().requires_grad_(False)
    on_crop = bool(settings.get("map_on_crop", False))
    off_chip = str(settings.get("off_chip", "zero"))  # files from before the setting read zero
    if off_chip not in OFF_CHIP:
        raise StylizerError(f"{path}: a damaged stylizer file (off_chip {off_chip!r})")
    return g, {
        "transform": transform,
        "feature_map": feature_map,
        "map_on_crop": on_crop,
        "off_chip": off_chip,
        "settings": settings,
        "meta": meta,
    }


def save_training(path: Path, state: DTNState, settings: DTNSettings) -> None:
    data = {
        "format": TRAINING_FORMAT,
        "version": VERSION,
        "settings": settings.to_dict(),
        "config": state.g.cfg.to_dict(),
        "g": {k: v.detach().cpu() for k, v in state.g.state_dict().items()},
        "g_ema": {k: v.detach().cpu() for k, v in state.g_ema.state_dict().items()},
        "D": {k: v.detach().cpu() for k, v in state.D.state_dict().items()},
        "opt_g": state.opt_g.state_dict(),
        "opt_d": state.opt_d.state_dict(),
        "rng": state.rng.get_state(),
        "torch_rng": torch.get_rng_state(),
        "transform": torch.from_numpy(state.transform),
        "step": state.step,
        "seconds": state.seconds,
        "history": state.history,
    }
    save_torch_atomic(path, data)


def read_training(path: Path) -> dict:
    if not path.is_file():
        raise StylizerError(f"{path}: no stylizer training state to resume (start without --resume)")
    data = load_torch_file(path, "training state", StylizerError)
    if not isinstance(data, dict) or data.get("format") != TRAINING_FORMAT:
        raise StylizerError(f"{path}: not a stylizer training state (vfx train stylize writes them)")
    if data.get("version") != VERSION:
        raise StylizerError(f"{path}: stylizer training state version {data.get('version')} is not {VERSION}")
    data["path"] = str(path)
    return data


def network_settings(cfg: DTNConfig) -> dict:
    """The settings that shape g, as a saved g has them (a resume keeps them whatever its flags say)."""
    return {
        "resolution": cfg.resolution,
        "width": cfg.width,
        "use_vector": cfg.use_vector,
        "colours": cfg.colours,
    }


def load_training(data: dict, f: nn.Module, settings: DTNSettings, device: torch.device) -> DTNState:
    """The state of `read_training`'s data, continued with this run's learning rate."""
    path = data["path"]
    try:
        cfg = DTNConfig.from_dict(dict(data["config"]))
        state = new_state(
            f,
            data["transform"].numpy(),
            replace(settings, **network_settings(cfg)),
            device,
        )
        state.g.load_state_dict(data["g"])
        state.g_ema.load_state_dict(data.get("g_ema", data["g"]))
        state.D.load_state_dict(data["D"])
        state.opt_g.load_state_dict(data["opt_g"])
        state.opt_d.load_state_dict(data["opt_d"])
        state.rng.set_state(data["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise StylizerError(f"{path}: a damaged stylizer training state ({type(e).__name__})") from None
    for opt in (state.opt_g, state.opt_d):  # --lr may change on resume
        for group in opt.param_groups:
            group["lr"] = settings.lr
    torch.set_rng_state(data["torch_rng"])
    state.step, state.seconds, state.history = (
        int(data["step"]),
        float(data["seconds"]),
        list(data["history"]),
    )
    return state


def preview(
    state: DTNState, f: nn.Module, source: torch.Tensor, target: torch.Tensor, caption: str = ""
) -> np.ndarray:
    """Rows: held-out source faces, their drawings, target images, their drawings."""
    device = next(state.g.parameters()).device
    with torch.no_grad():
        s, t = source.to(device), target.to(device)
        rows = [s, state.g_ema(*f(s), s), t, state.g_ema(*f(t), t)]
    tiles = list(to_uint8(torch.cat(rows)))
    sheet = grid(tiles, len(source))
    return labelled(sheet, rows=["source", "stylised", "target", "redrawn"], caption=caption)


def write_outputs(out: Path, state: DTNState, settings: DTNSettings, meta: dict) -> None:
    save_training(out / TRAINING_NAME, state, settings)
    last = state.history[-1] if state.history else {}
    info = {**meta, "steps": state.step, "seconds": round(state.seconds, 1), "weights": settings.weights()}
    info["losses"] = {k: v for k, v in last.items() if k != "step"}
    save_stylizer(out / STYLIZER_FILE, state.g_ema, state.transform, settings, info)


def write_figures(out: Path, state: DTNState, f: nn.Module, shown: tuple[torch.Tensor, torch.Tensor]) -> None:
    write_png(out / "preview.png", preview(state, f, *shown, caption=f"step {state.step}"))
    series = {"D": "d", "g (weighted sum)": "g", "const": "const", "tid": "tid"}  # four colours
    present = {label: key for label, key in series.items() if any(key in h for h in state.history)}
    write_png(out / "loss.png", loss_curve(state.history, present))


# ---------------------------------------------------------------------------------------------------
# The training run


def check_inputs(sources: list[Path], targets: list[Path], out: Path, resume: bool) -> None:
    """What can be checked before anything big loads: the folders, and whether --out may be written."""
    for folder in [*sources, *targets]:
        list_faces(Path(folder))
    refuse_file_at(out, "the stylizer", StylizerError)
    if not resume and ((out / TRAINING_NAME).exists() or (out / STYLIZER_FILE).exists()):
        raise StylizerError(f"{out}: holds a stylizer already; use --resume to continue it or another --out")
    if resume and not (out / TRAINING_NAME).is_file():
        raise StylizerError(
            f"{out / TRAINING_NAME}: no stylizer training state to resume (start without --resume)"
        )


def train_stylizer(
    sources: list[Path],
    targets: list[Path],
    out: Path,
    settings: DTNSettings,
    steps: int | None = None,
    minutes: float | None = None,
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
    device: torch.device | str | None = None,
    features: nn.Module | None = None,
    keep_weights: bool = False,
) -> DTNState:
    """Train (or with `resume` continue) a stylizer in `out` from source and target folders of aligned
    crops, until `steps` in all or for `minutes` of this run. `features`: f, by default dlib's descriptor
    network on the chip placed from the source crops (a test gives a tiny one). `keep_weights`: a resume
    keeps the loss weights it was trained with (else `settings`' apply)."""
    if steps is None and minutes is None:
        raise StylizerError("training needs --steps or --minutes")
    out = Path(out)
    check_inputs(sources, targets, out, resume)
    device = resolve_device(device)
    saved = read_training(out / TRAINING_NAME) if resume else None
    if saved is not None:  # the network's size is the file's, whatever this run's settings say
        cfg = DTNConfig.from_dict(dict(saved["config"]))
        settings = replace(settings, **network_settings(cfg))
        before = dict(saved.get("settings") or {})
        settings = replace(
            settings,
            d_patch=int(before.get("d_patch", 0)),
            feature_map=int(before.get("feature_map", 8)),
            map_on_crop=bool(before.get("map_on_crop", False)),
            off_chip=str(before.get("off_chip", "zero")),
        )
        if keep_weights:  # no --weights on a resume: the weights it was trained with
            names = ("gan_weight", "const_weight", "spatial_const", "tid_weight", "tv_weight")
            settings = replace(settings, **{k: float(before[k]) for k in names if k in before})
            settings = replace(settings, colour_weight=float(before.get("colour_weight", 0.0)))  # older: 0
        settings = replace(settings, colour_size=int(before.get("colour_size", settings.colour_size)))
    src_files, src = faces_from(sources, settings.resolution, "source")
    _, tgt = faces_from(targets, settings.resolution, "target")
    train_idx, held_idx = split_held_out(len(src))
    if saved is not None:
        transform = saved["transform"].numpy()
    else:
        transform = chip_affine(src) if features is None else np.eye(2, 3)
    f = features or dlib_features(
        transform,
        device,
        map_size=settings.feature_map,
        on_crop=settings.map_on_crop,
        off_chip=settings.off_chip,
    )
    f = f.to(device).eval().requires_grad_(False)
    source, target = face_set(to_tensor(src[train_idx]), f, device), face_set(to_tensor(tgt), f, device)
    state = (
        load_training(saved, f, settings, device)
        if saved is not None
        else new_state(f, transform, settings, device)
    )
    out.mkdir(parents=True, exist_ok=True)  # after g is made: a --colours g cannot use leaves no folder
    settings = replace(settings, **network_settings(state.g.cfg))  # the colours g draws from, resolved
    shown_idx = held_idx[: settings.preview_faces] if len(held_idx) else train_idx[: settings.preview_faces]
    shown = (to_tensor(src[shown_idx]), to_tensor(tgt[: len(shown_idx)]))
    meta = {
        "sources": [str(p) for p in sources],
        "targets": [str(p) for p in targets],
        "held_out": [src_files[i].name for i in held_idx],
        "features": "dlib_descriptor" if features is None else type(features).__name__,
    }
    started = last_save = last_snap = time.monotonic()
    run_start = state.seconds
    try:
        while (steps is None or state.step < steps) and (
            minutes is None or time.monotonic() - started < minutes * 60
        ):
            record = train_step(state, f, source, target, settings)
            now = time.monotonic()
            state.seconds = run_start + now - started
            record["seconds"] = round(state.seconds, 2)
            if on_step:
                on_step(record)
            if now - last_save > settings.checkpoint_minutes * 60:
                write_outputs(out, state, settings, meta)
                last_save = now
            if now - last_snap > settings.snapshot_minutes * 60:
                write_figures(out, state, f, shown)
                last_snap = time.monotonic()
    finally:  # also on Ctrl-C: nothing since the last checkpoint is lost
        write_outputs(out, state, settings, meta)
        write_figures(out, state, f, shown)
    return state
