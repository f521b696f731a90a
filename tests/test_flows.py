"""End-to-end renders through the real Prefect flow (one temporary Prefect server for the session)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import REPO, make_clip, write_manifest
from PIL import Image

from pipeline.cli import main
from pipeline.errors import ManifestError, MediaError
from pipeline.flows import run_render
from pipeline.manifest import load_shot
from pipeline.media.color import to_float
from pipeline.media.decode import read_image
from pipeline.media.encode import ffmpeg_executable
from pipeline.media.probe import probe_movie
from pipeline.media.sequences import read_png_text

pytestmark = pytest.mark.slow


def frames_in(version: Path) -> list[Path]:
    return sorted((version / "comp").glob("*.png"))


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_render_a_still_plate_into_versions(tmp_path, prefect_server):
    m = write_manifest(
        tmp_path,
        """
shot: st010
plate:
  still: builtin:astronaut
  hold: 6
  move: {zoom: [1.0, 1.1]}
fps: 24
output: {sequence: png8, movies: [h264_review, prores4444], chunk_size: 4}
""",
    )
    root = tmp_path / "render"
    r1 = run_render(str(m), root=str(root))
    v1 = Path(r1["path"])
    assert v1 == root / "st010" / "v001"
    frames = frames_in(v1)
    assert [p.name for p in frames] == [f"st010_comp_v001.{n}.png" for n in range(1001, 1007)]
    report = json.loads((v1 / "report.json").read_text())
    assert report["frames_written"] == 6 and len(report["chunks"]) == 2
    assert (v1 / "report.md").read_text().startswith("# st010 v001")
    # every output carries the metadata
    for p in [*frames, v1 / "contact_sheet.png"]:
        text = read_png_text(p)
        assert (
            text["synthetic_imagery"] == "false"
            and text["shot"] == "st010"
            and text["render_version"] == "v001"
        )
    for movie in ("st010_comp_v001_h264_review.mp4", "st010_comp_v001_prores4444.mov"):
        with av.open(str(v1 / movie)) as c:
            assert c.metadata["synthetic_imagery"] == "false" and c.metadata["render_version"] == "v001"
            assert sum(1 for _ in c.decode(video=0)) == 6
    sheet = Image.open(v1 / "contact_sheet.png")
    assert sheet.width == 4 * 320 and sheet.height > 300
    assert json.loads((v1 / "render.json").read_text())["status"] == "done"

    stamp = {p: p.stat().st_mtime_ns for p in v1.rglob("*")}
    r2 = run_render(str(m), root=str(root), frames="1003-1004")
    v2 = Path(r2["path"])
    assert v2.name == "v002"
    assert [p.name for p in frames_in(v2)] == ["st010_comp_v002.1003.png", "st010_comp_v002.1004.png"]
    # the re-render of part of the shot is the same pixels as those frames of the full render
    np.testing.assert_array_equal(cv2.imread(str(frames_in(v2)[0])), cv2.imread(str(frames[2])))
    assert {p: p.stat().st_mtime_ns for p in v1.rglob("*")} == stamp  # v001 untouched


def test_bad_input_fails_before_rendering(tmp_path, clip, capsys):
    m = write_manifest(tmp_path, f"shot: a\nplate:\n  movie: {clip}\n")
    with pytest.raises(ManifestError, match=r"--frames 990-1010 is outside the plate's frames 1001-1050"):
        run_render(str(m), root=str(tmp_path / "r"), frames="990-1010")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert main(["render", str(m), "--root", str(blocker / "render")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{blocker}/render: output folder cannot be written")
    assert not (tmp_path / "r").exists()


def test_decode_error_mid_file_names_the_frame_and_keeps_finished_frames(tmp_path, prefect_server):
    clip = make_clip(tmp_path / "c.mp4", frames=60, audio=False)
    data = bytearray(clip.read_bytes())
    mdat = data.find(b"mdat")
    cut = mdat + int((len(data) - mdat) * 0.75)
    data[cut : cut + 2000] = np.random.default_rng(3).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    clip.write_bytes(bytes(data))
    m = write_manifest(
        tmp_path, f"shot: bad\nplate:\n  movie: {clip}\noutput: {{sequence: png8, chunk_size: 10}}\n"
    )
    with pytest.raises(MediaError, match=r"c\.mp4: frame \d+: (decode error|corrupt packet)"):
        run_render(str(m), root=str(tmp_path / "r"))
    v = tmp_path / "r" / "bad" / "v001"
    done = frames_in(v)
    assert 10 <= len(done) < 60  # the chunks before the damage are kept
    assert not list(v.glob("*.mp4")) and not list(v.rglob(".*.tmp"))
    state = json.loads((v / "render.json").read_text())
    assert state["status"] == "failed" and "frame" in state["error"]


def test_passthrough_of_real_footage_is_pixel_identical_with_trimmed_audio(tmp_path, footage, prefect_server):
    clip = footage / "talking_head_mpeg4_512.mp4"
    m = write_manifest(
        tmp_path,
        f"""
