"""`make dev` (python -m devstack.dev) as a person starts it: a wrong setting is one line that
says what is wrong, and Ctrl-C during the start, as a terminal sends it to the whole process
group, leaves no server and no temporary directory behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from devstack.aws_local import free_port
from devstack.dev_config import DEFAULT_PORT, ConfigError, from_environment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(stack, tmp_path) -> dict[str, str]:
    """The environment a person's shell has: none of the session stack's variables, a free
    port, and a temp directory of its own (TMPDIR) to look into afterwards."""
    clean = {k: v for k, v in stack.environment_before.items()
             if k not in ("DATABASE_URL", "PORT", "CORS_ORIGIN")}
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return {**clean, "PORT": str(free_port()), "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}


def _dev(env: dict[str, str], **changes: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devstack.dev"], cwd=ROOT,
                          env={**env, **changes}, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"PORT": "abc"}, "PORT='abc' is not a port number (1-65535)"),
    ({"PORT": "70000"}, "PORT='70000' is not a port number (1-65535)"),
    ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a PostgreSQL connection string"),
    ({"DATABASE_URL": "postgresql://crm:s3cret-pw@127.0.0.1:1/postgres"},
     "DATABASE_URL: cannot connect to "),
    ({"CORS_ORIGIN": "localhost:5173"}, "CORS_ORIGIN: 'localhost:5173' is not an origin"),
])
def test_a_wrong_setting_is_one_line_not_a_traceback(env, changes, expected):
    done = _dev(env, **changes)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(expected), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "s3cret-pw" not in done.stderr
    assert not list(Path(env["TMPDIR"]).iterdir())


def test_settings_default_to_the_documented_ones():
    config = from_environment({})
    assert (config.port, config.frontend_url, config.database_url) == (DEFAULT_PORT, None, None)
    config = from_environment({"PORT": " 3001 ", "CORS_ORIGIN": "http://LOCALHOST:5173/"})
    assert (config.port, config.frontend_url) == (3001, "http://localhost:5173")
    with pytest.raises(ConfigError):
        from_environment({"PORT": "0"})


def _postgres_using(directory: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(attrs=["name", "cmdline"]):
        if process.info["name"] in ("postgres", "initdb", "pg_ctl") and any(
                str(directory) in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def _initdb_running(tmp: Path) -> bool:
    return any(any(directory.iterdir()) for directory in tmp.glob("marketing-hub-pg-*"))


@pytest.mark.slow
def test_ctrl_c_while_postgres_starts_leaves_nothing_behind(env):
    tmp = Path(env["TMPDIR"])
    process = subprocess.Popen([sys.executable, "-m", "devstack.dev"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        # The embedded Postgres' data directory appears first, then initdb fills it: stop it
        # there (an interrupted initdb empties the directory but leaves it).
        deadline = time.monotonic() + 90
        while not _initdb_running(tmp) and process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _initdb_running(tmp), "Postgres never started"
        os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert "Traceback" not in output, output
    assert "no local services are left running" in output, output
    assert process.returncode in (0, 130), output
    # Only pgserver's lock directory stays (platformdirs' runtime dir, as on every run).
    assert [p.name for p in tmp.iterdir() if not p.name.startswith("runtime-")] == []
    assert _postgres_using(tmp) == []


@pytest.mark.slow
def test_make_dev_says_what_to_open_and_nothing_else(env):
    """The banner names the API reference, the sign-in route and the CORS origin; no warning
    of pgserver (XDG_RUNTIME_DIR) or of Powertools (no metrics) follows it, even after calls."""
    env = {k: v for k, v in env.items() if k != "XDG_RUNTIME_DIR"}
    env["CORS_ORIGIN"] = "http://localhost:5173"
    url = f"http://localhost:{env['PORT']}"
    process = subprocess.Popen([sys.executable, "-m", "devstack.dev"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Use ") and "as printed" in line:
                break
        token = httpx.post(f"{url}/__dev/session", json={"role": "member"}, timeout=30).json()
        stats = httpx.get(f"{url}/crm/marketing/stats", timeout=30,
                          headers={"Authorization": f"Bearer {token['token']}",
                                   "Origin": "http://localhost:5173"})
        assert stats.status_code == 200
        assert stats.headers["access-control-allow-origin"] == "http://localhost:5173"
        os.killpg(process.pid, signal.SIGINT)
        rest, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    for expected in (f"API docs    {url}/docs", f"POST {url}/__dev/session",
                     "Frontend    http://localhost:5173   CORS allows it",
                     "Stopped: no local services are left running."):
        assert expected in output, output
    for noise in ("XDG_RUNTIME_DIR", "No application metrics to publish", "Traceback",
                  "Warning"):
        assert noise not in output, output
