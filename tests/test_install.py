"""What `pip install .` installs is the whole application: every top-level module and package is listed."""

from __future__ import annotations

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
