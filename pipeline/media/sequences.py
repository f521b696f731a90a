"""Frame files: writing sequences (PNG 8/16-bit, EXR half) atomically, each file carrying the render's
metadata, and reading back the PNGs and plain EXRs the pipeline writes faster than general readers do."""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import OpenEXR
from isal import isal_zlib

from pipeline.errors import MediaError
from pipeline.files import temporary_path
from pipeline.media.color import to_float, to_half, to_linear, to_uint8, to_uint16
from pipeline.media.timecode import TIMECODE

SEQUENCE_FORMATS = ("png8", "png16", "exr")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def extension(fmt: str) -> str:
    return "exr" if fmt == "exr" else "png"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = isal_zlib.crc32(data, isal_zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)


# PNG colour types by channels: grey, grey and alpha, RGB, RGBA
PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
# Rows are filtered and deflated this many at a time: a block's rows stay in the cache between the filter
# and the deflate, and a UHD frame needs no second copy of itself (at 16-bit RGBA, 66 MB)
PNG_BLOCK_ROWS = 64


def encode_png(
    frame: np.ndarray,
    bit_depth: int,
    metadata: dict[str, str],
    origin: tuple[int, int] | None = None,
    display: tuple[int, int] | None = None,
) -> bytes:
    """PNG bytes (grey, RGB or RGBA with straight alpha) with one iTXt chunk per metadata key, after IHDR.

    Every row is Up-filtered (minus the row above, the cheapest filter that still predicts: on real 1080p
    footage it packs as well as Paeth) by NumPy, and the rows are deflated by ISA-L at its level 1 (isal).
    Writing the frames is most of a render's time (py-spy: 92% of a UHD render's busy samples), and libpng
    with zlib (level 3, runs only, the same filter) took 3-5x as long for files of about the same size
    (one core): the 1080p portrait still 34.5 -> 9.1 ms (1.366 -> 1.353 MB); a 1080p comp 26.8 -> 6.1 ms
    (0.625 -> 0.649 MB), at 16 bits 49.6 -> 11.1 ms (0.864 -> 0.923 MB); a 1080p 16-bit RGBA face
    element 112 -> 21.6 ms (3.93 -> 4.03 MB).

    With an `origin` (x, y) and a `display` size (height, width), the PNG is the whole picture, the frame at
    that place in it and zero elsewhere (see write_frame), made a block of rows at a time: a face element's
    plate of zeros is never built, converted or filtered sample by sample.
    """
    if frame.ndim == 2:
        frame = frame[..., None]
    (x0, y0), (h, w) = origin or (0, 0), display or frame.shape[:2]
    channels = frame.shape[2]
    header = struct.pack(">IIBBBBB", w, h, bit_depth, PNG_COLOR_TYPES[channels], 0, 0, 0)
    deflate = isal_zlib.compressobj(1)
    idat = []
    above = np.zeros(w * channels * bit_depth // 8, np.uint8)  # the row before the first: zero
    for y in range(0, h, PNG_BLOCK_ROWS):
        rows = _png_rows(frame, bit_depth, x0, y0 - y, min(PNG_BLOCK_ROWS, h - y), w)
        filtered = np.empty((len(rows), rows.shape[1] + 1), np.uint8)
        filtered[:, 0] = 2  # Up
        np.subtract(rows[0], above, out=filtered[0, 1:])
        np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
        idat.append(deflate.compress(filtered))
        above = rows[-1]
    idat.append(deflate.flush())
    text = [
        _png_chunk(b"iTXt", k.encode("latin-1") + b"\x00\x00\x00\x00\x00" + v.encode("utf-8"))
        for k, v in metadata.items()
    ]
    return b"".join(
        [
            PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            *text,
            _png_chunk(b"IDAT", b"".join(idat)),
            _png_chunk(b"IEND", b""),
        ]
    )


def _png_rows(frame: np.ndarray, bit_depth: int, x0: int, y0: int, n: int, width: int) -> np.ndarray:
    """n rows, `width` px wide, of a picture holding `frame` at (x0, y0) of them and zero elsewhere, as the
    bytes a PNG stores (16-bit samples big-endian): n x (width x channels x bytes a sample) uint8."""
    h, w, channels = frame.shape
    size = channels * bit_depth // 8
    top, bottom = max(0, y0), min(n, y0 + h)
    if bottom <= top:
        return np.zeros((n, width * size), np.uint8)
    part = frame[top - y0 : bottom - y0]
    samples = to_uint16(part).astype(">u2").view(np.uint8) if bit_depth == 16 else to_uint8(part)
    samples = np.ascontiguousarray(samples).reshape(bottom - top, w * size)
    if x0 == 0 and w == width and top == 0 and bottom == n:
        return samples  # the frame's own rows: nothing to place
    rows = np.zeros((n, width * size), np.uint8)
    rows[top:bottom, x0 * size : (x0 + w) * size] = samples
    return rows


def decode_png(data: bytes) -> np.ndarray | None:
    """The samples of a PNG whose rows are all Up- or un-filtered (as `encode_png` writes them), as an
    H x W x channels uint8 or uint16 array in the file's own channel order (grey, grey and alpha, RGB or
    RGBA); None for any other PNG (other row filters, palette, interlace, under 8 bits, a CRC or deflate
    error), which is then for a general reader to read or refuse.

    ISA-L's inflate (twice zlib's speed) and NumPy's sum of each row and the row above read a 1080p 16-bit
    frame in 12 ms on one core, where libpng (OpenCV's reader) takes 29. The filter bytes of the first
    rows are read before the rest is inflated, so another writer's PNG costs little before it is handed
    on."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    header, idat, pos = b"", [], len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if len(body) < length or pos + 12 + length > len(data):
            return None
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if isal_zlib.crc32(body, isal_zlib.crc32(kind)) & 0xFFFFFFFF != crc:
            return None
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if len(header) != 13 or not idat:
        return None
    w, h, bit_depth, color_type, compression, filtering, interlace = struct.unpack(">IIBBBBB", header)
    channels = {v: k for k, v in PNG_COLOR_TYPES.items()}.get(color_type)
    if channels is None or bit_depth not in (8, 16) or (compression, filtering, interlace) != (0, 0, 0):
        return None
    stride = w * channels * bit_depth // 8
    pixels = b"".join(idat)
    try:
        # the first rows' filter bytes first: another writer's PNG is handed on before it is inflated
        first = isal_zlib.decompressobj().decompress(pixels, (stride + 1) * min(h, 8))
        if set(first[:: stride + 1]) - {0, 2}:
            return None
        raw = isal_zlib.decompress(pixels)
    except isal_zlib.error:
        return None
    if len(raw) != (stride + 1) * h:
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride + 1)
    filters = rows[:, 0].tolist()
    if set(filters) - {0, 2}:
        return None
    samples = np.empty((h, stride), np.uint8)
    samples[0] = rows[0, 1:]  # the row above the first is zero: Up is None there
    for y in range(1, h):
        if filters[y] == 2:
            np.add(rows[y, 1:], samples[y - 1], out=samples[y])  # modulo 256, as the filter is
        else:
            samples[y] = rows[y, 1:]
    if bit_depth == 16:
        samples = samples.view(np.uint16)
        if not np.dtype(">u2").isnative:  # PNG's samples are big-endian
            samples.byteswap(inplace=True)
    return samples.reshape(h, w, channels)


DPX_HEADER_BYTES = 1664  # the file and image headers: an image element's samples start at or after them


def decode_dpx(data: bytes) -> np.ndarray | None:
    """The samples of a film scan's DPX frame in a usual layout, as H x W x 3 uint16 RGB: one RGB image
    element, no run-length encoding, rows top to bottom, either byte order, and samples of
    - 10 bits, each pixel filled into a 32-bit word with the padding in its 2 low bits (packing method A),
      each sample v widened to (v << 6) | (v >> 4);
    - 12 bits, each filled into 16 bits with the padding in its 4 low bits (method A), v widened to
      (v << 4) | (v >> 8);
    - 16 bits, as they are.
    These are the samples FFmpeg's decoder and swscale's rgb48 make of them (checked in the tests). None
    for any other DPX, which is then for FFmpeg's reader.

    Through FFmpeg, a 1080p sequence read at 0.61x (10 bits), 0.55x (12) and 0.73x (16) of `ffmpeg -f
    null` (its 10-bit frame took 22-33 ms on one core, and takes 7-9 here). The samples are brought to the
    machine's byte order and cut out with 16-bit ops (half the memory traffic of 32-bit ones)."""
    if len(data) < DPX_HEADER_BYTES or data[:4] not in (b"SDPX", b"XPDS"):
        return None
    order = ">" if data[:4] == b"SDPX" else "<"
    (offset,) = struct.unpack_from(order + "I", data, 4)
    orientation, elements = struct.unpack_from(order + "HH", data, 768)
    width, height = struct.unpack_from(order + "II", data, 772)
    descriptor, bits = data[800], data[803]
    packing, encoding = struct.unpack_from(order + "HH", data, 804)
    (line_padding,) = struct.unpack_from(order + "I", data, 812)
    plain = (orientation, elements, descriptor, encoding) == (0, 1, 50, 0)
    packed = packing == 1 if bits in (10, 12) else bits == 16
    sized = 0 < width <= 1 << 15 and 0 < height <= 1 << 15
    if not (plain and packed and sized) or line_padding not in (0, 0xFFFFFFFF) or offset < DPX_HEADER_BYTES:
        return None
    if bits == 10:
        if len(data) < offset + 4 * width * height:
            return None
        return _dpx_10_bit(np.frombuffer(data, order + "u4", width * height, offset), height, width)
    # 16-bit words, 2 to a 32-bit word: a row of an odd count of samples would end padded
    if 3 * width % 2 or len(data) < offset + 6 * width * height:
        return None
    rgb = np.frombuffer(data, order + "u2", 3 * width * height, offset).astype(np.uint16)  # a native copy
    if bits == 12:
        top = rgb >> 12
        np.bitwise_and(rgb, 0xFFF0, out=rgb)
        np.bitwise_or(rgb, top, out=rgb)
    return rgb.reshape(height, width, 3)


def _dpx_10_bit(words: np.ndarray, height: int, width: int) -> np.ndarray:
    """R, G and B (bits 31-22, 21-12 and 11-2 of each 32-bit word) widened to 16 bits, as `decode_dpx`."""
    if not words.dtype.isnative:
        words = words.astype(np.uint32)
    halves = words.view(np.uint16).reshape(height, width, 2)
    high = 1 if sys.byteorder == "little" else 0
    hi = np.ascontiguousarray(halves[..., high])  # bits 31-16 of each word: R (10) and G's top 6
    lo = np.ascontiguousarray(halves[..., 1 - high])  # bits 15-0: G's low 4, B (10), padding (2)
    r, g, b, t = (np.empty_like(hi) for _ in range(4))
    # R = hi >> 6, widened: (hi & 0xFFC0) | (hi >> 10)
    np.bitwise_and(hi, 0xFFC0, out=r)
    np.right_shift(hi, 10, out=t)
    np.bitwise_or(r, t, out=r)
    # G = (hi & 0x3F) << 4 | lo >> 12, widened: (hi << 10) | ((lo >> 12) << 6) | (hi & 0x3F)
    np.left_shift(hi, 10, out=g)
    np.right_shift(lo, 12, out=t)
    np.left_shift(t, 6, out=t)
    np.bitwise_or(g, t, out=g)
    np.bitwise_and(hi, 0x3F, out=t)
    np.bitwise_or(g, t, out=g)
    # B = (lo >> 2) & 0x3FF, widened: ((lo << 4) & 0xFFC0) | ((lo >> 6) & 0x3F)
    np.left_shift(lo, 4, out=b)
    np.bitwise_and(b, 0xFFC0, out=b)
    np.right_shift(lo, 6, out=t)
    np.bitwise_and(t, 0x3F, out=t)
    np.bitwise_or(b, t, out=b)
    return cv2.merge([r, g, b])  # planes made whole and interleaved once: strided writes cost 1.5x


def read_png_text(path: Path) -> dict[str, str]:
    """The iTXt/tEXt entries of a PNG file before its pixels (where `encode_png` puts them): only the
    chunks before the first IDAT are read, so asking every frame of a long sequence is cheap."""
    out: dict[str, str] = {}
    with open(path, "rb") as f:
        if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise MediaError(f"{path}: not a PNG file")
        while len(head := f.read(8)) == 8:
            (length,) = struct.unpack(">I", head[:4])
            kind = head[4:]
            if kind == b"IDAT":
                break
            if kind not in (b"tEXt", b"iTXt"):
                f.seek(length + 4, os.SEEK_CUR)  # the body and its CRC
                continue
            body = f.read(length)
            f.seek(4, os.SEEK_CUR)
            if kind == b"tEXt":
                k, _, v = body.partition(b"\x00")
                out[k.decode("latin-1")] = v.decode("latin-1")
            else:
                k, _, rest = body.partition(b"\x00")
                # compression flag, method, language tag\0, translated keyword\0, text
                _, _, rest = rest[2:].partition(b"\x00")
                _, _, text = rest.partition(b"\x00")
                out[k.decode("latin-1")] = text.decode("utf-8")
    return out


# EXR's timeCode attribute (SMPTE 12M's 30-frame packing) holds frames 0-29: setting a 50 or 60 fps label's
# frame 30 raised, and the render failed at its first such frame
EXR_TIMECODE_FRAMES = 30


def _exr_header(metadata: dict[str, str]) -> dict:
    """The header's attributes: the metadata as strings, but a `timecode` as EXR's own timeCode attribute
    (which Nuke and OpenImageIO read as the frame's timecode) where it fits one, and a `framesPerSecond`
    ("24000/1001") as its rational attribute."""
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    header.update(metadata)
    m = TIMECODE.match(header.get("timecode", ""))
    if m and int(m.group(5)) < EXR_TIMECODE_FRAMES:  # else it stays a string: a 50 or 60 fps label's frame
        del header["timecode"]
        tc = OpenEXR.TimeCode()
        tc.hours, tc.minutes, tc.seconds, tc.frame = (int(m.group(i)) for i in (1, 2, 3, 5))
        tc.dropFrame = m.group(4) != ":"
        header["timeCode"] = tc
    if rate := header.pop("framesPerSecond", ""):  # EXR's own rational attribute, as Nuke writes it
        header["framesPerSecond"] = Fraction(rate)
    header["colorspace"] = "scene-linear (sRGB primaries)"
    return header


def write_exr(
    path: Path,
    frame: np.ndarray,
    metadata: dict[str, str],
    origin: tuple[int, int] | None = None,
    display: tuple[int, int] | None = None,
    pixel_aspect: float = 1.0,
) -> None:
    """Half-float EXR holding scene-linear values (the display-referred frame through the sRGB curve).

    RGBA frames (straight alpha) are stored premultiplied, as EXR's convention is. With an `origin` (x, y)
    and a `display` size (height, width), the frame is only the file's data window, at that place in its
    display window: what lies outside is empty, as a compositing package reads it (a face element carries
    its face's box, not a plate of zeros). An anamorphic plate's `pixel_aspect` goes in its
    pixelAspectRatio, so the frame is shown unsqueezed as the plate is.
    """
    linear = to_linear(frame[..., :3])
    if frame.shape[-1] == 4:
        alpha = to_float(frame[..., 3])
        cv2.multiply(linear, cv2.merge([alpha, alpha, alpha]), dst=linear)  # premultiplied
        channels = {"RGBA": to_half(cv2.merge([linear, alpha]))}
    else:
        channels = {"RGB": to_half(linear)}
    header = _exr_header(metadata)
    if pixel_aspect != 1:
        header["pixelAspectRatio"] = float(pixel_aspect)
    if origin is not None and display is not None:
        (x, y), (h, w) = origin, frame.shape[:2]
        header["dataWindow"] = ((x, y), (x + w - 1, y + h - 1))
        header["displayWindow"] = ((0, 0), (display[1] - 1, display[0] - 1))
    with OpenEXR.File(header, channels) as f:
        f.write(str(path))


def in_display(frame: np.ndarray, origin: tuple[int, int], display: tuple[int, int]) -> np.ndarray:
    """A frame that covers part of a picture (its top-left pixel at `origin`, x and y) placed in a picture
    of `display` size (height, width), zero elsewhere; what lies outside the picture (an EXR's overscan)
    is left out."""
    out = np.zeros((*display, *frame.shape[2:]), frame.dtype)
    (x, y), (h, w) = origin, frame.shape[:2]
    top, left, bottom, right = max(y, 0), max(x, 0), min(y + h, display[0]), min(x + w, display[1])
    if bottom > top and right > left:
        out[top:bottom, left:right] = frame[top - y : bottom - y, left - x : right - x]
    return out


def read_exr_header(path: Path) -> dict:
    with OpenEXR.File(str(path), header_only=True) as f:
        return dict(f.header())


# scan lines a chunk holds, by OpenEXR compression: none, RLE, ZIPS, ZIP, PIZ, PXR24, B44, B44A, DWAA, DWAB
EXR_CHUNK_LINES = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}
EXR_MAGIC = 20000630
EXR_HEADER_BYTES = 1 << 16  # an EXR whose header is longer is read by FFmpeg's decoder


