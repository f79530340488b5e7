"""The candidates an attempt picks from, in order: the model's deployments by priority
(highest first), then each fallback model's. Filters run before any strategy sees a
candidate: cooldown, active health, usable credentials, the concurrency cap, and
"not tried yet" (or tried, but with another credential from its pool still unused).
Deployments whose upstream reported a nearly used-up rate limit are offered only when
nothing else of their priority is.

When nothing passes the filters, a cooldown alone still does not take the model out of
service (SPEC 5, Envoy's panic routing): `probe()` offers the cooling deployment that
recovers first to one request at a time, unless the upstream's own Retry-After holds it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from modelway.deployment import Deployment, usable

if TYPE_CHECKING:
    from modelway.routes import ModelRoute
    from modelway.strategies.base import View

# deployment index → credential indexes already tried on it
Tried = dict[int, set[int]]


class RouteChain:
    def __init__(self, route: ModelRoute) -> None:
        # Routes built on demand (discovered models, routers' decisions) have no fallbacks.
        self.routes = route.chain or [route]

    def _eligible(self, deployment: Deployment, tried: Tried, rekey: set[int], now: float) -> bool:
        used = tried.get(deployment.index)
        if used is not None and (
            deployment.index not in rekey or not deployment.provider.credentials.has_usable(now, used)
        ):
            return False  # tried, and no other credential of its pool may be tried
        return usable(deployment, now)

    def next(self, view: View, tried: Tried, rekey: set[int]) -> tuple[ModelRoute, Deployment] | None:
        """The next deployment to try, chosen by its route's strategy, with the route."""
        found = self.candidates(view.now, tried, rekey)
        if found is None:
            return None
        route, candidates = found
        return route, route.strategy.choose(view, candidates)

    def candidates(self, now: float, tried: Tried, rekey: set[int]) -> tuple[ModelRoute, list[Deployment]] | None:
        """The deployments the next one is chosen from (the first route and priority group
        with a usable one), with their route."""
        for route in self.routes:
            for group in route.groups:
                candidates = [d for d in group if self._eligible(d, tried, rekey, now)]
                if candidates:
                    if len(candidates) > 1:
                        # Deployments near their upstream rate limit go last, not out.
                        roomy = [d for d in candidates if d.stats.quota_low_until <= now]
                        candidates = roomy or candidates
                    return route, candidates
        return None

    def has_next(self, tried: Tried, rekey: set[int], now: float) -> bool:
        return any(
            self._eligible(d, tried, rekey, now) for route in self.routes for group in route.groups for d in group
        )

    def probe(self, now: float) -> tuple[ModelRoute, Deployment] | None:
        """The deployment a probe should go to, when nothing is usable: of those kept out by
        their cooldown alone (not held by a Retry-After, provider passing its health checks,
        a usable key, room under the concurrency cap), the one that recovers first. None
        when there is none, or a probe to it is in flight already."""
        best: tuple[ModelRoute, Deployment] | None = None
        soonest = math.inf
        for route in self.routes:
            for deployment in route.deployments:
                health = deployment.health
                cap = deployment.max_concurrency
                if (
                    now < health.cooled_until < soonest
                    and health.held_until <= now
                    and deployment.provider.healthy
                    and (cap is None or deployment.stats.inflight < cap)
                    and deployment.provider.credentials.has_usable(now)
                ):
                    best, soonest = (route, deployment), health.cooled_until
        if best is None or best[1].health.probing:
            return None
        return best

    def probing(self) -> bool:
        """A probe is in flight to a deployment of this chain."""
        return any(d.health.probing for route in self.routes for d in route.deployments)

    def soonest_recovery(self, now: float) -> float | None:
        """Seconds until the first cooling deployment (or key) of the chain recovers."""
        times = []
        for route in self.routes:
            for deployment in route.deployments:
                if not deployment.provider.healthy:
                    continue
                if deployment.health.cooled_until > now:
                    times.append(deployment.health.cooled_until)
                else:
                    key_at = deployment.provider.credentials.soonest_usable_at()
                    if key_at is not None and key_at > now:
                        times.append(key_at)
        return min(times) - now if times else None
