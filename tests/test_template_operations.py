"""template.yaml's production wiring (issue 7): migrations first, canaries gated by alarms,
every schedule and rule with retries and a dead-letter queue, and alarms that watch metrics the
code really emits. cfn-lint, `sam validate --lint` and checkov run in `make template-check`."""

from __future__ import annotations

import re

import pytest

from devstack.template import ROOT, load_template, resources

FUNCTIONS = resources("AWS::Serverless::Function")
ASYNC_EVENTS = {"ScheduleV2", "EventBridgeRule"}


def _is_api_function(props: dict) -> bool:
    return any(e["Type"] == "HttpApi" for e in props.get("Events", {}).values())


def _alarm_names() -> set[str]:
    """Alarm names as deployed, without `marketing-hub-${Stage}-` and the per-function or
    per-queue suffix."""
    names = set()
    for props in resources("AWS::CloudWatch::Alarm").values():
        name = props["AlarmName"]["Fn::Sub"].split("}-", 1)[-1]
        names.add(name.split("-", 1)[0])
    return names


def _work_queues() -> dict[str, dict]:
    """Queues that carry fanned-out work (they dead-letter into a queue of their own)."""
    return {name: props for name, props in resources("AWS::SQS::Queue").items()
            if "RedrivePolicy" in props}


def _dead_letter_queues() -> set[str]:
    return set(resources("AWS::SQS::Queue")) - set(_work_queues())


def _sqs_consumers() -> dict[str, tuple[str, dict]]:
    """Work queue -> (the function consuming it, its SQS event's properties)."""
    found = {}
    for function, props in FUNCTIONS.items():
        for event in props.get("Events", {}).values():
            if event["Type"] == "SQS":
                queue = event["Properties"]["Queue"]["Fn::GetAtt"].split(".")[0]
                found[queue] = (function, event["Properties"])
    return found


def test_functions_wait_for_the_schema_migration():
    for name, res in load_template()["Resources"].items():
        if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Function":
            if name == "DbMigrateFunction":
                assert "DependsOn" not in res  # it runs the migration
            else:
                assert res.get("DependsOn") == "SchemaMigrations", name


def test_every_function_has_error_and_throttle_alarms():
    alarms = resources("AWS::CloudWatch::Alarm")
    for function in FUNCTIONS:
        for metric in ("Errors", "Throttles"):
            props = alarms[f"{function}{metric}Alarm"]
            assert props["Namespace"] == "AWS/Lambda" and props["MetricName"] == metric
            assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
            assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_function_error_alarms_do_not_page_on_a_single_error_a_minute():
    """One error a minute is not an incident (a failed scheduled run has its FailedRuns alarm);
    five in five minutes is."""
    for function in FUNCTIONS:
        props = resources("AWS::CloudWatch::Alarm")[f"{function}ErrorsAlarm"]
        assert props["Statistic"] == "Sum" and props["Period"] >= 300
        per_minute = props["Threshold"] / (props["Period"] / 60)
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert props["Threshold"] > 1 and per_minute >= 1, function


def test_every_dead_letter_queue_has_an_alarm():
    alarms = resources("AWS::CloudWatch::Alarm")
    for queue in _dead_letter_queues():
        props = alarms[f"{queue}MessagesAlarm"]
        assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert props["Dimensions"][0]["Value"] == {"Fn::GetAtt": f"{queue}.QueueName"}


def test_api_functions_shift_by_canary_gated_by_their_alarms_and_jobs_all_at_once():
    preference = load_template()["Globals"]["Function"]["DeploymentPreference"]
    assert preference["Type"] == "Canary10Percent5Minutes"
    assert "Alarms" not in preference  # no gate common to every function, Meta's none at all
    for name, props in FUNCTIONS.items():
        own = props["DeploymentPreference"]
        if own.get("Enabled") is False:
            continue  # the migrator and the hook: nothing to shift, nothing to check them
        if _is_api_function(props):
            assert "Type" not in own, name  # the global canary
            assert own["Alarms"] == [{"Ref": f"{name}CanaryErrorsAlarm"}], name
        else:
            assert own == {"Type": "AllAtOnce"}, name


def test_every_work_queue_has_a_consumer_with_partial_batch_responses_and_a_cap():
    """CONTRACT "Scheduled functions and workers": each queue is consumed by one function with
    an SQS event, partial batch failures, and a maximum concurrency set from a parameter."""
    consumers = _sqs_consumers()
    parameters = load_template()["Parameters"]
    assert set(consumers) == set(_work_queues())
    for queue, (function, spec) in consumers.items():
        assert spec["FunctionResponseTypes"] == ["ReportBatchItemFailures"], queue
        cap = spec["ScalingConfig"]["MaximumConcurrency"]["Ref"]
        assert parameters[cap]["MinValue"] >= 2, cap  # Lambda's floor for this setting
        timeout = FUNCTIONS[function].get("Timeout", 29)
        assert _work_queues()[queue]["VisibilityTimeout"] >= 6 * timeout, queue


