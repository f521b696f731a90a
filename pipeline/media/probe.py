"""What a plate is: frame count, rate, size, codec, audio. Movies, image sequences and held stills."""

from __future__ import annotations

import functools
import math
import re
import struct
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import OpenEXR

from pipeline.errors import MediaError
from pipeline.media.sequences import read_png_text

# a sequence's frame number in its file name: #### (Nuke), %04d, or %d unpadded (printf, as FFmpeg takes it)
SEQUENCE_TOKEN = re.compile(r"(#+|%(?:0(\d+))?d)")
BUILTIN_IMAGES = ("astronaut",)


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int
    duration: float  # seconds


# ffmpeg's names for the colour tags a stream carries (AVColorPrimaries, AVColorTransferCharacteristic and
# AVColorSpace values), as its command line takes them
PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
             10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}  # fmt: skip
TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
             11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
             16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}  # fmt: skip
MATRICES = {1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc", 10: "bt2020c"}
HDR_TRANSFERS = {"smpte2084": "PQ", "arib-std-b67": "HLG"}


@dataclass(frozen=True)
class ColorTags:
    """How a movie says its pixels are to be shown: primaries, transfer curve and YUV matrix, by ffmpeg's
    names ("" where it does not say). The pipeline keeps the plate's code values (it composites in them)
    and its movies carry the same tags, so an HDR plate (BT.2020 primaries, PQ or HLG) comes back as HDR
    rather than as the same numbers labelled BT.709, which players show washed out."""

    primaries: str = ""
    transfer: str = ""
    matrix: str = ""

    @property
    def hdr(self) -> str:
        """The name of a high-dynamic-range transfer (PQ or HLG); empty for any other."""
        return HDR_TRANSFERS.get(self.transfer, "")

    def describe(self) -> str:
        """Primaries/transfer/matrix, as bt2020/smpte2084/bt2020nc ("unspecified" for a part not said)."""
        return "/".join(t or "unspecified" for t in (self.primaries, self.transfer, self.matrix))


def color_tags(codec_context: av.video.codeccontext.VideoCodecContext) -> ColorTags:
    """The colour tags of a movie's video stream (its container's or its bitstream's)."""
    return ColorTags(
        PRIMARIES.get(int(codec_context.color_primaries), ""),
        TRANSFERS.get(int(codec_context.color_trc), ""),
        MATRICES.get(int(codec_context.colorspace), ""),
    )


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
    # Degrees counterclockwise the decoded frames are turned to stand upright (the display matrix of a
    # phone's movie, a JPEG's EXIF orientation); width and height are the upright frame's.
    rotation: int = 0
    audio: AudioInfo | None = None
    color: ColorTags = ColorTags()  # movies only; sequences and stills are taken as sRGB/BT.709
    # The width of a pixel over its height, as shown (movies, and EXR and DPX sequences): 4/3 for HDV's
    # 1440x1080 shown at 1920x1080, 8/9 or 32/27 for DV, 2 for a cinema anamorphic lens. Frames are kept in
    # their stored pixels (faces are worked unsqueezed), and movies and EXR frames carry it back.
    pixel_aspect: Fraction = Fraction(1)
    # "top" or "bottom" (the field shown first) for an interlaced movie (broadcast 1080i, DV): the stages work
    # on whole frames, the two fields' combing and all, so `vfx validate` warns
    interlaced: str = ""
    layer: str = ""  # EXR plates: the layer whose R, G, B (or Y) are the picture ("": the top-level channels)
    # the SMPTE timecode of the plate's first frame as its file gives it (a movie's timecode track or tag, a
    # DPX, EXR or PNG sequence's first header), "" when it gives none; the comp carries it on (see timecode)
    timecode: str = ""
    # movies: seconds from the file's start to its first picture (a camera's audio pre-roll, an edit that
    # starts the picture late): the audio carried into the comp's movies is cut from there
    picture_start: float = 0.0
    frame_numbers: tuple[int, ...] = field(default=(), repr=False)  # sequences only

    @property
    def duration(self) -> float:
        return float(self.frame_count / self.fps)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fps"] = float(self.fps)
        d["fps_fraction"] = f"{self.fps.numerator}/{self.fps.denominator}"
        d["pixel_aspect"] = f"{self.pixel_aspect.numerator}/{self.pixel_aspect.denominator}"
        d["duration"] = self.duration
        d.pop("frame_numbers")
        return d


# DPX transfer characteristics (SMPTE 268M) whose samples are not a display's: a film scan kept in printing
# density (Cineon log) or another log or linear encoding
DPX_SCENE_TRANSFERS = {1: "printing density (Cineon log)", 2: "linear light", 3: "logarithmic"}


@dataclass(frozen=True)
class DpxHeader:
    """What a DPX's header (SMPTE 268M) says besides its picture, which FFmpeg's decoder does not pass on."""

    transfer: str  # how its samples are encoded when not for a display (`DPX_SCENE_TRANSFERS`), else ""
    timecode: str  # its TV timecode ("" when unset)
    rate: Fraction | None  # its film header's frame rate, else its TV header's


def read_dpx_header(path: Path) -> DpxHeader | None:
    """A DPX file's header; None for a file that is not a DPX or is cut short before its TV header."""
    try:
        with open(path, "rb") as f:
            head = f.read(1944)
    except OSError:
        return None
    if len(head) < 1944 or head[:4] not in (b"SDPX", b"XPDS"):
        return None
    order = ">" if head[:4] == b"SDPX" else "<"
    film, tv = (struct.unpack(order + "f", head[at : at + 4])[0] for at in (1724, 1940))
    (timecode,) = struct.unpack(order + "I", head[1920:1924])
    rate = stated_rate(film) or stated_rate(tv)
    return DpxHeader(DPX_SCENE_TRANSFERS.get(head[801], ""), dpx_timecode(timecode, rate), rate)


def movie_timecode(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> str:
    """A movie's start timecode: its picture stream's tag (MOV and MP4 copy their timecode track's there),
    a timecode track's (`tmcd`), or the file's (MXF, Matroska's TIMECODE)."""
    data = [s.metadata for s in container.streams if s.type == "data"]
    for metadata in (stream.metadata, *data, container.metadata):
        for key, value in metadata.items():
            if key.lower() == "timecode" and value.strip():
                return value.strip()
    return ""


def picture_start(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    """Seconds from a movie's start (its earliest stream's, as FFmpeg's -ss counts) to its first shown
    picture; 0 where the container gives no start times."""
    if stream.start_time is None or container.start_time is None:
        return 0.0
    return max(0.0, float(stream.start_time * stream.time_base) - container.start_time / av.time_base)


def dpx_timecode(value: int, rate: Fraction | None = None) -> str:
    """A DPX header's TV timecode (at byte 1920: BCD hours, minutes, seconds and frames, the frames' byte
    carrying the drop-frame flag 0x40); "" when unset (all ones) or not BCD. Above 30 fps (the header's
    `rate`) the BCD frames count frame pairs, as SMPTE ST 12-1 packs 50 and 60 fps labels into its two bits
    of frame tens, and a field bit says which of the pair (the hours' top bit at 50 fps, the seconds' at
    others), as FFmpeg reads them: frames 0-59, where the digits alone stop at 39."""
    if value == 0xFFFFFFFF:
        return ""
    hours, minutes, seconds, frames = value >> 24 & 0x3F, value >> 16 & 0x7F, value >> 8 & 0x7F, value & 0x3F
    if any(b & 0xF > 9 for b in (hours, minutes, seconds, frames)):
        return ""
    digits = [(b >> 4) * 10 + (b & 0xF) for b in (hours, minutes, seconds, frames)]
    if rate is not None and rate > 30:
        digits[3] = 2 * digits[3] + (value >> (31 if rate == 50 else 15) & 1)
    return "{:02d}:{:02d}:{:02d}{}{:02d}".format(*digits[:3], ";" if value & 0x40 else ":", digits[3])


def stated_rate(value: float) -> Fraction | None:
    """A header's frame rate as a fraction, the NTSC rates (23.976, 29.97, ...) as n*1000/1001; None for no
    rate (DPX's unset fields read 0, NaN or huge)."""
    if not math.isfinite(value) or not 1 <= value <= 1000:
        return None
    ntsc = round(value * 1.001)
    if abs(value * 1.001 - ntsc) < 0.005 and abs(value - ntsc) > 0.01:  # 23.98 is 23.976 too
        return Fraction(ntsc * 1000, 1001)
    return Fraction(value).limit_denominator(1000)


def image_timing(path: Path, codec: str) -> tuple[str, Fraction | None]:
    """The timecode and frame rate an image's header gives, from one read of it: a DPX's TV timecode and
    film (else TV) header rate, a scanner's; an EXR's timeCode (or our string, for a 50 or 60 fps label
    past the frames timeCode holds) and framesPerSecond, a renderer's or Nuke's; a PNG comp of ours'
    `timecode` and `framesPerSecond` text. ("", None) for other formats and headers it cannot read."""
    try:
        if codec == "dpx":
            header = read_dpx_header(path)
            return (header.timecode, header.rate) if header else ("", None)
        if codec == "exr":
            with OpenEXR.File(str(path), header_only=True) as f:
                attributes = dict(f.header())  # read while the file is open
            tc, rate = attributes.get("timeCode"), attributes.get("framesPerSecond")
            if tc is not None:
                mark = ";" if tc.dropFrame else ":"
                timecode = f"{tc.hours:02d}:{tc.minutes:02d}:{tc.seconds:02d}{mark}{tc.frame:02d}"
            else:
                text = attributes.get("timecode", "")
                timecode = text.strip() if isinstance(text, str) else ""
            fraction = isinstance(rate, Fraction) and rate.denominator
            return timecode, stated_rate(float(rate)) if fraction else None
        if codec == "png":
            text = read_png_text(path)
            rate = text.get("framesPerSecond", "")
            return text.get("timecode", "").strip(), stated_rate(float(Fraction(rate))) if rate else None
    except (OSError, RuntimeError, MediaError, ValueError, ZeroDivisionError):
        return "", None
    return "", None


class LayerError(MediaError):
    """An EXR whose picture is not where the plate takes it from (`exr_picture_size`)."""


def exr_picture_size(path: Path, layer: str = "", for_ffmpeg: bool = False) -> tuple[int, int]:
    """The display size (width, height) of an EXR whose picture is where the plate takes it from: the R, G
    and B (or Y: a luminance-only scan, not a luminance/chroma file with RY and BY, whose colour FFmpeg's
    reader drops) of the named layer (`beauty` for beauty.R, beauty.G, beauty.B, as Nuke names layers),
    or the top-level ones without a layer. Names match as FFmpeg's reader matches them: the layer's as
    written, the channels' in any case. A renderer's multi-layer EXR with no top-level picture is refused
    naming its layers (LayerError), where FFmpeg's reader made a picture of no size; so is a layer the
    file lacks. `for_ffmpeg`: the file is for FFmpeg's decoder (one `decode_exr` does not read: multi-part,
    mipmapped, ...), so a DWAA one is refused too: FFmpeg decoded such files wrongly without a word (a
    two-part DWAA file 0.66 off on average, 0-1 scale)."""
    try:
        with OpenEXR.File(str(path), header_only=True) as f:  # its channels are gone once it is closed
            header = f.header()
            names = [c.name for c in header.get("channels", ())]
            (x0, y0), (x1, y1) = header["displayWindow"]
            dwaa = header.get("compression") == OpenEXR.DWAA_COMPRESSION
    except (RuntimeError, ValueError, OSError, KeyError) as e:
        raise MediaError(f"{path}: cannot be read as an EXR: {e}") from None
    if for_ffmpeg and dwaa:
        raise MediaError(
            f"{path}: a DWAA-compressed EXR in a layout only FFmpeg's reader takes (multi-part, mipmapped or "
            "lower-case channels), which it decodes wrongly; write it single-part, or with ZIP or PIZ"
        )
    if layer:  # FFmpeg matches the layer's name as written, its channels' in any case
        picked = {n[len(layer) + 1 :].lower() for n in names if n.startswith(f"{layer}.")}
    else:
        picked = {n.lower() for n in names if "." not in n}
    if set("rgb") <= picked:
        return int(x1 - x0 + 1), int(y1 - y0 + 1)
    if "y" in picked:
        if picked & {"ry", "by"}:  # FFmpeg's reader takes the Y alone: a grey picture, without a word
            raise MediaError(
                f"{path}: a luminance/chroma EXR (Y, RY, BY): its colour would be lost (FFmpeg reads only "
                "its Y); write it as R, G, B"
            )
        return int(x1 - x0 + 1), int(y1 - y0 + 1)
    layers = sorted({n.rsplit(".", 1)[0] for n in names if "." in n})
    listed = f"its layers: {', '.join(layers)}" if layers else "it has no layers"
    if layer:
        raise LayerError(f"{path}: no layer {layer!r} with R, G, B or Y channels ({listed})")
    if layers:
        raise LayerError(
            f"{path}: no top-level R, G, B or Y channels ({listed}): name the picture's layer (a "
            "manifest's plate.layer, vfx extract --layer)"
        )
    raise LayerError(f"{path}: no R, G, B or Y channels (its channels: {', '.join(sorted(names))})")


def _token_padding(m: re.Match[str]) -> int:
    """The digits a frame number is padded to by its token: #### 4, %04d 4, %d none (1)."""
    if m.group(1).startswith("#"):
        return len(m.group(1))
    return max(1, int(m.group(2) or 1))


def sequence_regex(pattern: Path) -> tuple[re.Pattern[str], int]:
    """The regex for the file names of `name.####.ext` or `name.%04d.ext`, and the padding."""
    m = SEQUENCE_TOKEN.search(pattern.name)
    if not m:
        raise MediaError(f"{pattern}: an image sequence needs #### or %04d in its file name")
    pad = _token_padding(m)
    head, tail = pattern.name[: m.start()], pattern.name[m.end() :]
    return re.compile(re.escape(head) + rf"(\d{{{pad},}})" + re.escape(tail) + "$"), pad


def sequence_path(pattern: Path, number: int) -> Path:
    m = SEQUENCE_TOKEN.search(pattern.name)
    assert m is not None
    pad = _token_padding(m)
    return pattern.with_name(pattern.name[: m.start()] + f"{number:0{pad}d}" + pattern.name[m.end() :])


def has_alpha(pixel_format: str) -> bool:
    """Whether a pixel format carries an alpha channel (rgba, ya16be, yuva444p12le, gbrapf16le): grey or
    colour plus one; False if unknown."""
    try:
        return len(av.VideoFormat(pixel_format).components) in (2, 4)
    except (ValueError, av.FFmpegError):
        return False


def float_samples(pixel_format: str) -> bool:
    """Whether a pixel format's samples are floats (an EXR's gbrpf16le, grayf32le, rgbaf32le)."""
    return re.search(r"f(16|32)", pixel_format) is not None


def bit_depth(pixel_format: str) -> int:
    """Bits per sample of a pixel format (8 for yuv420p, 10 for a ProRes 422's yuv422p10le); 8 if unknown."""
    try:
        return max(c.bits for c in av.VideoFormat(pixel_format).components)
    except (ValueError, av.FFmpegError):
        return 8


def quarter_turns(frame: av.VideoFrame) -> int:
    """How many quarter turns counterclockwise (numpy's rot90 k) stand a decoded frame upright, from its
    display matrix: a phone's movie filmed upright is stored on its side with a matrix that players (and
    ffmpeg) apply, and FFmpeg exports a JPEG's EXIF orientation the same way. Read without it, the frame
    and its faces lie on their side, where the face detectors find nothing. Cameras write quarter turns
    only; a mirroring in the matrix is not read."""
    return round(frame.rotation / 90) % 4


def pixel_aspect(stream: av.video.stream.VideoStream, turns: int) -> Fraction:
    """A movie's pixel aspect ratio (1 where it says none), of its upright frames (`turns` quarter turns)."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    aspect = Fraction(sar) if sar and sar > 0 else Fraction(1)
    return 1 / aspect if turns % 2 else aspect


# image formats whose pixel aspect a farm's plates carry, and FFmpeg reads, unambiguously: EXR's
# pixelAspectRatio and DPX's aspect ratio. A PNG's pHYs (and a TIFF's resolutions) are not taken: FFmpeg
# reads pHYs's x and y the other way round from the PNG specification, and most are 72 dpi either way.
ASPECT_FORMATS = ("exr", "dpx")


# The most a lens or a tape format squeezes (cinema anamorphic lenses 2x at most, DV and HDV 4/3): a
# pixel aspect ratio further from 1 is a plate's wrong tag (a 512 px movie tagged 100:1 would be worked
# 51200 px wide, where no face is found), and its faces are worked in the stored pixels.
MAX_SQUEEZE = 3.0


def square_scale(width: int, pixel_aspect: float) -> float:
    """The x scale that makes a plate's pixels square: its width in square pixels (rounded, as
    faces.align.unsqueeze makes it) over its stored width; 1 for square pixels, and for a pixel aspect
    ratio past MAX_SQUEEZE either way (see there)."""
    if pixel_aspect == 1 or not 1 / MAX_SQUEEZE <= pixel_aspect <= MAX_SQUEEZE:
        return 1.0
    return round(width * float(pixel_aspect)) / width


def plate_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """A movie's picture: FFmpeg's best video stream (`av_find_best_stream`), which passes over a cover
    picture (a music video's artwork, a one-frame video stream that can come first: read as the plate, it
    made a plate of one frame). IndexError where there is no video stream."""
    stream = container.streams.best("video")
    if stream is None:
        raise IndexError("no video stream")
    return stream


def first_frame(path: Path) -> av.VideoFrame | None:
    """A file's first picture; None when it does not decode (the read names that frame)."""
    try:
        with av.open(str(path)) as container:
            return first_picture(container, plate_stream(container))
    except (av.FFmpegError, IndexError):
        return None


def first_picture(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> av.VideoFrame | None:
    """The first picture of an open container's stream, decoded from where the container stands; None when
    it does not decode."""
    try:
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError:
        pass
    return None


def first_frame_turns(path: Path) -> int:
    """`quarter_turns` of a file's first frame; 0 when it does not decode."""
    frame = first_frame(path)
    return 0 if frame is None else quarter_turns(frame)


def field_order(stream: av.video.stream.VideoStream, frame: av.VideoFrame | None) -> str:
    """Which field an interlaced movie shows first, top or bottom, by its container or its first frame;
    empty for a progressive one."""
    order = int(stream.codec_context.field_order or 0)  # AVFieldOrder: 2 TT, 3 BB, 4 TB, 5 BT
    if order in (3, 5):
        return "bottom"
    return "top" if order in (2, 4) or (frame is not None and frame.interlaced_frame) else ""


def numbered_in_order(path: Path, container_format: str) -> bool:
    """Whether a movie's frames are numbered by the order its decoder gives them (the order they are
    shown), read from the start, rather than by their timestamps: for streams with none (a raw H.264 or
    HEVC elementary stream) and AVI, whose packets carry decode-order times that a B-frame stream's
    decoder hands on to the wrong frames (read by them, frame 1 was "missing from the stream")."""
    return container_format == "avi" or not movie_frame_times(path)


def movie_frame_times(path: Path) -> tuple[int, ...]:
    """The timestamps of the frames a movie shows, in order: frame i of the plate is the one at the i-th.

    Counting frames this way, rather than dividing a timestamp by the frame duration, reads what players
    show from movies whose timestamps are not a steady grid: a phone's variable frame rate, and a clip
    trimmed without re-encoding (`ffmpeg -ss .. -c copy`), whose container lists (and counts) the frames
    before the cut, at timestamps below the start, which the decoder drops. Read from the packets (no
    decoding), once per version of the file. Empty where the packets carry no timestamps (the reader then
    goes by the grid). Frames that share a timestamp (a muxer's rounding, a badly cut stream) are each
    listed: players show each, and so does the reader, in the order the decoder gives them."""
    return _frame_times(path)[0]


def _frame_times(path: Path) -> tuple[tuple[int, ...], int]:
    """`movie_frame_times`, and how many packets the file holds (fewer than its container lists when the
    file is cut short)."""
    st = path.stat()
    return _read_frame_times(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_frame_times(path: str, size: int, mtime_ns: int) -> tuple[tuple[int, ...], int]:
    with av.open(path) as container:
        stream = plate_stream(container)
        times = sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)
        start = stream.start_time
    packets = len(times)
    if not times:
        return (), packets
    start = times[0] if start is None else start
    return tuple(t for t in times if t >= start), packets


def _count_packets(path: Path) -> int:
    """The packets with a picture in a movie's stream, read from the start."""
    with av.open(str(path)) as container:
        return sum(1 for p in container.demux(plate_stream(container)) if p.size)


def shown_frames_listed(stream: av.video.stream.VideoStream) -> int | None:
    """The frames a container's index lists, less those it marks discarded (a trimmed clip's frames
    before the cut): MP4 and MOV hold a table of every frame, read when the file is opened, so a plate's
    frames are counted without reading its packets. None where the index does not list every frame."""
    entries = stream.index_entries
    if not stream.frames or entries is None or len(entries) != stream.frames:
        return None
    return sum(1 for e in entries if not e.is_discard)


def probe_movie(path: Path) -> PlateInfo:
    if not path.is_file():
        raise MediaError(f"{path}: plate not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            stream = plate_stream(container)
            first = first_picture(container, stream)  # read here: opening the file again cost 15-30 ms
            avi = container.format.name == "avi"
            # an AVI re-wrapped from a movie with B-frames can keep the source's fine time base (1/600), and
            # its "average rate" is then that base; FFmpeg's guess is the frame rate
            rate = (stream.guessed_rate if avi else None) or stream.average_rate or stream.guessed_rate
            rate = rate or stream.base_rate
            if not rate:
                raise MediaError(f"{path}: the frame rate cannot be determined")
            fps = Fraction(rate).limit_denominator(1001 * 1000)
            count = None if avi else shown_frames_listed(stream)
            if avi:  # its length counts time-base ticks, not frames: a frame is a packet with a picture
                count = _frame_times(path)[1]
            elif count is None:  # no complete index: count the packets
                times, packets = _frame_times(path)
                count = stream.frames
                if times and packets >= count:
                    count = len(times)  # the frames shown (a trimmed clip's container counts those cut)
                elif times:  # a file cut short: the frames its container lists; the read names the first lost
                    count -= packets - len(times)
            if not count:  # packets without timestamps, and no frame count in the container
                count = _count_packets(path)
            if not count or stream.codec_context.width <= 0 or stream.codec_context.height <= 0:
                raise MediaError(f"{path}: cannot be read as a movie: no frames with a picture size")
            audio = None
            if container.streams.audio:
                a = container.streams.audio[0]
                adur = float(a.duration * a.time_base) if a.duration else float(container.duration or 0) / 1e6
                audio = AudioInfo(a.codec_context.name, a.rate, a.channels, adur)
            turns = 0 if first is None else quarter_turns(first)
            width, height = stream.codec_context.width, stream.codec_context.height
            return PlateInfo(
                kind="movie",
                path=str(path),
                frame_count=int(count),
                fps=fps,
                width=height if turns % 2 else width,
                height=width if turns % 2 else height,
                codec=stream.codec_context.name,
                pixel_format=stream.codec_context.pix_fmt or "",
                audio=audio,
                rotation=90 * turns,
                color=color_tags(stream.codec_context),
                pixel_aspect=pixel_aspect(stream, turns),
                interlaced=field_order(stream, first),
                timecode=movie_timecode(container, stream),
                picture_start=picture_start(container, stream),
            )
    except av.FFmpegError as e:
        raise MediaError(f"{path}: cannot be read as a movie: {e.strerror or e}") from None


def probe_sequence(pattern: Path, fps: Fraction | None, layer: str = "") -> PlateInfo:
    """What an image sequence is, from its file names and its first frame; `layer`: an EXR sequence's layer
    whose channels are the picture (`exr_picture_size`)."""
    regex, _ = sequence_regex(pattern)
    folder = pattern.parent
    if not folder.is_dir():
        raise MediaError(f"{pattern}: plate folder {folder} not found")
    named = sorted((int(m.group(1)), p.name) for p in folder.iterdir() if (m := regex.match(p.name)))
    if not named:
        raise MediaError(f"{pattern}: no files of the sequence found")
    numbers = [n for n, _ in named]
    for (n, a), (m, b) in zip(named, named[1:], strict=False):
        if n == m:  # padded two ways (x.0001.png, x.00001.png): which is the frame? Counted twice, the last
            # frame was "missing" part way through a render
            raise MediaError(f"{folder / a}: {b} is frame {n} too (padded otherwise): one file a frame")
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        raise MediaError(
            f"{sequence_path(pattern, missing[0])}: frame {missing[0]} of the sequence is missing"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    first = sequence_path(pattern, numbers[0])
    try:
        with av.open(str(first)) as container:
            stream = container.streams.video[0]
            cc = stream.codec_context
            if cc is None:  # a format PyAV's FFmpeg opens but cannot decode (JPEG XL: no libjxl in it)
                raise MediaError(
                    f"{first}: cannot be read as an image: no decoder for its {container.format.name} format "
                    "in PyAV's FFmpeg (convert the sequence to EXR, DPX, TIFF or PNG)"
                )
            width, height, codec, pix = cc.width, cc.height, cc.name, cc.pix_fmt or ""
            # the stored frame's pixel aspect (turned below with the frame)
            aspect = pixel_aspect(stream, 0) if codec in ASPECT_FORMATS else Fraction(1)
    except (av.FFmpegError, IndexError) as e:
        raise MediaError(f"{first}: cannot be read as an image: {e}") from None
    if codec == "exr":  # FFmpeg reads a layered EXR as a picture of no size
        width, height = exr_picture_size(first, layer)
    elif layer:
        raise LayerError(f"{first}: a layer is read from EXR files only, and this is {codec}")
    if width <= 0 or height <= 0:  # FFmpeg opens a text file as a "video" of no size
        raise MediaError(f"{first}: cannot be read as an image: no picture size")
    turns = first_frame_turns(first)
    timecode, header_rate = image_timing(first, codec)
    if turns % 2:
        width, height = height, width
    return PlateInfo(
        kind="sequence",
        pixel_aspect=1 / aspect if turns % 2 else aspect,
        path=str(pattern),
        frame_count=len(numbers),
        fps=fps or header_rate or Fraction(24),
        width=width,
        height=height,
        codec=codec,
        pixel_format=pix,
        first_frame=numbers[0],
        frame_numbers=tuple(numbers),
        rotation=90 * turns,
        layer=layer,
        timecode=timecode,
    )
