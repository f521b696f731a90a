"""The house's layers are a contract (pyproject.toml, [tool.importlinter]): techniques below the shot's
stages, the stages below flows and the command line, Prefect in flows.py alone, no import cycles. These
tests run `lint-imports` on the package, and on a copy broken on purpose to show the contract catches it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the `pipeline` package found first is root's
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_layers_hold():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_broken_layer_or_a_cycle_fails_naming_the_import(tmp_path):
    shutil.copytree(REPO / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with open(tmp_path / "pipeline" / "faces" / "align.py", "a") as f:
        f.write("\nfrom pipeline.shot import stages  # noqa: E402, F401 - a technique reaching up\n")
    with open(tmp_path / "pipeline" / "media" / "probe.py", "a") as f:
        f.write("\nfrom pipeline.media import decode  # noqa: E402, F401 - a cycle\n")
    with open(tmp_path / "pipeline" / "manifest.py", "a") as f:
        f.write("\nimport prefect  # noqa: E402, F401 - Prefect outside flows.py\n")
    result = lint_imports(tmp_path)
    out = result.stdout
    assert result.returncode != 0, out
    assert "pipeline.faces.align -> pipeline.shot.stages" in out
    assert ".probe -> .decode" in out
    assert "pipeline.manifest -> prefect" in out
