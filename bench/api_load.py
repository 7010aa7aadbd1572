"""The API under load: Locust, headless, 100 users for 60 s on the local API.

Data: one tenant with 100,000 leads (80% attributed to Meta campaigns, a tenth of them won with a
deal value, spread over 90 days), 1,000 campaigns with 90 days of daily insights (90,000 rows),
its Meta connection (token-status), a WhatsApp sender with 30 templates and 10 rules. It is
written with set-based SQL (generate_series) as the schema owner, then ANALYZEd, as a production
database's statistics would be.

The local API runs in its own process (bench/serve.py: 16 worker threads, each a warm
container with its own Postgres connection) and Locust in another (bench/locustfile.py), so the
load generator never shares the API's interpreter lock. Endpoints: stats, ROI, templates,
token-status and rules (no date range: the heaviest form), each at the same weight, plus the
baseline route /crm/bench/hello: the same edge (JWT check, resolver, claims, headers, entrypoint
decorators) and no query, measured in the same run under the same load.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    ROOT,
    BenchContext,
    Row,
    ScenarioResult,
    command_for,
    cpu_split,
    require_functions,
    say,
)

NAME = "api_load"
USERS = 100
SPAWN_RATE = 20
DURATION_S = 60
LIGHT_DURATION_S = 30  # the second pass, without stats and ROI
GOAL_P95_MS = 100.0
ENDPOINTS = ["stats", "roi", "templates", "token-status", "rules"]
BASELINE = "baseline: hello"

SEED_SQL = [
    """INSERT INTO tenant_meta_accounts (tenant_id, account_id, name, currency, timezone,
           account_status, last_synced_date, last_sync_finished_at)
       VALUES (%(t)s, 'act_91001', 'Cuenta principal', 'EUR', 'Europe/Madrid', 1,
               current_date - 1, now()),
              (%(t)s, 'act_91002', 'Cuenta secundaria', 'EUR', 'Europe/Madrid', 1,
               current_date - 1, now())""",
    """INSERT INTO meta_ads_campaigns (tenant_id, campaign_id, account_id, name, status,
           effective_status, objective, daily_budget, start_time, updated_time)
       SELECT %(t)s, (23850000000000000 + g)::text,
              CASE WHEN g %% 2 = 0 THEN 'act_91001' ELSE 'act_91002' END, 'Campaña ' || g,
              CASE WHEN g %% 6 = 5 THEN 'PAUSED' ELSE 'ACTIVE' END,
              CASE WHEN g %% 6 = 5 THEN 'PAUSED' ELSE 'ACTIVE' END, 'OUTCOME_LEADS',
              (1000 + 500 * (g %% 5))::text, now() - interval '120 days', now()
       FROM generate_series(1, %(campaigns)s) g""",
    """INSERT INTO meta_ads_insights (tenant_id, campaign_id, date, account_id, currency, spend,
           impressions, clicks, leads)
       SELECT %(t)s, (23850000000000000 + c)::text, current_date - d,
              CASE WHEN c %% 2 = 0 THEN 'act_91001' ELSE 'act_91002' END, 'EUR',
              ((c * 31 + d * 17) %% 5000) / 100.0, 800 + (c * 37 + d) %% 900,
              10 + (c * 7 + d) %% 60, (c + d) %% 5
       FROM generate_series(1, %(campaigns)s) c, generate_series(1, %(days)s) d""",
    """INSERT INTO leads (tenant_id, name, phone, status, created_at, lead_source,
           meta_campaign_id, deal_value, deal_currency, last_contacted_at)
       SELECT %(t)s, 'Lead ' || g, '+3471' || lpad(g::text, 7, '0'),
              CASE WHEN g %% 10 = 3 THEN 'won' WHEN g %% 10 = 1 THEN 'lost' ELSE 'new' END,
              now() - make_interval(days => g %% %(days)s, mins => g %% 1440),
              CASE WHEN g %% 5 = 0 THEN 'web' ELSE 'meta_ads' END,
              CASE WHEN g %% 5 = 0 THEN NULL
                   ELSE (23850000000000001 + g %% %(campaigns)s)::text END,
              CASE WHEN g %% 10 = 3 THEN 100 + g %% 900 END,
              CASE WHEN g %% 10 = 3 THEN 'EUR' END,
              CASE WHEN g %% 3 = 0 THEN now() - interval '1 day' END
       FROM generate_series(1, %(leads)s) g""",
    """INSERT INTO whatsapp_senders (tenant_id, waba_id, phone_number_id, display_phone_number,
           verified_name, quality_rating, messaging_limit_tier, max_per_second,
           templates_synced_at)
       VALUES (%(t)s, %(waba)s, %(phone)s, '+34 600 000 000', 'Bench Ventas', 'GREEN',
               'TIER_10K', 80, now())""",
    """INSERT INTO meta_templates (tenant_id, template_id, waba_id, name, language, category,
           status, components, quality_score, rejection_reason)
       SELECT %(t)s, %(waba)s || '-' || g, %(waba)s, 'plantilla_' || g, 'es', 'MARKETING',
              CASE WHEN g %% 7 = 0 THEN 'REJECTED' ELSE 'APPROVED' END,
              '[{"type": "BODY", "text": "Hola {{1}}, ¿te llamamos hoy?"}]'::jsonb, 'GREEN',
              CASE WHEN g %% 7 = 0 THEN 'PROMOTIONAL' END
       FROM generate_series(1, 30) g""",
    """INSERT INTO automation_rules (tenant_id, name, trigger_type, delay_hours, template_name,
           language, body_params, enabled)
       SELECT %(t)s, 'Regla ' || g, 'lead_followup', 24, 'plantilla_' || g, 'es',
              '["name"]'::jsonb, g %% 2 = 0
       FROM generate_series(1, 10) g""",
]


def seed(ctx: BenchContext, tenant: str, *, leads: int, campaigns: int, days: int) -> float:
    params = {"t": tenant, "leads": leads, "campaigns": campaigns, "days": days,
              "waba": f"waba-{tenant}", "phone": f"phone-{tenant}"}
    started = time.perf_counter()
    with ctx.owner_conn() as conn:
        with conn.transaction():
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
            for statement in SEED_SQL:
                conn.execute(statement, params)
        conn.execute("ANALYZE")
    with ctx.control() as control:
        token = control.issue_token(scopes=["ads_read", "ads_management"], kind="long")
    ctx.connect(tenant, token)
    return time.perf_counter() - started


def read_stats(prefix: Path) -> dict[str, dict[str, float]]:
    rows = {}
    with open(f"{prefix}_stats.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            requests = int(row["Request Count"])
            rows[row["Name"]] = {
                "requests": requests, "failures": int(row["Failure Count"]),
                "p50": float(row["50%"] or 0), "p95": float(row["95%"] or 0),
                "p99": float(row["99%"] or 0), "rps": float(row["Requests/s"] or 0),
                "error_rate": int(row["Failure Count"]) / requests if requests else 0.0,
            }
    return rows


def stats_query_ms(tenant: str) -> dict[str, float]:
    """The two big stats reads, timed in this process one at a time (median of 3)."""
    from shared import ads_stats, ads_stats_store
    from shared.db import tenant_tx

    period = ads_stats.DateRange(None, None)
    times: dict[str, list[float]] = {"insights": [], "leads": []}
    for _ in range(3):
        with tenant_tx(tenant) as conn:
            started = time.perf_counter()
            ads_stats_store.insight_totals(conn, tenant, *period.days)
            middle = time.perf_counter()
            ads_stats_store.lead_totals(conn, tenant, *period.days)
            done = time.perf_counter()
        times["insights"].append((middle - started) * 1000)
        times["leads"].append((done - middle) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def locust_run(ctx: BenchContext, label: str, jwt: str, users: int, duration: int,
               routes: list[str]) -> dict[str, dict[str, float]]:
    prefix = ctx.stack.log_dir / label
    say(f"   Locust: {users} users for {duration} s"
        + (f" on {', '.join(routes)}" if routes else "") + "...")
    env = {**os.environ, "BENCH_JWT": jwt, "BENCH_ROUTES": ",".join(routes)}
    locust = Path(sys.executable).with_name("locust")
    proc = subprocess.run(
        [str(locust), "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
         "-u", str(users), "-r", str(SPAWN_RATE), "-t", f"{duration}s",
         "--host", ctx.stack.api_url, "--csv", str(prefix), "--only-summary",
         "--loglevel", "WARNING", "--stop-timeout", "10"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=duration + 120, check=False)
    Path(f"{prefix}.out").write_text(proc.stdout)
    if not Path(f"{prefix}_stats.csv").exists():
        raise RuntimeError(f"locust wrote no stats (exit {proc.returncode}): "
                           f"{proc.stdout[-600:]}")
    return read_stats(prefix)


def run(ctx: BenchContext) -> ScenarioResult:
    require_functions("marketing_stats", "hsm_templates", "token_status", "hsm_rules")
    from devstack import jwt_tokens

    result = ScenarioResult(NAME, "API under load: 100 users for 60 s")
    leads, campaigns, days = 100_000, 1_000, 90
    users, duration = (20, 15) if ctx.quick else (USERS, DURATION_S)
    tenant = ctx.new_tenant("bench-load")
    say(f"   seeding {leads:,} leads, {campaigns:,} campaigns × {days} days of insights...")
    seed_s = seed(ctx, tenant, leads=leads, campaigns=campaigns, days=days)

    headers = ctx.headers(tenant, role="member")
    paths = {"stats": "/crm/marketing/stats", "roi": "/crm/marketing/stats/roi",
             "templates": "/crm/marketing/hsm/templates",
             "token-status": "/crm/marketing/token-status",
             "rules": "/crm/marketing/hsm/rules", BASELINE: "/crm/bench/hello"}
    with ctx.http() as http:  # import every function once and check the answers are real
        for path in paths.values():
            for _ in range(3):
                response = http.get(path, headers=headers)
                if response.status_code != 200:
                    raise AssertionError(f"{path}: HTTP {response.status_code} "
                                         f"{response.text[:200]}")
        stats = http.get(paths["stats"], headers=headers).json()

    unloaded = {}
    with ctx.http() as http:  # one request at a time: the latency without any contention
        for name, path in paths.items():
            times = []
            for _ in range(10):
                started = time.perf_counter()
                http.get(path, headers=headers).raise_for_status()
                times.append(time.perf_counter() - started)
            unloaded[name] = statistics.median(times) * 1000

    query_ms = stats_query_ms(tenant)
    jwt = jwt_tokens.sign(tenant, role="member", ttl=3600)
    cpu_before = ctx.stack.cpu_seconds()
    light_duration = duration // 2 if ctx.quick else LIGHT_DURATION_S
    figures = locust_run(ctx, "locust", jwt, users, duration, [])
    served = sum(f["requests"] for k, f in figures.items() if k != "Aggregated")
    cpu = cpu_split(cpu_before, ctx.stack.cpu_seconds(), max(served, 1), "request")
    light = [n for n in ENDPOINTS if n not in ("stats", "roi")]
    light_figures = locust_run(ctx, "locust-light", jwt, users, light_duration,
                               [*light, BASELINE])

    base = figures[BASELINE]
    cmd = command_for(NAME)
    for name in ENDPOINTS:
        f = figures.get(name)
        if f is None:
            continue
        result.rows.append(Row(
            scenario=f"API load: GET {paths[name]} (p50 / p95, errors)",
            project=f"{f['p50']:.0f} / {f['p95']:.0f} ms, {f['failures']} errors of "
                    f"{f['requests']:,}",
            baseline=f"{base['p50']:.0f} / {base['p95']:.0f} ms (hello)",
            ratio=f"{f['p95'] / base['p95']:.2f}× p95" if base["p95"] else "—",
            goal="p95 < 100 ms, no errors",
            met=f["p95"] < GOAL_P95_MS and f["failures"] == 0, command=cmd))
    endpoint_rows = [figures[n] for n in ENDPOINTS if n in figures]
    total_requests = sum(f["requests"] for f in endpoint_rows)
    total_failures = sum(f["failures"] for f in endpoint_rows)
    worst_p95 = max(f["p95"] for f in endpoint_rows)
    aggregated = figures.get("Aggregated", {})
    result.rows.append(Row(
        scenario=f"API load: all five endpoints, {users} users × {duration} s",
        project=f"worst p95 {worst_p95:.0f} ms; error rate "
                f"{total_failures / max(total_requests, 1):.2%} of {total_requests:,}",
        baseline=f"{base['p95']:.0f} ms p95 (hello)",
        ratio=f"{worst_p95 / base['p95']:.2f}× p95" if base["p95"] else "—",
        goal="p95 < 100 ms, no errors", met=worst_p95 < GOAL_P95_MS and total_failures == 0,
        command=cmd))
    def table_of(figs: dict[str, dict[str, float]]) -> list[str]:
        rows = ["| route | one at a time (median) | requests | errors | p50 | p95 | p99 | req/s |",
                "|---|---|---|---|---|---|---|---|"]
        for name in [*ENDPOINTS, BASELINE, "Aggregated"]:
            f = figs.get(name)
            if f:
                alone = f"{unloaded[name]:.0f} ms" if name in unloaded else ""
                rows.append(f"| {name} | {alone} | {f['requests']:,} | {f['failures']} | "
                            f"{f['p50']:.0f} ms | {f['p95']:.0f} ms | {f['p99']:.0f} ms | "
                            f"{f['rps']:.1f} |")
        return rows

    table = table_of(figures)
    light_worst = max(light_figures[n]["p95"] for n in light if n in light_figures)
    light_failures = sum(light_figures[n]["failures"] for n in light if n in light_figures)
    result.rows.append(Row(
        scenario=f"API load without stats/ROI: {', '.join(light)}, {users} users × "
                 f"{light_duration} s",
        project=f"worst p95 {light_worst:.0f} ms, {light_failures} errors",
        baseline=f"{light_figures[BASELINE]['p95']:.0f} ms p95 (hello)",
        ratio=f"{light_worst / light_figures[BASELINE]['p95']:.2f}× p95"
        if light_figures[BASELINE]["p95"] else "—",
        goal="p95 < 100 ms, no errors", met=light_worst < GOAL_P95_MS and light_failures == 0,
        command=cmd))
    totals = stats.get("totals") if isinstance(stats, dict) else None
    result.notes += [
        f"Seeded in {seed_s:,.1f} s: {leads:,} leads, {campaigns:,} campaigns, "
        f"{campaigns * days:,} insight rows, 30 templates, 10 rules. Locust {users} users, "
        f"spawn {SPAWN_RATE}/s, {duration} s, 0.5-1.5 s between a user's requests; "
        f"{aggregated.get('rps', 0):.0f} requests/s in all. Percentiles are Locust's "
        "(rounded to 2 significant digits above 100 ms).",
        "",
        *table,
        "",
        f"{cpu} (Postgres counts every server on the machine).",
        "",
        f"Second pass, {light_duration} s, same users, without stats and ROI:",
        "",
        *table_of(light_figures),
        "",
        "What bounds it: a stats or ROI answer covers the tenant's 80,000 Meta leads and "
        "90,000 insight days, but reads them from the monthly rollups of migration 0007 "
        f"(the two reads: {query_ms['insights']:.0f} ms and {query_ms['leads']:.0f} ms one at a "
        "time, against ~50 ms when they aggregated the daily rows) and answers with JSON "
        "serialised once by the C encoder instead of Powertools' Python `jsonable_encoder` "
        "walk (25 ms of the former 40 ms). What is left of an answer is ~16 ms of Python "
        "(1,000 campaigns of Decimal arithmetic and ~350 kB of JSON). The local API is one "
        "Python process, so every route shares one interpreter: with about a third of the "
        "requests on stats and ROI it runs at ~60% busy, and bursts queue the light routes "
        "behind a stats answer (hello's own p95 under the mixed load shows it; without stats "
        "and ROI every route stays at a few ms). In Lambda each concurrent request has a "
        "container of its own, so its latency is the one-at-a-time figure in the first column. "
        "What would close the gap here: caching an answer per tenant and range until its data "
        "changes (a version bumped by the rollup triggers; not done, because a per-tenant "
        "counter row would serialise the CRM's concurrent lead writes), or building the JSON in "
        "Postgres.",
    ]
    if totals:
        result.notes += ["", f"`/crm/marketing/stats` totals over the data set: `{totals}`."]
    result.data = {"figures": figures, "light_figures": light_figures, "unloaded_ms": unloaded,
                   "query_ms": query_ms,
                   "seed_s": seed_s, "users": users, "duration": duration, "cpu": cpu}
    return result
