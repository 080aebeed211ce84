"""What `pip install .` installs is the whole application: every top-level module and package is listed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_INSTALLED = {"tests", "bench"}  # run from a checkout only


def test_every_module_and_package_of_the_application_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    modules = {path.stem for path in ROOT.glob("*.py")}
    packages = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in ROOT.rglob("__init__.py")
        if (top := init.parent.relative_to(ROOT).parts[0]) not in NOT_INSTALLED and not top.startswith(".")
    }
    assert set(config["py-modules"]) == modules
    assert set(config["packages"]) == packages


def test_commands_run_from_a_folder_holding_folders_named_like_the_application(tmp_path: Path) -> None:
    """`python -m cli` puts the current folder first on sys.path: folders there named like our packages and
    modules (a `logs/` or `settings/` folder is common) must not shadow the installed application."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for name in {*config["py-modules"], *(package.split(".")[0] for package in config["packages"]), "logs"}:
        (tmp_path / name).mkdir(exist_ok=True)
    imports = "import api.app, cli, devstack.supervisor, observability.logs, settings, worker"
    for command in ([sys.executable, "-m", "cli", "--help"], [sys.executable, "-c", imports]):
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
