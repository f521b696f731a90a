"""dlib's face descriptor in torch (pipeline/faces/descriptor.py): the same descriptors as dlib on real
chips, a gradient to the chip, the same chips as dlib.get_face_chip, dlib's number encoding read as dlib
writes it, and a damaged network file named in the error."""

from __future__ import annotations

import math
import struct
import subprocess
import sys

import cv2
import dlib
import numpy as np
import pytest
import torch
from conftest import REPO

from pipeline.errors import PipelineError
from pipeline.faces.descriptor import (
    DlibReader,
    chip_transforms,
    extract_chips,
    identity_distance,
    load_face_descriptor,
    read_dlib_network,
)
from pipeline.faces.detect import FaceAnalyzer
from pipeline.media.decode import MoviePlate
from pipeline.models import ModelError, model_path

# bench/identity_net.py on 50 real chips: worst descriptor 4.5e-7 from dlib's (the bar is 1e-3),
# chips from extract_chips identical to dlib.get_face_chip's (0 of 3.4 million values differ). The
# tolerances leave room for other CPUs' float rounding, and for a value landing on the other side of a
# whole number where dlib truncates.
DESCRIPTOR_TOLERANCE = 1e-5
CHIP_VALUES_DIFFERING = 0.001  # share of chip values allowed to differ, by at most 1


@pytest.fixture(scope="module")
def faces(footage) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frame, 68 landmarks) of three real faces: two of the woman (one whose chip reaches past the frame's
    bottom edge), one of the man."""
    analyzer, out = FaceAnalyzer(), []
    for clip, frames in (("woman_headturns_512.mp4", (0, 100)), ("man_glasses_720x1280.mp4", (200,))):
        plate = MoviePlate(footage / clip)
        for n in frames:
            frame = next(plate.read(n, n + 1))
            found = analyzer.detect(frame)
            assert found, f"{clip} frame {n}: no face"
            out.append((frame, found[0].landmarks.astype(np.float64)))
    return out


def dlib_shape(landmarks: np.ndarray) -> dlib.full_object_detection:
    points = [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks]
    xs, ys = landmarks[:, 0], landmarks[:, 1]
    box = dlib.rectangle(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return dlib.full_object_detection(box, dlib.points(points))


@pytest.fixture(scope="module")
def chips(faces) -> np.ndarray:
    """dlib's own chips of the faces, [N, 150, 150, 3] uint8."""
    return np.stack(
        [dlib.get_face_chip(frame, dlib_shape(lm), size=150, padding=0.25) for frame, lm in faces]
    )


@pytest.fixture(scope="module")
def net():
    return load_face_descriptor()


def as_batch(chips: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(chips).permute(0, 3, 1, 2).float().contiguous()


def test_descriptors_match_dlibs_on_real_chips(net, chips):
    recogniser = dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition")))
    ref = np.array([np.array(d) for d in recogniser.compute_face_descriptor(list(chips))])
    with torch.no_grad():
        ours = net(as_batch(chips)).numpy()
    assert ours.shape == (len(chips), 128)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=DESCRIPTOR_TOLERANCE)
    # and the distances keep their meaning: the woman's two faces are nearer each other than the man
    d = identity_distance(torch.from_numpy(ours[:, None]), torch.from_numpy(ours[None])).numpy()
    ref_d = np.linalg.norm(ref[:, None] - ref[None], axis=-1)
    np.testing.assert_allclose(d, ref_d, atol=2 * DESCRIPTOR_TOLERANCE)
    assert d[0, 1] < min(d[0, 2], d[1, 2])


def test_a_batch_gives_what_one_chip_at_a_time_gives(net, chips):
    batch = as_batch(chips)
    with torch.no_grad():
        together = net(batch)
        alone = torch.cat([net(batch[i : i + 1]) for i in range(len(batch))])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-6)


