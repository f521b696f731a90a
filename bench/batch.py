"""Batch overhead: how much of a batch's wall time goes to Prefect, caching and bookkeeping rather than to
the stages themselves.

A batch of small shots is rendered twice over, in the same run, with a real Prefect server already up:
`vfx batch` (the render-batch flow: shots two at a time, the chunks of each in a thread pool, stage keys,
caches, version folders, run records, contact sheets, artifacts), and the same stage work called
directly with the same concurrency and no Prefect, caches or records (the reference). The overhead is
the share of the batch's wall time that the reference does not need: 1 - reference / batch. The runs
alternate (reference first, then batch first) so that a drift in the machine's load hits both.

The shots are 24-frame windows of the anonymous woman's clip with a face swap (a swap model after one
training step: its speed does not depend on its training), or, without ../shared/footage, the
astronaut still with a camera move and a test alteration.

    .venv/bin/python bench/batch.py                 # 20 shots of 24 frames, 2 rounds
    .venv/bin/python bench/batch.py --shots 4 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import print_table  # noqa: E402

from pipeline.config import RunnerSettings  # noqa: E402
from pipeline.flows import SHOTS_AT_ONCE, WORKERS, local_server, run_batch  # noqa: E402
from pipeline.manifest import load_shot  # noqa: E402
from pipeline.media.sequences import extension  # noqa: E402
from pipeline.shot.composite import Compositor, composite_spec, write_element  # noqa: E402
from pipeline.shot.frames import chunk_ranges, render_frames  # noqa: E402
from pipeline.shot.movies import encode_movies  # noqa: E402
from pipeline.shot.report import output_metadata  # noqa: E402
from pipeline.shot.stages import face_links  # noqa: E402
from pipeline.shot.swap import identity_references, load_identity_references  # noqa: E402
from pipeline.shot.track import detect_range, finish_track  # noqa: E402
from pipeline.workspace import new_version  # noqa: E402

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"


def swap_model(folder: Path) -> tuple[Path, Path, Path]:
    """Crops of the two anonymous people and a swap model after one training step."""
    from pipeline.faces.extract import extract_faces
    from pipeline.swap.train import TrainSettings, train

    crops = {}
    for who, clip in (("a", "woman_headturns_512.mp4"), ("b", "man_glasses_720x1280.mp4")):
        crops[who] = folder / f"crops_{who}"
        for _ in extract_faces(str(FOOTAGE / clip), crops[who], size=64, every=40):
            pass
    model = folder / "model"
    train(crops["a"], crops["b"], model, TrainSettings(preset="64", batch=2, preview_every=1000), steps=1)
    return model, crops["a"], crops["b"]


def write_shots(folder: Path, count: int, frames: int, prefix: str = "sh") -> Path:
    shots = folder / f"shots_{prefix}"
    shots.mkdir(parents=True)
    if FOOTAGE.is_dir():
        model, crops_a, crops_b = (
            (folder / "model", folder / "crops_a", folder / "crops_b")
            if (folder / "model").is_dir()
            else swap_model(folder)
        )
        clip_frames = 354
        step = max(1, (clip_frames - frames) // max(1, count - 1))
        for i in range(count):
            first = 1001 + min(i * step, clip_frames - frames)
            (shots / f"{prefix}{i:03d}.yaml").write_text(
                f"""shot: {prefix}{i:03d}
plate: {{movie: {FOOTAGE / "woman_headturns_512.mp4"}}}
frames: {first}-{first + frames - 1}
output: {{sequence: png8, movies: [h264_review], chunk_size: 12}}
faces: {{crop_size: 64}}
composite: {{color: rct, blend: laplacian}}
swap: {{model: {model}, direction: a_to_b, batch: 16, reference_a: {crops_a}, reference_b: {crops_b}}}
""",
                encoding="utf-8",
            )
    else:
        for i in range(count):
            zoom = 1.0 + 0.01 * i
            (shots / f"{prefix}{i:03d}.yaml").write_text(
                f"""shot: {prefix}{i:03d}
