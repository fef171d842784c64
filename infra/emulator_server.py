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


def main() -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # it warns about resource types it only records (queue policies); nothing to act on
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # ends when the parent closes our stdin (or dies), or on SIGTERM
    threading.Thread(target=_wait_for_eof, args=(stop,), daemon=True).start()
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
