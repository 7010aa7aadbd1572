"""Narration for a person at the terminal while the local stack's own output goes to a file.

The functions log JSON lines to stdout (as they would to CloudWatch), and moto and the local
servers write access lines: useful in a log, noise between the steps of `make demo` or the
progress of `make bench`. `capture_output` points file descriptors 1 and 2 at a log file (so
child processes and C-level writes follow) and keeps a duplicate of the terminal for `say`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_console = sys.stdout


def say(message: str = "") -> None:
    print(message, file=_console, flush=True)


def capture_output(log_path: Path, *, stderr: bool = False) -> None:
    """From now on stdout (and stderr too, when asked) goes to `log_path`; `say` still prints
    to the terminal."""
    global _console
    sys.stdout.flush()
    sys.stderr.flush()
    _console = os.fdopen(os.dup(1), "w", buffering=1)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    if stderr:
        os.dup2(log.fileno(), 2)
