"""Line control and circle control with 5 agents (dpo.md appendix A.1, after Agarwal et al. 2020).

The paper gives one line per task ("N agents need to line up between 2 landmarks" / "form a circle
around a landmark"; "the reward is the distance between all the agents and their target
locations"). Where it is silent we follow the scenarios of Agarwal et al.'s code as the maintained
MPE port ships them (``mpe2.simple_line_v1`` and ``mpe2.simple_formation_v1``), so that a policy
or a number can be compared with theirs; ``tests/test_particles.py`` steps both side by side.

Shared by both tasks
    * MPE physics (``particle_world``): dt 0.1, damping 0.25, mass 1, no speed cap (MPE's default),
      soft collisions between agents; 5 discrete actions [no-op, −x, +x, −y, +y] (MPE's default),
      each a force of 5. The fallback action 0 is the no-op.
    * episodes of 25 steps (MPE's ``max_cycles``) that never terminate early (truncated only);
    * agents start uniform in [−1, 1]², at rest;
    * reward = −mean_i min(‖p_i − target_σ(i)‖, 2), σ the assignment of agents to targets that
      minimises the summed distance (optimal matching, recomputed every step so no agent owns a
      target); it is the team reward, identical for every agent, in [−2, 0], 0 when done.
    * agent i observes only itself and the landmarks: its velocity (2), its position (2) and each
      landmark's position relative to it (2 per landmark). Other agents' positions are NOT in
      the observation: they reach a critic only hop by hop through the khop relay.

Line control (``mpe-line-control``, obs 8 = vel, pos, landmark 0 − pos, landmark 1 − pos)
    Landmark 0 uniform in [−0.25, 0.25]²; landmark 1 at distance 1.25 in a uniform direction,
    turned by 5° steps until it lies inside (−1, 1)². The 5 targets are evenly spaced on the
    segment, both landmarks included (spacing 1.25/4), fixed for the episode.

Circle control (``mpe-circle-control``, obs 6 = vel, pos, landmark − pos)
    One landmark uniform in [−0.5, 0.5]². The targets are 5 points evenly spaced on the circle of
    radius 0.5 around it, rotated so that the first sits at the smallest polar angle (in [0, 2π),
    about the landmark) of any agent: the formation may sit at any rotation, and is re-anchored
    every step.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import AgentSpec, StepResult, TaskSpec, VecTask
from .particle_world import DIM, N_MOVES, Matcher, Physics, action_force, contact_force, integrate

N_AGENTS = 5
EPISODE_LENGTH = 25
TOPOLOGY = "mpe-5"  # topologies/mpe-5.json: the 5 agents on a ring


def _spec(name: str, n_landmarks: int, description: str) -> TaskSpec:
    obs_desc = "own velocity (2), own position (2), " + (
        "landmark − own position (2)" if n_landmarks == 1 else
        ", ".join(f"landmark {k} − own position (2)" for k in range(n_landmarks)))
    agent = AgentSpec(obs_dim=4 + DIM * n_landmarks, act_kind="discrete", act_dim=1, n_actions=N_MOVES,
                      obs_desc=obs_desc)
    return TaskSpec(name=name, agents=(agent,) * N_AGENTS, episode_length=EPISODE_LENGTH, topology=TOPOLOGY,
                    description=description)


class FormationTask(VecTask):
    """E copies of N MPE particles that must cover N targets defined by the landmarks.

    Subclasses say where landmarks go (``_place_landmarks``) and where the targets are
    (``_targets``); everything else — physics, matching reward, observations, auto-reset — is here.
    State is float64 like MPE's; observations go out as float32.
    """

    spec: ClassVar[TaskSpec]
    n_landmarks: ClassVar[int]
    agent_size: ClassVar[float]  # collision radius (MPE scenario's agent.size)
    physics: ClassVar[Physics] = Physics()

    def __init__(self, n_envs: int, seed: int) -> None:
        super().__init__(n_envs, seed)
        self.n = self.spec.n_agents
        self.rng = np.random.default_rng(seed)
        self.pos = np.zeros((n_envs, self.n, DIM))
        self.vel = np.zeros((n_envs, self.n, DIM))
        self.landmarks = np.zeros((n_envs, self.n_landmarks, DIM))
        self.t = np.zeros(n_envs, dtype=np.int64)
        self.matcher = Matcher(self.n)

    # --- what a subclass defines ----------------------------------------------------------
    def _place_landmarks(self, rows: np.ndarray) -> None:
        """Draw new landmarks for the copies in ``rows`` (and any per-episode target data)."""
        raise NotImplementedError

    def _targets(self) -> np.ndarray:
        """Target positions [E, N, 2] for the current state."""
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------
    def _reset_rows(self, rows: np.ndarray) -> None:
        self.pos[rows] = self.rng.uniform(-1.0, 1.0, (len(rows), self.n, DIM))
        self.vel[rows] = 0.0
        self.t[rows] = 0
        self._place_landmarks(rows)

    def observations(self) -> list[np.ndarray]:
        """Each agent's rows [E, obs_dim] float32: velocity, position, landmarks relative to it."""
        rel = self.landmarks[:, None, :, :] - self.pos[:, :, None, :]  # [E, N, L, 2]
        obs = np.concatenate([self.vel, self.pos, rel.reshape(self.n_envs, self.n, -1)], axis=2)
        return list(np.ascontiguousarray(obs.transpose(1, 0, 2), dtype=np.float32))  # N × [E, obs_dim]

    def assigned_distances(self) -> np.ndarray:
        """Each agent's distance to its target under the optimal matching, [E, N]."""
        return self.matcher.assigned_distances(self.pos, self._targets())

    def team_reward(self) -> np.ndarray:
        """−mean_i min(d_i, 2) [E]: MPE's clipped mean distance to the matched targets."""
        return -np.mean(np.minimum(self.assigned_distances(), 2.0), axis=1)

    def reset(self) -> list[np.ndarray]:
        self._reset_rows(np.arange(self.n_envs))
        return self.observations()

    def step(self, actions: list[np.ndarray]) -> StepResult:
        joint = np.stack([np.asarray(a, dtype=np.int64).reshape(self.n_envs) for a in actions], axis=1)  # [E, N]
        force = action_force(joint, self.physics) + contact_force(self.pos, self.agent_size, self.physics)
        integrate(self.pos, self.vel, force, self.physics)
        reward = self.team_reward().astype(np.float32)
        self.t += 1
        truncated = self.t >= self.spec.episode_length
        if truncated.any():
            self._reset_rows(np.flatnonzero(truncated))
        cost = np.zeros((self.n_envs, 0), dtype=np.float32)
        return StepResult(obs=self.observations(), reward=reward, cost=[cost] * self.n,
                          terminated=np.zeros(self.n_envs, dtype=bool), truncated=truncated)