def decode_exr(path: Path, layer: str = "") -> np.ndarray | None:
    """The R, G, B samples (half or float32, scene-linear as stored) of a single-part EXR, scan-line or tiled
    (one level), whose R, G and B (or the named layer's: beauty.R, beauty.G, beauty.B) are full-size
    samples of one type, read by OpenEXR's own library, as its display window (H x W x 3): its data window
    in place, zero around it, and what lies outside the display window (overscan) left out, as FFmpeg's
    reader places them. None for any other EXR (mipmapped, multi-part, deep, other channels), which is then
    for FFmpeg's reader. Such a file cut short or whose pixels cannot be decoded is refused (MediaError),
    where FFmpeg's reader gave a picture part garbage without a word.

    OpenEXR inflates a 1080p half frame in 16 ms on one core, FFmpeg's EXR decoder in 34 (a 1080p EXR
    sequence read at 0.80x of `ffmpeg -f null`); for DWAA/DWAB files it is also the reference decoder,
    which FFmpeg's does not match: its picture of a DWAA file with a data window (Nuke's bounding box) or in
    tiles was 0.68-0.69 off on average (0-1 scale), a wrong picture without a word. The file's layout is
    checked first (its header, chunk offsets and last chunk, a few kB read), because OpenEXR prints to the
    terminal, not only raises, on a file cut short."""
    try:
        with open(path, "rb") as f:
            layout = _plain_exr_layout(f.read(EXR_HEADER_BYTES), layer)
            if layout is None:
                return None
            whole = _exr_chunks_whole(f, os.fstat(f.fileno()).st_size, layout)
    except OSError:
        return None
    if not whole:
        raise MediaError(f"{path}: cut short or damaged: its chunks of pixels do not all lie inside the file")
    try:
        with OpenEXR.File(str(path), num_threads=1) as f:
            channels = f.channels()
            if layer:  # OpenEXR groups a layer's R, G, B (and A) under its name
                rgb = channels[layer].pixels[..., :3]
            else:
                rgb = channels["RGB"].pixels if "RGB" in channels else channels["RGBA"].pixels[..., :3]
    except KeyError:
        return None
    except (RuntimeError, ValueError):
        raise MediaError(f"{path}: damaged: OpenEXR cannot decode its pixels") from None
    if layout.window == layout.display:
        return rgb
    (x0, y0, _, _), (dx0, dy0, dx1, dy1) = layout.window, layout.display
    return in_display(rgb, (x0 - dx0, y0 - dy0), (dy1 - dy0 + 1, dx1 - dx0 + 1))


