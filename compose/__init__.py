"""compose: the khop umbrella CLI, the local launcher and the report."""

import envserver  # noqa: F401  first, so numpy's BLAS starts single-threaded (envserver/__init__.py)
