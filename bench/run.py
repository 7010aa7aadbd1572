"""`python -m bench [--only a,b] [--out BENCHMARKS.md]`: run the scenarios, write the report.

    make bench                      every scenario (about 10 minutes on 2 cores)
    make bench ONLY=wizard          one scenario (or a comma list); the other rows are kept
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
import traceback
from pathlib import Path

from bench import report
from bench.common import ROOT, BenchContext, ScenarioResult, ScenarioSkipped, capture_stdout, say

SCENARIOS = {
    "cold_start": "Cold start per function",
    "wizard": "Ad-account wizard: 20 businesses at 100 ms Graph latency",
    "token_refresh": "Token refresh: 2,000 expiring tokens at 100 ms latency",
    "hsm_dispatch": "HSM dispatch: 5,000 leads at 150 ms send latency",
    "scale": "Dispatch at scale: 1,000 tenants, planner and 1/4/16 SQS workers",
    "api_load": "API under load: 100 users for 60 s",
    "kms": "KMS calls per 1,000 decrypts (one tenant, one warm container)",
    "speed_to_lead": "Speed to lead: 1,000 lead-form leads in a minute to WhatsApp",
}
# Cheap and independent scenarios first, so a failure late in the run costs the least.
RUN_ORDER = ["kms", "cold_start", "wizard", "token_refresh", "hsm_dispatch", "scale",
             "speed_to_lead", "api_load"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks and write BENCHMARKS.md")
    parser.add_argument("--only", default="", help="comma list of: " + ", ".join(SCENARIOS))
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--log", default=None,
                        help="where stdout (the functions' logs) goes;"
                        " default .cache/local/bench.log")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions (to try the harness, not for the report)")
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()] or RUN_ORDER
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    # Before anything imports shared.platform.observability or boto3 (the stack sets the rest).
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "marketing-hub")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    machine = report.machine()
    log_path = ROOT / ".cache" / "local" / "bench.log" if args.log is None else Path(args.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    capture_stdout(log_path)
    say(f"bench: {', '.join(wanted)} on {machine['nproc']} cores, {machine['python']}; "
        f"the functions' own log lines go to {log_path}")
    ctx = BenchContext(quick=args.quick)
    results: list[ScenarioResult] = []
    failed = False
    try:
        for name in [s for s in RUN_ORDER if s in wanted]:
            say(f"\n== {name}: {SCENARIOS[name]}")
            started = time.monotonic()
            try:
                result = importlib.import_module(f"bench.{name}").run(ctx)
            except ScenarioSkipped as exc:
                result = ScenarioResult(name, SCENARIOS[name], skipped=str(exc))
                say(f"   skipped: {exc}")
            except Exception as exc:  # one scenario failing must not lose the others' figures
                say(traceback.format_exc())
                result = ScenarioResult(name, SCENARIOS[name],
                                        skipped=f"failed: {type(exc).__name__}: {exc}"[:300])
                failed = True
            result.seconds = time.monotonic() - started
            results.append(result)
            for row in result.rows:
                mark = "—" if row.met is None else "met" if row.met else "MISSED"
                say(f"   {row.scenario}: {row.project} vs {row.baseline} ({row.ratio}); "
                    f"goal {row.goal}: {mark}")
            report.write(Path(args.out), results, machine)  # keep what we have so far
    finally:
        ctx.close()
    say(f"\nwrote {args.out}")
    return 1 if failed else 0
