"""What every scenario shares: result rows, the stack it runs against, seeding helpers, stats.

The stack (moto, Postgres, the Meta sandbox and the local API) runs in its own process
(bench/serve.py), so the functions measured here, the load generator and the fake Meta never
share one interpreter lock. This process plays the Lambda container: it gets the stack's
environment and calls handlers directly, as the Lambda runtime would.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from devstack import console

ROOT = Path(__file__).resolve().parent.parent
AUTH_SCOPES = ["ads_read", "ads_management", "business_management",
               "whatsapp_business_management", "whatsapp_business_messaging"]


def say(message: str) -> None:
    """Progress for the person running `make bench` (stdout itself goes to the bench log: the
    functions under test log JSON lines there, as they would to CloudWatch)."""
    console.say(message)


def capture_stdout(log_path: Path) -> None:
    """Send fd 1 (the handlers' Powertools logs, children's output) to `log_path`; keep the
    terminal for `say`."""
    console.capture_output(log_path)


class ScenarioSkipped(Exception):
    """The feature a scenario measures is not in the tree yet (e.g. its function is missing)."""


@dataclass
class Row:
    scenario: str
    project: str
    baseline: str
    ratio: str
    goal: str
    met: bool | None  # None: reported, no goal to meet
    command: str


@dataclass
class ScenarioResult:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # markdown lines for the scenario's section
    data: dict[str, Any] = field(default_factory=dict)  # raw figures, kept in BENCHMARKS.md
    ran_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    seconds: float = 0.0
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ScenarioResult:
        rows = [Row(**r) for r in raw.get("rows", [])]
        return cls(**{**raw, "rows": rows})


def command_for(scenario: str) -> str:
    return f"make bench ONLY={scenario}"


# -- formatting -------------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:,.2f} s"


def times(value: float) -> str:
    return f"{value:,.2f}×" if value < 100 else f"{value:,.0f}×"


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def max_in_window(timestamps: list[float], window: float = 1.0) -> int:
    """The most events inside any window of `window` seconds (sliding, not aligned)."""
    ordered = sorted(timestamps)
    best, start = 0, 0
    for end, ts in enumerate(ordered):
        while ts - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def per_aligned_second(timestamps: list[float]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for ts in timestamps:
        counts[int(ts)] = counts.get(int(ts), 0) + 1
    return counts


# -- the stack, one process per service ------------------------------------------------------
@dataclass
class RemoteStack:
    """moto, the Meta sandbox and the local API each in a bench/serve.py process, Postgres
    provisioned as devstack does (embedded pgserver, or $DATABASE_URL's server); the same
    environment devstack's LocalStack exports is exported to this process."""

    workers: int = 16
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))

    def _spawn(self, role: str, port: int, env: dict[str, str] | None = None,
               extra: list[str] | None = None) -> str:
        ready = self.log_dir / f"{role}.ready.json"
        log = open(self.log_dir / f"{role}.log", "wb")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.serve", role, "--ready-file", str(ready),
             "--port", str(port), *(extra or [])],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
        self._procs.append((proc, log))
        self.pids[role] = proc.pid
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bench {role} did not start; see {log.name}")
            time.sleep(0.1)
        return json.loads(ready.read_text())["url"]

    def start(self) -> RemoteStack:
        from devstack import aws_local
        from devstack.postgres import provision
        from devstack.stack import local_env, reset_caches

        self._procs: list[tuple[subprocess.Popen, Any]] = []
        self.pids: dict[str, int] = {}
        self.database = None
        self.aws_endpoint = self._spawn("moto", aws_local.free_port())
        self.sandbox_url = self._spawn("sandbox", aws_local.free_port())
        self.database = provision()
        self.owner_dsn = self.database.owner_dsn
        api_port = aws_local.free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        tables = aws_local.create_tables(self.aws_endpoint)
        self.env = local_env(aws_endpoint=self.aws_endpoint, sandbox_url=self.sandbox_url,
                             api_url=self.api_url, frontend_url=self.api_url,
                             database=self.database, tables=tables)
        os.environ.update(self.env)
        reset_caches()
        self._spawn("api", api_port, self.env, ["--workers", str(self.workers)])
        return self

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by this process and each stack process, and by
        every Postgres backend of the database (the embedded server's processes)."""
        import psutil

        out = {"function (this process)": sum(os.times()[:2])}
        for role, pid in self.pids.items():
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                out[role] = times.user + times.system
        postgres = 0.0
        for proc in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if proc.info["name"] == "postgres":
                    times = proc.cpu_times()
                    postgres += times.user + times.system
        out["postgres (all servers)"] = postgres
        return out

    def stop(self) -> None:
        for proc, _log in getattr(self, "_procs", []):
            with contextlib.suppress(Exception):
                proc.stdin.close()  # each role stops at EOF
        for proc, log in getattr(self, "_procs", []):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(timeout=10)
            log.close()
        self._procs = []
        if getattr(self, "database", None) is not None:
            from devstack.stack import reset_caches

            reset_caches()  # close this process's connections before the database goes
            self.database.drop()
            self.database = None

    def __enter__(self) -> RemoteStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BenchContext:
    """Handed to every scenario: the stack (started on first use), the sandbox and helpers."""

    def __init__(self, *, quick: bool = False) -> None:
        self.quick = quick
        self._stack: RemoteStack | None = None

    @property
    def stack(self) -> RemoteStack:
        if self._stack is None:
            say("   starting the local stack (moto, Postgres, Meta sandbox, local API)...")
            self._stack = RemoteStack().start()
        return self._stack

    def close(self) -> None:
        if self._stack is not None:
            self._stack.stop()
            self._stack = None

    # -- sandbox ----------------------------------------------------------------------------
    def control(self):
        from sandbox.control import SandboxControl

        return SandboxControl(self.stack.sandbox_url, timeout=120)

    def bench_control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """bench/sandbox_bench.py's endpoints, attached to the sandbox by bench/serve.py."""
        response = httpx.request(method, f"{self.stack.sandbox_url}/__sandbox/bench{path}",
                                 json=body, timeout=300)
        response.raise_for_status()
        return response.json()

    @contextlib.contextmanager
    def latency(self, ms_: float, path: str = ".*", method: str | None = None) -> Iterator[None]:
        with self.control() as control:
            control.set_latency(path, ms_, method)
            try:
                yield
            finally:
                control.clear_latency()

    # -- API --------------------------------------------------------------------------------
    def headers(self, tenant_id: str, role: str = "admin") -> dict[str, str]:
        from devstack import jwt_tokens

        return {"Authorization": f"Bearer {jwt_tokens.sign(tenant_id, role=role)}"}

    def http(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.stack.api_url, timeout=timeout)

    # -- tenants and their Meta connection ----------------------------------------------------
    @staticmethod
    def new_tenant(prefix: str = "bench") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    def connect(self, tenant_id: str, token: str, *, expires_at: datetime | None = None,
                user_id: str = "10001", scopes: list[str] | None = None) -> None:
        """Store a Meta token for the tenant as the OAuth callback would (encrypted)."""
        from shared.connection import credentials
        from shared.platform.db import tenant_tx

        self.stack  # noqa: B018 - the environment must be in place first
        expiry = expires_at or datetime.now(UTC) + timedelta(days=60)
        with tenant_tx(tenant_id) as conn:
            credentials.save(conn, tenant_id, token, expires_at=expiry,
                             data_access_expires_at=datetime.now(UTC) + timedelta(days=90),
                             meta_user_id=user_id, scopes=list(scopes or AUTH_SCOPES))

    def connect_many(self, pairs: list[tuple[str, str]], *, expires_at: datetime,
                     user_id: str = "10001", workers: int = 8) -> None:
        def one(pair: tuple[str, str]) -> None:
            self.connect(pair[0], pair[1], expires_at=expires_at, user_id=user_id)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, pairs))

    def owner_conn(self):
        import psycopg

        return psycopg.connect(self.stack.owner_dsn, autocommit=True)


