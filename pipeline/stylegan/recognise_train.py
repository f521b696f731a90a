"""Training attribute recognisers (recognise.py) for one generator, and judging them on held-out faces.

The measures (`faces.attributes.GEOMETRIC_ATTRIBUTES`) are learnt from the generator's own faces: W+
drawn as the encoder's training draws them (truncation from a range, half of them style-mixed, since the
mapper's edits are W+), drawn with its fixed noise, and measured with dlib's 68 landmarks
(`find_aligned_landmarks`); a sample where dlib finds no face is dropped and counted. The network
regresses them with a Huber loss on values centred by their median and scaled by their interquartile
spread, so that degrees and ratios weigh alike and a rare wild pose fit does not dominate. A label
(glasses) comes from two folders of aligned crops, with and without, resized to the generator's size,
learnt with a logistic loss.

About half of each batch is flipped left to right, with the measures a flipped face has
(`attributes.mirrored`): twice the faces from one set of samples, and a network that cannot learn that
yaw has a preferred sign from a skewed sample.

A fifth of each set is held out. At the end the recognisers are judged on it: per measure R^2 and the
mean absolute error against predicting the training mean; per label the accuracy against always saying
the training set's majority class, with a one-sided binomial test. An attribute no better than chance
(R^2 under `min_r2`, or an accuracy not significantly above the majority class's) is refused: a
PipelineError naming it and its figure, raised before the recognisers' file is written, so that no mapper
trains against a judge that cannot see.

A model folder holds `recognisers.pt` (what the mapper loads), `samples.pt` (the faces drawn, their
landmarks and measures, the label crops and the split: drawn once, so `--resume` trains on the same
faces), `training.pt` (network, optimiser, random states, history, for an exact resume), `preview.png`
(held-out faces with their landmarks, measured and predicted values) and `loss.png` (training losses
above, held-out ones below). Every file is replaced whole; checkpoints every few minutes and on Ctrl-C.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import binomtest

from pipeline.curves import labelled, loss_curve, write_png
from pipeline.devices import resolve_device
from pipeline.errors import PipelineError
from pipeline.faces.attributes import (
    GEOMETRIC_ATTRIBUTES,
    UNITS,
    find_aligned_landmarks,
    measure_attributes,
    mirrored,
)
from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.extract import IMAGE_SUFFIXES, aligned_face
from pipeline.files import refuse_file_at, save_torch_atomic
from pipeline.models import ENCODER_FILE, GENERATOR_FILE, generator_file, load_torch_file, sha256_file
from pipeline.stylegan.checkpoints import CheckpointError, load_generator
from pipeline.stylegan.encoder import MAX_INPUT
from pipeline.stylegan.encoder_train import EncoderSettings, sample_latents
from pipeline.stylegan.generator import Generator, image_grid, to_uint8
from pipeline.stylegan.recognise import (
    RECOGNISERS_FILE,
    AttributeRecogniser,
    RecogniserConfig,
    save_recognisers,
)
from pipeline.swap.data import MIN_FACES, TrainingDataError

SAMPLES_NAME = "samples.pt"
SAMPLES_FORMAT = "vfx-recogniser-samples"
TRAINING_NAME = "training.pt"
TRAINING_FORMAT = "vfx-recogniser-training"
VERSION = 1
LABEL_NAME = r"[a-z][a-z0-9_]*"


@dataclass
class RecogniserSettings:
    measures: tuple[str, ...] = GEOMETRIC_ATTRIBUTES  # empty: labels only, no faces drawn
    batch: int = 32
    lr: float = 3e-4  # AdamW
    weight_decay: float = 1e-4  # AdamW's decoupled decay: the data set is fixed, the network can memorise it
    psi: tuple[float, float] = (0.5, 1.0)  # truncation drawn per face (encoder_train.sample_latents)
    mixing: float = 0.5  # share of W+ faces (two z's switched at a layer): the mapper's edits are W+
    held_out: float = 0.2
    min_r2: float = 0.2  # a measure below this R^2 on held-out faces is refused
    significance: float = 0.05  # a label whose accuracy is not above the majority class at this is refused
    min_found: float = 0.5  # share of samples dlib must find a face on
    min_measured: int = 50  # and at least this many faces
    render_batch: int = 32
    eval_every: int = 100  # steps between held-out losses in the history
    seed: int = 0
    checkpoint_minutes: float = 5.0
    snapshot_minutes: float = 5.0
    preview_faces: int = 8
    channels: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "measures": list(self.measures),
            "psi": list(self.psi),
            "channels": list(self.channels),
        }


@dataclass
class RecogniserState:
    model: AttributeRecogniser
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    generator_sha256: str
    step: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# The faces they learn from


@dataclass
class LabelSet:
    """One label attribute's crops [N, 3, S, S] (uint8) and targets (1 with, 0 without)."""

    images: torch.Tensor
    targets: torch.Tensor  # [N] float
    held_out: torch.Tensor  # [N] bool
    folders: tuple[str, str]  # with, without


