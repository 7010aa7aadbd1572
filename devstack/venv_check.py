"""Run by the Makefile before any target, with the Python it would build .venv with (stdlib only):
is .venv usable? A .venv whose Python is gone (made on another machine, or by a Python since
removed or upgraded), or made by another version than an explicit `make PYTHON=...` asks for,
made every later `make` fail with the same message. Now it is removed and rebuilt, with one line
saying why; a .venv that is a link to somebody else's is left alone, with what to run instead.

    python3 devstack/venv_check.py VENV PYTHON ORIGIN

ORIGIN is make's $(origin PYTHON): "command line" or "environment" when the person chose it.
Exit 0: go on (after removing a stale .venv); exit 3: stop, the message says what to run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

MINIMUM = (3, 11)
VERSION = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


def version_of(python: str) -> tuple[int, ...] | None:
    try:
        done = subprocess.run([python, "-c", VERSION], capture_output=True, text=True,
                              timeout=60, check=False)
    except OSError:
        return None
    try:
        return tuple(int(part) for part in done.stdout.strip().split("."))
    except ValueError:
        return None


def _text(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def _home(venv: Path) -> str:
    """Where pyvenv.cfg says the venv's Python came from."""
    try:
        for line in (venv / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("executable", "home"):
                return value.strip()
    except OSError:
        pass
    return "unknown"


def problem(venv: Path, python: str, explicit: bool) -> str | None:
    """Why `venv` cannot be used as it is, or None."""
    have = version_of(str(venv / "bin" / "python"))
    if have is None:
        return f"{venv}'s Python ({_home(venv)}) does not run here"
    if have < MINIMUM:
        return f"{venv} was made by Python {_text(have)}; this project needs 3.11+"
    if explicit:
        want = version_of(python)
        if want is not None and want[:2] != have[:2]:
            return (f"{venv} was made by Python {_text(have)}, and PYTHON={python} is "
                    f"{_text(want)}")
    return None


def main(argv: list[str]) -> int:
    venv, python, origin = Path(argv[0]), argv[1], argv[2]
    explicit = origin in ("command line", "environment")
    if not venv.exists() and not venv.is_symlink():
        reason = None
    else:
        reason = problem(venv, python, explicit)
        if reason and venv.is_symlink():
            print(f"{reason}. {venv} is a link to {venv.resolve()}: remove the link "
                  f"(rm {venv}) and run make again to build one here")
            return 3
    want = version_of(python)
    if (reason or not venv.exists()) and (want is None or want < MINIMUM):
        found = f"is Python {_text(want)}" if want else "does not run here"
        print(f"PYTHON={python} {found}; this project needs Python 3.11+: pick one, e.g. "
              f"make PYTHON=python3.12 demo")
        return 3
    if reason:
        print(f"{reason}: rebuilding {venv} with {python} ({_text(want)})")
        shutil.rmtree(venv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
