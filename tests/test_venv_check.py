"""A .venv made by another Python no longer makes every `make` fail the same way: the Makefile
(devstack/venv_check.py) rebuilds it, or says exactly what to run. Fake venvs, no installs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "devstack" / "venv_check.py"


def _fake_python(path: Path, version: str) -> Path:
    """An executable that answers the version query as a Python of `version` would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _venv(tmp_path: Path, *, version: str | None) -> Path:
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /opt/python-gone/bin\nversion = 3.10.4\n")
    if version is None:  # its interpreter was removed (or lives on another machine)
        (venv / "bin" / "python").symlink_to("/opt/python-gone/bin/python3.10")
    else:
        _fake_python(venv / "bin" / "python", version)
    (venv / ".installed").touch()
    return venv


def _check(venv: Path, python: str, origin: str = "file") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(venv), python, origin],
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_venv_whose_python_is_gone_is_rebuilt(tmp_path):
    venv = _venv(tmp_path, version=None)
    done = _check(venv, sys.executable)
    assert done.returncode == 0
    assert done.stdout.startswith(f"{venv}'s Python (/opt/python-gone/bin) does not run here: "
                                  f"rebuilding {venv} with {sys.executable}")
    assert not venv.exists()


def test_an_explicit_python_of_another_version_rebuilds_it(tmp_path):
    venv = _venv(tmp_path, version="3.12.1")
    done = _check(venv, sys.executable, "command line")
    assert done.returncode == 0
    assert f"was made by Python 3.12.1, and PYTHON={sys.executable} is 3.1" in done.stdout
    assert not venv.exists()


def test_a_working_venv_is_left_alone_when_python_was_not_chosen(tmp_path):
    venv = _venv(tmp_path, version="3.12.1")
    done = _check(venv, sys.executable, "file")
    assert (done.returncode, done.stdout) == (0, "")
    assert (venv / ".installed").exists()


def test_a_linked_venv_is_not_removed_but_explained(tmp_path):
    shared = _venv(tmp_path / "elsewhere", version=None)
    link = tmp_path / "project" / ".venv"
    link.parent.mkdir()
    link.symlink_to(shared)
    done = _check(link, sys.executable)
    assert done.returncode == 3
    assert f"remove the link (rm {link}) and run make again" in done.stdout
    assert link.is_symlink() and shared.exists()


def test_a_python_too_old_to_build_one_is_named(tmp_path):
    old = _fake_python(tmp_path / "bin" / "python3.9", "3.9.18")
    done = _check(tmp_path / ".venv", str(old))
    assert done.returncode == 3
    assert done.stdout.startswith(f"PYTHON={old} is Python 3.9.18; this project needs Python "
                                  "3.11+: pick one, e.g. make PYTHON=python3.12 demo")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_rebuilds_instead_of_failing(tmp_path):
    """`make -n demo` in a copy of the project whose .venv came from a Python now gone."""
    for name in ("Makefile", "pyproject.toml", "requirements.txt", "docs-ui-requirements.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "devstack").mkdir()
    shutil.copy(CHECK, tmp_path / "devstack" / "venv_check.py")
    venv = _venv(tmp_path, version=None)
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["make", "-n", "demo"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "does not run here: rebuilding .venv" in done.stdout
    assert f"{sys.executable} -m venv .venv" in done.stdout
    assert not venv.exists()
    missing = subprocess.run(["make", "-n", "demo", "PYTHON=python2.1-nowhere"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode != 0
    assert "PYTHON=python2.1-nowhere is not installed here" in missing.stderr