shot: th010
plate:
  movie: {clip}
frames: 1021-1120
output: {{sequence: png8, movies: [h264_review, prores422hq], chunk_size: 25}}
""",
    )
    v = Path(run_render(str(m), root=str(tmp_path / "r"))["path"])
    plate = decode(clip)
    frames = frames_in(v)
    assert len(frames) == 100
    for i, p in enumerate(frames):
        got = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(got, plate[20 + i], err_msg=p.name)
    for movie in v.glob("th010_comp_v001_*"):
        with av.open(str(movie)) as c:
            assert c.metadata["synthetic_imagery"] == "false"
            a = c.streams.audio[0]
            assert abs(float(a.duration * a.time_base) - 100 / 25) <= 1 / 25, movie.name
            assert sum(1 for _ in c.decode(video=0)) == 100
    # the carried audio is the plate's audio from frame 1021 on: find the lag by cross-correlation
    lag = audio_lag(clip, 20 / 25, v / "th010_comp_v001_prores422hq.mov")
    assert abs(lag) < 1 / 25, lag


def test_a_comp_carries_the_plates_timecode_on_every_frame_and_movie(tmp_path, prefect_server, capsys):
    """Editorial conforms a comp by its timecode: a 29.97 fps camera movie's drop-frame timecode, rendered
    from its 2nd frame, goes on in each comp EXR's timeCode (across the minute, where labels are skipped),
    in each movie's timecode track and in the report; a plate whose timecode does not fit its rate is
    warned of at validate and renders without one, and so is a movie played at another rate than its own."""
    from pipeline.media.sequences import read_exr_header

    cmd = [ffmpeg_executable(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30000/1001"]
    subprocess.run(
        [*cmd, "-frames:v", "6", "-timecode", "00:00:59;27", str(tmp_path / "cam.mov")], check=True
    )
    m = write_manifest(
        tmp_path,
        "shot: tc010\nplate: {movie: cam.mov}\noutput: {sequence: exr, movies: [h264_review, prores422hq]}\n",
    )
    assert main(["validate", str(m)]) == 0
    assert capsys.readouterr().out.strip().endswith("timecode 00:00:59;27")
    v = Path(run_render(str(m), root=str(tmp_path / "r"), frames="1002-1005")["path"])
    labels = ["00:00:59;28", "00:00:59;29", "00:01:00;02", "00:01:00;03"]
    for n, label in zip(range(1002, 1006), labels, strict=True):
        header = read_exr_header(v / "comp" / f"tc010_comp_v001.{n}.exr")
        assert header["framesPerSecond"] == Fraction(30000, 1001)
        tc = header["timeCode"]
        assert f"{tc.hours:02d}:{tc.minutes:02d}:{tc.seconds:02d};{tc.frame:02d}" == label and tc.dropFrame
    for movie in ("tc010_comp_v001_h264_review.mp4", "tc010_comp_v001_prores422hq.mov"):
        assert probe_movie(v / movie).timecode == labels[0], movie
    report = json.loads((v / "report.json").read_text())
    assert (report["frames"]["timecode_in"], report["frames"]["timecode_out"]) == (labels[0], labels[-1])

    subprocess.run(
        [
            *cmd,
            "-frames:v",
            "3",
            "-c:v",
            "ffv1",
            "-metadata",
            "timecode=00:00:00:30",
            str(tmp_path / "b.mkv"),
        ],
        check=True,
    )
    m = write_manifest(
        tmp_path, "shot: tc020\nplate: {movie: b.mkv}\noutput: {movies: [h264_review]}\n", "b.yaml"
    )
    assert main(["validate", str(m)]) == 0
    assert "timecode is of no use: 00:00:00:30 is not a timecode at 29.97 fps" in capsys.readouterr().out
    v = Path(run_render(str(m), root=str(tmp_path / "r"))["path"])
    assert probe_movie(v / "tc020_comp_v001_h264_review.mp4").timecode == ""
    # played at another rate than its own (a copied `fps: 24`), a movie's timecode counts other frames
    m = write_manifest(tmp_path, "shot: tc030\nplate: {movie: cam.mov}\nfps: 24\n", "c.yaml")
    assert main(["validate", str(m)]) == 0
    out = capsys.readouterr().out
    assert "fps 24 is not the movie's own rate (29.97): its frames play 19.9% slower" in out, out
    assert "neither its audio nor its timecode" in out and load_shot(m).frame_timecode(1001) == ""


def test_a_plate_whose_picture_starts_after_its_sound_keeps_lip_sync(tmp_path, footage, prefect_server):
    """A camera's audio pre-roll, or an edit that starts the picture late: the talking head's picture put
    0.5 s after its sound in one MOV. The movies' audio is cut from the first picture's time on the
    file's timeline; it was cut from the file's start, and played half a second early."""
    clip = footage / "talking_head_mpeg4_512.mp4"
    plate = tmp_path / "preroll.mov"
    cmd = [ffmpeg_executable(), "-v", "error", "-itsoffset", "0.5", "-i", str(clip), "-i", str(clip)]
    subprocess.run([*cmd, "-map", "0:v", "-map", "1:a", "-t", "5", "-c", "copy", str(plate)], check=True)
    m = write_manifest(
        tmp_path,
        f"shot: pr010\nplate: {{movie: {plate}}}\nframes: 1011-1060\noutput: {{movies: [prores422hq]}}\n",
    )
    v = Path(run_render(str(m), root=str(tmp_path / "r"))["path"])
    # as a player hears them: each file's sound placed against its first picture, by their start times
    heard, rate = audio_against_picture(plate)
    movie, movie_rate = audio_against_picture(v / "pr010_comp_v001_prores422hq.mov")
    assert rate == movie_rate
    lag = best_lag(heard[int(10 / 25 * rate) :][: len(movie)], movie, rate)
    assert abs(lag) < 1 / 25, lag


def audio_against_picture(path: Path) -> tuple[np.ndarray, int]:
    """A movie's sound, mono, with sample 0 at its first picture's time (silence before its first sample)."""
    with av.open(str(path)) as c:
        picture = next(c.decode(video=0))
        start = float(picture.pts * picture.time_base)
    a, rate = audio_mono(path)
    with av.open(str(path)) as c:
        first = next(c.decode(audio=0))
        shift = int(round((float(first.pts * first.time_base) - start) * rate))
    return (np.concatenate([np.zeros(shift), a]) if shift >= 0 else a[-shift:]), rate


def best_lag(a: np.ndarray, b: np.ndarray, rate: int, max_lag: float = 0.75) -> float:
    """Seconds b lags a by, from their cross-correlation within +-max_lag."""
    n = min(len(a), len(b))
    corr = np.fft.irfft(np.fft.rfft(b[:n], 2 * n) * np.conj(np.fft.rfft(a[:n], 2 * n)))
    most = int(max_lag * rate)
    lags = np.r_[np.arange(0, most), np.arange(-most, 0)]
    return lags[np.argmax(np.r_[corr[:most], corr[-most:]])] / rate


def audio_mono(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        chunks = [
            f.to_ndarray().astype(np.float64).reshape(s.channels, -1).mean(0)
            if f.format.is_planar
            else f.to_ndarray().astype(np.float64).reshape(-1, s.channels).mean(1)
            for f in c.decode(s)
        ]
        return np.concatenate(chunks), s.rate


def audio_lag(plate: Path, offset: float, movie: Path) -> float:
    a, rate = audio_mono(plate)
    b, rate_b = audio_mono(movie)
    assert rate == rate_b
    return best_lag(a[int(offset * rate) : int(offset * rate) + len(b)], b, rate, max_lag=0.3)


def big_still_manifest(folder: Path) -> Path:
    """A slow-enough plate to interrupt: a 1024 px still with a camera move, written as 16-bit PNG."""
    import skimage.data

    img = cv2.resize(skimage.data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(folder / "big.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return write_manifest(
        folder,
        """
