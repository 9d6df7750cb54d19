"""The exact tools of both cooperative games (coop-game and coop-game-joint): the DP optimum
against brute-force search of the game tree and against value iteration on dense kernels rebuilt
from the raw tables, exact J(π) against the same tree and against sampled episodes, the optimal
deterministic policy scoring exactly the optimum; and what tells the two games apart: how much of
r is additive per agent."""
import itertools

import numpy as np
import pytest

from envserver.tasks.coop_game import CoopGame, CoopGameJoint

SMALL = {"n_states": 5, "n_agents": 3, "n_actions": 2, "horizon": 3}
GAMES = [CoopGame, CoopGameJoint]


def raw_step(g, s: int, j: tuple) -> tuple[float, int]:
    """r(s, a) and the steered state read off the raw tables with plain loops."""
    if isinstance(g, CoopGameJoint):
        col = sum(j[i] * g.A ** (g.N - 1 - i) for i in range(g.N))  # agent 0 the most significant digit
        return float(g.r_joint[s, col]), int(g.target[s, col])
    own = np.mean([float(g.r1[i, s, j[i]]) for i in range(g.N)])
    pair = np.mean([float(g.r2[i, s, j[i], j[(i + 1) % g.N]]) for i in range(g.N)])
    return 0.5 * own + 0.5 * pair, (s + sum(int(g.shift[i, s, j[i]]) for i in range(g.N))) % g.S


def raw_model(g):
    """Rewards and transition distributions rebuilt from the raw tables with plain loops."""
    joints = list(itertools.product(range(g.A), repeat=g.N))
    r, P = {}, {}
    for s in range(g.S):
        for j in joints:
            r[s, j], steered = raw_step(g, s, j)
            dist = np.full(g.S, (1 - g.p_move) / g.S)
            dist[steered] += g.p_move
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


@pytest.fixture(scope="module", params=GAMES, ids=lambda c: c.spec.name)
def small(request):
    g = request.param(1, 0, game_seed=3, **SMALL)
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
    env = type(g)(4000, 11, game_seed=3, **SMALL)
    pol = np.random.default_rng(1).dirichlet(np.ones(g.A), size=(g.N, g.S))
    mean, se = sampled_return(env, np.repeat(pol[:, None], g.H, axis=1))
    assert abs(mean - g.evaluate(pol)) < 5 * se


def sampled_return(env, pol: np.ndarray, seed: int = 2) -> tuple[float, float]:
    """Mean and standard error of one episode's return per env copy, playing the per-agent
    policies ``pol`` [N, H, S, A] in the task itself (its own step, rewards and transitions)."""
    rng = np.random.default_rng(seed)
    env.reset()
    total = np.zeros(env.n_envs)
    for t in range(env.H):
        acts = [(rng.random(env.n_envs)[:, None] > np.cumsum(pol[i, t, env.state], axis=1)).sum(1)
                for i in range(env.N)]
        total += env.step(acts).reward
    return float(total.mean()), float(total.std() / np.sqrt(env.n_envs))


def test_paper_size_game_is_unchanged_and_its_optimum_is_attained():
    g = CoopGame(1, 0)
    assert g.spec.name == "coop-game" and g.spec.agents[0].obs_dim == 101
    opt = g.optimal_return()
    assert opt == pytest.approx(39.9459, abs=1e-3)  # README: the optimum of the shipped game is 39.9
    assert g.evaluate(g.optimal_policy()) == pytest.approx(opt, abs=1e-9)
    assert g.evaluate(np.full((g.N, g.S, g.A), 1 / g.A)) < opt


# --- coop-game-joint at the paper's sizes, and what sets it apart from coop-game ----------------

MEDIUM = {"n_states": 12, "n_agents": 4, "n_actions": 3, "horizon": 8}


@pytest.mark.parametrize("game", GAMES, ids=lambda c: c.spec.name)
def test_dp_optimum_equals_value_iteration_on_dense_kernel(game):
    """Finite-horizon value iteration with a dense P [S, A^N, S] and r [S, A^N] rebuilt from the raw
    tables by plain loops reaches the same V*_t(s) at every step as the game's backward induction."""
    g = game(1, 0, game_seed=5, **MEDIUM)
    joints, r, P = raw_model(g)
    R = np.array([[r[s, j] for j in joints] for s in range(g.S)])
    T = np.array([[P[s, j] for j in joints] for s in range(g.S)])
    v = np.zeros(g.S)
    expected = [v]
    for _ in range(g.H):
        v = (R + T @ v).max(axis=1)
        expected.append(v)
    value, _ = g.optimal_values()  # coop-game pays r in float32: ~1e-8 per step from the float64 loops
    assert np.allclose(value, np.array(expected[::-1]), rtol=0, atol=1e-6)
    assert g.optimal_return() == pytest.approx(expected[-1].mean(), abs=1e-6)


