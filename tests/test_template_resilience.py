"""Issue 20 over template.yaml: failed asynchronous runs are kept and alarmed, stages never mix,
state survives the stack, migrations run on every deployment, canaries look at the new version
only, and the dashboard shows what the runbook promises."""

from __future__ import annotations

import re

import pytest

from devstack.template import ROOT, function_timeout, load_template, resources

TEMPLATE = load_template()
FUNCTIONS = resources("AWS::Serverless::Function")
ALARMS = resources("AWS::CloudWatch::Alarm")
ASYNC = {"ScheduleV2", "Schedule", "EventBridgeRule", "CloudWatchEvent"}
STATEFUL = ("AWS::KMS::Key", "AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Logs::LogGroup",
            "AWS::SecretsManager::Secret")


def _kinds(props: dict) -> set[str]:
    return {e["Type"] for e in (props.get("Events") or {}).values()}


def _async_functions() -> dict[str, dict]:
    return {name: props for name, props in FUNCTIONS.items() if _kinds(props) & ASYNC}


def _logical(ref: dict) -> str:
    return ref["Fn::GetAtt"].split(".")[0] if "Fn::GetAtt" in ref else ref["Ref"]


# 1. failed asynchronous runs are kept
def test_every_asynchronously_invoked_function_keeps_its_failed_runs_in_an_alarmed_queue():
    assert _async_functions()
    queues = resources("AWS::SQS::Queue")
    for name, props in _async_functions().items():
        config = props["EventInvokeConfig"]
        assert config["MaximumRetryAttempts"] <= 2, name
        failure = config["DestinationConfig"]["OnFailure"]
        assert failure["Type"] == "SQS", name
        queue = _logical(failure["Destination"])
        assert queues[queue]["MessageRetentionPeriod"] >= 7 * 86400, name
        alarm = ALARMS[f"{queue}MessagesAlarm"]
        assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": f"{queue}.QueueName"}
        dropped = ALARMS[f"{name}AsyncEventsDroppedAlarm"]
        assert (dropped["Namespace"], dropped["MetricName"]) == ("AWS/Lambda",
                                                                 "AsyncEventsDropped")
        assert dropped["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": name}}]


def test_scheduler_and_rule_delivery_failures_are_alarmed():
    group = {"Ref": "ScheduleGroup"}
    for props in FUNCTIONS.values():
        for event in (props.get("Events") or {}).values():
            if event["Type"] == "ScheduleV2":
                assert event["Properties"]["GroupName"] == group
    scheduler = {(a["MetricName"], a["Dimensions"][0]["Value"] == group)
                 for a in ALARMS.values() if a.get("Namespace") == "AWS/Scheduler"}
    assert scheduler == {("InvocationDroppedCount", True),
                         ("InvocationsFailedToBeSentToDeadLetterCount", True)}
    for rule_name, rule in resources("AWS::Events::Rule").items():
        watched = {a["MetricName"] for a in ALARMS.values() if a.get("Namespace") == "AWS/Events"
                   and {"Name": "RuleName", "Value": rule["Name"]} in a["Dimensions"]}
        assert watched == {"FailedInvocations", "InvocationsFailedToBeSentToDlq"}, rule_name


# 2. stages apart
def _metric_dimensions(alarm: dict) -> list[tuple[str, list]]:
    if "MetricName" in alarm:
        return [(alarm["Namespace"], alarm.get("Dimensions", []))]
    return [(m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["Dimensions"])
            for m in alarm["Metrics"] if "MetricStat" in m]


def test_every_alarm_is_named_for_its_stage_and_reads_only_its_stage():
    for name, alarm in ALARMS.items():
        assert alarm["AlarmName"]["Fn::Sub"].startswith("marketing-hub-${Stage}-"), name
        for namespace, dimensions in _metric_dimensions(alarm):
            if namespace == "CrmVentas/MarketingHub":
                assert {"Name": "stage", "Value": {"Ref": "Stage"}} in dimensions, name
    assert TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["STAGE"] == \
        {"Ref": "Stage"}


def test_the_dashboard_reads_this_stage_and_shows_the_database_queues_and_api_errors():
    body = resources("AWS::CloudWatch::Dashboard")["Dashboard"]["DashboardBody"]["Fn::Sub"][0]
    custom = re.findall(r'\["\$\{Namespace\}", "\w+", "service", "marketing-hub"([^\]]*)', body)
    assert custom and all('"stage", "${Stage}"' in rest for rest in custom)
    assert '"AWS/RDS", "ClientConnections", "ProxyName", "${DatabaseProxy}"' in body
    assert '"DatabaseConnections"' in body
    assert "ApproximateNumberOfMessagesVisible" in body and "ApproximateAgeOfOldestMessage" in body
    assert '[".", "4xx", ".", "."], [".", "5xx", ".", "."]' in body


