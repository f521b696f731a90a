"""Geometric attributes from 68 landmarks (they move the right way, whatever the face's size), dlib's
landmarks on aligned crops, and attribute recognisers: a short training lowers their loss, a label no
better than chance is refused before anything is written for the mapper, a learnable one passes and its
file round-trips, a resume continues exactly, and `vfx train recognisers` runs as a Prefect flow and
turns bad input into one line."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.faces.attributes import (
    GEOMETRIC_ATTRIBUTES,
    find_aligned_landmarks,
    interocular,
    measure_attributes,
    mirrored,
)
from pipeline.faces.detect import FaceAnalyzer
from pipeline.faces.pose import FACE_MODEL, RIGID_POINTS, head_pose, rotation
from pipeline.media.decode import load_still
from pipeline.models import ModelError, sha256_file
from pipeline.stylegan.checkpoints import load_generator
from pipeline.stylegan.generator import Generator, to_uint8
from pipeline.stylegan.recognise import (
    AttributeRecogniser,
    RecogniserConfig,
    load_recognisers,
    save_recognisers,
)
from pipeline.stylegan.recognise_train import (
    RECOGNISERS_FILE,
    RecogniserData,
    RecogniserSettings,
    batch_losses,
    held_out_mask,
    measure_figures,
    new_state,
    refused,
    train_recognisers,
    train_step,
)

COLUMN = {name: i for i, name in enumerate(GEOMETRIC_ATTRIBUTES)}
SIZE = (512, 512)  # the astronaut's


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: two threads that wait for each other at every small convolution are slower on
    a busy two-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A real face's 68 dlib landmarks (the astronaut's, mouth closed, eyes open)."""
    faces = FaceAnalyzer().detect(load_still("builtin:astronaut"))
    assert faces
    return faces[0].landmarks.astype(np.float64)


def measured(landmarks: np.ndarray) -> dict[str, float]:
    return dict(zip(GEOMETRIC_ATTRIBUTES, measure_attributes(landmarks, SIZE), strict=True))


def moved(landmarks: np.ndarray, points, by) -> np.ndarray:
    out = landmarks.copy()
    out[list(points)] += by
    return out


# ---------------------------------------------------------------------------------------------------
# The measures


def test_an_opened_mouth_raises_mouth_open_alone(face):
    iod = interocular(face)
    before = measured(face)
    # the lower lip and the chin drop by a fifth of the inter-ocular distance
    opened = measured(moved(face, [*range(5, 12), *range(55, 60), 65, 66, 67], [0, 0.2 * iod]))
    assert opened["mouth_open"] - before["mouth_open"] == pytest.approx(0.2, abs=0.03)
    for name in ("yaw", "pitch", "roll", "left_eye_open", "right_eye_open", "brow_raise"):
        assert opened[name] == pytest.approx(before[name], abs=1e-6), name


def test_a_wider_mouth_raises_smile_width(face):
    iod = interocular(face)
    before = measured(face)
    wider = moved(moved(face, [48, 60], [-0.1 * iod, 0]), [54, 64], [0.1 * iod, 0])
    after = measured(wider)
    assert after["smile_width"] - before["smile_width"] == pytest.approx(0.2, abs=0.03)
    assert after["mouth_open"] == pytest.approx(before["mouth_open"], abs=0.01)
    assert after["left_eye_open"] == before["left_eye_open"]


def test_a_closed_eye_lowers_its_openness_only(face):
    before = measured(face)
    closed = face.copy()
    closed[[37, 38]] = face[[41, 40]]  # the image-left eye's upper lid onto its lower lid
    after = measured(closed)
    assert before["left_eye_open"] > 0.15
    assert after["left_eye_open"] < 0.3 * before["left_eye_open"]
    assert after["right_eye_open"] == before["right_eye_open"]


