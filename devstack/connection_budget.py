"""The database connection budget of template.yaml (issue 19), for the tests and `make deploy`.

Every function can run at most so many containers at once: its reserved concurrency, or for a
pure queue consumer the sum of its SQS maximum concurrencies, plus for a consumer that is also
scheduled a bound on the overlapping scheduled runs. Each container opens at most the
connections its handler module declares (`DB_CONNECTIONS`, computed from the code: the dispatch
worker's is shared.hsm.threads.CONNECTIONS). The sum over the functions must stay within what the
RDS Proxy may open: ProxyMaxConnectionsPercent of the database's max_connections.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
import tomllib
from dataclasses import dataclass

from devstack.template import ROOT, function_timeout, load_template, resources

SCHEDULED = {"ScheduleV2", "Schedule"}
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class UnboundedFunction(ValueError):
    """A function that opens connections with nothing capping how many containers run it."""


@dataclass(frozen=True)
class Share:
    function: str
    containers: int
    connections: int  # per container

    @property
    def total(self) -> int:
        return self.containers * self.connections


def parameter_values(config_env: str | None = None) -> dict[str, str]:
    """The template's defaults, overridden by a samconfig.toml environment's parameters."""
    values = {name: str(spec["Default"]) for name, spec in load_template()["Parameters"].items()
              if "Default" in spec}
    if config_env:
        config = tomllib.loads((ROOT / "samconfig.toml").read_text())
        overrides = config[config_env]["deploy"]["parameters"].get("parameter_overrides", "")
        values.update(pair.split("=", 1) for pair in overrides.split())
    return values


def _number(value: object, params: dict[str, str]) -> int:
    if isinstance(value, dict) and "Ref" in value:
        return int(params[value["Ref"]])
    return int(value)


def _period_seconds(expression: str) -> int:
    match = _RATE.fullmatch(expression)
    if not match:
        return 60  # a cron expression: assume the tightest, every minute
    return int(match.group(1)) * _SECONDS[match.group(2).rstrip("s")]


def containers(name: str, props: dict, params: dict[str, str]) -> int:
    """The most containers of `name` that can run at once."""
    if "ReservedConcurrentExecutions" in props:
        return _number(props["ReservedConcurrentExecutions"], params)
    events = list((props.get("Events") or {}).values())
    total = 0
    for event in events:
        spec = event.get("Properties", {})
        if event["Type"] == "SQS" and "ScalingConfig" in spec:
            total += _number(spec["ScalingConfig"]["MaximumConcurrency"], params)
        elif event["Type"] in SCHEDULED:
            # Runs overlap while one outlasts the period; one more for a late retry.
            period = _period_seconds(spec["ScheduleExpression"])
            total += math.ceil(function_timeout(props) / period) + 1
        else:
            raise UnboundedFunction(
                f"{name}: its {event['Type']} event has no concurrency cap; set "
                "ReservedConcurrentExecutions from a parameter (or MaximumConcurrency for SQS)")
    if not events:
        raise UnboundedFunction(f"{name}: no event and no ReservedConcurrentExecutions")
    return total


def connections_per_container(props: dict) -> int:
    module = importlib.import_module(props["Handler"].rsplit(".", 1)[0].replace("/", "."))
    try:
        return int(module.DB_CONNECTIONS)
    except AttributeError:
        raise UnboundedFunction(
            f"{props['Handler']}: declare DB_CONNECTIONS in the handler module (the Postgres "
            "connections one container opens, from the code)") from None


def shares(params: dict[str, str]) -> list[Share]:
    found = []
    for name, props in resources("AWS::Serverless::Function").items():
        per_container = connections_per_container(props)
        if per_container:
            found.append(Share(name, containers(name, props, params), per_container))
    return found


def proxy_limit(params: dict[str, str]) -> int:
    return int(params["DatabaseMaxConnections"]) * int(params["ProxyMaxConnectionsPercent"]) // 100


def check(params: dict[str, str]) -> tuple[int, int, list[Share]]:
    """(connections the functions may open at once, the proxy's limit, each function's share)."""
    found = shares(params)
    return sum(s.total for s in found), proxy_limit(params), found


def report(params: dict[str, str]) -> tuple[bool, str]:
    """(within the budget?, each function's share and the total, one per line)."""
    total, limit, found = check(params)
    lines = [f"{s.function}: {s.containers} containers x {s.connections} = {s.total}"
             for s in sorted(found, key=lambda s: -s.total)]
    lines.append(f"total {total} of the proxy's {limit} connections")
    return total <= limit, "\n".join(lines)


if __name__ == "__main__":
    within, text = report(parameter_values(sys.argv[1] if len(sys.argv) > 1 else "default"))
    print(text if within else f"{text}\nOVER BUDGET: lower a concurrency parameter or raise "
          "ProxyMaxConnectionsPercent (docs/DEPLOY.md)")
    sys.exit(0 if within else 1)