class LineControl(FormationTask):
    """5 agents line up, evenly spaced, on the segment between 2 landmarks (see module doc)."""

    spec = _spec("mpe-line-control", 2, "5 particles line up between 2 landmarks (DPO A.1); "
                                        "reward −mean matched distance")
    n_landmarks = 2
    agent_size = 0.03  # mpe2 simple_line
    LINE_LENGTH = 1.25  # mpe2 simple_line TOTAL_SEP
    TURN = np.radians(5.0)

    def __init__(self, n_envs: int, seed: int) -> None:
        self.direction = np.zeros((n_envs, DIM))
        super().__init__(n_envs, seed)

    def _place_landmarks(self, rows: np.ndarray) -> None:
        first = self.rng.uniform(-0.25, 0.25, (len(rows), DIM))
        theta = self.rng.uniform(0.0, 2 * np.pi, len(rows))
        # MPE turns by 5° until the far end lies inside (−1, 1)²: all 72 turns at once, first that fits
        turns = theta[:, None] + self.TURN * np.arange(72)  # [R, 72]
        dirs = np.stack([np.cos(turns), np.sin(turns)], axis=-1)  # [R, 72, 2]
        inside = np.all(np.abs(first[:, None, :] + self.LINE_LENGTH * dirs) < 1.0, axis=-1)
        direction = dirs[np.arange(len(rows)), np.argmax(inside, axis=1)]
        self.landmarks[rows, 0] = first
        self.landmarks[rows, 1] = first + self.LINE_LENGTH * direction
        self.direction[rows] = direction

    def _targets(self) -> np.ndarray:
        steps = np.arange(self.n) * (self.LINE_LENGTH / (self.n - 1))  # [N]
        return self.landmarks[:, None, 0, :] + steps[None, :, None] * self.direction[:, None, :]


class CircleControl(FormationTask):
    """5 agents form a circle of radius 0.5 around one landmark (see module doc)."""

    spec = _spec("mpe-circle-control", 1, "5 particles form a circle around a landmark (DPO A.1); "
                                          "reward −mean matched distance")
    n_landmarks = 1
    agent_size = 0.05  # mpe2 simple_formation
    RADIUS = 0.5

    def _place_landmarks(self, rows: np.ndarray) -> None:
        self.landmarks[rows, 0] = self.rng.uniform(-0.5, 0.5, (len(rows), DIM))

    def _targets(self) -> np.ndarray:
        centre = self.landmarks[:, 0, :]  # [E, 2]
        rel = self.pos - centre[:, None, :]
        angle = np.arctan2(rel[..., 1], rel[..., 0])
        angle = np.where(angle < 0, angle + 2 * np.pi, angle)  # [E, N] in [0, 2π), as MPE's _find_angle
        theta = angle.min(axis=1)[:, None] + np.arange(self.n) * (2 * np.pi / self.n)  # [E, N]
        return centre[:, None, :] + self.RADIUS * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