shot: kill010
plate: {still: big.png, hold: 40, move: {zoom: [1.0, 1.3], rotate: [0, 5]}}
output: {sequence: png16, movies: [h264_review], chunk_size: 5}
""",
    )


def vfx(*args: str, server: str) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": server}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_resume_after_sigkill_is_byte_identical_and_skips_finished_frames(tmp_path, prefect_server):
    m = big_still_manifest(tmp_path)
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    proc = vfx("render", str(m), "--root", str(killed_root), server=prefect_server)
    comp = killed_root / "kill010" / "v001" / "comp"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(comp.glob("*.png"))) < 12:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in comp.glob("*.png")}
    assert 12 <= len(before) < 40, f"the render was not interrupted mid-way ({len(before)} frames)"
    assert not (comp.parent / "kill010_comp_v001_h264_review.mp4").exists()

    resumed = vfx("render", str(m), "--root", str(killed_root), "--resume", server=prefect_server)
    clean = vfx("render", str(m), "--root", str(clean_root), server=prefect_server)
    for p in (resumed, clean):
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-3000:]

    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in comp.glob("*.png")}
    assert len(after) == 40
    assert {k: after[k] for k in before} == before  # frames complete before the kill were not rewritten
    clean_comp = clean_root / "kill010" / "v001" / "comp"
    for name in sorted(after):
        assert (comp / name).read_bytes() == (clean_comp / name).read_bytes(), name
    assert not list(comp.glob(".*"))  # the killed writer's temporary files are gone
    report = json.loads((comp.parent / "report.json").read_text())
    assert report["frames_skipped"] == len(before) and report["frames_written"] == 40 - len(before)
    assert (comp.parent / "kill010_comp_v001_h264_review.mp4").is_file()


def test_batch_renders_every_shot_and_reports_the_one_that_fails(tmp_path, prefect_server, capsys):
    shots = tmp_path / "shots"
    shots.mkdir()
    for name in ("b010", "b020"):
        write_manifest(
            shots,
            f"shot: {name}\nplate: {{still: builtin:astronaut, hold: 3}}\n"
            "output: {sequence: png8, movies: []}\n",
            f"{name}.yaml",
        )
    write_manifest(shots, "shot: b015\nplate: {movie: missing.mov}\n", "b015.yaml")
    root = tmp_path / "render"
    assert main(["batch", str(shots), "--root", str(root)]) == 1
    # one result line a shot, among Prefect's log lines (which go to stdout too)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(str(shots))]
    assert [line.split(": ")[1] for line in lines] == ["done", "failed", "done"]
    assert "b015.yaml:2 plate.movie: " in lines[1] and "missing.mov: plate not found" in lines[1]
    for name in ("b010", "b020"):
        assert len(list((root / name / "v001" / "comp").glob("*.png"))) == 3
    assert not (root / "b015").exists()
    # --only picks shots by name; a pattern that matches none is a plain error
    assert main(["batch", str(shots), "--root", str(root), "--only", "b02*"]) == 0
    assert capsys.readouterr().out.count(": done: ") == 1 and (root / "b020" / "v002").is_dir()
    assert not (root / "b010" / "v002").exists()
    assert main(["batch", str(shots), "--root", str(root), "--only", "x*"]) == 2
    assert "no shot manifests (*.yaml) matching --only x* found" in capsys.readouterr().err
    # a copy of a manifest whose shot was not renamed: both fail, naming each other, and neither renders
    # into the shot's folder (each version would have counted as the other's)
    (shots / "b030.yaml").write_text((shots / "b010.yaml").read_text())
    assert main(["batch", str(shots), "--root", str(root), "--only", "b0[13]0"]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(str(shots))]
    assert len(lines) == 2 and all(": failed: " in line and "'b010' is the shot of" in line for line in lines)
    assert "b030.yaml too" in lines[0] and "b010.yaml too" in lines[1]
    assert sorted(p.name for p in (root / "b010").iterdir() if p.name.startswith("v")) == ["v001"]


def test_a_chunk_that_fails_twice_is_retried_and_the_shot_completes(tmp_path, prefect_server, monkeypatch):
    from pipeline import flows
    from pipeline.shot import render

    failures = {"left": 2}
    attempts = []  # when chunk 1004-1006 was started, each time
    real = render.render_frames

    def flaky(shot, version, first, last, *args, **kwargs):
        if first == 1004:
            attempts.append(time.monotonic())
            if failures["left"]:
                failures["left"] -= 1
                raise RuntimeError("a render node hiccup")
        return real(shot, version, first, last, *args, **kwargs)

    monkeypatch.setattr(render, "render_frames", flaky)
    m = write_manifest(
        tmp_path,
        "shot: r010\nplate: {still: builtin:astronaut, hold: 6}\n"
        "output: {sequence: png8, movies: [], chunk_size: 3}\n",
    )
    result = flows.run_render(str(m), root=str(tmp_path / "r"))
    assert failures["left"] == 0 and len(attempts) == 3
    assert len(list((Path(result["path"]) / "comp").glob("*.png"))) == 6
    # retried after 1 s, then after 4 s (the README's promise; flows.CHUNK_TASK)
    first_wait, second_wait = attempts[1] - attempts[0], attempts[2] - attempts[1]
    assert 0.9 <= first_wait < 3.5 and second_wait >= 3.9, (first_wait, second_wait)


def test_a_chunk_with_bad_input_fails_at_once_and_the_version_is_failed(
    tmp_path, prefect_server, monkeypatch, capsys
):
    """Bad input fails the same way every time: no retry, and `vfx status` says why the version failed."""
    from pipeline import flows
    from pipeline.shot import render

    calls = []
    real = render.render_frames

    def bad_frame(shot, version, first, last, *args, **kwargs):
        calls.append(first)
        if first == 1004:
            raise MediaError(f"{shot.manifest_path}: frame 1005: decode error: a planted bad frame")
        return real(shot, version, first, last, *args, **kwargs)

    monkeypatch.setattr(render, "render_frames", bad_frame)
    m = write_manifest(
        tmp_path,
        "shot: r020\nplate: {still: builtin:astronaut, hold: 6}\n"
        "output: {sequence: png8, movies: [], chunk_size: 3}\n",
    )
    root = tmp_path / "r"
    with pytest.raises(MediaError, match="frame 1005: decode error: a planted bad frame"):
        flows.run_render(str(m), root=str(root))
    assert sorted(calls) == [1001, 1004]  # the failing chunk ran once
    v = root / "r020" / "v001"
    assert len(frames_in(v)) == 3  # the other chunk finished
    capsys.readouterr()
    assert main(["status", str(m), "--root", str(root)]) == 0
    line = capsys.readouterr().out.strip()
    assert " v001   failed " in line and line.endswith(f"{m}: frame 1005: decode error: a planted bad frame")


def test_every_shipped_manifest_validates(capsys):
    manifests = sorted(str(p) for p in (REPO / "shots").glob("*.yaml"))
    assert main(["validate", *manifests]) == 0
    assert capsys.readouterr().out.count(": ok: ") == len(manifests) >= 3


def test_the_stylegan_demos_validate_and_the_morph_renders(
    tmp_path, footage, tiny_generator_file, prefect_server
):
    """The generator demos as shipped, with a tiny generator, encoder and direction in models/ standing in
    for the ones the README's commands train and learn."""
    from conftest import tiny_generator_config, tiny_mapper, tiny_recognisers

    from pipeline.models import sha256_file
    from pipeline.stylegan.checkpoints import load_generator
    from pipeline.stylegan.edits import Direction
    from pipeline.stylegan.encoder import Encoder, save_encoder

    stylegan, models = tmp_path / "shots" / "stylegan", tmp_path / "models" / "demo_gan"
    stylegan.mkdir(parents=True)
    models.mkdir(parents=True)
    shutil.copy(tiny_generator_file, models / "generator.pt")
    cfg = tiny_generator_config()
    vector = np.zeros((cfg.num_ws, cfg.w_dim))
    vector[:6] = np.random.default_rng(0).normal(size=(6, cfg.w_dim))
    Direction(vector / np.linalg.norm(vector), tuple(range(6)), name="toward_b").save(models / "toward_b.npz")
    G, _ = load_generator(tiny_generator_file)
    encoder = tmp_path / "models" / "demo_enc" / "encoder.pt"
    encoder.parent.mkdir()
    save_encoder(encoder, Encoder.for_generator(G, samples=500), sha256_file(tiny_generator_file))
    tiny_mapper(tiny_generator_file, tmp_path / "models" / "demo_map", seed=0)
    tiny_recognisers(tiny_generator_file, tmp_path / "models" / "demo_rec", seed=0)
    shipped = sorted((REPO / "shots" / "stylegan").glob("*.yaml"))
    assert [p.name for p in shipped] == ["demo_morph.yaml", "demo_project.yaml"]
    assert "tune: {steps: 200}" in (REPO / "shots" / "stylegan" / "demo_project.yaml").read_text()
    for p in shipped:  # the plate is found where ../shared is on this machine; a tenth of the tuning
        text = p.read_text().replace("../../../shared/footage", str(footage))
        (stylegan / p.name).write_text(text.replace("tune: {steps: 200}", "tune: {steps: 20}"))
    assert main(["validate", *(str(stylegan / p.name) for p in shipped)]) == 0
    root = tmp_path / "render"
    assert main(["render", str(stylegan / "demo_morph.yaml"), "--root", str(root)]) == 0
    v = root / "demo_morph" / "v001"
    report = json.loads((v / "report.json").read_text())
    assert report["frames_written"] == 64 and len(report["path"]["keys"]) == 4
    assert report["path"]["period"] == 64
    assert report["path"]["edits"][0]["direction"] == "../../models/demo_gan/toward_b.npz"
    # the mapper's edits, measured against the frames without each (the recognisers read the tiny faces;
    # dlib finds none on them, so no landmark or identity figure is given)
    measured = report["path"]["edits_measured"]
    assert [m["edit"] for m in measured] == ["../../models/demo_gan/toward_b.npz", "mouth_open", "yaw"]
    assert [m["frames_measured"] for m in measured] == [22, 18, 10]  # the ramps are 0 at the ends
    assert measured[1]["recognised"] != 0 and measured[2]["asked"] < 0
    assert "mapper:../../models/demo_map" in report["metadata"]["models"]
    assert report["metadata"]["ai_altered_stages"] == "stylegan latent path with attribute edits"
    # the projection demo starts from the encoder and tunes the generator over the whole shot's frames (the
    # track's), rendered here for its first 12
    demo = ["render", str(stylegan / "demo_project.yaml"), "--root", str(root), "--frames", "1001-1012"]
    assert main(demo) == 0
    report = json.loads((root / "demo_project" / "v001" / "report.json").read_text())
    assert report["faces"]["projection"]["init"] == "encoder"
    assert report["faces"]["fit"]["tuned"] and report["faces"]["fit"]["frames_measured"] == 48
    assert len(list((root / "demo_project" / "v001" / "comp").glob("*.png"))) == 12