def test_every_work_queue_dead_letters_into_an_alarmed_queue_and_alarms_on_age():
    alarms = resources("AWS::CloudWatch::Alarm")
    for queue, props in _work_queues().items():
        dlq = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"].split(".")[0]
        assert dlq in _dead_letter_queues(), queue
        assert props["RedrivePolicy"]["maxReceiveCount"] >= 3, queue
        assert alarms[f"{dlq}MessagesAlarm"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        age = alarms[f"{queue}AgeAlarm"]
        assert age["MetricName"] == "ApproximateAgeOfOldestMessage"
        assert age["Dimensions"][0]["Value"] == {"Fn::GetAtt": f"{queue}.QueueName"}


def test_every_schedule_and_rule_retries_then_dead_letters_into_an_alarmed_queue():
    alarmed = _dead_letter_queues()
    seen = set()
    for name, props in FUNCTIONS.items():
        for event_name, event in props.get("Events", {}).items():
            if event["Type"] not in ASYNC_EVENTS:
                continue
            spec = event["Properties"]
            assert spec["RetryPolicy"]["MaximumRetryAttempts"] >= 1, (name, event_name)
            queue = spec["DeadLetterConfig"]["Arn"]["Fn::GetAtt"].split(".")[0]
            assert queue in alarmed, (name, event_name)
            seen.add(queue)
    for rule in resources("AWS::Events::Rule").values():
        for target in rule["Targets"]:
            assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
            seen.add(target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"].split(".")[0])
    work_dlqs = {props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"].split(".")[0]
                 for props in _work_queues().values()}
    failed_runs = {props["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"][
        "Fn::GetAtt"].split(".")[0] for props in FUNCTIONS.values() if "EventInvokeConfig" in props}
    # No dead-letter queue without a source, no source without one.
    assert seen | work_dlqs | failed_runs == alarmed


def test_schedules_run_at_the_cadence_the_jobs_assume():
    def rate(function: str) -> set[str]:
        return {e["Properties"]["ScheduleExpression"]
                for e in FUNCTIONS[function]["Events"].values() if e["Type"] == "ScheduleV2"}

    assert rate("TokenRefreshFunction") == {"rate(1 hour)"}
    # The planner: a due follow-up waits at most a minute to be queued (goal: p95 under 2 min).
    assert rate("HsmDispatchFunction") == {"rate(1 minute)"}
    assert rate("TemplateSyncFunction") == {"rate(15 minutes)"}
    # Hourly tick, but each account is due only after 20 h: a daily sync per account, spread out.
    assert rate("CampaignSyncFunction") == {"rate(1 hour)"}


def test_reconnect_events_reach_the_topic_the_crm_subscribes_to():
    rule = resources("AWS::Events::Rule")["ReconnectRequiredRule"]
    assert rule["EventPattern"]["detail-type"] == ["MetaReconnectRequired"]
    assert rule["Targets"][0]["Arn"] == {"Ref": "ReconnectTopic"}
    from shared.connection.token_renewal import RECONNECT_EVENT

    assert RECONNECT_EVENT == "MetaReconnectRequired"


def test_alarms_notify_the_email_topic_except_the_canary_gates():
    subscription = resources("AWS::SNS::Subscription")["AlarmEmailSubscription"]
    assert subscription["Endpoint"] == {"Ref": "AlarmEmail"}
    for name, props in resources("AWS::CloudWatch::Alarm").items():
        if name.endswith("CanaryErrorsAlarm"):
            # CodeDeploy reads it; a new version's single error must not page anyone.
            assert "AlarmActions" not in props, name
        else:
            assert {"Ref": "AlarmTopic"} in props["AlarmActions"], name


@pytest.mark.parametrize("metric", ["MetaApiFailures", "MetaApiCalls", "TokensExpiringSoon",
                                    "HsmMessagesSent", "UnhandledErrors"])
def test_alarmed_metrics_are_emitted_by_the_code(metric):
    """An alarm on a metric nobody emits can never fire: each name must appear in shared/."""
    code = "\n".join(p.read_text() for p in (ROOT / "shared").rglob("*.py"))
    assert re.search(rf'["\']{metric}["\']', code), metric
    template = (ROOT / "template.yaml").read_text()
    assert f"MetricName: {metric}" in template


def test_runbook_alarm_table_matches_the_template():
    runbook = (ROOT / "docs" / "DEPLOY.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)`", runbook, flags=re.MULTILINE))
    deployed = _alarm_names()
    assert documented == deployed, (documented ^ deployed)


@pytest.mark.parametrize("config_env", ["default", "staging", "prod"])
def test_every_environment_supplies_every_parameter_without_a_default(config_env):
    """`make deploy ENV=...` and a plain `sam deploy --config-env ...` pass samconfig's
    overrides and nothing else: a required parameter missing there fails the deployment."""
    from devstack.connection_budget import parameter_values

    given = parameter_values(config_env)
    required = {name for name, spec in load_template()["Parameters"].items()
                if "Default" not in spec}
    assert required <= set(given), required - set(given)
