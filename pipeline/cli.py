"""The `vfx` command line. Prefect is imported only by the commands that run flows."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pipeline import __version__
from pipeline.errors import PipelineError
from pipeline.processes import tune_malloc

if TYPE_CHECKING:
    import numpy as np

    from pipeline.manifest import Shot
    from pipeline.progress import Progress


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (`vfx render: error: ...`), like every other error of vfx:
    the usage it prints above them is a second line that a script reading stderr takes for a second
    error. Subcommands' parsers are made of the same class (argparse uses the parent's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from low to high. Zero or a negative count would divide by zero
    or loop for ever far from the command line; a huge one would fill memory."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"{n} is out of range: give {low} to {high}")
        return n

    return parse


def number(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number from low (excluded with low_open) to high; float() alone takes
    nan and inf."""

    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(x) or x < low or (low_open and x == low) or x > high:
            above = f"more than {low:g}" if low_open else f"{low:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {above} to {high:g}")
        return x

    return parse


def loss_weights(text: str) -> dict[str, float]:
    """An argparse type: NAME=NUMBER[,NAME=NUMBER...] (which names are losses is the trainer's check)."""
    weights = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"{part!r} is not NAME=NUMBER (like identity=0.5)")
        weights[name.strip()] = number(0, 1e6)(value.strip())
    return weights


def name_list(text: str) -> list[str]:
    """An argparse type: NAME[,NAME...], none empty."""
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty name; give names separated by commas")
    return names


MAX_STEPS = 10_000_000  # training steps
MAX_PROJECT_STEPS = 100_000  # as the manifest's project.steps
MAX_BATCH = 1024
MAX_MINUTES = 7 * 24 * 60  # a week
MAX_FACES = 1_000_000


def manifest_files(target: Path) -> list[Path]:
    """A manifest, or the manifests (*.yaml, *.yml) of a folder, in order."""
    if not target.is_dir():
        return [target]
    found = sorted(target.glob("*.y*ml"))
    if not found:
        raise PipelineError(f"{target}: no shot manifests (*.yaml) found")
    return found


def cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.composite.match import COARSE_8_BIT_GRAIN
    from pipeline.manifest import load_shot, shot_name_clashes
    from pipeline.media.probe import (
        MAX_SQUEEZE,
        bit_depth,
        float_samples,
        has_alpha,
        read_dpx_header,
        sequence_path,
        square_scale,
    )
    from pipeline.media.timecode import timecode_problem

    failed = 0
    targets, clashes = [], {}
    for target in args.manifests:
        try:
            targets.append(manifest_files(target))
        except PipelineError as e:
            print(e.one_line(), file=sys.stderr)
            failed += 1
            continue
        if target.is_dir():  # a folder is a batch: two of its manifests may not name one shot
            clashes.update(shot_name_clashes(targets[-1]))
    for paths in targets:
        for path in paths:  # one bad manifest is reported, and the others still are
            if path in clashes:
                print(clashes[path], file=sys.stderr)
                failed += 1
                continue
            try:
                shot = load_shot(path)
                info = shot.plate.info
                turned = (
                    f", turned {info.rotation} degrees upright (its display matrix)" if info.rotation else ""
                )
                shown = f", HDR {info.color.hdr} ({info.color.describe()})" if info.color.hdr else ""
                if colorspace := shot.spec.plate.colorspace if shot.spec.plate else None:
                    shown += f", colour space {colorspace} (converted to sRGB as it is read)"
                if info.pixel_aspect != 1:
                    sar = info.pixel_aspect
                    x_scale = square_scale(info.width, sar)
                    shown += f", pixels {sar.numerator}:{sar.denominator} " + (
                        f"(anamorphic: its faces are worked unsqueezed, {round(info.width * x_scale)}x"
                        f"{info.height})"
                        if x_scale != 1
                        else f"(past {MAX_SQUEEZE:g}:1 either way, a wrong tag: its faces are worked in its "
                        "stored pixels)"
                    )
                print(
                    f"{path}: ok: {shot.name}, frames {shot.first}-{shot.last} ({shot.frame_count}), "
                    f"{float(shot.fps):g} fps, {info.kind} {info.width}x{info.height} {info.codec}"
                    f"{f' layer {info.layer}' if info.layer else ''}{turned}{shown}"
                    + (f", timecode {timecode}" if (timecode := shot.frame_timecode(shot.first)) else "")
                )
                if info.kind == "movie" and shot.fps != info.fps:
                    change = float(shot.fps / info.fps) - 1
                    print(
                        f"warning: {path}: fps {float(shot.fps):g} is not the movie's own rate "
                        f"({float(info.fps):g}): its frames play {abs(change):.1%} "
                        f"{'faster' if change > 0 else 'slower'} in the movies, which carry neither its "
                        "audio nor its timecode"
                    )
                elif info.timecode and not timecode:
                    print(
                        f"warning: {path}: the plate's timecode is of no use: "
                        f"{timecode_problem(info.timecode, shot.fps)}; the comp's frames and movies carry "
                        "none"
                    )
                if has_alpha(info.pixel_format):
                    print(
                        f"warning: {path}: the plate has an alpha channel ({info.pixel_format}): the comp "
                        "and its movies are RGB, without it (the face element's alpha is the new face's "
                        "matte); take the plate's alpha from the plate"
                    )
                if info.interlaced:
                    print(
                        f"warning: {path}: the plate is interlaced ({info.interlaced} field first): faces "
                        "are found and drawn on whole frames, both fields' combing and all; deinterlace it "
                        "first for clean faces (ffmpeg -vf bwdif)"
                    )
                bits = bit_depth(info.pixel_format)
                if colorspace and not float_samples(info.pixel_format) and bits <= 16:
                    if (step := shot.plate.colorspace.code_step(bits)) > 2 / 255:
                        print(
                            f"warning: {path}: the plate's {bits}-bit samples ({info.pixel_format}) in "
                            f"{colorspace} are up to {step * 255:.1f}/255 apart once converted (display "
                            "sRGB in 8 bits: 1/255), which shows as bands in smooth tones: a deeper source "
                            "of the plate (10-bit log, half-float EXR) keeps them smooth"
                        )
                composite = shot.spec.composite
                coarse = composite.grain_size if composite and composite.enabled and composite.grain else 0
                if coarse >= COARSE_8_BIT_GRAIN and bits <= 8 and not float_samples(info.pixel_format):
                    print(
                        f"warning: {path}: composite.grain_size {coarse:g} on the plate's 8-bit samples "
                        f"({info.pixel_format}): grain that coarse is read as little or none in 8 bits "
                        "(neighbouring samples round alike), so the new face gets too little; a 10- or "
                        "16-bit source of the plate reads it"
                    )
                if not colorspace and info.kind == "sequence" and info.codec == "dpx":
                    first = sequence_path(Path(info.path), info.first_frame or 0)
                    if (header := read_dpx_header(first)) and (encoding := header.transfer):
                        print(
                            f"warning: {path}: {first.name} says its samples are {encoding}: faces are "
                            "found, colour-matched and composited in those code values as they are; name "
                            "the scan's encoding as plate.colorspace (ADX10, a camera's log) to convert it"
                        )
                if shot.spec.faces is not None and shot.spec.faces.enabled and shot.spec.faces.reference:
                    from pipeline.shot.track import reference_face_count

                    if (count := reference_face_count(shot)) > 1:
                        reference = shot.spec.faces.reference
                        print(
                            f"warning: {path}: faces.reference {reference} shows {count} faces; the largest "
                            "is taken as the actor: a picture of the actor alone is surer"
                        )
                cuts = plate_cuts(shot)
                if cuts:
                    print(
                        f"warning: {path}: the plate has camera cuts at frames {', '.join(map(str, cuts))}: "
                        "the face track restarts at each and identifies the actor again"
                    )
            except PipelineError as e:
                print(e.one_line(), file=sys.stderr)
                failed += 1
    return 2 if failed else 0


