"""Locust users for the API-load scenario (bench/api_load.py starts Locust with this file).

Each user is a CRM member of the seeded tenant reading the Marketing Hub screens: stats, ROI,
templates, token status and rules, with 0.5-1.5 s between requests (about 100 requests/s for
100 users), plus the baseline route /crm/bench/hello (same edge, no work) at the same weight.
Any answer other than 200 counts as an error. The member's JWT comes from BENCH_JWT; BENCH_ROUTES
(comma list of the names below) narrows the mix.
"""

import os
import random

from locust import FastHttpUser, between, task

ROUTES = {
    "stats": "/crm/marketing/stats",
    "roi": "/crm/marketing/stats/roi",
    "templates": "/crm/marketing/hsm/templates",
    "token-status": "/crm/marketing/token-status",
    "rules": "/crm/marketing/hsm/rules",
    "baseline: hello": "/crm/bench/hello",
}


class MarketingHubMember(FastHttpUser):
    wait_time = between(0.5, 1.5)
    connection_timeout = 30.0
    network_timeout = 30.0

    def on_start(self) -> None:
        self.auth = {"Authorization": f"Bearer {os.environ['BENCH_JWT']}"}
        wanted = [r.strip() for r in os.environ.get("BENCH_ROUTES", "").split(",") if r.strip()]
        self.routes = wanted or list(ROUTES)

    @task
    def read_a_screen(self) -> None:
        name = random.choice(self.routes)  # noqa: S311 - load mix, not crypto
        with self.client.get(ROUTES[name], headers=self.auth, name=name,
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
