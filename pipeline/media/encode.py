"""Movies from a written frame sequence, with ffmpeg (through ffmpeg-python).

Movies are made from the finished sequence rather than from frames in memory: the sequence is the
deliverable that survives a crash, and a movie can be remade from it alone.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import ffmpeg

from pipeline.errors import MediaError
from pipeline.files import temporary_path
from pipeline.media.probe import ColorTags
from pipeline.processes import run


@dataclass(frozen=True)
class MoviePreset:
    extension: str
    video: dict[str, str]
    audio_codec: str
    burn_ins: bool = False
    min_size: tuple[int, int] = (2, 2)
    # the YUV matrix the codec's own header states, used whatever the plate's: FFmpeg's DNxHR decoder
    # reads BT.709 from it even under a container's BT.2020 tag (colours shifted by 3.7 levels on average)
    matrix: str | None = None


MOVIE_PRESETS: dict[str, MoviePreset] = {
    "prores422hq": MoviePreset(
        "mov",
        {"c:v": "prores_ks", "profile:v": "3", "pix_fmt": "yuv422p10le", "vendor": "apl0"},
        "pcm_s24le",
    ),
    "prores4444": MoviePreset(
        "mov",
        {"c:v": "prores_ks", "profile:v": "4", "pix_fmt": "yuv444p10le", "vendor": "apl0"},
        "pcm_s24le",
    ),
    "dnxhr_hq": MoviePreset(
        "mov",
        {"c:v": "dnxhd", "profile:v": "dnxhr_hq", "pix_fmt": "yuv422p"},
        "pcm_s24le",
        min_size=(256, 120),
        matrix="bt709",
    ),
    "h264_review": MoviePreset(
        "mp4",
        {"c:v": "libx264", "crf": "18", "preset": "medium", "pix_fmt": "yuv420p", "movflags": "+faststart"},
        "aac",
        burn_ins=True,
    ),
}

# Deeper formats for the presets that are 8-bit, used when the plate is HDR: PQ and HLG need 10 bits
# (8 bits band visibly in skies and skin)
HDR_VIDEO = {
    "h264_review": {"pix_fmt": "yuv420p10le"},  # x264's High 10 profile
    "dnxhr_hq": {"profile:v": "dnxhr_hqx", "pix_fmt": "yuv422p10le"},
}
# The scale filter's names for the YUV matrices (constant-luminance BT.2020 is made as its non-constant form)
SCALE_MATRICES = {"bt470bg": "bt470", "bt2020nc": "bt2020", "bt2020c": "bt2020"}

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono.ttf",
    "/System/Library/Fonts/Menlo.ttc",
)


@functools.cache
def ffmpeg_executable() -> str:
    """$VFX_FFMPEG, else the system's ffmpeg, else the static build of the imageio-ffmpeg wheel.

    $VFX_FFMPEG must be an ffmpeg that runs (`-version` says so): a wrong path made every movie of a render
    fail with a traceback, after all its frames."""
    chosen = os.environ.get("VFX_FFMPEG")
    if chosen:
        exe = shutil.which(chosen)
        try:
            version = run([exe, "-version"], capture_output=True, text=True, timeout=30).stdout if exe else ""
        except (OSError, subprocess.SubprocessError):
            version = ""
        if not version.startswith("ffmpeg version"):
            problem = "an ffmpeg that does not say so (-version)" if exe else "not an executable file"
            raise MediaError(f"VFX_FFMPEG={chosen}: {problem}; point it at an ffmpeg, or unset it")
        return exe
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise MediaError(f"ffmpeg: not found on PATH and imageio-ffmpeg has none ({e})") from None


@functools.cache
def burn_in_font() -> str | None:
    for p in FONT_CANDIDATES:
        if Path(p).is_file():
            return p
    found = sorted(Path("/usr/share/fonts").rglob("*.ttf")) if Path("/usr/share/fonts").is_dir() else []
    return str(found[0]) if found else None


def _ffmetadata(metadata: dict[str, str]) -> str:
    def esc(s: str) -> str:
        for ch in "\\=;#\n":
            s = s.replace(ch, "\\" + ch)
        return s

    return ";FFMETADATA1\n" + "".join(f"{esc(k)}={esc(v)}\n" for k, v in metadata.items())


@dataclass(frozen=True)
class AudioSource:
    """The plate's audio, trimmed to the rendered range: offset and duration in seconds."""

    path: str
    offset: float
    duration: float