LONG_PLATE = 500  # frames: looking for cuts in a plate this long shows its progress


def plate_cuts(shot: Shot) -> list[int]:
    """The frames of a shot that start a new camera shot (with the shot's faces settings, or the defaults),
    from every frame decoded at the size of the cut detector's signature (a few ms a frame)."""
    from pipeline.media.cuts import CUT_THRESHOLD, MIN_SCENE, SIGNATURE_SIZE, plate_cuts
    from pipeline.progress import Progress

    faces = shot.spec.faces
    threshold, min_scene = (faces.cut_threshold, faces.min_scene) if faces else (CUT_THRESHOLD, MIN_SCENE)
    if threshold is None:
        return []
    first, last = shot.range_first, shot.range_last
    frames = shot.read_frames(first, last, (SIGNATURE_SIZE, SIGNATURE_SIZE))
    if last - first + 1 < LONG_PLATE:
        return [first + c for c in plate_cuts(frames, threshold, min_scene)[1]]
    with Progress(f"{shot.name}: look for camera cuts", last - first + 1, "frame") as bar:
        return [first + c for c in plate_cuts(bar.each(frames), threshold, min_scene)[1]]


def cmd_render(args: argparse.Namespace) -> int:
    from pipeline.shot.stages import STAGE_NAMES, plan

    if args.force is not None and args.force not in STAGE_NAMES:
        print(
            f"vfx render --force {args.force}: not a stage (one of {', '.join(STAGE_NAMES)})", file=sys.stderr
        )
        return 2
    if args.dry_run:  # reads the manifest and the stage records only: no torch, no Prefect
        from pipeline.manifest import load_shot

        for name, runs, why in plan(load_shot(args.manifest, args.frames), args.root, args.force):
            print(f"{name:10} {'runs' if runs else 'cached':7} {why}")
        return 0
    from pipeline.config import load_runner
    from pipeline.flows import run_render

    result = run_render(
        str(args.manifest),
        frames=args.frames,
        resume=args.resume,
        version=args.version,
        root=str(args.root),
        force=args.force,
        runner=load_runner(args.runner, args.workers, args.dask_address),
    )
    note = f" ({result['note']})" if result.get("note") else ""
    for line in what_to_open(Path(result["path"])):
        print(line)
    print(f"{result['shot']} {result['version']}: {result['path']}{note}")  # the last line, for scripts
    return 0


def what_to_open(version: Path) -> list[str]:
    """Where a newcomer looks first in a render folder: the review movie (or the contact sheet), then the
    report."""
    review = sorted(version.glob("*_h264_review.mp4"))
    first = review[0] if review else version / "contact_sheet.png"
    lines = [f"open first: {first}"] if first.is_file() else []
    if (version / "report.md").is_file():
        lines.append(f"report: {version / 'report.md'} (frames in {version / 'comp'})")
    return lines


