"""`make demo`: the whole Marketing Hub job on the embedded local stack, step by step.

Each area owns one step module (devstack/demo_<area>.py) with a `run(ctx)` function; this file
only starts the stack and runs them in the order a tenant's admin would.
"""

from __future__ import annotations

import importlib
import sys
import uuid
from dataclasses import dataclass, field

import httpx

from devstack import jwt_tokens
from devstack.stack import LocalStack

STEPS = ["devstack.demo_oauth", "devstack.demo_tokens", "devstack.demo_ads",
         "devstack.demo_whatsapp"]


@dataclass
class DemoContext:
    stack: LocalStack
    http: httpx.Client
    tenant_id: str = field(default_factory=lambda: f"demo-{uuid.uuid4().hex[:6]}")
    data: dict = field(default_factory=dict)

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {jwt_tokens.sign(self.tenant_id, role=role)}"}

    def say(self, title: str, detail: str = "") -> None:
        print(f"\n== {title}")
        if detail:
            print(detail)


def main() -> int:
    print("Starting the local stack (moto, embedded Postgres, Meta sandbox, local API)...")
    with (LocalStack() as stack,
          httpx.Client(base_url=stack.api_url, timeout=60, follow_redirects=False) as http):
        ctx = DemoContext(stack=stack, http=http)
        print(f"Local API: {stack.api_url}   Meta sandbox: {stack.sandbox.url}")
        print(f"Demo tenant: {ctx.tenant_id}")
        for name in STEPS:
            importlib.import_module(name).run(ctx)
    print("\nDemo finished; the local stack has been stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
