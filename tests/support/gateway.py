"""Starting the real gateway — `python -m modelway serve` — on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    def __init__(self, config: dict[str, Any] | None, env: dict[str, str] | None = None, workers: int = 1):
        self.config = config
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.env.pop("MODELWAY_CONFIG", None)
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory()
        self.log_path = Path(self._dir.name) / "gateway.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        """The config file it was started with (rewrite it, then reload)."""
        return Path(self._dir.name) / "config.yaml"

    def start(self) -> Gateway:
        cmd = [sys.executable, "-m", "modelway", "serve", "--port", str(self.port)]
        if self.workers != 1:
            cmd += ["--workers", str(self.workers)]
        if self.config is not None:
            path = Path(self._dir.name) / "config.yaml"
            path.write_text(yaml.safe_dump(self.config))
            cmd += ["--config", str(path)]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not become healthy:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if hasattr(self, "_log"):
            self._log.close()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._dir.cleanup()
