"""The batchscore command. Exit codes: 0 job succeeded, 1 job failed, 2 usage or configuration error."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from batchscore.exceptions import BatchscoreError, ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on usage errors, as we want; keep its message
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="batchscore", description="Batch scoring of files with the Azure ML batch contract, "
                     "on AWS or on this machine against an embedded AWS emulator.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    local = commands.add_parser("local", help="run jobs on this machine")
    local_commands = local.add_subparsers(dest="local_command", required=True, parser_class=_Parser)
    run = local_commands.add_parser(
        "run", help="score a folder of files through the whole pipeline on the embedded emulator",
        description="Upload INPUT_DIR as one job to an embedded AWS emulator (moto server), run the pipeline "
                    "(ingest, dispatch, workers, finalize) and download the predictions and _summary.json into "
                    "OUT_DIR. Exit code 0 if the job succeeded, 1 if it failed, 2 on a usage error.")
    run.add_argument("input_dir", metavar="INPUT_DIR", type=Path, help="folder of input files (walked recursively)")
    run.add_argument("--deployment", "-d", required=True, type=Path, help="deployment YAML (Azure ML names)")
    run.add_argument("--output", "-o", required=True, type=Path, metavar="OUT_DIR",
                     help="where predictions and _summary.json are written")
    run.add_argument("--job-id", help="job id (default: <name>-<time>-<random>)")
    run.add_argument("--endpoint-url", help="use this AWS endpoint instead of the embedded emulator "
                     "(default: $AWS_ENDPOINT_URL, else an embedded moto server on a free port)")
    run.add_argument("--worker-log", type=Path, help="append the worker processes' logs to this file")
    run.add_argument("--worker-stop-grace", type=float, metavar="SECONDS", default=None,
                     help="after SIGTERM a worker may finish its batch for this long before handing it back "
                          "(default 25, under ECS's 30 s stopTimeout)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="per-job setting, as in job.yaml (e.g. mini_batch_size=4, retry_settings.timeout=60); "
                          "repeatable")
    run.add_argument("--stack-name", "--stack", dest="stack_name",
                     help="use the stack of this name (e.g. one made by `batchscore deploy --endpoint-url`), or "
                          "create it under this name; its resources are used as they are, with the local pollers "
                          "and workers standing in for its functions and ECS service")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary table")
    run.set_defaults(func=cmd_local_run)

    deploy = commands.add_parser(
        "deploy", help="create or update the stack on AWS (or an emulator) and upload code and model",
        description="Create or update the CloudFormation stack from infra/template.yaml, sized from DEPLOYMENT "
                    "(resources.memory_mib, max_concurrency_per_instance, instance_count; retry_settings), wait "
                    "for it, upload the code, model and settings to its artifacts bucket, and print its outputs. "
                    "Workers run in the region's default VPC unless --vpc-id and --subnet-ids are given.")
    deploy.add_argument("deployment", metavar="DEPLOYMENT", type=Path, help="deployment YAML (Azure ML names)")
    deploy.add_argument("--stack-name", required=True, help="CloudFormation stack name (also the buckets' prefix)")
    deploy.add_argument("--image-uri", default="",
                        help="the batchscore image in ECR (container/Dockerfile); required on AWS, where the "
                             "functions and workers run from it; without it only the data plane is created")
    deploy.add_argument("--vpc-id", help="VPC of the worker tasks (default: the region's default VPC)")
    deploy.add_argument("--subnet-ids", help="comma-separated subnets of the worker tasks (default: the default "
                        "VPC's); they need a route to S3, SQS and DynamoDB")
    deploy.add_argument("--assign-public-ip", choices=["yes", "no"],
                        help="give worker tasks a public IP (default: yes in the default VPC, no otherwise)")
    deploy.add_argument("--endpoint-url", help="AWS endpoint (default: $AWS_ENDPOINT_URL, else AWS)")
    deploy.add_argument("--json", action="store_true", help="print the outputs as JSON")
    deploy.set_defaults(func=cmd_deploy)

    submit = commands.add_parser(
        "submit", help="start a job whose files are (or are being) uploaded to the inbox",
        description="Optionally upload --input DIR under the job's folder, then write <job-id>/job.yaml (when "
                    "--set is given) and the <job-id>/_SUCCESS marker that starts the job. Dispatch waits until "
                    "every input under the prefix has been ingested. Name the job either as JOB_ID with "
                    "--stack-name, or as s3://INBOX-BUCKET/JOB-ID/.")
    submit.add_argument("job", metavar="JOB_ID|s3://BUCKET/JOB-ID/", help="the job, by id or by its inbox folder")
    submit.add_argument("--stack-name", help="the deployed stack whose inbox receives the job")
    submit.add_argument("--input", type=Path, metavar="DIR", help="upload this folder's files first (walked "
                        "recursively; names starting with . or _ are skipped)")
    submit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="per-job setting (mini_batch_size, max_mini_batch_bytes, output_file_name, "
                             "output_action, error_threshold, retry_settings.*, row_batch_size, keep_columns, "
                             "memory_fallback); repeatable")
    submit.add_argument("--endpoint-url", help="AWS endpoint (default: $AWS_ENDPOINT_URL, else AWS)")
    submit.set_defaults(func=cmd_submit)

    outputs = commands.add_parser(
        "outputs", help="list or download a finished job's predictions and summary",
        description="List the job's outputs in the stack's outputs bucket (predictions, _summary.json, "
                    "_errors/, _SUCCESS or _FAILED), or download them with --download DIR.")
    outputs.add_argument("job_id", metavar="JOB_ID")
    outputs.add_argument("--stack-name", required=True, help="the stack the job ran in")
    outputs.add_argument("--download", type=Path, metavar="DIR", help="download the outputs into DIR")
    outputs.add_argument("--endpoint-url", help="AWS endpoint (default: $AWS_ENDPOINT_URL, else AWS)")
    outputs.set_defaults(func=cmd_outputs)

    status = commands.add_parser("status", help="show a job's progress",
                                 description="State, batches done / failed / total, items per second and the "
                                             "failures so far of a job in a stack.")
    status.add_argument("job_id", metavar="JOB_ID")
    status.add_argument("--stack-name", required=True, help="the stack the job runs in")
    status.add_argument("--endpoint-url", help="AWS endpoint (default: $AWS_ENDPOINT_URL, else AWS)")
    status.add_argument("--watch", action="store_true", help="refresh until the job ends")
    status.add_argument("--json", action="store_true", help="print JSON, for scripts")
    status.set_defaults(func=cmd_status)

    report = commands.add_parser(
        "report", help="one HTML page with pictures of what a job did",
        description="Render a job's _summary.json as one self-contained HTML file: input sizes before and after "
                    "splitting, a timeline of each worker's batches, items per second, each batch's peak "
                    "memory against the cap, the failures and the settings. JOB is a local run's OUT_DIR, or a "
                    "job id with --stack-name (its summary is read from the stack's outputs bucket).")
    report.add_argument("job", metavar="JOB_ID|OUT_DIR")
    report.add_argument("--output", "-o", type=Path, help="the HTML file (default: OUT_DIR/report.html, or "
                        "JOB_ID-report.html)")
    report.add_argument("--stack-name", help="the stack a job id ran in")
    report.add_argument("--endpoint-url", help="AWS endpoint (default: $AWS_ENDPOINT_URL, else AWS)")
    report.set_defaults(func=cmd_report)

    plan = commands.add_parser(
        "plan", help="measure the scoring script's memory and choose level, batch and shard sizes that fit",
        description="Run the scoring script in a real scoring process, capped at the worker's memory "
                    "(memory_mib / max_concurrency_per_instance), on inputs of several sizes cut from the "
                    "largest file in --sample, at each level the payload allows; fit how its peak memory grows "
                    "with the input, and predict the peak of the real input's largest shard and mini-batch "
                    "(--data: a folder or s3:// prefix, listed, not read; default: the sample). Prints a table "
                    "per level and one recommended configuration; --write puts it into the deployment file.")
    plan.add_argument("--deployment", "-d", required=True, type=Path, help="deployment YAML")
    plan.add_argument("--sample", required=True, type=Path, metavar="DIR", help="a few input files to measure on")
    plan.add_argument("--data", metavar="DIR_OR_S3_PREFIX", help="the real input, whose sizes are listed")
    plan.add_argument("--write", action="store_true", help="write the recommendation into the deployment file "
                      "(the previous file is kept as .bak)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--endpoint-url", help="S3 endpoint for an s3:// --data (default: $AWS_ENDPOINT_URL)")
    plan.set_defaults(func=cmd_plan)

    split = commands.add_parser(
        "split", help="split one file into record-aligned shards and print the manifest",
        description="Stream SOURCE (a local path or s3:// URL) into shards of at most --max-shard-bytes, cut "
                    "only between records: CSV/TSV (quote-aware, header repeated in every shard), JSON Lines and "
                    "text (on newlines), Parquet (on row groups, re-chunked when a row group is too big), and "
                    "their .gz forms. Other files are not split. Prints the manifest as JSON.")
    split.add_argument("source", metavar="SOURCE", help="local path or s3://bucket/key")
    split.add_argument("--max-shard-bytes", required=True, type=_size, metavar="SIZE",
                       help="largest shard, e.g. 64MiB, 1GB or 1048576")
    split.add_argument("--output", "-o", required=True, metavar="DEST", help="local folder or s3://bucket/prefix")
    split.add_argument("--format", choices=["csv", "tsv", "jsonl", "text", "parquet", "binary"],
                       help="override the format guessed from SOURCE's name")
    split.add_argument("--endpoint-url", help="S3 endpoint for s3:// paths (default: $AWS_ENDPOINT_URL)")
    split.set_defaults(func=cmd_split)
    return parser


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs into a settings mapping; dotted keys nest, values are read as YAML scalars."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value) if value else ""
    return result


def _target(endpoint_url: str | None) -> Any:
    from batchscore.aws import AwsTarget

    env = AwsTarget.from_env()
    return AwsTarget(endpoint_url=endpoint_url or env.endpoint_url, region=env.region)


def _stack(target: Any, stack_name: str) -> Any:
    from infra.stack import stack_resources

    resources = stack_resources(target, stack_name)
    if resources is None:
        raise ConfigError(f"--stack-name {stack_name}: no such stack at {target.endpoint_url or 'AWS'} "
                          f"({target.region}); create it with `batchscore deploy`")
    return resources


def cmd_deploy(args: argparse.Namespace) -> int:
    import json

    from batchscore.config import load_deployment
    from infra.deploy import Network, default_network, deploy

    deployment = load_deployment(args.deployment)
    target = _target(args.endpoint_url)
    if not args.image_uri and not target.endpoint_url:
        raise ConfigError("--image-uri is required on AWS: the functions and workers run from that image "
                          "(see the README: build and push container/Dockerfile)")
    if bool(args.vpc_id) != bool(args.subnet_ids):
        raise ConfigError("--vpc-id and --subnet-ids go together (or leave both out for the default VPC)")
    if args.vpc_id:
        network = Network(args.vpc_id, tuple(s.strip() for s in args.subnet_ids.split(",") if s.strip()),
                          assign_public_ip=args.assign_public_ip == "yes")
    else:
        network = default_network(target)
        if args.assign_public_ip:
            network = Network(network.vpc_id, network.subnet_ids, args.assign_public_ip == "yes")
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    _, outputs = deploy(target, args.stack_name, deployment, image_uri=args.image_uri, network=network,
                        on_event=say)
    if args.json:
        print(json.dumps(outputs, indent=2))
    else:
        for key, value in outputs.items():
            print(f"  {key:24s} {value}")
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from batchscore.records import is_valid_job_id
    from infra.local_run import input_files, submit_job, upload_inputs

    target = _target(args.endpoint_url)
    if args.job.startswith("s3://"):
        bucket, _, job_id = args.job[5:].partition("/")
        job_id = job_id.strip("/")
        if not bucket or not job_id or "/" in job_id:
            raise ConfigError(f"{args.job}: expected s3://BUCKET/JOB-ID/ (the job's folder, one level deep)")
    elif args.stack_name:
        bucket, job_id = _stack(target, args.stack_name).inbox_bucket, args.job
    else:
        raise ConfigError(f"{args.job}: give the job as s3://BUCKET/JOB-ID/, or its id with --stack-name")
    if not is_valid_job_id(job_id):
        raise ConfigError(f"job id {job_id!r}: must not contain '/' or start with '_' or '.'")
    s3 = target.client("s3")
    overrides = parse_overrides(args.overrides)
    if args.input is not None:
        files = list(input_files(args.input)) if args.input.is_dir() else []
        if not files:
            raise ConfigError(f"--input {args.input}: not a folder with input files")
        upload_inputs(s3, bucket, job_id, args.input, files)
        print(f"uploaded {len(files)} file(s) to s3://{bucket}/{job_id}/")
    submit_job(s3, bucket, job_id, overrides)
    print(f"submitted {job_id}: s3://{bucket}/{job_id}/_SUCCESS")
    return EXIT_OK


def cmd_outputs(args: argparse.Namespace) -> int:
    from infra.local_run import download_outputs, list_outputs

    target = _target(args.endpoint_url)
    resources = _stack(target, args.stack_name)
    s3 = target.client("s3")
    if args.download is None:
        found = list_outputs(s3, resources.output_bucket, args.job_id)
        if not found:
            raise ConfigError(f"job {args.job_id}: no outputs in s3://{resources.output_bucket}/{args.job_id}/ yet "
                              "(see `batchscore status`)")
        for key, size in found:
            print(f"{size:>12,d}  s3://{resources.output_bucket}/{key}")
        return EXIT_OK
    summary = download_outputs(s3, resources.output_bucket, args.job_id, args.download)
    print(f"downloaded job {args.job_id} ({summary['status']}) into {args.download}")
    return EXIT_OK if summary["status"] == "succeeded" else EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from batchscore.jobs_table import JobsTable

    target = _target(args.endpoint_url)
    resources = _stack(target, args.stack_name)
    jobs = JobsTable.connect(resources.jobs_table, target)
    while True:
        job = jobs.get_job(args.job_id)
        if job is None:
            raise ConfigError(f"job {args.job_id}: not started in stack {args.stack_name} "
                              "(no marker yet, or its inputs are still being ingested)")
        report = job_status(job, jobs.batches(args.job_id))
        if args.json:
            print(json.dumps(report))
        else:
            print_status(report)
        if not args.watch or job.status in ("succeeded", "failed"):
            return EXIT_OK if job.status != "failed" else EXIT_FAILED
        time.sleep(2)


def job_status(job: Any, batches: list[Any]) -> dict[str, Any]:
    done = [b for b in batches if b.result is not None]
    elapsed = (max((b.result.finished_at for b in done), default=0.0) - job.dispatched_at) if done else 0.0
    failures = [f.model_dump() for b in done for f in b.result.failures]
    return {"job_id": job.job_id, "status": job.status, "batches_total": job.total_batches,
            "batches_done": job.done_batches, "batches_failed": sum(1 for b in done if b.result.failed_items),
            "succeeded_items": job.succeeded_items, "failed_items": job.failed_items,
            "items_per_s": round(job.succeeded_items / elapsed, 1) if elapsed > 0 else None,
            "failures": failures, "error": job.error}


def print_status(report: dict[str, Any]) -> None:
    rate = f", {report['items_per_s']:,.0f} items/s" if report["items_per_s"] else ""
    print(f"{report['job_id']}: {report['status']}; batches {report['batches_done']}/{report['batches_total']} "
          f"done ({report['batches_failed']} with failures); {report['succeeded_items']} items scored, "
          f"{report['failed_items']} failed{rate}")
    for failure in report["failures"][:10]:
        where = f" row {failure['row']}" if failure.get("row") is not None else ""
        print(f"  failed {failure['source']}{where} ({failure['items']} item(s)): {failure['reason']}")
    if report["error"]:
        print(f"  error: {report['error']}")


def _size(text: str) -> int:
    from pydantic import ByteSize, TypeAdapter, ValidationError

    try:
        return int(TypeAdapter(ByteSize).validate_python(text))
    except ValidationError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 64MiB, 1GB or a number of bytes)") from None


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from batchscore import keys
    from jobreport.html import render

    folder = Path(args.job)
    if folder.is_dir():
        path = folder / keys.SUMMARY
        if not path.is_file():
            raise ConfigError(f"{folder}: no {keys.SUMMARY} (is it a finished job's output folder?)")
        summary = json.loads(path.read_text())
        output = args.output or folder / "report.html"
    elif args.stack_name:
        target = _target(args.endpoint_url)
        resources = _stack(target, args.stack_name)
        s3 = target.client("s3")
        try:
            body = s3.get_object(Bucket=resources.output_bucket, Key=keys.job_output_key(args.job, keys.SUMMARY))
        except s3.exceptions.NoSuchKey:
            raise ConfigError(f"job {args.job}: no {keys.SUMMARY} in s3://{resources.output_bucket}/{args.job}/ "
                              "(not finished yet? see `batchscore status`)") from None
        summary = json.loads(body["Body"].read())
        output = args.output or Path(f"{args.job}-report.html")
    else:
        raise ConfigError(f"{args.job}: not a folder; give a local run's OUT_DIR, or a job id with --stack-name")
    output.write_text(render(summary))
    print(f"report: {output}")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    import json
    import math

    from batchscore.config import load_deployment
    from planner.core import MiB, PlanError, list_sizes, measure, plan

    deployment = load_deployment(args.deployment)
    if not args.sample.is_dir():
        raise ConfigError(f"--sample {args.sample}: not a folder")
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    data = args.data or str(args.sample)
    try:
        sizes = list_sizes(data, _target(args.endpoint_url) if data.startswith("s3://") else None)
        if not sizes:
            raise ConfigError(f"--data {data}: no input files")
        runtime_mib, init_mib, fits = measure(deployment, args.sample, on_step=lambda line: say(f"  measured {line}"))
        result = plan(deployment, runtime_mib, init_mib, fits, sizes)
    except PlanError as exc:
        print(f"batchscore plan: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"cap_mib": result.cap_mib, "runtime_mib": round(result.runtime_mib, 1),
                          "after_init_mib": round(result.init_mib, 1),
                          "model_mib": round(result.init_mib - result.runtime_mib, 1),
                          "levels": result.rows, "current": result.current_verdict,
                          "recommended": result.recommended,
                          "fits": {lv: {"base_mib": round(f.base_mib, 1), "mib_per_input_mib": round(f.mib_per_mib, 3),
                                        "kib_per_row": f.kib_per_row, "linear": f.linear, "points": f.points}
                                   for lv, f in fits.items()}},
                         default=lambda v: None if v == math.inf else v, indent=2))
    else:
        print(f"the script and its model take {result.init_mib - result.runtime_mib:.0f} MiB over the runtime's "
              f"{result.runtime_mib:.0f} MiB")
        print(f"cap per worker: {result.cap_mib} MiB; after init(): {result.init_mib:.0f} MiB; input: "
              f"{result.input_files} file(s), {result.input_bytes / MiB:,.1f} MiB; largest shard "
              f"{result.largest_shard / MiB:,.1f} MiB, largest mini-batch {result.largest_batch / MiB:,.1f} MiB")
        print(f"{'level':11s} {'grows':>33s} {'largest unit':>14s} {'predicted':>10s} {'largest that fits':>18s}"
              "  verdict")
        for row in result.rows:
            fit = fits[row["level"]]
            fitting = row["largest_fitting_mib"]
            fitting_text = "any" if fitting == math.inf else "none" if fitting is None else f"{fitting:,.1f} MiB"
            per_row = f" ({fit.kib_per_row:.2f} KiB/row)" if fit.kib_per_row is not None else ""
            grows = f"{fit.mib_per_mib:.2f} MiB/MiB{per_row}" + ("" if fit.linear else "*")
            print(f"{row['level']:11s} {grows:>33s} {row['unit_bytes'] / MiB:>10,.1f} MiB "
                  f"{row['predicted_peak_mib']:>6,.0f} MiB {fitting_text:>18s}  "
                  f"{'fits' if row['fits'] else 'too big'}")
        if any(not f.linear for f in fits.values()):
            print("* memory does not grow in a straight line with the input at this level: leave more margin")
        print(f"current settings: {result.current_verdict}")
        print("recommended: " + ", ".join(f"{k}={v}" for k, v in result.recommended.items()))
    if args.write:
        write_recommendation(args.deployment, result.recommended)
        say(f"wrote the recommendation into {args.deployment} (previous file: {args.deployment}.bak)")
    return EXIT_OK


def write_recommendation(path: Path, recommended: dict[str, Any]) -> None:
    import shutil

    raw = yaml.safe_load(path.read_text())
    shutil.copy(path, path.with_name(path.name + ".bak"))
    settings = raw.setdefault("settings", {})
    for key in ("level", "mini_batch_size", "max_shard_bytes", "max_mini_batch_bytes"):
        if key in recommended:
            settings[key] = recommended[key]
    raw.setdefault("resources", {})["max_concurrency_per_instance"] = recommended["max_concurrency_per_instance"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def cmd_split(args: argparse.Namespace) -> int:
    import json

    from splitter import SplitError, split

    client = None
    if args.source.startswith("s3://") or args.output.startswith("s3://"):
        client = _target(args.endpoint_url).client("s3")
    elif not Path(args.source).is_file():
        raise ConfigError(f"SOURCE {args.source}: no such file")
    try:
        manifest = split(args.source, args.output, args.max_shard_bytes, fmt=args.format, client=client)
    except SplitError as exc:  # corrupt input included: the message names the file
        print(f"batchscore split: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(manifest.to_dict(), indent=2))
    return EXIT_OK


def cmd_local_run(args: argparse.Namespace) -> int:
    import os

    from infra.emulator import EmbeddedEmulator

    # the emulator's process starts first: it imports moto (a second or so) while this one loads the pipeline
    emulator = None
    if not args.endpoint_url and not os.environ.get("AWS_ENDPOINT_URL"):
        emulator = EmbeddedEmulator().start()
    try:
        return _local_run(args, emulator)
    finally:
        if emulator is not None:
            emulator.__exit__()


def _local_run(args: argparse.Namespace, emulator: Any) -> int:
    from batchscore.config import load_deployment
    from batchscore.records import is_valid_job_id
    from infra.local_run import LocalRun, new_job_id, run_local_job

    # the in-process functions log JSON for CloudWatch; on a terminal only their warnings are worth showing
    logging.getLogger("batchscore.functions").setLevel(logging.WARNING)

    deployment = load_deployment(args.deployment)
    job_id = args.job_id or new_job_id(deployment)
    if not is_valid_job_id(job_id):
        raise ConfigError(f"--job-id {job_id!r}: must not contain '/' or start with '_' or '.'")
    overrides = parse_overrides(args.overrides)
    if overrides:
        from functions.dispatch import apply_overrides

        apply_overrides(deployment, yaml.safe_dump(overrides).encode(), source="--set")  # fail early, exit 2
    run = LocalRun(input_dir=args.input_dir, deployment=deployment, output_dir=args.output, job_id=job_id,
                   endpoint_url=args.endpoint_url, worker_log=args.worker_log, stop_grace_s=args.worker_stop_grace,
                   overrides=overrides, stack_name=args.stack_name, emulator=emulator)
    started = time.monotonic()
    with _progress(enabled=not args.quiet and sys.stderr.isatty(), payload=deployment.settings.payload) as show:
        summary = run_local_job(run, on_progress=show)
    if not args.quiet:
        print_summary(summary, args.output, time.monotonic() - started)
    return EXIT_OK if summary["status"] == "succeeded" else EXIT_FAILED


class _progress:
    """A rich progress bar of batches done / total and items per second, on a terminal only."""

    def __init__(self, enabled: bool, payload: str) -> None:
        self.enabled = enabled
        self.unit = "rows" if payload == "dataframe" else "files"
        self.progress: Any = None
        self.task: Any = None
        self.started = time.monotonic()

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("batches"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                 transient=True)
        self.progress.start()
        self.task = self.progress.add_task("waiting for ingest", total=None, rate="")
        return self.update

    def update(self, job: Any) -> None:
        if job is None or self.progress is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = f"{job.succeeded_items / elapsed:,.0f} {self.unit}/s"
        self.progress.update(self.task, description=job.status, total=job.total_batches or None,
                             completed=job.done_batches, rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def print_summary(summary: dict[str, Any], output_dir: Path, wall_s: float) -> None:
    from rich.console import Console

    console = Console(stderr=False)
    ok = summary["status"] == "succeeded"
    unit = summary.get("items_are", "items")
    console.print(f"[bold {'green' if ok else 'red'}]job {summary['job_id']} {summary['status']}[/] in {wall_s:.1f} s:"
                  f" {summary['input_files']} file(s), {summary['shards']} shard(s), {summary['mini_batches']} "
                  f"mini-batch(es); {summary['succeeded_items']} {unit} scored, {summary['failed_items']} failed")
    if summary.get("output_file"):
        console.print(f"predictions: {output_dir / summary['output_file']}")
    console.print(f"summary:     {output_dir / '_summary.json'}")
    if summary.get("error"):
        console.print(f"[red]error:[/] {summary['error']}", markup=True, highlight=False)
    for failure in summary.get("failures", [])[:10]:
        console.print(f"  [red]failed[/] {failure['source']}: {failure['reason']}", highlight=False)
    if len(summary.get("failures", [])) > 10:
        console.print(f"  ... and {len(summary['failures']) - 10} more in _summary.json")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("batchscore").setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"batchscore: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BatchscoreError as exc:
        print(f"batchscore: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("batchscore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