def test_the_demo_shots_render_as_a_batch(tmp_path, prefect_server):
    """The README's demo and its variants: every colour method, blend mode and element format."""
    root = tmp_path / "render"
    assert main(["batch", str(REPO / "shots"), "--root", str(root)]) == 0
    for shot, movie, n in (
        ("demo", "demo_comp_v001_prores422hq.mov", 48),
        ("demo_poisson", "demo_poisson_comp_v001_dnxhr_hq.mov", 12),
        ("demo_alpha", "demo_alpha_comp_v001_prores4444.mov", 12),
    ):
        v = root / shot / "v001"
        report = json.loads((v / "report.json").read_text())
        assert report["frames_written"] == n
        assert report["faces"]["with_face"] == n  # the astronaut is tracked through every camera move
        # a photo of one person: the faint "faces" HOG finds on her suit's badges are not counted
        assert report["faces"]["several_faces_frames"] == 0
        assert "## Identity" not in (v / "report.md").read_text()  # no swap, no identity section
        assert report["metadata"]["models"] == (
            "dlib:hog_frontal_face,dlib:shape_predictor_68_face_landmarks,dlib:face_recognition_resnet_model_v1"
        )
        assert report["metadata"]["synthetic_imagery"] == "true"
        with av.open(str(v / movie)) as c:
            assert sum(1 for _ in c.decode(video=0)) == n
    assert len(list((root / "demo" / "v001" / "element").glob("*.png"))) == 48
    assert len(list((root / "demo_poisson" / "v001" / "element").glob("*.exr"))) == 12
    assert not (root / "demo_alpha" / "v001" / "element").exists()
    # the README's demo retouches her face (larger eyes, slimmer jaw) and demo_poisson clones the mirrored
    # face in: inside the face the comp differs from the plate, and outside the crop's square it is the
    # plate, up to the 16-bit PNG's or the EXR's half floats
    for shot, ext, n in (("demo", "png", 48), ("demo_poisson", "exr", 12)):
        diff_middle = face_against_plate(root / shot / "v001", shot, ext, n)
        assert diff_middle > 0.02, (shot, diff_middle)


