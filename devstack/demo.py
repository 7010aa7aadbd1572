"""`make demo`: the whole Marketing Hub job on the embedded local stack, step by step.

Each area owns one step module (devstack/demo_<area>.py) with a `run(ctx)` function; this file
only starts the stack and runs them in the order a tenant's admin would.
"""

from __future__ import annotations

import importlib
import sys
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack import jwt_tokens
from devstack.console import capture_output, say
from devstack.stack import LocalStack

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / ".cache" / "local" / "demo.log"
STEPS = ["devstack.demo_oauth", "devstack.demo_tokens", "devstack.demo_ads",
         "devstack.demo_whatsapp", "devstack.demo_leads"]


@dataclass
class DemoContext:
    stack: LocalStack
    http: httpx.Client
    tenant_id: str = field(default_factory=lambda: f"demo-{uuid.uuid4().hex[:6]}")
    data: dict = field(default_factory=dict)
    steps: int = 0

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {jwt_tokens.sign(self.tenant_id, role=role)}"}

    def say(self, title: str, detail: str = "") -> None:
        """One step of the demo, numbered in order across every area's module."""
        self.steps += 1
        say(f"\n== {self.steps}. {title}")
        if detail:
            say(detail)

    def more(self, title: str, detail: str = "") -> None:
        """More of the same step, unnumbered."""
        say(f"   {title}")
        if detail:
            say(detail)


def main() -> int:
    # The functions' JSON log lines and the servers' access lines go to a file, as they would
    # to CloudWatch; the terminal shows the steps.
    capture_output(LOG, stderr=True)
    say("Starting the local stack (moto, embedded Postgres, Meta sandbox, local API)...")
    with (LocalStack() as stack,
          httpx.Client(base_url=stack.api_url, timeout=60, follow_redirects=False) as http):
        ctx = DemoContext(stack=stack, http=http)
        say(f"Local API: {stack.api_url}   Meta sandbox: {stack.sandbox.url}")
        say(f"Demo tenant: {ctx.tenant_id}   (the functions' own logs: {LOG.relative_to(ROOT)})")
        for name in STEPS:
            importlib.import_module(name).run(ctx)
    say("\nDemo finished; the local stack has been stopped.")
    return 0


def run() -> int:
    try:
        return main()
    except Exception:  # the terminal must show why, not only the log file
        say(traceback.format_exc())
        say(f"Demo failed; the stack's own output is in {LOG.relative_to(ROOT)}.")
        return 1


if __name__ == "__main__":
    sys.exit(run())
