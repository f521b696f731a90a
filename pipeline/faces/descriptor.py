"""dlib's 128-d face descriptor as a differentiable torch module, and dlib's face chip cut differentiably.

The network is dlib's ResNet of `dlib_face_recognition_resnet_model_v1.dat` (`anet_type` of dlib's
examples/dnn_face_recognition_ex.cpp), read from dlib's own binary serialisation here, without dlib: a
training loss can then ask the face-recognition network whether an edited face is still the same person
and get a gradient. The chip is the 150x150 face crop that `dlib.get_face_chip` and
`compute_face_descriptor` cut from an image by its 68 landmarks (padding 0.25), made the same way:
dlib's mean-face template and similarity fit, its image pyramid for large faces, its bilinear sampling
with black outside the image, and its truncation to whole numbers (straight through for the gradient).

dlib's serialisation (dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h, dlib/dnn/core.h):
- an integer is a control byte (bit 7: negative; low 4 bits: how many bytes follow) then the absolute
  value in that many little-endian bytes;
- a float is two such integers, the mantissa then the exponent, value = mantissa * 2**exponent (exponent
  32000, 32001, 32002: inf, -inf, nan). serialize.h's prose says exponent first; its code (what files
  hold) writes the mantissa first;
- a string is its length (an integer) then its bytes; a bool the byte '1' or '0';
- a tensor is version 2, its four dimensions (integers), then little-endian float32 values;
- a network is written from its output down: each layer wrapper writes its version and then its input
  network, so the stream holds every wrapper's version first (loss, output layer, ..., input), then the
  input layer, then each layer's own fields from the input up. Tags and skips write only a version, so the
  wiring (which add_prev adds which tagged output) is not in the file: `DESCRIPTOR_ARCHITECTURE` says it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models import ModelError, model_path

CHIP_SIZE = 150  # dlib's descriptor network takes 150x150 chips
CHIP_PADDING = 0.25  # compute_face_descriptor's default padding around the mean face


# ---------------------------------------------------------------------------------------------------------
# The architecture: anet_type, input to output.


@dataclass(frozen=True)
class LayerSpec:
    """One step of the network as dlib's templates nest it: a layer with its shape, or a tag operation."""

    kind: str  # input, con, affine, relu, max_pool, avg_pool, fc, tag, skip, add_prev
    filters: int = 0  # con: output channels; fc: outputs
    size: int = 0  # con, pools: window (0 for avg_pool_everything)
    stride: int = 0
    tag: int = 0  # tag, skip, add_prev: the tag's number


def _block(n: int, stride: int) -> list[LayerSpec]:
    # block<N,BN,stride,SUBNET> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
    return [
        LayerSpec("con", n, 3, stride),
        LayerSpec("affine"),
        LayerSpec("relu"),
        LayerSpec("con", n, 3, 1),
        LayerSpec("affine"),
    ]


def _ares(n: int) -> list[LayerSpec]:
    # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return [LayerSpec("tag", tag=1), *_block(n, 1), LayerSpec("add_prev", tag=1), LayerSpec("relu")]


def _ares_down(n: int) -> list[LayerSpec]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
    return [
        LayerSpec("tag", tag=1),
        *_block(n, 2),
        LayerSpec("tag", tag=2),
        LayerSpec("skip", tag=1),
        LayerSpec("avg_pool", size=2, stride=2),
        LayerSpec("add_prev", tag=2),
        LayerSpec("relu"),
    ]


DESCRIPTOR_ARCHITECTURE: tuple[LayerSpec, ...] = (
    LayerSpec("input"),  # input_rgb_image_sized<150>
    LayerSpec("con", 32, 7, 2),
    LayerSpec("affine"),
    LayerSpec("relu"),
    LayerSpec("max_pool", size=3, stride=2),
    *(_ares(32) * 3),  # alevel4
    *_ares_down(64),  # alevel3
    *(_ares(64) * 3),
    *_ares_down(128),  # alevel2
    *(_ares(128) * 2),
    *_ares_down(256),  # alevel1
    *(_ares(256) * 2),
    *_ares_down(256),  # alevel0
    LayerSpec("avg_pool", size=0, stride=1),  # avg_pool_everything
    LayerSpec("fc", 128),  # fc_no_bias<128>; loss_metric adds nothing at inference
)


