"""AWS through moto's server: the template's DynamoDB tables, SQS queues and the EventBridge rules
that feed them, a KMS key."""

from __future__ import annotations

import json
import socket

import boto3
from moto.server import ThreadedMotoServer

from devstack import moto_sqs
from devstack.template import resources

REGION = "us-east-1"
# moto accepts any credentials; passing them here lets `make demo` run in a shell without any
# (the stack exports them to the environment only after these setup calls).
_FAKE = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto() -> tuple[ThreadedMotoServer, str]:
    moto_sqs.apply()  # SQS's cost at depth, not moto's (devstack/moto_sqs.py)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def create_tables(endpoint: str, prefix: str = "local") -> dict[str, str]:
    """Create every AWS::DynamoDB::Table of template.yaml; returns logical id -> table name."""
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION, **_FAKE)
    names = {}
    for logical_id, props in resources("AWS::DynamoDB::Table").items():
        name = f"{prefix}-{logical_id}"
        kwargs = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(index_kind):
                kwargs[index_kind] = props[index_kind]
        ddb.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        names[logical_id] = name
    return names


def create_key(endpoint: str) -> str:
    kms = boto3.client("kms", endpoint_url=endpoint, region_name=REGION, **_FAKE)
    return kms.create_key(Description="local token key")["KeyMetadata"]["KeyId"]


def create_event_bus(endpoint: str, name: str = "marketing-hub-local") -> str:
    events = boto3.client("events", endpoint_url=endpoint, region_name=REGION, **_FAKE)
    events.create_event_bus(Name=name)
    return name


def create_queues(endpoint: str, prefix: str = "local") -> dict[str, str]:
    """Create every AWS::SQS::Queue of template.yaml, dead-letter queues first, with its
    visibility timeout, retention and redrive policy; returns logical id -> queue URL."""
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, **_FAKE)
    queues = resources("AWS::SQS::Queue")
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    for logical_id, props in sorted(queues.items(), key=lambda item: "RedrivePolicy" in item[1]):
        attributes = {key: str(props[key]) for key in ("VisibilityTimeout",
                                                          "MessageRetentionPeriod")
                      if key in props}
        redrive = props.get("RedrivePolicy")
        if redrive:
            target = redrive["deadLetterTargetArn"]["Fn::GetAtt"].split(".")[0]
            attributes["RedrivePolicy"] = json.dumps({
                "deadLetterTargetArn": arns[target],
                "maxReceiveCount": str(redrive["maxReceiveCount"])})
        url = sqs.create_queue(QueueName=f"{prefix}-{logical_id}", Attributes=attributes)[
            "QueueUrl"]
        urls[logical_id] = url
        arns[logical_id] = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return urls


def create_queue_rules(endpoint: str, bus: str, queue_urls: dict[str, str]) -> list[str]:
    """Every AWS::Events::Rule of template.yaml whose targets are queues, on the local bus, with
    the same pattern and input transformer: an event put on the bus lands on the queue as in AWS.
    (Rules whose targets are not queues, e.g. the SNS topic for the CRM, are left out.)"""
    events = boto3.client("events", endpoint_url=endpoint, region_name=REGION, **_FAKE)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, **_FAKE)
    created = []
    for logical_id, props in resources("AWS::Events::Rule").items():
        targets = []
        for target in props.get("Targets", []):
            queue = (target.get("Arn") or {}).get("Fn::GetAtt", "").split(".")[0]
            if queue not in queue_urls:
                continue
            arn = sqs.get_queue_attributes(QueueUrl=queue_urls[queue], AttributeNames=[
                "QueueArn"])["Attributes"]["QueueArn"]
            local = {"Id": target["Id"], "Arn": arn}
            if "InputTransformer" in target:
                local["InputTransformer"] = target["InputTransformer"]
            targets.append(local)
        if not targets:
            continue
        name = f"local-{logical_id}"
        events.put_rule(Name=name, EventBusName=bus,
                        EventPattern=json.dumps(props["EventPattern"]))
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        created.append(name)
    return created


class BusCapture:
    """Every event this project puts on `bus`, kept in an SQS queue of moto's so a local run can
    show what reached the bus (in AWS: what the CRM's subscribers would hear)."""

    def __init__(self, endpoint: str, bus: str, name: str = "local-capture"):
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, **_FAKE)
        self.queue_url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                            AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events", endpoint_url=endpoint, region_name=REGION, **_FAKE)
        events.put_rule(Name=name, EventBusName=bus,
                        EventPattern=json.dumps({"source": ["crm.marketing-hub"]}))
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])

    def drain(self) -> list[dict]:
        """The events that arrived since the last call, oldest first."""
        seen = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            if not batch.get("Messages"):
                return seen
            for message in batch["Messages"]:
                seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url,
                                        ReceiptHandle=message["ReceiptHandle"])
