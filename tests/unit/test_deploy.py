"""deploy/: the Dockerfile, docker-compose and Kubernetes files parse, hang together (names,
selectors, probes, grace periods above drain_s) and run the CLI as it really is: every
command they give is parsed by modelway's own argument parser, and every config they ship
is validated by modelway's own loader."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelway.cli import build_parser
from modelway.config.loader import parse_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def parses_as_cli(argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on an unknown or malformed argument
        pytest.fail(f"modelway {' '.join(argv)} is not a valid command line ({exc})")


def dockerfile_instruction(name: str) -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    found = re.findall(rf"^{name} (\[.*\])$", text, flags=re.MULTILINE)
    assert len(found) == 1, name
    parsed: list[str] = json.loads(found[0])
    return parsed


def test_the_image_runs_modelway_serve_as_a_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert dockerfile_instruction("ENTRYPOINT") == ["modelway"]
    command = dockerfile_instruction("CMD")
    parses_as_cli(command)
    assert command[0] == "serve"
    assert re.search(r"^USER (?!root|0\b)\S+$", text, flags=re.MULTILINE)
    assert "HEALTHCHECK" in text and "/health" in text


def kubernetes() -> dict[str, dict[str, Any]]:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "modelway.yaml").read_text()))
    by_kind = {doc["kind"]: doc for doc in documents}
    assert len(by_kind) == len(documents)
    for doc in documents:
        assert doc["apiVersion"] and doc["metadata"]["name"]
    return by_kind


def test_kubernetes_objects_hang_together() -> None:
    objects = kubernetes()
    assert set(objects) == {"ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
                            "PodDisruptionBudget"}
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (container,) = pod["spec"]["containers"]
    parses_as_cli(container["args"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    port = container["ports"][0]["containerPort"]
    assert container["args"][container["args"].index("--port") + 1] == str(port)
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] in ("http", port)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True

    # the ConfigMap's config is valid, with the Secret's keys as its environment
    env = dict.fromkeys(objects["Secret"]["stringData"], "x")
    mount = container["volumeMounts"][0]["mountPath"]
    assert container["args"][container["args"].index("--config") + 1] == f"{mount}/config.yaml"
    config = parse_config(objects["ConfigMap"]["data"]["config.yaml"], env)
    assert config.state.backend == "redis"
    assert pod["spec"]["terminationGracePeriodSeconds"] > config.server.drain_s


def test_compose_runs_the_cli_and_a_valid_config() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {"redis", "gateway", "demo-upstream", "balancer"} <= set(services)
    for name in ("gateway", "demo-upstream"):
        parses_as_cli(services[name]["command"])
    config = parse_config((DEPLOY / "compose" / "gateway.yaml").read_text(), {"MODELWAY_ADMIN_KEY": "x"})
    assert config.state.backend == "redis"
    assert "redis" in services["gateway"]["depends_on"]
    grace = int(services["gateway"]["stop_grace_period"].removesuffix("s"))
    assert grace > config.server.drain_s
