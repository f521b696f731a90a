"""How long the bookkeeping commands take: `vfx status`, `vfx validate` and `vfx render --dry-run` read
manifests, model headers and stage records only, and import neither torch nor Prefect (issue 18: under
1.5 s for `vfx status shots/` on a quiet machine, where importing torch alone takes 2-7 s).

Each command runs in a fresh interpreter, as a user runs it, `--repeat` times, alternating with the
reference: a bare interpreter that imports torch (what every one of them paid before). The table gives
the median wall time of each and its ratio to the reference.

    .venv/bin/python bench/status.py              # shots/ of this checkout, 7 rounds
    .venv/bin/python bench/status.py --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import print_table

REPO = Path(__file__).resolve().parent.parent


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    vfx = [sys.executable, "-m", "pipeline"]
    root = tempfile.mkdtemp(prefix="vfx-status-bench-")
    commands = {
        "reference: python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "vfx status shots/": [*vfx, "status", "shots/", "--root", root],
        "vfx validate shots/": [*vfx, "validate", "shots/"],
        "vfx render shots/demo.yaml --dry-run": [
            *vfx,
            "render",
            "shots/demo.yaml",
            "--dry-run",
            "--root",
            root,
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, cmd in commands.items():
            times[name].append(wall(cmd))
    ref = statistics.median(next(iter(times.values())))
    rows = []
    for name, t in times.items():
        m = statistics.median(t)
        rows.append([name, f"{m:.2f} s", f"{min(t):.2f}-{max(t):.2f} s", f"{m / ref:.2f}x"])
    print_table(["command", "median", "range", "vs importing torch"], rows)


if __name__ == "__main__":
    main()
