"""Issue 19's connection budget, computed from template.yaml and the code: for every function,
the most containers that can run at once times the Postgres connections each opens, summed, stays
within what the RDS Proxy may open (ProxyMaxConnectionsPercent of max_connections)."""

from __future__ import annotations

import pytest

from devstack import connection_budget as budget
from devstack.template import load_template, resources

ENVIRONMENTS = ["default", "staging", "prod"]


@pytest.mark.parametrize("config_env", ENVIRONMENTS)
def test_every_environment_stays_within_the_proxy_connections(config_env):
    total, limit, shares = budget.check(budget.parameter_values(config_env))
    assert shares, "no function opens a connection?"
    assert total <= limit, budget.report(budget.parameter_values(config_env))[1]


def test_every_function_declares_its_connections_and_every_user_of_the_database_is_capped():
    """Generic over the template: a new function (a new queue's consumer, a new route) must say
    how many connections a container opens and be capped by reserved concurrency or by its SQS
    maximum concurrency, or this fails."""
    params = budget.parameter_values("default")
    for name, props in resources("AWS::Serverless::Function").items():
        per_container = budget.connections_per_container(props)
        assert per_container >= 0, name
        if per_container:
            assert budget.containers(name, props, params) >= 1, name


def test_the_connections_per_container_come_from_the_code():
    from functions.hsm_worker import app as worker
    from functions.token_refresh import app as token_refresh
    from shared.connection.token_refresh import DB_WORKERS
    from shared.hsm.threads import CONNECTIONS

    shares = {s.function: s for s in budget.shares(budget.parameter_values("default"))}
    assert worker.DB_CONNECTIONS == CONNECTIONS == shares["HsmWorkerFunction"].connections
    assert token_refresh.DB_CONNECTIONS == DB_WORKERS + 1
    assert shares["TokenRefreshFunction"].connections == DB_WORKERS + 1


def test_queue_consumers_count_their_maximum_concurrency_and_their_schedules():
    params = budget.parameter_values("default")
    functions = resources("AWS::Serverless::Function")
    for name, props in functions.items():
        events = (props.get("Events") or {}).values()
        caps = [e["Properties"]["ScalingConfig"]["MaximumConcurrency"]["Ref"] for e in events
                if e["Type"] == "SQS"]
        if caps and "ReservedConcurrentExecutions" not in props:
            assert budget.containers(name, props, params) >= sum(int(params[c]) for c in caps)
    worker = functions["HsmWorkerFunction"]
    assert budget.containers("HsmWorkerFunction", worker, params) == \
        int(params["HsmWorkerConcurrency"])


def test_api_and_scheduled_functions_reserve_their_concurrency_from_parameters():
    template_params = load_template()["Parameters"]
    for name, props in resources("AWS::Serverless::Function").items():
        kinds = {e["Type"] for e in (props.get("Events") or {}).values()}
        if "HttpApi" in kinds and budget.connections_per_container(props):
            reserved = props["ReservedConcurrentExecutions"]
            assert reserved["Ref"] in template_params, name


def test_raising_a_concurrency_past_the_budget_is_caught():
    params = {**budget.parameter_values("default"), "HsmWorkerConcurrency": "100"}
    total, limit, _ = budget.check(params)
    assert total > limit
    within, text = budget.report(params)
    assert not within and "HsmWorkerFunction: 100 containers x" in text


def test_a_database_user_without_a_cap_is_refused():
    uncapped = {"Handler": "functions/hsm_logs/app.lambda_handler",
                "Events": {"Get": {"Type": "HttpApi", "Properties": {}}}}
    with pytest.raises(budget.UnboundedFunction, match="ReservedConcurrentExecutions"):
        budget.containers("NewFunction", uncapped, budget.parameter_values("default"))