def face_against_plate(v: Path, shot: str, ext: str, n: int) -> float:
    """The smallest mean difference between comp and plate in the middle of the face over the frames;
    asserts that outside the face's crop square the comp is the plate."""
    transforms = json.loads((v / "transforms.json").read_text())
    size = transforms["crop_size"]
    plates = load_shot(REPO / "shots" / f"{shot}.yaml").plate.read(0, n)
    smallest = np.inf
    for i, plate in enumerate(plates):
        comp = to_float(read_image(v / "comp" / f"{shot}_comp_v001.{1001 + i}.{ext}"))
        h, w = plate.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w]
        matrix = np.array(transforms["frames"][i]["plate_to_crop"])
        cx, cy = (matrix @ np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])).reshape(2, h, w) / size
        middle = (0.3 < cx) & (cx < 0.7) & (0.4 < cy) & (cy < 0.75)  # eyes, cheeks, nose, mouth, jaw
        outside = (cx < -0.05) | (cx > 1.05) | (cy < -0.05) | (cy > 1.05)
        assert middle.sum() > 1000 and outside.sum() > 0.5 * h * w
        diff = np.abs(comp - plate / 255.0)
        smallest = min(smallest, float(diff[middle].mean()))
        assert diff[outside].max() < 1e-3, (shot, i, diff[outside].max())
    return smallest


