"""Seeing and judging what a run learned: `khop eval` (scores without learning), `khop render`
(a video of the played policy) and `khop compare` (runs side by side).

Every command rebuilds the agents from their checkpoints and plays them through the run's own
relay (team.py); nothing here writes into an agent's directory.
"""
from __future__ import annotations

from .cli import HANDLERS, dispatch, register
from .team import JudgeError

__all__ = ["HANDLERS", "JudgeError", "dispatch", "register"]
