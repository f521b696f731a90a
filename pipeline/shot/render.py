"""One render of a shot, step by step, free of Prefect: the plan, each stage's shot-level work, the frame
chunks, the stages' report sections and contact sheets, and the report.

`flows.render_shot` runs these steps, with each stage's work and each chunk of frames as Prefect tasks
(`render_chunk` is one chunk's work, callable without Prefect).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.faces.track import FaceTrack
from pipeline.manifest import Shot
from pipeline.shot.composite import COMPOSITE, write_element
from pipeline.shot.frames import ChunkResult, render_frames
from pipeline.shot.movies import MovieResult, sequence_frames
from pipeline.shot.report import StageClock, output_metadata, write_report
from pipeline.shot.review import ReviewTiles
from pipeline.shot.stage import Rendered, Stage, StageOutput
from pipeline.shot.stages import active_stages, clear_cache, face_links, plan, stage_keys, stage_record
from pipeline.shot.synthetic import frame_metadata, sequence_metadata
from pipeline.workspace import RenderVersion


def render_chunk(
    shot: Shot, version: RenderVersion, files: dict[str, str], first: int, last: int
) -> ChunkResult:
    """Frames first..last through the per-frame chain and the composite, with their review tiles. The
    chunk opens the plate and the stages' files (track, swap cache, path keys) itself, so it can run
    anywhere."""
    track = FaceTrack.load(Path(files["track"])) if "track" in files else None
    metadata = output_metadata(shot, version)
    work = COMPOSITE.frame_work(shot, track, face_links(shot, files), files)
    return render_frames(
        shot,
        version,
        first,
        last,
        metadata,
        work,
        ReviewTiles(shot, version, track, active_stages(shot)),
        lambda n, element, meta: write_element(version, shot, n, element, meta),
    )


def place(sections: dict, at: Sequence[str], section: dict) -> None:
    """Merge a stage's report section at its place: a stage may add to an earlier stage's section (the
    swap's identity figures go into the faces section)."""
    *parents, last = at
    for name in parents:
        sections = sections.setdefault(name, {})
    sections[last] = {**(sections.get(last) or {}), **section}


class ShotRender:
    """The state of one render between its steps: stage keys, what each stage handed on, the timings."""

    def __init__(self, shot: Shot, root: Path, log: Callable[[str], None] = print):
        self.shot, self.root, self.log = shot, root, log
        self.clock = StageClock()
        self.stages = active_stages(shot)
        self.keys = stage_keys(shot)
        self.outputs: dict[str, StageOutput] = {}
        self.sections: dict = {}
        self.planned: list[tuple[str, bool, str]] = []
        self.version: RenderVersion | None = None
        self.metadata: dict[str, str] = {}

    def plan(self, force: str | None = None) -> list[tuple[str, bool, str]]:
        """Clear the caches `--force` names, then say which stages run and why."""
        with self.clock("plan"):
            if force:
                for removed in clear_cache(self.shot, self.root, force):
                    self.log(f"{self.shot.name}: --force {force}: removed {removed}")
            self.planned = plan(self.shot, self.root, force)
        for name, runs, why in self.planned:
            self.log(f"{self.shot.name}: {name}: {'runs' if runs else 'from the cache'} ({why})")
        return self.planned

    def open(self, version: RenderVersion, alters_faces: bool = True) -> None:
        """Start on the version. alters_faces=False: a run none of whose outputs alter a face (`vfx
        track`), whose metadata says so even when the shot's stages would alter faces."""
        self.version = version
        self.metadata = frame_metadata(output_metadata(self.shot, version), alters_faces)
        shot = self.shot
        self.log(f"{shot.name} {version.label}: frames {shot.first}-{shot.last} -> {version.path}")

    @property
    def shot_stages(self) -> list[Stage]:
        """The stages with work before the frames, in order."""
        return [s for s in self.stages if s.has_shot_work]

    @property
    def files(self) -> dict[str, str]:
        """What the stages so far handed on, by name: for the stages after them and the frame chunks."""
        return {name: path for out in self.outputs.values() for name, path in out.files.items()}

    def run_stage(self, stage: Stage, work: Callable[[Stage], StageOutput]) -> StageOutput:
        """One stage's shot-level work, timed (`work` runs it: flows.run_stage, as Prefect tasks); its output
        is kept for the stages after it and the chunks."""
        with self.clock(stage.name):
            out = work(stage)
        if out.report is not None:
            out.report["seconds"] = self.clock.seconds[stage.name]
        self.outputs[stage.name] = out
        return out

    def review(self, chunks: Sequence[ChunkResult]) -> None:
        """Each stage's report section and contact sheet, once the frames are written. From here on the
        render's metadata (contact sheets, movies, report) says synthetic imagery only if a frame does."""
        assert self.version is not None
        self.metadata = sequence_metadata(self.metadata, sequence_frames(self.shot, self.version))
        files = self.files
        rendered = Rendered(
            self.shot,
            self.version,
            self.metadata,
            files,
            self.outputs,
            list(chunks),
            self.log,
            chain=lambda: face_links(self.shot, files),
        )
        for stage in self.stages:
            section = stage.report(rendered)
            if section is not None:
                place(self.sections, stage.report_at, section)

    def write_report(self, chunks: Sequence[ChunkResult], movies: Sequence[MovieResult]) -> dict:
        assert self.version is not None
        faces = self.sections.get("faces") or {}
        # a stage that ran: one with shot-level work, or a per-frame one whose manifest section is there
        ran = [s.label for s in self.stages if s.has_shot_work or s.section(self.shot) is not None]
        return write_report(
            self.shot,
            self.version,
            chunks,
            movies,
            self.metadata,
            self.clock.timings(chunks, faces.get("chunks", [])),
            sections=self.sections,
            stages=["decode", *ran, "write", "encode"],
            record=stage_record(self.shot, self.planned),
        )
