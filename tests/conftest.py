"""Shared fixtures: one local stack per test session (moto, Postgres, Meta sandbox, local API).

Tests isolate themselves by tenant: every test gets fresh tenant ids, so they never see each
other's rows and can share one database.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from devstack import jwt_tokens
from devstack.stack import LocalStack


@pytest.fixture(scope="session")
def stack():
    with LocalStack() as running:
        yield running


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def other_tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


class ApiClient:
    """Calls the local API over real HTTP as a signed-in CRM user."""

    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url, timeout=30, follow_redirects=False)

    def as_user(self, tenant_id: str | None, role: str = "admin", sub: str = "user-1") -> dict:
        return {"Authorization": f"Bearer {jwt_tokens.sign(tenant_id, role=role, sub=sub)}"}

    def request(self, method: str, path: str, *, tenant_id: str | None = None, role: str = "admin",
                headers: dict | None = None, **kwargs) -> httpx.Response:
        all_headers = dict(headers or {})
        if tenant_id is not None:
            all_headers.update(self.as_user(tenant_id, role))
        return self.http.request(method, path, headers=all_headers, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)


@pytest.fixture(scope="session")
def api(stack) -> ApiClient:
    client = ApiClient(stack.api_url)
    yield client
    client.http.close()


class EventCapture:
    """Routes every event this project puts on the bus to an SQS queue in moto, so tests can see
    exactly which events a run emitted (and how many times)."""

    def __init__(self, bus: str):
        import boto3

        self.sqs = boto3.client("sqs")
        queue_name = f"capture-{uuid.uuid4().hex[:8]}"
        self.queue_url = self.sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        events = boto3.client("events")
        self.rule = f"capture-{uuid.uuid4().hex[:8]}"
        events.put_rule(Name=self.rule, EventBusName=bus,
                        EventPattern='{"source": ["crm.marketing-hub"]}')
        events.put_targets(Rule=self.rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        self.seen: list[dict] = []

    def drain(self) -> list[dict]:
        import json

        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = batch.get("Messages", [])
            if not messages:
                return self.seen
            for message in messages:
                self.seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url,
                                        ReceiptHandle=message["ReceiptHandle"])

    def of_type(self, detail_type: str, tenant_id: str | None = None) -> list[dict]:
        return [e for e in self.drain() if e["detail-type"] == detail_type
                and (tenant_id is None or e["detail"].get("tenant_id") == tenant_id)]


@pytest.fixture
def event_capture(stack) -> EventCapture:
    return EventCapture(stack.env["EVENT_BUS_NAME"])
