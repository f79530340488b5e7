"""Processes of the benchmark: starting them pinned to a CPU, waiting until they listen,
reading their CPU time and memory from /proc, and stopping them (only the ones we started).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NGINX_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in NGINX_PATHS if os.access(p, os.X_OK)), None)


def ensure_tools() -> str:
    """nginx and wrk from the Debian packages, installed when missing; returns nginx's path."""
    missing = [
        name for name, present in (("nginx", find_nginx()), ("wrk", shutil.which("wrk"))) if not present
    ]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, timeout=600, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "nginx", "wrk"],
            check=True,
            env=env,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is required")
    nginx = find_nginx()
    if nginx is None or shutil.which("wrk") is None:
        raise SystemExit("nginx and wrk are required and could not be installed")
    return nginx


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of every thread of these processes, in seconds."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # The command name (field 2) may contain spaces: split after its closing parenthesis.
        fields = stat[stat.rindex(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / CLOCK_TICKS


def busy_seconds() -> tuple[float, float]:
    """Machine-wide (user + nice + system, steal) CPU seconds so far, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (fields[0] + fields[1] + fields[2]) / CLOCK_TICKS, fields[7] / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    """A `Vm*` line of /proc/PID/status (VmRSS, VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


@dataclass
class Service:
    """One process we started: `cpus` pins it with taskset."""

    name: str
    argv: list[str]
    log_path: Path
    cpus: str | None = None
    env: dict[str, str] | None = None
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Service:
        argv = ["taskset", "-c", self.cpus, *self.argv] if self.cpus else self.argv
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pids(self) -> list[int]:
        """The process and its workers (uvicorn --workers N forks them)."""
        return descendants(self.pid)

    def wait_listening(self, port: int, health_url: str | None = None, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited early (code {self.process.returncode}):\n{self.log_tail()}"
                )
            try:
                if health_url:
                    with urllib.request.urlopen(health_url, timeout=1) as response:
                        if response.status == 200:
                            return
                else:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(
            f"{self.name} did not start listening on {port} in {timeout:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        pids = self.pids()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        for pid in pids[1:]:  # workers that outlived their parent
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Services:
    """Everything started during a run, stopped in reverse order at the end."""

    def __init__(self) -> None:
        self.started: list[Service] = []

    def start(self, service: Service, port: int, health_url: str | None = None) -> Service:
        self.started.append(service.start())
        service.wait_listening(port, health_url)
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        if service in self.started:
            self.started.remove(service)

    def pids(self) -> list[int]:
        return [pid for service in self.started for pid in service.pids()]

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()
