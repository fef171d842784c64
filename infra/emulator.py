"""The embedded AWS emulator: a moto server in a child process (infra/emulator_server.py).

Kept free of heavy imports, so that the CLI can start it before loading the rest of the pipeline.
"""

from __future__ import annotations

import subprocess
import sys


class EmbeddedEmulator:
    """A moto server on a free loopback port, in a child process, for as long as the `with` block runs."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.endpoint_url = ""

    def start(self) -> EmbeddedEmulator:
        """Start the server's process and return at once: it imports moto while the caller does other work."""
        self.process = subprocess.Popen([sys.executable, "-m", "infra.emulator_server"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        return self

    def wait(self) -> str:
        """The endpoint URL, once the server listens."""
        if not self.endpoint_url:
            assert self.process is not None and self.process.stdout is not None
            line = self.process.stdout.readline().strip()
            if not line.startswith("http://"):
                self.__exit__()
                raise RuntimeError(f"the embedded AWS emulator did not start (it said {line!r})")
            self.endpoint_url = line
        return self.endpoint_url

    def __enter__(self) -> EmbeddedEmulator:
        if self.process is None:
            self.start()
        self.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        # its state lives in memory and is not wanted after the run: no graceful shutdown to wait for
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process = None
