"""A scripted team for ``shadow-hand-over`` and ``shadow-hand-over-fingers``: the evidence that the
hand-over can be done with these hands, used by the tests and for the picture in the README.

* **thrower** (hand 0): over 8 steps it straightens its four fingers and swings its thumb clear
  while tipping its palm up (WRJ0 to its top), slowly enough that the little finger never moves
  0.1 rad in a step (no cost); at step 12 it snaps the palm down (WRJ0 to its bottom), and the block
  tumbles off its fingertips.
* **catcher** (hand 1): a flat palm (fingers straight) under the thrower's fingertips until the
  block is within 6 cm of the goal, then its fingers close to where a zero action holds them.

Measured (seeds 0–11, 8 copies each; ``tests/test_hand_over.py`` replays a few): all 96 episodes
succeed within the 75 steps with cost 0, in either partition; with either hand idle none of 96 does.
"""
from __future__ import annotations

import numpy as np

from .hand_model import HAND_ACTUATED
from .hand_over import HandOverTask

SNAP_STEP, RAMP_STEPS, NEAR = 12, 8, 0.06
_GOAL_COLS = slice(-7, -4)  # goal − block position, the same columns in every agent's observation
_FLEX = [HAND_ACTUATED.index(j) for j in HAND_ACTUATED if j[:2] in ("FF", "MF", "RF", "LF") and j[2:] in ("J2", "J1")]
_THUMB_OUT = [HAND_ACTUATED.index(j) for j in ("THJ4", "THJ3", "THJ0")]
_WRIST = HAND_ACTUATED.index("WRJ0")


def thrower(t: int) -> np.ndarray:
    """The thrower's 20 actions at its episode step ``t``."""
    a, f = np.zeros(len(HAND_ACTUATED)), min(1.0, t / RAMP_STEPS)
    a[_FLEX] = -f
    a[_THUMB_OUT] = -f
    a[_WRIST] = f if t < SNAP_STEP else -1.0
    return a


def catcher(near: bool) -> np.ndarray:
    """The catcher's 20 actions: flat until the block is ``near`` its goal, then half closed."""
    a = np.zeros(len(HAND_ACTUATED))
    a[_FLEX] = 0.0 if near else -1.0
    return a


class ScriptedHandOver:
    """The scripted team for E copies of a hand-over task, either partition: call it with the
    agents' observations for their actions, and with ``episode_ended`` after each step. A hand left
    out (``throw=False`` / ``catch=False``) sends zeros, i.e. holds its start pose."""

    def __init__(self, task: HandOverTask, throw: bool = True, catch: bool = True) -> None:
        self.act_cols, self.throw, self.catch = task.act_cols, throw, catch
        self.t = np.zeros(task.n_envs, dtype=np.int64)
        self.near = np.zeros(task.n_envs, dtype=bool)

    def __call__(self, obs: list[np.ndarray]) -> list[np.ndarray]:
        self.near |= np.linalg.norm(obs[-1][:, _GOAL_COLS], axis=1) < NEAR  # the last agent is the catcher's
        full = np.zeros((len(self.t), 2 * len(HAND_ACTUATED)), dtype=np.float32)
        if self.throw:
            full[:, :len(HAND_ACTUATED)] = np.stack([thrower(int(t)) for t in self.t])
        if self.catch:
            full[:, len(HAND_ACTUATED):] = np.stack([catcher(bool(n)) for n in self.near])
        self.t += 1
        return [full[:, cols] for cols in self.act_cols]

    def episode_ended(self, done: np.ndarray) -> None:
        self.t[done], self.near[done] = 0, False