@dataclass(frozen=True)
class ExrLayout:
    """Where the pixels of an EXR that `decode_exr` reads lie: its table of chunk offsets, and its chunks."""

    offsets: int  # where the table of chunk offsets starts
    window: tuple[int, int, int, int]  # data window, x0, y0, x1, y1 inclusive
    display: tuple[int, int, int, int]  # display window
    lines: int  # scan-line files: lines a chunk holds; tiled: 0
    tiles: tuple[int, int] = (0, 0)  # tiled files: tiles across and down

    @property
    def chunks(self) -> int:
        if self.lines:
            return -(-(self.window[3] - self.window[1] + 1) // self.lines)
        return self.tiles[0] * self.tiles[1]


def _plain_exr_layout(data: bytes, layer: str = "") -> ExrLayout | None:
    """For a single-part EXR, scan-line or tiled in one level, with full-size R, G and B channels (the
    named layer's, with one) of one type (half or float): where its chunks are. None for anything else."""
    # the version's flags (bits 9, 11, 12 of its 4 bytes): tiled, deep, multi-part
    if len(data) < 8 or struct.unpack("<i", data[:4])[0] != EXR_MAGIC or data[5] & 0x18:
        return None
    tiled = bool(data[5] & 0x02)
    attributes, pos = {}, 8
    while (end := data.find(b"\x00", pos)) > pos:  # name, type, size, value; an empty name ends them
        type_end = data.find(b"\x00", end + 1)
        if type_end < 0 or type_end + 5 > len(data):
            return None
        (size,) = struct.unpack("<i", data[type_end + 1 : type_end + 5])
        attributes[data[pos:end]] = data[type_end + 5 : type_end + 5 + size]
        pos = type_end + 5 + size
    if end != pos:
        return None
    try:
        window = struct.unpack("<4i", attributes[b"dataWindow"])
        display = struct.unpack("<4i", attributes[b"displayWindow"])
        lines = EXR_CHUNK_LINES[attributes[b"compression"][0]]
        channels = _exr_channels(attributes[b"channels"])
        tile_w, tile_h, mode = struct.unpack("<IIB", attributes[b"tiles"]) if tiled else (1, 1, 0)
    except (KeyError, IndexError, ValueError, struct.error):
        return None
    prefix = f"{layer}.".encode() if layer else b""
    rgb = {channels.get(prefix + c) for c in (b"R", b"G", b"B")}
    (x0, y0, x1, y1), (dx0, dy0, dx1, dy1) = window, display
    if x1 < x0 or y1 < y0 or dx1 < dx0 or dy1 < dy0 or rgb not in ({(1, 1, 1)}, {(2, 1, 1)}):
        return None
    if not tiled:
        return ExrLayout(pos + 1, window, display, lines)
    if mode & 0x0F or not (tile_w and tile_h):  # mipmapped or ripmapped: levels FFmpeg's reader also reads
        return None
    tiles = (-(-(x1 - x0 + 1) // tile_w), -(-(y1 - y0 + 1) // tile_h))
    return ExrLayout(pos + 1, window, display, 0, tiles)


def _exr_chunks_whole(f: BinaryIO, size: int, layout: ExrLayout) -> bool:
    """Whether an EXR's chunk offsets all point inside the file, past the offset table, and the last chunk
    (where a file cut short is cut) holds pixels of the image and ends inside the file."""
    chunks = layout.chunks
    f.seek(layout.offsets)
    table = f.read(8 * chunks)
    if len(table) != 8 * chunks:
        return False
    starts = struct.unpack(f"<{chunks}Q", table)
    head = 8 if layout.lines else 20  # a chunk's y (or tile x, y, level x, y) and its size
    if min(starts) < layout.offsets + 8 * chunks or max(starts) + head > size:
        return False
    f.seek(max(starts))
    *where, length = struct.unpack(f"<{head // 4}i", f.read(head))
    if layout.lines:
        y0, y1 = layout.window[1], layout.window[3]
        inside = not (where[0] - y0) % layout.lines and y0 <= where[0] <= y1
    else:
        inside = 0 <= where[0] < layout.tiles[0] and 0 <= where[1] < layout.tiles[1] and where[2:] == [0, 0]
    return inside and 0 <= length and max(starts) + head + length <= size


def _exr_channels(chlist: bytes) -> dict[bytes, tuple[int, int, int]]:
    """An EXR channel list: each name's (pixel type: 0 uint, 1 half, 2 float; x and y sampling)."""
    out, pos = {}, 0
    while (end := chlist.index(b"\x00", pos)) > pos:
        kind, _, xs, ys = struct.unpack("<iI2i", chlist[end + 1 : end + 17])
        out[chlist[pos:end]] = (kind, xs, ys)
        pos = end + 17
    return out


def read_frame_metadata(path: Path) -> dict[str, str]:
    """The metadata `write_frame` gave a frame (PNG text or EXR header strings), without its pixels."""
    if Path(path).suffix.lower() == ".exr":
        return {k: v for k, v in read_exr_header(path).items() if isinstance(v, str)}
    return read_png_text(path)


def write_frame(
    path: Path,
    frame: np.ndarray,
    fmt: str,
    metadata: dict[str, str],
    origin: tuple[int, int] | None = None,
    display: tuple[int, int] | None = None,
    pixel_aspect: float = 1.0,
) -> None:
    """Write one frame atomically: a hidden temporary file in the same folder, then a rename.

    A reader (or a resumed render) never sees a half-written frame under the final name. With an `origin`
    and a `display` size, the frame is part of a bigger picture (see write_exr): an EXR holds just that
    part as its data window; a PNG, which cannot, holds the whole picture, zero elsewhere. An EXR carries
    a `pixel_aspect` other than 1 (an anamorphic plate's); a PNG does not (see probe.ASPECT_FORMATS).
    """
    tmp = temporary_path(path, keep_suffix=False)  # the writers below take the format, not the suffix
    try:
        if fmt == "exr":
            write_exr(tmp, frame, metadata, origin, display, pixel_aspect)
        elif fmt in ("png8", "png16"):
            tmp.write_bytes(encode_png(frame, 16 if fmt == "png16" else 8, metadata, origin, display))
        else:
            raise ValueError(f"unknown sequence format {fmt!r}")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"{path}: cannot write frame: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
