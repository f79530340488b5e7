"""`modelway schema`: the JSON Schema editors use must accept what `modelway check` accepts,
reject what it rejects, and describe every field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from modelway.config import load_config
from modelway.config.jsonschema import config_json_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "modelway", "schema"], capture_output=True, check=True, cwd=ROOT
    ).stdout
    parsed: dict[str, Any] = orjson.loads(out)
    return parsed


def test_the_shipped_configs_are_valid_against_it(schema: dict[str, Any]) -> None:
    for path in [ROOT / "examples" / "vllm-gpustack.yaml", ROOT / "modelway" / "config" / "demo.yaml"]:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    load_config(str(ROOT / "modelway" / "config" / "demo.yaml"))  # and modelway agrees


def test_a_typo_and_a_wrong_type_are_rejected(schema: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError, match="stratgy"):
        jsonschema.validate(
            {"models": [{"name": "m", "stratgy": "random", "deployments": [{"provider": "p"}]}]}, schema
        )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"server": {"port": "four thousand"}}, schema)


def test_every_field_has_a_description() -> None:
    schema = config_json_schema()
    models = {"Config": schema, **schema["$defs"]}
    undescribed = [
        f"{name}.{field}"
        for name, model in models.items()
        for field, prop in model.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undescribed == []
