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
decorators) and no query, measured in the same run under the same load. A second pass repeats
the mix while the CRM writes a lead every second, so stats and ROI answers keep being rebuilt
instead of served from the containers' caches.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import threading
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
WRITES_DURATION_S = 30  # the second pass, with the CRM writing leads
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


def stats_answer_ms(tenant: str) -> dict[str, float]:
    """One stats answer at a time, in this process (median of 5): built by Postgres (what a
    request pays right after a write) and served from the container's cache (every other one)."""
    from shared.ads import stats, stats_json
    from shared.platform.db import tenant_tx

    period = stats.DateRange(None, None)
    built, cached = [], []
    for _ in range(5):
        with tenant_tx(tenant) as conn:
            started = time.perf_counter()
            stats_json.answer(conn, tenant, *period.days, "stats", period.as_json())
            built.append((time.perf_counter() - started) * 1000)
        stats.stats_body(tenant, period, "stats")
        started = time.perf_counter()
        stats.stats_body(tenant, period, "stats")
        cached.append((time.perf_counter() - started) * 1000)
    return {"built": statistics.median(built), "cached": statistics.median(cached)}


class LeadWriter:
    """The CRM adding one Meta lead per second to the tenant while Locust runs: each write
    changes the tenant's data version, so the next stats and ROI reads are built again."""

    def __init__(self, tenant: str, campaigns: int) -> None:
        self.tenant, self.campaigns, self.written = tenant, campaigns, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from shared.platform.db import tenant_tx

        while not self._stop.wait(1.0):
            with tenant_tx(self.tenant) as conn:
                conn.execute(
                    "INSERT INTO leads (tenant_id, name, phone, lead_source, meta_campaign_id)"
                    " VALUES (%s, 'Nuevo', NULL, 'meta_ads', %s)",
                    (self.tenant, str(23850000000000001 + self.written % self.campaigns)))
            self.written += 1

    def __enter__(self) -> LeadWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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

    answer_ms = stats_answer_ms(tenant)
    jwt = jwt_tokens.sign(tenant, role="member", ttl=3600)
    cpu_before = ctx.stack.cpu_seconds()
    writes_duration = duration // 2 if ctx.quick else WRITES_DURATION_S
    figures = locust_run(ctx, "locust", jwt, users, duration, [])
    served = sum(f["requests"] for k, f in figures.items() if k != "Aggregated")
    cpu = cpu_split(cpu_before, ctx.stack.cpu_seconds(), max(served, 1), "request")
    with LeadWriter(tenant, campaigns) as writer:
        write_figures = locust_run(ctx, "locust-writes", jwt, users, writes_duration, [])

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
    for name in ("stats", "roi"):
        f = write_figures[name]
        result.rows.append(Row(
            scenario=f"API load while the CRM writes a lead every second: GET {paths[name]} "
                     f"(p50 / p95, errors), {users} users × {writes_duration} s",
            project=f"{f['p50']:.0f} / {f['p95']:.0f} ms, {f['failures']} errors of "
                    f"{f['requests']:,}",
            baseline=f"{write_figures[BASELINE]['p95']:.0f} ms p95 (hello)",
            ratio=f"{f['p95'] / write_figures[BASELINE]['p95']:.2f}× p95"
            if write_figures[BASELINE]["p95"] else "—",
            goal="p95 < 100 ms, no errors", met=f["p95"] < GOAL_P95_MS and f["failures"] == 0,
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
        f"Second pass, {writes_duration} s, same users and mix, while the CRM adds a Meta lead "
        f"to the tenant every second ({writer.written} leads): every write changes the tenant's "
        "data version, so the next stats and ROI reads build their answers again.",
        "",
        *table_of(write_figures),
        "",
        "How stats and ROI meet the goal: an answer covers the tenant's 80,000 Meta leads, "
        "90,000 insight days and 1,000 campaigns. The whole months come from the monthly rollups "
        "of migration 0007, and Postgres builds the whole JSON answer in one statement "
        "(shared/ads/stats_json.py): "
        f"{answer_ms['built']:.0f} ms one at a time, and ~1 ms of Python. Before, the same "
        "answer took ~35 ms of Python (psycopg rows, Decimal arithmetic, JSON), and the local "
        "API's one interpreter queued every route behind it: p95 0.5-1.9 s. A container then "
        "keeps the answer with the tenant's data version (migration 0008: an append-only change "
        "log that triggers on leads, insights, campaigns and ad accounts write to, so concurrent "
        "CRM writes never wait on it), and serves it again until the version moves: "
        f"{answer_ms['cached']:.1f} ms one at a time, one indexed read. An answer is never "
        "stale: a write makes a new version, and the answer is rebuilt on the next read "
        "(tests/test_stats_cache.py). In Lambda each container keeps its own answers, so a "
        "read after a write, or the first read in a new container, costs the built figure.",
    ]
    if totals:
        result.notes += ["", f"`/crm/marketing/stats` totals over the data set: `{totals}`."]
    result.data = {"figures": figures, "write_figures": write_figures,
                   "unloaded_ms": unloaded, "answer_ms": answer_ms, "leads_written": writer.written,
                   "seed_s": seed_s, "users": users, "duration": duration, "cpu": cpu}
    return result
