"""In AWS the Meta app secret and the database DSN come from Secrets Manager (the template's
ARNs), not from the environment: the same settings code against moto's Secrets Manager."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from shared.platform.settings import Settings


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
    assert settings.database_dsn() == ("host=db.internal port=5433 dbname=crm "
                                       "user=marketing_app password=p@ss sslmode=require")


def test_the_environment_wins_locally_and_nothing_is_a_silent_default(stack):
    assert Settings(meta_app_secret="local", meta_app_secret_arn="arn:unused").app_secret() \
        == "local"
    with pytest.raises(RuntimeError, match="META_APP_SECRET"):
        Settings(meta_app_secret=None, meta_app_secret_arn=None).app_secret()
