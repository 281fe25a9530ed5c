"""`pip install .` gives a working `benchbed` with every built-in plugin:
the wheel carries plugins/ as the package benchbed_plugins."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.mark.slow  # builds and unpacks a wheel in a subprocess
def test_the_wheel_carries_every_builtin_plugin_and_the_command(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path), str(REPO)], capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("benchbed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.split("/", 1)[1] for n in names if n.startswith("benchbed_plugins/")}
    in_repo = {p.relative_to(REPO / "plugins").as_posix() for p in (REPO / "plugins").rglob("*.py")}
    assert in_repo and in_repo <= shipped, in_repo - shipped
    core = {p.relative_to(REPO).as_posix() for p in (REPO / "benchbed").rglob("*.py")}
    assert core <= set(names), core - set(names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "benchbed = benchbed.cli:main" in text
