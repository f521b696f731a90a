from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import write_manifest

from pipeline.errors import ManifestError
from pipeline.faces.detect import identity_verdict
from pipeline.manifest import load_shot
from pipeline.shot.report import altered_stages
from pipeline.shot.swap import SwappedFaces
from pipeline.swap.convert import IdentityMeter, convert_faces
from pipeline.swap.data import Augment, TrainingDataError, load_face_set, make_batch
from pipeline.swap.loss import ssim_map
from pipeline.swap.model import PRESETS, SwapModel
from pipeline.swap.train import CheckpointError, TrainSettings, load_model, read_checkpoint, train


def test_model_shapes_for_both_presets():
    for name, cfg in PRESETS.items():
        model = SwapModel(cfg)
        x = torch.rand(2, 3, cfg.size, cfg.size)
        for who in ("a", "b"):
            rgb, mask = model(x, who)
            assert rgb.shape == x.shape and mask.shape == (2, 1, cfg.size, cfg.size), name
            assert 0 <= float(rgb.detach().min()) and float(rgb.detach().max()) <= 1


def test_ssim_is_one_for_equal_images_and_lower_for_noise():
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(ssim_map(x, x), torch.ones(1, 1, 32, 32), atol=1e-4)
    assert float(ssim_map(x, (x + 0.3 * torch.randn_like(x)).clamp(0, 1)).mean()) < 0.8


def test_augmented_batch_keeps_target_and_input_apart(crops):
    faces = load_face_set(crops["a"], 64, "a")
    batch = make_batch(faces, np.arange(4), np.random.default_rng(0), Augment())
    assert batch["input"].shape == (4, 3, 64, 64) and batch["mask"].shape == (4, 1, 64, 64)
    assert np.abs(batch["input"] - batch["target"]).mean() > 0.005  # the warp only touches the input
    plain = make_batch(faces, np.arange(4), np.random.default_rng(0), Augment(warp=False))
    np.testing.assert_array_equal(plain["input"], plain["target"])
    assert batch["weight"].max() == 3.0  # eyes weigh three times
    assert 0.1 < batch["mask"].mean() < 0.8


def test_training_resumes_exactly_from_a_checkpoint(crops, tmp_path):
    settings = TrainSettings(preset="64", batch=4, lr=1e-4, preview_every=1000)
    straight = train(crops["a"], crops["b"], tmp_path / "straight", settings, steps=4)
    train(crops["a"], crops["b"], tmp_path / "split", settings, steps=2)
    resumed = train(crops["a"], crops["b"], tmp_path / "split", settings, steps=4, resume=True)
    assert resumed.step == straight.step == 4
    assert [h["a_total"] for h in resumed.history] == [h["a_total"] for h in straight.history]
    for (name, p), q in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    assert (tmp_path / "split" / "preview.png").is_file() and (tmp_path / "split" / "loss.png").is_file()
    with pytest.raises(CheckpointError, match="a checkpoint exists; use --resume"):
        train(crops["a"], crops["b"], tmp_path / "split", settings, steps=5)
    with pytest.raises(CheckpointError, match="the checkpoint is preset 64; --preset 128 was asked"):
        train(crops["a"], crops["b"], tmp_path / "split", TrainSettings(preset="128"), steps=5, resume=True)


