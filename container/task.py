"""The ECS task's entry point: `--workers N` worker processes (max_concurrency_per_instance), each replaced if it
exits, until ECS stops the task with SIGTERM; then each worker finishes or hands back its batch within its grace.

    python -m container.task --workers 2

The stack's resources come from the BATCHSCORE_* environment the task definition sets.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading

from batchscore.aws import AwsTarget
from batchscore.stack import StackResources
from container.pool import WorkerPool
from container.worker import DEFAULT_STOP_GRACE_S


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m container.task", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="worker processes in this task (default 1)")
    parser.add_argument("--stop-grace", type=float, default=DEFAULT_STOP_GRACE_S, metavar="SECONDS",
                        help="after SIGTERM, how long a worker's current batch may run before it is handed back")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s task %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # the workers' own output goes to the task's stdout/stderr, which ECS sends to CloudWatch Logs
    pool = WorkerPool(args.workers, AwsTarget.from_env(), StackResources.from_env(), inherit_output=True,
                      stop_grace_s=args.stop_grace, id_prefix=socket.gethostname()).start()
    stop.wait()
    pool.stop(grace_s=args.stop_grace + 3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
