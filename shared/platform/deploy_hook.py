"""The PreTraffic hook of every deployment (template.yaml, Globals DeploymentPreference.Hooks):
CodeDeploy calls it before it moves a function's `live` alias to the new version. It reads which
version that is from the deployment's AppSpec, invokes that version with the smoke check event
(shared/platform/smoke.py) and tells CodeDeploy to go on or to stop; a stopped deployment leaves
the alias where it was and CloudFormation rolls the stack back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.platform.observability import SMOKE_CHECK_KEY, logger


@dataclass(frozen=True)
class Target:
    function: str
    version: str


def targets(deployment: dict) -> list[Target]:
    """The (function, new version) pairs of a Lambda deployment's AppSpec."""
    revision = deployment["deploymentInfo"]["revision"]
    appspec = json.loads(revision["appSpecContent"]["content"])
    found = []
    for resource in appspec.get("Resources", []):
        for spec in resource.values():
            props = spec["Properties"]
            found.append(Target(function=props["Name"], version=str(props["TargetVersion"])))
    return found


def smoke(lambda_client: Any, target: Target) -> str | None:
    """None when the version answered the smoke check healthy, else why not."""
    answer = lambda_client.invoke(FunctionName=target.function, Qualifier=target.version,
                                  Payload=json.dumps({SMOKE_CHECK_KEY: True}).encode())
    if answer.get("FunctionError"):
        return f"the version raised ({answer['FunctionError']})"
    body = json.loads(answer["Payload"].read() or b"null")
    if not isinstance(body, dict) or body.get("smoke") != "ok":
        return f"the smoke check failed: {body!r}"[:300]
    return None


def run_pre_traffic(event: dict, codedeploy: Any, lambda_client: Any) -> str:
    """Check every new version of the deployment; report Succeeded or Failed to CodeDeploy."""
    deployment_id = event["DeploymentId"]
    status = "Succeeded"
    try:
        found = targets(codedeploy.get_deployment(deploymentId=deployment_id))
        if not found:
            status = "Failed"
            logger.error("pre_traffic_no_target", extra={"deployment_id": deployment_id})
        for target in found:
            problem = smoke(lambda_client, target)
            logger.info("pre_traffic_smoke", extra={"function": target.function,
                                                    "version": target.version,
                                                    "problem": problem})
            if problem:
                status = "Failed"
    except Exception as exc:  # noqa: BLE001 - CodeDeploy must hear back, or it waits an hour
        logger.exception("pre_traffic_error", extra={"error_type": type(exc).__name__})
        status = "Failed"
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=deployment_id,
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"], status=status)
    return status
