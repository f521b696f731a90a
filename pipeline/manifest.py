"""The shot manifest: YAML in, a checked `Shot` out. Every error names the file, the line and the field."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.errors import ManifestError, MediaError, PipelineError
from pipeline.files import read_array
from pipeline.media.colorspace import DEFAULT_CONFIG, ColorspaceError, PlateColorspace
from pipeline.media.cuts import CUT_THRESHOLD, MIN_SCENE
from pipeline.media.decode import CameraMove, ConvertedPlate, FrameError, Plate, open_plate, read_image
from pipeline.media.encode import MOVIE_PRESETS, ffmpeg_executable
from pipeline.media.probe import LayerError, PlateInfo
from pipeline.media.sequences import SEQUENCE_FORMATS
from pipeline.media.timecode import TimecodeError, offset_timecode
from pipeline.models import ModelError, file_digest
from pipeline.stylegan.formats import (
    ENCODER_FORMAT,
    ENCODER_VERSION,
    MAPPER_FORMAT,
    MAPPER_REMEDY,
    MAPPER_VERSION,
    check_generator_file,
    read_header,
    refuse_other_generator,
)
from pipeline.stylegan.registry import encoder_path, generator_path, mapper_path, registered_encoders

DEFAULT_FIRST_FRAME = 1001
SHOT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# A file name holds at most 255 bytes, and the longest a render makes from the shot's name adds 47 (a face
# element movie's temporary: `.<shot>_faceElement_v99999_prores4444.<pid>.tmp.mov`): a longer name
# rendered, and its first frame failed with "File name too long"
MAX_SHOT_NAME = 128
# Bounds on what a manifest may ask for, so that a typo fails at validate instead of filling memory or
# disk in a render: a manifest is a few KB; a shot is at most about 70 minutes at 24 fps.
MAX_MANIFEST_BYTES = 256 << 10  # a dense YAML this size parses in about 4 s on a slow core
MAX_YAML_VALUES = 100_000  # values in the document once YAML aliases are expanded
MAX_YAML_DEPTH = 50  # nested mappings and lists; a manifest needs 5
MAX_FRAMES = 100_000
MAX_FRAME_NUMBER = 9_999_999
MAX_FPS = 1000


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping: YAML's rule (the last wins) would drop the first silently."""

    def __init__(self, mapping: yaml.MappingNode, key_node: yaml.Node, first: yaml.Node, key: Any):
        super().__init__(None, None, f"duplicate key {key!r}", key_node.start_mark)
        self.mapping, self.key, self.first = mapping, key, first


class ManifestLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in a mapping (merge keys, `<<: *defaults`, may
    still be overridden, as YAML intends) and nesting deeper than MAX_YAML_DEPTH: PyYAML composes
    recursively, and its scanner slows with the square of the depth."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: the base constructor refuses it, with its own message
                if first is not key_node:
                    raise DuplicateKeyError(node, key_node, first, key)
        return super().construct_mapping(node, deep)


def _numbers_only(annotation: Any) -> bool:
    """Whether a field's type takes numbers and nothing else (int, float, Optional or Annotated ones)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        members = [m for m in get_args(annotation) if m is not type(None)]
        return bool(members) and all(_numbers_only(m) for m in members)
    return annotation in (int, float)


def _bool_for_number(value: Any, annotation: Any) -> bool:
    """Whether `value` puts a YAML boolean where `annotation` wants a number, in a tuple or list too."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if isinstance(value, bool):
        return _numbers_only(annotation)
    if isinstance(value, list | tuple) and get_origin(annotation) in (tuple, list):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        if not args:
            return False
        types = args if get_origin(annotation) is tuple and len(args) > 1 else [args[0]] * len(value)
        return any(_bool_for_number(v, a) for v, a in zip(value, types, strict=False))
    return False


class Strict(BaseModel):
    # NaN and infinity pass a float field (and a bound: every comparison with NaN is false) and then
    # spoil every frame; no setting of a shot means them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic reads true as 1 in a number field, so `sharpen: yes` sharpened at full strength and
        `hold: true` made a one-frame shot; YAML's booleans (true, yes, on) are refused there instead."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _bool_for_number(value, field.annotation):
            raise ValueError(
                f"{str(value).lower()} is not a number"
                if isinstance(value, bool)
                else "a boolean (true, yes, on) where a number is needed"
            )
        return value


Zoom = Annotated[float, Field(gt=0, le=100)]
Pixels = Annotated[float, Field(ge=-100_000, le=100_000)]
Degrees = Annotated[float, Field(ge=-3600, le=3600)]


class CameraMoveSpec(Strict):
    zoom: tuple[Zoom, Zoom] = (1.0, 1.0)
    pan: tuple[tuple[Pixels, Pixels], tuple[Pixels, Pixels]] = ((0.0, 0.0), (0.0, 0.0))
    rotate: tuple[Degrees, Degrees] = (0.0, 0.0)