def test_raised_brows_raise_brow_raise_and_a_blink_does_not(face):
    iod = interocular(face)
    before = measured(face)
    raised = measured(moved(face, range(17, 27), [0, -0.1 * iod]))
    assert raised["brow_raise"] - before["brow_raise"] == pytest.approx(0.1, abs=0.02)
    blink = face.copy()
    blink[[37, 38, 43, 44]] = face[[41, 40, 47, 46]]
    assert measured(blink)["brow_raise"] == pytest.approx(before["brow_raise"])


def test_points_turned_clockwise_in_the_image_add_roll(face):
    before = measured(face)
    angle = np.radians(12)
    c = (np.array(SIZE) - 1) / 2  # about the camera's axis: a pure roll
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])  # y down: clockwise
    after = measured((face - c) @ turn.T + c)
    assert after["roll"] - before["roll"] == pytest.approx(12, abs=0.5)
    assert after["yaw"] == pytest.approx(before["yaw"], abs=0.5)
    for name in ("mouth_open", "smile_width", "left_eye_open", "right_eye_open", "brow_raise"):
        assert after[name] == pytest.approx(before[name]), name


def projected(face: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """The face with its rigid points replaced by pose.py's generic face at (yaw, pitch), one metre from
    a 1500 px lens centred in the image."""
    k = np.array([[1500.0, 0, (SIZE[0] - 1) / 2], [0, 1500.0, (SIZE[1] - 1) / 2], [0, 0, 1]])
    points = (FACE_MODEL @ rotation(yaw, pitch, 0).T + [0, 0, 100.0]) @ k.T
    out = face.copy()
    out[list(RIGID_POINTS)] = points[:, :2] / points[:, 2:]
    return out


@pytest.mark.parametrize("yaw, pitch", [(25, 0), (-25, 0), (0, 15), (0, -15)])
def test_pose_follows_pose_py(face, yaw, pitch):
    lm = projected(face, yaw, pitch)
    values = measured(lm)
    np.testing.assert_allclose([values["yaw"], values["pitch"], values["roll"]], head_pose(lm, SIZE))
    assert values["yaw"] == pytest.approx(yaw, abs=3) and values["pitch"] == pytest.approx(pitch, abs=3)
    # pose.py: yaw > 0 is the nose pointing to the image's left, pitch > 0 the nose pointing up
    nose_from_eyes = lm[30] - lm[[39, 42]].mean(0)
    if yaw:
        assert np.sign(-nose_from_eyes[0]) == np.sign(yaw)


def test_the_measures_do_not_depend_on_the_face_size_or_place(face):
    values = measure_attributes(face, SIZE)
    c = (np.array(SIZE) - 1) / 2
    bigger = measure_attributes((face - c) * 3 + 3 * c + 1, (3 * SIZE[0], 3 * SIZE[1]))
    np.testing.assert_allclose(bigger, values, rtol=1e-9, atol=0.05)
    moved_ratios = measure_attributes(face + [40, -20], SIZE)[3:]  # the pose sees the lens's axis move
    np.testing.assert_allclose(moved_ratios, values[3:], rtol=1e-9)
    both = measure_attributes(np.stack([face, face * 3 / 4]), SIZE)
    assert both.shape == (2, len(GEOMETRIC_ATTRIBUTES))
    np.testing.assert_allclose(both[0], values)


DLIB_MIRROR = [
    *range(16, -1, -1),
    *range(26, 16, -1),
    27, 28, 29, 30,
    35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46,
    39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,
    64, 63, 62, 61, 60, 67, 66, 65,
]  # fmt: skip


def test_a_mirrored_face_measures_as_attributes_mirrored_says(face):
    flipped = face[DLIB_MIRROR] * [-1, 1] + [SIZE[0] - 1, 0]
    values, mirror = measured(face), measured(flipped)
    for name in GEOMETRIC_ATTRIBUTES:
        other, sign = mirrored(name)
        assert mirror[name] == pytest.approx(sign * values[other], abs=0.2), name


# ---------------------------------------------------------------------------------------------------
# dlib's landmarks on aligned crops


def test_landmarks_on_small_aligned_crops_agree_with_the_plates(crops):
    """Real 128 px crops (vfx extract, landmarks from the full plate) reduced to a generator's 64 px."""
    files = sorted(crops["a"].glob("*.png"))[:4] + sorted(crops["b"].glob("*.png"))[:4]
    small = np.stack(
        [cv2.resize(cv2.imread(str(f))[..., ::-1], (64, 64), interpolation=cv2.INTER_AREA) for f in files]
    )
    small[-1] = 128  # a grey square: no face
    landmarks, found = find_aligned_landmarks(small)
    assert found[:-1].all() and not found[-1] and np.isnan(landmarks[-1]).all()
    for f, lm in zip(files[:-1], landmarks[:-1], strict=True):
        info = json.loads(f.with_suffix(".json").read_text())
        truth = (np.array(info["landmarks"]) + 0.5) * 64 / info["size"] - 0.5
        error = np.linalg.norm(lm - truth, axis=1).mean() / interocular(truth)
        assert error < 0.15, f.name


def test_measure_faces_tells_the_two_people_apart_and_makes_nothing_up(crops):
    """What the edit report judges edits with: attributes and dlib descriptors of the same crops."""
    from pipeline.faces.attributes import measure_faces

    files = sorted(crops["a"].glob("*.png"))[:3] + sorted(crops["b"].glob("*.png"))[:2]
    images = np.stack([cv2.imread(str(f))[..., ::-1] for f in files])
    images[-1] = 128  # a grey square: no face
    m = measure_faces(images)
    assert m.found.tolist() == [True, True, True, True, False]
    assert np.isnan(m.attributes[-1]).all() and np.isnan(m.descriptors[-1]).all()
    assert np.isfinite(m.attributes[:-1]).all()
    same = np.linalg.norm(m.descriptors[0] - m.descriptors[1:3], axis=1)
    other = np.linalg.norm(m.descriptors[:3] - m.descriptors[3], axis=1)
    assert same.max() < 0.6 < other.min()  # dlib's threshold for one person


# ---------------------------------------------------------------------------------------------------
# Recognisers


@pytest.fixture(scope="module")
def G(tiny_generator_file) -> Generator:
    G, _ = load_generator(tiny_generator_file)
    return G.requires_grad_(False)


def image_measures(faces: torch.Tensor) -> np.ndarray:
    """Stand-ins for measures that are functions of the pixels: the left half's brightness less the
    right's (changes sign when flipped, as yaw does) and the lower half's brightness."""
    x = faces.double().mean(1)
    r = x.shape[-1] // 2
    return torch.stack([x[..., :r].mean((1, 2)) - x[..., r:].mean((1, 2)), x[:, r:].mean((1, 2))], 1).numpy()


def test_a_short_training_lowers_the_loss(G):
    torch.manual_seed(1)
    with torch.no_grad():
        faces = torch.from_numpy(to_uint8(G(torch.randn(48, G.cfg.z_dim)))).permute(0, 3, 1, 2).contiguous()
    held = held_out_mask(48, 0.25, np.random.default_rng(0))
    data = RecogniserData(
        ("yaw", "mouth_open"),
        faces,
        torch.from_numpy(image_measures(faces)),
        torch.zeros(48, 68, 2),
        held,
        48,
    )
    settings = RecogniserSettings(batch=8, lr=1e-3)
    state = new_state(data, G.cfg.resolution, "sha", settings)
    train_faces = {"measures": np.flatnonzero(~held.numpy())}
    before = batch_losses(state.model, data, train_faces)["measures"].item()
    for _ in range(25):
        train_step(state, data, settings)
    after = batch_losses(state.model, data, train_faces)["measures"].item()
    assert after < 0.5 * before, (before, after)
    assert [h["step"] for h in state.history] == list(range(1, 26))


def test_a_measure_predicted_no_better_than_its_mean_is_refused():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=200)
    figures = {
        "yaw": measure_figures(truth + rng.normal(scale=0.3, size=200), truth, 0.0),
        "mouth_open": measure_figures(rng.normal(size=200), truth, 0.0),  # guesses
    }
    assert figures["yaw"]["r2"] > 0.8 and figures["yaw"]["mae"] < figures["yaw"]["mean_mae"]
    assert figures["mouth_open"]["r2"] < 0
    assert refused(figures, RecogniserSettings()) == [
        f"mouth_open (held-out R2 {figures['mouth_open']['r2']:.2f}, needs 0.2)"
    ]


