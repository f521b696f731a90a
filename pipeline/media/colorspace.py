"""Plates in a camera's or a scanner's encoding (log, wide gamut), converted by OpenColorIO as they are read.

The pipeline's frames are display-referred: sRGB-encoded Rec.709 values (media.color). A plate shot in
ARRI LogC, S-Log3 or REDLog3G10, or scanned as ADX, is flat and off in hue when its code values are taken
as those: a detector and a face model see a grey fog, and the comp's colour match works on the wrong
numbers. A `PlateColorspace` converts each frame from the plate's colour space to scene-linear Rec.709,
then through the sRGB curve extended past 0 and 1, as an EXR plate is read: highlights above display white
and colours outside Rec.709 keep their values (above 1, below 0) in float32, so the comp's EXR holds them.

A comp can go back into the plate's own encoding (`in_plate_encoding`): the plate's samples wherever the
new face did not go, the new face's pixels through the inverse conversion. Its movies are made through a
3D LUT of the conversion (`display_lut`).

The conversion is OpenColorIO's (the Academy's studio config built into the library by default, or a
facility's own config with the interchange roles of OCIO 2), on blocks of rows in threads: OpenColorIO lets
go of the GIL, and a 1080p LogC frame takes 30-38 ms on one core.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import MediaError
from pipeline.media.color import to_float

# the Academy's studio config of OpenColorIO 2.6 (its camera log spaces, ADX scans, display encodings),
# named by version so that a newer library's "latest" cannot change a shot's frames
DEFAULT_CONFIG = "ocio://studio-config-v5.0.0_aces-v2.1_ocio-v2.6"
WORKING_LINEAR = "Linear Rec.709 (sRGB)"  # the default config's scene-linear Rec.709, before the sRGB curve
WORKING_ENCODED = "sRGB Encoded Rec.709 (sRGB)"  # the same through the sRGB curve: a PNG's, a movie's
BLOCK_ROWS = 128  # rows converted at a time by one thread


class ColorspaceError(MediaError):
    """A colour space or OpenColorIO config that cannot convert a plate; `about_config`: the config is at
    fault (unreadable, or without the role that reaches the working space), not the space's name."""

    def __init__(self, message: str, about_config: bool = False):
        super().__init__(message)
        self.about_config = about_config


def _srgb_curve(direction: Any) -> Any:
    """IEC 61966-2-1's curve as OpenColorIO's transform, its linear toe continued below 0 as media.color's
    is (forward: encoded to linear)."""
    import PyOpenColorIO as ocio

    return ocio.ExponentWithLinearTransform(
        gamma=[2.4, 2.4, 2.4, 1.0],
        offset=[0.055, 0.055, 0.055, 0.0],
        negativeStyle=ocio.NEGATIVE_LINEAR,
        direction=direction,
    )


def _load_config(config: str) -> Any:
    import PyOpenColorIO as ocio

    if not config.startswith("ocio://") and Path(config).is_dir():
        raise ColorspaceError(f"{config}: a folder, not an OpenColorIO config file", about_config=True)
    try:
        return ocio.Config.CreateFromFile(config)
    except ocio.ExceptionMissingFile:
        raise ColorspaceError(f"{config}: not found", about_config=True) from None
    except ocio.Exception as e:  # its message may run over lines: PipelineError.one_line joins them
        raise ColorspaceError(
            f"{config}: not an OpenColorIO config that can be read: {e}", about_config=True
        ) from None


