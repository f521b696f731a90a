"""The README's commands are the user's first contact: every `vfx` command line in its shell blocks must
parse with the command line it documents (an option the README names and the CLI lacks fails here, not on a
farm node an hour into a demo)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pipeline.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """Each `vfx ...` command of the README's ```sh blocks, continuation lines joined, one per shell
    command (split at &&, ; and |)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            command: list[str] = []
            for token in [*tokens, "&&"]:
                if token in ("&&", ";", "|", "||"):
                    if command and (command[0] == "vfx" or command[0].endswith("/vfx")):
                        commands.append(shlex.join(command))
                    command = []
                else:
                    command.append(token)
    return commands


def test_the_readme_has_commands_to_check():
    commands = readme_commands()
    assert len(commands) > 40
    assert any(c.startswith(".venv/bin/vfx train generator") for c in commands)


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_parses(command):
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(command)[1:])
    except SystemExit as e:
        pytest.fail(f"README: {command!r} does not parse (exit {e.code})")
