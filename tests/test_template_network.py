"""Issue 19: the functions reach the CRM's PostgreSQL through an RDS Proxy that requires TLS, from
private subnets, with a VPC endpoint for every AWS service the code calls and a NAT gateway (the
subnets' route) for Meta. There is no public-database mode any more."""

from __future__ import annotations

import re

from devstack.template import ROOT, load_template, resources
from shared.platform.settings import Settings

GLOBALS = load_template()["Globals"]["Function"]


def _code() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "shared").rglob("*.py"))


def _services_the_code_calls() -> set[str]:
    code = _code()
    found = set(re.findall(r'client\(\s*"([a-z0-9-]+)"', code))
    if "parameters.get_secret" in code:  # Powertools' Secrets Manager client
        found.add("secretsmanager")
    return found | {"s3"}  # the migration custom resource answers on a pre-signed S3 URL


def _endpoint_services() -> set[str]:
    return {props["ServiceName"]["Fn::Sub"].rsplit(".", 1)[-1]
            for props in resources("AWS::EC2::VPCEndpoint").values()}


def test_every_aws_service_the_code_calls_has_a_vpc_endpoint():
    services = _services_the_code_calls()
    assert {"kms", "sqs", "events", "dynamodb", "secretsmanager"} <= services
    assert services <= _endpoint_services(), services - _endpoint_services()


def test_gateway_endpoints_join_the_private_route_tables_and_interfaces_resolve_privately():
    for name, props in resources("AWS::EC2::VPCEndpoint").items():
        if props["VpcEndpointType"] == "Gateway":
            assert props["RouteTableIds"] == {"Ref": "PrivateRouteTableIds"}, name
        else:
            assert props["PrivateDnsEnabled"] is True, name
            assert props["SubnetIds"] == {"Ref": "PrivateSubnetIds"}, name


def test_every_function_runs_in_the_private_subnets_and_there_is_no_public_mode():
    template = load_template()
    assert GLOBALS["VpcConfig"] == {"SubnetIds": {"Ref": "PrivateSubnetIds"},
                                    "SecurityGroupIds": [{"Ref": "FunctionSecurityGroup"}]}
    for name, props in resources("AWS::Serverless::Function").items():
        assert "VpcConfig" not in props, name  # none opts out of the Globals
    assert "UseVpc" not in template.get("Conditions", {})
    assert template["Parameters"]["PrivateSubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"


def test_functions_go_out_on_https_and_to_the_proxy_only():
    groups = resources("AWS::EC2::SecurityGroup")
    egress = groups["FunctionSecurityGroup"]["SecurityGroupEgress"]
    assert [(r["FromPort"], r["ToPort"], r["CidrIp"]) for r in egress] == [(443, 443, "0.0.0.0/0")]
    to_proxy = resources("AWS::EC2::SecurityGroupEgress")["FunctionToProxyEgress"]
    assert to_proxy["DestinationSecurityGroupId"] == {"Ref": "ProxySecurityGroup"}
    assert to_proxy["FromPort"] == to_proxy["ToPort"] == 5432
    into_db = resources("AWS::EC2::SecurityGroupIngress")["ProxyToDatabaseIngress"]
    assert into_db["GroupId"] == {"Ref": "DatabaseSecurityGroupId"}
    assert into_db["SourceSecurityGroupId"] == {"Ref": "ProxySecurityGroup"}


def test_the_proxy_fronts_the_named_database_requires_tls_and_reaches_it_with_its_secrets():
    proxy = resources("AWS::RDS::DBProxy")["DatabaseProxy"]
    assert proxy["RequireTLS"] is True and proxy["EngineFamily"] == "POSTGRESQL"
    assert proxy["VpcSubnetIds"] == {"Ref": "PrivateSubnetIds"}
    assert len(proxy["Auth"]) == 2 and all(a["AuthScheme"] == "SECRETS" for a in proxy["Auth"])
    target = resources("AWS::RDS::DBProxyTargetGroup")["DatabaseProxyTargetGroup"]
    pool = target["ConnectionPoolConfigurationInfo"]
    assert pool["MaxConnectionsPercent"] == {"Ref": "ProxyMaxConnectionsPercent"}
    ids = [target["DBInstanceIdentifiers"], target["DBClusterIdentifiers"]]
    assert all("DatabaseIdentifier" in str(i) for i in ids)
    # The functions connect to the proxy, never to the host in the secret.
    assert GLOBALS["Environment"]["Variables"]["DATABASE_HOST"] == \
        {"Fn::GetAtt": "DatabaseProxy.Endpoint"}


def test_the_proxy_opens_each_connection_with_the_code_s_timeouts():
    init = resources("AWS::RDS::DBProxyTargetGroup")["DatabaseProxyTargetGroup"][
        "ConnectionPoolConfigurationInfo"]["InitQuery"]
    defaults = Settings.model_fields
    statement = defaults["database_statement_timeout_ms"].default // 1000
    lock = defaults["database_lock_timeout_ms"].default // 1000
    assert init == f"SET statement_timeout = '{statement}s', lock_timeout = '{lock}s'"


def test_secrets_are_taken_by_name_or_arn_and_iam_allows_the_random_suffix():
    params = load_template()["Parameters"]
    pattern = re.compile(params["DatabaseSecret"]["AllowedPattern"])
    assert pattern.fullmatch("marketing-hub-prod-db")
    assert pattern.fullmatch("arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf")
    for policy in ("DatabaseSecretReadPolicy", "MigrationsSecretReadPolicy"):
        statement = resources("AWS::IAM::ManagedPolicy")[policy]["PolicyDocument"]["Statement"][0]
        parameter = policy.replace("ReadPolicy", "")
        _, as_arn, as_name = statement["Resource"]["Fn::If"]
        assert as_arn == [{"Ref": parameter}, {"Fn::Sub": f"${{{parameter}}}-??????"}]
        assert as_name[0]["Fn::Sub"].endswith(f":secret:${{{parameter}}}-??????")
