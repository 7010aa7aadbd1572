"""lead_reader: reads from Meta each lead a leadgen notification announced, and stores it.

Lambda's SQS event source hands it a batch from the lead-read queue (one lead per message, put
there by the webhook); shared.leads.reader.read_batch reads and stores each once and answers
the partial batch response {"batchItemFailures": [...]}: a read that failed with attempts left
is delivered again alone. Each new lead wakes its tenant's WhatsApp follow-ups at once
(shared.hsm.planner.wake). Message bodies are never logged.
"""

from shared.hsm.planner import wake
from shared.leads.reader import read_batch
from shared.platform.deadlines import deadline_from_context
from shared.platform.observability import entrypoint

# Postgres connections a container opens (tests/test_connection_budget.py): the records run
# one after another on the handler's thread.
DB_CONNECTIONS = 1

RESERVE_SECONDS = 2.0


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return read_batch(event, context, deadline_from_context(context, RESERVE_SECONDS), wake=wake)
