"""template.yaml as CloudFormation sees it after the SAM transform (Globals applied, the roles,
aliases, versions, deployment groups and permissions SAM writes), for checkov: a check of the
SAM template alone cannot see what Globals give each function.

Runs in the template checkers' environment (.cache/tools, which has aws-sam-translator):
    .cache/tools/bin/python -m devstack.sam_transform template.yaml .aws-sam/transformed.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _tag)


class _NoManagedPolicies:
    """SAM asks IAM for managed policy ARNs only for policies given by name; this template
    names none, so nothing is looked up (no AWS credentials needed)."""

    def load(self) -> dict[str, str]:
        return {}


def _uploaded(template: dict) -> None:
    """Local code locations as `sam package` would leave them: S3 URIs (as sam validate does)."""
    function_globals = template.get("Globals", {}).get("Function", {})
    if isinstance(function_globals.get("CodeUri"), str):
        function_globals["CodeUri"] = "s3://package-bucket/code.zip"
    for resource in template["Resources"].values():
        props = resource.get("Properties", {}) if isinstance(resource, dict) else {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://package-bucket/{key.lower()}.zip"


def transform(template_path: Path) -> dict:
    from samtranslator.translator.transform import transform as sam_transform

    template = yaml.load(template_path.read_text(), Loader=_Loader)  # noqa: S506 - safe subclass
    _uploaded(template)
    return sam_transform(template, {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
                                    "AWS::Partition": "aws"}, _NoManagedPolicies())


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(transform(source), indent=1, default=str))
    print(f"{target}: {len(json.loads(target.read_text())['Resources'])} resources")
