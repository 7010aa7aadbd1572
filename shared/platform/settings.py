"""Validated configuration, built on first use (never at import) and cached per container."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Meta's Marketing API retires versions sooner than the rest of Graph: v24.0 stopped on
# 2026-11-10 and v25.0 stops on 2027-02-23. v26.0 (2026-07-29) has no end date yet.
DEFAULT_GRAPH_VERSION = "v26.0"

# The CAs of RDS and RDS Proxy certificates, shipped in the package (certs/SOURCE.md): the
# functions verify the server they reach (verify-full), never just encrypt to whoever answers.
DATABASE_CA_BUNDLE = Path(__file__).resolve().parent / "certs" / "aws-database-ca-bundle.pem"

# What the features need, and nothing more:
DEFAULT_SCOPES = (
    "ads_read",  # campaign and ads insights sync (spend, leads)
    "ads_management",  # read ad accounts the person manages, incl. client accounts
    "business_management",  # list the person's businesses and their owned/client ad accounts
    "whatsapp_business_management",  # list WABAs, phone numbers, templates; subscribe webhooks
    "whatsapp_business_messaging",  # send template messages and receive their statuses
)
# Lead Ads (CONTRACT "Lead Ads"): asked for in the same dialog, but optional. A person who
# declines them still connects; token-status lists them as missing and the Page routes answer
# 409 missing_scopes until a reconnect grants them.
LEAD_ADS_SCOPES = (
    "leads_retrieval",  # read the answers of lead forms
    "pages_show_list",  # list the person's Pages and their Page tokens
    "pages_read_engagement",  # read a Page's forms and the ad fields of its leads
    "pages_manage_metadata",  # subscribe the app to a Page's leadgen webhooks
    "pages_manage_ads",  # read every lead of a Page's lead ads
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    meta_app_id: str = ""
    meta_app_secret: SecretStr | None = None
    meta_app_secret_arn: str | None = None
    meta_redirect_uri: str = ""
    meta_graph_api_version: str = DEFAULT_GRAPH_VERSION
    meta_graph_url: str = "https://graph.facebook.com"
    meta_dialog_url: str = "https://www.facebook.com"
    meta_verify_token: SecretStr | None = None
    meta_verify_token_arn: str | None = None
    meta_scopes: str = ",".join(DEFAULT_SCOPES)
    meta_optional_scopes: str = ",".join(LEAD_ADS_SCOPES)
    meta_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    # The deployment's stage (template.yaml's Stage): a dimension of every metric.
    stage: str = "local"
    frontend_url: str = "http://localhost:3000"
    database_url: SecretStr | None = None
    database_secret_arn: str | None = None
    migrations_database_url: SecretStr | None = None
    migrations_secret_arn: str | None = None
    # Where the functions reach Postgres: the stack's RDS Proxy endpoint (template.yaml). It
    # replaces the secrets' `host`, which names the database itself (what the proxy connects to).
    database_host: str | None = None
    # Set in every transaction (shared.platform.db): a statement or a lock wait never outlives
    # the invocation that started it, and never holds the CRM's rows for long.
    database_statement_timeout_ms: int = Field(default=20_000, ge=100, le=900_000)
    database_lock_timeout_ms: int = Field(default=5_000, ge=100, le=900_000)
    oauth_state_table: str = ""
    token_kms_key_id: str = ""
    event_bus_name: str = "default"
    # The queues scheduled work fans out on (template.yaml; CONTRACT "Scheduled functions and
    # workers"): a planner puts one message per tenant or account, a worker consumes them.
    hsm_dispatch_queue_url: str = ""
    campaign_sync_queue_url: str = ""
    template_sync_queue_url: str = ""
    lead_read_queue_url: str = ""
    lead_reconcile_queue_url: str = ""
    # Lead Ads (issue 22): one attempt at reading a lead from Meta waits this long; a read that
    # failed this many times (each a queue delivery with the client's own retries) is recorded
    # as failed with its reason. Reconciliation re-reads this far back before its last run.
    lead_read_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    lead_read_max_attempts: int = Field(default=4, ge=1, le=20)
    lead_reconcile_overlap_minutes: int = Field(default=60, ge=0, le=1440)
    # Decrypted token data keys a container keeps (LRU, 5 minutes each): one per tenant it serves
    # in that window. A dispatch worker serves about due tenants / worker concurrency per pass.
    token_key_cache_size: int = Field(default=4096, ge=0, le=100_000)

    # Ads sync (issue 5): how far back a first sync reaches, how many recent days every run
    # re-reads for Meta's late attribution, the days per insights request, the estimated row
    # count above which Meta's async report jobs are used, and how a report is polled.
    ads_initial_sync_days: int = Field(default=90, ge=1, le=1100)
    ads_lookback_days: int = Field(default=28, ge=0, le=90)
    ads_insights_chunk_days: int = Field(default=30, ge=1, le=90)
    ads_async_threshold_rows: int = Field(default=5000, ge=1)
    ads_async_poll_seconds: float = Field(default=5.0, ge=0, le=60)
    ads_async_max_wait_seconds: float = Field(default=120.0, ge=0, le=840)

    # Token lifecycle (issue 4). The window is the promise: a token is renewed, or the tenant is
    # told to reconnect, at least this long before it expires. Work starts `lead` earlier so that
    # the hourly schedule and a few failed attempts still leave the whole window. A connection
    # Meta would not extend is retried once per recheck interval; at most `concurrency` tenants
    # are in flight at Meta at once: 64 keeps one vCPU busy at Meta's latency (at 32 the run was
    # waiting on the network: 2,000 tokens in 27-32 s instead of ~23 s, make bench).
    token_refresh_window_days: float = Field(default=7.0, gt=0, le=50)
    token_refresh_lead_hours: float = Field(default=24.0, ge=0, le=240)
    token_refresh_recheck_hours: float = Field(default=24.0, gt=0, le=240)
    token_refresh_concurrency: int = Field(default=64, ge=1, le=200)

    # Per-tenant budget of routes that call Meta on a click (shared/connection/budget.py): a
    # burst, then a steady rate. A person clicking through the wizard and the connects needs a
    # few; one tenant hammering them must not use up the app's Meta rate limit for every tenant.
    meta_budget_burst: int = Field(default=10, ge=1, le=1000)
    meta_budget_per_minute: float = Field(default=6.0, gt=0, le=6000)

    tenant_claim: str = "custom:tenant_id"
    role_claim: str = "custom:role"
    admin_role: str = "admin"

    @field_validator("meta_graph_api_version")
    @classmethod
    def _normalise_version(cls, value: str) -> str:
        # Accept "25.0" and "v25.0"; the original plan's f"/v{version}" produced "/vv21.0/".
        match = re.fullmatch(r"v?(\d+\.\d+)", value.strip())
        if not match:
            raise ValueError("META_GRAPH_API_VERSION must look like v25.0 or 25.0")
        return f"v{match.group(1)}"

    @field_validator("meta_graph_url", "meta_dialog_url", "frontend_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def scopes(self) -> list[str]:
        """The scopes a connection needs: without one of them, the callback refuses it."""
        return _scope_list(self.meta_scopes)

    @property
    def optional_scopes(self) -> list[str]:
        """Asked for as well, never required (Lead Ads)."""
        return [s for s in _scope_list(self.meta_optional_scopes) if s not in self.scopes]

    def app_secret(self) -> str:
        """The Meta app secret: from the environment locally, from Secrets Manager in AWS."""
        if self.meta_app_secret is not None:
            return self.meta_app_secret.get_secret_value()
        if self.meta_app_secret_arn:
            from aws_lambda_powertools.utilities import parameters

            return parameters.get_secret(self.meta_app_secret_arn, max_age=300)
        raise RuntimeError("META_APP_SECRET or META_APP_SECRET_ARN must be set")

    def verify_token(self) -> str | None:
        """The webhook verify token: from the environment locally, from Secrets Manager in AWS
        (read at run time like the app secret, so it never sits in the function's
        configuration). None when neither is set: every handshake is refused."""
        if self.meta_verify_token is not None:
            return self.meta_verify_token.get_secret_value()
        if self.meta_verify_token_arn:
            from aws_lambda_powertools.utilities import parameters

            return parameters.get_secret(self.meta_verify_token_arn, max_age=300)
        return None

    def database_dsn(self) -> str:
        """The application role's DSN (no BYPASSRLS)."""
        return self._dsn(self.database_url, self.database_secret_arn, "DATABASE_URL")

    def migrations_dsn(self) -> str:
        """The schema owner's DSN, used only to migrate."""
        return self._dsn(self.migrations_database_url, self.migrations_secret_arn,
                         "MIGRATIONS_DATABASE_URL")

    def _dsn(self, url: SecretStr | None, secret_id: str | None, name: str) -> str:
        if url is not None:
            return url.get_secret_value()
        if secret_id:  # a secret's name or ARN
            from aws_lambda_powertools.utilities import parameters

            secret = parameters.get_secret(secret_id, transform="json", max_age=300)
            return dsn_from_secret(secret, host=self.database_host)
        raise RuntimeError(f"{name} or its secret must be set")


def _scope_list(raw: str) -> list[str]:
    return [s.strip() for s in re.split(r"[,\s]+", raw) if s.strip()]


def dsn_from_secret(secret: dict, host: str | None = None) -> str:
    """A libpq DSN from a secret in the RDS format (host, port, dbname, username, password).

    make_conninfo quotes each value: a password with spaces, quotes or `host=...` in it stays a
    password and can never add or replace a connection parameter. TLS verifies the server's
    certificate and name against the shipped CAs."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        host=host or secret["host"], port=str(secret.get("port", 5432)),
        dbname=secret.get("dbname", "postgres"), user=secret["username"],
        password=secret["password"], sslmode="verify-full",
        sslrootcert=str(DATABASE_CA_BUNDLE))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