def test_a_killed_batch_resumes_and_matches_an_uninterrupted_one(tmp_path, prefect_server):
    shots = tmp_path / "shots"
    shots.mkdir()
    big_still_manifest(shots)  # kill010, and a second shot beside it
    (shots / "kill020.yaml").write_text((shots / "shot.yaml").read_text().replace("kill010", "kill020"))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "batch", str(shots), "--root", str(killed)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the whole tree is killed at once
    )
    comps = [killed / s / "v001" / "comp" for s in ("kill010", "kill020")]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and sum(len(list(c.glob("*.png"))) for c in comps) < 20:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for c in comps for p in c.glob("*.png")}
    assert 20 <= len(before) < 80, f"the batch was not interrupted mid-way ({len(before)} frames)"

    resumed = vfx("batch", str(shots), "--root", str(killed), "--resume", server=prefect_server)
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out[-3000:]
    assert out.count(": done: ") == 2 and "v002" not in out  # each shot's v001 was finished
    uninterrupted = vfx("batch", str(shots), "--root", str(clean), server=prefect_server)
    out, _ = uninterrupted.communicate(timeout=900)
    assert uninterrupted.returncode == 0, out[-3000:]

    written = 0
    for c in comps:
        after = sorted(c.glob("*.png"))
        assert len(after) == 40
        for p in after:
            assert p.read_bytes() == (clean / p.relative_to(killed)).read_bytes(), p.name
        report = json.loads((c.parent / "report.json").read_text())
        written += report["frames_written"]
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in before} == before  # finished frames kept
    assert written == 80 - len(before)  # only what was missing was rendered again
    again = vfx("batch", str(shots), "--root", str(killed), "--resume", server=prefect_server)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and out.count(": already done: ") == 2


def test_progress_artifacts_only_for_work_that_lasts_and_at_most_every_few_seconds(monkeypatch):
    from pipeline import flows

    now = [100.0]
    calls = []
    monkeypatch.setattr(flows.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(
        flows, "create_progress_artifact", lambda **k: calls.append(("create", k["progress"])) or "an id"
    )
    monkeypatch.setattr(flows, "update_progress_artifact", lambda _id, p: calls.append(("update", p)))

    short = flows.ProgressArtifact("a small shot")
    for percent, t in ((50, 101.0), (100, 102.0)):
        now[0] = t
        short.update(percent)
    assert calls == []  # two seconds of work: the log is enough

    now[0] = 100.0
    long = flows.ProgressArtifact("a long shot")
    for percent, t in ((10, 103.0), (20, 106.0), (30, 107.0), (40, 108.0), (50, 112.0), (100, 113.0)):
        now[0] = t
        long.update(percent)
    assert calls == [("create", 20), ("update", 50), ("update", 100)]