@dataclass(frozen=True)
class PlateColorspace:
    """The conversion of a plate's frames from `name` (a colour space of `config`) to the pipeline's
    display-referred float32 RGB. `key` identifies it for cache keys: the conversion's steps and their data
    (OpenColorIO's cache ID of the processor) and the space's name."""

    name: str
    config: str
    key: str
    _processors: dict[str, Any] = field(repr=False, compare=False)  # by input: "uint8", "uint16", "float32"

    @classmethod
    def open(cls, name: str, config: str = DEFAULT_CONFIG) -> PlateColorspace:
        """The conversion from colour space `name` of `config` (a file or an ocio:// URI); ColorspaceError
        names what is wrong: an unknown space (with the nearest names), a config that cannot be read, or
        one without the interchange role that reaches the working space."""
        import PyOpenColorIO as ocio

        # OpenColorIO keeps the LUT files a config names in a cache for the life of the process: cleared, so
        # that a LUT edited since (an artist's re-render in a long-lived worker) is read as it is now
        ocio.ClearAllCaches()
        source = _load_config(config)
        known = [space.getName() for space in source.getColorSpaces()]
        space = source.getColorSpace(name)
        if space is None:
            near = get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(map(repr, near))}?" if near else f"{len(known)} known"
            raise ColorspaceError(f"{name!r} is not a colour space of {config} ({hint})")
        try:
            if config == DEFAULT_CONFIG:
                to_linear = source.getProcessor(space.getName(), WORKING_LINEAR)
            else:  # through the configs' interchange roles (ACES2065-1 or CIE XYZ D65)
                to_linear = ocio.Config.GetProcessorFromConfigs(
                    source, space.getName(), _load_config(DEFAULT_CONFIG), WORKING_LINEAR
                )
        except (ocio.Exception, ocio.ExceptionMissingFile) as e:  # a LUT file the config names, missing
            raise ColorspaceError(
                f"{config}: cannot convert {name!r} to {WORKING_LINEAR}: {e}", about_config=True
            ) from None
        raw = ocio.Config.CreateRaw()
        # integer samples: OpenColorIO's processor for their bit depth (it tabulates what it can)
        encoded = raw.getProcessor(
            ocio.GroupTransform([to_linear.createGroupTransform(), _srgb_curve(ocio.TRANSFORM_DIR_INVERSE)])
        )
        processors = {
            kind: encoded.getOptimizedCPUProcessor(depth, ocio.BIT_DEPTH_F32, ocio.OPTIMIZATION_DEFAULT)
            for kind, depth in (("uint8", ocio.BIT_DEPTH_UINT8), ("uint16", ocio.BIT_DEPTH_UINT16))
        }
        # a float frame (an EXR's) is read through the sRGB curve already (media.color): undone first
        group = ocio.GroupTransform(
            [
                _srgb_curve(ocio.TRANSFORM_DIR_FORWARD),
                to_linear.createGroupTransform(),
                _srgb_curve(ocio.TRANSFORM_DIR_INVERSE),
            ]
        )
        processors["float32"] = raw.getProcessor(group).getDefaultCPUProcessor()
        # and back, for a comp written in the plate's own encoding: an integer plate's code values in [0, 1],
        # an EXR plate's values through the sRGB curve (as its frames are read, and its comps written)
        processors["code_values"] = encoded.getDefaultCPUProcessor()  # code values as floats, to display
        processors["to_code_values"] = raw.getProcessor(
            encoded.createGroupTransform(), ocio.TRANSFORM_DIR_INVERSE
        ).getDefaultCPUProcessor()
        processors["to_float_plate"] = raw.getProcessor(
            group, ocio.TRANSFORM_DIR_INVERSE
        ).getDefaultCPUProcessor()
        # the conversion's own cache ID: OpenColorIO hashes every step's data into it, the values of the LUT
        # files the config names included, where the config's cache ID hashes only its own text (a LUT
        # edited in place left every stage key as it was, and the shot's frames stale)
        return cls(space.getName(), config, f"{to_linear.getCacheID()}:{space.getName()}", processors)

    def __reduce__(self) -> tuple:
        """Pickled as its names (a shot sent to a worker process): OpenColorIO's processors are not."""
        return PlateColorspace.open, (self.name, self.config)

    def convert(self, frame: np.ndarray) -> np.ndarray:
        """An RGB frame (uint8, uint16 or float32) in the plate's colour space as display-referred float32,
        converted in blocks of rows over a thread a core."""
        kind = frame.dtype.name if frame.dtype in (np.uint8, np.uint16) else "float32"
        return _apply(
            self._processors[kind], frame if kind != "float32" else frame.astype(np.float32, copy=False)
        )

    def to_plate(self, frame: np.ndarray, float_plate: bool) -> np.ndarray:
        """Display-referred float32 pictures back in the plate's encoding, as float32: an integer plate's
        code values in [0, 1] (`float_plate` False), or an EXR plate's values through the sRGB curve."""
        processor = self._processors["to_float_plate" if float_plate else "to_code_values"]
        return _apply(processor, frame.astype(np.float32, copy=False))

    def in_plate_encoding(
        self, samples: np.ndarray, comp: np.ndarray, box: tuple[slice, slice] | None
    ) -> np.ndarray:
        """A comp in the plate's own encoding, as float32 (code values in [0, 1], or an EXR plate's values
        through the sRGB curve): the plate's own `samples` wherever the comp is the plate's picture, so that
        a pixel the new face did not change comes back as the plate's sample, bit for bit (a conversion
        there and back moved up to 226 of 65536 codes of a random 16-bit LogC frame); the comp's pixels
        converted back where it differs, within the face's `box` (None: the frame has no new face)."""
        out = samples.astype(np.float32) if samples.dtype.kind == "f" else to_float(samples).copy()
        if box is None:
            return out
        region = comp[box]
        changed = np.abs(region - self.convert(samples[box])).max(axis=-1) > CHANGED
        if changed.any():
            out[box][changed] = self.to_plate(region, samples.dtype.kind == "f")[changed]
        return out

    def code_step(self, bits: int) -> float:
        """The largest step between neighbouring grey codes of `bits`-bit integer samples (8 to 16) once
        converted, within 0..1: 1/255 for 8-bit display sRGB, where 8-bit log codes step up to 4/255 (ARRI
        LogC3, ADX10) and 8-bit scene-linear ones 13/255, which shows as bands in smooth tones."""
        top = 2**bits - 1
        codes = np.arange(top + 1, dtype=np.float64)
        grey = codes if bits <= 8 else np.round(codes * (65535 / top))
        samples = np.repeat(grey.astype(np.uint8 if bits <= 8 else np.uint16)[None, :, None], 3, axis=2)
        return float(np.diff(np.clip(self.convert(samples)[0], 0, 1), axis=0).max())

    def display_lut(self, float_plate: bool, size: int = 33) -> str:
        """A 3D LUT (the .cube text FFmpeg's lut3d reads) from frames in the plate's encoding to display sRGB,
        for the movies of a comp written in it: an integer plate's code values, or an EXR plate's values
        through the sRGB curve (as FFmpeg's zscale gives them)."""
        grid = np.linspace(0, 1, size, dtype=np.float32)
        blue, green, red = np.meshgrid(grid, grid, grid, indexing="ij")  # red changes fastest
        lattice = np.ascontiguousarray(np.stack([red, green, blue], axis=-1).reshape(size * size, size, 3))
        picture = _apply(self._processors["float32" if float_plate else "code_values"], lattice)
        rows = np.clip(picture, 0, 1).reshape(-1, 3)
        return f"LUT_3D_SIZE {size}\n" + "".join(f"{r:.6f} {g:.6f} {b:.6f}\n" for r, g, b in rows)