@dataclass
class RecogniserData:
    """What the recognisers learn from: the generator's faces with their measures, and label crops."""

    measures: tuple[str, ...]
    faces: torch.Tensor  # [N, 3, S, S] uint8: the samples dlib found a face on
    values: torch.Tensor  # [N, M] float64 measures
    landmarks: torch.Tensor  # [N, 68, 2] float32 in the generator's pixels
    held_out: torch.Tensor  # [N] bool
    rendered: int  # samples drawn, found or not
    labels: dict[str, LabelSet] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return self.measures + tuple(self.labels)

    @property
    def kinds(self) -> tuple[str, ...]:
        return ("measure",) * len(self.measures) + ("label",) * len(self.labels)

    def to_dict(self) -> dict:
        return {
            "measures": list(self.measures),
            "faces": self.faces,
            "values": self.values,
            "landmarks": self.landmarks,
            "held_out": self.held_out,
            "rendered": self.rendered,
            "labels": {
                name: {
                    "images": s.images,
                    "targets": s.targets,
                    "held_out": s.held_out,
                    "folders": list(s.folders),
                }
                for name, s in self.labels.items()
            },
        }

    @classmethod
    def from_dict(cls, d: dict) -> RecogniserData:
        labels = {
            name: LabelSet(s["images"], s["targets"], s["held_out"], tuple(s["folders"]))
            for name, s in d["labels"].items()
        }
        return cls(
            tuple(d["measures"]),
            d["faces"],
            d["values"],
            d["landmarks"],
            d["held_out"],
            int(d["rendered"]),
            labels,
        )


def held_out_mask(n: int, share: float, rng: np.random.Generator) -> torch.Tensor:
    """A random `share` of n items (at least one of two or more) held out."""
    count = min(n - 1, max(1, round(share * n))) if n > 1 else 0
    mask = np.zeros(n, bool)
    mask[rng.permutation(n)[:count]] = True
    return torch.from_numpy(mask)