# ---------------------------------------------------------------------------------------------------------
# dlib's serialisation.


class DlibReader:
    """Reads dlib's serialised values from bytes; every failure is a ModelError naming `source`."""

    def __init__(self, data: bytes, source: str | Path):
        self.data = memoryview(data)
        self.pos = 0
        self.source = str(source)

    def fail(self, why: str) -> ModelError:
        return ModelError(f"{self.source}: not a readable dlib network file: {why} (at byte {self.pos})")

    def _take(self, n: int, what: str) -> memoryview:
        if self.pos + n > len(self.data):
            raise self.fail(f"the file ends inside {what} (truncated?)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self, what: str = "an integer", signed: bool = True) -> int:
        control = self._take(1, what)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70 or (control & 0x80 and not signed):
            self.pos -= 1
            raise self.fail(f"bad control byte 0x{control:02x} for {what}")
        value = int.from_bytes(self._take(size, what), "little")
        return -value if control & 0x80 else value

    def float(self, what: str = "a float") -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail(f"{what} in dlib's old text format")
        mantissa = self.int(what)
        exponent = self.int(what)
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        if exponent in special:
            return special[exponent]
        return math.ldexp(float(mantissa), exponent)

    def string(self, what: str = "a string") -> str:
        n = self.int(what, signed=False)
        try:
            return bytes(self._take(n, what)).decode("ascii")
        except UnicodeDecodeError:
            self.pos -= n
            raise self.fail(f"{what} is not text") from None

    def bool(self, what: str = "a bool") -> bool:
        byte = self._take(1, what)[0]
        if byte not in b"01":
            self.pos -= 1
            raise self.fail(f"bad bool byte 0x{byte:02x} for {what}")
        return byte == ord("1")

    def version(self, allowed: Sequence[int], what: str) -> int:
        v = self.int(f"the version of {what}")
        if v not in allowed:
            raise self.fail(f"{what} version {v}, expected {' or '.join(map(str, allowed))}")
        return v

    def tag(self, allowed: Sequence[str], what: str) -> str:
        name = self.string(f"the name of {what}")
        if name not in allowed:
            raise self.fail(f"found {name!r} where {what} ({', '.join(allowed)}) should be")
        return name

    def tensor(self, what: str = "a tensor") -> np.ndarray:
        self.version([2], what)
        shape = tuple(self.int(what) for _ in range(4))
        if min(shape) < 0:
            raise self.fail(f"{what} has shape {shape}")
        count = math.prod(shape)
        raw = self._take(4 * count, what)
        return np.frombuffer(raw, "<f4").reshape(shape)

    def alias_tensor(self, what: str = "an alias tensor") -> tuple[int, int, int, int]:
        self.version([1], what)
        return tuple(self.int(what) for _ in range(4))  # type: ignore[return-value]


@dataclass(frozen=True)
class DlibLayer:
    """One step of the network with the weights read from the file (float32 numpy arrays)."""

    spec: LayerSpec
    settings: dict[str, float] = field(default_factory=dict)  # padding, averages, ...
    weights: dict[str, np.ndarray] = field(default_factory=dict)


def _split(
    params: np.ndarray, sizes: Sequence[tuple[int, ...]], r: DlibReader, what: str
) -> list[np.ndarray]:
    flat = params.reshape(-1)
    need = sum(math.prod(s) for s in sizes)
    if flat.size != need:
        raise r.fail(f"{what} has {flat.size} parameters, its shapes need {need}")
    out, at = [], 0
    for s in sizes:
        n = math.prod(s)
        out.append(flat[at : at + n].reshape(s).copy())
        at += n
    return out


def _expect(r: DlibReader, what: str, found, wanted) -> None:
    if found != wanted:
        raise r.fail(f"{what} is {found}, the network needs {wanted}")


def _read_input(r: DlibReader) -> DlibLayer:
    r.tag(["input_rgb_image_sized"], "the input layer")
    averages = [r.float("the input's average colour") for _ in range(3)]
    nr, nc = r.int("the input's rows", signed=False), r.int("the input's columns", signed=False)
    _expect(r, "the input size", (nr, nc), (CHIP_SIZE, CHIP_SIZE))
    return DlibLayer(LayerSpec("input"), {"red": averages[0], "green": averages[1], "blue": averages[2]})


def _read_con(r: DlibReader, spec: LayerSpec) -> DlibLayer:
    version = r.tag(["con_4", "con_5", "con_6"], "a convolution")
    params = r.tensor("a convolution's parameters")
    filters = r.int("the number of filters")
    nr, nc = r.int("filter rows"), r.int("filter columns")
    stride = (r.int("stride"), r.int("stride"))
    padding = (r.int("padding"), r.int("padding"))
    shape, bias_shape = r.alias_tensor("filters"), r.alias_tensor("biases")
    for _ in range(4):
        r.float("a learning-rate multiplier")
    use_bias = r.bool("use_bias") if version in ("con_5", "con_6") else True
    if version == "con_6":
        r.bool("use_relu")
    _expect(r, "a convolution's filters", (filters, nr, nc, stride), (spec.filters, spec.size, spec.size,
            (spec.stride, spec.stride)))  # fmt: skip
    _expect(r, "a convolution's padding", padding[0], padding[1])
    sizes = [shape] + ([bias_shape] if use_bias and math.prod(bias_shape) else [])
    arrays = _split(params, sizes, r, "a convolution")
    weights = {"weight": arrays[0]} | ({"bias": arrays[1].reshape(-1)} if len(arrays) > 1 else {})
    return DlibLayer(spec, {"padding": padding[0]}, weights)


def _read_affine(r: DlibReader, spec: LayerSpec) -> DlibLayer:
    version = r.tag(["affine_", "affine_2", "bn_con2"], "an affine (or batch norm) layer")
    params = r.tensor("an affine layer's parameters")
    gamma_shape, beta_shape = r.alias_tensor("gamma"), r.alias_tensor("beta")
    gamma, beta = _split(params, [gamma_shape, beta_shape], r, "an affine layer")
    gamma, beta = gamma.reshape(-1), beta.reshape(-1)
    if version == "bn_con2":  # dlib turns a trained batch norm into the affine it equals at inference
        r.tensor("means")
        r.tensor("invstds")
        mean, var = r.tensor("running means").reshape(-1), r.tensor("running variances").reshape(-1)
        r.int("num_updates", signed=False)
        r.int("running_stats_window_size", signed=False)
        for _ in range(4):
            r.float("a learning-rate multiplier")
        eps = r.float("eps")
        gamma = (gamma / np.sqrt(var + np.float32(eps))).astype(np.float32)
        beta = (beta - gamma * mean).astype(np.float32)
    else:
        mode = r.int("the affine mode")
        _expect(r, "the affine mode", mode, 0)  # CONV_MODE: one scale and shift a channel
        if version == "affine_2" and r.bool("disabled"):
            raise r.fail("a disabled affine layer")
    return DlibLayer(spec, {}, {"weight": gamma, "bias": beta})


def _read_relu(r: DlibReader, spec: LayerSpec) -> DlibLayer:
    if r.tag(["relu_", "relu_2"], "a relu") == "relu_2" and r.bool("disabled"):
        raise r.fail("a disabled relu")
    return DlibLayer(spec)


def _read_pool(r: DlibReader, spec: LayerSpec) -> DlibLayer:
    name = f"{spec.kind}_2"
    r.tag([name], f"a {spec.kind}")
    nr, nc = r.int("pool rows"), r.int("pool columns")
    stride = (r.int("stride"), r.int("stride"))
    padding = (r.int("padding"), r.int("padding"))
    _expect(
        r, f"a {spec.kind}'s window", (nr, nc, stride), (spec.size, spec.size, (spec.stride, spec.stride))
    )
    _expect(r, f"a {spec.kind}'s padding", padding, (0, 0))
    return DlibLayer(spec)


def _read_fc(r: DlibReader, spec: LayerSpec) -> DlibLayer:
    version = r.tag(["fc_2", "fc_3"], "a fully connected layer")
    outputs, inputs = r.int("outputs", signed=False), r.int("inputs", signed=False)
    params = r.tensor("a fully connected layer's parameters")
    weight_shape, bias_shape = r.alias_tensor("weights"), r.alias_tensor("biases")
    bias_mode = r.int("the bias mode")
    for _ in range(4):
        r.float("a learning-rate multiplier")
    use_bias = r.bool("use_bias") if version == "fc_3" else True
    _expect(r, "the outputs", outputs, spec.filters)
    has_bias = bias_mode == 0 and use_bias  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    sizes = [weight_shape] + ([bias_shape] if has_bias else [])
    arrays = _split(params, sizes, r, "a fully connected layer")
    # dlib multiplies input rows by an inputs x outputs matrix; torch's Linear holds outputs x inputs
    weights = {"weight": arrays[0].reshape(inputs, outputs).T.copy()}
    if has_bias:
        weights["bias"] = arrays[1].reshape(-1)
    return DlibLayer(spec, {}, weights)


_READERS = {
    "con": _read_con,
    "affine": _read_affine,
    "relu": _read_relu,
    "max_pool": _read_pool,
    "avg_pool": _read_pool,
    "fc": _read_fc,
    "add_prev": lambda r, spec: (r.tag(["add_prev_"], "an add_prev layer"), DlibLayer(spec))[1],
}


def _layer_fields(r: DlibReader, version: int, below_is_input: bool) -> None:
    """The fields add_layer writes after its layer: flags and cached tensors, unused at inference."""
    for what in ("this_layer_setup_called", "gradient_input_is_stale", "output_and_gradient_disabled"):
        r.bool(what)
    r.tensor("x_grad")
    r.tensor("cached_output")
    if below_is_input:
        r.tensor("grad_final")
        if version >= 3:
            r.int("sample_expansion_factor", signed=False)
    elif version >= 2:
        r.tensor("params_grad")


def read_dlib_network(
    path: Path, architecture: Sequence[LayerSpec] = DESCRIPTOR_ARCHITECTURE
) -> list[DlibLayer]:
    """The layers of a dlib network file, input to output, with their weights; the file must hold exactly
    `architecture` (dlib's face descriptor by default) and nothing after it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the dlib network file: {e.strerror}") from None
    r = DlibReader(data, path)
    r.version([1], "the loss layer")
    loss = r.tag(["loss_metric_", "loss_metric_2"], "the metric loss")
    if loss == "loss_metric_2":
        r.float("the loss margin")
        r.float("the loss distance threshold")
    if architecture[0].kind != "input" or architecture[1].kind in ("input", "tag", "skip"):
        raise ValueError("an architecture starts with the input and a layer")
    wrappers = architecture[2:]
    versions = []
    for spec in reversed(wrappers):  # every wrapper's version, output first
        tagging = spec.kind in ("tag", "skip")
        versions.append(r.version([1] if tagging else [1, 2], f"a {spec.kind} layer"))
    versions.reverse()
    bottom_version = r.version([2, 3], "the first layer")
    layers = [_read_input(r), _READERS[architecture[1].kind](r, architecture[1])]
    _layer_fields(r, bottom_version, below_is_input=True)
    for spec, version in zip(wrappers, versions, strict=True):
        if spec.kind in ("tag", "skip"):
            layers.append(DlibLayer(spec))
            continue
        layers.append(_READERS[spec.kind](r, spec))
        _layer_fields(r, version, below_is_input=False)
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} bytes after the network")
    return layers


# ---------------------------------------------------------------------------------------------------------
# The network in torch.


class ChannelAffine(nn.Module):
    """dlib's affine_ layer in CONV_MODE: a scale and a shift per channel (batch norm frozen into it)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class GlobalAvgPool(nn.Module):
    """avg_pool_everything: the mean over the whole feature map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum of two tensors where the smaller is taken as zero past its end (in channels
    and space): a downsampling residual adds a 4x4 pooled map to a 3x3 convolved one, 64 to 128 channels."""
    shape = [max(p, q) for p, q in zip(a.shape, b.shape, strict=True)]

    def pad(t: torch.Tensor) -> torch.Tensor:
        if list(t.shape) == shape:
            return t
        return F.pad(t, (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1]))

    return pad(a) + pad(b)


