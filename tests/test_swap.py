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
from pipeline.manifest import load_shot
from pipeline.swap.convert import convert_faces
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


def test_conversion_gives_faces_and_masks_at_the_crop_size(tiny_model):
    model = load_model(tiny_model)
    crops = np.random.default_rng(0).random((3, 128, 128, 3)).astype(np.float32)
    faces, masks = convert_faces(model, crops, "b", batch=2)
    assert faces.shape == (3, 128, 128, 3) and masks.shape == (3, 128, 128)


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
    identity = report["faces"]["identity"]
    assert identity["frames"] == 8 and 0 <= identity["closer_to_target"] <= 1
    assert len(report["faces"]["identity_per_frame"]) == 8
    assert len(list((v / "comp").glob("*.png"))) == 8
