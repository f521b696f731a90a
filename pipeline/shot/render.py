"""One render of a shot, step by step, free of Prefect: the plan, each stage's shot-level work, the frame
chunks, the stages' report sections and contact sheets, and the report.

`flows.render_shot` runs these steps, with each stage's work and each chunk of frames as Prefect tasks
(`render_chunk` is one chunk's work, callable without Prefect).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.faces.track import FaceTrack
from pipeline.manifest import Shot
from pipeline.media.sequences import read_frame_metadata
from pipeline.shot.composite import COMPOSITE, write_element
from pipeline.shot.frames import ChunkResult, render_frames
from pipeline.shot.keys import parse_sections, settings_sections
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
    review = ReviewTiles(shot, version, track, active_stages(shot))
    return render_frames(
        shot,
        version,
        first,
        last,
        metadata,
        work,
        review,
        lambda n, element, meta: write_element(version, shot, n, element, meta),
        review.plate_frames,
    )


def _spans(numbers: list[int]) -> str:
    """1001-1012, 1020 for a sorted list of frame numbers."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in spans)


def _differing(now: dict[str, str], then: dict[str, str]) -> str:
    names = [k for k in sorted(set(now) | set(then)) if now.get(k) != then.get(k)]
    return ", ".join(names) or "settings"


def resume_problem(shot: Shot, version: RenderVersion) -> str | None:
    """Why this shot cannot finish `version` (None when it can). A version holds frames of one manifest
    and one frame range: its record says which, and so does every frame and element it holds, so a
    version whose record is lost is still checked, frame by frame."""
    frames = output_metadata(shot, version)["render_frames"]
    now = settings_sections(shot)
    state = version.read_state()
    if (then := state.get("frames")) not in (None, [shot.first, shot.last]):
        said = "-".join(map(str, then)) if isinstance(then, list) else str(then)
        return f"{version.path} was started for frames {said}, not {shot.first}-{shot.last}"
    if state.get("settings_hash") not in (None, shot.settings_hash):
        changed = _differing(now, state.get("settings_sections") or {})
        return f"{version.path} was started from other settings ({changed} differ)"
    other: dict[int, str] = {}
    for folder in (version.comp_dir, version.path / "element"):
        for frame_file in sorted(folder.glob(f"*.{'[0-9]' * 4}*.*")) if folder.is_dir() else []:
            if frame_file.name.startswith("."):
                continue
            try:
                meta = read_frame_metadata(frame_file)
            except (OSError, ValueError, PipelineError):
                meta = {}
            if meta.get("settings_hash") == shot.settings_hash and meta.get("render_frames") == frames:
                continue
            try:
                number = int(frame_file.name.split(".")[-2])
            except ValueError:  # not a frame of the sequence
                continue
            if "settings_hash" not in meta:
                other[number] = "no record of their settings"
            elif meta.get("render_frames") != frames:
                other[number] = f"rendered for frames {meta.get('render_frames')}"
            else:
                other[number] = f"{_differing(now, parse_sections(meta.get('settings_sections', '')))} differ"
    if other:
        why = "; ".join(sorted(set(other.values())))
        return f"{version.path}: frames {_spans(sorted(other))} were rendered from other settings ({why})"
    return None


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
