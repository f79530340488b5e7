"""Benchmarks of modelway. `python -m benchmarks.overhead` measures the proxy overhead (issue 3)."""
