"""A scripted team for the ``shadow-hand-over`` tasks (either partition, either cost): the evidence
that the hand-over can be done with these hands at no cost, used by the tests and for the picture in
the README.

* **thrower** (hand 0): over 8 steps it straightens its middle, ring and little fingers, swings its
  thumb clear, bends its wrist sideways (WRJ1 at +0.5) and tips its palm up (WRJ0 to its top); its
  forefinger's commands stay at the cost's bound, not past it (FFJ3 +0.5, sideways; FFJ2 and FFJ1
  −0.5, as straight as the cost allows: no cost); at step 12 it snaps the palm down (WRJ0 to its bottom),
  and the block tumbles off its fingertips.
* **catcher** (hand 1): a flat palm (fingers straight) under the thrower's fingertips until the
  block is within 8 cm of the goal, then its fingers close to where a zero action holds them.

Why these numbers: with the forefinger straightened like the others (this script before the cost
was the reference's) all 96 episodes below succeed at a Safe_finger cost of 28–49 each (mean 36,
over the limit 25); with the forefinger held to ±0.5 and nothing else changed, none does — the bent
forefinger holds the block back. FFJ3 +0.5, the sideways wrist and the catcher closing at 8 cm
rather than 6 were found by trying (FFJ3 −0.5/0/+0.5, WRJ1 0.25–1, closing at 6–10 cm).

Measured (seeds 0–11, 8 copies each; ``tests/test_hand_over.py`` replays a few): all 96 episodes
succeed within the 75 steps with cost 0, in ``shadow-hand-over``, ``-fingers`` and ``-safe-joint``;
with either hand idle none of 96 does.
"""
from __future__ import annotations

import numpy as np

from .hand_model import HAND_ACTUATED
from .hand_over import ACTION_BOUND, FINGER_ACTUATORS, HandOverTask

SNAP_STEP, RAMP_STEPS, NEAR = 12, 8, 0.08
_GOAL_COLS = slice(-7, -4)  # goal − block position, the same columns in every agent's observation
_FLEX = [HAND_ACTUATED.index(j) for j in HAND_ACTUATED if j[:2] in ("FF", "MF", "RF", "LF") and j[2:] in ("J2", "J1")]
_THUMB_OUT = [HAND_ACTUATED.index(j) for j in ("THJ4", "THJ3", "THJ0")]
_WRIST, _SIDEWAYS = HAND_ACTUATED.index("WRJ0"), HAND_ACTUATED.index("WRJ1")
_FOREFINGER = [HAND_ACTUATED.index(j) for j in FINGER_ACTUATORS]
FOREFINGER_HOLD = (ACTION_BOUND, -ACTION_BOUND, -ACTION_BOUND)  # FFJ3, FFJ2, FFJ1: at the bound, not past it
SIDEWAYS = 0.5


def thrower(t: int) -> np.ndarray:
    """The thrower's 20 actions at its episode step ``t``."""
    a, f = np.zeros(len(HAND_ACTUATED)), min(1.0, t / RAMP_STEPS)
    a[_FLEX] = -f
    a[_FOREFINGER] = np.multiply(FOREFINGER_HOLD, f)
    a[_THUMB_OUT] = -f
    a[_SIDEWAYS] = SIDEWAYS * f
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