class FaceDescriptorNet(nn.Module):
    """dlib's face descriptor ResNet: chips [B, 3, 150, 150] RGB in 0..255 -> descriptors [B, 128].

    The input is normalised as dlib's input_rgb_image_sized does, (pixel - average colour) / 256. Pairs of
    one person's faces are less than about 0.6 apart (`identity_distance`)."""

    def __init__(self, layers: Sequence[DlibLayer]):
        super().__init__()
        first = layers[0]
        if first.spec.kind != "input":
            raise ValueError("the layers start with the input")
        averages = [first.settings[c] for c in ("red", "green", "blue")]
        self.register_buffer("average", torch.tensor(averages, dtype=torch.float32).view(1, 3, 1, 1))
        self.specs = [layer.spec for layer in layers[1:]]
        self.steps = nn.ModuleList([self._module(layer) for layer in layers[1:]])

    @staticmethod
    def _module(layer: DlibLayer) -> nn.Module:
        spec, w = layer.spec, {k: torch.from_numpy(v) for k, v in layer.weights.items()}
        if spec.kind == "con":
            out_c, in_c = w["weight"].shape[:2]
            padding = int(layer.settings["padding"])
            conv = nn.Conv2d(in_c, out_c, spec.size, spec.stride, padding, bias="bias" in w)
            conv.load_state_dict(w)
            return conv
        if spec.kind == "affine":
            affine = ChannelAffine(w["weight"].numel())
            affine.load_state_dict(w)
            return affine
        if spec.kind == "fc":
            linear = nn.Linear(w["weight"].shape[1], w["weight"].shape[0], bias="bias" in w)
            linear.load_state_dict(w)
            return nn.Sequential(nn.Flatten(), linear)
        if spec.kind == "relu":
            return nn.ReLU()
        if spec.kind == "max_pool":
            return nn.MaxPool2d(spec.size, spec.stride)
        if spec.kind == "avg_pool":
            return GlobalAvgPool() if spec.size == 0 else nn.AvgPool2d(spec.size, spec.stride)
        return nn.Identity()  # tag, skip, add_prev: done by forward

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        return self.features(chips, None)[1]

    def features(self, chips: torch.Tensor, map_size: int | None = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """(the last feature map of `map_size` x `map_size` px, the descriptor [B, 128]): the map keeps where
        things are on the face (8: the end of the third stage, 128 channels), which the descriptor drops.
        With `map_size` None the map is not kept (an empty tensor)."""
        if chips.ndim != 4 or tuple(chips.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"chips must be [B, 3, {CHIP_SIZE}, {CHIP_SIZE}], got {list(chips.shape)}")
        x = (chips - self.average.to(chips.dtype)) / 256.0
        tagged: dict[int, torch.Tensor] = {}
        kept = x.new_zeros(0)
        for spec, step in zip(self.specs, self.steps, strict=True):
            if spec.kind == "tag":
                tagged[spec.tag] = x
            elif spec.kind == "skip":
                x = tagged[spec.tag]
            elif spec.kind == "add_prev":
                x = add_padded(x, tagged[spec.tag])
            else:
                x = step(x)
            if map_size is not None and x.ndim == 4 and x.shape[-1] == map_size:
                kept = x
        if map_size is not None and not kept.numel():
            raise ValueError(f"the network has no {map_size} px feature map")
        return kept, x


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str) -> FaceDescriptorNet:
    net = FaceDescriptorNet(read_dlib_network(Path(path)))
    return net.requires_grad_(False).eval().to(device)