# AAC (the review movie's sound) holds at most 8 channels (7.1); a plate with more in a stream (a sound
# recordist's 16-track polyphonic WAV muxed in, 7.1.4) failed the movie after every frame had rendered
AAC_MAX_CHANNELS = 8


def audio_channels(path: str) -> tuple[int, ...]:
    """The channel count of each audio stream of a movie, in order."""
    with av.open(path) as container:
        return tuple(s.codec_context.channels for s in container.streams.audio)


def image2_pattern(pattern: Path) -> str:
    """A sequence's `name.%04d.ext` as FFmpeg's image2 reader takes it: absolute (in a relative path,
    `take:1/` reads as a protocol's name), and with every % but the frame number's doubled (a render root
    in a folder named `100%` or `%d` was read as a pattern, and no frame was found)."""
    head, token, tail = str(pattern.absolute()).rpartition("%04d")
    return head.replace("%", "%%") + token + tail.replace("%", "%%")


def movie_args(
    sequence_pattern: Path,
    first_frame: int,
    frame_count: int,
    fps: Fraction,
    output: Path,
    preset: str,
    audio: AudioSource | None = None,
    burn_in_text: str | None = None,
    linear_exr: bool = False,
    alpha: bool = False,
    color: ColorTags | None = None,
    pixel_aspect: Fraction = Fraction(1),
    timecode: str = "",
    display_lut: Path | None = None,
) -> list[str]:
    """The ffmpeg command line (without the executable) that encodes the sequence into one movie.

    The metadata comes on standard input (`_ffmetadata`): no file of it is written, so a killed encode
    cannot leave one behind. alpha=True keeps the sequence's alpha channel (ProRes 4444 only). The movie
    carries the plate's colour tags (`color`, a part not given is BT.709) and is made with its YUV matrix
    (where the codec allows); an HDR plate's movie is 10-bit in every preset. It is shown with the plate's
    `pixel_aspect` (an anamorphic plate's squeezed pixels are stretched back by players, as the plate's are).
    A `timecode`, its first frame's, goes in a timecode track (MOV's and MP4's `tmcd`), as a camera's has it,
    and is burnt in beside the frame number. A `display_lut` (a .cube file) takes frames in a plate's own
    encoding (a camera's log) to the display pictures a movie shows.
    """
    p = MOVIE_PRESETS[preset]
    color = color or ColorTags()
    matrix = p.matrix or color.matrix or "bt709"
    in_opts: dict[str, str] = {
        "framerate": f"{fps.numerator}/{fps.denominator}",
        "start_number": str(first_frame),
    }
    video = ffmpeg.input(image2_pattern(sequence_pattern), **in_opts).video
    if linear_exr:  # EXR holds linear light; movies are display-referred (the sRGB curve)
        video = video.filter("zscale", transferin="linear", transfer="iec61966-2-1")
    if display_lut is not None:
        video = video.filter("lut3d", file=str(display_lut), interp="tetrahedral")
    video = video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
    font = burn_in_font()
    if p.burn_ins and burn_in_text and font:
        common = {
            "fontfile": font,
            "fontsize": "h/28",
            "fontcolor": "white",
            "box": "1",
            "boxcolor": "black@0.5",
        }
        video = video.drawtext(text=burn_in_text, x="10", y="10", **common)
        video = video.drawtext(
            text=f"%{{eif:n+{first_frame}:d}}", x="w-tw-10", y="h-th-10", escape_text=False, **common
        )
        if timecode:  # drawtext counts it on, drop-frame labels and all
            rate = f"{fps.numerator}/{fps.denominator}"
            video = video.drawtext(timecode=timecode, rate=rate, x="10", y="h-th-10", **common)
    tags = {
        "colorspace": "bt2020nc" if matrix == "bt2020c" else matrix,
        "color_primaries": color.primaries or "bt709",
        "color_trc": color.transfer or "bt709",
    }
    video = video.filter("scale", out_color_matrix=SCALE_MATRICES.get(matrix, matrix), out_range="tv")
    # the frames carry the tags too: ffmpeg 7 and later tag the stream from its frames, not from -color_trc
    video = video.filter("setparams", range="tv", **tags)
    video = video.filter("setsar", f"{pixel_aspect.numerator}/{pixel_aspect.denominator}")
    streams = [video]
    out_opts: dict[str, str] = dict(p.video)
    if color.hdr:
        out_opts.update(HDR_VIDEO.get(preset, {}))
    if alpha:
        if preset != "prores4444":
            raise ValueError(f"{preset} cannot carry alpha; ProRes 4444 can")
        out_opts["pix_fmt"] = "yuva444p10le"
    out_opts.update(
        {
            "frames:v": str(frame_count),
            "map_metadata": "2" if audio else "1",
            **tags,
        }
    )
    if timecode:
        out_opts["timecode"] = timecode
    out_opts["movflags"] = (out_opts.get("movflags", "") + "+use_metadata_tags").lstrip("+")
    if audio:
        source = str(Path(audio.path).absolute())  # `take:1.mov` read as a relative path is a protocol's
        streams.append(ffmpeg.input(source, ss=f"{audio.offset:.6f}", t=f"{audio.duration:.6f}").audio)
        out_opts.update({"c:a": p.audio_codec, "t": f"{audio.duration:.6f}"})
        if p.audio_codec == "aac":  # a stream past AAC's channels is mixed down to stereo for review
            for i, channels in enumerate(audio_channels(source)):
                if channels > AAC_MAX_CHANNELS:
                    out_opts[f"ac:a:{i}"] = "2"
    args = ffmpeg.compile(
        ffmpeg.output(*streams, str(output.absolute()), **out_opts), cmd="ffmpeg", overwrite_output=True
    )[1:]
    # ffmpeg-python leaves out inputs that feed no output stream, so the metadata file (read only through
    # -map_metadata) is added by hand as the last input.
    last_i = max(i for i, a in enumerate(args) if a == "-i")
    return args[: last_i + 2] + ["-f", "ffmetadata", "-i", "pipe:0"] + args[last_i + 2 :]


