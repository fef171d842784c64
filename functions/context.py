"""What every function needs: the stack's resources, AWS clients on one session, and the deployment."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from batchscore import keys
from batchscore.aws import AwsTarget
from batchscore.config import Deployment
from batchscore.jobs_table import JobsTable
from batchscore.stack import StackResources


@dataclass
class FunctionContext:
    stack: StackResources
    target: AwsTarget
    s3: Any = field(init=False)
    sqs: Any = field(init=False)
    jobs: JobsTable = field(init=False)
    _deployment: Deployment | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        session = self.target.session()
        self.s3 = self.target.client("s3", session)
        self.sqs = self.target.client("sqs", session)
        self.jobs = JobsTable.connect(self.stack.jobs_table, self.target, session)

    @classmethod
    def from_env(cls) -> FunctionContext:
        return cls(StackResources.from_env(), AwsTarget.from_env())

    @property
    def deployment(self) -> Deployment:
        """The deployment uploaded with the stack, read once per container (it only changes on redeploy)."""
        if self._deployment is None:
            body = self.s3.get_object(Bucket=self.stack.artifacts_bucket,
                                      Key=keys.artifact_key("deployment.json"))["Body"].read()
            self._deployment = Deployment.model_validate(json.loads(body))
        return self._deployment


EventHandler = Callable[[dict[str, Any], FunctionContext], dict[str, Any]]
LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def sqs_entry_points(record_handler: Callable[..., None]) -> tuple[EventHandler, LambdaHandler]:
    """The two ways in to a function fed by an SQS queue, for `record_handler(record, ctx=...)`:

    - `handle_event(event, ctx)`: what the local pollers call, with an explicit context;
    - `handler(event, context)`: the Lambda entry point, its context built once per container from the environment.
    Each record is handled on its own; failed ones are returned as batchItemFailures, not failing the rest.
    """

    def handle_event(event: dict[str, Any], ctx: FunctionContext) -> dict[str, Any]:
        processor = BatchProcessor(event_type=EventType.SQS)
        return dict(process_partial_response(event=event, record_handler=partial(record_handler, ctx=ctx),
                                             processor=processor))

    contexts: list[FunctionContext] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not contexts:
            ctx = FunctionContext.from_env()
            # the deployment's logging_level applies to the functions' JSON logs (powertools Logger)
            logging.getLogger("batchscore.functions").setLevel(ctx.deployment.settings.logging_level.upper())
            contexts.append(ctx)
        return handle_event(event, contexts[0])

    return handle_event, handler
