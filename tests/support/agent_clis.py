"""Running the real coding-agent CLIs (Claude Code, Codex) offline against the gateway.

The CLIs are npm packages pinned in tests/agent_clis/package-lock.json and installed into
.cache/agent-clis by scripts/install-agent-clis.sh (scripts/test.sh runs it; `installed_cli`
runs it too when a test finds a CLI missing). A test skips only where npm cannot be had.

`run_offline` runs one with a scratch HOME and TMPDIR and a minimal environment (nothing of
the caller's: no stray API keys or base URLs), with every proxy variable pointing at a
`ProxyTrap` — a local port that records whatever connects — and NO_PROXY for 127.0.0.1, so a
CLI that tries to reach any other host shows up there. Where strace is on the machine the run
is traced as well and every connect() to an address outside the loopback range is reported:
that also catches traffic that ignores proxy variables (DNS, raw sockets).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".cache" / "agent-clis" / "node_modules" / ".bin"
INSTALL = ROOT / "scripts" / "install-agent-clis.sh"
NO_NPM = 3  # install-agent-clis.sh's exit status when npm is not on PATH

_install_lock = threading.Lock()
_install_failure: str | None = None


def installed_cli(name: str) -> Path:
    """The path of CLI `name` (claude, codex), installing the pinned CLIs first when missing.
    Skips the test only when npm is not on this machine; a failed install fails it."""
    global _install_failure
    path = BIN / name
    with _install_lock:
        if not path.exists() and _install_failure is None:
            if shutil.which("npm") is None:
                _install_failure = "skip"
            else:
                done = subprocess.run([shutil.which("bash") or "/bin/bash", str(INSTALL)], capture_output=True,
                                      text=True, timeout=600)
                if done.returncode == NO_NPM:
                    _install_failure = "skip"
                elif done.returncode != 0:
                    output = done.stdout + done.stderr
                    _install_failure = f"scripts/install-agent-clis.sh failed ({done.returncode}):\n{output}"
    if _install_failure == "skip":
        pytest.skip(f"the {name} CLI is not installed and npm is not on PATH: install Node.js and npm, "
                    "then run scripts/test.sh (or scripts/install-agent-clis.sh)")
    if _install_failure is not None:
        pytest.fail(_install_failure)
    return path


class ProxyTrap:
    """A local port standing in for a proxy: records the first line of every connection
    (`CONNECT host:443 HTTP/1.1`, `GET http://host/ HTTP/1.1`) and answers 403."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ProxyTrap:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a close alone does not, on Linux)
        self._server.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    line = conn.makefile("rb").readline(1024)
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    line = b""
                self.attempts.append(line.decode("latin-1").strip() or "(a connection that sent nothing)")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    traced: bool  # strace watched the run
    remote_connects: list[str] = field(default_factory=list)  # connect() calls to non-loopback addresses

    def describe(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.1f}s\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


CONNECT_V4 = re.compile(r'connect\(\d+, \{sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"')
CONNECT_V6 = re.compile(r'connect\(\d+, \{sa_family=AF_INET6, sin6_port=htons\((\d+)\).*?AF_INET6, "([^"]+)"')


def remote_connects(trace: str) -> list[str]:
    """The `address:port` of every connect() in an strace log whose address is not loopback."""
    found = []
    for line in trace.splitlines():
        match = CONNECT_V4.search(line) or CONNECT_V6.search(line)
        if match is None:
            continue
        port, address = match.groups()
        ip = ipaddress.ip_address(address)
        mapped = getattr(ip, "ipv4_mapped", None)
        if not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
            found.append(f"{address}:{port}")
    return found


def offline_env(scratch: Path, trap: ProxyTrap, extra: dict[str, str]) -> dict[str, str]:
    """A minimal environment: PATH with node, a scratch HOME and TMPDIR, every proxy variable at
    the trap (NO_PROXY for loopback), plus `extra`."""
    home, tmp = scratch / "home", scratch / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    node = shutil.which("node")
    path_dirs = [str(Path(node).parent)] if node else []
    path_dirs += [d for d in ("/usr/local/bin", "/usr/bin", "/bin") if d not in path_dirs]
    env = {"PATH": os.pathsep.join(path_dirs), "HOME": str(home), "TMPDIR": str(tmp), "LANG": "C.UTF-8", "TERM": "dumb"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = trap.url
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return {**env, **extra}


def run_offline(cmd: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 60) -> Run:
    """Run `cmd` in `cwd` with `env` (from `offline_env`), no stdin, under strace when there is one."""
    strace = shutil.which("strace")
    trace_path = Path(env["TMPDIR"]) / "connect.strace"
    full = [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace_path), *cmd] if strace else cmd
    started = time.monotonic()
    done = subprocess.run(full, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout_s)
    seconds = time.monotonic() - started
    trace = trace_path.read_text(errors="replace") if strace and trace_path.exists() else ""
    return Run(done.returncode, done.stdout, done.stderr, seconds, strace is not None, remote_connects(trace))