def load_face_descriptor(
    path: str | Path | None = None, device: torch.device | str | None = None
) -> FaceDescriptorNet:
    """dlib's descriptor network from the registry's file (checksum checked) or `path`, in eval mode with
    frozen parameters, on `device` (the CPU by default). Cached per process: callers share the module,
    so move or change a copy, not it."""
    checked = model_path("dlib_face_recognition", path)
    return _load(str(checked.resolve()), str(torch.device(device or "cpu")))


def identity_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of descriptors over the last axis (dlib's convention: one person's faces are
    less than `pipeline.faces.detect.SAME_PERSON`, 0.6, apart); the numpy twin is detect.identity_distance.
    Its gradient at distance 0 is 0, not NaN, so an unedited face gives a finite identity loss."""
    return torch.linalg.vector_norm(a - b, dim=-1)


# ---------------------------------------------------------------------------------------------------------
# The face chip.

# dlib's mean face (get_face_chip_details in dlib/image_transforms/interpolation.h): points 17-67 in a unit
# square; the fit leaves out the eyebrows (17-26) and the lower lip (55-59, 65-67).
_MEAN_FACE_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
)  # fmt: skip
_MEAN_FACE_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
)  # fmt: skip
_FIT_POINTS = np.array([i for i in range(27, 68) if not (55 <= i <= 59 or 65 <= i <= 67)])
_MEAN_FACE = np.stack([_MEAN_FACE_X, _MEAN_FACE_Y], 1)[_FIT_POINTS - 17]


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """dlib's find_similarity_transform (Umeyama): the 2x3 least-squares similarity taking src to dst."""
    mean_src, mean_dst = src.mean(0), dst.mean(0)
    a, b = src - mean_src, dst - mean_dst
    sigma_src = (a**2).sum(1).mean()
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    s = np.ones(2)
    det = np.linalg.det(cov)
    if det < 0 or (det == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        s[1 if d[1] < d[0] else 0] = -1
    rotation = u @ np.diag(s) @ vt
    scale = (d * s).sum() / sigma_src if sigma_src else 1.0
    shift = mean_dst - scale * rotation @ mean_src
    return np.concatenate([scale * rotation, shift[:, None]], 1)


def chip_transforms(
    landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> np.ndarray:
    """The image->chip affines [N, 2, 3] dlib cuts face chips with from 68 landmarks [N, 68, 2]: dlib's
    get_mapping_to_chip of get_face_chip_details(face, size, padding). The chip's pixel (0, 0) is the
    fitted square's top-left corner and (size - 1, 0) its top-right one, as in dlib."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be [N, 68, 2], got {list(lm.shape)}")
    template = (padding + _MEAN_FACE) / (2 * padding + 1) * size
    out = np.empty((len(lm), 2, 3))
    for i, points in enumerate(lm):
        chip_to_image = _similarity(template, points[_FIT_POINTS])
        p = chip_to_image[:, :2] @ [1.0, 0.0]
        angle, scale = math.atan2(p[1], p[0]), math.hypot(*p)
        centre = chip_to_image[:, :2] @ [size / 2, size / 2] + chip_to_image[:, 2]
        half = (size * scale - 1) / 2  # dlib's centered_drect: the rectangle spans width - 1
        cos, sin = math.cos(angle), math.sin(angle)
        rotation = np.array([[cos, -sin], [sin, cos]])
        # get_mapping_to_chip: the rotated rectangle's corners tl, tr, br go to (0,0), (s-1,0), (s-1,s-1)
        step = 2 * half / (size - 1)
        image_from_chip = np.concatenate([rotation * step, (centre - rotation @ [half, half])[:, None]], 1)
        out[i] = _invert_affine(image_from_chip)
    return out


def _invert_affine(m: np.ndarray) -> np.ndarray:
    inverse = np.linalg.inv(m[:, :2])
    return np.concatenate([inverse, -inverse @ m[:, 2:]], 1)


def _point_down(p: np.ndarray, levels: int) -> np.ndarray:
    """dlib's pyramid_down<2>::point_down: where an image point is on the level below."""
    for _ in range(levels):
        p = p / 2.0 - np.array([1.25, 0.75])
    return p


def _area(width: float, height: float) -> float:
    return max(0.0, width) * max(0.0, height)


def _straight_floor(x: torch.Tensor) -> torch.Tensor:
    """dlib's truncation to whole pixel values, with the gradient of the identity."""
    return x + (torch.floor(x) - x).detach()


_PYRAMID_TAPS = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])


