"""The systems the benchmark compares, and how each one is started.

    direct       wrk → nginx upstream                      (the floor: no proxy at all)
    nginx        wrk → nginx keep-alive reverse proxy → upstream   (the C ceiling)
    bare         wrk → bare uvicorn+aiohttp+orjson forwarder → upstream
    modelway     wrk → modelway, 1 worker → upstream
    modelway-w2  wrk → modelway, --workers 2 → upstream     (scale-out only)

The proxy under test runs on GATEWAY_CPU; wrk, the upstream and this process on LOAD_CPU.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml

from benchmarks.procs import Service, Services, free_port

GATEWAY_CPU = "0"
LOAD_CPU = "1"
BOTH_CPUS = "0,1"
HERE = Path(__file__).parent

CHAT_PATH = "/v1/chat/completions"
STREAM_PATH = "/stream/v1/chat/completions"  # the upstream's streaming path
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
CHAT_BODY = orjson.dumps({"model": "bench", "messages": MESSAGES, "max_tokens": 16})
STREAM_BODY = orjson.dumps({"model": "bench-stream", "messages": MESSAGES, "max_tokens": 16, "stream": True})
SLOW_BODY = orjson.dumps({"model": "bench-slow", "messages": MESSAGES, "stream": True})


@dataclass
class System:
    name: str
    label: str
    port: int
    stream_path: str  # where this system serves the streaming answer
    service: Service | None  # the process whose CPU is measured (None: no proxy)

    def url(self, stream: bool = False) -> str:
        return f"http://127.0.0.1:{self.port}{self.stream_path if stream else CHAT_PATH}"

    def pids(self) -> list[int]:
        return self.service.pids() if self.service else []


def render_nginx(template: str, prefix: Path, **ports: int) -> Path:
    text = (HERE / template).read_text().replace("@@PREFIX@@", str(prefix))
    for name, port in ports.items():
        text = text.replace(f"@@{name.upper()}@@", str(port))
    path = prefix / template
    path.write_text(text)
    return path


def start_nginx(
    services: Services, nginx: str, workdir: Path, template: str, cpu: str, **ports: int
) -> Service:
    prefix = workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    config = render_nginx(template, prefix, **ports)
    argv = [nginx, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "startup-error.log")]
    service = Service(template.removesuffix(".conf"), argv, workdir / f"{template}.log", cpus=cpu)
    return services.start(service, ports["port"])


def modelway_config(providers: dict[str, str]) -> dict[str, object]:
    """One openai-compatible provider per public model; credentials injected as in real use."""
    return {
        "server": {"host": "127.0.0.1"},
        "providers": [
            {
                "name": name,
                "kind": "openai-compatible",
                "base_url": base_url,
                "auth": {"header": {"Authorization": "Bearer bench-upstream-key"}},
            }
            for name, base_url in providers.items()
        ],
        "models": [{"name": name, "deployments": [{"provider": name}]} for name in providers],
    }


def start_modelway(
    services: Services,
    workdir: Path,
    name: str,
    providers: dict[str, str],
    workers: int,
    cpus: str,
    source: Path | None = None,
    env: dict[str, str] | None = None,
) -> Service:
    """`python -m modelway serve`; `source` runs the modelway package of another checkout."""
    config = workdir / f"{name}.yaml"
    config.write_text(yaml.safe_dump(modelway_config(providers), sort_keys=False))
    port = free_port()
    argv = [sys.executable, "-m", "modelway", "serve", "--config", str(config), "--port", str(port)]
    if workers != 1:
        argv += ["--workers", str(workers)]
    service = Service(name, argv, workdir / f"{name}.log", cpus=cpus)
    if source is not None:
        service.cwd = source
        service.env = {**os.environ, "PYTHONPATH": str(source)}
    if env:
        service.env = {**(service.env or os.environ), **env}
    return services.start(service, port, health_url=f"http://127.0.0.1:{port}/health")


def start_bare(services: Services, workdir: Path, name: str, upstream_port: int) -> Service:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "benchmarks.bare_proxy",
        "--port",
        str(port),
        "--upstream",
        f"http://127.0.0.1:{upstream_port}",
    ]
    service = Service(name, argv, workdir / f"{name}.log", cpus=GATEWAY_CPU)
    return services.start(service, port)


def service_port(service: Service) -> int:
    argv = service.argv
    return int(argv[argv.index("--port") + 1])


def compare_name(source: Path) -> str:
    return f"modelway@{source.name}"


DEFAULT_SYSTEMS = ("direct", "nginx", "bare", "modelway", "modelway-w2")
# modelway-uvicorn: modelway with uvicorn's own HTTP protocol instead of modelway's (MODELWAY_HTTP=uvicorn)
ALL_SYSTEMS = (*DEFAULT_SYSTEMS, "modelway-uvicorn")


def start_upstream(services: Services, nginx: str, workdir: Path) -> int:
    """The near-free nginx upstream every system forwards to, on the load CPU; its port."""
    port = free_port()
    start_nginx(services, nginx, workdir, "nginx-upstream.conf", LOAD_CPU, port=port)
    return port


def start_load_systems(
    services: Services, nginx: str, workdir: Path, names: Sequence[str], compare: Sequence[Path] = ()
) -> list[System]:
    """The upstream, then each named system in front of it; `direct` always comes first.
    Each `compare` directory is another checkout whose modelway runs beside this one."""
    upstream_port = start_upstream(services, nginx, workdir)
    systems = [System("direct", "upstream direct (no proxy)", upstream_port, STREAM_PATH, None)]
    if "nginx" in names:
        port = free_port()
        proxy = start_nginx(
            services, nginx, workdir, "nginx-proxy.conf", GATEWAY_CPU, port=port, upstream_port=upstream_port
        )
        systems.append(System("nginx", "nginx keep-alive proxy", port, STREAM_PATH, proxy))
    if "bare" in names:
        bare = start_bare(services, workdir, "bare", upstream_port)
        systems.append(System("bare", "bare uvicorn+aiohttp proxy", service_port(bare), STREAM_PATH, bare))
    providers = {
        "bench": f"http://127.0.0.1:{upstream_port}/v1",
        "bench-stream": f"http://127.0.0.1:{upstream_port}/stream/v1",
    }
    if "modelway" in names:
        modelway = start_modelway(services, workdir, "modelway", providers, 1, GATEWAY_CPU)
        systems.append(System("modelway", "modelway, 1 worker", service_port(modelway), CHAT_PATH, modelway))
    if "modelway-uvicorn" in names:
        name = "modelway-uvicorn"
        other = start_modelway(services, workdir, name, providers, 1, GATEWAY_CPU, env={"MODELWAY_HTTP": "uvicorn"})
        systems.append(System(name, "modelway, 1 worker, uvicorn's protocol", service_port(other), CHAT_PATH, other))
    for source in compare:
        name = compare_name(source)
        other = start_modelway(services, workdir, name, providers, 1, GATEWAY_CPU, source)
        systems.append(
            System(name, f"modelway, 1 worker ({source.name})", service_port(other), CHAT_PATH, other)
        )
    if "modelway-w2" in names:
        # Two workers cannot share one CPU meaningfully: they get both, as a user would run them.
        w2 = start_modelway(services, workdir, "modelway-w2", providers, 2, BOTH_CPUS)
        label = "modelway, 2 workers (both CPUs)"
        systems.append(System("modelway-w2", label, service_port(w2), CHAT_PATH, w2))
    return systems
