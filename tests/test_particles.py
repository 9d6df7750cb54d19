"""mpe-line-control and mpe-circle-control: spec, observation layout, MPE physics, matched-target
reward, auto-reset, copy independence, and step-for-step agreement with mpe2's own scenarios."""
import os

import networkx as nx
import numpy as np
import pytest

from envserver.tasks import make_task, task_names, task_spec
from envserver.tasks.particle_world import Matcher, Physics, contact_force
from envserver.tasks.particles import CircleControl, LineControl
from topologies import resolve_topology

TASKS = {"mpe-line-control": (LineControl, 2), "mpe-circle-control": (CircleControl, 1)}


def far_apart(task: LineControl | CircleControl) -> None:
    """Put the agents of every copy on a wide grid, at rest, so no contact force acts."""
    task.pos[:] = np.array([[-0.8, -0.8], [0.8, -0.8], [0.0, 0.0], [-0.8, 0.8], [0.8, 0.8]])
    task.vel[:] = 0.0


@pytest.mark.parametrize("name", TASKS)
def test_spec(name):
    cls, n_landmarks = TASKS[name]
    spec = task_spec(name)
    assert name in task_names() and spec is cls.spec
    assert spec.n_agents == 5 and spec.episode_length == 25 and spec.n_costs == 0
    for a in spec.agents:
        assert (a.obs_dim, a.act_kind, a.act_dim, a.n_actions) == (4 + 2 * n_landmarks, "discrete", 1, 5)
        assert "landmark" in a.obs_desc and "other" not in a.obs_desc
    graph = resolve_topology(spec.topology, spec.n_agents)
    assert nx.is_isomorphic(graph, nx.cycle_graph(5))


@pytest.mark.parametrize("name", TASKS)
def test_observation_layout_and_determinism(name):
    task = make_task(name, n_envs=4, seed=3)
    obs = task.reset()
    again = make_task(name, n_envs=4, seed=3).reset()
    assert all(np.array_equal(a, b) for a, b in zip(obs, again))
    assert not np.array_equal(obs[0], make_task(name, n_envs=4, seed=4).reset()[0])
    for i, o in enumerate(obs):
        assert o.dtype == np.float32 and o.shape == (4, task.spec.agents[i].obs_dim) and o.flags.c_contiguous
        np.testing.assert_allclose(o[:, 0:2], task.vel[:, i], atol=1e-7)
        np.testing.assert_allclose(o[:, 2:4], task.pos[:, i], atol=1e-6)
        for k in range(task.n_landmarks):
            np.testing.assert_allclose(o[:, 4 + 2 * k:6 + 2 * k], task.landmarks[:, k] - task.pos[:, i], atol=1e-6)
    assert np.all(np.abs(task.pos) <= 1.0)


@pytest.mark.parametrize("name", TASKS)
def test_episodes_truncate_at_25_and_auto_reset(name):
    task = make_task(name, n_envs=3, seed=0)
    task.reset()
    rng = np.random.default_rng(0)
    for t in range(1, 26):
        res = task.step([rng.integers(0, 5, 3) for _ in range(5)])
        assert not res.terminated.any()
        assert res.truncated.all() == (t == 25) and (res.truncated.any() == (t == 25))
        assert res.reward.dtype == np.float32 and np.all((res.reward <= 0) & (res.reward >= -2))
        assert res.cost[0].shape == (3, 0)
    assert np.all(task.t == 0) and np.all(task.vel == 0)  # fresh episodes, at rest
    np.testing.assert_allclose(res.obs[0][:, 0:2], 0.0)


def test_physics_matches_mpe_integration_order():
    """Action force 5, dt 0.1, damping 0.25, mass 1: position moves with the *old* velocity."""
    task = make_task("mpe-line-control", n_envs=1, seed=0)
    task.reset()
    far_apart(task)
    start = task.pos.copy()
    noop = task.fallback_action(0)
    assert noop.dtype == np.int64 and np.all(noop == 0)
    right = [np.array([2])] + [noop] * 4
    task.step(right)
    np.testing.assert_allclose(task.vel[0, 0], [0.5, 0.0])
    np.testing.assert_allclose(task.pos[0], start[0])  # nothing moved yet
    task.step(right)
    np.testing.assert_allclose(task.pos[0, 0], start[0, 0] + [0.05, 0.0])
    np.testing.assert_allclose(task.vel[0, 0], [0.5 * 0.75 + 0.5, 0.0])
    for _ in range(20):
        task.step([noop] * 5)
    np.testing.assert_allclose(task.vel[0, 0], [0.875 * 0.75 ** 20, 0.0])  # only damping acts
    np.testing.assert_array_equal(task.pos[0, 1:], start[0, 1:])  # the idle agents never moved


def test_contact_force_pushes_overlapping_agents_apart():
    pos = np.array([[[0.0, 0.0], [0.02, 0.0], [5.0, 5.0]]])
    f = contact_force(pos, 0.03, Physics())
    assert f[0, 0, 0] < 0 < f[0, 1, 0]  # apart along x
    np.testing.assert_allclose(f[0, 0], -f[0, 1])  # equal and opposite
    np.testing.assert_allclose(f[0, 2], 0.0, atol=1e-12)  # far away: nothing


def test_matcher_is_optimal():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    agents, targets = rng.uniform(-1, 1, (50, 5, 2)), rng.uniform(-1, 1, (50, 5, 2))
    got = Matcher(5).assigned_distances(agents, targets)
    for e in range(50):
        dist = np.linalg.norm(agents[e][:, None] - targets[e][None], axis=-1)
        rows, cols = scipy_optimize.linear_sum_assignment(dist)
        np.testing.assert_allclose(got[e].sum(), dist[rows, cols].sum())
    with pytest.raises(ValueError, match="outside"):
        Matcher(9)


