"""Benchmarks: `python -m bench.suite` (README "Performance") and single-purpose scripts."""

import envserver  # noqa: F401  first, so numpy's BLAS starts single-threaded (envserver/__init__.py)