def pyramid_down(image: torch.Tensor) -> torch.Tensor:
    """dlib's pyramid_down<2> on [B, C, H, W] whole-number pixels: the 5x5 binomial filter, every second row
    and column from the third, truncated to whole numbers; (H - 3) // 2 by (W - 3) // 2."""
    c = image.shape[1]
    taps = _PYRAMID_TAPS.to(image)
    kernel = (taps[:, None] * taps[None, :] / 256.0).expand(c, 1, 5, 5)
    return _straight_floor(F.conv2d(image, kernel, stride=2, groups=c))


def _sample(image: torch.Tensor, points: np.ndarray) -> torch.Tensor:
    """dlib's interpolate_bilinear of [1, C, H, W] at image points [h, w, 2], in float64 and in dlib's order
    of operations (grid_sample's weights sum to a hair under 1 and truncate flat regions one lower): black
    where a point's 2x2 neighbourhood is not wholly inside the image; truncated to whole numbers."""
    h, w = image.shape[-2:]
    left, top = np.floor(points[..., 0]), np.floor(points[..., 1])
    inside = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    img = image[0].to(torch.float64)
    col = torch.from_numpy(np.clip(left, 0, w - 2).astype(np.int64)).to(img.device)
    row = torch.from_numpy(np.clip(top, 0, h - 2).astype(np.int64)).to(img.device)
    lr = torch.from_numpy(points[..., 0] - left).to(img)
    tb = torch.from_numpy(points[..., 1] - top).to(img)
    tl, tr = img[:, row, col], img[:, row, col + 1]
    bl, br = img[:, row + 1, col], img[:, row + 1, col + 1]
    out = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    out = out * torch.from_numpy(inside).to(img)
    return _straight_floor(out).to(image.dtype)[None]


