"""Identity continuity and camera cuts in the face track: never another person after a cut or a gap,
nothing filled or smoothed across a cut, descriptors only on the frames that need a verdict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_manifest

from pipeline.cli import main
from pipeline.faces.detect import Face, FaceAnalyzer, identity_distance
from pipeline.faces.track import (
    FaceTrack,
    FrameFaces,
    TrackSettings,
    build_track,
    choose_actor,
    detect_frames,
    fill_gaps,
    needs_descriptors,
    smooth_params,
)
from pipeline.manifest import load_shot
from pipeline.media.cuts import CUT_THRESHOLD, change_scores, find_cuts, plate_cuts
from pipeline.media.decode import MoviePlate
from pipeline.media.sequences import write_frame

FIRST = 1001  # the test plates' first frame number
SIDE = 30  # frames on each side of the cut

# --- cuts on synthetic frames ---------------------------------------------------------------------------


def scene(kind: int, t: int, size: int = 96) -> np.ndarray:
    """A picture that moves a little with t: a disc drifting over a gradient, in one of two colour schemes."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = [np.stack([x, y, 0.5 + 0 * x], -1), np.stack([1 - y, 0.3 + 0 * x, x], -1)][kind]
    img = (base * 200 + 20).astype(np.uint8)
    cv2.circle(img, (20 + t, 40 + (t % 5)), 14, (250, 250, 40) if kind == 0 else (30, 60, 240), -1)
    return img


def test_a_cut_between_two_scenes_is_found_and_motion_is_not():
    frames = [scene(0, t) for t in range(20)] + [scene(1, t) for t in range(20)]
    scores = np.fromiter(change_scores(frames), float)
    assert np.isnan(scores[0])  # no frame before the first
    assert scores[20] >= CUT_THRESHOLD > 3 * np.nanmax(np.delete(scores, 20))
    assert find_cuts(scores) == [20]
    assert plate_cuts(frames)[1] == [20]
    assert find_cuts(scores, threshold=None) == []  # detection off
    # a chunk that starts with its previous frame scores its first frame as a whole run does
    chunk = np.fromiter(change_scores(frames[20:25], previous=frames[19]), float)
    np.testing.assert_allclose(chunk, scores[20:25])


def test_cuts_closer_than_the_minimum_scene_are_one_cut():
    frames = (
        [scene(0, t) for t in range(10)] + [scene(1, t) for t in range(3)] + [scene(0, t) for t in range(10)]
    )
    scores = np.fromiter(change_scores(frames), float)
    assert find_cuts(scores, min_scene=8) == [10]  # back to the first scene 3 frames later: a flash
    assert find_cuts(scores, min_scene=2) == [10, 13]


def test_a_jump_cut_is_found_by_standing_out_from_its_neighbours():
    """The same scene, further on: a change no bigger than fast motion, but far above the frames around."""
    frames = [scene(0, t) for t in range(12)] + [scene(0, t) for t in range(40, 52)]
    scores = np.fromiter(change_scores(frames), float)
    assert CUT_THRESHOLD / 4 <= scores[12] < CUT_THRESHOLD  # below the threshold on its own
    assert find_cuts(scores) == [12]
    steady = np.fromiter(change_scores(scene(0, t) for t in range(0, 48, 2)), float)  # faster, no cut
    assert find_cuts(steady) == []


# --- track logic on made-up faces ---------------------------------------------------------------------


def face(cx: float, cy: float = 200, size: float = 100, who: np.ndarray | None = None) -> Face:
    box = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)
    return Face(box=box, score=1.0, landmarks=np.zeros((68, 2), np.float32), embedding=who)


A, B = np.zeros(128, np.float32), np.full(128, 0.1, np.float32)  # two people: 1.13 apart


