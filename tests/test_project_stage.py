"""The projection stage in the render flow: keys chosen from the track, latents cached per shot and reused
while what they depend on is unchanged, every-frame mode warm-started, faces drawn by the generator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_generator_config, write_manifest

from pipeline.errors import ManifestError
from pipeline.faces.track import FaceTrack
from pipeline.manifest import load_shot
from pipeline.media.sequences import read_png_text
from pipeline.shot import path as shot_path
from pipeline.shot import project as shot_project
from pipeline.shot import track as shot_track
from pipeline.shot.swap import swap_key
from pipeline.stylegan.checkpoints import load_generator
from pipeline.stylegan.lpips import load_lpips

CFG = tiny_generator_config()


@pytest.fixture(scope="module")
def generator_file(tiny_generator_file) -> Path:
    return tiny_generator_file


def shot_yaml(
    clip: Path, generator: Path, project: str, composite: str = "{}", frames: str = "1001-1012"
) -> str:
    return f"""
shot: pj010
plate: {{movie: {clip}}}
frames: {frames}
output: {{sequence: png8, movies: [], chunk_size: 6}}
faces: {{crop_size: 64}}
project: {{generator: {generator}, {project}}}
composite: {composite}
"""


@pytest.fixture(scope="module")
def track(woman_clip, generator_file, tmp_path_factory) -> tuple[FaceTrack, str]:
    """The real track of the clip's first 12 frames, made without Prefect."""
    folder = tmp_path_factory.mktemp("track")
    shot = load_shot(write_manifest(folder, shot_yaml(woman_clip, generator_file, "steps: 5")))
    found = shot_track.detect_range(shot, shot.first, shot.last).faces
    return shot_track.finish_track(shot, found, folder / "track.npz"), shot_track.track_key(shot)


def test_manifest_checks_of_the_project_section(tmp_path, woman_clip, generator_file):
    bad = {
        "key_frames: [1001, 1100]": r":7 project\.key_frames\[1\]: frame 1100 is outside the shot's frames "
        r"1001-1012",
        "mode: every_frame, key_frames: [1001]": r":7 project\.key_frames: applies to mode: keyframes only",
        "source: swap": r":7 project\.source: swap needs an enabled swap section",
        "steps: 0": r":7 project\.steps: Input should be greater than or equal to 1",
    }
    for project, message in bad.items():
        m = write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, project))
        with pytest.raises(ManifestError, match=message):
            load_shot(m)
    m = write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, "steps: 5", "{enabled: false}"))
    with pytest.raises(ManifestError, match=r":7 project: needs enabled faces and composite sections"):
        load_shot(m)
    m = write_manifest(tmp_path, shot_yaml(woman_clip, tmp_path / "nope.pt", "steps: 5"))
    with pytest.raises(ManifestError, match=r":7 project\.generator: .*nope\.pt"):
        load_shot(m)


def test_key_frames_every_k_listed_or_every_frame(tmp_path, woman_clip, generator_file, track):
    t, _ = track

    def keys(project: str) -> list[int]:
        shot = load_shot(write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, project)))
        return shot_project.key_frames(shot, t)

    assert keys("every: 5") == [1001, 1006, 1011, 1012]  # and always the last frame
    assert keys("key_frames: [1010, 1003]") == [1003, 1010]
    assert keys("mode: every_frame") == list(range(1001, 1013))
    # a k-th frame without a face moves to the nearest frame that has one
    gap = FaceTrack(**{**t.__dict__, "params": t.params.copy()})
    gap.params[5:7] = np.nan  # frames 1006, 1007
    shot = load_shot(write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, "every: 5")))
    assert shot_project.key_frames(shot, gap) == [1001, 1005, 1011, 1012]
    shot = load_shot(write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, "key_frames: [1006]")))
    with pytest.raises(ManifestError, match=r"project\.key_frames: frame 1006 has no face in the track"):
        shot_project.key_frames(shot, gap)


