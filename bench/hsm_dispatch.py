"""HSM dispatch of 5,000 eligible leads at 150 ms send latency with an 80/s cap; then the same at a
1,000/s cap.

Set-up per cap: a sandbox WABA whose number has that cap (STANDARD = 80/s; HIGH = 1,000/s) and
a messaging tier above 5,000 recipients, connected through shared.whatsapp.connect (which syncs
the templates), one enabled lead_followup rule created through the API, and 5,000 leads written
with one set-based INSERT (never contacted, with a phone, created 2 hours ago). The sandbox
answers each send after 150 ms and refuses any send over the cap in a sliding one-second window
(130429). This process then runs the schedule's tick as AWS does: functions/hsm_dispatch (the
planner) queues the tenant, and the dispatch queue is delivered to functions/hsm_worker in
batches until every lead is sent (one worker invocation fits 5,000 at 80/s).

Figures come from the sandbox's record of accepted sends (its monotonic clock at acceptance):
the rate sustained from the first to the last send, the most sends inside any one-second window
(sliding), sends refused for the cap, and duplicates (sends minus distinct recipients; each lead
has its own phone). The database's log rows are checked too. Status webhooks are off: they would
go to the API process, which a real deployment runs on other machines.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.common import (
    BenchContext,
    Row,
    ScenarioResult,
    command_for,
    cpu_split,
    function_cpu_ms,
    max_in_window,
    per_aligned_second,
    require_functions,
    say,
    scheduled_event,
    secs,
    template_timeout,
)

NAME = "hsm_dispatch"
LEADS = 5000
LATENCY_MS = 150
WA_SCOPES = ["business_management", "whatsapp_business_management",
             "whatsapp_business_messaging"]


def _wa_control(ctx: BenchContext, method: str, path: str, body: dict | None = None,
                params: dict | None = None) -> Any:
    import httpx

    response = httpx.request(method, f"{ctx.stack.sandbox_url}/__sandbox/whatsapp{path}",
                             json=body, params=params, timeout=120)
    response.raise_for_status()
    return response.json()


def prepare(ctx: BenchContext, cap: int, leads: int) -> tuple[str, str]:
    """A connected tenant with one rule and `leads` eligible leads; returns (tenant, phone)."""
    from shared.whatsapp.connect import ConnectRequest, connect_sender

    phone_spec = ({"messaging_limit": "TIER_UNLIMITED", "throughput_level": "HIGH"}
                  if cap > 80 else {"messaging_limit": "TIER_10K"})
    account = _wa_control(ctx, "POST", "/accounts", {"phones": [phone_spec]})
    phone = account["phone_number_ids"][0]
    _wa_control(ctx, "POST", f"/send/numbers/{phone}",
                {"max_per_second": cap, "latency_ms": LATENCY_MS})
    tenant = ctx.new_tenant(f"bench-hsm{cap}")
    with ctx.control() as control:
        token = control.issue_token(account["user_id"], scopes=WA_SCOPES, kind="long")
    ctx.connect(tenant, token, user_id=account["user_id"], scopes=WA_SCOPES)
    connect_sender(tenant, account["user_id"],
                   ConnectRequest(account["waba_id"], phone, max_per_second=cap))
    with ctx.http() as http:
        response = http.post("/crm/marketing/hsm/rules", headers=ctx.headers(tenant), json={
            "name": "Follow-up Leads 24h", "trigger_type": "lead_followup", "delay_hours": 1,
            "template_name": "lead_followup_es", "language": "es", "body_params": ["name"],
            "enabled": True})
        response.raise_for_status()
    prefix = 600_000_000 + cap * 10_000  # a phone block per cap: no pair-limit clashes
    with ctx.owner_conn() as conn, conn.transaction():
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        conn.execute(
            "INSERT INTO leads (tenant_id, name, phone, status, created_at, lead_source) "
            "SELECT %s, 'Lead ' || g, '+34' || (%s + g)::text, 'new', "
            "now() - interval '2 hours', 'meta_ads' FROM generate_series(1, %s) g",
            (tenant, prefix, leads))
    return tenant, phone


def dispatch_all(tenant: str, leads: int) -> tuple[float, list[dict[str, Any]]]:
    """Ticks as AWS runs them: the planner, then the dispatch queue delivered to the worker in
    batches (devstack.queues) until it stays empty; a backlog the worker cannot finish in one
    invocation comes back as a continuation on the same queue."""
    from devstack.lambda_context import LocalContext
    from devstack.queues import deliver_all
    from functions.hsm_dispatch.app import lambda_handler

    timeout = template_timeout("hsm_dispatch")
    summaries = []
    started = time.perf_counter()
    for _ in range(4):
        planned = lambda_handler(scheduled_event(), LocalContext("HsmDispatchFunction", timeout))
        delivered = deliver_all(queues={"HsmDispatchQueue"})
        summaries.append({**planned, "worker_batches": delivered["HsmDispatchQueue"]})
        if sent_rows(tenant) >= leads or not planned.get("tenants_queued"):
            break
    return time.perf_counter() - started, summaries


def sent_rows(tenant: str) -> int:
    from shared.platform.db import tenant_tx

    with tenant_tx(tenant) as conn:
        row = conn.execute("SELECT count(*) AS n FROM automation_logs WHERE status IN "
                           "('SENT', 'DELIVERED', 'READ')").fetchone()
    return int(row["n"])


def measure(ctx: BenchContext, cap: int, leads: int) -> dict[str, Any]:
    say(f"   {leads:,} leads at a {cap}/s cap, {LATENCY_MS} ms per send...")
    tenant, phone = prepare(ctx, cap, leads)
    cpu_before = ctx.stack.cpu_seconds()
    wall, summaries = dispatch_all(tenant, leads)
    cpu = cpu_split(cpu_before, ctx.stack.cpu_seconds(), leads, "send")
    stats = _wa_control(ctx, "GET", f"/send/numbers/{phone}", params={"messages": 1})
    monos = sorted(m["mono"] for m in stats["messages"])
    span = monos[-1] - monos[0] if len(monos) > 1 else 0.0
    rate = (len(monos) - 1) / span if span else 0.0
    seconds = per_aligned_second(monos)
    full = [n for s, n in sorted(seconds.items())][1:-1]  # whole seconds only
    return {
        "cap": cap, "leads": leads, "wall_s": wall, "summaries": summaries,
        "sent": stats["sent"], "distinct": stats["distinct_recipients"],
        "duplicates": stats["sent"] - stats["distinct_recipients"],
        "db_sent": sent_rows(tenant),
        "max_in_any_second": max_in_window(monos),
        "sandbox_max_in_any_second": stats["max_in_any_second"],
        "rejected": stats["rejected"], "max_in_flight": stats["max_in_flight"],
        "rate": rate, "span_s": span, "cpu": cpu,
        "per_second_median": statistics.median(full) if full else None,
        "per_second_min": min(full) if full else None,
    }


def run(ctx: BenchContext) -> ScenarioResult:
    require_functions("hsm_dispatch", "hsm_worker")
    result = ScenarioResult(NAME, "HSM dispatch: 5,000 leads at 150 ms send latency")
    leads = 500 if ctx.quick else LEADS
    with ctx.control() as control:
        control.clear_latency()
    low = measure(ctx, 80, leads)
    high = measure(ctx, 1000, leads)
    cmd = command_for(NAME)
    refused = low["rejected"].get("130429", 0)
    result.rows += [
        Row(scenario=f"HSM at an 80/s cap: {leads:,} leads, 150 ms send latency, rate "
                     "sustained (first to last send)",
            project=f"{low['rate']:.1f}/s", baseline="80/s (the cap)",
            ratio=f"{low['rate'] / 80:.2f}× cap", goal="≥ 0.90× cap",
            met=low["rate"] >= 0.9 * 80, command=cmd),
        Row(scenario="HSM at an 80/s cap: most sends in any one-second window (sliding)",
            project=f"{low['max_in_any_second']} ({refused} refused with 130429)",
            baseline="80", ratio=f"{low['max_in_any_second'] / 80:.2f}× cap",
            goal="never above 80", met=low["max_in_any_second"] <= 80 and refused == 0,
            command=cmd),
        Row(scenario="HSM at an 80/s cap: duplicate sends",
            project=f"{low['duplicates']} ({low['sent']:,} sends to {low['distinct']:,} "
                    f"recipients of {leads:,} leads)", baseline="0", ratio="—", goal="0",
            met=low["duplicates"] == 0, command=cmd),
        Row(scenario="HSM at a 1,000/s cap: rate reached (first to last send)",
            project=f"{high['rate']:.0f}/s", baseline="1,000/s (the cap)",
            ratio=f"{high['rate'] / 1000:.2f}× cap", goal="reported (see bound)", met=None,
            command=cmd),
    ]
    for label, m in (("80/s", low), ("1,000/s", high)):
        result.notes.append(
            f"- {label} cap: {m['sent']:,} sends to {m['distinct']:,} recipients "
            f"({m['db_sent']:,} log rows SENT) in {secs(m['span_s'])} from first to last send "
            f"({secs(m['wall_s'])} for the invocations: {m['summaries']}); {m['rate']:.1f}/s "
            f"sustained, whole seconds median {m['per_second_median']} and min "
            f"{m['per_second_min']}; most in any sliding one-second window "
            f"{m['max_in_any_second']}; at most {m['max_in_flight']} sends in flight; refused "
            f"by the sandbox: {m['rejected'] or 'none'} (a refused send is retried by a later "
            f"run after its backoff). {m['cpu']}.")
    function_ms = function_cpu_ms(high["cpu"])
    result.notes += [
        "- What bounds the 1,000/s run: CPU. The dispatcher itself (this process: its asyncio "
        "loop, httpx, the claim/permit/result writes) used "
        + (f"{function_ms:.1f} ms of CPU per send, i.e. at most about "
           f"{1000 / function_ms:,.0f} sends/s per core before anything else runs"
           if function_ms else "the CPU shown above per send")
        + "; the sandbox (a werkzeug thread per request) and Postgres share the same 2 cores. "
        "In AWS Meta's side costs the function nothing, but one Lambda (a fraction of a vCPU "
        "at 512 MB) would still need several vCPUs' worth of CPU per second at 1,000/s: "
        "reaching that cap needs the per-send CPU cut or the work split over parallel "
        "invocations per number.",
        "- The 80/s run: the pacer refills at 94% of the cap with a 12.5 ms bucket (at least "
        "one send; shared/hsm/pacing.py), so the ideal is 0.94× and at most 0.9525× of the cap "
        "leaves in any second before jitter. A 130429 slows it (×0.8, floor 0.5×) and each 2 s "
        "without one wins back 5%. Before that recovery existed, one refusal early in a run "
        "held the pace at 0.8 × 0.9 of the cap for the rest of it (53.4/s, 0.67×, in an "
        "earlier run of this scenario); the gap to 1.0× is the headroom kept for arrival "
        "jitter at Meta, which counts arrivals, not departures.",
    ]
    result.data = {"cap_80": low, "cap_1000": high}
    return result

