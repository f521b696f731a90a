"""What a farm sees in the Prefect UI: a small batch rendered against a real Prefect server, and screenshots
of the UI's pages taken with a headless Chromium (Debian's `chromium` package: `apt-get install chromium`).

A Prefect server starts on a free port of 127.0.0.1 with its own home (flows.local_server); `vfx batch`
renders two short copies of the demo shot (and one shot whose plate is missing) against it; then Chromium
saves, for a look by eye (the UI's second version, the server's default; v1_*: its first version, which
the links in Prefect's log open):

    runs.png               the list of runs: the batch, and the shots by shot and version
    batch.png              the batch's run page, Subflow Runs tab: its shots
    shot_logs.png          a shot's run page, Logs tab: the shot's own log lines
    shot_tasks.png         its Task Runs tab: chunks named by frame range
    shot_artifacts.png     its Artifacts tab: the report artifact on the shot's own run
    report.png             the report artifact: folder, figures and contact sheets
    chunk.png              a chunk's task run page: its log line
    chunk_inputs.png       its Task Inputs tab: the stage task runs it waited for
    failed_shot.png        the run of the shot that failed, with its error
    v1_runs.png  v1_shot.png  v1_report.png

    .venv/bin/python bench/ui_screenshots.py --out /tmp/ui-shots [--frames 12]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.flows import local_server, run_batch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def write_shots(folder: Path, frames: int) -> Path:
    """Two short copies of the README's demo shot (one chunk of 6 frames after another), and a shot whose
    plate is missing: a batch goes on past it."""
    shots = folder / "shots"
    shots.mkdir(parents=True)
    demo = (REPO / "shots" / "demo.yaml").read_text(encoding="utf-8")
    for name in ("sh010", "sh020"):
        text = demo.replace("shot: demo", f"shot: {name}\nframes: 1001-{1000 + frames}")
        text = text.replace("movies: [h264_review, prores422hq]", "movies: [h264_review]")
        (shots / f"{name}.yaml").write_text(text.replace("chunk_size: 12", "chunk_size: 6"), encoding="utf-8")
    (shots / "sh015.yaml").write_text("shot: sh015\nplate: {movie: missing.mov}\n", encoding="utf-8")
    return shots


def screenshot(chromium: str, url: str, out: Path, profile: Path, height: int = 1000) -> None:
    """One page as Chromium renders it after 15 s of (virtual) time: the UI is a single-page app that
    fetches from the API after loading."""
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size=1400,{height}",
        "--virtual-time-budget=15000",
        f"--screenshot={out}",
        url,
    ]
    subprocess.run(cmd, check=True, timeout=180, capture_output=True)
    print(f"{out.name}: {url}", flush=True)


def pages(api: str) -> dict[str, str]:
    """The UI's addresses of the runs, a shot's run page and tabs, its report artifact and a chunk."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

    ui = api.removesuffix("/api")
    with get_client(sync_client=True) as client:
        batch = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["render-batch"])))[0]
        shots = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["render-shot"])))
        done = sorted((r for r in shots if r.state and r.state.is_completed()), key=lambda r: r.name)
        failed = [r for r in shots if r.state and r.state.is_failed()]
        shot = done[0]
        artifact = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[shot.id]))
        )
        report = next(a for a in artifact if a.type == "markdown")
        # the server records task runs from their events a moment after they end: wait for the chunks
        for _ in range(60):
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[shot.id])),
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[shot.id])),
            )
            chunk = next((t for t in tasks if t.name.startswith("chunk ")), None)
            if chunk is not None:
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"no chunk task run of {shot.name} recorded in 30 s")
    print(f"batch run {batch.name!r}; shot runs {[r.name for r in shots]}; chunk {chunk.name!r}")
    # The server's root opens the UI's second version (/v2, the default for a new browser); the links in
    # Prefect's log ("View at .../runs/flow-run/<id>") open the first. Both are shown.
    v2 = f"{ui}/v2"
    out = {
        "runs": f"{v2}/runs",
        "batch": f"{v2}/runs/flow-run/{batch.id}?tab=SubflowRuns",
        "shot_logs": f"{v2}/runs/flow-run/{shot.id}?tab=Logs",
        "shot_tasks": f"{v2}/runs/flow-run/{shot.id}?tab=TaskRuns",
        "shot_artifacts": f"{v2}/runs/flow-run/{shot.id}?tab=Artifacts",
        "report": f"{v2}/artifacts/artifact/{report.id}",
        "chunk": f"{v2}/runs/task-run/{chunk.id}?tab=Logs",
        "chunk_inputs": f"{v2}/runs/task-run/{chunk.id}?tab=TaskInputs",
        "v1_runs": f"{ui}/runs",
        "v1_shot": f"{ui}/runs/flow-run/{shot.id}",
        "v1_report": f"{ui}/artifacts/artifact/{report.id}",
    }
    if failed:
        out["failed_shot"] = f"{v2}/runs/flow-run/{failed[0].id}?tab=Logs"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the screenshots")
    parser.add_argument("--frames", type=int, default=12, help="frames per shot")
    parser.add_argument("--keep", action="store_true", help="keep the server up until Enter is pressed")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        work = Path(tmp)
        shots = write_shots(work, args.frames)
        t = time.perf_counter()
        with local_server(work / "prefect-home") as env:
            print(f"Prefect server up in {time.perf_counter() - t:.1f} s", flush=True)
            outcomes = run_batch(str(shots), root=str(work / "render"))
            print("\n".join(f"{o['manifest']}: {o['status']}" for o in outcomes), flush=True)
            for name, url in pages(env["PREFECT_API_URL"]).items():
                height = 2600 if "report" in name else 1000  # the whole report, its contact sheets too
                screenshot(chromium, url, args.out / f"{name}.png", work / "chromium", height)
            if args.keep:
                input(f"the UI is at {env['PREFECT_API_URL'].removesuffix('/api')}; Enter stops it ")
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