def test_every_frame_mode_starts_each_frame_from_the_last(tmp_path, woman_clip, generator_file, track):
    t, _ = track
    project = "mode: every_frame, steps: 12, following_steps: 3, patience: 0"
    shot = load_shot(
        write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, project, frames="1001-1005"))
    )
    per_frame = len(t.frames)
    t5 = FaceTrack(  # the first 5 frames: per-frame arrays cut, the rest (cuts, thresholds) kept
        **{
            k: v[:5] if isinstance(v, np.ndarray) and len(v) == per_frame else v
            for k, v in t.__dict__.items()
        }
    )
    p = shot_project.project_faces(shot, t5, log=lambda _: None)
    assert list(p.frames) == [1001, 1002, 1003, 1004, 1005]
    assert list(p.steps) == [12, 3, 3, 3, 3]
    assert p.latents.shape == (5, CFG.num_ws, 64) and p.targets.shape == (5, 32, 32, 3)
    # the reported LPIPS is that of the generator's image from the stored latents (with its fixed noise:
    # the stage does not optimise noise) against each frame's aligned face
    faces = shot_project.aligned_faces(shot, t5, list(p.frames), CFG.resolution)
    assert np.abs(p.targets / 255 - faces).max() <= 0.5 / 255 + 1e-6  # the stored targets are those faces
    G, _ = load_generator(generator_file)
    with torch.no_grad():
        image = G.synthesis(torch.from_numpy(p.latents), "const")
        again = load_lpips("vgg")(image, torch.from_numpy(faces).permute(0, 3, 1, 2) * 2 - 1).numpy()
    assert np.allclose(p.lpips, again, rtol=0, atol=1e-5), (p.lpips, again)
    # neighbouring frames' latents stay close: each starts from the last
    steps = np.linalg.norm(np.diff(p.latents, axis=0), axis=-1).mean()
    spread = np.linalg.norm(p.latents - p.latents.mean(0), axis=-1).mean()
    assert steps < 2 * spread


@pytest.mark.slow
def test_projection_stage_renders_generated_faces_and_reuses_its_latents(
    tmp_path, woman_clip, generator_file, prefect_server, monkeypatch
):
    from pipeline.flows import run_render

    calls = []
    original = shot_project.project_faces

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(shot_project, "project_faces", counting)
    root = tmp_path / "r"
    m = write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, "every: 6, steps: 10"))
    v = Path(run_render(str(m), root=str(root))["path"])
    report = json.loads((v / "report.json").read_text())
    assert "project" in report["stages_run"] and len(calls) == 1
    p = report["faces"]["projection"]
    assert p["frames_projected"] == 3 and not p["cached"] and p["mode"] == "keyframes"
    assert [f for f, _ in p["lpips_per_frame"]] == [1001, 1007, 1012]
    assert report["metadata"]["synthetic_imagery"] == "true"
    assert "stylegan projection" in report["metadata"]["ai_altered_stages"]
    assert f"generator:{generator_file}" in report["metadata"]["models"]
    frame = v / "comp" / "pj010_comp_v001.1004.png"
    assert read_png_text(frame)["synthetic_imagery"] == "true"
    assert (v / "projection_contact_sheet.png").is_file()
    # the comp holds the generator's face: it differs from the plate where the face is, not elsewhere
    shot = load_shot(m)
    plate = next(shot.plate.read(3, 4)).astype(np.float32) / 255
    comp = cv2.imread(str(frame))[..., ::-1].astype(np.float32) / 255
    diff = np.abs(comp - plate).mean(axis=-1)
    assert diff[150:350, 180:330].mean() > 0.02 and diff[:60].mean() < 0.01
    assert "path" in report["stages_run"] and [f for f, _ in report["path"]["keys"]] == [1001, 1007, 1012]
    faces = shot_path.GeneratedFaces(shot, report["path"]["path"])
    with np.load(p["path"]) as d:
        assert np.abs(faces.latents([1001, 1007, 1012]) - d["latents"]).max() < 1e-5
    assert "## Projection" in (v / "report.md").read_text()

    # a composite change re-composites but does not project again
    m = write_manifest(
        tmp_path, shot_yaml(woman_clip, generator_file, "every: 6, steps: 10", "{blend: alpha}")
    )
    v2 = Path(run_render(str(m), root=str(root))["path"])
    assert len(calls) == 1
    assert json.loads((v2 / "report.json").read_text())["faces"]["projection"]["cached"]
    # a projection change projects again
    m = write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, "every: 6, steps: 11"))
    run_render(str(m), root=str(root))
    assert len(calls) == 2
    assert len(list((root / "pj010" / "cache").glob("latents-*.npz"))) == 2