def encode_movie(
    sequence_pattern: Path,
    first_frame: int,
    frame_count: int,
    fps: Fraction,
    output: Path,
    preset: str,
    metadata: dict[str, str],
    audio: AudioSource | None = None,
    burn_in_text: str | None = None,
    linear_exr: bool = False,
    alpha: bool = False,
    color: ColorTags | None = None,
    pixel_aspect: Fraction = Fraction(1),
    timecode: str = "",
    display_lut: Path | None = None,
) -> list[str]:
    """Encode to a temporary name (`temporary_path`), then rename: a movie under its final name is always
    complete, and what a killed encode leaves is a temporary that a resume removes. The ffmpeg dies with
    this process (`pipeline.processes`).

    Returns the ffmpeg command line that was run.
    """
    tmp = temporary_path(output)
    args = movie_args(
        sequence_pattern,
        first_frame,
        frame_count,
        fps,
        tmp,
        preset,
        audio,
        burn_in_text,
        linear_exr,
        alpha,
        color,
        pixel_aspect,
        timecode,
        display_lut,
    )
    cmd = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-v", "error", *args]
    try:
        proc = run(cmd, input=_ffmetadata(metadata), capture_output=True, text=True)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["(no message)"])[0]  # the cause comes first
            raise MediaError(f"{output}: ffmpeg failed ({preset}): {first}")
        if not tmp.is_file():
            raise MediaError(f"{output}: {cmd[0]} ended without an error and without writing the movie")
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return cmd