def main_effect_share(g, states: range) -> np.ndarray:
    """Per state, the share of the variance of r(s, ·) over all A^N joint actions that the best
    additive fit r ≈ c + Σ_i f_i(a_i) explains (on a full factorial grid that fit is the grand mean
    plus each agent's marginal-mean deviation)."""
    joint = np.array(list(itertools.product(range(g.A), repeat=g.N)))
    shares = []
    for s in states:
        r = g.reward(np.full(len(joint), s), joint).astype(np.float64)
        fit = np.full_like(r, r.mean())
        for i in range(g.N):
            marginal = np.bincount(joint[:, i], weights=r, minlength=g.A) / (len(r) / g.A)
            fit += marginal[joint[:, i]] - r.mean()
        shares.append(((fit - r.mean()) ** 2).mean() / r.var())
    return np.array(shares)


def test_joint_game_reward_is_not_additive_per_agent_unlike_coop_game():
    joint = main_effect_share(CoopGameJoint(1, 0), range(0, 100, 10))
    coop = main_effect_share(CoopGame(1, 0), range(0, 100, 10))
    # i.i.d. per joint action: N(A−1)/(A^N − 1) = 24/15624 ≈ 0.15 % in expectation
    assert joint.max() < 0.05
    assert coop.min() > 0.5  # learner-audit.md Q3(a) measured 56–69 % on 10 states
    assert coop.mean() > 10 * joint.mean()


@pytest.fixture(scope="module")
def paper_joint():
    return CoopGameJoint(1, 0)


def test_joint_game_has_the_paper_sizes_and_a_fixed_game(paper_joint):
    g = paper_joint
    assert g.spec.name == "coop-game-joint" and g.spec.n_agents == 6 and g.spec.episode_length == 50
    assert g.spec.agents[0].obs_dim == 101 and g.spec.agents[0].n_actions == 5 and g.spec.topology == "coop-game"
    other_run = CoopGameJoint(1, 7)  # another run seed plays the same game
    assert np.array_equal(other_run.r_joint, g.r_joint) and np.array_equal(other_run.target, g.target)
    assert not np.array_equal(CoopGameJoint(1, 0, game_seed=1).r_joint, g.r_joint)
    # every joint action has its own draw: the tables are not a function of fewer coordinates
    assert len(np.unique(g.r_joint[0])) > 0.99 * g.A ** g.N
    # README's numbers for the shipped game (game_seed 0)
    assert g.optimal_return() == pytest.approx(49.9979, abs=1e-3)
    assert g.evaluate(np.full((g.N, g.S, g.A), 1 / g.A)) == pytest.approx(24.990, abs=1e-3)


@pytest.mark.parametrize("which", ["uniform", "optimal"])
def test_joint_game_exact_value_matches_sampled_episodes(paper_joint, which):
    """J from the tables against the task's own steps: the uniform policy (the reference line of
    the experiments) and the optimal time-dependent policy (which scores ≈ 25 if a reward column or
    the step's indexing were wrong)."""
    g = paper_joint
    uniform = np.full((g.N, g.H, g.S, g.A), 1.0 / g.A)
    pol = uniform if which == "uniform" else g.optimal_policy()
    mean, se = sampled_return(CoopGameJoint(4000, 3), pol)
    assert abs(mean - g.evaluate(pol)) < 5 * se
    assert g.evaluate(uniform) < g.evaluate(g.optimal_policy()) == pytest.approx(g.optimal_return(), abs=1e-9)


def test_joint_game_shares_coop_game_learner_defaults():
    """dpo.md appendix B's d_target 0.1 is for "the cooperative stochastic game", which both tasks
    model; rollout_len and minibatches follow from the shared 50-step episodes."""
    from agentd.learner.defaults import defaults_for

    assert defaults_for("coop-game-joint") == defaults_for("coop-game") != {}


def test_khop_serves_the_joint_game(tmp_path):
    """A real `khop run --inprocess` (envserver + 6 agents) trains on coop-game-joint and logs episodes."""
    import json
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--inprocess", "--no-progress", "--task",
                          "coop-game-joint", "--algo", "ippo", "--steps", "3000", "--run-dir", str(run_dir)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((run_dir / "config.json").read_text())["task"] == "coop-game-joint"
    rows = [json.loads(line) for line in (run_dir / "envserver" / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) >= 32 and all(r["episode_length"] == 50 for r in rows)
    assert (run_dir / "agent-5" / "metrics.jsonl").read_text().strip()  # every agent updated
