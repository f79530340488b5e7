"""Routing strategies (SPEC section 4). Each name maps to a class implementing
`modelway.strategies.base.Strategy`; "package.module:Class" names a user's own."""

STRATEGIES: dict[str, str] = {
    "weighted_round_robin": "modelway.strategies.weighted_round_robin:WeightedRoundRobin",
    "random": "modelway.strategies.random:WeightedRandom",
    "consistent_hash": "modelway.strategies.consistent_hash:ConsistentHash",
    "least_busy": "modelway.strategies.least_busy:LeastBusy",
    "latency": "modelway.strategies.latency:Latency",
    "least_load": "modelway.strategies.least_load:LeastLoad",
    "cost": "modelway.strategies.cost:Cheapest",
    "expected_delay": "modelway.strategies.expected_delay:ExpectedDelay",
    "prefix_affinity": "modelway.strategies.prefix_affinity:PrefixAffinity",
}
