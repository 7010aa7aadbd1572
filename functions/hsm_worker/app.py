"""hsm_worker: sends the WhatsApp follow-ups of the tenants the planner (hsm_dispatch) queued.

Lambda's SQS event source hands it a batch of messages, one tenant each; the tenants run side by
side until the invocation's deadline (shared.hsm.worker.work_batch), and the answer is the
partial batch response {"batchItemFailures": [...]}: a tenant whose run failed is retried alone.
Message bodies are never logged.
"""

from shared.hsm.threads import CONNECTIONS
from shared.hsm.worker import work_batch
from shared.platform.deadlines import deadline_from_context
from shared.platform.observability import entrypoint

# The dispatch threads' connections (shared.hsm.threads): the most a container opens.
DB_CONNECTIONS = CONNECTIONS

# Left at the end of the invocation for the last result writes, the leases and continuations.
RESERVE_SECONDS = 5.0


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return work_batch(event, context, deadline_from_context(context, RESERVE_SECONDS))