CHANGED = 1e-6  # a comp's pixel differs from the plate's picture by more than this where the new face went in


def _apply(processor: Any, frame: np.ndarray) -> np.ndarray:
    """OpenColorIO's processor over an RGB frame (uint8, uint16 or float32), as float32, in blocks of rows
    over a thread a core (it lets go of the GIL)."""
    import PyOpenColorIO as ocio

    src = np.ascontiguousarray(frame)
    out = np.empty(src.shape, np.float32)
    h, w = src.shape[:2]
    depth = {"uint8": ocio.BIT_DEPTH_UINT8, "uint16": ocio.BIT_DEPTH_UINT16}.get(
        src.dtype.name, ocio.BIT_DEPTH_F32
    )
    size = src.itemsize

    def block(r0: int) -> None:
        rows = slice(r0, min(h, r0 + BLOCK_ROWS))
        n = rows.stop - rows.start
        processor.apply(
            ocio.PackedImageDesc(src[rows], w, n, 3, depth, size, 3 * size, 3 * size * w),
            ocio.PackedImageDesc(out[rows], w, n, 3),
        )

    starts = range(0, h, BLOCK_ROWS)
    threads = min(len(starts), os.cpu_count() or 1)
    if threads <= 1:
        for r0 in starts:
            block(r0)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(block, starts))
    return out
