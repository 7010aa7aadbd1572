"""devstack/moto_sqs.py: moto's SQS without whole-queue scans gives the answers moto's own code
gives, for every kind of queue the stack uses (and FIFO, KMS and policy ones it may), and keeps
moto's delete rules."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack import moto_sqs


def _backend():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    return sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]


@pytest.fixture
def queues(stack):
    """Queues of every shape, in the stack's moto (the same process: ThreadedMotoServer)."""
    backend = _backend()
    dlq = backend.create_queue("moto-sqs-dlq")
    made = [
        dlq,
        backend.create_queue("moto-sqs-plain", VisibilityTimeout="45", DelaySeconds="0"),
        backend.create_queue("moto-sqs-redrive", RedrivePolicy=json.dumps(
            {"deadLetterTargetArn": dlq.queue_arn, "maxReceiveCount": "4"})),
        backend.create_queue("moto-sqs.fifo", FifoQueue="true",
                             ContentBasedDeduplication="true"),
        backend.create_queue("moto-sqs-kms", KmsMasterKeyId="alias/aws/sqs"),
        backend.create_queue("moto-sqs-policy", Policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage", "Resource": "*"}]})),
    ]
    yield made
    for queue in made:
        backend.delete_queue(queue.name)


def test_the_patch_is_in_force_on_the_local_stack(stack):
    from moto.sqs.models import Queue

    assert isinstance(Queue.__dict__["attributes"], property)
    assert Queue.__dict__["attributes"] is not moto_sqs.MOTO_ATTRIBUTES
    assert moto_sqs.MOTO_ATTRIBUTES is not None


def test_every_attribute_matches_moto_own_property_with_messages_in_every_state(queues):
    backend = _backend()
    for queue in queues:
        group = {"group_id": "g"} if queue.fifo_queue else {}
        for n in range(3):
            backend.send_message(queue.name, f"visible {n}", **group)
        if not queue.fifo_queue:  # FIFO queues refuse per-message delays
            backend.send_message(queue.name, "delayed", delay_seconds=60)
        backend.receive_message(queue.name, 1, wait_seconds_timeout=0,
                                visibility_timeout=30)  # one in flight
        ours = dict(queue.attributes)
        theirs = moto_sqs.MOTO_ATTRIBUTES.fget(queue)
        assert ours == theirs, queue.name
        assert list(queue.attributes) == list(theirs)
        assert len(queue.attributes) == len(theirs)
        for name in theirs:
            assert name in queue.attributes
            assert queue.attributes.get(name) == theirs[name]
        assert queue.attributes.get("NoSuchAttribute") is None
        counts = (ours["ApproximateNumberOfMessages"],
                  ours["ApproximateNumberOfMessagesNotVisible"],
                  ours["ApproximateNumberOfMessagesDelayed"])
        assert counts == ((2, 1, 0) if queue.fifo_queue else (2, 1, 1)), queue.name


def test_get_queue_attributes_over_http_counts_at_that_moment(stack):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="moto-sqs-http")["QueueUrl"]
    try:
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": "{}"} for i in range(7)])
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=30)
        got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert got["ApproximateNumberOfMessages"] == "5"
        assert got["ApproximateNumberOfMessagesNotVisible"] == "2"
        one = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
        assert one["Attributes"] == {"VisibilityTimeout": "30"}
        # create_queue again with the same attributes is accepted, with others refused
        assert sqs.create_queue(QueueName="moto-sqs-http")["QueueUrl"] == url
        with pytest.raises(ClientError):
            sqs.create_queue(QueueName="moto-sqs-http", Attributes={"VisibilityTimeout": "9"})
    finally:
        sqs.delete_queue(QueueUrl=url)


def test_deletes_keep_moto_rules(stack):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="moto-sqs-deletes")["QueueUrl"]
    try:
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"n": i})} for i in range(3)])
        first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=0)
        old = {m["Body"]: m["ReceiptHandle"] for m in first["Messages"]}
        again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=30)
        new = {m["Body"]: m["ReceiptHandle"] for m in again["Messages"]}
        assert len(old) == len(new) == 3

        body_a, body_b, body_c = sorted(new)
        sqs.delete_message(QueueUrl=url, ReceiptHandle=new[body_a])
        sqs.delete_message(QueueUrl=url, ReceiptHandle=new[body_a])  # again: accepted
        sqs.delete_message(QueueUrl=url, ReceiptHandle=old[body_b])  # an older handle deletes
        answer = sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": "known", "ReceiptHandle": new[body_c]},
            {"Id": "unknown", "ReceiptHandle": "not-a-handle"}])
        assert [s["Id"] for s in answer["Successful"]] == ["known"]
        assert [f["Id"] for f in answer["Failed"]] == ["unknown"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert (attrs["ApproximateNumberOfMessages"],
                attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
    finally:
        sqs.delete_queue(QueueUrl=url)
