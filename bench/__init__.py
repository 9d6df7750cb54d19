"""Benchmarks: `python -m bench.suite` (README "Performance") and single-purpose scripts."""
