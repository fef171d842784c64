"""The template and the code agree: every output the code reads, every entry command the image must run."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from batchscore.stack import StackResources
from infra.stack import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def of_type(kind: str) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def test_every_output_the_code_reads_is_in_the_template() -> None:
    assert set(StackResources.OUTPUT_KEYS) <= set(TEMPLATE["Outputs"])


@pytest.mark.parametrize("name", sorted(of_type("AWS::Lambda::Function")))
def test_each_function_command_imports_and_gets_the_stack_environment(name: str) -> None:
    props = RESOURCES[name]["Properties"]
    (command,) = props["ImageConfig"]["Command"]
    module, attr = command.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), attr)), command
    env = props["Environment"]["Variables"]
    assert set(StackResources.from_outputs(dict.fromkeys(StackResources.OUTPUT_KEYS, "x")).env()) <= set(env)


def test_the_worker_task_runs_the_task_entry_point_with_the_stack_environment() -> None:
    (container,) = RESOURCES["WorkerTaskDefinition"]["Properties"]["ContainerDefinitions"]
    python, dash_m, module = container["EntryPoint"]
    assert (python, dash_m) == ("python", "-m")
    assert callable(importlib.import_module(module).main)
    names = {e["Name"] for e in container["Environment"]}
    assert set(StackResources.from_outputs(dict.fromkeys(StackResources.OUTPUT_KEYS, "x")).env()) <= names


def test_each_queue_feeds_the_function_that_handles_it() -> None:
    feeds = {r["Properties"]["FunctionName"]["Ref"]: r["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
             for r in of_type("AWS::Lambda::EventSourceMapping").values()}
    assert feeds == {"IngestFunction": "IngestQueue", "DispatchFunction": "DispatchQueue",
                     "FinalizeFunction": "FinalizeQueue", "DeadLetterFunction": "WorkDeadLetterQueue"}
    for mapping in of_type("AWS::Lambda::EventSourceMapping").values():
        assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_no_role_allows_every_action_on_every_resource() -> None:
    for name, role in of_type("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert not any(a == "*" or a.endswith(":*") for a in actions), (name, statement)


def test_queues_wait_at_least_six_times_their_function_timeout() -> None:
    for mapping in of_type("AWS::Lambda::EventSourceMapping").values():
        function = RESOURCES[mapping["Properties"]["FunctionName"]["Ref"]]["Properties"]
        queue = RESOURCES[mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]]["Properties"]
        assert queue.get("VisibilityTimeout", 30) >= 6 * function["Timeout"]


def test_entry_modules_import_without_what_only_a_local_run_needs() -> None:
    # the image installs container/requirements.txt: no emulator, no scikit-learn
    import subprocess
    import sys

    modules = ["functions.ingest", "functions.dispatch", "functions.finalize", "functions.deadletter",
               "container.task", "container.worker", "container.scoring_process"]
    code = ("import sys\nfor name in ('moto', 'sklearn', 'hypothesis'):\n    sys.modules[name] = None\n"
            + "".join(f"import {m}\n" for m in modules))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_image_pins_every_runtime_dependency() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pinned = {line.split("==")[0] for line in (root / "container" / "requirements.txt").read_text().splitlines()
              if "==" in line}
    for name in ("boto3", "pyarrow", "pandas", "smart-open", "aws-lambda-powertools", "pydantic", "pyyaml", "psutil",
                 "awslambdaric"):
        assert name in pinned, name
    dockerfile = (root / "container" / "Dockerfile").read_text()
    assert "--requirement container/requirements.txt" in dockerfile and "--no-deps" in dockerfile
    assert "\nUSER " in dockerfile
