"""`modelway simulate`: the real routing strategies against simulated backends, in
virtual time (a discrete-event simulation: nothing sleeps).

    workload.py   requests: Poisson arrivals with token-length distributions, or a JSONL trace
    backends.py   a backend: concurrency slots, prefill and decode rates, a FIFO queue
    engine.py     the event loop; drives a strategy exactly as the server does
                  (choose → inflight += 1 → ... → inflight -= 1 → observe(Outcome))
    oracle.py     a clairvoyant chooser that knows every queue and service time
    scenarios.py  the fleets and events of the named scenarios
    report.py     statistics, the results table and the PNG plot
    run.py        what the CLI calls
"""
