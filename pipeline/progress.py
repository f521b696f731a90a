"""Progress of the long loops (frames decoded, faces found, training steps, frame chunks, shots), shown one
way by every command, so that no step of a few seconds or more runs in silence.

On a terminal each open `Progress` is a row of one live rich display: the bar, the count, the rate and
the time left. Elsewhere (a farm's log, a pipe, a test) it prints plain lines, one when the loop starts,
then one every few seconds (also while it waits on something), and a last line when it ends:

    demo: track: 16/48 frames (33%), 5.8 frames/s, 5.5 s left
    demo: track: 48/48 frames in 13 s (6.0 frames/s)

Both go to stdout, beside Prefect's console log, so that stderr holds the errors alone. Techniques never
print: they take callbacks, and the stages, flows and commands that call them advance a `Progress`.

Work that runs on another thread of the process (a chunk of frames on the flow's thread pool) counts into
the progress the flow opened, by its key (`advance`); in another process (a Dask worker) that does nothing,
and the flow counts the whole chunk when it ends (`Progress.finish_part`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from rich import progress as rich_progress
from rich.console import Console
from rich.table import Column
from rich.text import Text

LINE_EVERY_S = 4.0  # plain lines: one this often (also while the work does not advance),
LINE_STRETCH = 30  # stretched to the time so far over this after two minutes,
LINE_EVERY_MAX_S = 60.0  # up to this: a line a minute for work that lasts hours
LIVE_REFRESH_PER_S = 4

Part = tuple[int, int]  # a chunk's inclusive frame range
T = TypeVar("T")


def duration(seconds: float) -> str:
    """1.5 s, 42 s, 2 min 05 s, 1 h 02 min."""
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _print_line(line: str) -> None:
    print(line, flush=True)


def _count(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


class Progress:
    """The progress of one loop over `total` units (None: not known ahead), or over a time budget of
    `seconds` (a training for --minutes). Advance it as the work goes (`advance`, `update`, `each`) and
    close it at the end (or use it as a context manager), which prints its last line.

    `emit` takes the plain lines (default: stdout; a flow passes its Prefect logger, so they reach the
    run's log too). They come at their pace also while nothing advances (a model loading, a long step),
    from a thread that watches the open progress; not with a `clock` of the caller's (a test's), which
    moves only when the caller moves it. `key`, when given, lets work on other threads of the process
    count into it (`advance(key, ...)`). `live` forces the display (default: a live bar when stdout is a
    terminal). The rate and the time left are measured from the first update, so that loading before the
    loop does not count; so is a time budget, like a training's minutes that start with its loop."""

    def __init__(
        self,
        label: str,
        total: float | None = None,
        unit: str = "step",
        *,
        seconds: float | None = None,
        emit: Callable[[str], None] | None = None,
        key: str | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label, self.total, self.unit, self.seconds = label, total, unit, seconds
        self.emit = emit or _print_line
        self.key = key
        self.clock = clock
        self.started = self.last_line = clock()
        self.lines = 0  # plain lines so far
        self.done = 0.0
        self.note = ""
        self.first: tuple[float, float] | None = None  # (time, count) at the first update
        self.updated = self.started  # the time of the last update
        self.parts: dict[Part, int] = {}
        self.closed = False
        self._lock = threading.RLock()
        self.row = _LIVE.open(self) if (_stdout_is_terminal() if live is None else live) else None
        if key is not None:
            with _OPEN_LOCK:
                _OPEN[key] = self
        if self.row is None and clock is time.monotonic:
            _HEARTBEAT.watch(self)

    # -- counting ---------------------------------------------------------------------------------------

    def advance(self, n: float = 1, note: str | None = None, part: Part | None = None) -> None:
        """`n` more units done; `part`: they belong to this chunk of frames, whose count stops at its size
        (a retried chunk counts its frames again, and `finish_part` may follow the chunk's own count)."""
        with self._lock:
            if part is not None:
                had = self.parts.get(part, 0)
                n = max(0, min(n, part[1] - part[0] + 1 - had))
                self.parts[part] = had + int(n)
            self._set(self.done + n, note)

    def update(self, done: float, note: str | None = None) -> None:
        """The count is now `done` (a training's step, which starts past 0 when it resumes)."""
        with self._lock:
            self._set(done, note)

    def finish_part(self, part: Part) -> None:
        """A chunk of frames ended: its frames count in full, however many it reported on the way."""
        self.advance(part[1] - part[0] + 1, part=part)

    def each(self, items: Iterable[T], size: Callable[[T], float] | None = None) -> Iterator[T]:
        """The items, each counted (as 1, or `size(item)`) once the loop body is done with it."""
        for item in items:
            yield item
            self.advance(size(item) if size else 1)

    def _set(self, done: float, note: str | None) -> None:
        now = self.clock()
        self.done, self.updated = done, now
        if self.first is None:
            self.first = (now, done)
        if note is not None:
            self.note = note
        if self.row is not None:
            _LIVE.update(self)
        else:
            self.line_if_due()

    def line_if_due(self) -> None:
        """The plain line, at the first update (the loop has started) and then every LINE_EVERY_S,
        stretched for work that lasts (LINE_STRETCH, LINE_EVERY_MAX_S)."""
        with self._lock:
            now = self.clock()
            every = min(LINE_EVERY_MAX_S, max(LINE_EVERY_S, (now - self.started) / LINE_STRETCH))
            started = self.lines == 0 and self.first is not None
            if self.closed or (now - self.last_line < every and not started):
                return
            self.last_line, self.lines = now, self.lines + 1
            line = self.line()
        self.emit(line)

    # -- what is shown ----------------------------------------------------------------------------------

    @property
    def units(self) -> str:
        return self.unit if self.unit.endswith("s") else f"{self.unit}s"

    def rate(self, until: float | None = None) -> float | None:
        """Units a second from the first update until now (or `until`); None until there is a second."""
        if self.first is None:
            return None
        t0, d0 = self.first
        elapsed = (self.clock() if until is None else until) - t0
        return (self.done - d0) / elapsed if elapsed > 0 and self.done > d0 else None

    def fraction(self) -> float | None:
        if self.total:
            return min(1.0, self.done / self.total)
        if self.seconds and self.first is not None:
            return min(1.0, (self.clock() - self.first[0]) / self.seconds)
        return None

    def seconds_left(self) -> float | None:
        if self.total:
            rate = self.rate()
            return (self.total - self.done) / rate if rate and self.done < self.total else None
        if self.seconds and self.first is not None:
            return max(0.0, self.seconds - (self.clock() - self.first[0]))
        return None

    def rate_text(self, until: float | None = None) -> str | None:
        rate = self.rate(until)
        if rate is None:
            return None
        return f"{rate:.1f} {self.units}/s" if rate >= 1 else f"{1 / rate:.1f} s/{self.unit}"

    def status(self) -> str:
        """The count, the rate, the time left and the note: `24/48 frames (50%), 3.1 frames/s, 8 s left`."""
        count = f"{_count(self.done)}/{_count(self.total)}" if self.total else _count(self.done)
        parts = [f"{count} {self.unit if count == '1' else self.units}"]
        fraction = self.fraction()
        if fraction is not None:
            parts[0] += f" ({100 * fraction:.0f}%)"
        if rate := self.rate_text():
            parts.append(rate)
        left = self.seconds_left()
        if left is not None:
            parts.append(f"{duration(left)} left")
        elif self.rate() is None and fraction != 1:  # nothing measured yet: how long it has waited
            parts.append(f"{duration(self.clock() - self.started)} so far")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)

    def line(self) -> str:
        return f"{self.label}: {self.status()}"

    def last_line_text(self) -> str:
        """`track: 48/48 frames in 12 s (4.0 frames/s), ...`: what was done, in how long."""
        count = f"{_count(self.done)}/{_count(self.total)}" if self.total else _count(self.done)
        rate = self.rate_text(until=self.updated)
        text = f"{self.label}: {count} {self.units} in {duration(self.clock() - self.started)}"
        return text + (f" ({rate})" if rate else "") + (f", {self.note}" if self.note else "")

    # -- the end ----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop showing it and print its last line (once; only when it counted anything)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        if self.key is not None:
            with _OPEN_LOCK:
                if _OPEN.get(self.key) is self:
                    del _OPEN[self.key]
        _HEARTBEAT.forget(self)
        if self.row is not None:
            _LIVE.close(self)
        if self.first is not None:
            self.emit(self.last_line_text())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Waiting(Progress):
    """Work that has nothing to count (a server starting): a line says what it waits for as it starts,
    then how long it has waited, so the wait is not a silence; it prints no last line."""

    def __init__(self, label: str, **options: Any):
        super().__init__(label, **options)
        if self.row is None:
            self.lines += 1
            self.emit(label)

    def status(self) -> str:
        return f"{duration(self.clock() - self.started)} so far"