def test_bad_training_folders(tmp_path, crops):
    with pytest.raises(TrainingDataError, match=r"nothing: training folder not found"):
        load_face_set(tmp_path / "nothing", 64, "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingDataError, match=r"empty: 0 face crops; training needs at least 8"):
        load_face_set(tmp_path / "empty", 64, "a")
    mixed = tmp_path / "mixed"
    shutil.copytree(crops["a"], mixed)
    odd = sorted(mixed.glob("*.png"))[-1]
    cv2.imwrite(str(odd), cv2.resize(cv2.imread(str(odd)), (96, 96)))
    with pytest.raises(TrainingDataError, match=r"crop is 96 px but .* is 128 px"):
        load_face_set(mixed, 64, "a")
    lost = tmp_path / "lost"
    shutil.copytree(crops["a"], lost)
    sorted(lost.glob("*.json"))[0].unlink()
    with pytest.raises(TrainingDataError, match=r"\.json: landmarks missing"):
        load_face_set(lost, 64, "a")


def test_unreadable_checkpoint(tmp_path):
    bad = tmp_path / "swap.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"swap\.pt: not a readable swap checkpoint"):
        read_checkpoint(tmp_path)


@pytest.fixture(scope="module")
def swap_model(tiny_model) -> SwapModel:
    return load_model(tiny_model)


def decoded(model: SwapModel, faces: np.ndarray, who: str) -> tuple[np.ndarray, np.ndarray]:
    """The model's own forward pass through decoder `who`, for faces already at the model's size."""
    with torch.no_grad():
        rgb, mask = model(torch.from_numpy(faces.transpose(0, 3, 1, 2).copy()), who)
    return rgb.permute(0, 2, 3, 1).numpy(), mask[:, 0].numpy()


def test_conversion_gives_faces_and_masks_at_the_crop_size(swap_model, crops):
    """A to B is B's decoder drawing A's face: not the input crop, and not A's decoder."""
    woman = load_face_set(crops["a"], 64, "a").images[:3]  # real crops of person A at the model's size
    want_b, mask_b = decoded(swap_model, woman, "b")
    want_a, _ = decoded(swap_model, woman, "a")
    # after one training step both decoders draw a near-uniform grey, but not the same one: they differ
    # by far more than the tolerance below
    assert np.abs(want_b - want_a).mean() > 1e-3
    faces, masks = convert_faces(swap_model, woman, "b", batch=2)
    assert faces.shape == (3, 64, 64, 3) and masks.shape == (3, 64, 64)
    np.testing.assert_allclose(faces, want_b, atol=1e-5)
    np.testing.assert_allclose(masks, mask_b, atol=1e-5)
    assert np.abs(faces - woman).mean() > 0.05
    # crops bigger than the model: converted at the model's size, then scaled up to the crop size
    big = load_face_set(crops["a"], 128, "a").images[:3]
    faces, masks = convert_faces(swap_model, big, "b", batch=2)
    assert faces.shape == (3, 128, 128, 3) and masks.shape == (3, 128, 128)
    small = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in faces])
    to_b, to_a = np.abs(small - want_b).mean(), np.abs(small - want_a).mean()
    assert to_b < 1e-3 and to_b * 3 < to_a, (to_b, to_a)
    assert np.abs(faces - big).mean() > 0.05


