"""Local stand-ins: pollers for the Lambda event-source mappings (the emulator is infra/emulator.py, the worker
processes the ECS task's own pool, container/pool.py). The handlers and the worker are the same code as in AWS."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from batchscore.aws import AwsTarget
from functions.sqs_events import sqs_event

logger = logging.getLogger(__name__)

# After a handler reports a record failed, Lambda leaves it to the queue's visibility timeout; locally we retry
# sooner so a transient failure does not stall a run for the template's (AWS-sized) timeout.
LOCAL_RETRY_DELAY_S = 2
POLL_WAIT_S = 1


Handler = Callable[[dict[str, Any]], dict[str, Any]]


class QueuePoller(threading.Thread):
    """Receives from a queue and calls a handler with the event a Lambda event-source mapping would build."""

    def __init__(self, name: str, target: AwsTarget, queue_url: str, handler: Handler, batch_size: int = 10):
        super().__init__(name=f"poller-{name}", daemon=True)
        self.sqs = target.client("sqs")
        self.queue_url, self.handler, self.batch_size = queue_url, handler, batch_size
        self.region = target.region
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=queue_url,
                                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.stopping = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # keep polling, as the service would; the failure is reported
                logger.exception("%s failed", self.name)
                self.errors.append(f"{self.name}: {exc}")
                self.stopping.wait(LOCAL_RETRY_DELAY_S)

    def poll_once(self) -> int:
        response = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size,
                                            WaitTimeSeconds=POLL_WAIT_S, AttributeNames=["All"])
        messages = response.get("Messages", [])
        if not messages:
            return 0
        result = self.handler(sqs_event(messages, self.queue_arn, self.region))
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:start + 10])])
        for m in messages:
            if m["MessageId"] in failed:
                self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"],
                                                   VisibilityTimeout=LOCAL_RETRY_DELAY_S)
        return len(messages)

    def stop(self) -> None:
        self.stopping.set()
