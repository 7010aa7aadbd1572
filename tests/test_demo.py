"""`make demo` (the Quickstart's first command) runs end to end in a fresh process and tells the
story on the terminal, with the functions' own log lines kept out of it."""

from __future__ import annotations

import json
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
    for step in ("GET /crm/auth/meta/callback", "scheduled token_refresh run",
                 "POST /crm/marketing/connect", "GET /crm/marketing/stats",
                 "hsm_dispatch again", "Demo finished"):
        assert step in out, step
    # A lead from a lead form gets its WhatsApp message seconds later (lead_created).
    leads = out.split("Lead Ads: someone fills the lead form", 1)[1]
    seconds = re.search(r"accepted by Meta (\d+\.\d+) s after the notification", leads)
    assert seconds and float(seconds.group(1)) < 30, leads[:800]
    assert "follow-up sent: yes" in leads.split("leads/ads (member)", 1)[1]
    # The second tick finds nothing due, and Meta has exactly the messages of the first.
    again = out.split("hsm_dispatch again", 1)[1]
    assert "'tenants_queued': 0" in again
    accepted = re.search(r"Meta \(sandbox\) accepted (\d+) messages", out).group(1)
    assert int(accepted) > 0 and f"Meta has accepted {accepted} messages" in again
    assert '"level":' not in out and '"_aws"' not in out  # JSON logs go to .cache/local/demo.log
    assert '"level":' in (ROOT / ".cache" / "local" / "demo.log").read_text()

    # The steps are numbered 1, 2, 3... across every area.
    numbers = [int(n) for n in re.findall(r"^== (\d+)\. ", out, flags=re.MULTILINE)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) > 10
    # ROI as the page prints it (a percentage), never a bare ratio.
    rois = re.findall(r"ROI\s+(\S+)", out)
    assert rois and all(re.fullmatch(r"[+-]\d+\.\d", roi) for roi in rois), rois
    # What the tokens step says matches what it did: needs_reconnect 0 and one event read back.
    assert "MetaReconnectRequired events on the bus: 1 (token_not_extended)" in out
    assert "after the second run: 0 more" in out
    # The docs' number is listed first.
    assert out.split("whatsapp-accounts (admin)", 1)[1].split("\n")[2].startswith(
        "  WABA 8001 Ventas Demo WhatsApp (owned): +34 600 000 001")
    # Each log line names the function that wrote it.
    lines = [json.loads(line) for line in (ROOT / ".cache" / "local" / "demo.log").read_text()
             .splitlines() if line.startswith("{")]
    named = {line["message"]: line.get("function_name") for line in lines
             if line.get("message") in ("hsm_dispatch_planned", "hsm_worker_finished",
                                        "webhook_processed", "token_refresh_run")}
    assert named == {"hsm_dispatch_planned": "HsmDispatchFunction",
                     "hsm_worker_finished": "HsmWorkerFunction",
                     "webhook_processed": "MetaWebhookFunction",
                     "token_refresh_run": "TokenRefreshFunction"}
