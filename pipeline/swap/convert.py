"""Converting aligned faces with a trained swap model, and measuring whose face came out.

The identity measure is dlib's 128-d recognition embedding: the distance of each converted face to
the centroid of a person's reference faces (the same person is below about 0.6). It is computed by the
project's torch port of dlib's network (faces/descriptor.py), in batches, on the GPU where there is one:
the same descriptors as dlib's own to 5e-7, about ten times faster on a CPU.

Faces are converted in batches on the model's device. On a CUDA GPU the forward pass runs in fp16 (ten
bits of mantissa, finer than bf16's seven, and what the swap cache stores); a batch whose result is not
finite in fp16 is converted again in fp32.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import dlib
import numpy as np
import torch

from pipeline.devices import autocast, module_device, resolve_device
from pipeline.faces.descriptor import chip_transforms, extract_chips, load_face_descriptor
from pipeline.media.color import to_float, to_uint8
from pipeline.swap.model import SwapModel


@torch.no_grad()
def convert_faces(
    model: SwapModel, crops: np.ndarray, to: str, batch: int = 32, mixed_precision: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops (N, S, S, 3) drawn as person `to` ("a" or "b"): faces and masks at the crops' size,
    `batch` faces at a time on the model's device (fp16 on a CUDA GPU with `mixed_precision`)."""
    if len(crops) == 0:
        return crops, np.zeros(crops.shape[:3], np.float32)
    size, m = crops.shape[1], model.cfg.size
    small = np.stack([cv2.resize(to_float(c), (m, m), interpolation=cv2.INTER_AREA) for c in crops])
    faces, masks = [], []
    model.eval()
    device = module_device(model)
    for i in range(0, len(small), batch):
        x = torch.from_numpy(small[i : i + batch].transpose(0, 3, 1, 2).copy()).to(device)
        with autocast(device, torch.float16, mixed_precision):
            rgb, mask = model(x, to)
        if not (torch.isfinite(rgb).all() and torch.isfinite(mask).all()):
            rgb, mask = model(x, to)  # an fp16 overflow: this batch again in fp32
        faces.append(rgb.float().permute(0, 2, 3, 1).cpu().numpy())
        masks.append(mask[:, 0].float().cpu().numpy())
    up = cv2.INTER_CUBIC if size > m else cv2.INTER_AREA
    out_faces = np.stack(
        [np.clip(cv2.resize(f, (size, size), interpolation=up), 0, 1) for f in np.concatenate(faces)]
    )
    out_masks = np.stack(
        [np.clip(cv2.resize(k, (size, size), interpolation=up), 0, 1) for k in np.concatenate(masks)]
    )
    return out_faces.astype(np.float32), out_masks.astype(np.float32)


# dlib's HOG detector scores real aligned faces (64 px crops enlarged to 256) at 0.95-2.4 and a face blurred
# past recognition at 0.09; noise and grids not at all. Below this, a new face is not a face.
FACE_SCORE = 0.3
EMBED_BATCH = 32  # faces described at once: a batch of 256 px crops is 25 MB of float32


class IdentityMeter:
    """dlib embeddings of aligned faces whose landmarks are known (converted faces keep the crop's layout),
    and whether dlib's detector sees a face in them at all."""

    def __init__(self):
        self._net = load_face_descriptor(device=resolve_device())
        self._detector = dlib.get_frontal_face_detector()

    def face_score(self, crop: np.ndarray, size: int = 256) -> float:
        """The HOG detector's best score on an aligned crop (at `size` px, where the face spans about 130 px,
        above HOG's 80 px window); -1 when it finds nothing. A face is there at FACE_SCORE and above."""
        img = np.ascontiguousarray(
            to_uint8(cv2.resize(to_float(crop), (size, size), interpolation=cv2.INTER_CUBIC))
        )
        _, scores, _ = self._detector.run(img, 0, 0.0)
        return float(max(scores)) if len(scores) else -1.0

    def finds_face(self, crop: np.ndarray) -> bool:
        return self.face_score(crop) >= FACE_SCORE

    def embed(self, crop: np.ndarray, landmarks: np.ndarray, size: int = 256) -> np.ndarray:
        """One face's descriptor (`embed_many` of one)."""
        return self.embed_many([crop], np.asarray(landmarks)[None], size)[0]

    def embed_many(self, crops: Sequence[np.ndarray], landmarks: np.ndarray, size: int = 256) -> np.ndarray:
        """dlib's 128-d descriptors [N, 128] of aligned crops with their 68 landmarks [N, 68, 2] in crop
        pixels: each crop enlarged to `size` px, the landmarks rounded to whole pixels as dlib's points
        are, the chip cut and described by the torch port of dlib's network in one batch (its descriptors
        are dlib's `compute_face_descriptor` to 5e-7, bench/identity_net.py; about ten times faster)."""
        out = [np.zeros((0, 128), np.float32)]
        device = module_device(self._net)
        for i in range(0, len(crops), EMBED_BATCH):
            part = crops[i : i + EMBED_BATCH]
            images = np.stack(
                [to_uint8(cv2.resize(to_float(c), (size, size), interpolation=cv2.INTER_CUBIC)) for c in part]
            )
            scale = size / np.array([c.shape[0] for c in part], np.float64)
            points = np.round(np.asarray(landmarks[i : i + EMBED_BATCH], np.float64) * scale[:, None, None])
            batch = torch.from_numpy(images).permute(0, 3, 1, 2).to(device, torch.float32)
            with torch.no_grad():
                chips = extract_chips(batch, chip_transforms(points))
                out.append(self._net(chips).cpu().numpy().astype(np.float32))
        return np.concatenate(out)

    def centroid(self, crops: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return self.embed_many(crops, landmarks).mean(0)
