"""The install path a new user and CI take: README's commands, .ci/run and the constraints file agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> dict[str, str]:
    """README's first two fenced bash commands, keyed by the bold heading before each."""
    text = (REPO / "README.md").read_text()
    found = re.findall(r"\*\*(Run the [a-z ]+)\*\*.*?```bash\n(.+?)\n```", text, flags=re.S)
    return {title: cmd.strip() for title, cmd in found[:2]}


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_ci_runs_the_readme_test_command():
    cmds = _readme_commands()
    assert set(cmds) == {"Run the main job", "Run the tests"}
    ci = (REPO / ".ci" / "run").read_text()
    assert cmds["Run the tests"] in ci.splitlines()


def test_readme_commands_install_with_the_constraints_file():
    for title, cmd in _readme_commands().items():
        assert "pip install" in cmd and "-c constraints.txt" in cmd, title


def test_constraints_satisfy_the_package_ranges():
    """Every direct dependency is pinned, inside the range pyproject.toml gives users."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _constraints()
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    for req in reqs:
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])
    assert pins["torch"] == "2.13.0"  # the CPU build on the machine's disk


def test_the_study_browser_a_launch_prints_is_installed():
    """A launch prints ``optuna-dashboard sqlite:///DIR/optuna.db``: the command exists after the install."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert exe is not None, "optuna-dashboard is not installed next to this Python"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and re.match(r"\d+\.\d+", out.stdout.strip()), out
