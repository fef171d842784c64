"""Dispatch at scale: API calls per file and seconds for a job of many small files, against the emulator.

    python bench/dispatch.py [--files 100000] [--mini-batch-size 10]

Creates the stack from infra/template.yaml on an embedded moto server, writes the inputs and their ledger
entries (ingest's work, done here directly so that only dispatch is measured), then runs the dispatch handler
once and counts its AWS calls by operation (botocore's before-call events). The floor is set by the batch APIs:
1 list per 1,000 keys, 1 ledger query page per ~1 MB, 1 batch write per 25 records, 1 send per 10 messages.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batchscore.aws import AwsTarget  # noqa: E402
from batchscore.config import parse_deployment  # noqa: E402
from batchscore.records import DispatchMessage, LedgerEntry, Shard  # noqa: E402
from functions import dispatch  # noqa: E402
from functions.context import FunctionContext  # noqa: E402
from infra.emulator import EmbeddedEmulator  # noqa: E402
from infra.local_run import deploy_local_stack  # noqa: E402


def drain(target: AwsTarget, queue_url: str, stop: threading.Event) -> None:
    sqs = target.client("sqs")
    while not stop.is_set():
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                   for i, m in enumerate(messages.get("Messages", []))]
        if entries:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--mini-batch-size", type=int, default=10)
    args = parser.parse_args()
    code = Path("/tmp/bench-dispatch-code")
    code.mkdir(exist_ok=True)
    (code / "score.py").write_text("def init():\n    pass\n\ndef run(b):\n    return b\n")
    deployment = parse_deployment({"name": "bench", "code_configuration": {"code": str(code),
                                                                           "scoring_script": "score.py"},
                                   "settings": {"mini_batch_size": args.mini_batch_size}})
    with EmbeddedEmulator() as emulator:
        target = AwsTarget(endpoint_url=emulator.endpoint_url)
        resources = deploy_local_stack(target, "bench-dispatch", deployment)
        ctx = FunctionContext(resources, target)
        # ingest is not what is measured: switch the inbox's notifications off while the inputs are written
        s3 = target.client("s3")
        s3.put_bucket_notification_configuration(Bucket=resources.inbox_bucket, NotificationConfiguration={})
        keys = [f"big/{i // 1000:03d}/f{i:06d}.csv" for i in range(args.files)]
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: s3.put_object(Bucket=resources.inbox_bucket, Key=k, Body=b"x\n1\n"), keys))
        print(f"{args.files:,} inputs written in {time.perf_counter() - started:.1f} s", flush=True)
        with ctx.jobs.table.batch_writer() as writer:
            for key in keys:
                entry = LedgerEntry(source=key, bytes=4, format="csv", shards=[Shard(key=key, source=key, bytes=4)])
                writer.put_item(Item={"pk": "job#big", "sk": "file#" + key, "data": entry.model_dump_json()})
        print(f"{args.files:,} inputs and ledger entries written in {time.perf_counter() - started:.1f} s")
        calls: collections.Counter[str] = collections.Counter()
        for client in (ctx.s3, ctx.sqs, ctx.jobs.client, ctx.jobs.table.meta.client):
            client.meta.events.register("before-call.*.*",
                                        lambda model, **_: calls.update([model.name]))
        _ = ctx.deployment  # read once per container: not a per-job cost
        # moto's SendMessage walks every queued message (O(n^2) for a long queue); a drainer standing in for
        # the workers keeps the work queue short, on its own client so that its calls are not counted
        stop = threading.Event()
        drainer = threading.Thread(target=drain, args=(target, resources.work_queue_url, stop), daemon=True)
        drainer.start()
        calls.clear()
        started = time.perf_counter()
        dispatch.dispatch_job(ctx, DispatchMessage(job_id="big", first_seen=time.time()))
        seconds = time.perf_counter() - started
        stop.set()
        drainer.join()
        job = ctx.jobs.get_job("big")
        assert job is not None and job.status == "running", job
        total = sum(calls.values())
        print(f"dispatched {args.files:,} files into {job.total_batches:,} batches in {seconds:.1f} s")
        print(f"API calls: {total:,} ({total / args.files:.4f} per file)")
        for name, count in calls.most_common():
            print(f"  {name:24s} {count:7,d}")


if __name__ == "__main__":
    main()
