"""What a plate is: frame count, rate, size, codec, audio. Movies, image sequences and held stills."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from pipeline.errors import MediaError

SEQUENCE_TOKEN = re.compile(r"(#+|%0(\d)d)")
BUILTIN_IMAGES = ("astronaut",)


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int
    duration: float  # seconds


@dataclass(frozen=True)
class PlateInfo:
    kind: str  # "movie" | "sequence" | "still"
    path: str
    frame_count: int
    fps: Fraction
    width: int
    height: int
    codec: str
    pixel_format: str
    first_frame: int | None = None  # the frame number of the first file, for sequences
    audio: AudioInfo | None = None
    frame_numbers: tuple[int, ...] = field(default=(), repr=False)  # sequences only

    @property
    def duration(self) -> float:
        return float(self.frame_count / self.fps)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fps"] = float(self.fps)
        d["fps_fraction"] = f"{self.fps.numerator}/{self.fps.denominator}"
        d["duration"] = self.duration
        d.pop("frame_numbers")
        return d


def sequence_regex(pattern: Path) -> tuple[re.Pattern[str], int]:
    """The regex for the file names of `name.####.ext` or `name.%04d.ext`, and the padding."""
    m = SEQUENCE_TOKEN.search(pattern.name)
    if not m:
        raise MediaError(f"{pattern}: an image sequence needs #### or %04d in its file name")
    pad = len(m.group(1)) if m.group(1).startswith("#") else int(m.group(2))
    head, tail = pattern.name[: m.start()], pattern.name[m.end() :]
    return re.compile(re.escape(head) + rf"(\d{{{pad},}})" + re.escape(tail) + "$"), pad


def sequence_path(pattern: Path, number: int) -> Path:
    m = SEQUENCE_TOKEN.search(pattern.name)
    assert m is not None
    pad = len(m.group(1)) if m.group(1).startswith("#") else int(m.group(2))
    return pattern.with_name(pattern.name[: m.start()] + f"{number:0{pad}d}" + pattern.name[m.end() :])


def probe_movie(path: Path) -> PlateInfo:
    if not path.is_file():
        raise MediaError(f"{path}: plate not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise MediaError(f"{path}: the frame rate cannot be determined")
            fps = Fraction(rate).limit_denominator(1001 * 1000)
            count = stream.frames
            if not count:  # containers without a frame count (some MKV, AVI): count the packets
                count = sum(1 for p in container.demux(stream) if p.size)
            if not count or stream.codec_context.width <= 0 or stream.codec_context.height <= 0:
                raise MediaError(f"{path}: cannot be read as a movie: no frames with a picture size")
            audio = None
            if container.streams.audio:
                a = container.streams.audio[0]
                adur = float(a.duration * a.time_base) if a.duration else float(container.duration or 0) / 1e6
                audio = AudioInfo(a.codec_context.name, a.rate, a.channels, adur)
            return PlateInfo(
                kind="movie",
                path=str(path),
                frame_count=int(count),
                fps=fps,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                codec=stream.codec_context.name,
                pixel_format=stream.codec_context.pix_fmt or "",
                audio=audio,
            )
    except av.FFmpegError as e:
        raise MediaError(f"{path}: cannot be read as a movie: {e.strerror or e}") from None


def probe_sequence(pattern: Path, fps: Fraction | None) -> PlateInfo:
    regex, _ = sequence_regex(pattern)
    folder = pattern.parent
    if not folder.is_dir():
        raise MediaError(f"{pattern}: plate folder {folder} not found")
    numbers = sorted(int(m.group(1)) for p in folder.iterdir() if (m := regex.match(p.name)))
    if not numbers:
        raise MediaError(f"{pattern}: no files of the sequence found")
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        raise MediaError(
            f"{sequence_path(pattern, missing[0])}: frame {missing[0]} of the sequence is missing"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    first = sequence_path(pattern, numbers[0])
    try:
        with av.open(str(first)) as container:
            cc = container.streams.video[0].codec_context
            width, height, codec, pix = cc.width, cc.height, cc.name, cc.pix_fmt or ""
    except (av.FFmpegError, IndexError) as e:
        raise MediaError(f"{first}: cannot be read as an image: {e}") from None
    if width <= 0 or height <= 0:  # FFmpeg opens a text file as a "video" of no size
        raise MediaError(f"{first}: cannot be read as an image: no picture size")
    return PlateInfo(
        kind="sequence",
        path=str(pattern),
        frame_count=len(numbers),
        fps=fps or Fraction(24),
        width=width,
        height=height,
        codec=codec,
        pixel_format=pix,
        first_frame=numbers[0],
        frame_numbers=tuple(numbers),
    )