class PlateSpec(Strict):
    movie: str | None = None
    sequence: str | None = None
    still: str | None = None
    hold: int | None = Field(None, ge=1, le=MAX_FRAMES, description="frames a still is held for")
    move: CameraMoveSpec | None = None
    first_frame: int | None = Field(
        None, ge=0, le=MAX_FRAME_NUMBER, description="frame number of the plate's first frame"
    )
    layer: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="EXR plates: the layer whose R, G, B (or Y) are the picture, as `beauty` for a "
        "renderer's beauty.R, beauty.G, beauty.B (default: the top-level channels)",
    )
    colorspace: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="the plate's encoding as a colour space of the OpenColorIO config (`ARRI LogC3 (EI800)`, "
        "`S-Log3 S-Gamut3.Cine`, `ADX10`, `ACEScg`): its frames are converted to display-referred sRGB "
        "as they are read (default: they are that already)",
    )
    ocio_config: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="the OpenColorIO config that names `colorspace`: a file (relative to the manifest) or an "
        "ocio:// URI (default: the Academy's studio config built into OpenColorIO 2.6)",
    )

    @model_validator(mode="after")
    def one_source(self) -> PlateSpec:
        given = [k for k in ("movie", "sequence", "still") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of movie, sequence or still")
        if self.still and not self.hold:
            raise ValueError("a still plate needs hold: the number of frames")
        if not self.still and (self.hold or self.move):
            raise ValueError("hold and move apply to still plates only")
        if self.movie and self.layer:
            raise ValueError("layer applies to EXR sequences and stills, not movies")
        if self.ocio_config and not self.colorspace:
            raise ValueError("ocio_config names the config of a colorspace: give the plate's colorspace too")
        if self.sequence and self.first_frame is not None:
            raise ValueError("first_frame does not apply to sequences: their file names number the frames")
        return self

    @property
    def kind(self) -> str:
        return "movie" if self.movie else "sequence" if self.sequence else "still"

    @property
    def source(self) -> str:
        return self.movie or self.sequence or self.still or ""


MovieName = Literal["prores422hq", "prores4444", "dnxhr_hq", "h264_review"]
assert set(MOVIE_PRESETS) == {"prores422hq", "prores4444", "dnxhr_hq", "h264_review"}


class OutputSpec(Strict):
    sequence: Literal["png8", "png16", "exr"] = "png16"
    movies: list[MovieName] = ["h264_review"]
    chunk_size: int = Field(24, ge=1, le=10000, description="frames per task")
    colorspace: Literal["working", "plate"] = Field(
        "working",
        description="the comp's encoding: `working`, display-referred sRGB (a PNG) or scene-linear Rec.709 "
        "(an EXR); `plate`, the plate's own (its plate.colorspace), every pixel the new face did not "
        "change the plate's own sample",
    )
    assert set(SEQUENCE_FORMATS) == {"png8", "png16", "exr"}


class StageSpec(Strict):
    """A stage section that a later release fills in; until then it can only be left disabled."""

    enabled: bool = False

    @field_validator("enabled")
    @classmethod
    def not_yet(cls, v: bool) -> bool:
        if v:
            raise ValueError("this stage is not available in this version of the pipeline")
        return v


class SmoothSpec(Strict):
    """Gaussian sigmas in frames for the alignment over time (0 turns one off)."""

    center: float = Field(1.0, ge=0, le=50)
    size: float = Field(3.0, ge=0, le=50)
    rotation: float = Field(3.0, ge=0, le=50)
    landmarks: float = Field(
        1.0, ge=0, le=50, description="the landmarks in the crop, which the matte is drawn from"
    )


class MaskSpec(Strict):
    """The face matte, in fractions of the crop size."""

    kind: Literal["hull", "extended"] = "extended"
    erode: float = Field(0.02, ge=0, le=0.3)
    erode_sides: dict[Literal["top", "bottom", "left", "right"], Annotated[float, Field(ge=0, le=0.3)]] = {}
    feather: float = Field(0.03, ge=0, le=0.3)


class StitchSpec(Strict):
    """STIT's stitching tuning after the pivotal tuning: the matte's border band toward the plate."""

    steps: int = Field(100, ge=1, le=100000)
    lr: float = Field(3e-4, gt=0, le=1)
    band: float = Field(0.06, gt=0, le=0.3, description="half the band's width, as a fraction of the crop")


class TuneSpec(Strict):
    """Pivotal tuning (PTI; STIT over all frames): a copy of the generator tuned so the shot's latents draw
    its faces, with PTI's locality regulariser; the tuned copy draws every frame of the path."""

    steps: int = Field(400, ge=1, le=100000)
    lr: float | None = Field(
        None, gt=0, le=1, description="Adam's rate; by default set by the generator's size (tune_lr)"
    )
    batch: int = Field(4, ge=1, le=256, description="pivots per step")
    pivots: Literal["frames", "keys"] = Field(
        "frames",
        description="frames: every frame's latent on the path (STIT); keys: the projected keys (PTI)",
    )
    max_pivots: int = Field(128, ge=1, le=100000, description="at most this many frames, spread evenly")
    lpips: float = Field(1.0, ge=0, le=100)
    mse: float = Field(1.0, ge=0, le=100)
    locality: float = Field(0.1, ge=0, le=100, description="weight of PTI's locality regulariser")
    locality_radius: float = Field(1.0, gt=0, le=100, description="in units of the generator's w spread")
    stitch: StitchSpec | None = None


class ProjectSpec(Strict):
    """W+ projection of the shot's aligned faces (or of the swapped faces, when the swap stage runs)."""

    enabled: bool = True
    generator: str = Field(description="a registered generator's name, or a file path")
    encoder: str | None = Field(None, description="a registered encoder's name, or its folder or file")
    init: Literal["encoder", "mean"] | None = Field(
        None, description="where each projection starts; default: encoder when one is named, else mean"
    )
    mode: Literal["keyframes", "every_frame"] = "keyframes"
    every: int = Field(12, ge=1, le=10000, description="keyframe mode: a key every this many frames")
    key_frames: list[Annotated[int, Field(ge=0, le=MAX_FRAME_NUMBER)]] = Field(
        [], description="keyframe mode: these frames instead of every k-th"
    )
    steps: int = Field(
        None,  # type: ignore[assignment]  # filled in: 1000 from the mean, 100 from the encoder
        ge=1,
        le=100000,
        description="optimisation steps from the start (keys, the first frame; every face from an encoder)",
    )
    following_steps: int = Field(150, ge=1, le=100000, description="every-frame mode: at most, per frame")
    patience: int = Field(20, ge=0, le=100000, description="early stop after this many steps without gain")
    w_plus: bool = True
    mse: float = Field(0.1, ge=0, le=100, description="weight of the pixel MSE beside LPIPS-VGG")
    temporal: float = Field(0.0, ge=0, le=1000, description="every-frame mode: hold each latent to the last")
    batch: int = Field(8, ge=1, le=256, description="faces projected at once")
    source: Literal["auto", "plate", "swap"] = Field(
        "auto", description="project the plate's faces or the swapped ones; auto: swapped when swap runs"
    )
    tune: TuneSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def default_steps(cls, data: Any) -> Any:
        """A polish from an encoder's W+ needs a tenth of the steps of a projection from the average."""
        if isinstance(data, dict) and data.get("steps") is None:
            from_encoder = data.get("init", "encoder" if data.get("encoder") else "mean") == "encoder"
            data = {**data, "steps": 100 if from_encoder else 1000}
        return data

    @model_validator(mode="after")
    def encoder_named(self) -> ProjectSpec:
        if self.init == "encoder" and not self.encoder:
            raise ValueError("init: encoder needs an encoder")
        return self

    @property
    def starts_from_encoder(self) -> bool:
        return self.encoder is not None and self.init != "mean"


class PathKeySpec(Strict):
    """A key latent placed at a frame: a portrait projected (a morph target), a latent file, or a seed."""

    frame: int = Field(ge=0, le=MAX_FRAME_NUMBER)
    image: str | None = Field(None, description="a portrait: its face is aligned and projected")
    latent: str | None = Field(None, description="a .npz or .npy file of W+ [num_ws, w_dim] (or a w)")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="a random z mapped to w")
    psi: float = Field(1.0, ge=0, le=2, description="truncation toward the average latent (1: none)")

    @model_validator(mode="after")
    def one_source(self) -> PathKeySpec:
        if sum(v is not None for v in (self.image, self.latent, self.seed)) != 1:
            raise ValueError("give exactly one of image, latent or seed")
        return self


