"""A throwaway redis-server of the tests' own, on a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from support.gateway import free_port


class RedisServer:
    """A throwaway redis-server on a free port: no persistence, stopped and restarted at will.
    With `tls` (a folder holding cert.pem and key.pem) it speaks TLS only; with `password`
    it requires one."""

    def __init__(self, tls: Path | None = None, password: str | None = None) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.tls = tls
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls / 'cert.pem'}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls / "cert.pem"),
                      "--tls-key-file", str(self.tls / "key.pem"), "--tls-auth-clients", "no"]
        if self.password:
            listen += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            [self.binary, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def started_redis(tls: Path | None = None, password: str | None = None) -> RedisServer:
    """A running redis-server, or the test skipped where none is installed."""
    if not (shutil.which("redis-server") or os.path.exists("/usr/bin/redis-server")):
        pytest.skip("redis-server is not installed (scripts/test.sh installs it with apt-get)")
    return RedisServer(tls, password).start()