plate: {{still: builtin:astronaut, hold: {frames}, move: {{zoom: [1.0, {zoom:.2f}], pan: [[0, 0], [-8, 5]]}}}}
output: {{sequence: png8, movies: [h264_review], chunk_size: 12}}
faces: {{crop_size: 128, upsample: 1}}
composite: {{alteration: recolor, blend: laplacian}}
""",
                encoding="utf-8",
            )
    return shots


def render_plainly(manifest: Path, root: Path) -> int:
    """The stage work of one shot as render-shot does it, called directly: detection by chunk, the
    track, the new faces and the composite by chunk, the movies. No Prefect, stage keys, caches, run
    record or contact sheets. Returns the frames written."""
    shot = load_shot(str(manifest))
    version = new_version(root, shot.name, extension(shot.spec.output.sequence))
    metadata = output_metadata(shot, version)
    ranges = chunk_ranges(shot.first, shot.last, shot.spec.output.chunk_size)
    with ThreadPoolExecutor(WORKERS) as pool:
        found = list(pool.map(lambda r: detect_range(shot, *r), ranges))
        track = finish_track(shot, [f for c in found for f in c.faces], version.path / "track.npz")
        refs_file = identity_references(shot, version.path / "identity_refs.npz")
        refs = load_identity_references(str(refs_file) if refs_file else None)

        def chunk(r: tuple[int, int]):
            compositor = Compositor(shot, track, face_links(shot, {}), refs) if composite_spec(shot) else None
            return render_frames(
                shot,
                version,
                r[0],
                r[1],
                metadata,
                compositor,
                write_element=lambda n, element, meta: write_element(version, shot, n, element, meta),
            )

        written = sum(c.written for c in pool.map(chunk, ranges))
    encode_movies(shot, version, metadata)
    return written


def reference_batch(shots: Path, root: Path) -> tuple[float, int]:
    t = time.perf_counter()
    manifests = sorted(shots.glob("*.yaml"))
    with ThreadPoolExecutor(SHOTS_AT_ONCE) as pool:
        written = sum(pool.map(lambda m: render_plainly(m, root), manifests))
    return time.perf_counter() - t, written


def prefect_batch(shots: Path, root: Path) -> tuple[float, int, list[dict]]:
    t = time.perf_counter()
    outcomes = run_batch(str(shots), root=str(root), runner=RunnerSettings("threads", WORKERS))
    seconds = time.perf_counter() - t
    bad = [o for o in outcomes if o["status"] != "done"]
    if bad:
        raise SystemExit(f"the batch failed: {bad}")
    reports = [json.loads((Path(o["path"]) / "report.json").read_text()) for o in outcomes]
    return seconds, sum(r["frames_written"] for r in reports), reports


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shots", type=int, default=20)
    parser.add_argument("--frames", type=int, default=24, help="frames per shot")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (reference and batch)")
    args = parser.parse_args()

    os.environ["PREFECT_API_LOG_RETRYABLE_ERRORS"] = "true"  # the server logs the requests it refuses
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        with local_server(work / "prefect-home"):
            print(f"Prefect server up in {time.perf_counter() - t:.1f} s (not counted)", flush=True)
            shots = write_shots(work, args.shots, args.frames)
            warm = write_shots(work, 2, 12, prefix="warm")
            reference_batch(warm, work / "warm_ref")  # imports, models and the first flow run: not counted
            prefect_batch(warm, work / "warm_prefect")
            rows, overheads, reports = [], [], []
            for r in range(args.rounds):
                order = ("reference", "batch") if r % 2 == 0 else ("batch", "reference")
                times = {}
                for kind in order:
                    print(f"round {r + 1}: {kind} of {args.shots} shots...", flush=True)
                    if kind == "reference":
                        times[kind], ref_frames = reference_batch(shots, work / f"ref{r}")
                    else:
                        times[kind], batch_frames, reports = prefect_batch(shots, work / f"batch{r}")
                if ref_frames != batch_frames or ref_frames != args.shots * args.frames:
                    raise SystemExit(f"frames written differ: reference {ref_frames}, batch {batch_frames}")
                overhead = 1 - times["reference"] / times["batch"]
                overheads.append(overhead)
                rows.append(
                    (
                        f"{r + 1} ({order[0]} first)",
                        f"{times['reference']:.1f}",
                        f"{times['batch']:.1f}",
                        f"{100 * overhead:.1f}%",
                    )
                )
        locked = (work / "prefect-home" / "server.log").read_text().count("Encountered retryable exception")

    print(
        f"\n{args.shots} shots of {args.frames} frames, {SHOTS_AT_ONCE} shots at once, "
        f"{WORKERS} chunk workers each"
    )
    print_table(("round", "reference s", "vfx batch s", "overhead"), rows)
    print(
        f"\nmean overhead {100 * statistics.mean(overheads):.1f}% of the batch's wall time (bar: under 10%)"
    )
    print(
        f"the server refused {locked} requests in all as busy ('database is locked': SQLite); the client "
        "retries each after about 2 s"
    )
    # where a shot's time went, from the last batch's run records (wall seconds summed over shots)
    steps: dict[str, float] = {}
    for report in reports:
        for k, v in report["timings"].items():
            if k.endswith("_s") and k != "total_s" and isinstance(v, float):
                steps[k[:-2]] = steps.get(k[:-2], 0.0) + v
    total = sum(r["timings"]["total_s"] for r in reports)
    print("\nrender-shot steps, wall seconds summed over the last batch's shots:")
    print_table(
        ("step", "seconds", "share"),
        [(k, f"{v:.1f}", f"{100 * v / total:.1f}%") for k, v in sorted(steps.items(), key=lambda kv: -kv[1])],
    )


if __name__ == "__main__":
    main()