class EditSpec(Strict):
    """An attribute edit along the path: a linear direction (InterFaceGAN-style, `vfx direction learn`), or
    an attribute of the path's learned mapper (L2L, `vfx train mapper`), which keeps the person better."""

    direction: str | None = Field(
        None, description="a direction file (vfx direction learn), relative to the manifest"
    )
    attribute: str | None = Field(None, description="an attribute the path's mapper edits (path.mapper)")
    amount: float = Field(
        ge=-100,
        le=100,
        description="how far: the direction's score moves this much, or the attribute changes this much in "
        "its unit (degrees for yaw, pitch and roll; a ratio to the eye distance for the others)",
    )
    frames: str | None = Field(None, description="where the edit applies (default: the whole shot)")
    ramp: int = Field(0, ge=0, le=10000, description="frames over which it eases in and out")

    @model_validator(mode="after")
    def one_kind(self) -> EditSpec:
        if (self.direction is None) == (self.attribute is None):
            raise ValueError("give exactly one of direction or attribute")
        return self


class PathSpec(Strict):
    """The latent for every frame: a spline through key latents, plus attribute edits."""

    enabled: bool = True
    generator: str | None = Field(None, description="default: the project section's")
    interpolation: Literal["catmull_rom", "linear", "slerp"] = "catmull_rom"
    alpha: float = Field(0.5, ge=0, le=1, description="0 uniform, 0.5 centripetal, 1 chordal")
    ends: Literal["extrapolated", "clamped"] = "extrapolated"
    ease: bool = False
    period: int | None = Field(
        None, ge=2, le=MAX_FRAMES, description="a closed loop: key 0 again this many frames on"
    )
    projected: bool = Field(True, description="use the shot's projected keyframes as keys")
    keyframes: list[PathKeySpec] = []
    steps: int = Field(1000, ge=1, le=100000, description="projection steps for image keys")
    size: int = Field(512, ge=32, le=8192, description="frame size when there is no plate")
    mapper: str | None = Field(
        None, description="a registered latent mapper's name, or its folder or file: for edits by attribute"
    )
    recognisers: str | None = Field(
        None,
        description="the generator's attribute recognisers (folder or file): the report reads each edit "
        "with them beside dlib's landmarks",
    )
    edits: list[EditSpec] = []


class FaceModelPaths(Strict):
    """Model files to use instead of the registered ones (paths relative to the manifest)."""

    landmarks: str | None = None
    detector: str | None = None
    recognition: str | None = None


class FacesSpec(Strict):
    enabled: bool = True
    landmarks: Literal["dlib68", "mesh"] = Field(
        "dlib68", description="dlib's 68 points, or MediaPipe's 478-point face mesh (mapped to the same 68)"
    )
    detector: Literal["hog", "cnn", "mediapipe"] | None = Field(
        None, description="default: mediapipe (BlazeFace full range) with the mesh, hog with dlib68"
    )
    profile_yaw: float = Field(
        60.0,
        ge=0,
        le=180,
        description="frames whose head is turned further than this (degrees of yaw) are 'profile': "
        "face stages leave them as they are and the report lists them for an artist",
    )
    detect_size: int = Field(640, ge=0, le=8192, description="longest side detection runs at; 0 = full size")
    upsample: int = Field(0, ge=0, le=3)
    reference: str | None = Field(
        None, description="an image of the actor; without one, the first face the track finds is the actor"
    )
    identity_threshold: float = Field(0.6, gt=0, le=2, description="farther faces are not the actor")
    identity_every: int = Field(
        24,
        ge=0,
        le=100000,
        description="an identity check every this many frames (0: at re-acquisitions only)",
    )
    cut_threshold: float | None = Field(
        CUT_THRESHOLD,
        gt=0,
        le=255,
        description="picture change that makes a camera cut; null: no cut detection",
    )
    min_scene: int = Field(MIN_SCENE, ge=1, le=100000, description="frames: no cut closer to the last one")
    crop_size: int = Field(256, ge=64, le=1024)
    smooth: SmoothSpec = SmoothSpec()
    max_gap: int = Field(5, ge=0, le=1000, description="gaps up to this many frames are interpolated")
    mask: MaskSpec = MaskSpec()
    models: FaceModelPaths = FaceModelPaths()


class ElementSpec(Strict):
    """The face element and its matte in plate coordinates, for compositors who finish elsewhere."""

    format: Literal["png16", "exr", "none"] = "png16"
    prores4444: bool = False


class CompositeSpec(Strict):
    enabled: bool = True
    alteration: Literal["none", "mirror", "recolor", "retouch"] = Field(
        "none", description="a test change to the face while no face stage (swap, projection) runs"
    )
    color: Literal["rct", "hist", "lct", "none"] = "rct"
    blend: Literal["alpha", "laplacian", "poisson"] = "laplacian"
    mask: MaskSpec | None = Field(None, description="overrides faces.mask")
    sharpen: float = Field(0.0, ge=0, le=3)
    blur: bool = Field(False, description="blur the new face to the softness of the plate's face, each frame")
    shutter: float | None = Field(
        None,
        gt=0,
        le=360,
        description="the camera's shutter angle (degrees): the new face gets at least the motion blur the "
        "face's tracked motion draws through it",
    )
    grain: bool = True
    grain_size: float = Field(
        0.0,
        ge=0,
        le=1.5,
        description="the plate's grain size, px: the sigma that correlates white noise into it (0: fine)",
    )
    element: ElementSpec = ElementSpec()


class SwapSpec(Strict):
    enabled: bool = True
    model: str = Field(description="a model folder from vfx train swap (or its swap.pt)")
    direction: Literal["a_to_b", "b_to_a"] = "a_to_b"
    batch: int = Field(32, ge=1, le=1024)
    use_model_mask: bool = True
    reference_a: str | None = Field(None, description="crops of person A, for the identity measure")
    reference_b: str | None = Field(None, description="crops of person B, for the identity measure")


