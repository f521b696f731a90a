"""What the benches share: the results table, and plates made from the footage."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.media.encode import ffmpeg_executable
from pipeline.processes import run

# how the benches encode the bigger plates they make from the footage
MADE_CODEC = ("-c:v", "libx264", "-preset", "medium", "-crf", "18", "-g", "30", "-pix_fmt", "yuv420p")
# the footage's 512 px square picture scaled to the plate's height and centred (black bars left and right)
PLATE_FILTERS = {
    "1080p": "scale=1080:1080,pad=1920:1080:420:0",
    "uhd": "scale=2160:2160,pad=3840:2160:840:0",
}


def make_clip(clip: Path, n: int, vf: str, out: Path, codec: tuple[str, ...] = MADE_CODEC) -> Path:
    """The clip's first n frames through the filter `vf` (looped when it has fewer), with the pipeline's
    ffmpeg."""
    cmd = [ffmpeg_executable(), "-y", "-v", "error", "-stream_loop", "-1", "-i", str(clip)]
    cmd += ["-frames:v", str(n), "-vf", vf, *codec, "-an", str(out)]
    proc = run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"making a clip failed: {' '.join(cmd)}\n{proc.stderr.strip()}")
    return out


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds so far: the whole machine's busy time and the hypervisor's steal (/proc/stat), and this
    process's own with the children it has waited for (getrusage)."""

    busy: float  # user, nice, system, irq and softirq over every CPU
    steal: float  # time a virtual machine's CPUs waited while the host ran something else
    own: float
    wall: float


def cpu_times(stat: Path = Path("/proc/stat")) -> CpuTimes | None:
    """The counters now; None where the system has no /proc/stat."""
    try:
        first = stat.read_text(encoding="ascii").splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if len(first) < 9 or first[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    own = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    return CpuTimes((user + nice + system + irq + softirq) / tick, steal / tick, own, time.perf_counter())


def other_work(start: CpuTimes | None, end: CpuTimes | None, cpus: int | None = None) -> str:
    """What else ran on the machine between two readings, in words: the CPU time of every other process,
    as a share of what the machine's CPUs had, and the steal. A load average counts the bench's own
    threads (a 2-core machine running only a bench with two compositing threads and a decoder reads
    about 3), so it cannot say whether a machine was quiet; this can."""
    if start is None or end is None:
        return "other work on the machine: not measured (no /proc/stat)"
    capacity = (end.wall - start.wall) * (cpus or os.cpu_count() or 1)
    if capacity <= 0:
        return "other work on the machine: not measured (no time passed)"
    others = max(0.0, (end.busy - start.busy) - (end.own - start.own))
    return (
        f"other processes used {others / capacity:.1%} of the machine's CPU time during the run, "
        f"steal {(end.steal - start.steal) / capacity:.1%} (a quiet machine: a few percent of each)"
    )


def print_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> None:
    """A markdown table, ready to paste into a note."""
    table = [tuple(header)] + [tuple(c) for c in cells]
    widths = [max(len(c[i]) for c in table) for i in range(len(header))]
    for i, c in enumerate(table):
        print("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)) + " |")
        if i == 0:
            print("| " + " | ".join("-" * w for w in widths) + " |")


def detect_against_truth(analyzer, image: np.ndarray, landmarks: np.ndarray, matrix: np.ndarray) -> tuple:
    """For the detection benches: the faces `analyzer` (a FaceAnalyzer) finds on `image`, the true 68
    points there (`landmarks` of the untouched frame carried by the 2x3 `matrix` that made `image`), their
    eye distance, and the seconds the detection took."""
    want = landmarks @ matrix[:, :2].T + matrix[:, 2]
    eyes = float(np.linalg.norm(want[36:42].mean(0) - want[42:48].mean(0)))
    t = time.perf_counter()
    faces = analyzer.detect(image)
    return faces, want, eyes, time.perf_counter() - t
