"""Decoding plates into RGB frames, a range at a time, with PyAV.

A chunk of a shot opens its own reader, seeks to its first frame and stops after its last, so chunks can
be decoded independently (in threads, processes or on other machines) and give the same pixels as one
pass through the whole movie.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from queue import Full, Queue
from typing import Protocol

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from pipeline.errors import MediaError
from pipeline.media.color import half_linear_to_srgb, linear_to_srgb
from pipeline.media.colorspace import PlateColorspace
from pipeline.media.probe import (
    ColorTags,
    LayerError,
    PlateInfo,
    bit_depth,
    exr_picture_size,
    movie_frame_times,
    numbered_in_order,
    plate_stream,
    probe_movie,
    probe_sequence,
    quarter_turns,
    sequence_path,
)
from pipeline.media.sequences import decode_dpx, decode_exr, decode_png


class FrameError(MediaError):
    """A plate frame that cannot be decoded. The plate counts its frames from 0; the shot that reads it
    renumbers the error with its own frame numbers (`numbered`), which are what the artist knows."""

    def __init__(self, path: Path | str, index: int, problem: str, first: int = 0):
        super().__init__(f"{path}: frame {first + index}: {problem}")
        self.path, self.index, self.problem = path, index, problem

    def numbered(self, first: int) -> FrameError:
        """The same error, naming the frame as number `first + index`."""
        return FrameError(self.path, self.index, self.problem, first)


class Plate(Protocol):
    info: PlateInfo

    def read(self, start: int, stop: int, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """Frames at plate positions start..stop-1 (0 is the plate's first frame), in order; scaled to
        `size` (width, height, area-averaged) when given, for a quick look at every frame."""
        ...


def scaled(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """An image scaled to size (width, height) by area averaging; the image itself without a size."""
    return image if size is None else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def contiguous(image: np.ndarray) -> np.ndarray:
    """A decoded picture as one block of rows: PyAV 18.1.1 hands over its frame's own buffer, whose rows are
    padded to FFmpeg's alignment (a 720 px RGB row of 2160 bytes at a stride of 2304), where 18.1.0 copied
    it; dlib refused such a view (`get_face_chip(): incompatible function arguments`). Copied only then."""
    return np.ascontiguousarray(image)


def upright(image: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """The decoded image turned as its display matrix says (`quarter_turns`)."""
    turns = quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def read_image(path: Path, layer: str = "") -> np.ndarray:
    """One image file as RGB: uint8 for 8-bit files, uint16 for deeper ones, float32 for EXR.

    A PNG is read by `decode_png` when its rows are filtered as the pipeline writes them (half the time
    of libpng's reading), and a single-part EXR by `decode_exr` (OpenEXR's library: half the time of
    FFmpeg's decoder); other PNGs by OpenCV's libpng reader (lossless, so the same samples as FFmpeg's
    decoder) when it knows the file: opening each file as a PyAV container probes it by decoding it once
    more, which made a PNG sequence read at 0.6x of `ffmpeg -f null`. Anything else goes through PyAV;
    FFmpeg's EXR decoder picks an EXR's named `layer` (`exr_picture_size`) where OpenEXR's cannot."""
    suffix = Path(path).suffix.lower()
    if layer and suffix != ".exr":
        raise LayerError(f"{path}: a layer is read from EXR files only")
    if suffix == ".png" and (rgb := _read_png(path)) is not None:
        return rgb
    if suffix == ".dpx" and (rgb := _read_dpx(path)) is not None:
        return rgb
    if suffix == ".exr" and (linear := decode_exr(path, layer)) is not None:
        return half_linear_to_srgb(linear) if linear.dtype == np.float16 else linear_to_srgb(linear)
    if suffix == ".exr":  # for FFmpeg's decoder: a picture where the plate takes it from, and no DWAA
        exr_picture_size(path, layer, for_ffmpeg=True)
    try:
        with av.open(str(Path(path).absolute())) as container:  # relative, `take:1.png` is a protocol's
            stream = container.streams.video[0]
            if layer:
                stream.codec_context.options = {"layer": layer}
            frame = next(container.decode(stream))
            name = stream.codec_context.name
            pix = frame.format.name
            if name == "exr":
                return _exr_srgb(frame)
            deep = bit_depth(pix) > 8  # a 10- or 12-bit DPX scan, a float TIFF: 16-bit samples
            return upright(
                contiguous(frame.to_ndarray(format="rgb48le" if deep else "rgb24", threads=1)), frame
            )
    except (av.FFmpegError, StopIteration, IndexError) as e:
        raise MediaError(f"{path}: cannot be read as an image: {e}") from None


def _read_dpx(path: Path) -> np.ndarray | None:
    """A 10-, 12- or 16-bit RGB DPX frame in a usual layout, by `decode_dpx`; None for others and unreadable
    files."""
    try:
        return decode_dpx(Path(path).read_bytes())
    except OSError:
        return None


def _read_png(path: Path) -> np.ndarray | None:
    """An 8- or 16-bit PNG as RGB (grey, palette and alpha files included: grey is repeated, alpha left
    out); None where neither `decode_png` nor OpenCV can read it."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if (image := decode_png(data)) is not None:
        if image.shape[2] <= 2:
            return cv2.cvtColor(np.ascontiguousarray(image[..., 0]), cv2.COLOR_GRAY2RGB)
        return image if image.shape[2] == 3 else np.ascontiguousarray(image[..., :3])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype not in (np.uint8, np.uint16):
        return None
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def _exr_srgb(frame: av.VideoFrame) -> np.ndarray:
    """A planar float frame (gbrp[a]f16/f32, or grey[a]f16/f32 from a luminance-only EXR, scene-linear) as
    display-referred float32 RGB, read plane by plane: swscale's float path is not exact."""
    dtype = np.float16 if "f16" in frame.format.name else np.float32
    planes = [
        np.frombuffer(p, dtype).reshape(p.height, p.line_size // dtype().itemsize)[:, : p.width]
        for p in frame.planes
    ]
    g, b, r = planes[:3] if len(planes) >= 3 else planes[:1] * 3  # grey[a]f: a luminance-only (Y) scan
    if dtype == np.float16:
        return half_linear_to_srgb(np.stack([r, g, b], axis=-1))
    return linear_to_srgb(np.stack([r, g, b], axis=-1))


def load_still(path: str, layer: str = "") -> np.ndarray:
    """A still plate's image (a file, or a built-in one); `layer`: an EXR's layer, as `read_image`."""
    if path.startswith("builtin:"):
        name = path.split(":", 1)[1]
        if m := re.fullmatch(r"black:(\d+)x(\d+)", name):  # the plate of a shot that has none
            return np.zeros((int(m.group(2)), int(m.group(1)), 3), np.uint8)
        if name != "astronaut":
            raise MediaError(f"{path}: unknown built-in image (known: builtin:astronaut, builtin:black:WxH)")
        import skimage.data

        return np.ascontiguousarray(skimage.data.astronaut()[..., :3])
    if not Path(path).is_file():
        raise MediaError(f"{path}: plate not found")
    return read_image(Path(path), layer)


# Decoded frames a movie read holds ahead of the colour conversion. FFmpeg's frame threads idle while the
# thread that feeds them packets converts a frame, so the two run in different threads: against `ffmpeg -f
# null` (bench/media.py, 2 cores, the code before and after minutes apart) 720x1280 H.264 0.88 -> 0.95x,
# 1080p 0.91 -> 0.95x, UHD 0.86 -> 0.90x, and the single-threaded MPEG-4 decoder 0.91 -> 1.25x.
DECODE_AHEAD = 4


class MoviePlate:
    def __init__(self, path: Path, info: PlateInfo | None = None):
        self.path = path
        self.info = info or probe_movie(path)
        self._times: tuple[int, ...] = ()
        self._numbers: dict[int, int] | None = None
        self._shared: set[int] = set()  # times two or more frames share

    def _frame_numbers(self) -> dict[int, int]:
        """Each frame time's frame number (`movie_frame_times`; the first of the frames at a time that
        several share); empty where the movie has none."""
        if self._numbers is None:
            self._times = movie_frame_times(self.path)
            self._numbers = {}
            for i, t in enumerate(self._times):
                if t in self._numbers:
                    self._shared.add(t)
                self._numbers.setdefault(t, i)
        return self._numbers

    def _index(self, frame: av.VideoFrame, expected: int, last: tuple[int, int]) -> int:
        """The frame's number: its place among the movie's frame times; -1 for a frame before the first (one
        the decoder shows from before a trim). A frame at the time of the frame before it (`last`: that
        frame's time and number) is the next number."""
        numbers = self._frame_numbers()
        if frame.pts == last[0] and frame.pts in self._shared:
            return last[1] + 1
        number = numbers.get(frame.pts)
        if number is None and frame.pts > self._times[0]:
            raise FrameError(
                self.path, expected, f"a frame at time {frame.pts} that the container does not list"
            )
        return -1 if number is None else number

    def _seek_target(self, start: int, start_pts: int, time_base: Fraction) -> int:
        if self._frame_numbers() and start < len(self._times):
            return self._times[start]
        return start_pts + math.floor(start / self.info.fps / time_base)  # the grid (or past a cut-off end)

    def read(self, start: int, stop: int, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """Decode with FFmpeg's frame threading, in a thread of its own up to DECODE_AHEAD frames ahead;
        convert to RGB (uint8, or uint16 from a source deeper than 8 bits) in this thread, with one swscale
        context for the whole read.

        `frame.to_ndarray(format=...)` makes a new swscale context (and thread pool) for every frame, which
        cost more than the conversion itself: a decode loop ran at 0.72x of `ffmpeg -f null` at 720x1280
        and 0.66x at UHD that way, 1.04x and 1.0x with one reformatter kept for the read. A `size` is made
        in the same conversion (a 64 px read of a 720x1280 movie takes about 0.6x the time).
        """
        turns = self.info.rotation // 90 % 4
        stored = size if size is None or turns % 2 == 0 else (size[1], size[0])  # before the turn
        # 16-bit samples from a deeper source (a 10-bit ProRes, a 12-bit DNxHR), as 16-bit PNGs are
        # read: its png16 and EXR output keep the depth; a quick look (a size) needs 8 bits only
        rgb_format = "rgb48le" if size is None and bit_depth(self.info.pixel_format) > 8 else "rgb24"
        scale = {} if stored is None else {"width": stored[0], "height": stored[1], "interpolation": "AREA"}
        reformatter = VideoReformatter()
        stop = min(stop, self.info.frame_count)
        if start >= stop:
            return
        expected = start
        seeked = False
        stored_size = (self.info.width, self.info.height)[:: -1 if turns % 2 else 1]
        try:
            with av.open(str(self.path)) as container:
                stream = plate_stream(container)
                stream.thread_type = "AUTO"
                time_base = stream.time_base
                start_pts = stream.start_time or 0
                in_order = numbered_in_order(self.path, container.format.name)  # then no seeking
                if start > 0 and not in_order:
                    target = self._seek_target(start, start_pts, time_base)
                    container.seek(target, stream=stream, backward=True, any_frame=False)
                    seeked = True
                last = (-1, -1)  # the time and number of the frame before
                decoded = read_ahead(self._decode(container, stream, expected), DECODE_AHEAD)
                with closing(decoded):  # its thread stops before the container closes
                    for frame in decoded:
                        if in_order:
                            last = (-1, last[1] + 1)
                            index = last[1]
                        elif frame.pts is None:
                            raise FrameError(self.path, expected, "the frame has no timestamp")
                        elif start > 0 and last[1] < 0 and frame.pts in self._shared:
                            # a seek landed among frames that share a time: which one is not known
                            yield from self._read_from_zero(start, stop, size)
                            return
                        else:
                            index = self._index(frame, expected, last)
                            last = (frame.pts, index)
                        if index < expected:
                            continue  # before the range: decoded from the keyframe, not wanted
                        if index > expected:
                            if expected == start and start > 0:
                                yield from self._read_from_zero(start, stop, size)  # seek landed past it
                                return
                            raise FrameError(self.path, expected, "missing from the stream")
                        if (frame.width, frame.height) != stored_size:  # a picture size change mid-stream
                            raise FrameError(
                                self.path,
                                expected,
                                f"{frame.width}x{frame.height}, where the movie's frames are "
                                f"{stored_size[0]}x{stored_size[1]}",
                            )
                        rgb = contiguous(
                            reformatter.reformat(frame, format=rgb_format, threads=1, **scale).to_ndarray()
                        )
                        yield np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb
                        expected += 1
                        if expected >= stop:
                            break
        except av.FFmpegError as e:
            raise FrameError(self.path, expected, f"decode error: {e.strerror or e}") from None
        if seeked and expected == start:  # the seek landed past every frame (a joined MPEG-TS's second part)
            yield from self._read_from_zero(start, stop, size)
            return
        if expected < stop:
            raise FrameError(
                self.path,
                expected,
                f"the movie ends after {expected} frames, but its container says {self.info.frame_count} "
                "(truncated file?)",
            )

    def _decode(self, container, stream, expected: int) -> Iterator[av.VideoFrame]:
        for packet in container.demux(stream):
            if packet.is_corrupt:
                raise FrameError(self.path, expected, "corrupt packet in the stream")
            yield from packet.decode()

    def _read_from_zero(self, start: int, stop: int, size: tuple[int, int] | None) -> Iterator[np.ndarray]:
        for i, frame in enumerate(self.read(0, stop, size)):
            if i >= start:
                yield frame


class SequencePlate:
    def __init__(
        self, pattern: Path, fps: Fraction | None = None, info: PlateInfo | None = None, layer: str = ""
    ):
        self.pattern = pattern
        self.info = info or probe_sequence(pattern, fps, layer)

    def read(self, start: int, stop: int, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """Frames read by a small pool of threads, a few frames ahead of the caller (OpenCV's PNG reader
        and FFmpeg's decoders let go of the GIL), in order. The look-ahead is bounded, so memory does not
        grow with the shot, and a missing or broken file is raised at its own place in the order."""
        first = self.info.first_frame or 0
        numbers = iter(range(start, min(stop, self.info.frame_count)))
        workers = read_threads()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plate-read") as pool:
            ahead: deque[Future[np.ndarray]] = deque()
            try:
                for i in numbers:
                    ahead.append(pool.submit(self._read_one, first, i, size))
                    if len(ahead) > 2 * workers:
                        yield ahead.popleft().result()
                while ahead:
                    yield ahead.popleft().result()
            finally:
                for future in ahead:
                    future.cancel()

    def _read_one(self, first: int, i: int, size: tuple[int, int] | None) -> np.ndarray:
        path = sequence_path(self.pattern, first + i)
        if not path.is_file():
            raise FrameError(path, i, "missing from the sequence", first)
        try:
            image = read_image(path, self.info.layer)
        except MediaError as e:
            raise FrameError(path, i, str(e).removeprefix(f"{path}: "), first) from None
        h, w = image.shape[:2]
        if (w, h) != (self.info.width, self.info.height):  # a proxy or a re-render of another size slipped in
            raise FrameError(
                path,
                i,
                f"{w}x{h}, where the sequence's frames are {self.info.width}x{self.info.height}",
                first,
            )
        return scaled(image, size)


def read_ahead(frames: Iterator[np.ndarray], depth: int) -> Iterator[np.ndarray]:
    """The same frames, decoded by a thread up to `depth` frames ahead of the caller, so decoding
    overlaps the caller's work on the frames before (FFmpeg and the colour conversion let go of the GIL).

    Errors come out in order, where the frame would have been; closing this iterator stops the reader
    and closes `frames` in its own thread. At most depth + 1 frames are held at once.
    """
    queue: Queue[tuple[str, object]] = Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: tuple[str, object]) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def read() -> None:
        try:
            for frame in frames:
                if not put(("frame", frame)):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the caller, raised where the frame would have been
            put(("error", e))
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=read, name="plate-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            kind, item = queue.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(item, BaseException)
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        reader.join()


def read_threads() -> int:
    """Threads that read image files in parallel: the machine's cores (at most 8; file reads beyond that
    wait on the disk, and each thread holds a frame)."""
    return max(1, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class CameraMove:
    """A 2D move on a still, eased in and out: zoom factor, pan in pixels, roll in degrees, start to end."""

    zoom: tuple[float, float] = (1.0, 1.0)
    pan: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.0), (0.0, 0.0))
    rotate: tuple[float, float] = (0.0, 0.0)

    def matrix(self, t: float, width: int, height: int) -> np.ndarray:
        s = t * t * (3 - 2 * t)  # smoothstep: a camera move eases in and out
        zoom = self.zoom[0] + (self.zoom[1] - self.zoom[0]) * s
        angle = self.rotate[0] + (self.rotate[1] - self.rotate[0]) * s
        dx = self.pan[0][0] + (self.pan[1][0] - self.pan[0][0]) * s
        dy = self.pan[0][1] + (self.pan[1][1] - self.pan[0][1]) * s
        m = cv2.getRotationMatrix2D((width / 2, height / 2), angle, zoom)
        m[:, 2] += (dx, dy)
        return m


def probe_still(path: str, hold: int, fps: Fraction | None, image: np.ndarray, layer: str = "") -> PlateInfo:
    """What a held still is, from its loaded image."""
    return PlateInfo(
        kind="still",
        path=str(path),
        frame_count=hold,
        fps=fps or Fraction(24),
        width=image.shape[1],
        height=image.shape[0],
        codec="still",
        pixel_format="rgb48" if image.dtype.itemsize == 2 else "rgb24",
        layer=layer,
    )


class StillPlate:
    def __init__(
        self,
        path: str,
        hold: int,
        fps: Fraction | None = None,
        move: CameraMove | None = None,
        layer: str = "",
    ):
        self.image = load_still(path, layer)
        self.move = move
        self.info = probe_still(path, hold, fps, self.image, layer)

    def read(self, start: int, stop: int, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        h, w = self.image.shape[:2]
        n = self.info.frame_count
        for i in range(start, min(stop, n)):
            if self.move is None:
                yield scaled(self.image, size) if size else self.image.copy()
                continue
            m = self.move.matrix(i / max(n - 1, 1), w, h)
            yield scaled(
                cv2.warpAffine(
                    self.image, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
                ),
                size,
            )


class ConvertedPlate:
    """A plate whose frames are converted from its colour space (a camera's log, a scan's density) to the
    pipeline's display-referred float32 as they are read (`PlateColorspace`). Its info says its pictures
    are untagged, BT.709 (what they now are): a PQ plate converted is no longer one, and its movies must not
    be made and labelled as HDR."""

    def __init__(self, plate: Plate, colorspace: PlateColorspace):
        self.plate = plate
        self.colorspace = colorspace
        self.info = replace(plate.info, color=ColorTags())

    def read(self, start: int, stop: int, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        for _, frame in self.read_with_samples(start, stop, size):
            yield frame

    def read_with_samples(
        self, start: int, stop: int, size: tuple[int, int] | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The plate's own samples and their pictures, frame by frame (a comp written in the plate's
        encoding keeps the samples wherever the new face did not go)."""
        for samples in self.plate.read(start, stop, size):
            yield samples, self.colorspace.convert(samples)


def open_plate(
    kind: str,
    path: str,
    *,
    fps: Fraction | None = None,
    hold: int | None = None,
    move: CameraMove | None = None,
    layer: str = "",
    colorspace: PlateColorspace | None = None,
) -> Plate:
    """The plate of a kind (movie, sequence or still) at `path`, probed; `layer`: an EXR plate's layer whose
    channels are the picture (`exr_picture_size`); `colorspace`: the plate's encoding, converted as frames
    are read. Files are opened by their absolute paths: FFmpeg reads a relative `take:1.mov` as a
    protocol's name."""
    plate: Plate
    if kind == "movie":
        if layer:
            raise LayerError(f"{path}: a layer is read from EXR sequences and stills only, not movies")
        plate = MoviePlate(Path(path).absolute())
    elif kind == "sequence":
        plate = SequencePlate(Path(path).absolute(), fps, layer=layer)
    elif kind == "still":
        plate = StillPlate(path, hold or 1, fps, move, layer)
    else:
        raise ValueError(f"unknown plate kind {kind!r}")
    return plate if colorspace is None else ConvertedPlate(plate, colorspace)