class StylizeSpec(Strict):
    """Each tracked face redrawn in another domain by a domain transfer network (vfx train stylize)."""

    enabled: bool = True
    model: str = Field(description="a model folder from vfx train stylize (or its stylizer.pt)")
    strength: float = Field(1.0, ge=0, le=1, description="1: the drawing alone; 0.5: half the face beneath")
    batch: int = Field(16, ge=1, le=1024)


class ManifestModel(Strict):
    shot: str
    plate: PlateSpec | None = None
    frames: str | int | None = None
    fps: float | str | None = None
    output: OutputSpec = OutputSpec()
    faces: FacesSpec | None = None
    swap: SwapSpec | None = None
    project: ProjectSpec | None = None
    path: PathSpec | None = None
    stylize: StylizeSpec | None = None
    composite: CompositeSpec | None = None

    @field_validator("shot")
    @classmethod
    def shot_name(cls, v: str) -> str:
        if not SHOT_NAME.match(v):
            raise ValueError(f"{v!r} is not a shot name: use letters, digits, _ and - only")
        if len(v) > MAX_SHOT_NAME:
            raise ValueError(f"a shot name of {len(v)} characters is too long: at most {MAX_SHOT_NAME}")
        return v

    @field_validator("fps", mode="before")
    @classmethod
    def fps_value(cls, v: Any) -> Any:
        """Checked before the union's members see it: there `true` is 1 fps and `.inf` fails as both a
        float and a string, in two errors that name neither."""
        if v is None:
            return v
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise ValueError(f"{v!r} is not a frame rate (24, 23.976 or 24000/1001)")
        if not 0 < parse_fps(v) <= MAX_FPS:
            raise ValueError(f"{v} is out of range: a frame rate is more than 0 and at most {MAX_FPS}")
        return v

    @field_validator("frames", mode="before")
    @classmethod
    def frames_value(cls, v: Any) -> Any:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | str)):
            raise ValueError(f"{v!r} is not a frame range like 1001-1100")
        return v


def parse_fps(v: float | str) -> Fraction:
    try:
        f = Fraction(str(v)) if isinstance(v, str) else Fraction(v).limit_denominator(1001 * 1000)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ValueError(f"{v!r} is not a frame rate (24, 23.976 or 24000/1001)") from None
    return f


