"""The composite stage of a shot, free of Prefect: a new face into each plate frame, plus the elements.

For each frame with a face: the aligned crop, the new face (for now a test alteration of the crop; the
swap and projection stages will provide it), colour matched to the plate's face inside the matte,
sharpened and grained to the plate, warped back and blended. The face element (RGBA in plate
coordinates) is what an "over" of the alpha-blended face gives, for compositors finishing elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.composite import alter_face, blend, match_grain, sharpen, transfer_color
from pipeline.faces.align import align_face, transform_points, warp_to_plate
from pipeline.faces.draw import grid
from pipeline.faces.masks import landmark_mask
from pipeline.faces.track import FaceTrack
from pipeline.manifest import CompositeSpec, MaskSpec, Shot
from pipeline.media.color import to_float, to_uint8
from pipeline.media.decode import read_image
from pipeline.media.sequences import extension, write_frame
from pipeline.workspace import RenderVersion, write_json_atomic


def composite_spec(shot: Shot) -> CompositeSpec | None:
    spec = shot.spec.composite
    return spec if spec is not None and spec.enabled else None


def altered_stages(shot: Shot) -> list[str]:
    """The stages that change faces in this shot's output (for the synthetic-imagery metadata)."""
    spec = composite_spec(shot)
    return [f"composite (test alteration: {spec.alteration})"] if spec and spec.alteration != "none" else []


@dataclass
class FrameComposite:
    comp: np.ndarray
    element: np.ndarray | None  # RGBA, float32, straight alpha, plate size; None when not written
    new_face: np.ndarray | None  # the crop that went in (for contact sheets)
    matte: np.ndarray | None  # its matte in crop coordinates


class Compositor:
    def __init__(self, shot: Shot, track: FaceTrack):
        spec = composite_spec(shot)
        assert spec is not None and shot.spec.faces is not None
        self.spec = spec
        self.mask_spec: MaskSpec = spec.mask or shot.spec.faces.mask
        self.size = shot.spec.faces.crop_size
        self.track = track
        self.crop_landmarks = self._crop_landmarks()

    def _crop_landmarks(self) -> np.ndarray:
        """Landmarks in crop coordinates for every frame with a face; frames filled by interpolation
        borrow the nearest detected frame's (in the aligned crop the face barely moves)."""
        t = self.track
        out = np.full(t.landmarks.shape, np.nan)
        detected = np.flatnonzero(t.detected)
        for i in detected:
            out[i] = transform_points(t.matrix(int(t.frames[i]), 1), t.landmarks[i]) * self.size
        for i in np.flatnonzero(t.has_face & ~t.detected):
            if len(detected):
                out[i] = out[detected[np.argmin(np.abs(detected - i))]]
        return out

    def matte(self, index: int) -> np.ndarray:
        m = self.mask_spec
        return landmark_mask(self.crop_landmarks[index], self.size, m.kind, m.erode, m.erode_sides, m.feather)

    def frame(self, number: int, plate: np.ndarray) -> FrameComposite:
        i = self.track.index(number)
        matrix = self.track.matrix(number, self.size)
        if matrix is None or np.isnan(self.crop_landmarks[i, 0, 0]):
            return FrameComposite(plate, self._empty_element(plate), None, None)
        crop, _ = align_face(plate, self.track.params[i], self.size)
        matte = self.matte(i)
        face = alter_face(crop, self.spec.alteration)
        face = transfer_color(face, crop, matte, self.spec.color)
        face = sharpen(face, self.spec.sharpen)
        if self.spec.grain:
            face = match_grain(face, crop, matte, seed=number)
        region = warp_to_plate(face, matte, matrix, plate.shape)
        comp = blend(plate, region, self.spec.blend)
        element = self._empty_element(plate)
        if element is not None and region is not None:
            element[region.box] = np.concatenate([region.face, region.alpha[..., None]], axis=-1)
        return FrameComposite(comp, element, face, matte)

    def _empty_element(self, plate: np.ndarray) -> np.ndarray | None:
        if self.spec.element.format == "none":
            return None
        return np.zeros((*plate.shape[:2], 4), np.float32)


def element_path(version: RenderVersion, shot: Shot, frame: int) -> Path:
    spec = composite_spec(shot)
    assert spec is not None
    ext = extension(spec.element.format)
    return version.path / "element" / f"{version.shot}_faceElement_{version.label}.{frame:04d}.{ext}"


def write_element(version: RenderVersion, shot: Shot, frame: int, element: np.ndarray, meta: dict) -> None:
    spec = composite_spec(shot)
    assert spec is not None
    path = element_path(version, shot, frame)
    path.parent.mkdir(exist_ok=True)
    write_frame(path, element, spec.element.format, meta)


def write_transforms(version: RenderVersion, shot: Shot, track: FaceTrack) -> Path:
    """Per-frame plate->crop matrices, so a compositor can redo the paste-back in their own tool."""
    size = shot.spec.faces.crop_size if shot.spec.faces else 256
    frames = []
    for n in range(shot.first, shot.last + 1):
        i = track.index(n)
        m = track.matrix(n, size)
        state = "detected" if track.detected[i] else "filled" if track.filled[i] else "no face"
        frames.append(
            {"frame": n, "state": state, "plate_to_crop": None if m is None else m.round(6).tolist()}
        )
    path = version.path / "transforms.json"
    write_json_atomic(
        path,
        {
            "shot": shot.name,
            "version": version.label,
            "crop_size": size,
            "convention": "x_crop = M @ [x_plate, y_plate, 1], pixel centres",
            "frames": frames,
        },
    )
    return path


def composite_contact_sheet(
    shot: Shot, version: RenderVersion, track: FaceTrack, frames: list[int], metadata: dict[str, str]
) -> Path:
    """Rows of plate | new face | matte | comp for a few frames across the shot."""
    compositor = Compositor(shot, track)
    tile = 256
    tiles = []
    for n in frames:
        plate = next(shot.plate.read(shot.plate_index(n), shot.plate_index(n) + 1))
        result = compositor.frame(n, plate)
        comp = read_image(version.frame_path(n))
        blank = np.zeros((tile, tile, 3), np.float32)
        row = [
            _fit(plate, tile),
            _fit(result.new_face, tile) if result.new_face is not None else blank,
            _fit(np.repeat(result.matte[..., None], 3, -1), tile) if result.matte is not None else blank,
            _fit(comp, tile),
        ]
        for j, label in enumerate((f"{n} plate", "new face", "matte", "comp")):
            img = to_uint8(row[j]).copy()
            cv2.putText(
                img, label, (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA
            )
            tiles.append(img)
    path = version.path / "composite_contact_sheet.png"
    write_frame(path, grid(tiles, 4), "png8", metadata)
    return path


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    img = to_float(image)
    h, w = img.shape[:2]
    k = size / max(h, w)
    small = cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size, 3), np.float32)
    y, x = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out
