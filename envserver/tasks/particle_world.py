"""Vectorised MPE particle physics and the optimal agent-to-target matching, for E copies at once.

Why our own physics instead of stepping E MPE worlds: MPE moves one Python ``Entity`` at a time
(and collides every pair in a double loop), so E copies × 5 agents would cost E·25 Python-level
pair checks per step. Here every quantity is an array over (copy, agent), and one step is a handful
of numpy operations whatever E is.

The rules are MPE's (``mpe2._mpe_utils.core.World``, which ``tests/test_particles.py`` steps side by
side with ours and matches to 1e-9), applied in MPE's order:

1. force = action force (discrete action k → one of [0, ±x, ±y] × sensitivity 5, mass 1)
   + soft contact force between every pair of colliding agents
   (``contact_force · Δp/‖Δp‖ · k·log(1 + exp(−(‖Δp‖ − r_a − r_b)/k))``, k = contact margin 1e-3);
2. position += velocity · dt (the *old* velocity: MPE integrates position first);
3. velocity ← velocity · (1 − damping) + force / mass · dt;
4. velocity clipped to ``max_speed`` when one is set (MPE's agents leave it unset; the discrete
   actions then reach a terminal speed of sensitivity · dt / damping = 2 per axis anyway).

Landmarks never move and never collide, as in the MPE scenarios that use them as markers.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

DIM = 2  # MPE's world is the plane
N_MOVES = 5  # MPE's discrete physical actions: no-op, −x, +x, −y, +y
MOVES = np.array([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])


@dataclass(frozen=True)
class Physics:
    """MPE's world constants (``World.__init__`` and ``SimpleEnv._set_action``)."""

    dt: float = 0.1
    damping: float = 0.25
    mass: float = 1.0
    sensitivity: float = 5.0  # action force per unit of a discrete move
    contact_force: float = 1e2
    contact_margin: float = 1e-3
    max_speed: float | None = None


def action_force(actions: np.ndarray, physics: Physics) -> np.ndarray:
    """Discrete moves [E, N] (ints in 0..4, clipped) → forces [E, N, 2]."""
    return MOVES[np.clip(actions, 0, N_MOVES - 1)] * physics.sensitivity


def contact_force(pos: np.ndarray, size: float, physics: Physics) -> np.ndarray:
    """Sum of the soft pairwise contact forces on each agent, [E, N, 2], for equal-sized agents.

    Why every pair both ways: MPE adds +f to a and −f to b for each pair a < b; the force on a from b
    computed from a's side is exactly that −f, so one symmetric [E, N, N] expression gives the same
    sums without a loop.
    """
    delta = pos[:, :, None, :] - pos[:, None, :, :]  # [E, N, N, 2]: p_a − p_b
    dist = np.sqrt(np.sum(np.square(delta), axis=-1))  # [E, N, N]
    k = physics.contact_margin
    penetration = np.logaddexp(0.0, -(dist - 2.0 * size) / k) * k
    n = pos.shape[1]
    off_diagonal = ~np.eye(n, dtype=bool)
    safe = np.where(off_diagonal & (dist > 0), dist, np.inf)  # coincident agents push nowhere (MPE: NaN)
    force = physics.contact_force * delta / safe[..., None] * penetration[..., None]
    return force.sum(axis=2)


def integrate(pos: np.ndarray, vel: np.ndarray, force: np.ndarray, physics: Physics) -> None:
    """One MPE integration step, in place on pos and vel [E, N, 2]."""
    pos += vel * physics.dt
    vel *= 1.0 - physics.damping
    vel += force / physics.mass * physics.dt
    if physics.max_speed is not None:
        speed = np.sqrt(np.sum(np.square(vel), axis=-1, keepdims=True))
        vel *= np.where(speed > physics.max_speed, physics.max_speed / np.maximum(speed, 1e-12), 1.0)


class Matcher:
    """Optimal assignment of N agents to N targets for E copies at once, by enumerating all N!
    assignments (120 for N = 5): exact, branch-free, and for small N cheaper than calling a
    Hungarian solver E times from Python. The minimum is over the *sum* of distances, as
    ``scipy.optimize.linear_sum_assignment`` in the MPE scenarios computes it."""

    MAX_AGENTS = 7  # 5040 assignments; beyond that enumeration stops being the cheap choice

    def __init__(self, n: int) -> None:
        if not 1 <= n <= self.MAX_AGENTS:
            raise ValueError(f"Matcher enumerates assignments; {n} agents is outside 1..{self.MAX_AGENTS}")
        self.perms = np.array(list(permutations(range(n))), dtype=np.int64)  # [P, N]: agent i → perm[i]
        self._agents = np.arange(n)

    def assigned_distances(self, agent_pos: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """‖p_i − target_σ(i)‖ [E, N] under the assignment σ minimising their sum."""
        dist = np.sqrt(np.sum(np.square(agent_pos[:, :, None, :] - targets[:, None, :, :]), axis=-1))  # [E, N, N]
        per_perm = dist[:, self._agents, self.perms]  # [E, P, N]
        best = np.argmin(per_perm.sum(axis=2), axis=1)  # [E]
        return per_perm[np.arange(len(best)), best]
