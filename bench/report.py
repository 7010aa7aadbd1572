"""Writes BENCHMARKS.md: the machine, one table of every row, a section per scenario.

The raw results ride along in an HTML comment at the end of the file, so a run of one scenario
(`make bench ONLY=wizard`) replaces that scenario's rows and keeps the others.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, ScenarioResult

ORDER = ["cold_start", "wizard", "token_refresh", "hsm_dispatch", "scale", "speed_to_lead",
         "api_load", "kms"]
_DATA = re.compile(r"<!-- bench-data\n(.*?)\n-->", re.S)


def machine() -> dict[str, str]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, text=True,
                               capture_output=True, check=False).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB" if mem_kb else "unknown",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "cpu": _cpu_model(),
        "load average at start": " / ".join(f"{x:.2f}" for x in load),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": (commit + (" + uncommitted changes" if dirty else "")) or "unknown",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_previous(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    found = _DATA.search(path.read_text())
    if not found:
        return {}
    try:
        return json.loads(found.group(1))
    except ValueError:
        return {}


def merge(previous: dict[str, Any], results: list[ScenarioResult],
          machine_info: dict[str, str]) -> dict[str, Any]:
    scenarios = dict(previous.get("scenarios", {}))
    for result in results:
        scenarios[result.name] = {**result.to_json(), "machine": machine_info}
    return {"machine": machine_info, "scenarios": scenarios}


def _met(value: bool | None) -> str:
    return "—" if value is None else "yes" if value else "**no**"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(data: dict[str, Any]) -> str:
    machine_info = data["machine"]
    scenarios = {name: ScenarioResult.from_json({k: v for k, v in raw.items() if k != "machine"})
                 for name, raw in data["scenarios"].items()}
    names = [n for n in ORDER if n in scenarios] + sorted(set(scenarios) - set(ORDER))
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (the harness is `bench/`; `make bench ONLY=<scenario>` reruns "
        "one scenario and keeps the other rows). The machine is shared and noisy, so every "
        "figure is either a ratio against a baseline measured in the same run, or a count "
        "that noise cannot change (round trips, KMS calls, sends in a one-second window). "
        "Meta is the local sandbox with latency injected per request; AWS is moto; Postgres "
        "is the embedded server (or `$DATABASE_URL`).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_cell(v)} |" for k, v in machine_info.items()]
    lines += [
        "",
        "## Results",
        "",
        "| scenario | this project | baseline | ratio | goal | met? | reproduce |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        result = scenarios[name]
        if result.skipped:
            lines.append(f"| {_cell(result.title)} | not run: {_cell(result.skipped)} | | | | "
                         f"— | `make bench ONLY={name}` |")
        for row in result.rows:
            lines.append("| " + " | ".join(_cell(x) for x in (
                row.scenario, row.project, row.baseline, row.ratio, row.goal)) +
                f" | {_met(row.met)} | `{row.command}` |")
    for name in names:
        result = scenarios[name]
        lines += ["", f"## {result.title}", "",
                  f"`make bench ONLY={name}` — ran {result.ran_at}, took {result.seconds:,.0f} s."]
        if result.skipped:
            lines += ["", f"Not run: {result.skipped}"]
        if result.notes:
            lines += ["", *result.notes]
    lines += ["", "<!-- bench-data", json.dumps(data, indent=1, sort_keys=True, default=str),
              "-->", ""]
    return "\n".join(lines)


def write(path: Path, results: list[ScenarioResult], machine_info: dict[str, str]) -> None:
    data = merge(load_previous(path), results, machine_info)
    path.write_text(render(data))
