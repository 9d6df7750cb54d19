"""agentd: one decentralized learner process per agent."""

import envserver  # noqa: F401  first, so numpy's BLAS starts single-threaded (envserver/__init__.py)
