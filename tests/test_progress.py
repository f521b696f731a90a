"""Progress of the long loops: plain lines with count, rate and time left when stdout is not a terminal
(a farm's log), a live bar on a terminal, and the chunks of a render counting into one progress."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from conftest import write_manifest

from pipeline import progress
from pipeline.cli import main
from pipeline.manifest import load_shot
from pipeline.progress import Progress
from pipeline.shot.frames import render_progress_key
from pipeline.shot.render import render_chunk
from pipeline.workspace import new_version

REPO = Path(__file__).resolve().parents[1]


def seconds_in(text: str) -> float:
    """The seconds of `1 h 02 min`, `2 min 05 s`, `42 s`."""
    m = re.fullmatch(r"(?:(\d+) h ?)?(?:(\d+) min ?)?(?:([\d.]+) s)?", text)
    assert m, text
    return 3600 * float(m[1] or 0) + 60 * float(m[2] or 0) + float(m[3] or 0)


class Clock:
    """A clock the test moves."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_give_count_rate_and_time_left_every_few_seconds_and_a_last_line():
    clock, lines = Clock(), []
    bar = Progress("track", 48, "frame", emit=lines.append, live=False, clock=clock)
    clock.now += 3
    bar.update(0)  # the loop starts: a line says so, and rate and time left are measured from here
    assert lines == ["track: 0/48 frames (0%), 3.0 s so far"]
    clock.now += 8
    bar.update(24, note="7 faces")  # 3 frames/s, 24 frames left
    assert lines[1:] == ["track: 24/48 frames (50%), 3.0 frames/s, 8.0 s left, 7 faces"]
    clock.now += 2
    bar.advance()
    assert len(lines) == 2  # not due: the last line was 2 s ago
    clock.now += 4
    bar.advance(2)
    assert len(lines) == 3 and lines[-1].startswith("track: 27/48 frames (56%), 1.9 frames/s, 11 s left")
    clock.now += 30
    bar.close()
    bar.close()  # once
    assert lines[-1] == "track: 27/48 frames in 47 s (1.9 frames/s), 7 faces"
    assert len(lines) == 4


