"""Aligned face crops from a plate with their landmarks: training data for the swap model and generator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import PipelineError
from pipeline.faces.align import (
    align_face,
    crop_matrix,
    ffhq_params,
    transform_points,
    unsqueeze,
)
from pipeline.faces.detect import FaceAnalyzer
from pipeline.files import write_atomic
from pipeline.media.colorspace import PlateColorspace
from pipeline.media.decode import Plate, open_plate, read_image
from pipeline.media.probe import SEQUENCE_TOKEN, square_scale
from pipeline.media.sequences import write_frame

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".bmp", ".webp"}


def open_any_plate(path: str, layer: str = "", colorspace: PlateColorspace | None = None) -> Plate:
    """A movie, an image sequence (#### or %04d in the name) or a single image; `layer`: an EXR's layer
    whose channels are the picture, `colorspace`: the plate's encoding (as a manifest's plate.layer and
    plate.colorspace, so that training crops look as the shot's own)."""
    if SEQUENCE_TOKEN.search(Path(path).name):
        return open_plate("sequence", path, layer=layer, colorspace=colorspace)
    if Path(path).suffix.lower() in IMAGE_SUFFIXES or path.startswith("builtin:"):
        return open_plate("still", path, hold=1, layer=layer, colorspace=colorspace)
    return open_plate("movie", path, layer=layer, colorspace=colorspace)


@dataclass
class Extracted:
    frame: int
    crop: Path | None  # None: no face on this frame


def extract_faces(
    plate_path: str,
    out: Path,
    size: int = 256,
    every: int = 1,
    analyzer: FaceAnalyzer | None = None,
    layer: str = "",
    colorspace: PlateColorspace | None = None,
) -> Iterator[Extracted]:
    """Every `every`-th frame's largest face, aligned FFHQ-style, as PNG plus a JSON of its landmarks.

    Crops already on disk are kept (an interrupted extraction continues); each file is written atomically.
    """
    plate = open_any_plate(plate_path, layer, colorspace)
    analyzer = analyzer or FaceAnalyzer()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PipelineError(f"{out}: cannot make the crop folder: {e.strerror or e}") from None
    stem = Path(plate_path).name.split(".")[0].replace("#", "").replace("%", "") or "plate"
    first = plate.info.first_frame or 0
    # an anamorphic plate's faces are found and aligned in square pixels
    x_scale = square_scale(plate.info.width, plate.info.pixel_aspect)
    for index, frame in enumerate(plate.read(0, plate.info.frame_count)):
        if index % every:
            continue
        number = first + index
        png = out / f"{stem}_{number:06d}.png"
        if png.is_file():
            yield Extracted(number, png)
            continue
        faces = analyzer.detect(unsqueeze(frame, x_scale))  # found in square pixels
        if not faces:
            yield Extracted(number, None)
            continue
        face = faces[0]
        params = ffhq_params(face.landmarks)
        crop, matrix = align_face(frame, params, size, x_scale)
        info = {
            "source": str(plate_path),
            "frame": number,
            "size": size,
            "landmarks": transform_points(crop_matrix(params, size), face.landmarks).round(3).tolist(),
            "plate_to_crop": matrix.tolist(),
            "score": face.score,
            "faces_in_frame": len(faces),
        }
        meta = {"synthetic_imagery": "false", "source": str(plate_path), "frame": str(number)}
        side = png.with_suffix(".json")
        write_atomic(side, lambda tmp, info=info: tmp.write_text(json.dumps(info), encoding="utf-8"))
        write_frame(png, crop, "png8", meta)  # the PNG last: its presence means the pair is complete
        yield Extracted(number, png)


def aligned_face(path: Path, size: int, aligned: bool, analyzer: FaceAnalyzer | None) -> np.ndarray:
    """The image's largest face aligned FFHQ-style at `size` (float32 RGB in [0, 1]); with `aligned`,
    the image is taken as an aligned crop already and only resized."""
    image = read_image(path)
    if image.dtype != np.float32:
        image = image.astype(np.float32) / (65535.0 if image.dtype == np.uint16 else 255.0)
    if aligned:
        h, w = image.shape[:2]
        if h != w:
            raise PipelineError(f"{path}: an aligned crop must be square, this is {w}x{h}")
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if h > size else cv2.INTER_CUBIC)
    assert analyzer is not None
    faces = analyzer.detect(image)
    if not faces:
        raise PipelineError(f"{path}: no face found (give --aligned for crops made by vfx extract)")
    crop, _ = align_face(image, ffhq_params(faces[0].landmarks), max(size, 256))  # then reduced: no aliasing
    return crop if size >= 256 else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
