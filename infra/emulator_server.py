"""The embedded emulator's own process: a moto server on a free loopback port, printed as its first line.

Run by EmbeddedEmulator. In a process of its own the server does not share a GIL with the pipeline's in-process
functions (ingest splitting files, the pollers), which would otherwise slow both down.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import warnings


def _wait_for_eof(stop: threading.Event) -> None:
    sys.stdin.read()
    stop.set()


def speed_up_moto() -> None:
    """Take the emulator's own per-request costs off the pipeline's path; what the services do is unchanged.

    - Routing a request lists moto's package folder (a stat per service) each time; the list never changes.
    - SQS computes the current time through datetime arithmetic for every queued message it looks at, and a
      ReceiveMessage rebuilds all of a queue's attributes (counting its messages) once per message it returns, to
      read the retention period: O(n^2) in the queue's length. Time comes from time.time() here, and the
      retention period is read directly.
    """
    import time

    from moto import backends
    from moto.sqs import models as sqs_models

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]

    exact = sqs_models.unix_time_millis

    def unix_time_millis(dt: object = None) -> float:
        return time.time() * 1000.0 if dt is None else exact(dt)  # type: ignore[arg-type]

    sqs_models.unix_time_millis = unix_time_millis  # type: ignore[assignment]

    def retained(self: object, queue_name: str, message: object) -> bool:
        queue = self.get_queue(queue_name)  # type: ignore[attr-defined]
        return int(queue.message_retention_period) + message.sent_timestamp / 1000 > time.time()  # type: ignore

    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]


def _warm_up() -> None:
    import importlib

    for module in ("moto.cloudformation.parsing", "moto.s3.models", "moto.sqs.models", "moto.dynamodb.models",
                   "moto.ec2.models"):
        importlib.import_module(module)


def main() -> None:
    from moto.server import ThreadedMotoServer

    speed_up_moto()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # it warns about resource types it only records (queue policies); nothing to act on
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    # moto imports a service's code on its first request; CloudFormation's pulls in most of moto (about 1 s).
    # Do it now, while the client gets ready, rather than inside the first request.
    threading.Thread(target=_warm_up, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # ends when the parent closes our stdin (or dies), or on SIGTERM
    threading.Thread(target=_wait_for_eof, args=(stop,), daemon=True).start()
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