# 3. state retained
@pytest.mark.parametrize("kind", STATEFUL)
def test_stateful_resources_survive_the_stack(kind):
    for name, resource in TEMPLATE["Resources"].items():
        if isinstance(resource, dict) and resource.get("Type") == kind:
            assert resource.get("DeletionPolicy") == "Retain", name
            assert resource.get("UpdateReplacePolicy") == "Retain", name


def test_the_token_key_is_retained():
    key = TEMPLATE["Resources"]["TokenKey"]
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")


# 4. migrations on every deployment path
def test_migrations_are_driven_by_the_migrator_s_version_not_by_a_parameter():
    migrations = resources("Custom::SchemaMigrations")["SchemaMigrations"]
    assert migrations["MigratorVersion"] == {"Ref": "DbMigrateFunction.Version"}
    assert "MigrationsHash" not in TEMPLATE["Parameters"]
    assert "MigrationsHash" not in (ROOT / "Makefile").read_text()
    # migrations/ ships in the migrator's package, so a new migration is a new version.
    from shared.platform.migrator import MIGRATIONS_DIR

    assert MIGRATIONS_DIR.parent == ROOT
    assert TEMPLATE["Globals"]["Function"]["CodeUri"] == "."


def test_the_migrator_answers_before_cloudformation_gives_up():
    from functions.db_migrate.app import RESERVE_SECONDS

    migrations = resources("Custom::SchemaMigrations")["SchemaMigrations"]
    timeout = function_timeout(FUNCTIONS["DbMigrateFunction"])
    assert RESERVE_SECONDS < timeout < migrations["ServiceTimeout"]


# 5. canaries that tell the truth
def test_a_pre_traffic_hook_smoke_checks_every_new_version():
    preference = TEMPLATE["Globals"]["Function"]["DeploymentPreference"]
    assert preference["Hooks"] == {"PreTraffic": {"Ref": "PreTrafficHookFunction"}}
    hook = FUNCTIONS["PreTrafficHookFunction"]
    assert hook["FunctionName"]["Fn::Sub"].startswith("CodeDeployHook_")  # SAM's role may call
    assert hook["DeploymentPreference"] == {"Enabled": False}
    assert hook["Handler"] == "functions/pre_traffic_hook/app.lambda_handler"


def test_canary_gates_count_only_the_new_version_and_never_meta():
    for name, props in FUNCTIONS.items():
        gates = props.get("DeploymentPreference", {}).get("Alarms", [])
        assert {"Ref": "MetaApiFailureRateAlarm"} not in gates, name
        assert {"Ref": "UnhandledErrorsAlarm"} not in gates, name
        for gate in gates:
            alarm = ALARMS[gate["Ref"]]
            version = {"Fn::Select": [7, {"Fn::Split": [":", {"Ref": f"{name}.Version"}]}]}
            dims = dict((n, d) for n, d in _metric_dimensions(alarm))
            lambda_dims = {d["Name"]: d["Value"] for d in dims["AWS/Lambda"]}
            assert lambda_dims["ExecutedVersion"] == version, name
            assert lambda_dims["Resource"] == {"Fn::Sub": f"${{{name}}}:live"}, name
            custom = {d["Name"]: d["Value"] for d in dims["CrmVentas/MarketingHub"]}
            assert custom["function_version"] == version and custom["function_name"] == \
                {"Ref": name}, name


# 8. observability
def test_jobs_alarm_when_a_run_approaches_its_timeout():
    for name, props in FUNCTIONS.items():
        if not (_kinds(props) & (ASYNC | {"SQS"})) and name != "DbMigrateFunction":
            continue
        alarm = ALARMS[f"{name}DurationAlarm"]
        assert (alarm["MetricName"], alarm["Statistic"]) == ("Duration", "Maximum")
        assert alarm["Threshold"] == int(function_timeout(props) * 1000 * 0.8), name


# 9. tidy
def test_no_unused_idempotency_table_and_access_log_retention_is_a_parameter():
    assert "IdempotencyTable" not in TEMPLATE["Resources"]
    assert "IdempotencyTable" not in (ROOT / "template.yaml").read_text()
    logs = resources("AWS::Logs::LogGroup")["ApiAccessLogs"]
    assert logs["RetentionInDays"] == {"Ref": "AccessLogRetentionDays"}
    assert "Default" in TEMPLATE["Parameters"]["AccessLogRetentionDays"]


# 6. secrets by name or ARN
@pytest.mark.parametrize("config_env", ["default", "staging", "prod"])
def test_every_environment_names_its_secrets_in_a_form_the_template_accepts(config_env):
    from devstack.connection_budget import parameter_values

    given = parameter_values(config_env)
    for parameter in ("DatabaseSecret", "MigrationsSecret"):
        pattern = TEMPLATE["Parameters"][parameter]["AllowedPattern"]
        assert re.fullmatch(pattern, given[parameter]), (config_env, parameter)
