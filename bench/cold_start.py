"""Cold start per function, of the package `sam build` makes: what Lambda runs.

Each function's package is built by the same make targets as `make deploy`'s (`make bench-build`):
its own folder of functions/, the shared packages it imports, the dependencies, and unchecked-hash
bytecode for Python 3.12. For x86_64, the same packaging with another wheel platform: arm64 wheels
cannot run on this machine. A fresh interpreter (Python 3.12 where the machine has one, else 3.11;
the report says which) runs a copy of the package whose directories are read-only (`chmod
a-w`), with PYTHONDONTWRITEBYTECODE=1 and nothing but the package on sys.path (`-S`,
PYTHONPATH), as Lambda runs /var/task: it imports the handler and serves the function's first
event. After the rounds, the copies are checked to hold exactly the files they held before (which
is what holds where the bench runs as root, whom permissions do not stop), and each child counts
the modules it loaded from the package without bytecode beside them.

Baseline, in the same rounds and run the same way: the Powertools hello-world starter of
`sam init` (bench/powertools_hello: a REST API resolver, Logger, Tracer, Metrics; one dependency,
aws-lambda-powertools[tracer]) packaged the default `sam build` way, i.e. without bytecode.
Beside each package: the same code run from a warm developer venv (requirements.txt only, in
.cache/local/bench-runtime-<version>, with the bytecode its earlier runs wrote), which was this
scenario's figure before the packages held bytecode.

Each function serves its events/<function>_*.json sample (a minimal event when it has none) with
the stack's environment, so the first event does its real work: it reads the database, calls
moto's DynamoDB/KMS or the sandbox, or fails the way it would in production (e.g. 409
meta_not_connected for a tenant without a token). Rounds interleave the baseline and the
functions in random order; each figure is the median over the rounds. Peak memory is the child's.

For a function over a goal, one more child runs under `python -X importtime` and the report names
the packages whose imports cost the most beyond the baseline's.
"""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    BenchContext,
    Row,
    ScenarioResult,
    command_for,
    median,
    ms,
    say,
    scheduled_event,
    times,
)

NAME = "cold_start"
GOAL_BASELINE = 1.0
GOAL_VENV = 1.2
BASELINE = "(baseline) Powertools hello"
CHILD = ROOT / "bench" / "cold_child.py"
SKIP = {"db_migrate": "deploy-time CloudFormation custom resource (runs the migrations), not "
                      "on any request path"}
_AVOID = ("denied", "no_", "bad", "invalid", "forbidden", "missing", "unauth", "error",
          "malformed", "other", "cross", "wrong", "expired", "unsigned", "forged", "replay",
          "oversize", "empty", "not_")


def functions_in_template() -> dict[str, dict[str, Any]]:
    """folder name -> {logical_id, module, timeout, route} for every function of template.yaml."""
    from devstack.template import http_routes, load_template, resources

    template = load_template()
    default_timeout = int(template.get("Globals", {}).get("Function", {}).get("Timeout", 3))
    routes = {r.handler: r for r in http_routes()}
    out = {}
    for logical_id, props in resources("AWS::Serverless::Function").items():
        handler = props["Handler"]
        folder = handler.split("/")[1]
        out[folder] = {"logical_id": logical_id,
                       "module": handler.rsplit(".", 1)[0].replace("/", "."),
                       "timeout": int(props.get("Timeout", default_timeout)),
                       "route": routes.get(handler)}
    return out


def pick_event(function: str, names: list[str]) -> Path | None:
    candidates = []
    for path in sorted((ROOT / "events").glob("*.json")):
        stem = path.stem
        owner = max((n for n in names if stem.startswith(f"{n}_") or stem == n),
                    key=len, default=None)
        if owner == function:
            candidates.append(path)
    if not candidates:
        return None
    return min(candidates, key=lambda p: (any(w in p.stem for w in _AVOID), p.name))