def cmd_track(args: argparse.Namespace) -> int:
    from pipeline.flows import run_track

    result = run_track(str(args.manifest), frames=args.frames, root=str(args.root))
    faces = result["report"]["faces"]
    print(
        f"{result['shot']} {result['version']}: faces on {faces['with_face']} of {faces['frames']} frames "
        f"({faces['detected']} detected, {faces['filled']} filled): {result['path']}"
    )
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from pipeline.faces.extract import extract_faces, open_any_plate
    from pipeline.files import refuse_file_at
    from pipeline.progress import Progress

    refuse_file_at(args.out, "the crops")
    colorspace = None
    if args.colorspace:
        from pipeline.media.colorspace import DEFAULT_CONFIG, ColorspaceError, PlateColorspace

        try:
            colorspace = PlateColorspace.open(args.colorspace, args.ocio_config or DEFAULT_CONFIG)
        except ColorspaceError as e:
            option = "--ocio-config" if e.about_config else "--colorspace"
            raise PipelineError(f"{option}: {e}") from None
    elif args.ocio_config:
        raise PipelineError(
            "--ocio-config names the config of a --colorspace: give the plate's colorspace too"
        )
    made = not args.out.exists()
    total = -(-open_any_plate(args.plate, args.layer, colorspace).info.frame_count // args.every)
    found = missing = 0
    with Progress(f"extract {Path(args.plate).name}", total, "frame") as bar:
        crops = extract_faces(
            args.plate, args.out, size=args.size, every=args.every, layer=args.layer, colorspace=colorspace
        )
        for item in crops:
            found += item.crop is not None
            missing += item.crop is None
            bar.advance(note=f"{found} with a face")
    if not found:  # an empty folder and status 0 read as success to a script
        if made and not any(args.out.iterdir()):
            args.out.rmdir()
        raise PipelineError(
            f"{args.plate}: no face found on any of its {missing} frames read; no crops written"
        )
    print(f"{args.out}: {found} aligned {args.size} px crops; {missing} frames without a face")
    return 0


def cmd_train_swap(args: argparse.Namespace) -> int:
    from pipeline.files import refuse_file_at
    from pipeline.flows import start_prefect, train_swap

    if (args.steps is None) == (args.minutes is None):
        print("vfx train swap: give one of --steps or --minutes", file=sys.stderr)
        return 2
    refuse_file_at(args.out, "the swap model")  # before Prefect starts: bad input is quick
    start_prefect()
    result = train_swap(
        str(args.a),
        str(args.b),
        str(args.out),
        preset=args.preset,
        steps=args.steps,
        minutes=args.minutes,
        batch=args.batch,
        lr=args.lr,
        warp=not args.no_warp,
        resume=args.resume,
    )
    print(f"{args.out}: step {result['step']}, loss A {result['loss_a']:.4f}, B {result['loss_b']:.4f}")
    return 0


def cmd_train_generator(args: argparse.Namespace) -> int:
    from pipeline.files import refuse_file_at
    from pipeline.flows import start_prefect, train_generator

    if (args.kimg is None) == (args.minutes is None):
        print("vfx train generator: give one of --kimg or --minutes", file=sys.stderr)
        return 2
    refuse_file_at(args.out, "the generator")  # before Prefect starts: bad input is quick
    start_prefect()
    result = train_generator(
        [str(f) for f in args.faces],
        str(args.out),
        res=args.res,
        kimg=args.kimg,
        minutes=args.minutes,
        batch=args.batch,
        lr=args.lr,
        gamma=args.gamma,
        pl_weight=args.pl_weight,
        resume=args.resume,
    )
    print(
        f"{args.out}: step {result['step']}, {result['kimg']:.1f} kimg, "
        f"D loss {result['d_loss']:.3f}, G loss {result['g_loss']:.3f}"
    )
    return 0


def cmd_train_encoder(args: argparse.Namespace) -> int:
    from pipeline.stylegan.encoder_train import EncoderSettings, check_inputs
    from pipeline.stylegan.registry import generator_path

    if (args.steps is None) == (args.minutes is None):
        print("vfx train encoder: give one of --steps or --minutes", file=sys.stderr)
        return 2
    EncoderSettings().with_weights(args.weights or {})  # before Prefect starts: bad input is quick
    generator = generator_path(args.generator, Path.cwd())
    check_inputs(generator, args.faces, args.out, args.resume)  # before Prefect starts: bad input is quick

    from pipeline.flows import start_prefect, train_encoder

    start_prefect()
    result = train_encoder(
        str(generator),
        [str(f) for f in args.faces],
        str(args.out),
        steps=args.steps,
        minutes=args.minutes,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        resume=args.resume,
        real_every=args.real_every,
        anneal=args.anneal,
        weights=args.weights,
    )
    print(f"{args.out}: step {result['step']}, {result['seconds']:.0f} s; {result['losses']}")
    return 0


def cmd_train_mapper(args: argparse.Namespace) -> int:
    from pipeline.stylegan.mapper_train import MapperSettings, check_inputs
    from pipeline.stylegan.registry import generator_path

    if (args.steps is None) == (args.minutes is None):
        print("vfx train mapper: give one of --steps or --minutes", file=sys.stderr)
        return 2
    MapperSettings().with_weights(args.weights or {})  # before Prefect starts: bad input is quick
    generator = generator_path(args.generator, Path.cwd())
    check_inputs(generator, args.recognisers, args.out, args.resume)

    from pipeline.flows import start_prefect, train_mapper

    start_prefect()
    result = train_mapper(
        str(generator),
        str(args.recognisers),
        str(args.out),
        steps=args.steps,
        minutes=args.minutes,
        attributes=args.attributes,
        weights=args.weights,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        resume=args.resume,
    )
    print(
        f"{args.out}: step {result['step']}, {result['seconds']:.0f} s, edits "
        f"{', '.join(result['attributes'])}; {result['losses']}"
    )
    return 0


def cmd_train_stylize(args: argparse.Namespace) -> int:
    from pipeline.stylize.dtn_train import DTNSettings, check_inputs

    if (args.steps is None) == (args.minutes is None):
        print("vfx train stylize: give one of --steps or --minutes", file=sys.stderr)
        return 2
    DTNSettings().with_weights(args.weights or {})  # before Prefect starts: bad input is quick
    check_inputs(args.source, args.target, args.out, args.resume)

    from pipeline.flows import start_prefect, train_stylize

    start_prefect()
    result = train_stylize(
        [str(p) for p in args.source],
        [str(p) for p in args.target],
        str(args.out),
        steps=args.steps,
        minutes=args.minutes,
        resolution=args.res,
        patches=args.patches,
        feature_map=args.feature_map,
        map_on_crop=args.map_grid == "crop",
        off_chip=args.off_chip,
        descriptor=args.g_input == "map+descriptor",
        colours=args.colours,
        weights=args.weights,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        resume=args.resume,
    )
    print(f"{args.out}: step {result['step']}, {result['seconds']:.0f} s; {result['losses']}")
    return 0


def cmd_cartoon(args: argparse.Namespace) -> int:
    from pipeline.commands.stills import image_files
    from pipeline.commands.stylize import cartoon_folder
    from pipeline.progress import Progress

    total = len(image_files(args.source))
    with Progress(f"cartoon {args.source}", total, "image") as bar:
        written = cartoon_folder(args.source, args.out, on_file=lambda p: bar.advance())
    print(f"{args.out}: {len(written)} cartoon crops")
    return 0


def label_folders(text: str) -> tuple[str, Path, Path]:
    """An argparse type: NAME=DIR_WITH,DIR_WITHOUT, a label attribute and its two folders of crops."""
    name, _, folders = text.partition("=")
    parts = folders.split(",")
    if not name or len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=DIR_WITH,DIR_WITHOUT")
    return name, Path(parts[0]), Path(parts[1])


def measure_names(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated geometric measures, or none (labels only)."""
    from pipeline.faces.attributes import GEOMETRIC_ATTRIBUTES

    if text == "none":
        return ()
    names = tuple(n.strip() for n in text.split(","))
    if unknown := [n for n in names if n not in GEOMETRIC_ATTRIBUTES]:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown)}: not a measure (give some of {', '.join(GEOMETRIC_ATTRIBUTES)}, or none)"
        )
    return names


def cmd_train_recognisers(args: argparse.Namespace) -> int:
    from pipeline.stylegan.recognise_train import check_inputs
    from pipeline.stylegan.registry import generator_path

    labels = {}
    for name, with_dir, without_dir in args.attribute:
        if name in labels:
            print(f"vfx train recognisers: --attribute {name}: given twice", file=sys.stderr)
            return 2
        labels[name] = (with_dir, without_dir)
    if args.measures == () and not labels:
        print("vfx train recognisers: --measures none needs an --attribute to learn", file=sys.stderr)
        return 2
    if (args.steps is None) == (args.minutes is None):
        print("vfx train recognisers: give one of --steps or --minutes", file=sys.stderr)
        return 2
    generator = generator_path(args.generator, Path.cwd())
    check_inputs(generator, labels, args.out, args.resume)  # before Prefect starts: bad input is quick

    from pipeline.flows import start_prefect, train_recognisers

    start_prefect()
    result = train_recognisers(
        str(generator),
        str(args.out),
        args.minutes,
        labels={name: [str(a), str(b)] for name, (a, b) in labels.items()},
        samples=args.samples,
        measures=None if args.measures is None else list(args.measures),
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        resume=args.resume,
        steps=args.steps,
    )
    print(f"{args.out}: step {result['step']}, {result['seconds']:.0f} s; held out:")
    for line in result["figures"].values():
        print(f"  {line}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from pipeline import models
    from pipeline.stylegan import registry

    if args.action == "add":
        if not args.name or not args.path:
            print("vfx models add: give a NAME and a PATH", file=sys.stderr)
            return 2
        if registry.is_encoder(args.path):
            encoder = registry.register_encoder(args.name, args.path)
            print(f"registered encoder {encoder.describe()}")
            print(f"registry: {registry.encoders_file()}")
            return 0
        if registry.is_mapper(args.path):
            mapper = registry.register_mapper(args.name, args.path)
            print(f"registered mapper {mapper.describe()}")
            print(f"registry: {registry.mappers_file()}")
            return 0
        entry = registry.register_generator(args.name, args.path)
        print(f"registered {entry.describe()}")
        print(f"registry: {registry.registry_file()}")
        return 0
    print("model files:")
    for name, model in models.REGISTRY.items():
        try:
            where = str(models.model_path(name))
        except models.ModelError as e:
            where = f"MISSING ({e})"
        print(f"  {name}: {model.filename}, sha256 {model.sha256[:16]}...: {where}")
    entries = registry.registered_generators()
    print(f"generators ({registry.registry_file()}):")
    for entry in entries.values():
        print(f"  {entry.describe()}")
    if not entries:
        print("  none registered (vfx models add NAME PATH)")
    encoders = registry.registered_encoders()
    print(f"encoders ({registry.encoders_file()}):")
    for encoder in encoders.values():
        print(f"  {encoder.describe()}")
    if not encoders:
        print("  none registered (vfx train encoder, then vfx models add NAME FOLDER)")
    mappers = registry.registered_mappers()
    print(f"mappers ({registry.mappers_file()}):")
    for mapper in mappers.values():
        print(f"  {mapper.describe()}")
    if not mappers:
        print("  none registered (vfx train mapper, then vfx models add NAME FOLDER)")
    return 0


def batch_steps(bar: Progress, steps: int) -> Callable[[int, np.ndarray], None]:
    """A projection's on_step for `bar` counting `steps` a batch: a batch that stops early (its loss no
    longer falls) counts in full when the next one starts."""
    batches = 0

    def on_step(step: int, losses: np.ndarray) -> None:
        nonlocal batches
        batches += step == 0
        bar.update((batches - 1) * steps + step + 1, note=f"loss {float(losses.mean()):.4f}")

    return on_step


def cmd_project(args: argparse.Namespace) -> int:
    from pipeline.commands.stills import image_files, project_stills
    from pipeline.files import refuse_file_at
    from pipeline.progress import Progress
    from pipeline.stylegan.project import ProjectSettings, polish_settings

    refuse_file_at(args.out, "the latents")
    if args.encoder:
        settings = polish_settings(args.steps or 100, w_plus=not args.w, mse_weight=args.mse)
    else:
        settings = ProjectSettings(steps=args.steps or 1000, w_plus=not args.w, mse_weight=args.mse)
    count = len(image_files(args.source))
    with Progress(f"project {count} image(s)", settings.steps * -(-count // args.batch)) as bar:
        results = project_stills(
            args.source,
            args.generator,
            args.out,
            settings,
            aligned=args.aligned,
            batch=args.batch,
            on_step=batch_steps(bar, settings.steps),
            encoder=args.encoder,
        )
    for r in results:
        print(f"{r['image']}: LPIPS-VGG {r['lpips_vgg']:.4f} after {r['steps']} steps")
    print(f"{args.out}: {len(results)} projected ({count - len(results)} already there)")
    return 0


def attribute_change(text: str) -> tuple[str, float]:
    """An argparse type: NAME=AMOUNT (yaw=+15, smile_width=-0.2); which names exist is the mapper's check."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=AMOUNT (like yaw=+15)")
    return name.strip(), number(-1e4, 1e4)(value.strip())


def cmd_edit(args: argparse.Namespace) -> int:
    from pipeline.commands.stills import edit_still

    changes: dict[str, float] = {}
    for name, amount in args.set:
        changes[name] = changes.get(name, 0.0) + amount
    r = edit_still(
        args.source, args.mapper, changes, args.out, args.generator, args.encoder, args.steps, args.aligned
    )
    print(f"{r['source']}: {', '.join(f'{k} {v:+g}' for k, v in changes.items())} -> {r['out']}")
    print(f"attribute sheet: {r['sheet']}")
    return 0


def cmd_direction(args: argparse.Namespace) -> int:
    from pipeline.commands.directions import (
        check_direction_paths,
        learn_from_folders,
        parse_layers,
        pick_faces,
    )
    from pipeline.progress import Progress
    from pipeline.stylegan.project import ProjectSettings

    check_direction_paths(args.pos, args.neg, args.out)
    settings = ProjectSettings(steps=args.steps, optimize_noise=False, patience=20)
    sizes = [len(pick_faces(args.pos, args.max_faces)), len(pick_faces(args.neg, args.max_faces))]
    count = sum(sizes)
    batches = sum(-(-n // args.batch) for n in sizes)
    with Progress(f"project {count} faces", settings.steps * batches) as bar:
        d = learn_from_folders(
            args.pos,
            args.neg,
            args.generator,
            args.out,
            settings,
            parse_layers(args.layers),
            aligned=args.aligned,
            batch=args.batch,
            on_step=batch_steps(bar, settings.steps),
            max_faces=args.max_faces,
        )
    layers = f"{min(d.layers)}-{max(d.layers)}" if d.layers else "all"
    print(f"{args.out}: direction on layers {layers}, classifier accuracy {d.accuracy:.3f} on {count} faces")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.manifest import load_shot
    from pipeline.shot.stages import shot_status

    if args.root.exists() and not args.root.is_dir():
        raise PipelineError(f"--root {args.root}: a file is there, not a render folder")
    manifests = []
    for target in args.targets:
        if not target.exists():  # a typo'd path is bad input, not a shot whose state is "invalid"
            raise PipelineError(f"{target}: no such manifest or folder")
        manifests += manifest_files(target)
    rows = []
    for m in manifests:  # status only reads: a manifest or render folder it cannot read is one row
        try:
            shot = load_shot(m)
        except PipelineError as e:
            rows.append((str(m), "-", "invalid", e.one_line()))
            continue
        try:
            s = shot_status(shot, args.root)
        except (OSError, PipelineError) as e:
            detail = e.one_line() if isinstance(e, PipelineError) else f"{e.filename}: {e.strerror}"
            s = {"shot": shot.name, "version": None, "state": "unreadable", "detail": detail}
        rows.append((str(m), s["version"] or "-", s["state"], s["detail"]))
    width = max((len(r[0]) for r in rows), default=8)
    for r in rows:
        print(f"{r[0]:{width}}  {r[1]:5}  {r[2]:14}  {r[3]}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from pipeline.flows import deploy_render

    name = deploy_render(args.pool, args.name)
    print(
        f"deployment {name} on work pool {args.pool}: "
        f"start render nodes with prefect worker start --pool {args.pool}"
    )
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from pipeline.flows import submit_render

    for manifest in args.manifests:
        run = submit_render(str(manifest), str(args.root), args.deployment)
        print(f"{manifest}: queued as flow run {run}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.flows import serve_overnight

    serve_overnight(str(args.folder), args.cron, str(args.root))
    return 0


def cmd_overnight(args: argparse.Namespace) -> int:
    from pipeline.flows import batch_manifests, overnight, start_prefect

    batch_manifests(str(args.folder))  # a folder without manifests fails plainly, before Prefect starts
    start_prefect()
    result = overnight(str(args.folder), root=str(args.root))
    print(Path(result["summary"]).read_text(encoding="utf-8"))
    return 1 if result["failed"] else 0


def cmd_batch(args: argparse.Namespace) -> int:
    from pipeline.config import load_runner
    from pipeline.flows import run_batch

    runner = load_runner(args.runner, args.workers, args.dask_address)
    outcomes = run_batch(
        str(args.folder), root=str(args.root), only=args.only, runner=runner, resume=args.resume
    )
    for o in outcomes:
        print(f"{o['manifest']}: {o['status']}: {o.get('path') or o.get('error')}")
    return 1 if any(o["status"] == "failed" for o in outcomes) else 0


def add_runner_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runner", choices=["threads", "dask"], help="how chunks run (default: vfx.toml, else threads)"
    )
    p.add_argument("--workers", type=whole(1, 256), help="threads, or local Dask worker processes")
    p.add_argument("--dask-address", help="an existing Dask scheduler, like tcp://10.0.0.5:8786")


def add_device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        help="where models run: cpu, cuda or cuda:N (default: $VFX_DEVICE, else cuda when there is a GPU)",
    )


def use_device(args: argparse.Namespace) -> None:
    """For the commands that run models: --device (or $VFX_DEVICE) checked before any work starts, and
    --device passed on as VFX_DEVICE, which the models of this process, its Prefect tasks and the Dask
    worker processes it starts all follow (`pipeline.devices`)."""
    if not hasattr(args, "device") or getattr(args, "dry_run", False):  # a dry run loads no model
        return
    from pipeline.devices import ENV, resolve_device

    resolve_device(args.device)
    if args.device is not None:
        os.environ[ENV] = args.device


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="vfx", description="Face-VFX shot pipeline.")
    p.add_argument("--version", action="version", version=f"vfx {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check manifests and their plates without rendering")
    v.add_argument("manifests", nargs="+", type=Path, help="manifests, or folders of them")
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("render", help="render one shot into a new version")
    r.add_argument("manifest", type=Path)
    r.add_argument("--frames", help="inclusive frame range to render, e.g. 1040-1060")
    r.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted version (the latest, or --render-version)",
    )
    r.add_argument(
        "--render-version",
        type=whole(1, 99999),
        dest="version",
        help="the render version to create or resume (v003: 3); vfx --version is the program's",
    )
    r.add_argument("--root", type=Path, default=Path("render"), help="output root (default: render)")
    r.add_argument("--dry-run", action="store_true", help="say which stages would run and why; run nothing")
    r.add_argument(
        "--force", metavar="STAGE", help="rerun this stage and those after (--dry-run lists the stages)"
    )
    add_runner_options(r)
    r.set_defaults(func=cmd_render)

    t = sub.add_parser(
        "track", help="track a shot's faces: overlay movie, aligned-crop contact sheet, report"
    )
    t.add_argument("manifest", type=Path)
    t.add_argument("--frames", help="inclusive frame range, e.g. 1040-1060")
    t.add_argument("--root", type=Path, default=Path("render"), help="output root (default: render)")
    t.set_defaults(func=cmd_track)

    ca = sub.add_parser(
        "cartoon",
        help="a folder of crops in the procedural cartoon look (a target domain for vfx train stylize)",
    )
    ca.add_argument("source", type=Path, help="a folder of images (or one image)")
    ca.add_argument("--out", type=Path, required=True, help="folder for the cartoon images (PNG, same names)")
    ca.set_defaults(func=cmd_cartoon)

    e = sub.add_parser("extract", help="aligned face crops and landmarks from a plate, for training")
    e.add_argument("plate", help="movie, image sequence (name.####.png) or image")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument(
        "--size", type=whole(64, 1024), default=256, help="crop size in pixels, 64-1024 (default 256)"
    )
    e.add_argument("--every", type=whole(1, 100_000), default=1, help="take every N-th frame (default 1)")
    e.add_argument("--layer", default="", help="EXR: the layer whose R, G, B are the picture, as beauty")
    e.add_argument(
        "--colorspace",
        default="",
        help="the plate's encoding, an OpenColorIO colour space, as plate.colorspace ('ARRI LogC3 (EI800)')",
    )
    e.add_argument(
        "--ocio-config",
        default="",
        help="the OpenColorIO config naming it (default: the built-in studio one)",
    )
    e.set_defaults(func=cmd_extract)

    tr = sub.add_parser("train", help="train a model")
    trs = tr.add_subparsers(dest="what", required=True)
    ts = trs.add_parser("swap", help="the face-swap autoencoder, from two folders of vfx extract crops")
    ts.add_argument("--a", type=Path, required=True, help="crops of person A")
    ts.add_argument("--b", type=Path, required=True, help="crops of person B")
    ts.add_argument("--out", type=Path, required=True, help="model folder (swap.pt, preview.png, loss.png)")
    ts.add_argument("--preset", choices=["64", "128", "256"], default="64")
    ts.add_argument("--steps", type=whole(1, MAX_STEPS), help="train until this many steps in all")
    ts.add_argument(
        "--minutes", type=number(0, MAX_MINUTES, low_open=True), help="train for this many minutes"
    )
    ts.add_argument(
        "--batch", type=whole(1, MAX_BATCH), default=16, help="faces of each person per step (default 16)"
    )
    ts.add_argument(
        "--lr", type=number(0, 1, low_open=True), default=5e-5, help="Adam learning rate (default 5e-5)"
    )
    ts.add_argument("--no-warp", action="store_true", help="no random warp: a final polishing phase")
    ts.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    ts.set_defaults(func=cmd_train_swap)

    tg = trs.add_parser("generator", help="a StyleGAN2 generator, from folders of vfx extract crops")
    tg.add_argument("--faces", type=Path, action="append", required=True, help="crop folder (repeatable)")
    tg.add_argument("--out", type=Path, required=True, help="model folder (generator.pt, samples, losses)")
    tg.add_argument("--res", type=int, choices=[64, 128, 256], default=64)
    tg.add_argument(
        "--kimg",
        type=number(0, 1_000_000, low_open=True),
        help="train until this many thousand images shown in all",
    )
    tg.add_argument(
        "--minutes", type=number(0, MAX_MINUTES, low_open=True), help="train for this many minutes"
    )
    tg.add_argument("--batch", type=whole(1, MAX_BATCH), default=16, help="images per step (default 16)")
    tg.add_argument(
        "--lr", type=number(0, 1, low_open=True), default=0.0025, help="Adam learning rate (default 0.0025)"
    )
    tg.add_argument("--gamma", type=number(0, 1e6), help="R1 weight (default 0.0002 * res^2 / batch)")
    tg.add_argument(
        "--pl-weight", type=number(0, 1e6), default=0.0, help="path-length regularisation (default off)"
    )
    tg.add_argument("--resume", action="store_true", help="continue the training state in --out")
    tg.set_defaults(func=cmd_train_generator)

    te = trs.add_parser(
        "encoder", help="an encoder from aligned faces to a generator's W+ (pSp/e4e): projection's start"
    )
    te.add_argument(
        "--generator", required=True, help="a registered generator's name, or its file or model folder"
    )
    te.add_argument(
        "--faces",
        type=Path,
        action="append",
        default=[],
        help="folder of real aligned crops (vfx extract; repeatable; optional: the generator's own "
        "samples always train it)",
    )
    te.add_argument(
        "--out",
        type=Path,
        required=True,
        help="model folder (encoder.pt, training.pt, preview.png, loss.png)",
    )
    te.add_argument("--steps", type=whole(1, MAX_STEPS), help="train until this many steps in all")
    te.add_argument(
        "--minutes", type=number(0, MAX_MINUTES, low_open=True), help="train for this many minutes"
    )
    te.add_argument("--batch", type=whole(1, MAX_BATCH), default=8, help="faces per step (default 8)")
    te.add_argument(
        "--lr", type=number(0, 1, low_open=True), default=1e-4, help="Adam learning rate (default 1e-4)"
    )
    te.add_argument(
        "--real-every",
        type=whole(1, MAX_STEPS),
        default=2,
        help="with --faces: a batch of real crops every this many steps (default 2; 1: every step)",
    )
    te.add_argument(
        "--anneal",
        type=number(0, 1),
        default=0.25,
        help="over this last share of the run (of --steps in all, or of --minutes) the rate falls along "
        "a cosine to a twentieth (default 0.25; 0: a constant rate)",
    )
    te.add_argument(
        "--weights",
        type=loss_weights,
        help="loss weights, like latent=0.1 (latent 1, lpips 1, mse 1, delta 0.05 by default; latent is "
        "only for the generator's own faces, whose W+ is known)",
    )
    te.add_argument("--seed", type=whole(0, 2**31 - 1), default=0, help="random seed (default 0)")
    te.add_argument("--resume", action="store_true", help="continue the training state in --out")
    te.set_defaults(func=cmd_train_encoder)

    tm = trs.add_parser(
        "mapper", help="a latent-to-latent mapper (L2L): edits named attributes in W+ and keeps the person"
    )
    tm.add_argument(
        "--generator", required=True, help="a registered generator's name, or its file or model folder"
    )
    tm.add_argument(
        "--recognisers",
        type=Path,
        required=True,
        help="the generator's attribute recognisers (vfx train recognisers: folder or file)",
    )
    tm.add_argument(
        "--out", type=Path, required=True, help="model folder (mapper.pt, training.pt, preview.png, loss.png)"
    )
    tm.add_argument("--steps", type=whole(1, MAX_STEPS), help="train until this many steps in all")
    tm.add_argument(
        "--minutes", type=number(0, MAX_MINUTES, low_open=True), help="train for this many minutes"
    )
    tm.add_argument(
        "--attributes",
        type=name_list,
        help="the attributes it edits, like yaw,mouth_open (default: all the recognisers read)",
    )
    tm.add_argument(
        "--weights",
        type=loss_weights,
        help="loss weights, like identity=2,neighbourhood=0.05 (attribute 1, identity 1, cycle 1, "
        "neighbourhood 0.1 by default)",
    )
    tm.add_argument("--batch", type=whole(1, MAX_BATCH), default=8, help="latents per step (default 8)")
    tm.add_argument(
        "--lr", type=number(0, 1, low_open=True), default=5e-4, help="Adam learning rate (default 5e-4)"
    )
    tm.add_argument("--seed", type=whole(0, 2**31 - 1), default=0, help="random seed (default 0)")
    tm.add_argument("--resume", action="store_true", help="continue the training state in --out")
    tm.set_defaults(func=cmd_train_mapper)

    tst = trs.add_parser(
        "stylize",
        help="a domain transfer network (DTN): faces redrawn in a target domain learnt from unpaired images",
    )
    tst.add_argument(
        "--source",
        type=Path,
        action="append",
        required=True,
        help="folder of aligned face crops (repeatable)",
    )
    tst.add_argument(
        "--target",
        type=Path,
        action="append",
        required=True,
        help="folder of aligned target-domain images, such as vfx cartoon's (repeatable)",
    )
    tst.add_argument(
        "--out",
        type=Path,
        required=True,
        help="model folder (stylizer.pt, training.pt, preview.png, loss.png)",
    )
    tst.add_argument("--steps", type=whole(1, MAX_STEPS), help="train until this many steps in all")
    tst.add_argument(
        "--minutes", type=number(0, MAX_MINUTES, low_open=True), help="train for this many minutes"
    )
    tst.add_argument(
        "--res", type=int, choices=(32, 64, 128, 256), default=64, help="drawing size (default 64)"
    )
    tst.add_argument(
        "--weights",
        type=loss_weights,
        help="loss weights, like const=2,tid=5 (gan 1, const 10, spatial_const 1, tid 50, tv 30, colour 50 "
        "by default; gan=0,const=0 is the plain autoencoder baseline; colour keeps the source face's coarse "
        "colours: colour=0 for a domain that changes them)",
    )
    tst.add_argument(
        "--patches",
        type=int,
        choices=(0, 2, 4, 8, 16),
        default=8,
        help="the discriminator's verdicts per side, each on a patch of the face (default 8); 0: one "
        "verdict for the whole image, the paper's D",
    )
    tst.add_argument(
        "--feature-map",
        type=int,
        choices=(8, 17, 35),
        default=17,
        help="the size of the identity network's map that g draws from and L_CONST compares: 17 (the end "
        "of its second stage, default), 8 (its third: the drawings follow pose but hardly expression) or 35",
    )
    tst.add_argument(
        "--map-grid",
        choices=("chip", "crop"),
        default="crop",
        help="where f's map is laid out for g: resampled onto the crop's own grid, so that each cell speaks "
        "of the place g draws (crop, default), or on dlib's face chip, the middle of the crop (chip, the "
        "earlier default)",
    )
    tst.add_argument(
        "--off-chip",
        choices=("edge", "zero"),
        default="edge",
        help="with --map-grid crop, what the crop's cells off dlib's chip read: the chip's nearest edge "
        "carried outward (edge, default: no step in g's input where the chip ends), or zero",
    )
    tst.add_argument(
        "--g-input",
        choices=("map", "map+descriptor"),
        default="map",
        help="what g draws from: the map alone (default), or the map and f's descriptor broadcast over it "
        "(the paper's g draws from the descriptor; with a one-person target domain it tints every drawing)",
    )
    tst.add_argument(
        "--colours",
        type=int,
        choices=(0, 1, 2, 4, 8, 16, 32),
        help="g also draws from the face's colours, averaged to this many pixels a side (default: the size "
        "of g's map, 16 for --feature-map 17, 8 for 8, 32 for 35; 0: not): f's map says where the eyes and "
        "mouth are, not what colour the hair, skin and background are",
    )
    tst.add_argument("--batch", type=whole(1, MAX_BATCH), default=8, help="faces per step (default 8)")
    tst.add_argument(
        "--lr", type=number(0, 1, low_open=True), default=2e-4, help="Adam learning rate (default 2e-4)"
    )
    tst.add_argument("--seed", type=whole(0, 2**31 - 1), default=0, help="random seed (default 0)")
    tst.add_argument("--resume", action="store_true", help="continue the training state in --out")
    tst.set_defaults(func=cmd_train_stylize)

    trr = trs.add_parser(
        "recognisers",
        help="attribute recognisers for a generator (pose, mouth, eyes, brows; labels from folders of "
        "crops): what the latent-to-latent mapper learns against",
    )
    trr.add_argument(
        "--generator", required=True, help="a registered generator's name, or its file or model folder"
    )
    trr.add_argument(
        "--out",
        type=Path,
        required=True,
        help="model folder (recognisers.pt, samples.pt, training.pt, preview.png, loss.png)",
    )
    trr.add_argument("--steps", type=whole(1, MAX_STEPS), help="train until this many steps in all")
    trr.add_argument(
        "--minutes",
        type=number(0, MAX_MINUTES, low_open=True),
        help="train for this many minutes (after drawing and measuring the faces)",
    )
    trr.add_argument(
        "--samples",
        type=whole(50, MAX_FACES),
        default=2000,
        help="faces drawn from the generator and measured with dlib (default 2000)",
    )
    trr.add_argument(
        "--attribute",
        type=label_folders,
        action="append",
        default=[],
        metavar="NAME=DIR_WITH,DIR_WITHOUT",
        help="a label attribute from folders of aligned crops with and without it (repeatable)",
    )
    trr.add_argument(
        "--measures",
        type=measure_names,
        help="the geometric measures to learn, comma-separated, or none (default: all)",
    )
    trr.add_argument("--batch", type=whole(1, MAX_BATCH), default=32, help="faces per step (default 32)")
    trr.add_argument(
        "--lr", type=number(0, 1, low_open=True), default=3e-4, help="AdamW learning rate (default 3e-4)"
    )
    trr.add_argument("--seed", type=whole(0, 2**31 - 1), default=0, help="random seed (default 0)")
    trr.add_argument("--resume", action="store_true", help="continue the training state in --out")
    trr.set_defaults(func=cmd_train_recognisers)

    pr = sub.add_parser(
        "project", help="project still faces into a generator's W+ (latents, reconstructions)"
    )
    pr.add_argument("source", type=Path, help="an image or a folder of images")
    pr.add_argument("--generator", required=True, help="a registered generator's name, or its file")
    pr.add_argument("--out", type=Path, required=True)
    pr.add_argument("--aligned", action="store_true", help="the images are aligned crops (vfx extract)")
    pr.add_argument(
        "--encoder", help="start each face from this encoder's W+ (a registered name, folder or file)"
    )
    pr.add_argument(
        "--steps",
        type=whole(1, MAX_PROJECT_STEPS),
        help="optimisation steps (default 1000; with --encoder, the polish: default 100)",
    )
    pr.add_argument("--w", action="store_true", help="optimise one w for all layers (W) instead of W+")
    pr.add_argument(
        "--mse", type=number(0, 100), default=0.1, help="weight of the pixel MSE beside LPIPS (default 0.1)"
    )
    pr.add_argument("--batch", type=whole(1, 256), default=8, help="faces optimised together (default 8)")
    pr.set_defaults(func=cmd_project)

    ed = sub.add_parser(
        "edit", help="edit a still face (an image or a latent file) by a latent mapper: vfx train mapper"
    )
    ed.add_argument("source", type=Path, help="an image, or a latent file (.npz from vfx project, .npy)")
    ed.add_argument("--mapper", required=True, help="a registered mapper's name, or its folder or file")
    ed.add_argument(
        "--set",
        type=attribute_change,
        action="append",
        required=True,
        metavar="NAME=AMOUNT",
        help="an attribute's change in its unit (yaw=+15 degrees, mouth_open=+0.2); repeat for several",
    )
    ed.add_argument("--out", type=Path, required=True, help="folder for the edited face and its sheets")
    ed.add_argument("--generator", help="default: the one the latent file or the mapper records")
    ed.add_argument("--encoder", help="project an image from this encoder's W+ (then a 100-step polish)")
    ed.add_argument("--steps", type=whole(1, MAX_PROJECT_STEPS), help="projection steps for an image")
    ed.add_argument("--aligned", action="store_true", help="the image is an aligned crop (vfx extract)")
    ed.set_defaults(func=cmd_edit)

    d = sub.add_parser("direction", help="attribute directions for latent edits")
    ds = d.add_subparsers(dest="action", required=True)
    dl = ds.add_parser("learn", help="learn a direction from faces with (--pos) and without (--neg) it")
    dl.add_argument("--pos", type=Path, required=True, help="folder of faces with the attribute")
    dl.add_argument("--neg", type=Path, required=True, help="folder of faces without it")
    dl.add_argument("--generator", required=True, help="a registered generator's name, or its file")
    dl.add_argument("--out", type=Path, required=True, help="the direction file (.npz)")
    dl.add_argument("--layers", help="W+ layers the edit may touch, like 2-5 (default: all)")
    dl.add_argument("--aligned", action="store_true", help="the images are aligned crops (vfx extract)")
    dl.add_argument(
        "--steps",
        type=whole(1, MAX_PROJECT_STEPS),
        default=500,
        help="projection steps per face (default 500)",
    )
    dl.add_argument("--batch", type=whole(1, 256), default=8, help="faces projected together (default 8)")
    dl.add_argument(
        "--max-faces", type=whole(1, MAX_FACES), help="at most this many faces of each folder, spread evenly"
    )
    dl.set_defaults(func=cmd_direction)

    m = sub.add_parser(
        "models", help="list model files and registered generators, encoders and mappers, or register one"
    )
    m.add_argument("action", nargs="?", choices=["list", "add"], default="list")
    m.add_argument("name", nargs="?", help="add: the name manifests will use")
    m.add_argument(
        "path",
        nargs="?",
        help="add: a generator file (ours, rosinality .pt, NVIDIA .pkl) or folder; or an encoder's or a "
        "mapper's",
    )
    m.set_defaults(func=cmd_models)

    st = sub.add_parser("status", help="the latest version of each shot and its state")
    st.add_argument("targets", type=Path, nargs="*", default=[Path("shots")], help="manifests or folders")
    st.add_argument("--root", type=Path, default=Path("render"), help="output root (default: render)")
    st.set_defaults(func=cmd_status)

    dp = sub.add_parser("deploy", help="deploy render-shot on a process work pool, for render nodes")
    dp.add_argument("--pool", required=True, help="the work pool (created if missing)")
    dp.add_argument("--name", default="render-shot", help="the deployment's name (default render-shot)")
    dp.set_defaults(func=cmd_deploy)

    sb = sub.add_parser("submit", help="queue shots on the deployment; render nodes' workers render them")
    sb.add_argument("manifests", type=Path, nargs="+")
    sb.add_argument("--root", type=Path, default=Path("render"), help="output root (default: render)")
    sb.add_argument("--deployment", default="render-shot/render-shot")
    sb.set_defaults(func=cmd_submit)

    sv = sub.add_parser("serve", help="overnight runs: re-render changed shots on a cron schedule")
    sv.add_argument("folder", type=Path)
    sv.add_argument("--cron", required=True, help='when, like "0 2 * * *" (02:00 every night)')
    sv.add_argument("--root", type=Path, default=Path("render"), help="output root (default: render)")
    sv.set_defaults(func=cmd_serve)

    on = sub.add_parser("overnight", help="one overnight run now: render the shots that changed")
    on.add_argument("folder", type=Path)
    on.add_argument("--root", type=Path, default=Path("render"), help="output root (default: render)")
    on.set_defaults(func=cmd_overnight)

    b = sub.add_parser("batch", help="render every manifest in a folder")
    b.add_argument("folder", type=Path)
    b.add_argument("--root", type=Path, default=Path("render"), help="output root (default: render)")
    b.add_argument("--only", help="only the manifests whose name matches this pattern, like 'sh01*'")
    b.add_argument(
        "--resume", action="store_true", help="finish interrupted shots, skip finished ones, render the rest"
    )
    add_runner_options(b)
    b.set_defaults(func=cmd_batch)

    for runs_models in (r, b, on, sv, ts, tg, te, tm, trr, pr, dl):
        add_device_option(runs_models)
    return p


def main(argv: list[str] | None = None) -> int:
    tune_malloc()
    args = build_parser().parse_args(argv)
    try:
        use_device(args)
        return args.func(args)
    except PipelineError as e:
        print(e.one_line(), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