_OPEN: dict[str, Progress] = {}
_OPEN_LOCK = threading.Lock()


def advance(key: str, n: float = 1, part: Part | None = None) -> None:
    """Count `n` units into the progress open under `key` in this process, if there is one (a flow's, for
    the chunk running on one of its threads); nothing otherwise."""
    with _OPEN_LOCK:
        progress = _OPEN.get(key)
    if progress is not None:
        progress.advance(n, part=part)


class _Heartbeat:
    """A daemon thread that gives each open progress with plain lines its line when due, also while its
    work does not advance."""

    PERIOD_S = 0.5

    def __init__(self):
        self.lock = threading.Lock()
        self.watched: list[Progress] = []
        self.thread: threading.Thread | None = None

    def watch(self, p: Progress) -> None:
        with self.lock:
            self.watched.append(p)
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, name="progress-lines", daemon=True)
                self.thread.start()

    def forget(self, p: Progress) -> None:
        with self.lock:
            if p in self.watched:
                self.watched.remove(p)

    def run(self) -> None:
        while True:
            time.sleep(self.PERIOD_S)
            with self.lock:
                watched = list(self.watched)
            for p in watched:
                p.line_if_due()


_HEARTBEAT = _Heartbeat()


def _stdout_is_terminal() -> bool:
    return Console(file=sys.stdout).is_terminal