def test_line_landmarks_targets_and_reward():
    task = make_task("mpe-line-control", n_envs=64, seed=1)
    task.reset()
    lm = task.landmarks
    np.testing.assert_allclose(np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1), 1.25)
    assert np.all(np.abs(lm[:, 0]) <= 0.25) and np.all(np.abs(lm[:, 1]) < 1.0)
    targets = task._targets()
    np.testing.assert_allclose(targets[:, 0], lm[:, 0])
    np.testing.assert_allclose(targets[:, 4], lm[:, 1])
    np.testing.assert_allclose(np.diff(targets, axis=1), np.broadcast_to((lm[:, 1] - lm[:, 0])[:, None] / 4, (64, 4, 2)))
    task.pos[:] = targets[:, ::-1]  # on the line in the reverse order: the matching does not care
    np.testing.assert_allclose(task.team_reward(), 0.0, atol=1e-12)
    task.pos[:, 2, 0] += 0.5  # one agent 0.5 off: reward −0.5/5
    np.testing.assert_allclose(task.team_reward(), -0.1, atol=1e-12)
    task.pos[:, 2, 0] += 50.0  # clipped at 2 per agent
    np.testing.assert_allclose(task.team_reward(), -0.4, atol=1e-12)


def test_circle_targets_anchor_on_the_smallest_angle():
    task = make_task("mpe-circle-control", n_envs=8, seed=2)
    task.reset()
    centre = task.landmarks[:, 0]
    targets = task._targets()
    np.testing.assert_allclose(np.linalg.norm(targets - centre[:, None], axis=-1), 0.5)
    rel = task.pos - centre[:, None]
    first = np.mod(np.arctan2(rel[..., 1], rel[..., 0]), 2 * np.pi).min(axis=1)
    np.testing.assert_allclose(targets[:, 0], centre + 0.5 * np.stack([np.cos(first), np.sin(first)], -1))
    # a perfect regular pentagon at any rotation scores 0
    phase = np.random.default_rng(0).uniform(0, 2 * np.pi, (8, 1)) + np.arange(5) * 2 * np.pi / 5
    task.pos[:] = centre[:, None] + 0.5 * np.stack([np.cos(phase), np.sin(phase)], -1)
    np.testing.assert_allclose(task.team_reward(), 0.0, atol=1e-9)


@pytest.mark.parametrize("name", TASKS)
def test_copies_are_independent(name):
    """Copy 1 of a 3-copy task evolves exactly as the same state in a 1-copy task."""
    many, one = make_task(name, n_envs=3, seed=5), make_task(name, n_envs=1, seed=9)
    many.reset()
    one.reset()
    for attr in ("pos", "vel", "landmarks") + (("direction",) if name == "mpe-line-control" else ()):
        getattr(one, attr)[0] = getattr(many, attr)[1]
    rng = np.random.default_rng(1)
    for _ in range(10):
        acts = [rng.integers(0, 5, 3) for _ in range(5)]
        r_many = many.step(acts)
        r_one = one.step([a[1:2] for a in acts])
        assert r_many.reward[1] == r_one.reward[0]
        assert all(np.array_equal(a[1], b[0]) for a, b in zip(r_many.obs, r_one.obs))


@pytest.mark.parametrize("name,module", [("mpe-line-control", "simple_line_v1"),
                                         ("mpe-circle-control", "simple_formation_v1")])
def test_matches_mpe2_step_for_step(name, module):
    """Our vectorised copy against mpe2's scenario (Agarwal et al.'s task in the maintained MPE), from
    a crowded start so that contact forces matter: same positions, velocities, observations, reward."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    mpe2 = pytest.importorskip("mpe2")
    mod = getattr(__import__("mpe2", fromlist=[module]), module)
    assert mpe2
    env = mod.parallel_env(N=5, max_cycles=25)
    env.reset(seed=3)
    world = env.unwrapped.world
    rng = np.random.default_rng(1)
    start = rng.uniform(-0.05, 0.05, (5, 2))
    for agent, p in zip(world.agents, start):
        agent.state.p_pos = p.copy()
    task = make_task(name, n_envs=1, seed=0)
    task.reset()
    task.pos[0], task.vel[0] = start, 0.0
    task.landmarks[0] = [lm.state.p_pos for lm in world.landmarks]
    if name == "mpe-line-control":
        d = world.landmarks[1].state.p_pos - world.landmarks[0].state.p_pos
        task.direction[0] = d / np.linalg.norm(d)
    moved = 0.0
    for _ in range(24):
        acts = rng.integers(0, 5, 5)
        obs, rew, _, _, _ = env.step({f"agent_{i}": int(a) for i, a in enumerate(acts)})
        res = task.step([np.array([a]) for a in acts])
        np.testing.assert_allclose(task.pos[0], [a.state.p_pos for a in world.agents], atol=1e-9)
        np.testing.assert_allclose(task.vel[0], [a.state.p_vel for a in world.agents], atol=1e-9)
        np.testing.assert_allclose(task.team_reward()[0], rew["agent_0"], atol=1e-9)
        np.testing.assert_allclose(res.reward[0], rew["agent_0"], atol=1e-6)
        for i in range(5):
            np.testing.assert_allclose(res.obs[i][0], obs[f"agent_{i}"], atol=1e-6)
        moved = max(moved, float(np.abs(task.vel).max()))
    assert moved > 0.1