def test_with_a_swap_the_swapped_faces_are_projected(tmp_path, woman_clip, generator_file, track, tiny_model):
    t, key = track
    project = "every: 6, steps: 5"
    plain = load_shot(write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, project)))
    swapped = load_shot(
        write_manifest(
            tmp_path, shot_yaml(woman_clip, generator_file, project) + f"swap: {{model: {tiny_model}}}\n"
        )
    )
    assert not shot_project.projects_swapped_faces(plain) and shot_project.projects_swapped_faces(swapped)
    a = shot_project.aligned_faces(plain, t, [1001, 1002], 32)
    b = shot_project.aligned_faces(swapped, t, [1001, 1002], 32)
    assert a.shape == b.shape == (2, 32, 32, 3) and np.abs(a - b).mean() > 0.02
    # the swap model is part of what the cached latents depend on
    swap = swap_key(swapped, key)
    assert shot_project.project_key(plain, key, None).key != shot_project.project_key(swapped, key, swap).key
    assert shot_project.project_key(swapped, key, swap).changes(
        shot_project.project_key(plain, key, None).parts
    ) == ["swap"]
    source_plate = load_shot(
        write_manifest(
            tmp_path,
            shot_yaml(woman_clip, generator_file, project + ", source: plate")
            + f"swap: {{model: {tiny_model}}}\n",
        )
    )
    assert not shot_project.projects_swapped_faces(source_plate)


def test_projection_starts_from_an_encoder_of_the_shots_generator(
    tmp_path, woman_clip, generator_file, track, monkeypatch
):
    from pipeline.models import sha256_file
    from pipeline.stylegan.checkpoints import save_generator
    from pipeline.stylegan.encoder import Encoder, save_encoder
    from pipeline.stylegan.generator import Generator
    from pipeline.stylegan.registry import register_encoder

    t, _ = track
    G, _ = load_generator(generator_file)
    encoder = tmp_path / "enc" / "encoder.pt"
    encoder.parent.mkdir()
    save_encoder(encoder, Encoder.for_generator(G, samples=500), sha256_file(generator_file))
    shot = load_shot(
        write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, f"encoder: {encoder}, every: 6"))
    )
    assert shot.spec.project.steps == 100  # a polish from the encoder: a tenth of the default schedule
    project = f"encoder: {encoder}, every: 6, steps: 3, patience: 0"
    shot = load_shot(write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, project)))
    p = shot_project.project_faces(shot, t, log=lambda _: None)
    assert p.init == "encoder" and list(p.frames) == [1001, 1007, 1012] and list(p.steps) == [3, 3, 3]
    assert p.encoder_lpips.shape == (3,) and np.isfinite(p.encoder_lpips).all()
    # the encoder is part of the projection's key; init: mean leaves it out
    key = shot_project.project_key(shot, shot_track.track_key(shot), None)
    mean = load_shot(
        write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, project + ", init: mean"))
    )
    assert shot_project.project_key(mean, shot_track.track_key(mean), None).parts["encoder"] == "none"
    assert key.parts["encoder"] != "none"

    # an encoder of another generator is refused when the manifest is loaded (vfx validate), naming the
    # field; and by the projection, should the file change after
    torch.manual_seed(8)
    other = tmp_path / "other.pt"
    save_generator(other, Generator(CFG).eval())
    wrong = tmp_path / "wrong" / "encoder.pt"
    wrong.parent.mkdir()
    save_encoder(wrong, Encoder.for_generator(G, samples=500), sha256_file(other))
    m = write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, f"encoder: {wrong}, steps: 3"))
    with pytest.raises(ManifestError, match=r":7 project\.encoder: .*trained for the generator"):
        load_shot(m)
    shutil.copyfile(wrong, encoder)
    with pytest.raises(ManifestError, match=r":7 project\.encoder: .*trained for the generator"):
        shot_project.project_faces(shot, t, log=lambda _: None)
    encoder.write_bytes(b"junk")
    m = write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, f"encoder: {encoder}"))
    junk = r":7 project\.encoder: .*encoder\.pt: not a readable torch checkpoint: not a torch\.save archive"
    with pytest.raises(ManifestError, match=junk):
        load_shot(m)
    monkeypatch.setenv("VFX_MODELS", str(tmp_path / "models"))
    register_encoder("wrong_enc", wrong)
    m = write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, "encoder: wrong_enc"))
    with pytest.raises(ManifestError, match=r":7 project\.encoder: wrong_enc was trained for the generator"):
        load_shot(m)
    m = write_manifest(tmp_path, shot_yaml(woman_clip, generator_file, "init: encoder"))
    with pytest.raises(ManifestError, match=r"project.*init: encoder needs an encoder"):
        load_shot(m)
