"""Failover state and policy: passive health (cooldowns, slow start), the retry budget,
active health checks, and the candidate chain an attempt picks from."""