def parse_range(text: str | int) -> tuple[int, int]:
    """'1001-1100' (inclusive) or a single frame '1001', within the frame numbers and length a shot may
    have."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
    if not m:
        raise ValueError(f"{text!r} is not a frame range like 1001-1100")
    for number in m.groups():
        if number is not None and (len(number) > 9 or int(number) > MAX_FRAME_NUMBER):
            raise ValueError(f"frame {number[:12]} is past {MAX_FRAME_NUMBER}, the largest frame number")
    a, b = int(m.group(1)), int(m.group(2) or m.group(1))
    if b < a:
        raise ValueError(f"end {b} is before start {a}")
    if b - a + 1 > MAX_FRAMES:
        raise ValueError(f"{a}-{b} is {b - a + 1} frames; a shot has at most {MAX_FRAMES}")
    return a, b


@dataclass(frozen=True)
class Shot:
    """A manifest checked against its plate: everything a render needs, with paths resolved."""

    name: str
    manifest_path: Path
    spec: ManifestModel
    plate: Plate
    first: int  # first frame number rendered (inclusive)
    last: int  # last frame number rendered (inclusive)
    range_first: int  # the manifest's frame range, which whole-shot data (the face track) covers
    range_last: int
    plate_first: int  # the frame number of the plate's first frame
    fps: Fraction
    settings_hash: str

    @property
    def frame_count(self) -> int:
        return self.last - self.first + 1

    def resolve(self, relative: str) -> str:
        """A path from the manifest, relative to the manifest's folder."""
        return _resolve(self.manifest_path.resolve().parent, relative)

    def plate_index(self, frame: int) -> int:
        return frame - self.plate_first

    def frame_timecode(self, frame: int) -> str:
        """A shot frame's timecode, counted at the shot's rate from the plate's first frame's (the comp's
        frames and movies carry it, so that editorial can conform them); "" when the plate has none, or
        one that is not a timecode at that rate (`vfx validate` warns of it), or a movie played at another
        rate than its own (`fps:` set otherwise), whose timecode counts other frames."""
        if not self.plate.info.timecode or self.fps != self.plate.info.fps:
            return ""
        try:
            return offset_timecode(self.plate.info.timecode, self.fps, self.plate_index(frame))
        except TimecodeError:
            return ""

    def read_frames(self, first: int, last: int, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """The plate's pictures of frames first..last (the shot's numbers), in order (scaled to `size`,
        width and height, when given). A frame that cannot be decoded is named by its number in the shot
        (1029), not by its place in the plate file (28)."""
        try:
            yield from self.plate.read(self.plate_index(first), self.plate_index(last) + 1, size)
        except FrameError as e:
            raise e.numbered(self.plate_first) from None

    @property
    def plate_encoding(self) -> PlateColorspace | None:
        """The plate's colour conversion when the comp is written back in the plate's own encoding
        (output.colorspace: plate); None for a comp in the working space."""
        if self.spec.output.colorspace == "plate" and isinstance(self.plate, ConvertedPlate):
            return self.plate.colorspace
        return None

    def read_frames_with_samples(self, first: int, last: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """As read_frames, of a plate converted from its colour space: each frame's own samples with the
        picture made of them (a comp in the plate's encoding keeps the samples where no new face went)."""
        assert isinstance(self.plate, ConvertedPlate)
        try:
            yield from self.plate.read_with_samples(self.plate_index(first), self.plate_index(last) + 1)
        except FrameError as e:
            raise e.numbered(self.plate_first) from None

    def where(self, *loc: Any) -> str:
        """`path:LINE field` of a manifest field, for an error found after loading (a latent file that
        does not fit the generator): the manifest is read again for the line."""
        try:
            root, _ = parse_yaml(self.manifest_path, read_text(self.manifest_path))
        except ManifestError:
            root = None
        return f"{self.manifest_path}:{_node_line(root, loc)} {_field_name(loc)}"

    def with_frames(self, first: int, last: int) -> Shot:
        plate_last = self.plate_first + self.plate.info.frame_count - 1
        if first < self.plate_first or last > plate_last or last < first:
            raise ManifestError(
                f"{self.manifest_path}: --frames {first}-{last} is outside the plate's frames "
                f"{self.plate_first}-{plate_last}"
            )
        return Shot(**{**self.__dict__, "first": first, "last": last})


def _node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the YAML node at a pydantic error location (or of its nearest parent)."""
    node, line = root, (root.start_mark.line + 1) if root else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            # the last match: keys merged in (`<<: *defaults`) come before those that override them
            found = [(key, value) for key, value in node.value if key.value == part]
            if not found:
                return line
            key, node = found[-1]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _node_loc(root: yaml.Node, target: yaml.Node) -> tuple[Any, ...]:
    """The location (keys and indexes) of a node in the document; () for the root or when not found."""
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, loc = stack.pop()
        if node is target:
            return loc
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack += [(value, (*loc, key.value)) for key, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(value, (*loc, i)) for i, value in enumerate(node.value)]
    return ()


def _count_values(root: yaml.Node, limit: int) -> int:
    """Values in the document with its aliases expanded, counting up to just past `limit`: a few lines
    of aliases to aliases (a "billion laughs") expand to more than any machine holds."""
    stack, n = [root], 0
    while stack and n <= limit:
        node = stack.pop()
        n += 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += (key, value)
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
    return n


def _field_name(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "manifest"


def _message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def _resolve(base: Path, p: str) -> str:
    if p.startswith("builtin:") or Path(p).is_absolute():
        return p
    return str((base / p).resolve())


def read_text(path: Path) -> str:
    """The manifest's text: at most MAX_MANIFEST_BYTES (read no further: a wrong file can be huge, or
    endless), and UTF-8."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as e:
        raise ManifestError(f"{path}: cannot read manifest: {e.strerror or e}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{path} manifest: larger than {MAX_MANIFEST_BYTES >> 10} KB, the limit for a manifest "
            "(a shot's manifest is a few KB: is this the right file?)"
        )
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - raw.rfind(b"\n", 0, e.start)
        raise ManifestError(
            f"{path}:{line} manifest: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None


def parse_yaml(path: Path, text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its data, built from one parse."""
    loader = None
    try:
        loader = ManifestLoader(text)  # its reader refuses control characters already
        root = loader.get_single_node()
        if root is not None and _count_values(root, MAX_YAML_VALUES) > MAX_YAML_VALUES:
            raise ManifestError(
                f"{path}:1 manifest: more than {MAX_YAML_VALUES} values once its YAML aliases are expanded"
            )
        return root, (loader.construct_document(root) if root is not None else None)
    except DuplicateKeyError as e:
        loc = (*_node_loc(root, e.mapping), e.key) if root is not None else (e.key,)
        raise ManifestError(
            f"{path}:{e.problem_mark.line + 1} {_field_name(loc)}: duplicate key "
            f"(first on line {e.first.start_mark.line + 1})"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        if line is None and isinstance(getattr(e, "position", None), int):  # a reader error
            line = text.count("\n", 0, e.position) + 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ManifestError(f"{path}{f':{line}' if line else ''} yaml: {problem}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        line = loader.get_mark().line + 1 if loader else 1
        raise ManifestError(f"{path}:{line} yaml: nested too deeply") from None
    finally:
        if loader:
            loader.dispose()


def read_manifest(path: Path) -> tuple[ManifestModel, yaml.Node | None]:
    root, data = parse_yaml(path, read_text(path))
    if not isinstance(data, dict):
        raise ManifestError(f"{path}:1 manifest: expected a mapping of keys (shot, plate, ...)")
    try:
        return ManifestModel.model_validate(data), root
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ManifestError(
            f"{path}:{_node_line(root, loc)} {_field_name(loc)}: {_message(err)}{more}"
        ) from None


def shot_name_clashes(paths: list[Path]) -> dict[Path, str]:
    """The manifests among `paths` that name the same shot, each with the error that says so. Their renders
    would share one folder (render/<shot>/): each one's latest version would be the other's, `vfx status`
    would call both stale for ever, and an overnight run would render both again every night. A manifest
    that cannot be read is left to its own error."""
    by_name: dict[str, list[tuple[Path, yaml.Node | None]]] = {}
    seen = set()
    for path in paths:
        if Path(path).resolve() in seen:  # the same file named twice is one shot
            continue
        seen.add(Path(path).resolve())
        try:
            spec, root = read_manifest(Path(path))
        except ManifestError:
            continue
        by_name.setdefault(spec.shot, []).append((Path(path), root))
    clashes = {}
    for shot, found in by_name.items():
        for path, root in found if len(found) > 1 else ():
            others = ", ".join(str(q) for q, _ in found if q != path)
            clashes[path] = (
                f"{path}:{_node_line(root, ('shot',))} shot: {shot!r} is the shot of {others} too; "
                f"give each manifest its own (both would render into {shot}/)"
            )
    return clashes


def _check_swap(path: Path, root: yaml.Node | None, base: Path, spec: ManifestModel) -> None:
    from pipeline.swap.checkpoint import CheckpointError, checkpoint_config
    from pipeline.swap.data import MIN_FACES, face_crops

    swap = spec.swap
    assert swap is not None
    line = _node_line(root, ("swap", "model"))
    if not (spec.faces and spec.faces.enabled and spec.composite and spec.composite.enabled):
        raise ManifestError(
            f"{path}:{_node_line(root, ('swap',))} swap: needs enabled faces and composite sections"
        )
    for key in ("reference_a", "reference_b"):
        folder = getattr(swap, key)
        if not folder:
            continue
        crops = Path(_resolve(base, folder))
        where = f"{path}:{_node_line(root, ('swap', key))} swap.{key}: {crops}"
        if not crops.is_dir():
            raise ManifestError(f"{where}: folder not found")
        count = len(face_crops(crops))
        if count < MIN_FACES:  # it failed at render, after the track, in training's words
            raise ManifestError(
                f"{where}: {count} face crops; the identity measure needs at least {MIN_FACES} (vfx extract "
                "makes them)"
            )
    try:
        config = checkpoint_config(Path(_resolve(base, swap.model)))
    except CheckpointError as e:
        raise ManifestError(f"{path}:{line} swap.model: {e}") from None
    if config["size"] != spec.faces.crop_size:
        raise ManifestError(
            f"{path}:{line} swap.model: the model is preset {config['preset']} ({config['size']} px faces) "
            f"but faces.crop_size is {spec.faces.crop_size}; set crop_size: {config['size']} or use another "
            "model"
        )


def _check_stylize(path: Path, root: yaml.Node | None, base: Path, spec: ManifestModel) -> None:
    """The stylizer reads (a damaged, wrong-sized or foreign file is refused here, not by a render worker),
    and there are tracked faces to draw."""
    from pipeline.stylize.dtn_train import load_stylizer

    stylize = spec.stylize
    assert stylize is not None
    if not (spec.faces and spec.faces.enabled and spec.composite and spec.composite.enabled):
        raise ManifestError(
            f"{path}:{_node_line(root, ('stylize',))} stylize: needs enabled faces and composite sections"
        )
    try:
        load_stylizer(_resolve(base, stylize.model), "cpu")
    except PipelineError as e:
        raise ManifestError(
            f"{path}:{_node_line(root, ('stylize', 'model'))} stylize.model: {e.one_line()}"
        ) from None


def _check_project(path: Path, root: yaml.Node | None, spec: ManifestModel) -> None:
    project = spec.project
    assert project is not None
    if not (spec.faces and spec.faces.enabled and spec.composite and spec.composite.enabled):
        raise ManifestError(
            f"{path}:{_node_line(root, ('project',))} project: needs enabled faces and composite sections"
        )
    if project.source == "swap" and not (spec.swap and spec.swap.enabled):
        raise ManifestError(
            f"{path}:{_node_line(root, ('project', 'source'))} project.source: swap needs an enabled swap "
            "section"
        )
    if project.key_frames and project.mode != "keyframes":
        raise ManifestError(
            f"{path}:{_node_line(root, ('project', 'key_frames'))} project.key_frames: applies to "
            "mode: keyframes only"
        )


def _check_generators(path: Path, root: yaml.Node | None, base: Path, spec: ManifestModel) -> None:
    """Each generator named is there and, where its stage runs, is a generator file (read without torch,
    see `check_generator_file`)."""
    for stage in ("project", "path"):
        section = getattr(spec, stage)
        if section is None or not section.generator:
            continue
        try:
            generator = generator_path(section.generator, base)
            if section.enabled:
                check_generator_file(generator)
        except PipelineError as e:
            raise ManifestError(
                f"{path}:{_node_line(root, (stage, 'generator'))} {stage}.generator: {e.one_line()}"
            ) from None


def _check_encoder(path: Path, root: yaml.Node | None, base: Path, project: ProjectSpec) -> None:
    """The encoder is an encoder file, trained for the shot's generator (its file, and a registered one's
    entry, record the generator's checksum): its W+ would draw other faces with another."""
    assert project.encoder is not None
    where = f"{path}:{_node_line(root, ('project', 'encoder'))} project.encoder"
    try:
        encoder = encoder_path(project.encoder, base)
        generator = generator_path(project.generator, base)
        actual = file_digest(generator)
        entry = registered_encoders().get(project.encoder)
        if entry is not None and actual != entry.generator_sha256:
            raise ManifestError(
                f"{where}: {project.encoder} was trained for the generator with sha256 "
                f"{entry.generator_sha256[:16]}..., not {generator}; train an encoder for it with "
                "vfx train encoder"
            )
        data = read_header(encoder, ENCODER_FORMAT, ENCODER_VERSION, "an encoder", "vfx train encoder")
        refuse_other_generator(encoder, str(data.get("generator_sha256", "")), generator, actual)
    except ModelError as e:
        raise ManifestError(f"{where}: {e.one_line()}") from None


def _check_file(path: Path, root: yaml.Node | None, loc: tuple[Any, ...], file: Path, kind: str) -> None:
    """A file the manifest names is there and reads as what it should be (an image, a latent array):
    checked at load, so a bad one is refused by validate, not by a render worker after its retries."""
    where = f"{path}:{_node_line(root, loc)} {_field_name(loc)}"
    if not file.is_file():
        raise ManifestError(f"{where}: {file}: file not found")
    try:
        if kind == "image":
            read_image(file)
        elif kind == "latent":
            read_array(file, keys=("latents",), ndims=(1, 2))  # [w_dim] or [num_ws, w_dim]
    except PipelineError as e:
        raise ManifestError(f"{where}: {e.one_line()}") from None


def _check_path(
    path: Path, root: yaml.Node | None, base: Path, spec: ManifestModel, shot_frames: tuple[int, int]
) -> None:
    from pipeline.stylegan.edits import Direction
    from pipeline.stylegan.paths import period_problem

    ps = spec.path
    assert ps is not None
    at: dict[int, int] = {}
    for i, key in enumerate(ps.keyframes):  # a second key at a frame silently replaced the first
        if key.frame in at:
            loc = ("path", "keyframes", i, "frame")
            raise ManifestError(
                f"{path}:{_node_line(root, loc)} {_field_name(loc)}: frame {key.frame} already has a key "
                f"(path.keyframes[{at[key.frame]}])"
            )
        at[key.frame] = i
    problem = period_problem(ps.period, [k.frame for k in ps.keyframes])
    if problem and ps.interpolation == "catmull_rom":
        raise ManifestError(f"{path}:{_node_line(root, ('path', 'period'))} path.period: {problem}")
    projecting = spec.project is not None and spec.project.enabled
    if not ps.generator and not projecting:
        raise ManifestError(
            f"{path}:{_node_line(root, ('path',))} path.generator: required without a project section"
        )
    if not ps.keyframes and not (ps.projected and projecting):
        raise ManifestError(
            f"{path}:{_node_line(root, ('path',))} path: no keys: add keyframes, or project the shot's faces"
        )
    for i, key in enumerate(ps.keyframes):
        for kind in ("image", "latent"):
            file = getattr(key, kind)
            if file:
                _check_file(path, root, ("path", "keyframes", i, kind), Path(_resolve(base, file)), kind)
    generator_ref = ps.generator or (spec.project.generator if spec.project else None)
    names = _mapper_attributes(path, root, base, ps, generator_ref) if ps.mapper else None
    if ps.recognisers:
        _check_recognisers(path, root, base, ps, spec)
    for i, edit in enumerate(ps.edits):
        if edit.direction is not None:
            loc = ("path", "edits", i, "direction")
            try:
                Direction.load(Path(_resolve(base, edit.direction)))
            except PipelineError as e:
                raise ManifestError(f"{path}:{_node_line(root, loc)} {_field_name(loc)}: {e}") from None
        else:
            loc = ("path", "edits", i, "attribute")
            where = f"{path}:{_node_line(root, loc)} {_field_name(loc)}"
            if names is None:
                raise ManifestError(f"{where}: an edit by attribute needs path.mapper (vfx train mapper)")
            if edit.attribute not in names:
                raise ManifestError(
                    f"{where}: {edit.attribute!r} is not an attribute of mapper {ps.mapper} "
                    f"({', '.join(names)})"
                )
        first, last = shot_frames
        if edit.frames is not None:
            loc = ("path", "edits", i, "frames")
            try:
                first, last = parse_range(edit.frames)
            except ValueError as e:
                raise ManifestError(f"{path}:{_node_line(root, loc)} {_field_name(loc)}: {e}") from None
            if last < shot_frames[0] or first > shot_frames[1]:
                raise ManifestError(
                    f"{path}:{_node_line(root, loc)} {_field_name(loc)}: {first}-{last} is outside the "
                    f"shot's frames {shot_frames[0]}-{shot_frames[1]}: the edit would change nothing"
                )
        if 2 * edit.ramp > last - first:  # easing in and out would meet before the full amount
            loc = ("path", "edits", i, "ramp")
            half = (last - first) / (2 * edit.ramp)
            peak = half * half * (3 - 2 * half)  # the ramp's smoothstep at the middle frame
            raise ManifestError(
                f"{path}:{_node_line(root, loc)} {_field_name(loc)}: {edit.ramp} frames to ease in and "
                f"{edit.ramp} out do not fit in the edit's frames {first}-{last} (it would reach "
                f"{peak:.0%} of its amount); at most {(last - first) // 2}"
            )


def _mapper_attributes(
    path: Path, root: yaml.Node | None, base: Path, ps: PathSpec, generator_ref: str | None
) -> list[str]:
    """The attributes the path's mapper edits; the mapper is refused here when it cannot be read, or was
    trained for another generator than `generator_ref` (the path's)."""
    loc = ("path", "mapper")
    assert ps.mapper is not None
    try:
        mapper = mapper_path(ps.mapper, base)
        data = read_header(mapper, MAPPER_FORMAT, MAPPER_VERSION, "a latent mapper", "vfx train mapper")
        if generator_ref:  # a mapper serves the generator it was trained on: refused here, not mid-render
            generator = generator_path(generator_ref, base)
            recorded = str(data.get("generator_sha256", ""))
            refuse_other_generator(mapper, recorded, generator, file_digest(generator), MAPPER_REMEDY)
        return [str(n) for n in data["config"]["names"]]
    except (KeyError, TypeError) as e:
        raise ManifestError(
            f"{path}:{_node_line(root, loc)} {_field_name(loc)}: a damaged mapper ({e})"
        ) from None
    except PipelineError as e:
        raise ManifestError(f"{path}:{_node_line(root, loc)} {_field_name(loc)}: {e.one_line()}") from None


def _check_recognisers(
    path: Path, root: yaml.Node | None, base: Path, ps: PathSpec, spec: ManifestModel
) -> None:
    """The recognisers read, and were trained on the shot's generator's faces (their file records its
    checksum): another generator's faces would be read as nonsense."""
    from pipeline.stylegan.recognise import load_recognisers

    loc = ("path", "recognisers")
    where = f"{path}:{_node_line(root, loc)} {_field_name(loc)}"
    assert ps.recognisers is not None
    try:
        _, meta = load_recognisers(_resolve(base, ps.recognisers), "cpu")
        generator = generator_path(ps.generator or (spec.project.generator if spec.project else None), base)
        recorded = str(meta.get("generator_sha256", ""))
        if recorded != file_digest(generator):
            raise ManifestError(
                f"{where}: trained on the faces of the generator with sha256 {recorded[:16]}..., not "
                f"{generator}; train recognisers for it with vfx train recognisers"
            )
    except PipelineError as e:
        if isinstance(e, ManifestError):
            raise
        raise ManifestError(f"{where}: {e.one_line()}") from None


def _check_plate_encoding(path: Path, root: yaml.Node | None, spec: ManifestModel, info: PlateInfo) -> None:
    """A comp in the plate's own encoding needs the plate's colour space, and is written as the plate's
    samples are: an EXR plate's as EXR (its values), any other's as PNG (its code values)."""
    if spec.output.colorspace != "plate":
        return
    line = _node_line(root, ("output", "colorspace"))
    if spec.plate is None or not spec.plate.colorspace:
        raise ManifestError(
            f"{path}:{line} output.colorspace: plate needs the plate's encoding: set plate.colorspace"
        )
    if (info.codec == "exr") != (spec.output.sequence == "exr"):
        kind = "an EXR plate's comp as EXR" if info.codec == "exr" else f"a {info.codec} plate's comp as PNG"
        raise ManifestError(
            f"{path}:{line} output.colorspace: plate writes the plate's own samples, {kind}: set "
            f"output.sequence to {'exr' if info.codec == 'exr' else 'png16 (or png8)'}"
        )


def _check_hdr_sequence(path: Path, root: yaml.Node | None, spec: ManifestModel, info: PlateInfo) -> None:
    """An HDR plate's frames are written in its own code values (PQ or HLG): 8 bits band them, and EXR's
    linear light is made through the sRGB curve, which would misread them."""
    sequence = spec.output.sequence
    if info.color.hdr and sequence != "png16":
        why = "has 8 bits, too few for" if sequence == "png8" else "is made through the sRGB curve, not"
        line = _node_line(root, ("output", "sequence"))
        raise ManifestError(
            f"{path}:{line} output.sequence: {sequence} {why} the plate's {info.color.hdr} transfer "
            f"({info.color.describe()}); use png16"
        )


def _no_plate(
    path: Path, root: yaml.Node | None, spec: ManifestModel, fps: Fraction | None
) -> tuple[PlateSpec, Plate, int]:
    """A shot without a plate is a generated one: its frames are the path's faces, full frame, on black."""
    if spec.path is None or not spec.path.enabled:
        raise ManifestError(f"{path}:1 plate: required key is missing (only a path shot can go without)")
    for stage in ("faces", "swap", "project", "stylize", "composite"):
        section = getattr(spec, stage)
        if section is not None and section.enabled:
            raise ManifestError(
                f"{path}:{_node_line(root, (stage,))} {stage}: a shot without a plate has no faces to work on"
            )
    if spec.frames is None:
        raise ManifestError(f"{path}:1 frames: a shot without a plate needs its frame range (1001-1096)")
    try:
        first, last = parse_range(spec.frames)
    except ValueError as e:
        raise ManifestError(f"{path}:{_node_line(root, ('frames',))} frames: {e}") from None
    size = spec.path.size
    source = f"builtin:black:{size}x{size}"
    plate_spec = PlateSpec(still=source, hold=last - first + 1, first_frame=first)
    return plate_spec, open_plate("still", source, fps=fps, hold=last - first + 1), first


def _plate_colorspace(path: Path, root: yaml.Node | None, base: Path, p: PlateSpec) -> PlateColorspace | None:
    """The plate's colour conversion (OpenColorIO), or None for a plate in display-referred sRGB already;
    a space or config that cannot convert it is the manifest's error, at its field."""
    if not p.colorspace:
        return None
    config = DEFAULT_CONFIG
    if p.ocio_config:
        config = p.ocio_config if p.ocio_config.startswith("ocio://") else _resolve(base, p.ocio_config)
    try:
        return PlateColorspace.open(p.colorspace, config)
    except ColorspaceError as e:
        loc = ("plate", "ocio_config") if e.about_config and p.ocio_config else ("plate", "colorspace")
        raise ManifestError(f"{path}:{_node_line(root, loc)} {_field_name(loc)}: {e}") from None


def load_shot(path: str | Path, frames: str | None = None) -> Shot:
    """Read, validate and check a manifest against its plate (opened and probed, not decoded); with
    `frames` (a command line's --frames, "1010-1020"), the shot narrowed to that part."""
    path = Path(path)
    spec, root = read_manifest(path)
    base = path.resolve().parent
    fps_override = parse_fps(spec.fps) if spec.fps is not None else None
    if spec.plate is None:
        p, plate, plate_first = _no_plate(path, root, spec, fps_override)
    else:
        p = spec.plate
        move = CameraMove(zoom=p.move.zoom, pan=p.move.pan, rotate=p.move.rotate) if p.move else None
        colorspace = _plate_colorspace(path, root, base, p)
        try:
            source, layer = _resolve(base, p.source), p.layer or ""
            plate = open_plate(
                p.kind, source, fps=fps_override, hold=p.hold, move=move, layer=layer, colorspace=colorspace
            )
        except MediaError as e:
            loc = ("plate", "layer") if p.layer and isinstance(e, LayerError) else ("plate", p.kind)
            raise ManifestError(f"{path}:{_node_line(root, loc)} {_field_name(loc)}: {e}") from None
        plate_first = (
            plate.info.first_frame
            if plate.info.first_frame is not None
            else (p.first_frame if p.first_frame is not None else DEFAULT_FIRST_FRAME)
        )
    info = plate.info
    _check_hdr_sequence(path, root, spec, info)
    _check_plate_encoding(path, root, spec, info)
    plate_last = plate_first + info.frame_count - 1
    if plate_last > MAX_FRAME_NUMBER:
        loc = ("plate", "first_frame") if spec.plate and spec.plate.first_frame is not None else ("plate",)
        raise ManifestError(
            f"{path}:{_node_line(root, loc)} {_field_name(loc)}: the plate's frames "
            f"{plate_first}-{plate_last} go past {MAX_FRAME_NUMBER}, the largest frame number"
        )
    first, last = plate_first, plate_last
    if spec.frames is not None:
        line = _node_line(root, ("frames",))
        try:
            first, last = parse_range(spec.frames)
        except ValueError as e:
            raise ManifestError(f"{path}:{line} frames: {e}") from None
        if first < plate_first:
            raise ManifestError(
                f"{path}:{line} frames: start {first} is before the plate's first frame {plate_first}"
            )
        if last > plate_last:
            raise ManifestError(
                f"{path}:{line} frames: end {last} is past the plate's last frame {plate_last}"
            )
    movie_field = ("output", "movies") if spec.output.movies else None
    if spec.composite is not None and spec.composite.enabled and spec.composite.element.prores4444:
        movie_field = movie_field or ("composite", "element", "prores4444")
    if movie_field:  # before the render, not at its end
        try:
            ffmpeg_executable()
        except MediaError as e:
            raise ManifestError(
                f"{path}:{_node_line(root, movie_field)} {_field_name(movie_field)}: {e}"
            ) from None
    for i, preset in enumerate(spec.output.movies):
        mw, mh = MOVIE_PRESETS[preset].min_size
        if info.width < mw or info.height < mh:
            raise ManifestError(
                f"{path}:{_node_line(root, ('output', 'movies', i))} output.movies[{i}]: {preset} needs at "
                f"least {mw}x{mh} pixels; the plate is {info.width}x{info.height}"
            )
    if spec.composite is not None and spec.composite.enabled and not (spec.faces and spec.faces.enabled):
        raise ManifestError(
            f"{path}:{_node_line(root, ('composite',))} composite: needs an enabled faces section (the track)"
        )
    if (
        spec.composite is not None
        and spec.composite.element.prores4444
        and spec.composite.element.format != "png16"
    ):
        loc = ("composite", "element", "prores4444")
        raise ManifestError(
            f"{path}:{_node_line(root, loc)} composite.element.prores4444: the ProRes element "
            "is made from the PNG 16-bit element sequence (format: png16)"
        )
    _check_generators(path, root, base, spec)
    if spec.swap is not None and spec.swap.enabled:
        _check_swap(path, root, base, spec)
    if spec.project is not None and spec.project.enabled:
        _check_project(path, root, spec)
        for i, key in enumerate(spec.project.key_frames):
            if not first <= key <= last:
                raise ManifestError(
                    f"{path}:{_node_line(root, ('project', 'key_frames', i))} project.key_frames[{i}]: "
                    f"frame {key} is outside the shot's frames {first}-{last}"
                )
    if spec.path is not None and spec.path.enabled:
        _check_path(path, root, base, spec, (first, last))
    if spec.stylize is not None and spec.stylize.enabled:
        _check_stylize(path, root, base, spec)
    if spec.project is not None and spec.project.enabled and spec.project.starts_from_encoder:
        _check_encoder(path, root, base, spec.project)
    if spec.faces is not None:
        for key, value in [("reference", spec.faces.reference), *spec.faces.models.model_dump().items()]:
            if value:
                loc = ("faces", key) if key == "reference" else ("faces", "models", key)
                _check_file(
                    path, root, loc, Path(_resolve(base, value)), "image" if key == "reference" else ""
                )
    settings = spec.model_dump(mode="json")
    settings["plate"] = {**p.model_dump(mode="json"), "resolved": _resolve(base, p.source)}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    shot = Shot(
        name=spec.shot,
        manifest_path=path,
        spec=spec,
        plate=plate,
        first=first,
        last=last,
        range_first=first,
        range_last=last,
        plate_first=plate_first,
        fps=fps_override or info.fps,
        settings_hash=digest,
    )
    if not frames:
        return shot
    try:
        part_first, part_last = parse_range(frames)
    except ValueError as e:
        raise ManifestError(f"--frames: {e}") from None
    return shot.with_frames(part_first, part_last)
