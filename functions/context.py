"""What every function needs: the stack's resources, AWS clients on one session, and the deployment."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

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
        self.jobs = JobsTable(self.target.resource("dynamodb", session).Table(self.stack.jobs_table),
                              self.target.client("dynamodb", session))

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
