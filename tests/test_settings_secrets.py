"""In AWS the Meta app secret and the database DSN come from Secrets Manager (the template's
ARNs), not from the environment: the same settings code against moto's Secrets Manager."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from psycopg.conninfo import conninfo_to_dict

from shared.platform.settings import DATABASE_CA_BUNDLE, Settings


def _secret(value: str) -> str:
    name = f"marketing-hub-test-{uuid.uuid4().hex[:8]}"
    return boto3.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]


def test_app_secret_and_dsn_are_read_from_secrets_manager(stack):
    app_secret_arn = _secret("s3cr3t-app-value")
    db_arn = _secret(json.dumps({"host": "db.internal", "port": 5433, "dbname": "crm",
                                 "username": "marketing_app", "password": "p@ss"}))
    settings = Settings(meta_app_secret=None, meta_app_secret_arn=app_secret_arn,
                        database_url=None, database_secret_arn=db_arn)
    assert settings.app_secret() == "s3cr3t-app-value"
    assert conninfo_to_dict(settings.database_dsn()) == {
        "host": "db.internal", "port": "5433", "dbname": "crm", "user": "marketing_app",
        "password": "p@ss", "sslmode": "verify-full", "sslrootcert": str(DATABASE_CA_BUNDLE)}


def test_a_secret_is_found_by_its_name_and_the_proxy_replaces_its_host(stack):
    """template.yaml passes the secret as given (a name or an ARN) and the RDS Proxy endpoint as
    DATABASE_HOST: the secret's host names the database behind the proxy."""
    arn = _secret(json.dumps({"host": "crm-db.internal", "username": "marketing_app",
                              "password": "pw", "dbname": "crm"}))
    name = arn.split(":secret:", 1)[1].rsplit("-", 1)[0]  # moto adds the random suffix too
    settings = Settings(database_url=None, database_secret_arn=name,
                        database_host="marketing-hub.proxy-abc.us-east-1.rds.amazonaws.com")
    parts = conninfo_to_dict(settings.database_dsn())
    assert parts["host"] == "marketing-hub.proxy-abc.us-east-1.rds.amazonaws.com"
    assert (parts["user"], parts["dbname"], parts["port"]) == ("marketing_app", "crm", "5432")


def test_the_environment_wins_locally_and_nothing_is_a_silent_default(stack):
    assert Settings(meta_app_secret="local", meta_app_secret_arn="arn:unused").app_secret() \
        == "local"
    with pytest.raises(RuntimeError, match="META_APP_SECRET"):
        Settings(meta_app_secret=None, meta_app_secret_arn=None).app_secret()