def write_images(folder, images: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)


@pytest.fixture(scope="module")
def label_folders(tmp_path_factory):
    """Random 32 px squares: the same ones in two folders (a label no network can learn), and bright
    ones against dark ones (a label any network learns)."""
    root = tmp_path_factory.mktemp("labels")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    write_images(root / "same_a", noise)
    shutil.copytree(root / "same_a", root / "same_b")
    write_images(root / "bright", (noise // 4 + 180).astype(np.uint8))
    write_images(root / "dark", (noise // 4 + 20).astype(np.uint8))
    return root


LABELS_ONLY = RecogniserSettings(measures=(), batch=8, lr=1e-3, preview_faces=2)


def test_a_label_no_better_than_chance_is_refused_and_nothing_is_written(
    tiny_generator_file, label_folders, tmp_path
):
    same = (label_folders / "same_a", label_folders / "same_b")
    labels = {"glasses": same, "bright": (label_folders / "bright", label_folders / "dark")}
    out = tmp_path / "rec"
    with pytest.raises(PipelineError, match=r"refused glasses \(held-out accuracy 0\.\d\d vs 0\.50") as e:
        train_recognisers(tiny_generator_file, out, None, labels, settings=LABELS_ONLY, steps=30)
    assert "bright" not in str(e.value)  # the learnable one is not refused
    assert not (out / RECOGNISERS_FILE).exists()


def test_a_learnt_label_passes_and_its_file_round_trips(tiny_generator_file, label_folders, tmp_path):
    labels = {"bright": (label_folders / "bright", label_folders / "dark")}
    out = tmp_path / "rec"
    state, figures = train_recognisers(tiny_generator_file, out, None, labels, settings=LABELS_ONLY, steps=30)
    assert (
        figures["bright"]["accuracy"] > figures["bright"]["majority"] and figures["bright"]["p_value"] < 0.05
    )
    model, meta = load_recognisers(out)  # a folder means its recognisers.pt
    assert model.names == ["bright"] and model.kinds == ["label"]
    assert meta["generator_sha256"] == sha256_file(tiny_generator_file)
    assert meta["attributes"]["bright"]["held_out"] == figures["bright"]
    assert not any(p.requires_grad for p in model.parameters())
    faces = torch.rand(3, 3, 32, 32) * 2 - 1
    state.model.eval()
    with torch.no_grad():
        np.testing.assert_array_equal(model(faces).numpy(), state.model(faces).numpy())
    for name in ("preview.png", "loss.png", "training.pt", "samples.pt"):
        assert (out / name).is_file(), name


def test_save_and_load_keep_a_measure_recogniser(tmp_path):
    model = AttributeRecogniser(RecogniserConfig(32, ("yaw", "glasses"), ("measure", "label")))
    model.centre[0], model.spread[0] = 3.0, 7.0
    save_recognisers(tmp_path / "r.pt", model, {"generator_sha256": "abc", "steps": 1})
    loaded, meta = load_recognisers(tmp_path / "r.pt")
    faces = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out = loaded(faces)
        np.testing.assert_allclose(out.numpy(), model.eval()(faces).numpy())
    assert ((out[:, 1] > 0) & (out[:, 1] < 1)).all()  # a label reads as a probability
    assert meta == {"generator_sha256": "abc", "steps": 1}
    (tmp_path / "bad.pt").write_bytes(b"not torch")
    with pytest.raises(ModelError, match=r"bad\.pt: not a readable recognisers file"):
        load_recognisers(tmp_path / "bad.pt")


def test_training_resumes_exactly(tiny_generator_file, label_folders, tmp_path):
    labels = {"bright": (label_folders / "bright", label_folders / "dark")}
    straight, _ = train_recognisers(
        tiny_generator_file, tmp_path / "a", None, labels, settings=LABELS_ONLY, steps=30
    )
    train_recognisers(tiny_generator_file, tmp_path / "b", None, labels, settings=LABELS_ONLY, steps=20)
    resumed, _ = train_recognisers(
        tiny_generator_file, tmp_path / "b", None, {}, resume=True, settings=LABELS_ONLY, steps=30
    )
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history])
    with pytest.raises(PipelineError, match="holds recognisers already"):
        train_recognisers(tiny_generator_file, tmp_path / "b", None, labels, settings=LABELS_ONLY, steps=30)


def test_a_generator_whose_faces_dlib_cannot_see_is_named(tiny_generator_file, tmp_path):
    """The tiny random generator draws no faces: every sample is dropped and counted."""
    with pytest.raises(PipelineError, match=r"g\.pt: dlib found a face on 0 of its 8 samples") as e:
        train_recognisers(
            tiny_generator_file, tmp_path / "rec", None, samples=8, settings=RecogniserSettings(), steps=1
        )
    assert "\n" not in e.value.one_line()


# ---------------------------------------------------------------------------------------------------
# The command


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_input_ends_in_one_line(tiny_generator_file, label_folders, tmp_path, capsys):
    out = tmp_path / "rec"
    base = ["train", "recognisers", "--generator", str(tiny_generator_file), "--out", str(out)]
    good = f"bright={label_folders / 'bright'},{label_folders / 'dark'}"
    cases = [
        (base, "give one of --steps or --minutes"),
        ([*base, "--minutes", "1", "--steps", "10"], "give one of --steps or --minutes"),
        ([*base, "--minutes", "0"], "--minutes"),
        ([*base, "--steps", "0"], "--steps"),
        ([*base, "--minutes", "1", "--samples", "3"], "--samples"),
        ([*base, "--minutes", "1", "--attribute", "glasses"], "give NAME=DIR_WITH,DIR_WITHOUT"),
        ([*base, "--minutes", "1", "--measures", "yaw,nose"], "nose: not a measure"),
        ([*base, "--minutes", "1", "--measures", "none"], "--measures none needs an --attribute"),
        (
            [*base, "--minutes", "1", "--attribute", f"glasses={tmp_path / 'nope'},{label_folders / 'dark'}"],
            "nope: folder of glasses crops not found",
        ),
        ([*base, "--minutes", "1", "--attribute", good.replace("bright", "yaw", 1)], "--attribute yaw"),
        (
            [*base, "--minutes", "1", "--attribute", good, "--attribute", good],
            "--attribute bright: given twice",
        ),
        ([*base, "--minutes", "1", "--resume"], "no recognisers' training state to resume"),
        (
            [*base[:2], "--generator", "nope", *base[4:], "--minutes", "1"],
            "nope: neither a registered generator",
        ),
    ]
    for argv, expected in cases:
        code, _, err = run(argv, capsys)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert "Traceback" not in err
    assert not out.exists()


def test_train_recognisers_command_runs_as_a_prefect_flow(
    tiny_generator_file, label_folders, tmp_path, prefect_server, capsys
):
    out = tmp_path / "rec"
    argv = ["train", "recognisers", "--generator", str(tiny_generator_file), "--out", str(out)]
    label = f"--attribute=bright={label_folders / 'bright'},{label_folders / 'dark'}"
    code, stdout, err = run([*argv, "--steps", "12", label, "--measures", "none", "--batch", "8"], capsys)
    assert code == 0, err
    assert f"{out}: step 12, " in stdout and "bright: accuracy 1.00 vs 0.50" in stdout
    model, _ = load_recognisers(out)
    assert model.names == ["bright"]
    # the measures of a generator whose faces dlib cannot see: the flow fails on one line, status 2
    code, _, err = run([*argv[:-1], str(tmp_path / "m"), "--minutes", "0.05", "--samples", "50"], capsys)
    assert code == 2 and "dlib found a face on 0 of its 50 samples" in err, err
    assert len(err.strip().splitlines()) == 1
