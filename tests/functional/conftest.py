from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from batchscore.aws import AwsTarget
from batchscore.config import parse_deployment
from functions.context import FunctionContext
from functions.sqs_events import sqs_event
from infra.emulator import EmbeddedEmulator
from infra.local_run import deploy_local_stack

EVENTS = Path(__file__).parents[1] / "events"


@pytest.fixture(scope="session")
def target() -> Iterator[AwsTarget]:
    with EmbeddedEmulator() as emulator:
        yield AwsTarget(endpoint_url=emulator.endpoint_url)


@pytest.fixture
def ctx(target: AwsTarget, tmp_path: Path) -> FunctionContext:
    """A fresh stack from infra/template.yaml with a deployment uploaded, as `local run` makes it."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "score.py").write_text("def init():\n    pass\n\ndef run(b):\n    return b\n")
    deployment = parse_deployment({"name": "tt", "code_configuration": {"code": str(tmp_path / "code"),
                                                                       "scoring_script": "score.py"},
                                   "settings": {"mini_batch_size": 2}})
    resources = deploy_local_stack(target, f"t-{uuid.uuid4().hex[:10]}", deployment)
    return FunctionContext(resources, target)


def s3_event(bucket: str, key: str, size: int) -> str:
    """An S3 notification body from the sample in tests/events, keyed as S3 encodes keys."""
    event: dict[str, Any] = json.loads((EVENTS / "s3_object_created.json").read_text())
    record = event["Records"][0]["s3"]
    record["bucket"]["name"] = bucket
    record["object"]["key"] = quote_plus(key, safe="/")
    record["object"]["size"] = size
    return json.dumps(event)


def sqs_records(*bodies: str) -> dict[str, Any]:
    messages = [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": b} for i, b in enumerate(bodies)]
    return sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1")
