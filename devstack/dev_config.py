"""What `make dev` and `make demo` read from the environment, checked before anything starts.

A wrong value is one line that names the variable, says what is wrong and how to fix it, never a
traceback from deep inside the stack.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devstack.cors import origin_of

DEFAULT_PORT = 3000


class ConfigError(Exception):
    """A setting that cannot work; str() is the one line to print."""


@dataclass(frozen=True)
class DevConfig:
    port: int
    # The CRM frontend's origin (template parameter FrontendUrl): allowed by CORS and where the
    # OAuth callback returns. None: the local API's own origin (the reference page).
    frontend_url: str | None
    database_url: str | None


def _port(value: str | None) -> int:
    if value is None or not value.strip():
        return DEFAULT_PORT
    try:
        port = int(value.strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ConfigError(f"PORT={value!r} is not a port number (1-65535), e.g. "
                          f"PORT=3001 make dev")
    return port


def _frontend(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return origin_of(value)
    except ValueError as exc:
        raise ConfigError(f"CORS_ORIGIN: {exc}") from None


def printable_dsn(dsn: str) -> str:
    """The DSN without its password, for a message."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparsable)"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**params)


def _database_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ConfigError(f"DATABASE_URL is not a PostgreSQL connection string ({reason}); "
                          "expected e.g. postgresql://user:password@localhost:5432/postgres, "
                          "or leave it unset for the embedded Postgres") from None
    return value


def from_environment(environ: Mapping[str, str] = os.environ) -> DevConfig:
    return DevConfig(port=_port(environ.get("PORT")),
                     frontend_url=_frontend(environ.get("CORS_ORIGIN")),
                     database_url=_database_url(environ.get("DATABASE_URL")))


def check_database(dsn: str) -> None:
    """Connect once, before anything starts (the stack creates a fresh database there)."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"DATABASE_URL: cannot connect to {printable_dsn(dsn)}: {reason}") \
            from None
