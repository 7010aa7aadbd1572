"""`make demo` (the Quickstart's first command) runs end to end in a fresh process and tells the
story on the terminal, with the functions' own log lines kept out of it."""

from __future__ import annotations

import re
import subprocess
import sys

from devstack.template import ROOT


def test_the_demo_runs_every_step_and_sends_each_lead_once(stack):
    # The child starts its own stack: it gets the environment from before the test stack's.
    done = subprocess.run([sys.executable, "-m", "devstack.demo"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False, env=stack.environment_before)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    for step in ("GET /crm/auth/meta/callback", "Scheduled token_refresh run",
                 "POST /crm/marketing/connect", "GET /crm/marketing/stats",
                 "hsm_dispatch again", "Demo finished"):
        assert step in out, step
    # The second tick finds nothing due, and Meta has exactly the messages of the first.
    again = out.split("hsm_dispatch again", 1)[1]
    assert "'tenants_queued': 0" in again
    accepted = re.search(r"Meta \(sandbox\) accepted (\d+) messages", out).group(1)
    assert int(accepted) > 0 and f"Meta has accepted {accepted} messages" in again
    assert '"level":' not in out and '"_aws"' not in out  # JSON logs go to .cache/local/demo.log
    assert '"level":' in (ROOT / ".cache" / "local" / "demo.log").read_text()
