"""Dependencies used through more than their public API are bounded above by the newest
release the suite has passed against (docs/http-api.md, "Moving the uvicorn bound")."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def requirement(name: str) -> Requirement:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    found = [Requirement(spec) for spec in project["dependencies"] if Requirement(spec).name == name]
    assert len(found) == 1, f"{name} is not a dependency (or is listed twice)"
    return found[0]


def test_uvicorn_has_an_upper_bound_that_the_installed_release_meets() -> None:
    # modelway's server protocol (http1/server.py) is constructed by uvicorn as
    # (config, server_state, app_state) and reads server_state's connections, tasks and
    # default_headers: internals that a new uvicorn release may change.
    uvicorn = requirement("uvicorn")
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in uvicorn.specifier), (
        f"{uvicorn} has no upper bound"
    )
    installed = version("uvicorn")
    assert uvicorn.specifier.contains(installed), f"the suite runs with uvicorn {installed}, outside {uvicorn}"