def test_lines_space_out_for_work_that_lasts_hours_and_a_time_budget_gives_the_time_left():
    clock, lines = Clock(), []
    budget = 3 * 3600
    bar = Progress("train swap", None, "step", seconds=budget, emit=lines.append, live=False, clock=clock)
    times = []
    for step in range(1, budget // 2):  # a step every 2 s for three hours
        clock.now += 2
        bar.update(step, note=f"loss {1 / step:.4f}")
        if len(lines) > len(times):
            times.append(clock.now)
    gaps = np.diff(times)
    assert gaps[:5].max() <= progress.LINE_EVERY_S + 2  # every few seconds at first
    assert gaps.max() <= progress.LINE_EVERY_MAX_S + 2 and gaps[-10:].min() >= progress.LINE_EVERY_MAX_S
    for line in lines[1:]:
        m = re.fullmatch(r"train swap: (\d+) steps \((\d+)%\), 2\.0 s/step, (.+) left, loss [\d.]+", line)
        assert m, line
        step, spent = int(m[1]), 2 * (int(m[1]) - 1)  # the budget counts from the first step
        assert int(m[2]) == round(100 * spent / budget)
        assert abs(seconds_in(m[3]) - (budget - spent)) <= 60, line


def test_before_anything_is_counted_a_line_says_how_long_it_has_waited():
    clock, lines = Clock(), []
    bar = Progress("demo v001", 12, "frame", emit=lines.append, live=False, clock=clock)
    clock.now += 7
    bar.line_if_due()  # what the heartbeat thread calls while a chunk loads its model
    assert lines == ["demo v001: 0/12 frames (0%), 7.0 s so far"]
    bar.close()
    assert lines == ["demo v001: 0/12 frames (0%), 7.0 s so far"]  # nothing counted: no last line


def test_the_heartbeat_prints_while_the_work_does_not_advance(monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.2)
    lines = []
    done = threading.Event()
    with Progress("load", 3, "frame", emit=lines.append, live=False):
        done.wait(1.5)  # a model loading: no update comes
    assert len(lines) >= 2 and all(
        re.fullmatch(r"load: 0/3 frames \(0%\), [\d.]+ s so far", x) for x in lines
    )


def test_chunks_on_other_threads_count_their_frames_once_into_the_flows_progress():
    clock, lines = Clock(), []
    parts = [(1001, 1012), (1013, 1024), (1025, 1030)]
    with Progress("demo: track", 30, "frame", emit=lines.append, live=False, clock=clock, key="k") as bar:

        def chunk(part: tuple[int, int], frames: int) -> None:
            for _ in range(frames):
                progress.advance("k", part=part)

        threads = [
            threading.Thread(target=chunk, args=(p, n)) for p, n in zip(parts, (12, 20, 3), strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert bar.done == 12 + 12 + 3  # the second chunk counts twice over (a retry): never past its size
        for p in parts:  # the flow counts each chunk when it ends (a Dask worker's chunks count only so)
            bar.finish_part(p)
        assert bar.done == 30
        progress.advance("other key")  # no progress open under it: nothing happens
    progress.advance("k")  # closed: nothing happens
    assert bar.done == 30 and lines[-1].startswith("demo: track: 30/30 frames in ")


def test_render_chunk_counts_each_frame_it_writes_and_those_already_written(tmp_path):
    shot = load_shot(
        write_manifest(
            tmp_path, "shot: p010\nplate: {still: builtin:astronaut, hold: 4}\noutput: {sequence: png8}\n"
        )
    )
    version = new_version(tmp_path / "render", shot.name, "png")
    clock, counts = Clock(), []
    key = render_progress_key(shot, "frames")

    def moving_clock() -> float:  # every update is due for a line
        clock.now += 10
        return clock.now

    with Progress("p010", 4, "frame", emit=counts.append, live=False, clock=moving_clock, key=key) as bar:
        render_chunk(shot, version, {}, 1001, 1003)
        assert bar.done == 3
    assert [line.split(" frames")[0] for line in counts[:3]] == ["p010: 1/4", "p010: 2/4", "p010: 3/4"]
    with Progress("p010", 4, "frame", emit=counts.append, live=False, key=key) as again:
        render_chunk(shot, version, {}, 1001, 1004)  # three were written: they count at once
        assert again.done == 4 and again.parts == {(1001, 1004): 4}


def test_extract_prints_plain_lines_when_stdout_is_not_a_terminal(
    tmp_path, face_sequence, capsys, monkeypatch
):
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)  # a line as often as the pace allows
    out_dir = tmp_path / "crops"
    assert main(["extract", str(face_sequence), "--out", str(out_dir), "--size", "64", "--every", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = [x for x in out if x.startswith("extract pl.####.png: ")]
    counts = [int(re.match(r"extract pl\.####\.png: (\d+)/12 frames", x)[1]) for x in lines]
    assert len(lines) >= 3 and counts == sorted(counts), out
    rate_and_left = r"/12 frames \(\d+%\), [\d.]+ (frames/s|s/frame), [\d.]+ s left, \d+ with a face"
    assert any(re.search(rate_and_left, x) for x in lines), lines
    assert re.fullmatch(r"extract pl\.####\.png: 12/12 frames in [\d.]+ s \(.*\), \d+ with a face", lines[-1])
    assert "\x1b[" not in "\n".join(out)  # no terminal codes in a log


def test_extract_shows_a_live_bar_on_a_terminal(tmp_path, face_sequence):
    """`vfx extract` under a pseudo-terminal: rich's bar with the count, rate and time left."""
    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color", "COLUMNS": "160"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "pipeline", "extract", str(face_sequence), "--out", str(tmp_path / "c")]
    proc = subprocess.Popen(
        [*argv, "--size", "64", "--every", "2"], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(30) == 0
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "━" in screen  # the bar
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # without colours and cursor moves
    assert re.search(
        r"extract pl\.####\.png +[━╺╸]+ +\d+/12 frames \(\d+%\), [\d.]+ (frames/s|s/frame), [\d.]+ s left",
        plain,
    )
    assert re.search(r"extract pl\.####\.png: 12/12 frames in [\d.]+ s", plain)  # the last line stays
    assert re.search(r"\d+ aligned 64 px crops", plain)
