"""The second stage: from the parsed request to where it goes.

    map the model name → authorize → router plugins (proxy/decide.py) → model table

`requested_model` maps the name; `resolve` turns it into a `Resolved`: a route (or a
plugin's executor call), the public model it serves, and the headers the answer carries
whatever it is (`x-modelway-route` when debugging). Refusals are GatewayErrors (400, 403,
404) carrying those headers too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from modelway.errors import BadRequest, NotFound, clip
from modelway.proxy.auth import authorize
from modelway.proxy.decide import RouteTrace, route_summary, run_routers, wants_debug
from modelway.proxy.executor import ExecutorCall

if TYPE_CHECKING:
    from modelway.asgi import App
    from modelway.mapping import ModelMapper
    from modelway.proxy.incoming import Incoming
    from modelway.routers.chain import RouterChain
    from modelway.routes import ModelRoute, ModelTable

Headers = tuple[tuple[bytes, bytes], ...]
NO_HEADERS: Headers = ()


@dataclass(slots=True)
class Resolved:
    """Where one request goes. Immutable (Final fields, as `Incoming`)."""

    target: Final[ModelRoute | ExecutorCall]
    model: Final[str]  # the public model served: as mapped, or as a router's `model` decision named it
    headers: Final[Headers]  # added to the answer, whatever it is


def requested_model(request: Incoming, mapper: ModelMapper, default_model: str | None) -> str:
    """The model the client asked for, after model_mapping; default_model when it named none."""
    original = request.original_model
    if original is None:
        if default_model is None:
            where = ".".join(mapper.key_path)
            raise BadRequest(f"missing model: the request body has no '{where}'", param=where, code="missing_model")
        return default_model
    return mapper.map(original) if mapper.applies_to(request.path) else original


async def resolve(
    request: Incoming, model: str, table: ModelTable, routers: RouterChain, app: App | None
) -> Resolved:
    """Check the client may use `model`, let the routers decide, and otherwise find its
    route: public models, then discovered ones, then default_model. `app` is the gateway,
    for executors' in-process calls (None when no router is configured)."""
    authorize(request.client, model)
    trace = RouteTrace() if wants_debug(request) else None
    if app is not None and routers.routers:
        routed = await run_routers(request, model, table, routers, app, trace)
        if routed.target is not None:
            return Resolved(routed.target, routed.model, NO_HEADERS if trace is None else (trace.header(),))
    # table.find inlined: no coroutine for the common case, a public model
    route = table.models.get(model) or await table.discovered_route(model) or table.default
    if trace is not None:
        trace.decision = {"by": "resolution", "model": model}
        if route is not None:
            trace.decision.update(route_summary(route))
    if route is None:
        error = NotFound(f"model {clip(model)!r} does not exist", param="model")
        if trace is not None:
            name, value = trace.header()
            error.headers[name.decode()] = value.decode()
        raise error
    return Resolved(route, model, NO_HEADERS if trace is None else (trace.header(),))
