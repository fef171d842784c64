"""A deployed stack's resources, the template read as data, and the deployment's upload to the artifacts bucket."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from batchscore import keys
from batchscore.aws import AwsTarget
from batchscore.config import Deployment
from batchscore.stack import StackResources
from infra import TEMPLATE_PATH

logger = logging.getLogger(__name__)


class StackError(Exception):
    pass


def _cfn_loader() -> type[yaml.SafeLoader]:
    """A YAML loader that keeps CloudFormation's short-form tags (!Ref, !GetAtt, !Sub) as plain values."""

    class Loader(yaml.SafeLoader):
        pass

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if suffix == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    Loader.add_multi_constructor("!", construct)
    return Loader


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_cfn_loader())  # noqa: S506 - a SafeLoader subclass


def describe_stack(cfn: Any, stack_name: str) -> dict[str, Any] | None:
    """The stack's description, or None when there is no live stack of that name."""
    try:
        stack: dict[str, Any] = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except cfn.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return None if stack["StackStatus"] == "DELETE_COMPLETE" else stack


def stack_resources(target: AwsTarget, stack_name: str) -> StackResources | None:
    """The resources of an existing stack, or None when there is no stack of that name."""
    stack = describe_stack(target.client("cloudformation"), stack_name)
    if stack is None:
        return None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    try:
        return StackResources.from_outputs(outputs)
    except KeyError as exc:
        raise StackError(f"stack {stack_name} is not a batchscore stack: {exc}") from exc


def apply_bucket_notifications(target: AwsTarget, stack_name: str, template_path: Path = TEMPLATE_PATH) -> None:
    """Apply the template's S3 -> SQS notifications, which the emulator's CloudFormation does not.

    Read from the template itself, so the local wiring cannot drift from what AWS would build.
    """
    template = load_template(template_path)
    cfn = target.client("cloudformation")
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
                if "LogicalResourceId" in r and "PhysicalResourceId" in r}
    s3, sqs = target.client("s3"), target.client("sqs")
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::S3::Bucket":
            continue
        config = resource.get("Properties", {}).get("NotificationConfiguration", {})
        queue_configs = []
        for entry in config.get("QueueConfigurations", []):
            queue_logical = entry["Queue"]["Fn::GetAtt"][0]
            arn = sqs.get_queue_attributes(QueueUrl=physical[queue_logical],
                                           AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            queue_configs.append({"QueueArn": arn, "Events": [entry["Event"]]})
        if queue_configs:
            s3.put_bucket_notification_configuration(
                Bucket=physical[logical], NotificationConfiguration={"QueueConfigurations": queue_configs})


def upload_deployment(target: AwsTarget, stack: StackResources, deployment: Deployment) -> None:
    """Code, model and the validated deployment go to the artifacts bucket, where functions and workers read them."""
    s3 = target.client("s3")
    bucket = stack.artifacts_bucket
    code = deployment.code_configuration.code
    for path in sorted(p for p in code.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        s3.upload_file(str(path), bucket, keys.artifact_key("code", path.relative_to(code).as_posix()))
    if deployment.model is not None:
        model = deployment.model
        files = [model] if model.is_file() else sorted(p for p in model.rglob("*") if p.is_file())
        base = model.parent if model.is_file() else model
        for path in files:
            s3.upload_file(str(path), bucket, keys.artifact_key("model", path.relative_to(base).as_posix()))
    s3.put_object(Bucket=bucket, Key=keys.artifact_key("deployment.json"),
                  Body=deployment.model_dump_json().encode())
