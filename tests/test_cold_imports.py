"""Importing a handler loads only what its first event may need (`make bench ONLY=cold_start`).

The Graph client (httpx), boto3 and the token cipher are imported where they are used, so a
fresh container answering e.g. "not connected" never pays for them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# db_migrate is a deploy-time custom resource (it answers CloudFormation over httpx).
HANDLERS = sorted(f"functions.{p.parent.name}.app" for p in ROOT.glob("functions/*/app.py")
                  if p.parent.name != "db_migrate")
ON_USE_ONLY = ("httpx", "boto3", "shared.meta.graph", "shared.platform.crypto", "cryptography")


def test_no_handler_imports_what_only_a_meta_or_kms_call_needs():
    # Given a fresh interpreter
    code = ("import gc, importlib, json, sys\n"
            "paused = []\n"
            f"for name in {HANDLERS!r}:\n"
            "    importlib.import_module(name)\n"
            "    paused += [] if gc.isenabled() else [name]\n"
            f"print(json.dumps([[m for m in {ON_USE_ONLY!r} if m in sys.modules], paused]))\n")
    # When every handler module is imported
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120,
                          env={**os.environ, "POWERTOOLS_TRACE_DISABLED": "true"})
    # Then none of the on-use modules is loaded, and the garbage collector that
    # functions/__init__.py pauses for the imports runs again once each handler is loaded
    assert len(HANDLERS) >= 14
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[], []]
