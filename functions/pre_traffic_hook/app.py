"""CodeDeploy's PreTraffic hook: a smoke check of each new function version before the `live`
alias moves to it (shared.platform.deploy_hook)."""

from shared.platform.aws import client, create_client
from shared.platform.deploy_hook import run_pre_traffic
from shared.platform.observability import entrypoint

# It invokes the other functions; it opens no Postgres connection itself.
DB_CONNECTIONS = 0


def _lambda_client():
    from botocore.config import Config

    # A new version's first invocation is a cold start in the VPC: more than the 5 s default.
    return create_client("lambda", Config(read_timeout=60, retries={"mode": "standard"}))


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return {"status": run_pre_traffic(event, client("codedeploy"), _lambda_client())}
