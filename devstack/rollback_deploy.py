"""`make rollback-deploy ENV=...`: undo the last deployment's code, in seconds.

1. Any CodeDeploy deployment of the stack still in progress (a canary) is stopped with its own
   automatic rollback.
2. Each function whose `live` alias the last deployment moved (its version was published after
   the stack's last update began) goes back to the version before it. A function that release
   did not change keeps its alias: moving it too would roll it back one release too far.
3. An alias still shifting traffic (canary weights) keeps its old version and loses the weights.

The schema stays as it is: migrations are expand/contract, so older code runs on the newer
schema. `DRY_RUN=1` prints the plan and changes nothing.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

ALIAS = "live"
IN_PROGRESS = ["Created", "Queued", "InProgress", "Ready"]


@dataclass(frozen=True)
class Move:
    function: str
    from_version: str
    to_version: str | None  # None: keep the version, only drop the canary weights

    def describe(self) -> str:
        if self.to_version is None:
            return f"{self.function}: {ALIAS} stays at {self.from_version}, canary weights removed"
        return f"{self.function}: {ALIAS} {self.from_version} -> {self.to_version}"


def stack_name(config_env: str) -> tuple[str, str]:
    config = tomllib.loads((Path(__file__).resolve().parent.parent / "samconfig.toml").read_text())
    params = config[config_env]["global"]["parameters"]
    return params["stack_name"], params.get("region", "us-east-1")


def _resources(cfn: Any, stack: str, resource_type: str) -> list[str]:
    ids = []
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
        ids += [r["PhysicalResourceId"] for r in page["StackResourceSummaries"]
                if r["ResourceType"] == resource_type]
    return ids


def _published(lam: Any, function: str) -> dict[str, datetime]:
    """Version -> when it was published (its LastModified)."""
    out = {}
    for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=function):
        for v in page["Versions"]:
            if v["Version"] != "$LATEST":
                out[v["Version"]] = datetime.fromisoformat(v["LastModified"].replace("+0000",
                                                                                     "+00:00"))
    return out


def plan_move(function: str, alias: dict, published: dict[str, datetime],
              last_update_began: datetime) -> Move | None:
    """What to do with one function's alias (pure: no AWS calls)."""
    current = alias["FunctionVersion"]
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    if weights:
        return Move(function, current, None)
    if current not in published or published[current] < last_update_began:
        return None  # the last deployment did not publish this version
    older = [v for v in published if int(v) < int(current)]
    if not older:
        return None  # first release of this function: nothing to go back to
    return Move(function, current, str(max(older, key=int)))


def stop_canaries(codedeploy: Any, applications: list[str], dry_run: bool) -> int:
    stopped = 0
    for application in applications:
        ids = codedeploy.list_deployments(applicationName=application,
                                          includeOnlyStatuses=IN_PROGRESS).get("deployments", [])
        for deployment_id in ids:
            print(f"stop CodeDeploy deployment {deployment_id} (auto-rollback)")
            if not dry_run:
                codedeploy.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
            stopped += 1
    return stopped


def move_aliases(lam: Any, functions: list[str], last_update_began: datetime,
                 dry_run: bool) -> list[Move]:
    moves = []
    for function in functions:
        try:
            alias = lam.get_alias(FunctionName=function, Name=ALIAS)
        except lam.exceptions.ResourceNotFoundException:
            continue
        move = plan_move(function, alias, _published(lam, function), last_update_began)
        if move is None:
            continue
        print(move.describe())
        if not dry_run:
            lam.update_alias(FunctionName=function, Name=ALIAS,
                             FunctionVersion=move.to_version or move.from_version,
                             RoutingConfig={"AdditionalVersionWeights": {}})
        moves.append(move)
    return moves


def rollback(config_env: str, dry_run: bool = False) -> int:
    stack, region = stack_name(config_env)
    cfn = boto3.client("cloudformation", region_name=region)
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    last_update_began = described.get("LastUpdatedTime") or described["CreationTime"]
    stop_canaries(boto3.client("codedeploy", region_name=region),
                  _resources(cfn, stack, "AWS::CodeDeploy::Application"), dry_run)
    moves = move_aliases(boto3.client("lambda", region_name=region),
                         _resources(cfn, stack, "AWS::Lambda::Function"), last_update_began,
                         dry_run)
    print(f"{len(moves)} alias(es) {'would be ' if dry_run else ''}moved back")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config-env", default="default")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    sys.exit(rollback(args.config_env, args.dry_run))


if __name__ == "__main__":
    main()