def test_without_a_reference_the_first_face_is_the_actor_and_never_someone_after_a_cut():
    found = [FrameFaces(i, [face(100 + i, who=A if i in (0, 4) else None)]) for i in range(8)]
    found += [FrameFaces(8, [face(400, who=B)])] + [FrameFaces(i, [face(400 + i)]) for i in range(9, 12)]
    found += [FrameFaces(12, [face(100, who=A + 0.01)]), FrameFaces(13, [face(102)])]
    chosen = choose_actor(found, None, 0.6, cuts={8, 12})
    assert [c[0] is not None for c in chosen] == [True] * 8 + [False] * 4 + [True] * 2
    assert chosen[8][1] > 0.6 and np.isnan(chosen[9][1])  # B's distance where it was measured
    # with B as the reference, only B
    chosen = choose_actor(found, B, 0.6, cuts={8, 12})
    assert [c[0] is not None for c in chosen] == [False] * 8 + [True] * 4 + [False] * 2


def test_the_verdict_follows_the_face_by_overlap_between_checks_and_restarts_at_a_cut():
    # B walks in beside the actor (checked on arrival), then A leaves: B is never taken for A
    found = [FrameFaces(0, [face(100, who=A)]), FrameFaces(1, [face(101)])]
    found += [FrameFaces(2, [face(102, who=A), face(300, who=B)]), FrameFaces(3, [face(103), face(301)])]
    found += [FrameFaces(4, [face(302)]), FrameFaces(5, [face(303)])]
    chosen = choose_actor(found, None, 0.6)
    assert [c[0].box[0] + 50 if c[0] else None for c in chosen] == [100, 101, 102, 103, None, None]
    # the same boxes across a cut: nothing carries over, an unchecked face is not the actor
    chosen = choose_actor(
        [FrameFaces(0, [face(100, who=A)]), FrameFaces(1, [face(100)])], None, 0.6, cuts={1}
    )
    assert chosen[1][0] is None


def test_a_check_just_past_the_threshold_keeps_a_continuing_actor_but_not_a_new_face():
    near = A + 0.63 / np.sqrt(128)  # 0.63 from A: past 0.6, within the 0.05 margin
    assert identity_distance(near, A) == pytest.approx(0.63, abs=1e-4)
    found = [
        FrameFaces(0, [face(100, who=A)]),
        FrameFaces(1, [face(101)]),
        FrameFaces(2, [face(102, who=near)]),
    ]
    found += [FrameFaces(3, []), FrameFaces(4, [face(104, who=near)])]  # lost, then picked up again
    chosen = choose_actor(found, A, 0.6)  # A as the reference: the actor's descriptor stays A
    assert [c[0] is not None for c in chosen] == [True, True, True, False, False]
    far = A + 0.7 / np.sqrt(128)  # past the margin: not the actor even when it continues the box
    chosen = choose_actor([FrameFaces(0, [face(100, who=A)]), FrameFaces(1, [face(101, who=far)])], A, 0.6)
    assert chosen[1][0] is None


def test_gaps_are_not_filled_and_smoothing_does_not_run_across_a_cut():
    params = np.zeros((20, 4))
    params[:, 2] = 100.0
    params[10:, 0] = 300.0  # the face is somewhere else after the cut
    params[8:10] = np.nan  # a short gap just before it
    filled, mask = fill_gaps(params, 5)
    assert mask[8:10].all()  # without the cut: filled
    filled, mask = fill_gaps(params, 5, breaks=[10])
    assert not mask.any() and np.isnan(filled[8:10]).all()
    blocked = np.zeros(20, bool)
    blocked[9] = True  # another person on a frame of the gap: not filled either
    assert not fill_gaps(params, 5, blocked=blocked)[1].any()
    steps = params.copy()
    steps[8:10] = steps[7]
    settings = TrackSettings(smooth_center=2.0)
    np.testing.assert_allclose(smooth_params(steps, settings, breaks=[10]), steps)
    assert smooth_params(steps, settings)[10, 0] < 250  # across the cut the centre would slide


@dataclass
class Seen:
    """A frame as detection saw it: face centres, change score."""

    frame: int
    centres: tuple[float, ...] = ()
    change: float = 1.0


def policy(frames: list[Seen], every: int = 12, origin: int = 0) -> list[int]:
    """The frames needs_descriptors picks, run as detect_frames runs it (one chunk)."""
    settings = TrackSettings(identity_every=every)
    found = [FrameFaces(s.frame, [face(c) for c in s.centres], s.change) for s in frames]
    return [ff.frame for i, ff in enumerate(found) if needs_descriptors(found, i, settings, origin)]