def cpu_split(before: dict[str, float], after: dict[str, float], per: int,
              unit: str) -> str:
    """'function 12 ms, sandbox 8 ms, ...' CPU per `unit` between two cpu_seconds() readings."""
    parts = []
    for key, value in after.items():
        used = value - before.get(key, 0.0)
        if used > 0:
            parts.append(f"{key} {used / per * 1000:,.1f} ms")
    return f"CPU per {unit}: " + ", ".join(parts)


def function_cpu_ms(cpu: str) -> float | None:
    """The function's own CPU per unit, read back from a cpu_split() line."""
    marker = "function (this process) "
    if marker not in cpu:
        return None
    return float(cpu.split(marker, 1)[1].split(" ms", 1)[0].replace(",", ""))


def function_exists(name: str) -> bool:
    return (ROOT / "functions" / name / "app.py").exists()


def require_functions(*names: str) -> None:
    missing = [n for n in names if not function_exists(n)]
    if missing:
        raise ScenarioSkipped(f"not in the tree yet: functions/{', functions/'.join(missing)}")


def scheduled_event() -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "000000000000", "time": now,
            "region": "us-east-1", "resources": [], "detail": {}}


def template_timeout(function: str) -> int:
    """The Timeout template.yaml gives a function (folder name), else the global one."""
    from devstack.template import load_template, resources

    template = load_template()
    default = int(template.get("Globals", {}).get("Function", {}).get("Timeout", 3))
    for props in resources("AWS::Serverless::Function").values():
        if props.get("Handler", "").startswith(f"functions/{function}/"):
            return int(props.get("Timeout", default))
    return default
