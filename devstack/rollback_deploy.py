"""`make rollback-deploy ENV=...`: point every function's `live` alias back at its previous
version. The schema stays as it is: migrations are expand/contract, so older code still runs on
the newer schema. Takes seconds, well inside the 15-minute rollback goal."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import boto3

ALIAS = "live"


def stack_name(config_env: str) -> tuple[str, str]:
    config = tomllib.loads((Path(__file__).resolve().parent.parent / "samconfig.toml").read_text())
    params = config[config_env]["global"]["parameters"]
    return params["stack_name"], params.get("region", "us-east-1")


def functions_of(stack: str, region: str) -> list[str]:
    cfn = boto3.client("cloudformation", region_name=region)
    names = []
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
        names += [r["PhysicalResourceId"] for r in page["StackResourceSummaries"]
                  if r["ResourceType"] == "AWS::Lambda::Function"]
    return names


def previous_version(lam, function: str, current: str) -> str | None:
    versions = []
    for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=function):
        versions += [int(v["Version"]) for v in page["Versions"] if v["Version"] != "$LATEST"]
    older = [v for v in versions if v < int(current)]
    return str(max(older)) if older else None


def rollback(config_env: str, dry_run: bool = False) -> int:
    stack, region = stack_name(config_env)
    lam = boto3.client("lambda", region_name=region)
    moved = 0
    for function in functions_of(stack, region):
        try:
            alias = lam.get_alias(FunctionName=function, Name=ALIAS)
        except lam.exceptions.ResourceNotFoundException:
            continue
        target = previous_version(lam, function, alias["FunctionVersion"])
        if target is None:
            print(f"skip {function}: no earlier version")
            continue
        print(f"{function}: {ALIAS} {alias['FunctionVersion']} -> {target}")
        if not dry_run:
            # Clearing RoutingConfig also ends any canary traffic shift still in progress.
            lam.update_alias(FunctionName=function, Name=ALIAS, FunctionVersion=target,
                             RoutingConfig={"AdditionalVersionWeights": {}})
        moved += 1
    print(f"{moved} alias(es) {'would be ' if dry_run else ''}moved back")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config-env", default="default")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    sys.exit(rollback(args.config_env, args.dry_run))


if __name__ == "__main__":
    main()
