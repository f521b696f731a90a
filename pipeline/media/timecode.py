"""SMPTE timecode (ST 12-1): the `HH:MM:SS:FF` label a camera or scanner gives each frame, carried from a
plate into its comp so that editorial can conform the comp back into the cut.

A label counts frames at the nominal rate (24 for 23.976 fps, 30 for 29.97); drop-frame labels
(`HH:MM:SS;FF`, at 29.97 and 59.94 fps only) skip the first 2 (or 4) labels of every minute but each tenth,
so that the labels keep to the clock. Written here, not taken from OpenTimelineIO: its `from_timecode`
refuses every rate outside its SMPTE list (12, 15, 16, 18, 72, 96, 120 fps), which camera plates have.
"""

from __future__ import annotations

import re
from fractions import Fraction

TIMECODE = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{1,3})$")  # FFmpeg writes 1-3 frame digits


class TimecodeError(ValueError):
    """A label that is not a timecode at the given rate."""


def nominal_rate(fps: Fraction) -> int:
    """The frames a timecode second counts: the rate rounded (24 for 24000/1001)."""
    return max(1, round(fps))


def is_drop_rate(fps: Fraction) -> bool:
    """Drop-frame labels exist for the NTSC rates 30000/1001 and 60000/1001 only."""
    return fps.denominator == 1001 and fps.numerator in (30000, 60000)


def _dropped(fps: Fraction) -> int:
    return nominal_rate(fps) // 15  # 2 labels a minute at 29.97, 4 at 59.94


def parse_timecode(text: str, fps: Fraction) -> tuple[int, bool]:
    """The frame a label names, counted from 00:00:00:00, and whether it is drop-frame (`;`, `.` or `,`
    before the frames, as FFmpeg and SMPTE write it). TimecodeError says why a label is not one at `fps`."""
    m = TIMECODE.match(text.strip())
    if not m:
        raise TimecodeError(f"{text!r} is not a timecode (HH:MM:SS:FF)")
    hours, minutes, seconds, frames = (int(m.group(i)) for i in (1, 2, 3, 5))
    drop = m.group(4) != ":"
    base = nominal_rate(fps)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise TimecodeError(f"{text} is not a timecode (hours count 0-23, minutes and seconds 0-59)")
    if frames >= base:
        raise TimecodeError(f"{text} is not a timecode at {float(fps):g} fps (its frames count 0-{base - 1})")
    if drop and not is_drop_rate(fps):
        raise TimecodeError(f"{text} is a drop-frame timecode, which {float(fps):g} fps does not have")
    total_minutes = 60 * hours + minutes
    if drop and minutes % 10 and seconds == 0 and frames < _dropped(fps):
        raise TimecodeError(f"{text} is a label drop-frame timecode skips")
    count = (total_minutes * 60 + seconds) * base + frames
    if drop:
        count -= _dropped(fps) * (total_minutes - total_minutes // 10)
    return count, drop


def format_timecode(count: int, fps: Fraction, drop: bool = False) -> str:
    """The label of the `count`th frame from 00:00:00:00 (wrapping at 24 hours, as timecode does)."""
    base = nominal_rate(fps)
    if drop:
        skip = _dropped(fps)
        per_ten = 600 * base - 9 * skip  # labels in ten minutes
        day = 24 * 6 * per_ten
        count %= day
        tens, rest = divmod(count, per_ten)
        # the first minute of ten keeps every label; each of the other nine drops `skip`
        extra = 0 if rest < skip else skip * ((rest - skip) // (60 * base - skip))
        count += skip * 9 * tens + extra
    else:
        count %= 24 * 3600 * base
    seconds, frames = divmod(count, base)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{';' if drop else ':'}{frames:02d}"


def offset_timecode(start: str, fps: Fraction, frames: int) -> str:
    """The label `frames` frames after `start`, in its form (drop-frame or not)."""
    count, drop = parse_timecode(start, fps)
    return format_timecode(count + frames, fps, drop)


def timecode_problem(text: str, fps: Fraction) -> str:
    """Why a label is not a timecode at `fps`, "" when it is one."""
    try:
        parse_timecode(text, fps)
    except TimecodeError as e:
        return str(e)
    return ""