def test_descriptors_only_on_the_frames_that_need_a_verdict():
    frames = [
        Seen(n, (100 + n,)) for n in range(1, 30)
    ]  # one face, moving slowly: checks at 1 (start), 12, 24
    assert policy(frames) == [1, 12, 24]
    assert policy(frames, every=0) == [1]
    assert policy(frames, origin=1) == [1, 13, 25]  # counted from the shot's first frame
    frames[4] = Seen(5)  # no face on 5: 6 is a re-acquisition
    frames[14] = Seen(15, (115, 400))  # a second face appears (and leaves on 16)
    frames[19] = Seen(20, (260,))  # the box jumps
    frames[21] = Seen(22, (122,), change=40.0)  # a camera cut
    assert policy(frames) == [1, 6, 12, 15, 16, 20, 21, 22, 24]  # 21: back from the jump


# --- real footage: plates made by joining clips -------------------------------------------------------


def square(frame: np.ndarray, size: int = 512) -> np.ndarray:
    h, w = frame.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return cv2.resize(frame[top : top + s, left : left + s], (size, size), interpolation=cv2.INTER_AREA)


def write_plate(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir()
    for i, frame in enumerate(frames):
        write_frame(folder / f"pl.{FIRST + i:04d}.png", frame, "png8", {})
    return folder / "pl.####.png"


@dataclass
class Plate:
    sequence: Path
    frames: list[np.ndarray]
    found: list[FrameFaces]


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.fixture(scope="module")
def man(footage) -> dict:
    """30 frames of the man's clip, square, and a reference picture of him from outside them."""
    plate = MoviePlate(footage / "man_glasses_720x1280.mp4")
    frames = [square(f) for f in plate.read(100, 100 + SIDE)]
    return {"frames": frames, "reference": next(plate.read(300, 301))}  # 300: not in the plate


@pytest.fixture(scope="module")
def woman(footage) -> dict:
    plate = MoviePlate(footage / "woman_headturns_512.mp4")
    return {"start": list(plate.read(0, SIDE)), "later": list(plate.read(200, 200 + SIDE))}


@pytest.fixture(scope="module")
def two_people(woman, man, analyzer, tmp_path_factory) -> Plate:
    """The woman, then a cut to the man."""
    frames = woman["start"] + man["frames"]
    sequence = write_plate(tmp_path_factory.mktemp("two") / "plate", frames)
    return Plate(sequence, frames, detect_frames(analyzer, enumerate(frames, FIRST)))


@pytest.fixture(scope="module")
def jump_cut(woman, analyzer, tmp_path_factory) -> Plate:
    """The woman at the start of her clip, then a jump cut to later in it."""
    frames = woman["start"] + woman["later"]
    return Plate(Path(), frames, detect_frames(analyzer, enumerate(frames, FIRST)))


def test_without_a_reference_the_second_person_is_never_tracked(two_people):
    track = build_track(two_people.found, TrackSettings(max_gap=100))
    cut = FIRST + SIDE
    assert track.cuts.tolist() == [cut]
    states = track.states
    assert all(s in ("other person", "no face") for s in states[SIDE:]), states[SIDE:]
    assert states[SIDE:].count("other person") >= SIDE * 0.9  # the man was found, and refused
    assert states[:SIDE].count("detected") >= SIDE * 0.9
    assert not track.has_face[SIDE:].any()
    assert np.nanmax(track.identity[SIDE:]) > track.identity_threshold  # measured, and far
    # the actor's own checks are well inside the threshold
    assert np.nanmax(track.identity[:SIDE][track.detected[:SIDE]]) < track.identity_threshold - 0.1
    summary = track.summary()
    assert summary["cuts"] == [cut] and summary["other_person_frames"] >= SIDE * 0.9
    # descriptors on a few frames only, the cut among them
    assert track.checked[SIDE] and track.checked[0] and track.checked.sum() <= 0.35 * 2 * SIDE


def test_a_reference_of_the_second_person_tracks_only_them(two_people, man, analyzer):
    reference = analyzer.reference_embedding(man["reference"], "man frame 300")
    track = build_track(two_people.found, TrackSettings(max_gap=100), reference)
    states = track.states
    assert all(s in ("other person", "no face") for s in states[:SIDE]), states[:SIDE]
    assert states[SIDE:].count("detected") >= SIDE * 0.9
    # no smoothing across the cut: the crop centre on the first frame after it is its own detection's
    assert track.detected[SIDE]
    assert np.abs(track.params[SIDE, :2] - track.raw_params[SIDE, :2]).max() <= 2.0


def test_a_jump_cut_of_one_person_is_tracked_on_both_sides_and_not_smoothed_across(jump_cut):
    track = build_track(jump_cut.found, TrackSettings())
    assert track.cuts.tolist() == [FIRST + SIDE]
    assert track.detected[SIDE - 1] and track.detected[SIDE]
    assert track.detected.mean() >= 0.9 and not track.other_person.any()
    jump = np.abs(track.raw_params[SIDE, :2] - track.raw_params[SIDE - 1, :2]).max()
    assert jump > 10, f"the face moves only {jump:.1f} px at the cut: the test could not fail"
    for i in (SIDE - 1, SIDE):
        assert np.abs(track.params[i, :2] - track.raw_params[i, :2]).max() <= 2.0, i


def test_chunks_score_their_first_frame_against_the_frame_before(two_people, tmp_path):
    """A detection chunk starting at the cut reads the frame before it, so it sees the cut as a whole run
    does, and checks the new face."""
    from pipeline.shot.track import detect_range

    shot = load_shot(
        write_manifest(tmp_path, f"shot: c\nplate: {{sequence: {two_people.sequence}}}\nfaces: {{}}\n")
    )
    cut = FIRST + SIDE
    chunk = detect_range(shot, cut, cut + 1)
    whole = {ff.frame: ff for ff in two_people.found}
    assert [ff.frame for ff in chunk.faces] == [cut, cut + 1]
    assert chunk.faces[0].change == pytest.approx(whole[cut].change, abs=0.5)
    assert chunk.faces[0].change >= CUT_THRESHOLD
    assert np.isnan(detect_range(shot, FIRST, FIRST).faces[0].change)  # the shot's first frame: none


def test_the_report_lists_the_cut_and_the_other_person(two_people, tmp_path):
    from pipeline.shot.track import faces_markdown, track_report

    track = build_track(two_people.found, TrackSettings())
    track.save(tmp_path / "t.npz")
    again = FaceTrack.load(tmp_path / "t.npz")
    assert again.cuts.tolist() == track.cuts.tolist() and again.identity_threshold == track.identity_threshold
    report = track_report(again, False, tmp_path / "t.npz") | {"seconds": 1.0}
    rows = {r["frame"]: r for r in report["per_frame"]}
    assert rows[FIRST + SIDE]["state"] == "other person" and rows[FIRST + SIDE]["identity"] > 0.6
    assert rows[FIRST + 1]["identity"] is None  # not checked there
    text = "\n".join(faces_markdown(report))
    assert f"Camera cuts at frames {FIRST + SIDE}" in text
    assert "another person, not the actor, on" in text and f"{FIRST + SIDE}-{FIRST + 2 * SIDE - 1}" in text


def test_validate_warns_about_a_plate_with_cuts(two_people, woman, tmp_path, capsys):
    m = write_manifest(tmp_path, f"shot: c\nplate: {{sequence: {two_people.sequence}}}\n")
    assert main(["validate", str(m)]) == 0
    out = capsys.readouterr().out.splitlines()
    warnings = [line for line in out if line.startswith("warning:")]
    assert len(warnings) == 1 and f"camera cuts at frames {FIRST + SIDE}" in warnings[0]
    one = write_plate(tmp_path / "one", woman["start"])
    assert (
        main(["validate", str(write_manifest(tmp_path, f"shot: d\nplate: {{sequence: {one}}}\n", "d.yaml"))])
        == 0
    )
    assert "warning" not in capsys.readouterr().out
