"""Every top-level package is installed: the tests run from the source tree and would not notice otherwise."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_top_level_package_is_in_pyproject():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    dev_only = {"tests", "bench"}  # the test suite and the benchmarks are run from the source tree
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in dev_only)
    missing = [p for p in packages if not any(fnmatch.fnmatch(p, pattern) for pattern in include)]
    assert packages and not missing, f"add {missing} to [tool.setuptools.packages.find] include"
