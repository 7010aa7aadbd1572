"""Prints the parameter overrides for `sam deploy`: the environment's own from samconfig.toml,
plus `MigrationsHash` (a command-line --parameter-overrides replaces samconfig's, so both are
given together). A new hash makes CloudFormation run the migration custom resource again."""

from __future__ import annotations

import hashlib
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def migrations_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "migrations").glob("*.sql")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def overrides(config_env: str) -> str:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    own = config[config_env]["deploy"]["parameters"].get("parameter_overrides", "")
    return f"{own} MigrationsHash={migrations_hash()}".strip()


if __name__ == "__main__":
    print(overrides(sys.argv[1] if len(sys.argv) > 1 else "default"))
