"""coop-game's exact tools: the DP optimum against brute-force search of the game tree on a
shrunken instance, exact J(π) against the same tree and against sampled episodes, and the
optimal deterministic policy scoring exactly the optimum."""
import itertools

import numpy as np
import pytest

from envserver.tasks.coop_game import CoopGame

SMALL = {"n_states": 5, "n_agents": 3, "n_actions": 2, "horizon": 3}


def raw_model(g: CoopGame):
    """Rewards and transition distributions rebuilt from the raw tables with plain loops."""
    joints = list(itertools.product(range(g.A), repeat=g.N))
    r, P = {}, {}
    for s in range(g.S):
        for j in joints:
            own = np.mean([float(g.r1[i, s, j[i]]) for i in range(g.N)])
            pair = np.mean([float(g.r2[i, s, j[i], j[(i + 1) % g.N]]) for i in range(g.N)])
            r[s, j] = 0.5 * own + 0.5 * pair
            dist = np.full(g.S, (1 - g.p_move) / g.S)
            dist[(s + sum(int(g.shift[i, s, j[i]]) for i in range(g.N))) % g.S] += g.p_move
            P[s, j] = dist
    return joints, r, P


def tree_value(g, joints, r, P, s, t, policy=None):
    """Expectimax (policy=None) or expectation under a per-agent policy [N, H, S, A], by recursion
    over the whole tree: no memoisation, nothing shared with the DP under test."""
    if t == g.H:
        return 0.0
    vals = []
    for j in joints:
        nxt = sum(P[s, j][s2] * tree_value(g, joints, r, P, s2, t + 1, policy) for s2 in range(g.S))
        vals.append(r[s, j] + nxt)
    if policy is None:
        return max(vals)
    probs = [np.prod([policy[i, t, s, j[i]] for i in range(g.N)]) for j in joints]
    return float(np.dot(probs, vals))


@pytest.fixture(scope="module")
def small():
    g = CoopGame(1, 0, game_seed=3, **SMALL)
    return g, raw_model(g)


def test_dp_optimum_equals_brute_force_tree_search(small):
    g, (joints, r, P) = small
    brute = np.mean([tree_value(g, joints, r, P, s, 0) for s in range(g.S)])
    assert g.optimal_return() == pytest.approx(brute, abs=1e-6)


def test_exact_evaluation_equals_tree_expectation_for_a_random_policy(small):
    g, (joints, r, P) = small
    pol = np.random.default_rng(0).dirichlet(np.ones(g.A), size=(g.N, g.H, g.S))
    brute = np.mean([tree_value(g, joints, r, P, s, 0, pol) for s in range(g.S)])
    assert g.evaluate(pol) == pytest.approx(brute, abs=1e-6)
    stationary = pol[:, 0]  # [N, S, A] is accepted too and means the same table at every t
    assert g.evaluate(stationary) == pytest.approx(g.evaluate(np.repeat(stationary[:, None], g.H, axis=1)))


def test_optimal_deterministic_policy_scores_the_optimum(small):
    g, _ = small
    pol = g.optimal_policy()
    assert set(np.unique(pol)) <= {0.0, 1.0}
    assert g.evaluate(pol) == pytest.approx(g.optimal_return(), abs=1e-9)


def test_transition_matrix_rows_are_distributions(small):
    g, (joints, _, P) = small
    T = g.transition_matrix()
    assert np.allclose(T.sum(-1), 1.0) and (T >= 0).all()
    for col, j in enumerate(joints):
        assert np.allclose(T[2, col], P[2, j])


def test_exact_value_matches_sampled_episodes(small):
    g, _ = small
    env = CoopGame(4000, 11, game_seed=3, **SMALL)
    pol = np.random.default_rng(1).dirichlet(np.ones(g.A), size=(g.N, g.S))
    rng = np.random.default_rng(2)
    env.reset()
    total = np.zeros(env.n_envs)
    for _ in range(g.H):
        acts = [(rng.random(env.n_envs)[:, None] > np.cumsum(pol[i, env.state], axis=1)).sum(1) for i in range(g.N)]
        total += env.step(acts).reward
    se = total.std() / np.sqrt(env.n_envs)
    assert abs(total.mean() - g.evaluate(pol)) < 5 * se


def test_paper_size_game_is_unchanged_and_its_optimum_is_attained():
    g = CoopGame(1, 0)
    assert g.spec.name == "coop-game" and g.spec.agents[0].obs_dim == 101
    opt = g.optimal_return()
    assert opt == pytest.approx(39.9459, abs=1e-3)  # README: the optimum of the shipped game is 39.9
    assert g.evaluate(g.optimal_policy()) == pytest.approx(opt, abs=1e-9)
    assert g.evaluate(np.full((g.N, g.S, g.A), 1 / g.A)) < opt