def minimal_event(route: Any, tenant_id: str) -> dict[str, Any]:
    if route is None:
        return scheduled_event()
    return {
        "version": "2.0", "routeKey": f"{route.method} {route.path}", "rawPath": route.path,
        "rawQueryString": "", "headers": {"host": "localhost"}, "isBase64Encoded": False,
        "requestContext": {
            "http": {"method": route.method, "path": route.path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "bench", "routeKey": f"{route.method} {route.path}",
            "stage": "$default", "authorizer": {"jwt": {"claims": {
                "custom:tenant_id": tenant_id, "custom:role": "admin", "sub": "user-1"},
                "scopes": None}}},
    }


def find_python() -> tuple[str, str]:
    """(version, interpreter): Lambda's 3.12 on PATH or in pyenv, else this machine's 3.11."""
    for version in ("3.12", "3.11"):
        candidates = [shutil.which(f"python{version}") or ""]
        candidates += sorted(glob.glob(os.path.expanduser(
            f"~/.pyenv/versions/{version}.*/bin/python{version}")), reverse=True)
        for candidate in filter(None, candidates):
            done = subprocess.run([candidate, "-c", "import sys; print(sys.executable)"],
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0:  # a pyenv shim without that version fails here
                return version, done.stdout.strip()
    raise RuntimeError("no Python 3.12 or 3.11 to run the packages with")


def build_packages(version: str) -> tuple[Path, Path]:
    """`make bench-build`: the project's packages (x86_64) and the starter's, with sam."""
    say(f"  sam build (x86_64, Python {version}) of every function and of the starter...")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(["make", "--no-print-directory", "bench-build",
                           f"LAMBDA_PYTHON={version}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"make bench-build failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    return (ROOT / ".aws-sam" / f"build-x86_64-{version}",
            ROOT / ".aws-sam" / f"build-hello-{version}" / "HelloWorldFunction")


def runtime_python(interpreter: str, version: str) -> str:
    """A virtualenv with requirements.txt only, of the packages' Python, rebuilt when it changes."""
    venv = ROOT / ".cache" / "local" / f"bench-runtime-{version}"
    stamp = venv / ".installed"
    requirements = ROOT / "requirements.txt"
    python = venv / "bin" / "python"
    if not stamp.exists() or stamp.stat().st_mtime < requirements.stat().st_mtime:
        say(f"  building the developer venv ({venv.relative_to(ROOT)})...")
        for argv in ([interpreter, "-m", "venv", "--clear", str(venv)],
                     [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                      "-r", str(requirements)]):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode:
                raise RuntimeError(f"{' '.join(argv[:3])} failed: {done.stderr[-800:]}")
        stamp.touch()
    return str(python)


def read_only_copy(package: Path, dest: Path) -> Path:
    """The package as /var/task holds it: no directory of it can take a new file (a .pyc).
    The files are hard links to the build's (copying 19 packages of ~90 MB each takes minutes
    on a busy disk); only the directories, which are the copy's own, lose their write bits."""
    shutil.copytree(package, dest, symlinks=True, copy_function=os.link)
    for path in [dest, *dest.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o555)
    return dest


def tree(package: Path) -> list[str]:
    return sorted(str(p.relative_to(package)) for p in package.rglob("*"))


def size_mb(package: Path) -> float:
    return sum(p.stat().st_size for p in package.rglob("*") if p.is_file()) / 2**20


def rest_event() -> dict[str, Any]:
    """The starter's sample: GET /hello through API Gateway's REST API (payload 1.0)."""
    return {"resource": "/hello", "path": "/hello", "httpMethod": "GET",
            "headers": {"Host": "localhost", "Accept": "*/*"}, "multiValueHeaders": {},
            "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": None, "stageVariables": None, "body": None,
            "isBase64Encoded": False,
            "requestContext": {"resourcePath": "/hello", "httpMethod": "GET",
                               "path": "/Prod/hello", "stage": "Prod", "requestId": "bench",
                               "identity": {"sourceIp": "127.0.0.1"}}}


class Target:
    """One way to start one handler: an interpreter, where its code lives, a module, an event."""

    def __init__(self, python: str, code: Path, module: str, event: Path, timeout: int,
                 isolated: bool) -> None:
        self.python, self.code, self.module = python, code, module
        self.event, self.timeout, self.isolated = event, timeout, isolated

    def run(self, function: str, env: dict[str, str], workdir: Path, importtime: bool = False,
            write_bytecode: bool = False) -> dict[str, Any]:
        out = workdir / f"{function}-{random.random():.9f}.json"  # noqa: S311
        # -S: no site-packages, only the package (PYTHONPATH), as in /var/task. -P: not the
        # script's folder either.
        argv = [self.python, "-s", "-P"] + (["-S"] if self.isolated else [])
        argv += ["-X", "importtime"] if importtime else []
        argv += [str(CHILD), self.module, str(self.event), str(out), function, str(self.timeout)]
        child_env = {**env, "PYTHONPATH": str(self.code)}
        if not write_bytecode:
            child_env["PYTHONDONTWRITEBYTECODE"] = "1"
        proc = subprocess.run(argv, cwd=self.code, env=child_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
        if not out.exists():
            raise RuntimeError(f"{function}: cold start child failed: {proc.stderr[-800:]}")
        result = json.loads(out.read_text())
        out.unlink()
        if importtime:
            result["importtime"] = parse_importtime(proc.stderr)
        return result


def parse_importtime(stderr: str) -> dict[str, float]:
    """Package -> ms spent importing its own modules (self time), from `-X importtime`."""
    costs: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        own = parts[0].split(":", 1)[1].strip()
        if len(parts) < 3 or not own.isdigit():
            continue
        root = parts[2].strip().split(".")[0]
        costs[root] = costs.get(root, 0.0) + int(own) / 1000.0
    return costs


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"total_s": median(r["total_s"] for r in runs),
            "import_s": median(r["import_s"] for r in runs),
            "first_event_s": median(r["first_event_s"] for r in runs),
            "cpu_s": median(r["cpu_s"] for r in runs),
            "maxrss_mb": max(r["maxrss_mb"] for r in runs),
            "modules": runs[-1]["modules"],
            "without_bytecode": max(r["without_bytecode"] for r in runs),
            "outcome": runs[-1]["outcome"]}


def run(ctx: BenchContext) -> ScenarioResult:
    result = ScenarioResult(NAME, "Cold start per function")
    rounds = 3 if ctx.quick else 7
    version, interpreter = find_python()
    builds, hello_build = build_packages(version)
    functions = functions_in_template()
    names = sorted(functions)
    venv_python = runtime_python(interpreter, version)
    env = {**os.environ, **ctx.stack.env}
    env.pop("PYTHONPATH", None)
    # Beside the builds, on their filesystem: the copies are hard links (read_only_copy).
    (ROOT / ".cache" / "local").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-cold-", dir=ROOT / ".cache" / "local"))
    tenant = ctx.new_tenant("bench-cold")

    hello_event = workdir / "hello.json"
    hello_event.write_text(json.dumps(rest_event()))
    copies = {BASELINE: read_only_copy(hello_build, workdir / "pkg" / "hello")}
    sizes = {BASELINE: size_mb(hello_build)}
    targets: dict[tuple[str, str], Target] = {
        (BASELINE, "built"): Target(interpreter, copies[BASELINE], "app", hello_event, 3, True)}
    sources: dict[str, str] = {}
    for name in names:
        if name in SKIP:
            continue
        info = functions[name]
        event = pick_event(name, names)
        if event is None:
            event = workdir / f"{name}.json"
            event.write_text(json.dumps(minimal_event(info["route"], tenant)))
            sources[name] = "minimal event (no events/ sample)"
        else:
            sources[name] = f"events/{event.name}"
        built = builds / info["logical_id"]
        sizes[name] = size_mb(built)
        copies[name] = read_only_copy(built, workdir / "pkg" / name)
        targets[(name, "built")] = Target(interpreter, copies[name], info["module"], event,
                                          info["timeout"], True)
        targets[(name, "venv")] = Target(venv_python, ROOT, info["module"], event,
                                         info["timeout"], False)
    before = {name: tree(copy) for name, copy in copies.items()}

    samples: dict[tuple[str, str], list[dict[str, Any]]] = {t: [] for t in targets}
    for key, target in targets.items():  # the page cache warm, the dev venv's bytecode written
        target.run(key[0].split()[-1], env, workdir, write_bytecode=key[1] == "venv")
    for _ in range(rounds):
        order = list(targets)
        random.shuffle(order)
        for key in order:
            samples[key].append(targets[key].run(key[0].split()[-1], env, workdir))
    written = [name for name, copy in copies.items() if tree(copy) != before[name]]
    if written:
        raise RuntimeError(f"a read-only package changed while it ran: {written}")

    base = summary(samples[(BASELINE, "built")])
    table = ["| function | first event | package | import | first event served | total (CPU) "
             "| dev venv total (CPU) | × baseline | × dev venv | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| baseline: Powertools hello starter | GET /hello ({base['outcome']}) "
             f"| {sizes[BASELINE]:.1f} MB, {base['modules']} modules loaded, "
             f"{base['without_bytecode']} without bytecode | {ms(base['import_s'])} "
             f"| {ms(base['first_event_s'])} | {ms(base['total_s'])} ({ms(base['cpu_s'])}) "
             "| | 1.00× | | "
             f"{base['maxrss_mb']:.0f} MB |"]
    misses: list[str] = []
    data: dict[str, Any] = {"rounds": rounds, "python": version, "baseline": base,
                            "baseline_size_mb": sizes[BASELINE], "functions": {}}
    base_imports = None
    for name in [n for n in names if (n, "built") in targets]:
        built, venv = summary(samples[(name, "built")]), summary(samples[(name, "venv")])
        ratio, vs_venv = built["total_s"] / base["total_s"], built["total_s"] / venv["total_s"]
        data["functions"][name] = {"built": built, "venv": venv, "ratio": ratio,
                                   "vs_venv": vs_venv, "size_mb": sizes[name],
                                   "event": sources[name]}
        result.rows.append(Row(
            scenario=f"cold start of the built package: {name} (import + first event; "
                     f"{sizes[name]:.0f} MB unzipped)",
            project=ms(built["total_s"]), baseline=ms(base["total_s"]), ratio=times(ratio),
            goal=f"≤ {GOAL_BASELINE:.1f}× Powertools hello", met=ratio <= GOAL_BASELINE,
            command=command_for(NAME)))
        result.rows.append(Row(
            scenario=f"cold start, built package vs dev venv: {name}",
            project=ms(built["total_s"]), baseline=ms(venv["total_s"]), ratio=times(vs_venv),
            goal=f"≤ {GOAL_VENV}× dev venv", met=vs_venv <= GOAL_VENV,
            command=command_for(NAME)))
        table.append(f"| {name} | {sources[name]} → {built['outcome']} | {sizes[name]:.0f} MB, "
                     f"{built['modules']} modules loaded, {built['without_bytecode']} without "
                     f"bytecode | {ms(built['import_s'])} | {ms(built['first_event_s'])} | "
                     f"{ms(built['total_s'])} ({ms(built['cpu_s'])}) | {ms(venv['total_s'])} "
                     f"({ms(venv['cpu_s'])}) | {times(ratio)} | "
                     f"{times(vs_venv)} | {built['maxrss_mb']:.0f} MB |")
        if vs_venv > GOAL_VENV:
            misses.append(f"- `{name}` against the dev venv: median CPU time "
                          f"{ms(built['cpu_s'])} built, {ms(venv['cpu_s'])} dev venv "
                          f"({times(built['cpu_s'] / venv['cpu_s'])}); wall time "
                          f"{ms(built['total_s'])} against {ms(venv['total_s'])}.")
        if ratio > GOAL_BASELINE:
            if base_imports is None:
                base_imports = targets[(BASELINE, "built")].run(
                    "hello", env, workdir, importtime=True)["importtime"]
            costs = targets[(name, "built")].run(name, env, workdir,
                                                 importtime=True)["importtime"]
            extra = sorted(((k, v - base_imports.get(k, 0.0)) for k, v in costs.items()),
                           key=lambda kv: -kv[1])[:6]
            misses.append(f"- `{name}` against the baseline: packages whose imports cost the "
                          "most beyond the "
                          "baseline's (`-X importtime` self time, one run): "
                          + ", ".join(f"`{k}` {v:,.0f} ms" for k, v in extra if v > 1))
    for path in [workdir, *workdir.rglob("*")]:  # writable again, to be removed
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(workdir)
    skipped = [f"`{n}` ({why})" for n, why in SKIP.items() if n in functions]
    root = os.geteuid() == 0
    result.notes += [
        f"Median of {rounds} fresh processes per package, interleaved with the baseline in "
        "random order; times are measured inside the child from just before the handler's "
        "import to the end of its first event (the interpreter's own start-up is the same for "
        f"all and left out). Interpreter: CPython {version} ({interpreter}); Lambda runs 3.12. "
        "Packages: `make bench-build`, i.e. `sam build` with the deploy's make targets for "
        "**x86_64** (the deployed packages are arm64, whose wheels cannot run on this x86_64 "
        "machine; the packaging is otherwise the same), each run from a copy with read-only "
        "directories, PYTHONDONTWRITEBYTECODE=1 and only the package on sys.path; the copies "
        f"were checked unchanged after the rounds{' (the bench ran as root)' if root else ''}. "
        "The starter likewise, built by sam's default Python "
        "workflow (no bytecode: every module it loads is compiled on each cold start, as in "
        "Lambda). Dev venv: the same code from the repository with a virtualenv of "
        "requirements.txt, bytecode already written. Environment: the local stack's (moto, "
        "Postgres, sandbox), POWERTOOLS_TRACE_DISABLED=true as in the tests. The machine "
        "(2 cores) was running other test suites at the same time.",
        "",
        *table,
    ]
    if skipped:
        result.notes += ["", "Not measured: " + "; ".join(skipped) + "."]
    if misses:
        result.notes += ["", "Over a goal, and where the time goes:", *misses]
    result.notes += [
        "",
        "What makes the packages start fast: bytecode for every module, ours and the "
        "dependencies', compiled by Python 3.12 with `--invalidation-mode unchecked-hash` "
        "(Lambda's /var/task is read-only: without it every cold start compiles every module it "
        "imports, which is what the starter does); the cyclic garbage collector paused while a "
        "handler's imports run (`functions/__init__.py`) and resumed with the import-time "
        "objects frozen (`shared.platform.observability.entrypoint`); lazy imports, so that a "
        "first event that does not need them does not pay for them (botocore clients from one "
        "session created on first use, boto3 never imported; httpx, `shared.meta.graph`, "
        "`shared.platform.crypto` and `cryptography` only where a call needs them; "
        "`tests/test_cold_imports.py` keeps it so).",
        "",
        "Not in these figures: the database secret. In AWS the first event reads it from "
        "Secrets Manager (Powertools parameters, which imports boto3, creates a client and "
        "makes one call), where the local stack sets DATABASE_URL.",
    ]
    result.data = data
    return result
