"""Helpers around the SQS event shape that Lambda event-source mappings deliver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus


def s3_objects(body: str) -> Iterator[tuple[str, str, int]]:
    """(bucket, key, size) of each ObjectCreated record in an S3 notification; test events yield nothing."""
    message = json.loads(body)
    for record in message.get("Records", []):
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record["s3"]
        yield s3["bucket"]["name"], unquote_plus(s3["object"]["key"]), int(s3["object"].get("size", 0))


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event a Lambda event-source mapping would pass for these received messages."""
    return {"Records": [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": m.get("MessageAttributes", {}),
            "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        for m in messages
    ]}
