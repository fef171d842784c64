"""`batchscore deploy`: create or update the stack from infra/template.yaml, sized from the deployment file, and
upload the deployment's code and model. The local runner deploys through the same function."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from batchscore.aws import AwsTarget
from batchscore.config import Deployment
from batchscore.exceptions import BatchscoreError, ConfigError
from batchscore.stack import StackResources
from infra import TEMPLATE_PATH
from infra.stack import apply_bucket_notifications, describe_stack, upload_deployment

# Fargate's task sizes: CPU units -> (smallest memory, largest memory, step), in MiB
FARGATE_SIZES = {
    256: (512, 2048, 512),  # 512, 1024, 2048 in fact; 1536 is refused below
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}
DEFAULT_WORK_VISIBILITY_S = 120


class DeployError(BatchscoreError):
    pass


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnet_ids: tuple[str, ...]
    assign_public_ip: bool


# the template's network parameters when no task will run in it (local runs: deployed without an image)
UNUSED_NETWORK = Network("vpc-00000000", ("subnet-00000000",), assign_public_ip=False)


def fargate_size(memory_mib: int, workers: int) -> tuple[int, int]:
    """(cpu units, memory MiB) of the smallest Fargate task with at least `memory_mib` and a vCPU per worker."""
    wanted_cpu = min(1024 * workers, 16384)
    for cpu, (low, high, step) in FARGATE_SIZES.items():
        if cpu < wanted_cpu or memory_mib > high:
            continue
        memory = max(low, -(-memory_mib // step) * step)
        if cpu == 256 and memory == 1536:
            memory = 2048
        return cpu, memory
    raise ConfigError(f"resources.memory_mib: {memory_mib} MiB is more than a Fargate task can have (122880 MiB)")


def default_network(target: AwsTarget) -> Network:
    """The region's default VPC and its subnets, which are public: tasks get a public IP to reach AWS APIs."""
    ec2 = target.client("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise ConfigError(f"no default VPC in {target.region}: pass --vpc-id and --subnet-ids "
                          "(subnets with a route to S3, SQS and DynamoDB)")
    vpc_id = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    if not subnets:
        raise ConfigError(f"the default VPC {vpc_id} has no subnets: pass --subnet-ids")
    return Network(vpc_id, tuple(sorted(s["SubnetId"] for s in subnets)), assign_public_ip=True)


def stack_parameters(deployment: Deployment, network: Network, image_uri: str = "",
                     work_visibility_s: int = DEFAULT_WORK_VISIBILITY_S) -> dict[str, str]:
    resources = deployment.resources
    cpu, memory = fargate_size(resources.memory_mib, resources.max_concurrency_per_instance)
    return {
        "ImageUri": image_uri,
        "VpcId": network.vpc_id,
        "SubnetIds": ",".join(network.subnet_ids),
        "AssignPublicIp": "ENABLED" if network.assign_public_ip else "DISABLED",
        "TaskCpu": str(cpu),
        "TaskMemoryMiB": str(memory),
        "WorkersPerTask": str(resources.max_concurrency_per_instance),
        "MaxTasks": str(resources.instance_count),
        "MaxReceiveCount": str(deployment.settings.retry_settings.max_retries + 1),
        "WorkVisibilityTimeoutSeconds": str(work_visibility_s),
    }


def deploy_stack(target: AwsTarget, stack_name: str, parameters: dict[str, str],
                 on_event: Callable[[str], None] | None = None) -> dict[str, str]:
    """Create the stack, or update it if it exists; wait; return its outputs. A failure names the resource."""
    cfn = target.client("cloudformation")
    exists = _stack_status(cfn, stack_name) is not None
    request = {
        "StackName": stack_name, "TemplateBody": TEMPLATE_PATH.read_text(),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    }
    started = time.time()
    with warnings.catch_warnings():
        # the emulator warns about resource types it only records (policies, alarms, scaling); no action needed
        warnings.simplefilter("ignore")
        try:
            if exists:
                cfn.update_stack(**request)
            else:
                cfn.create_stack(**request)
        except ClientError as exc:
            message = exc.response["Error"].get("Message", str(exc))
            if exists and "No updates are to be performed" in message:
                if on_event:
                    on_event(f"stack {stack_name}: no changes")
                return stack_outputs(cfn, stack_name)
            raise DeployError(f"stack {stack_name}: {'update' if exists else 'create'} refused: {message}") from None
        waiter = cfn.get_waiter("stack_update_complete" if exists else "stack_create_complete")
        try:
            waiter.wait(StackName=stack_name, WaiterConfig={"Delay": 1 if target.endpoint_url else 10,
                                                            "MaxAttempts": 720})
        except WaiterError:
            raise DeployError(failure_report(cfn, stack_name, since=started)) from None
    if on_event:
        on_event(f"stack {stack_name}: {'updated' if exists else 'created'} in {time.time() - started:.0f} s")
    return stack_outputs(cfn, stack_name)


def failure_report(cfn: Any, stack_name: str, since: float) -> str:
    """`stack NAME: STATUS` and, for each resource that failed since `since`, its logical id, type and reason."""
    status = _stack_status(cfn, stack_name) or "DELETED"
    lines = [f"stack {stack_name}: {status}"]
    events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    for event in reversed(events):
        if event["Timestamp"].timestamp() < since - 1 or not event.get("ResourceStatus", "").endswith("FAILED"):
            continue
        if event.get("LogicalResourceId") == stack_name:
            continue
        lines.append(f"  {event['LogicalResourceId']} ({event.get('ResourceType', '?')}): "
                     f"{event.get('ResourceStatus')}: {event.get('ResourceStatusReason', 'no reason given')}")
    if len(lines) == 1:
        lines.append("  no resource reported a failure; see the stack's events in the CloudFormation console")
    return "\n".join(lines)


def stack_outputs(cfn: Any, stack_name: str) -> dict[str, str]:
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _stack_status(cfn: Any, stack_name: str) -> str | None:
    stack = describe_stack(cfn, stack_name)
    return None if stack is None else str(stack["StackStatus"])


def deploy(target: AwsTarget, stack_name: str, deployment: Deployment, image_uri: str = "",
           network: Network | None = None, work_visibility_s: int = DEFAULT_WORK_VISIBILITY_S,
           on_event: Callable[[str], None] | None = None) -> tuple[StackResources, dict[str, str]]:
    """Deploy the stack for `deployment` and upload its code, model and settings; return its resources and outputs."""
    if network is None:
        # without an image there are no worker tasks (the service is conditional on it): no network to look up
        network = default_network(target) if image_uri else UNUSED_NETWORK
    parameters = stack_parameters(deployment, network, image_uri, work_visibility_s)
    outputs = deploy_stack(target, stack_name, parameters, on_event)
    if target.endpoint_url:
        # the emulator's CloudFormation does not wire bucket notifications; AWS does it from the template
        apply_bucket_notifications(target, stack_name)
    resources = StackResources.from_outputs(outputs)
    upload_deployment(target, resources, deployment)
    if on_event:
        on_event(f"uploaded code, model and settings to s3://{resources.artifacts_bucket}/deployment/")
    return resources, outputs
