r"""Safe HalfCheetah 2x3 — kept as a name for the task first written here, now one instance of the
generic MuJoCo task (``mujoco_base``; the family's facts are in ``mujoco_robots``,
``mujoco_hazards`` and ``mujoco_models``).

The task (MACPO / MAPPO-L "Safe Multi-Agent MuJoCo", shared/research/safe-mamujoco.md §3.4):
Gymnasium's HalfCheetah (Euler, timestep 0.01, frame_skip 5, dt = 0.05 s) plus the slab ``obj1``
on the x slide joint ``wall_joint``, driven before each step by

.. math::  u(t) = 0.02\,\sin^2(t/3) - 0.004

(t the simulation time at the start of the step, held for the 5 substeps). Agent 0 drives bthigh,
bshin, bfoot; agent 1 fthigh, fshin, ffoot. Reward :math:`(x_{t+1} - x_t)/dt - 0.1\lVert a\rVert^2`;
cost 1 iff :math:`|x_{\mathrm{obs}} - x| < 9` (limit 5 per episode; an idle cheetah collects ≈ 35).
Episodes are truncated after 1000 steps and never terminate.

Observation of each agent (14 float32, *local*):

=====  ==========================================================================
index  quantity
=====  ==========================================================================
0-2    own joint angles (agent 0: bthigh, bshin, bfoot; agent 1: fthigh, fshin, ffoot)
3-5    own joint angular velocities (same joints, same order)
6-7    torso rootz, rooty (qpos)
8-10   torso vx, vz, ωy (qvel of rootx, rootz, rooty)
11     obstacle world x-velocity (qvel of wall_joint; the slab only translates)
12     obstacle control u(t) at the current time t (the command of the next step)
13     clip((x_obs − rootx) / 10, −5, 5) (the cost's quantity: cost = 1 iff |10 · obs[13]| < 9)
=====  ==========================================================================
"""
from __future__ import annotations

from .mujoco_hazards import obstacle_control
from .mujoco_tasks import task_class_for

SafeHalfCheetah2x3 = task_class_for("safe-halfcheetah-2x3")

__all__ = ["SafeHalfCheetah2x3", "obstacle_control"]