def extract_chips(
    images: torch.Tensor, transforms: torch.Tensor | np.ndarray, size: int = CHIP_SIZE
) -> torch.Tensor:
    """Face chips [B, 3, size, size] cut from images [B, 3, H, W] (RGB, 0..255) by image->chip similarity
    transforms [B, 2, 3] (`chip_transforms`), as dlib's extract_image_chips cuts them: when the face is
    more than twice the chip's size, from dlib's image pyramid of the region around it; then bilinear,
    black outside the image, truncated to whole numbers. Differentiable in the images (the truncation
    passes the gradient straight through); the transforms are taken as constants."""
    m = transforms.detach().cpu().numpy() if isinstance(transforms, torch.Tensor) else np.asarray(transforms)
    m = m.astype(np.float64)
    if images.ndim != 4 or m.shape != (len(images), 2, 3):
        raise ValueError(
            f"images [B, 3, H, W] and transforms [B, 2, 3], got {list(images.shape)}, {list(m.shape)}"
        )
    height, width = images.shape[-2:]
    u, v = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    chip_pixels = np.stack([u, v, np.ones_like(u)], -1)
    corners = np.array(
        [[0.0, 0.0, 1.0], [size - 1, 0.0, 1.0], [0.0, size - 1, 1.0], [size - 1, size - 1, 1.0]]
    )
    chips = []
    for i in range(len(images)):
        image_from_chip = _invert_affine(m[i])
        points = chip_pixels @ image_from_chip.T  # [size, size, 2] where each chip pixel is in the image
        corner_points = corners @ image_from_chip.T
        # the unrotated rectangle's side (dlib's width counts both ends) and how deep a pyramid it needs
        side = np.hypot(*(corner_points[1] - corner_points[0])) + 1
        depth, down, grow = 0, (side - 1) / 2 + 1, 2.0
        while _area(down, down) > size * size:
            down, depth, grow = (down - 1) / 2 + 1, depth + 1, grow * 2 + 2
        image = images[i : i + 1]
        if depth:
            # dlib's pyramid covers the rotated rectangle grown by `grow`, clipped to the image, rounded
            lo = np.maximum(corner_points.min(0) - grow, 0)
            hi = np.minimum(corner_points.max(0) + grow, [width - 1, height - 1])
            left, top = (math.floor(x + 0.5) for x in lo)
            right, bottom = (math.floor(x + 0.5) for x in hi)
            image = image[..., top : bottom + 1, left : right + 1]
            for _ in range(depth):
                image = pyramid_down(image)
            points = _point_down(points - [left, top], depth)
        chips.append(_sample(image, points))
    return torch.cat(chips)
