"""Reads template.yaml so local runs serve the same routes and create the same tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation short-form tags (!Ref, !Sub...) as plain data."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {f"Fn::{suffix}" if suffix != "Ref" else "Ref": value}


_CfnLoader.add_multi_constructor("!", _tag)


@lru_cache(maxsize=1)
def load_template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - safe subclass


def resources(kind: str) -> dict[str, dict]:
    # Fn::ForEach loops (alarms) are lists, not resources: skip them.
    return {name: res.get("Properties", {}) for name, res in load_template()["Resources"].items()
            if isinstance(res, dict) and res.get("Type") == kind}


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str
    handler: str  # functions/<name>/app.lambda_handler
    function: str  # logical id
    authorized: bool
    timeout: int

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0].replace("/", ".")

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method and self.method != "ANY":
            return None
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        found = re.fullmatch(pattern, path)
        return found.groupdict() if found else None


def http_routes() -> list[HttpRoute]:
    template = load_template()
    default_timeout = template.get("Globals", {}).get("Function", {}).get("Timeout", 3)
    routes = []
    for name, props in resources("AWS::Serverless::Function").items():
        for event in (props.get("Events") or {}).values():
            if event["Type"] != "HttpApi":
                continue
            ev = event["Properties"]
            auth = (ev.get("Auth") or {}).get("Authorizer")
            routes.append(HttpRoute(
                method=ev["Method"].upper(), path=ev["Path"], handler=props["Handler"],
                function=name, authorized=auth != "NONE",
                timeout=int(props.get("Timeout", default_timeout)),
            ))
    # Literal segments win over {params}, as in API Gateway.
    return sorted(routes, key=lambda r: (r.path.count("{"), -len(r.path)))


def function_handlers() -> dict[str, str]:
    return {name: props["Handler"]
            for name, props in resources("AWS::Serverless::Function").items()}


@dataclass(frozen=True)
class QueueConsumer:
    """A function's SQS event: what Lambda's event source mapping does with a queue."""

    queue: str  # logical id
    function: str  # logical id
    handler: str
    batch_size: int
    timeout: int
    batching_window: float = 0.0  # MaximumBatchingWindowInSeconds: how long a batch may fill

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0].replace("/", ".")


def function_timeout(props: dict) -> int:
    default = load_template().get("Globals", {}).get("Function", {}).get("Timeout", 3)
    return int(props.get("Timeout", default))


def queue_consumers() -> list[QueueConsumer]:
    consumers = []
    for name, props in resources("AWS::Serverless::Function").items():
        for event in (props.get("Events") or {}).values():
            if event["Type"] != "SQS":
                continue
            spec = event["Properties"]
            consumers.append(QueueConsumer(
                queue=spec["Queue"]["Fn::GetAtt"].split(".")[0], function=name,
                handler=props["Handler"], batch_size=int(spec.get("BatchSize", 10)),
                timeout=function_timeout(props),
                batching_window=float(spec.get("MaximumBatchingWindowInSeconds", 0))))
    return consumers


def global_env_refs(kind: str) -> dict[str, str]:
    """Globals environment variables whose value is `!Ref` of a resource of `kind`:
    variable name -> logical id (e.g. HSM_DISPATCH_QUEUE_URL -> HsmDispatchQueue)."""
    template = load_template()
    variables = (template.get("Globals", {}).get("Function", {}).get("Environment", {})
                 .get("Variables", {}))
    kinds = {name for name in resources(kind)}
    return {var: value["Ref"] for var, value in variables.items()
            if isinstance(value, dict) and value.get("Ref") in kinds}
