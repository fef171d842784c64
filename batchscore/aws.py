"""One place that builds boto3 clients, so every layer talks to the same endpoint (AWS or the emulator)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

DEFAULT_REGION = "us-east-1"
# Enough connections for the worker's parallel downloads and the local pollers sharing one session.
MAX_POOL_CONNECTIONS = 32
# The emulator serves one request at a time and reads a whole object to answer each ranged GET, so against it
# files go in one request each way rather than in parallel 8 MB parts (10x faster for a 150 MB file).
EMULATOR_TRANSFER = TransferConfig(multipart_threshold=5 * 1024**3, use_threads=False)

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


@dataclass(frozen=True)
class AwsTarget:
    """Where AWS calls go: a real region, or an emulator at endpoint_url."""

    endpoint_url: str | None = None
    region: str = DEFAULT_REGION

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> AwsTarget:
        env = dict(os.environ) if env is None else env
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        )

    def session(self) -> boto3.Session:
        if self.endpoint_url:
            # The emulator accepts any credentials; never let a local run pick up a real account's keys.
            return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 region_name=self.region)
        return boto3.Session(region_name=self.region)

    def client(self, service: str, session: boto3.Session | None = None) -> Any:
        """A client of `service`; without a session, one shared per process (clients are thread-safe, and making
        one costs ~0.1 s)."""
        if session is not None:
            return self._new_client(service, session)
        key = (self.endpoint_url, self.region, service)
        with _clients_lock:
            if key not in _clients:
                _clients[key] = self._new_client(service, self.session())
            return _clients[key]

    def _new_client(self, service: str, session: boto3.Session) -> Any:
        config = Config(max_pool_connections=MAX_POOL_CONNECTIONS, retries={"max_attempts": 5, "mode": "standard"})
        client = session.client(service, endpoint_url=self.endpoint_url, config=config)
        if service == "s3" and self.endpoint_url:
            client.download_file = partial(client.download_file, Config=EMULATOR_TRANSFER)
            client.upload_file = partial(client.upload_file, Config=EMULATOR_TRANSFER)
        return client

    def resource(self, service: str, session: boto3.Session | None = None) -> Any:
        session = session or self.session()
        return session.resource(service, endpoint_url=self.endpoint_url)

    def env(self) -> dict[str, str]:
        """Environment that points a child process at the same target."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.endpoint_url:
            env |= {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing"}
        return env