class _StatusColumn(rich_progress.ProgressColumn):
    """The row's count, rate, time left and note, as the plain lines say them."""

    def render(self, task: rich_progress.Task) -> Text:
        return Text(task.fields["progress"].status(), no_wrap=True, overflow="ellipsis")


class _LiveRows:
    """One live display for all the progress open at once in the process (the shots of a batch, their
    stages and chunks): started with the first row, stopped with the last. Lines printed meanwhile (the
    plain last lines, Prefect's log) appear above it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.display: rich_progress.Progress | None = None

    def open(self, p: Progress) -> rich_progress.TaskID:
        with self.lock:
            if self.display is None:
                self.display = rich_progress.Progress(
                    rich_progress.TextColumn("{task.description}", table_column=Column(no_wrap=True)),
                    rich_progress.BarColumn(bar_width=24),
                    _StatusColumn(),
                    console=Console(file=sys.stdout),
                    transient=True,
                    redirect_stderr=False,  # errors stay on stderr
                    refresh_per_second=LIVE_REFRESH_PER_S,
                )
                self.display.start()
            return self.display.add_task(p.label, total=p.total or p.seconds, progress=p)

    def update(self, p: Progress) -> None:
        with self.lock:
            if self.display is not None and p.row is not None:
                if not p.total and p.seconds:  # a time budget: the bar shows the time spent
                    self.display.update(p.row, completed=(p.fraction() or 0.0) * p.seconds)
                else:  # the total may be known late (a training to so many images: from its first step)
                    self.display.update(p.row, completed=p.done, total=p.total)

    def close(self, p: Progress) -> None:
        with self.lock:
            if self.display is None or p.row is None:
                return
            self.display.remove_task(p.row)
            if not self.display.tasks:
                self.display.stop()
                self.display = None


_LIVE = _LiveRows()
