"""`modelway simulate`: the real routing strategies against simulated backends, in
virtual time (a discrete-event simulation: nothing sleeps).

    workload.py   requests: Poisson arrivals with token-length distributions, or a JSONL trace
    sessions.py   workloads whose prompts share prefixes: multiturn, agents, system-prompts
    cache.py      a backend's prefix cache: KV blocks, LRU, capacity in tokens
    backends.py   a backend: concurrency slots, a shared prefill rate, decode rates, a FIFO
                  queue, its cache; and the clairvoyant oracle's exact time to first token
    view.py       what a strategy sees (SimView), and affinity tables shared by instances
    engine.py     the event loop over N gateway instances; drives a strategy exactly as the
                  server does (choose → inflight += 1 → ... → inflight -= 1 → observe(Outcome))
    scenarios.py  the fleets and events of the named scenarios
    report.py     statistics, the results table and the PNG plot
    targets.py    the issues' targets, checked per seed
    run.py        what the CLI calls
"""
