"""The `vfx` command line. Prefect is imported only by the commands that run flows."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import __version__
from pipeline.errors import PipelineError


def cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.manifest import load_shot

    failed = 0
    for path in args.manifests:
        try:
            shot = load_shot(path)
            info = shot.plate.info
            print(
                f"{path}: ok: {shot.name}, frames {shot.first}-{shot.last} ({shot.frame_count}), "
                f"{float(shot.fps):g} fps, {info.kind} {info.width}x{info.height} {info.codec}"
            )
        except PipelineError as e:
            print(str(e), file=sys.stderr)
            failed += 1
    return 2 if failed else 0


def cmd_render(args: argparse.Namespace) -> int:
    from pipeline.flows import run_render

    result = run_render(
        str(args.manifest), frames=args.frames, resume=args.resume, version=args.version, root=str(args.root)
    )
    print(f"{result['shot']} {result['version']}: {result['path']}")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from pipeline.flows import render_batch

    outcomes = render_batch(str(args.folder), root=str(args.root))
    for o in outcomes:
        print(f"{o['manifest']}: {o['status']}: {o.get('path') or o.get('error')}")
    return 1 if any(o["status"] != "done" for o in outcomes) else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vfx", description="Face-VFX shot pipeline.")
    p.add_argument("--version", action="version", version=f"vfx {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check manifests and their plates without rendering")
    v.add_argument("manifests", nargs="+", type=Path)
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("render", help="render one shot into a new version")
    r.add_argument("manifest", type=Path)
    r.add_argument("--frames", help="inclusive frame range to render, e.g. 1040-1060")
    r.add_argument(
        "--resume", action="store_true", help="finish an interrupted version (the latest, or --version)"
    )
    r.add_argument("--version", type=int, dest="version", help="version number to create (or resume)")
    r.add_argument("--root", type=Path, default=Path("render"), help="output root (default: render)")
    r.set_defaults(func=cmd_render)

    b = sub.add_parser("batch", help="render every manifest in a folder")
    b.add_argument("folder", type=Path)
    b.add_argument("--root", type=Path, default=Path("render"), help="output root (default: render)")
    b.set_defaults(func=cmd_batch)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PipelineError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
