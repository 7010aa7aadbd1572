"""KMS calls per 1,000 decrypts of one tenant's token in one warm container.

This process is the warm container: one tenant's token is stored through
shared.connection.credentials (as the OAuth callback does), then read back and decrypted 1,000
times through the same path every function uses (credentials.load(...).token()). The count is
the container-wide TokenCipher's own KMS counter. Baseline: the same 1,000 decrypts with the
data-key cache switched off, i.e. one KMS Decrypt per use. A third measure moves the cipher's
clock past its cache window to show the window is what bounds the count.
"""

from __future__ import annotations

import time

from bench.common import BenchContext, Row, ScenarioResult, command_for, times

NAME = "kms"
DECRYPTS = 1000


def run(ctx: BenchContext) -> ScenarioResult:
    from shared.connection import credentials
    from shared.platform import crypto
    from shared.platform.crypto import TokenCipher
    from shared.platform.db import tenant_tx

    result = ScenarioResult(NAME, "KMS calls per 1,000 decrypts (one tenant, one warm container)")
    tenant = ctx.new_tenant("bench-kms")
    with ctx.control() as control:
        token = control.issue_token(scopes=["ads_read"], kind="long")
    ctx.connect(tenant, token)

    crypto.reset_token_cipher()  # a fresh container: nothing cached yet
    with tenant_tx(tenant) as conn:
        stored = credentials.load(conn)
    cipher = crypto.get_token_cipher()
    started = time.perf_counter()
    for _ in range(DECRYPTS):
        assert stored.token() == token
    project_seconds = time.perf_counter() - started
    project_calls = cipher.kms_decrypt_calls

    # Baseline: no data-key cache, one KMS Decrypt per use.
    uncached = TokenCipher(cipher.key_id, cache_ttl_seconds=0)
    started = time.perf_counter()
    for _ in range(DECRYPTS):
        uncached.decrypt(stored.ciphertext, tenant_id=tenant, credential=credentials.META_TOKEN)
    baseline_seconds = time.perf_counter() - started
    baseline_calls = uncached.kms_decrypt_calls

    # The window: a clock we move past the TTL makes exactly one more call.
    clock = [0.0]
    windowed = TokenCipher(cipher.key_id, clock=lambda: clock[0])
    for _ in range(DECRYPTS):
        windowed.decrypt(stored.ciphertext, tenant_id=tenant, credential=credentials.META_TOKEN)
    clock[0] += windowed.cache_ttl_seconds + 1
    for _ in range(DECRYPTS):
        windowed.decrypt(stored.ciphertext, tenant_id=tenant, credential=credentials.META_TOKEN)
    two_window_calls = windowed.kms_decrypt_calls
    window = windowed.cache_ttl_seconds

    result.rows.append(Row(
        scenario="KMS Decrypt calls per 1,000 decrypts of one token (warm container)",
        project=f"{project_calls}", baseline=f"{baseline_calls} (no data-key cache)",
        ratio=times(baseline_calls / max(project_calls, 1)) + " fewer",
        goal=f"1 per cache window ({window:.0f} s)",
        met=project_calls == 1 and two_window_calls == 2, command=command_for(NAME)))
    result.notes += [
        f"- 1,000 decrypts through `credentials.load(...).token()`: **{project_calls}** KMS "
        f"Decrypt call(s), {project_seconds * 1000:,.0f} ms in all "
        f"({project_seconds / DECRYPTS * 1e6:,.0f} µs per decrypt).",
        f"- Same 1,000 decrypts without the cache: {baseline_calls} calls, "
        f"{baseline_seconds * 1000:,.0f} ms ({baseline_seconds / DECRYPTS * 1e3:,.2f} ms per "
        "decrypt against moto's KMS on localhost; a real KMS round trip is slower).",
        f"- 2 × 1,000 decrypts with the cipher's clock moved past its {window:.0f} s window "
        f"between them: {two_window_calls} calls (one per window).",
    ]
    result.data = {"project_calls": project_calls, "baseline_calls": baseline_calls,
                   "two_window_calls": two_window_calls, "window_seconds": window,
                   "project_seconds": project_seconds, "baseline_seconds": baseline_seconds}
    return result