def test_the_gradient_reaches_the_chip_and_moves_it_toward_the_target(net, chips):
    batch = as_batch(chips)
    with torch.no_grad():
        target = net(batch[1:2])  # the woman's other face
    x = batch[0:1].clone().requires_grad_(True)
    distance = identity_distance(net(x), target).sum()
    distance.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())  # the network is frozen
    with torch.no_grad():
        step = x - 2.0 * x.grad / x.grad.abs().max()  # at most 2 levels a pixel value
        assert identity_distance(net(step), target).item() < distance.item()
    # no edit, no NaN: the distance of a descriptor to itself has a zero gradient
    d = net(batch[0:1].clone().requires_grad_(True))
    identity_distance(d, d.detach()).sum().backward()


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])  # dlib's pyramid depth 0, 1 and 2 for these faces
def test_extract_chips_cuts_what_dlib_get_face_chip_cuts(faces, scale):
    frames, landmarks, ref = [], [], []
    for frame, lm in faces:
        size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
        scaled = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) if scale != 1 else frame
        points = np.round(lm * scale)  # dlib's landmarks are whole pixels
        frames.append(scaled)
        landmarks.append(points)
        ref.append(dlib.get_face_chip(scaled, dlib_shape(points), size=150, padding=0.25))
    transforms = chip_transforms(np.array(landmarks))
    ours = [
        extract_chips(torch.from_numpy(f).permute(2, 0, 1)[None].float(), t[None])[0]
        for f, t in zip(frames, transforms, strict=True)
    ]
    ours = torch.stack(ours).permute(0, 2, 3, 1).numpy()
    diff = np.abs(ours - np.stack(ref).astype(np.float32))
    assert diff.max() <= 1 and (diff > 0).mean() <= CHIP_VALUES_DIFFERING
    assert (ref[0][-1] == 0).all()  # the woman's first chip reaches past the frame: black there, as dlib


def test_chip_transforms_are_dlibs_mapping_to_the_chip(faces):
    """dlib's get_mapping_to_chip of get_face_chip_details: the rotated rectangle's top-left, top-right and
    bottom-right corners go to the chip's (0, 0), (149, 0) and (149, 149)."""
    for _, lm in faces:
        detail = dlib.get_face_chip_details(dlib_shape(np.round(lm)), 150, 0.25)
        r = detail.rect
        centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
        c, s = math.cos(detail.angle), math.sin(detail.angle)
        corners = np.array([(r.left(), r.top()), (r.right(), r.top()), (r.right(), r.bottom())]) - centre
        corners = corners @ np.array([[c, -s], [s, c]]).T + centre
        m = chip_transforms(np.round(lm)[None])[0]
        np.testing.assert_allclose(corners @ m[:, :2].T + m[:, 2], [[0, 0], [149, 0], [149, 149]], atol=1e-9)


def test_the_gradient_reaches_the_image_through_the_chip(faces):
    frame, lm = faces[2]  # the man: dlib's pyramid is used
    image = torch.from_numpy(frame).permute(2, 0, 1)[None].float().requires_grad_(True)
    chip = extract_chips(image, chip_transforms(lm[None]))
    chip[..., 70:80, 70:80].sum().backward()
    touched = image.grad.abs().sum(1)[0] > 0
    rows, cols = np.nonzero(touched.numpy())
    inverse = np.linalg.inv(np.vstack([chip_transforms(lm[None])[0], [0, 0, 1]]))
    x, y, _ = inverse @ [74.5, 74.5, 1]
    assert touched.any() and abs(cols.mean() - x) < 5 and abs(rows.mean() - y) < 5  # where the patch is


# --- dlib's serialisation ---------------------------------------------------------------------------------


def dlib_int(value: int) -> bytes:
    """dlib's integer format (serialize.h): a control byte (bit 7 the sign, low 4 bits the byte count),
    then the magnitude's bytes, little endian."""
    magnitude = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(magnitude) | (0x80 if value < 0 else 0)]) + magnitude


def dlib_float(value: float, digits: int = 24) -> bytes:
    """dlib's float_details of a float (digits 24) or a double (53), as its code writes it: the mantissa,
    then the exponent; trailing zero bytes of the mantissa shifted off into the exponent."""
    if math.isinf(value):
        return dlib_int(0) + dlib_int(32000 if value > 0 else 32001)
    if math.isnan(value):
        return dlib_int(0) + dlib_int(32002)
    fraction, exponent = math.frexp(value)
    mantissa, exponent = int(fraction * (1 << digits)), exponent - digits
    for _ in range(8):
        if mantissa & 0xFF:
            break
        mantissa >>= 8
        exponent += 8
    return dlib_int(mantissa) + dlib_int(exponent)