def image_paths(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def read_crops(folder: Path, size: int) -> torch.Tensor:
    """A folder's aligned crops at `size`, [N, 3, size, size] uint8."""
    crops = [aligned_face(p, size, True, None) for p in image_paths(folder)]
    return torch.from_numpy((np.stack(crops) * 255 + 0.5).astype(np.uint8)).permute(0, 3, 1, 2).contiguous()


def read_labels(
    labels: dict[str, tuple[Path, Path]], size: int, share: float, rng: np.random.Generator
) -> dict[str, LabelSet]:
    """Each label's crops from its two folders, a `share` of each folder held out."""
    out = {}
    for name, (with_dir, without_dir) in labels.items():
        sets = [read_crops(Path(with_dir), size), read_crops(Path(without_dir), size)]
        images = torch.cat(sets)
        targets = torch.cat([torch.ones(len(sets[0])), torch.zeros(len(sets[1]))])
        held = torch.cat([held_out_mask(len(s), share, rng) for s in sets])
        out[name] = LabelSet(images, targets, held, (str(with_dir), str(without_dir)))
    return out


def draw_measured_faces(
    G: Generator,
    count: int,
    settings: RecogniserSettings,
    analyzer: FaceAnalyzer | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` of G's faces (torch's global random stream: seed it first), as uint8 crops [N, R, R, 3],
    dlib's landmarks on them [N, 68, 2] (NaN where none) and whether dlib found a face [N].
    `on_batch(drawn, found)` after each batch."""
    analyzer = analyzer or FaceAnalyzer(detector="hog", landmarks="dlib68")
    how = EncoderSettings(psi=settings.psi, mixing=settings.mixing)
    crops, landmarks, found = [], [], []
    drawn = 0
    while drawn < count:
        n = min(settings.render_batch, count - drawn)
        with torch.no_grad():
            images = to_uint8(G.synthesis(sample_latents(G, n, how), "const"))
        lm, ok = find_aligned_landmarks(images, analyzer)
        crops.append(images)
        landmarks.append(lm)
        found.append(ok)
        drawn += n
        if on_batch:
            on_batch(drawn, int(sum(f.sum() for f in found)))
    return np.concatenate(crops), np.concatenate(landmarks), np.concatenate(found)


def make_data(
    G: Generator,
    generator: Path,
    samples: int,
    labels: dict[str, tuple[Path, Path]],
    settings: RecogniserSettings,
    on_batch: Callable[[int, int], None] | None = None,
) -> RecogniserData:
    """Draw and measure the generator's faces (unless no measures are asked for) and read the labels'
    crops; hold out a share of each. Too few faces with landmarks is an error naming the generator."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    res = G.cfg.resolution
    size = min(res, MAX_INPUT)
    measures = tuple(settings.measures)
    if measures:
        crops, landmarks, found = draw_measured_faces(G, samples, settings, on_batch=on_batch)
        needed = max(settings.min_measured, math.ceil(settings.min_found * samples))
        if found.sum() < needed:
            raise PipelineError(
                f"{generator}: dlib found a face on {found.sum()} of its {samples} samples; the measures "
                f"need at least {needed} (a generator whose faces dlib can see)"
            )
        crops, landmarks = crops[found], landmarks[found]
        all_values = measure_attributes(landmarks, (res, res))
        values = all_values[:, [GEOMETRIC_ATTRIBUTES.index(m) for m in measures]]
        faces = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
        if size < res:
            faces = F.interpolate(faces.float(), size=(size, size), mode="area").round().to(torch.uint8)
    else:
        faces, values, landmarks = (
            torch.zeros(0, 3, size, size, dtype=torch.uint8),
            np.zeros((0, 0)),
            np.zeros((0, 68, 2)),
        )
    held = held_out_mask(len(faces), settings.held_out, rng)
    return RecogniserData(
        measures,
        faces,
        torch.from_numpy(np.asarray(values, np.float64)),
        torch.from_numpy(np.asarray(landmarks, np.float32)),
        held,
        samples if measures else 0,
        read_labels(labels, size, settings.held_out, rng),
    )


def save_data(path: Path, data: RecogniserData, generator_sha256: str) -> None:
    record = {
        "format": SAMPLES_FORMAT,
        "version": VERSION,
        "generator_sha256": generator_sha256,
        **data.to_dict(),
    }
    save_torch_atomic(path, record)


def read_data(path: Path) -> tuple[RecogniserData, str]:
    """The samples file and the generator sha256 it was drawn from."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no samples to resume on (start without --resume)")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(d, dict) or d.get("format") != SAMPLES_FORMAT:
            raise CheckpointError(
                f"{path}: not a recognisers' samples file (vfx train recognisers writes it)"
            )
        return RecogniserData.from_dict(d), str(d["generator_sha256"])
    except (OSError, KeyError, TypeError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable samples file ({type(e).__name__})") from None


# ---------------------------------------------------------------------------------------------------
# Training


def new_state(
    data: RecogniserData, res: int, generator_sha256: str, settings: RecogniserSettings
) -> RecogniserState:
    """A new network for the data's attributes, its measures' centre and spread from the training part
    (median and interquartile range / 1.349, the standard deviation of a normal sample, robust to the few
    wild pose fits on faces dlib misread)."""
    torch.manual_seed(settings.seed)
    cfg = RecogniserConfig(res, data.names, data.kinds, channels=tuple(settings.channels))
    model = AttributeRecogniser(cfg)
    train = data.values[~data.held_out]
    if len(data.measures):
        q1, median, q3 = torch.quantile(train, torch.tensor([0.25, 0.5, 0.75], dtype=train.dtype), dim=0)
        m = len(data.measures)
        model.centre[:m] = median.float()
        model.spread[:m] = ((q3 - q1) / 1.349).clamp_min(1e-6).float()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    return RecogniserState(model, opt, np.random.default_rng(settings.seed), generator_sha256)


def to_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 crops to the generator's [-1, 1]."""
    return images.to(device).float() / 127.5 - 1


def mirror_table(names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """For each attribute, the column a flipped face's value comes from and its sign; None when an
    attribute's mirror is not among them (only one eye's openness), so faces cannot be flipped."""
    pairs = [mirrored(n) for n in names]
    if any(other not in names for other, _ in pairs):
        return None
    return torch.tensor([names.index(o) for o, _ in pairs]), torch.tensor([s for _, s in pairs])


def batch_losses(
    model: AttributeRecogniser,
    data: RecogniserData,
    which: dict[str, np.ndarray],
    flips: dict[str, np.ndarray] | None = None,
) -> dict[str, torch.Tensor]:
    """The mean losses of the faces `which[key]` picks (key "measures", or a label's name): a Huber loss
    on the measures in units of their spread, the binary cross-entropy of each label's logit. `flips[key]`
    marks the faces to flip left to right, with the measures a flipped face has."""
    device = model.centre.device
    flips = flips or {}
    terms = {}
    m = len(data.measures)
    sets = {"measures": (data.faces, None)} if m else {}
    sets.update({name: (s.images, s.targets) for name, s in data.labels.items()})
    for key, (faces, targets) in sets.items():
        if key not in which:
            continue
        idx = torch.from_numpy(which[key])
        images = to_float(faces[idx], device)
        values = data.values[idx].to(device).float() if targets is None else targets[idx].to(device)
        if key in flips:
            flip = torch.from_numpy(flips[key]).to(device)
            table = mirror_table(data.measures) if targets is None else None
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
            if table is not None:
                index, sign = table
                values = torch.where(flip[:, None], values[:, index] * sign.to(values), values)
        raw = model.raw(images)
        if targets is None:
            target = (values - model.centre[:m]) / model.spread[:m]
            terms[key] = F.smooth_l1_loss(raw[:, :m], target)
        else:
            column = m + list(data.labels).index(key)
            terms[key] = F.binary_cross_entropy_with_logits(raw[:, column], values)
    return terms


def train_step(state: RecogniserState, data: RecogniserData, s: RecogniserSettings) -> dict:
    """One AdamW step on a batch of measured faces and a batch of each label's crops, about half of
    them flipped left to right."""
    state.model.train()
    state.step += 1
    pools = {"measures": ~data.held_out.numpy()} if len(data.measures) else {}
    pools.update({name: ~label.held_out.numpy() for name, label in data.labels.items()})
    which = {k: state.rng.choice(np.flatnonzero(pool), s.batch) for k, pool in pools.items() if pool.any()}
    flips = {k: state.rng.random(s.batch) < 0.5 for k in which}
    terms = batch_losses(state.model, data, which, flips)
    loss = sum(terms.values())
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    state.opt.step()
    record = {"step": state.step, "loss": loss.item(), **{k: v.item() for k, v in terms.items()}}
    state.history.append(record)
    return record


def held_out_losses(model: AttributeRecogniser, data: RecogniserData, limit: int = 512) -> dict[str, float]:
    """The losses on (up to `limit` of) the held-out faces and crops, for the curve that shows whether
    the network learns the attributes or memorises its faces."""
    model.eval()
    which = {"measures": np.flatnonzero(data.held_out.numpy())[:limit]} if len(data.measures) else {}
    which.update({n: np.flatnonzero(s.held_out.numpy())[:limit] for n, s in data.labels.items()})
    with torch.no_grad():
        terms = batch_losses(model, data, {k: v for k, v in which.items() if len(v)}, None)
    return {f"held_out_{k}": v.item() for k, v in terms.items()}


def predict(model: AttributeRecogniser, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """The attributes of uint8 crops [N, 3, S, S], in their units, on the CPU."""
    model.eval()
    device = model.centre.device
    if not len(images):
        return torch.zeros(0, len(model.names))
    with torch.no_grad():
        return torch.cat([model(to_float(c, device)).cpu() for c in images.split(batch)])


# ---------------------------------------------------------------------------------------------------
# Judging the recognisers on held-out faces


def measure_figures(predicted: np.ndarray, measured: np.ndarray, train_mean: float) -> dict:
    """R^2, the mean absolute error, and the error of predicting the training mean, on held-out faces."""
    residual = ((measured - predicted) ** 2).sum()
    total = ((measured - measured.mean()) ** 2).sum()
    return {
        "r2": float(1 - residual / total) if total > 0 else 0.0,
        "mae": float(np.abs(measured - predicted).mean()),
        "mean_mae": float(np.abs(measured - train_mean).mean()),
        "n": len(measured),
    }


def label_figures(probability: np.ndarray, truth: np.ndarray, train_truth: np.ndarray) -> dict:
    """Accuracy on held-out crops against always answering the training set's majority class, with the
    one-sided binomial test of the correct answers against that class's accuracy."""
    majority = float(train_truth.mean() >= 0.5)
    correct = int(((probability >= 0.5) == (truth >= 0.5)).sum())
    n = len(truth)
    chance = float((truth == majority).mean()) if n else 1.0
    p = binomtest(correct, n, chance, alternative="greater").pvalue if n and chance < 1 else 1.0
    return {"accuracy": correct / n if n else 0.0, "majority": chance, "p_value": float(p), "n": n}


def evaluate(model: AttributeRecogniser, data: RecogniserData) -> dict[str, dict]:
    """Each attribute's held-out figures (`measure_figures` or `label_figures`)."""
    figures = {}
    held = data.held_out.numpy()
    if len(data.measures):
        predicted = predict(model, data.faces[held]).numpy()
        values = data.values.numpy()
        for j, name in enumerate(data.measures):
            figures[name] = measure_figures(predicted[:, j], values[held, j], float(values[~held, j].mean()))
    for j, (name, s) in enumerate(data.labels.items()):
        h = s.held_out.numpy()
        probability = predict(model, s.images[h]).numpy()[:, len(data.measures) + j]
        figures[name] = label_figures(probability, s.targets.numpy()[h], s.targets.numpy()[~h])
    return figures


def unit(name: str) -> str:
    return UNITS.get(name, "")


def describe_figures(name: str, f: dict) -> str:
    """One attribute's held-out figures in words."""
    if "r2" in f:
        u = f" {unit(name)}" if unit(name) else ""
        return (
            f"{name}: R2 {f['r2']:.2f}, MAE {f['mae']:.3g}{u} vs {f['mean_mae']:.3g} predicting the mean "
            f"(n {f['n']})"
        )
    return (
        f"{name}: accuracy {f['accuracy']:.2f} vs {f['majority']:.2f} for the majority class, "
        f"p {f['p_value']:.2g} (n {f['n']})"
    )


def refused(figures: dict[str, dict], s: RecogniserSettings) -> list[str]:
    """The attributes no better than chance on held-out faces, each with its figure and the bar."""
    out = []
    for name, f in figures.items():
        if "r2" in f and not f["r2"] >= s.min_r2:
            out.append(f"{name} (held-out R2 {f['r2']:.2f}, needs {s.min_r2:g})")
        elif "accuracy" in f and not (f["p_value"] < s.significance and f["accuracy"] > f["majority"]):
            out.append(
                f"{name} (held-out accuracy {f['accuracy']:.2f} vs {f['majority']:.2f} for the majority "
                f"class, p {f['p_value']:.2g}, needs p < {s.significance:g})"
            )
    return out


# ---------------------------------------------------------------------------------------------------
# Checkpoints and figures


def save_training(path: Path, state: RecogniserState, settings: RecogniserSettings, generator: Path) -> None:
    data = {
        "format": TRAINING_FORMAT,
        "version": VERSION,
        "settings": settings.to_dict(),
        "config": state.model.cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        "opt": state.opt.state_dict(),
        "step": state.step,
        "seconds": state.seconds,
        "numpy_rng": state.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": state.history,
        "generator_sha256": state.generator_sha256,
        "generator": str(generator),
    }
    save_torch_atomic(path, data)


def read_training(path: Path, mmap: bool = False) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: no recognisers' training state to resume (start without --resume)")
    data = load_torch_file(path, "training state", CheckpointError, mmap=mmap)
    if not isinstance(data, dict) or data.get("format") != TRAINING_FORMAT:
        raise CheckpointError(
            f"{path}: not a recognisers' training state (vfx train recognisers writes them)"
        )
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: training state version {data.get('version')} is not {VERSION}")
    return data


def refuse_other_generator(path: Path, recorded: str, generator: Path, actual: str) -> None:
    """Recognisers learnt on one generator's faces do not continue on another's."""
    if recorded != actual:
        raise CheckpointError(
            f"{path}: drawn from the generator with sha256 {recorded[:16]}..., not {generator} "
            f"(sha256 {actual[:16]}...); train its recognisers in another --out"
        )


def load_training(
    path: Path, data: RecogniserData, res: int, generator: Path, sha: str, settings: RecogniserSettings
) -> RecogniserState:
    saved = read_training(path)
    refuse_other_generator(path, str(saved.get("generator_sha256")), generator, sha)
    try:
        cfg = RecogniserConfig.from_dict(dict(saved["config"]))
        state = new_state(data, res, sha, replace(settings, channels=cfg.channels))
        state.model.load_state_dict(saved["model"])
        state.opt.load_state_dict(saved["opt"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: a damaged recognisers' training state ({type(e).__name__})") from None
    for group in state.opt.param_groups:
        group["lr"] = settings.lr
    state.rng.bit_generator.state = saved["numpy_rng"]
    torch.set_rng_state(saved["torch_rng"])
    state.step, state.seconds = int(saved["step"]), float(saved["seconds"])
    state.history = list(saved["history"])
    return state


TILE = 128
PANEL = 190


def value_text(kind: str, value: float) -> str:
    return f"{value:.2f}" if kind == "label" or abs(value) < 10 else f"{value:.1f}"


def tile(face: np.ndarray, landmarks: np.ndarray | None, lines: list[str]) -> np.ndarray:
    """A face enlarged to TILE px (with its landmarks) beside a panel of text lines."""
    img = cv2.resize(face, (TILE, TILE), interpolation=cv2.INTER_CUBIC)
    if landmarks is not None:
        scale = TILE / face.shape[0]
        for x, y in (landmarks + 0.5) * scale - 0.5:
            cv2.circle(img, (int(round(x)), int(round(y))), 1, (60, 220, 60), -1)
    panel = np.full((TILE, PANEL, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(panel, line, (4, 13 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([img, panel], axis=1)


def preview(model: AttributeRecogniser, data: RecogniserData, count: int, caption: str = "") -> np.ndarray:
    """Held-out faces with dlib's landmarks and each measure as measured / predicted, then held-out
    crops of each label with their truth / predicted probability."""
    tiles = []
    held = np.flatnonzero(data.held_out.numpy())[:count]
    if len(held):
        predicted = predict(model, data.faces[held]).numpy()
        for k, i in enumerate(held):
            lines = [
                f"{name} {value_text('measure', float(data.values[i, j]))} / "
                f"{value_text('measure', predicted[k, j])}"
                for j, name in enumerate(data.measures)
            ]
            face = data.faces[i].permute(1, 2, 0).numpy()
            scale = face.shape[0] / model.cfg.resolution
            tiles.append(tile(face, data.landmarks[i].numpy() * scale, lines))
    for j, (name, s) in enumerate(data.labels.items()):
        h = np.flatnonzero(s.held_out.numpy())
        shown = np.concatenate([h[s.targets[h] == 1][:2], h[s.targets[h] == 0][:2]])
        if len(shown):
            probability = predict(model, s.images[shown]).numpy()[:, len(data.measures) + j]
            for i, p in zip(shown, probability, strict=True):
                truth = "with" if s.targets[i] == 1 else "without"
                tiles.append(
                    tile(s.images[i].permute(1, 2, 0).numpy(), None, [f"{name}: {truth}", f"p {p:.2f}"])
                )
    if not tiles:
        return np.full((TILE, TILE + PANEL, 3), 255, np.uint8)
    cols = min(4, len(tiles))
    grid = image_grid(np.stack(tiles + [np.full_like(tiles[0], 255)] * (-len(tiles) % cols)), cols)
    return labelled(grid, caption=f"{caption}: held-out faces, measured / predicted (labels: truth / p)")


def write_figures(
    out: Path, state: RecogniserState, data: RecogniserData, settings: RecogniserSettings
) -> None:
    write_png(out / "preview.png", preview(state.model, data, settings.preview_faces, f"step {state.step}"))
    keys = ((["measures"] if data.measures else []) + list(data.labels))[:4]  # the curve has 4 colours
    training = loss_curve(state.history, {k: k for k in keys})
    held = [h for h in state.history if any(f"held_out_{k}" in h for k in keys)]
    held_out = loss_curve(held, {f"held-out {k}": f"held_out_{k}" for k in keys})
    write_png(out / "loss.png", np.concatenate([training, held_out]))


# ---------------------------------------------------------------------------------------------------
# The training run


def check_inputs(generator: Path, labels: dict[str, tuple[Path, Path]], out: Path, resume: bool) -> Path:
    """What can be checked before a long run: the generator file, the label names and folders, whether
    --out may be written (or resumed). Returns the generator file."""
    gen = generator_file(Path(generator))
    if not gen.is_file():
        raise CheckpointError(f"{gen}: generator file not found")
    for name, folders in labels.items():
        if not re.fullmatch(LABEL_NAME, name) or name in GEOMETRIC_ATTRIBUTES:
            raise PipelineError(
                f"--attribute {name}: a label is named in lower-case letters, digits and _, and is not one "
                f"of the measures ({', '.join(GEOMETRIC_ATTRIBUTES)})"
            )
        for folder in folders:
            folder = Path(folder)
            if not folder.is_dir():
                raise TrainingDataError(f"{folder}: folder of {name} crops not found")
            count = len(image_paths(folder))
            if count < MIN_FACES:
                raise TrainingDataError(
                    f"{folder}: {count} images of aligned faces; {name} needs at least {MIN_FACES} each side"
                )
        if Path(folders[0]).resolve() == Path(folders[1]).resolve():  # it trained, then was refused at chance
            raise TrainingDataError(
                f"--attribute {name}: {folders[0]} on both sides; it needs faces with {name} and "
                "faces without"
            )
    refuse_file_at(out, "the recognisers")
    if (out / GENERATOR_FILE).exists() or (out / ENCODER_FILE).exists():
        raise CheckpointError(f"{out}: holds another model; give the recognisers a folder of their own")
    if resume:
        recorded = str(read_training(out / TRAINING_NAME, mmap=True).get("generator_sha256"))
        refuse_other_generator(out / TRAINING_NAME, recorded, gen, sha256_file(gen))
    elif any((out / name).exists() for name in (TRAINING_NAME, SAMPLES_NAME, RECOGNISERS_FILE)):
        raise CheckpointError(
            f"{out}: holds recognisers already; use --resume to continue them or another --out"
        )
    return gen


def recognisers_meta(
    state: RecogniserState, data: RecogniserData, figures: dict[str, dict], generator: Path
) -> dict:
    model = state.model
    attributes = {}
    for j, (name, kind) in enumerate(zip(model.names, model.kinds, strict=True)):
        entry = {
            "kind": kind,
            "unit": unit(name) if kind == "measure" else "probability",
            "held_out": figures[name],
        }
        if kind == "measure":
            entry.update(centre=float(model.centre[j]), spread=float(model.spread[j]))
        else:
            entry.update(zip(("with", "without"), data.labels[name].folders, strict=True))
        attributes[name] = entry
    return {
        "generator_sha256": state.generator_sha256,
        "generator": str(generator),
        "steps": state.step,
        "seconds": round(state.seconds, 1),
        "samples": {
            "rendered": data.rendered,
            "found": len(data.faces),
            "held_out": int(data.held_out.sum()),
        },
        "attributes": attributes,
    }


def train_recognisers(
    generator: str | Path,
    out: Path,
    minutes: float | None,
    labels: dict[str, tuple[Path, Path]] | None = None,
    samples: int = 2000,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
    settings: RecogniserSettings | None = None,
    steps: int | None = None,
    device: torch.device | str | None = None,
) -> tuple[RecogniserState, dict]:
    """Train (or with `resume` continue) recognisers in `out` for the generator file (or folder):
    draw `samples` faces and measure them with dlib (once: `resume` reuses them), read the `labels`'
    folders (name -> (with, without)), train for `minutes` of this run (or until `steps` in all), judge
    on the held-out fifth, and write recognisers.pt unless an attribute is refused (PipelineError).
    `progress` gets {"phase": "sampling", "drawn", "found", "total"} and then each step's record
    ({"phase": "training", "step", "loss", ..., "seconds"}). Returns the state and the figures."""
    if steps is None and minutes is None:
        raise PipelineError("training needs --minutes (or steps)")
    settings = settings or RecogniserSettings()
    labels = {k: (Path(a), Path(b)) for k, (a, b) in (labels or {}).items()}
    out = Path(out)
    gen = check_inputs(Path(generator), labels, out, resume)
    device = resolve_device(device)
    G, _ = load_generator(gen)
    G = G.to(device).eval().requires_grad_(False)
    sha = sha256_file(gen)
    res = G.cfg.resolution
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        data, recorded = read_data(out / SAMPLES_NAME)
        refuse_other_generator(out / SAMPLES_NAME, recorded, gen, sha)
        asked = {k: (str(a), str(b)) for k, (a, b) in labels.items()}
        if asked and asked != {k: s.folders for k, s in data.labels.items()}:
            raise PipelineError(
                f"--attribute: {out} was trained on {', '.join(data.labels) or 'no labels'} from other "
                "folders; resume without --attribute (the recorded crops are used) or train in another --out"
            )
        state = load_training(out / TRAINING_NAME, data, res, gen, sha, settings)
    else:

        def on_batch(drawn: int, found: int) -> None:
            if progress:
                progress({"phase": "sampling", "drawn": drawn, "found": found, "total": samples})

        data = make_data(G, gen, samples, labels, settings, on_batch)
        del G  # the faces are drawn: the generator's memory is the network's now
        save_data(out / SAMPLES_NAME, data, sha)
        state = new_state(data, res, sha, settings)
    state.model.to(device)
    started = last_save = last_snap = time.monotonic()
    run_start_seconds = state.seconds
    try:
        while (steps is None or state.step < steps) and (
            minutes is None or time.monotonic() - started < minutes * 60
        ):
            record = train_step(state, data, settings)
            if state.step % settings.eval_every == 0:
                record.update(held_out_losses(state.model, data))
            now = time.monotonic()
            state.seconds = run_start_seconds + now - started
            record["seconds"] = round(state.seconds, 2)
            if progress:
                progress({"phase": "training", **record})
            if now - last_save > settings.checkpoint_minutes * 60:
                save_training(out / TRAINING_NAME, state, settings, gen)
                last_save = now
            if now - last_snap > settings.snapshot_minutes * 60:
                write_figures(out, state, data, settings)
                last_snap = time.monotonic()
    finally:  # also on Ctrl-C: nothing since the last checkpoint is lost
        if state.history and not any(k.startswith("held_out_") for k in state.history[-1]):
            state.history[-1].update(held_out_losses(state.model, data))
        save_training(out / TRAINING_NAME, state, settings, gen)
        write_figures(out, state, data, settings)
    figures = evaluate(state.model, data)
    if progress:
        progress({"phase": "evaluated", "figures": figures})
    if bad := refused(figures, settings):
        raise PipelineError(
            f"{out}: refused {', '.join(bad)}: no better than chance on held-out faces, so no "
            f"{RECOGNISERS_FILE} was written"
        )
    save_recognisers(out / RECOGNISERS_FILE, state.model, recognisers_meta(state, data, figures, gen))
    return state, figures
