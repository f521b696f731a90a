"""Converting aligned faces with a trained swap model, and measuring whose face came out.

The identity measure is dlib's 128-d recognition embedding: the distance of each converted face to
the centroid of a person's reference faces (the same person is below about 0.6).

Faces are converted in batches on the model's device. On a CUDA GPU the forward pass runs in fp16 (ten
bits of mantissa, finer than bf16's seven, and what the swap cache stores); a batch whose result is not
finite in fp16 is converted again in fp32.
"""

from __future__ import annotations

import cv2
import dlib
import numpy as np
import torch

from pipeline.devices import autocast, module_device
from pipeline.media.color import to_float, to_uint8
from pipeline.models import model_path
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


class IdentityMeter:
    """dlib embeddings of aligned faces whose landmarks are known (converted faces keep the crop's layout),
    and whether dlib's detector sees a face in them at all."""

    def __init__(self):
        self._net = dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition")))
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
        k = size / crop.shape[0]
        img = np.ascontiguousarray(
            to_uint8(cv2.resize(to_float(crop), (size, size), interpolation=cv2.INTER_CUBIC))
        )
        pts = np.asarray(landmarks, np.float64) * k
        rect = dlib.rectangle(
            *[int(v) for v in (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())]
        )
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
        return np.array(self._net.compute_face_descriptor(img, shape), np.float32)

    def centroid(self, crops: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return np.mean([self.embed(c, lm) for c, lm in zip(crops, landmarks, strict=True)], axis=0)
