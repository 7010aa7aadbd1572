"""`make smoke URL=... TOKEN=...`: a read-only smoke test of a deployed stack with a real JWT."""

from __future__ import annotations

import argparse
import sys

import httpx

CHECKS = [
    # (method, path, needs token, acceptable statuses)
    ("GET", "/crm/marketing/token-status", True, {200}),
    ("GET", "/crm/marketing/hsm/templates", True, {200}),
    ("GET", "/crm/marketing/hsm/rules", True, {200}),
    ("GET", "/crm/marketing/stats", True, {200}),
    ("GET", "/crm/marketing/token-status", False, {401}),
    ("GET", "/crm/webhooks/meta?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
     False, {401, 403}),
]
SECURITY_HEADERS = ("x-frame-options", "x-content-type-options", "content-security-policy",
                    "strict-transport-security", "referrer-policy")


def run(url: str, token: str) -> int:
    failures = 0
    with httpx.Client(base_url=url.rstrip("/"), timeout=15) as http:
        for method, path, with_token, ok in CHECKS:
            headers = {"Authorization": f"Bearer {token}"} if with_token else {}
            response = http.request(method, path, headers=headers)
            missing = [h for h in SECURITY_HEADERS if h not in response.headers]
            # API Gateway answers 401 itself, without the functions' headers.
            good = response.status_code in ok and (not missing or response.status_code == 401)
            failures += not good
            print(f"{'ok  ' if good else 'FAIL'} {method} {path.split('?')[0]} -> "
                  f"{response.status_code}{' missing ' + ','.join(missing) if missing else ''}")
    print("smoke test passed" if not failures else f"{failures} smoke check(s) failed")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True, help="a CRM sign-in JWT of a tenant member")
    args = parser.parse_args()
    sys.exit(run(args.url, args.token))


if __name__ == "__main__":
    main()