def test_dlibs_integers_and_floats_decode():
    f32 = [float(np.float32(v)) for v in (1.5, -0.375, 0.04, 122.782, 3e-12, -65504.25)]
    values = [*f32, 0.0, 1e300, -2.5e-300]
    data = b"".join(dlib_float(v, 24 if i < len(f32) else 53) for i, v in enumerate(values))
    data += dlib_float(math.inf) + dlib_float(-math.inf) + dlib_float(math.nan)
    ints = [0, 1, -1, 255, 256, -70000, 2**62]
    data += b"".join(dlib_int(v) for v in ints) + dlib_int(5) + b"hello" + b"10"
    r = DlibReader(data, "made.dat")
    assert [r.float() for _ in values] == values
    assert (r.float(), r.float()) == (math.inf, -math.inf) and math.isnan(r.float())
    assert [r.int() for _ in ints] == ints
    assert r.string() == "hello" and r.bool() is True and r.bool() is False
    assert r.pos == len(data)
    # the bytes of the network file's loss margin: mantissa 0xa3d70a, exponent -28 = float32(0.04)
    assert DlibReader(bytes.fromhex("030ad7a3811c"), "m").float() == float(np.float32(0.04))
    # a float32 array as dlib's tensor writes it: version 2, four dimensions, little-endian floats
    tensor = dlib_int(2) + b"".join(dlib_int(v) for v in (1, 2, 1, 2)) + struct.pack("<4f", 1, -2, 0.5, 3)
    np.testing.assert_array_equal(DlibReader(tensor, "t").tensor().reshape(-1), [1, -2, 0.5, 3])


@pytest.mark.parametrize(
    "data, why",
    [
        (b"\x00", "bad control byte 0x00"),  # a zero byte count
        (b"\x09" + bytes(9), "bad control byte 0x09"),  # more than 8 bytes
        (b"\x02\x01", "ends inside"),  # two bytes promised, one there
    ],
)
def test_a_bad_integer_is_an_error_naming_the_file(data, why):
    with pytest.raises(ModelError, match=rf"made\.dat: .*{why}"):
        DlibReader(data, "made.dat").int()


def test_a_damaged_network_file_is_an_error_naming_it(tmp_path):
    good = model_path("dlib_face_recognition").read_bytes()
    cases = {
        "truncated.dat": (good[: len(good) // 2], "ends inside"),
        "renamed.dat": (good.replace(b"loss_metric_2", b"loss_metrix_2", 1), "found 'loss_metrix_2'"),
        "longer.dat": (good + b"\x01\x02", "2 bytes after the network"),
        "empty.dat": (b"", "ends inside"),
    }
    for name, (data, why) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(PipelineError, match=rf"{name}: not a readable dlib network file: .*{why}"):
            read_dlib_network(path)
    with pytest.raises(ModelError, match=r"truncated\.dat: checksum mismatch"):
        load_face_descriptor(tmp_path / "truncated.dat")  # the registry's checksum catches it first


def test_the_module_needs_no_dlib(tmp_path):
    """The descriptor and the chip run with dlib unimportable (the module is loaded on its own, apart from
    pipeline.faces, whose detector imports dlib)."""
    from pipeline.faces import descriptor

    code = f"""
import importlib.util, sys, numpy as np, torch
sys.modules["dlib"] = None  # import dlib now fails
spec = importlib.util.spec_from_file_location("descriptor_alone", {str(descriptor.__file__)!r})
module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert "pipeline.faces" not in sys.modules and "dlib" not in vars(module)
image = torch.full((1, 3, 300, 300), 128.0)
lm = np.random.default_rng(0).uniform(100, 200, (1, 68, 2))
chip = module.extract_chips(image, module.chip_transforms(lm))
print(tuple(module.load_face_descriptor()(chip).shape))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 128)"