def test_batched_conversion_matches_one_face_at_a_time(crops):
    """In fp32 a face comes out the same whichever batch it is converted in (a batch of 4 leaves a
    remainder of 3). The model's weights are drawn with a variance-preserving scale, so that its output
    depends on the face (a trained model's does; a freshly initialised one's is a near-uniform grey)."""
    torch.manual_seed(0)
    model = SwapModel(PRESETS["64"]).eval()
    for layer in model.modules():
        if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
            torch.nn.init.kaiming_normal_(layer.weight, a=0.1)
    faces = load_face_set(crops["a"], 128, "a").images[:7]
    singly = [convert_faces(model, f[None], "b", batch=1) for f in faces]
    batched, masks = convert_faces(model, faces, "b", batch=4)
    np.testing.assert_allclose(batched, np.concatenate([f for f, _ in singly]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(masks, np.concatenate([m for _, m in singly]), rtol=0, atol=1e-5)
    assert np.abs(batched[0] - batched[1]).mean() > 0.01  # different faces, different outputs


@pytest.mark.parametrize("direction, decoder", [("a_to_b", "b"), ("b_to_a", "a")])
def test_swap_direction_picks_the_decoder(
    direction, decoder, tmp_path, footage, crops, tiny_model, swap_model
):
    """README: b_to_a draws B's performance as A, so the new faces come from decoder A (a_to_b: B)."""
    source_person = "b" if direction == "b_to_a" else "a"
    plate = footage / ("man_glasses_720x1280.mp4" if source_person == "b" else "woman_headturns_512.mp4")
    m = write_manifest(
        tmp_path,
        f"""
shot: sw020
plate: {{movie: {plate}}}
faces: {{crop_size: 64}}
composite: {{}}
swap: {{model: {tiny_model}, direction: {direction}, batch: 2}}
""",
    )
    shot = load_shot(m)
    assert altered_stages(shot) == [f"face swap ({direction})"]
    performer = load_face_set(crops[source_person], 64, source_person).images[:3]
    faces, masks = SwappedFaces(shot)([1001, 1002, 1003], list(performer), [None] * 3)
    want, want_mask = decoded(swap_model, performer, decoder)
    other, _ = decoded(swap_model, performer, "a" if decoder == "b" else "b")
    np.testing.assert_allclose(np.stack(faces), want, atol=1e-5)
    np.testing.assert_allclose(np.stack(masks), want_mask, atol=1e-5)  # use_model_mask is on by default
    assert np.abs(np.stack(faces) - other).mean() > 1e-3


def test_chunks_starting_together_load_the_swap_model_once(tmp_path, woman_clip, tiny_model, monkeypatch):
    """A render's chunks run on threads; four of them starting at once must not each read the checkpoint."""
    import threading
    import time

    from pipeline.shot import swap as swap_stage
    from pipeline.swap import train as swap_train

    m = write_manifest(
        tmp_path,
        f"shot: sw030\nplate: {{movie: {woman_clip}}}\nfaces: {{crop_size: 64}}\ncomposite: {{}}\n"
        f"swap: {{model: {tiny_model}}}\n",
    )
    shot = load_shot(m)
    loads, real_load = [], swap_train.load_model

    def slow_load(*args, **kwargs):
        loads.append(args[0])
        time.sleep(0.5)  # a 1 GB checkpoint takes seconds: the other threads arrive meanwhile
        return real_load(*args, **kwargs)

    monkeypatch.setattr(swap_train, "load_model", slow_load)
    swap_stage._cached_model.cache_clear()
    models = []
    threads = [threading.Thread(target=lambda: models.append(SwappedFaces(shot).model)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    swap_stage._cached_model.cache_clear()
    assert len(loads) == 1 and len(models) == 4 and all(x is models[0] for x in models)


def test_a_model_that_does_not_fit_the_crop_size(tmp_path, woman_clip, tiny_model):
    m = write_manifest(
        tmp_path,
        f"""
shot: sw
plate: {{movie: {woman_clip}}}
faces: {{crop_size: 128}}
composite: {{}}
swap: {{model: {tiny_model}}}
""",
    )
    with pytest.raises(
        ManifestError,
        match=r":6 swap\.model: the model is preset 64 \(64 px faces\) but "
        r"faces\.crop_size is 128",
    ):
        load_shot(m)
    m = write_manifest(tmp_path, f"shot: sw\nplate: {{movie: {woman_clip}}}\nswap: {{model: {tiny_model}}}\n")
    with pytest.raises(ManifestError, match=r":3 swap: needs enabled faces and composite"):
        load_shot(m)


def test_a_one_step_training_leaves_a_labelled_preview_and_a_loss_plot_that_says_why_it_is_empty(tiny_model):
    preview = cv2.imread(str(tiny_model / "preview.png"))
    loss = cv2.imread(str(tiny_model / "loss.png"))
    # 4 faces of 64 px in 6 columns, with a band of column names above and the step below
    assert preview.shape == (4 * 64 + 18 + 18, 6 * 64, 3)
    top, bottom = preview[:18], preview[-18:]
    assert (top < 128).any() and (bottom < 128).any() and (top > 250).mean() > 0.8
    # one step gives no curve; the plot says so rather than staying blank
    assert (loss < 128).sum() > 200


def test_the_identity_verdict_looks_at_absolute_figures_first():
    # a grid nearer B on every frame (the old check's success) fails: it is not a face
    assert identity_verdict(found=0.0, to_target=0.9, closer_to_target=1.0)["verdict"] == "fail"
    assert identity_verdict(1.0, 0.5, closer_to_target=0.2)["why"].startswith("nearer the source person")
    weak = identity_verdict(0.95, 0.72, closer_to_target=0.8)
    assert weak["verdict"] == "weak" and "0.720 is above 0.6" in weak["why"]
    assert identity_verdict(1.0, 0.45, closer_to_target=0.9)["verdict"] == "pass"
    assert identity_verdict(1.0, 0.45)["verdict"] == "pass"  # projection: no source person


def test_dlib_finds_real_aligned_faces_but_not_noise_grids_or_blur(crops):
    meter = IdentityMeter()
    faces = load_face_set(crops["a"], 64, "a").images[:4]
    assert all(meter.finds_face(f) for f in faces)
    rng = np.random.default_rng(0)
    grid = np.zeros((64, 64, 3), np.float32)
    grid[::8], grid[:, ::8] = 0.8, 0.8
    blurred = cv2.GaussianBlur(faces[0], (0, 0), 3)
    for fake in (rng.random((64, 64, 3), dtype=np.float32), grid, blurred):
        assert not meter.finds_face(fake)


def test_the_identity_meter_describes_faces_as_dlib_does_one_or_many(crops):
    """The meter's batched torch descriptors are dlib's compute_face_descriptor on the same enlarged crop
    and rounded landmarks, for crops of any size, one face or several at once."""
    import dlib

    from pipeline.media.color import to_float, to_uint8
    from pipeline.models import model_path

    recogniser = dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition")))
    meter = IdentityMeter()
    for size in (64, 256):
        faces = load_face_set(crops["a"], size, "a")
        images, landmarks = faces.images[:3], faces.landmarks[:3]
        dlibs = []
        for crop, lm in zip(images, landmarks, strict=True):
            img = to_uint8(cv2.resize(to_float(crop), (256, 256), interpolation=cv2.INTER_CUBIC))
            points = [dlib.point(int(round(x)), int(round(y))) for x, y in lm * 256 / size]
            shape = dlib.full_object_detection(dlib.rectangle(0, 0, 255, 255), points)
            dlibs.append(np.array(recogniser.compute_face_descriptor(np.ascontiguousarray(img), shape)))
        many = meter.embed_many(images, landmarks)
        assert many.shape == (3, 128) and np.abs(many - np.array(dlibs)).max() < 1e-4
        assert np.abs(meter.embed(images[1], landmarks[1]) - dlibs[1]).max() < 1e-4
        centroid = meter.centroid(images, landmarks)
        assert np.abs(centroid - np.mean(dlibs, 0)).max() < 1e-4
    assert meter.embed_many([], np.zeros((0, 68, 2))).shape == (0, 128)


@pytest.mark.slow
def test_swap_render_through_the_flow(tmp_path, woman_clip, tiny_model, crops, prefect_server):
    from pipeline.flows import run_render

    m = write_manifest(
        tmp_path,
        f"""
shot: sw010
plate: {{movie: {woman_clip}}}
frames: 1001-1008
output: {{sequence: png8, movies: [], chunk_size: 4}}
faces: {{crop_size: 64}}
composite: {{blend: laplacian}}
swap:
  model: {tiny_model}
  direction: a_to_b
  batch: 4
  reference_a: {crops["a"]}
  reference_b: {crops["b"]}
""",
    )
    v = Path(run_render(str(m), root=str(tmp_path / "r"))["path"])
    report = json.loads((v / "report.json").read_text())
    assert report["metadata"]["synthetic_imagery"] == "true"
    assert report["metadata"]["ai_altered_stages"] == "face swap (a_to_b)"
    assert str(tiny_model) in report["metadata"]["models"]
    assert "swap" in report["stages_run"]
    # the per-frame rows are [frame, distance to A, distance to B, face found]: real dlib distances, not one
    # number twice
    rows = report["faces"]["identity_per_frame"]
    assert [r[0] for r in rows] == list(range(1001, 1009))
    to_a, to_b = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    assert np.isfinite(to_a).all() and np.isfinite(to_b).all(), rows
    assert (to_a > 0.05).all() and (to_b > 0.05).all() and (to_a < 2).all() and (to_b < 2).all(), rows
    assert (np.abs(to_a - to_b) > 1e-4).all(), f"the same distance to A and to B: {rows}"
    # and the summary is what the rows give, for the target person B; a model trained for one step draws
    # no face at all, whatever share of frames is nearer B, and the verdict says so (report.md too)
    identity = report["faces"]["identity"]
    assert {k: identity[k] for k in identity if k not in ("verdict", "why")} == {
        "frames": 8,
        "mean_distance_to_a": pytest.approx(to_a.mean()),
        "mean_distance_to_b": pytest.approx(to_b.mean()),
        "closer_to_target": pytest.approx(np.mean(to_b < to_a)),
        "face_found": 0.0,
        "target": "b",
    }
    assert [r[3] for r in rows] == [0.0] * 8
    assert identity["verdict"] == "fail" and identity["why"].startswith("not a face: dlib finds a face in 0%")
    assert "- Verdict: **fail**: not a face" in (v / "report.md").read_text()
    # the comp has a new face: changed in the middle of the face, untouched above the forehead (the crop's
    # square covers most of this close-up, and the matte reaches into most of the square)
    comps = sorted((v / "comp").glob("*.png"))
    assert len(comps) == 8
    transforms = json.loads((v / "transforms.json").read_text())
    size = transforms["crop_size"]
    for i, (plate, path) in enumerate(zip(load_shot(m).plate.read(0, 8), comps, strict=True)):
        comp = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = plate.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w]
        matrix = np.array(transforms["frames"][i]["plate_to_crop"])
        cx, cy = (matrix @ np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])).reshape(2, h, w) / size
        middle = (0.35 < cx) & (cx < 0.65) & (0.45 < cy) & (cy < 0.7)  # cheeks, nose, mouth
        above = cy < 0.1
        assert middle.sum() > 5000 and above.sum() > 5000
        assert np.abs(comp.astype(int) - plate)[middle].mean() > 4, path.name
        np.testing.assert_array_equal(comp[above], plate[above])


def test_a_reference_folder_without_enough_crops_is_refused_at_validate(tmp_path, tiny_model, crops):
    """It passed validate and failed at render, after the track, in the words of a training's data check."""
    from pipeline.swap.data import MIN_FACES

    few = tmp_path / "few"
    few.mkdir()
    for png in sorted(crops["a"].glob("*.png"))[: MIN_FACES - 1]:
        (few / png.name).write_bytes(png.read_bytes())
    m = write_manifest(
        tmp_path,
        "shot: sw011\nplate: {still: builtin:astronaut, hold: 2}\nfaces: {crop_size: 64}\ncomposite: {}\n"
        f"swap:\n  model: {tiny_model}\n  reference_a: {few}\n  reference_b: {crops['b']}\n",
    )
    with pytest.raises(ManifestError) as e:
        load_shot(m)
    assert str(e.value) == (
        f"{m}:7 swap.reference_a: {few}: {MIN_FACES - 1} face crops; the identity measure needs at least "
        f"{MIN_FACES} (vfx extract makes them)"
    )
