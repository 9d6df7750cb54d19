"""networked-mdp: valid transitions, the spatial-decay bound of Assumption 1, exact gradients
(checked by finite differences) and the κ-truncated gradient of eq. (15)."""
import numpy as np
import pytest

from agentd.learner.utility import entropy_utility
from envserver.tasks import make_task
from envserver.tasks.networked_mdp import ExactSolver, NetworkedMDP, line_graph


@pytest.fixture(scope="module")
def small():
    mdp = NetworkedMDP(n_agents=4, decay=0.4, game_seed=1)
    return mdp, ExactSolver(mdp, gamma=0.8)


def test_transitions_are_distributions(small):
    mdp, ex = small
    rng = np.random.default_rng(0)
    s = rng.integers(0, mdp.n_local_states, (500, mdp.n_agents))
    a = rng.integers(0, mdp.n_local_actions, (500, mdp.n_agents))
    p = mdp.local_probs(s, a)
    assert (p >= 0).all() and np.allclose(p.sum(-1), 1.0)
    P = ex.transition()
    assert P.shape == (ex.S, ex.A, ex.S) and (P >= 0).all() and np.allclose(P.sum(-1), 1.0)
    # the global kernel is the product of the local ones (transition decomposition)
    s_idx, a_idx, s2 = 5, 9, 12
    local = mdp.local_probs(ex.S_loc[[s_idx]], ex.A_loc[[a_idx]])[0]
    assert P[s_idx, a_idx, s2] == pytest.approx(np.prod([local[i, ex.S_loc[s2, i]] for i in range(mdp.n_agents)]))


@pytest.mark.parametrize("decay", [0.2, 0.5, 0.8])
def test_decay_bound_of_assumption_1(decay):
    mdp = NetworkedMDP(n_agents=5, decay=decay, coupling=0.1, own_weight=0.4, game_seed=2)
    M = mdp.decay_matrix()
    off = mdp.dist > 0
    assert (M[off] <= 0.1 * decay ** (mdp.dist[off] - 1) + 1e-12).all()
    assert (np.diag(M) <= 0.4 + 1e-12).all()
    # exactly w_ij times the largest TV between agent j's influence kernels
    j, i = 3, 0
    G = mdp.G[j].reshape(-1, mdp.n_local_states)
    tv = max(0.5 * np.abs(x - y).sum() for x in G for y in G)
    assert M[i, j] == pytest.approx(mdp.W[i, j] * tv)
    gamma = 0.9
    assert mdp.assumption1_rho(0.0, M) < 1 / gamma
    assert mdp.assumption1_rho(0.5 * np.log(1 / decay), M) < 1 / gamma  # some β > 0 is admissible


def test_weights_that_do_not_fit_are_refused():
    with pytest.raises(ValueError):
        NetworkedMDP(n_agents=6, decay=0.9, coupling=0.4, own_weight=0.5)


def _fd(fun, theta, h=1e-6):
    g = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        tp, tm = theta.copy(), theta.copy()
        tp[idx] += h
        tm[idx] -= h
        g[idx] = (fun(tp) - fun(tm)) / (2 * h)
    return g


def test_exact_gradient_matches_finite_differences(small):
    mdp, ex = small
    theta = np.random.default_rng(3).normal(size=(mdp.n_agents, 2, 2))
    ev = ex.evaluate(theta)
    assert ev["d"].sum() == pytest.approx(1 / (1 - ex.gamma))
    g = ex.gradient(ev)
    assert np.allclose(g, _fd(lambda t: ex.evaluate(t)["value"].mean(), theta), atol=1e-7)
    _, _, ev_u = ex.utility(theta, entropy_utility)
    gu = ex.gradient(ev_u)  # general utility: gradient through the shadow rewards (Lemma 1)
    assert np.allclose(gu, _fd(lambda t: ex.utility_value(t, entropy_utility), theta), atol=1e-7)


def test_truncated_gradient_is_exact_at_the_diameter_and_approximate_below(small):
    mdp, ex = small
    theta = np.random.default_rng(4).normal(size=(mdp.n_agents, 2, 2))
    _, _, ev = ex.utility(theta, entropy_utility)
    g = ex.gradient(ev)
    assert mdp.diameter == 3
    assert np.allclose(ex.truncated_gradient(ev, mdp.diameter), g, atol=1e-14)
    errs = [np.abs(ex.truncated_gradient(ev, k) - g).max() for k in range(mdp.diameter)]
    assert errs[0] > 1e-8 and all(e > 0 for e in errs)


def test_truncated_q_ignores_agents_outside_the_ball(small):
    mdp, ex = small
    ev = ex.evaluate(np.zeros((mdp.n_agents, 2, 2)))
    qhat = ex.truncated_q(ev, 1)
    # agent 0's ball on the line is {0, 1}: changing agent 3's state/action leaves Q̂_0 unchanged
    s = ex.S_loc.copy()
    s_flip = s.copy()
    s_flip[:, 3] ^= 1
    idx_flip = np.ravel_multi_index(tuple(s_flip.T), (2,) * 4)
    assert np.allclose(qhat[:, :, 0], qhat[idx_flip][:, :, 0])


def test_vectask_follows_the_model():
    task = make_task("networked-mdp", n_envs=20000, seed=0)
    mdp = task.mdp
    assert sorted(line_graph(mdp.n_agents).edges) == sorted(mdp.graph.edges)
    obs = task.reset()
    assert len(obs) == mdp.n_agents and obs[0].shape == (20000, 2) and np.allclose(obs[0].sum(1), 1)
    task.state[:] = 0
    act = [np.zeros(20000, dtype=np.int64) for _ in range(mdp.n_agents)]
    res = task.step(act)
    expected = mdp.local_probs(np.zeros((1, mdp.n_agents), int), np.zeros((1, mdp.n_agents), int))[0, :, 1]
    freq = task.state.mean(axis=0)
    assert np.all(np.abs(freq - expected) < 5 * np.sqrt(expected * (1 - expected) / 20000) + 1e-9)
    assert res.reward == pytest.approx(np.full(20000, mdp.R[np.arange(mdp.n_agents), 0, 0].mean()), abs=1e-6)


def test_shadow_pg_estimates_match_the_exact_solver():
    from experiments.shadow_pg import ShadowPG

    mdp = NetworkedMDP(n_agents=3, decay=0.5, game_seed=0)
    ex = ExactSolver(mdp, gamma=0.8)
    theta = np.random.default_rng(5).normal(size=(3, 2, 2))
    _, shadow, ev = ex.utility(theta, entropy_utility)
    alg = ShadowPG(mdp, kappa=2, gamma=0.8, batch=3000, horizon=60, seed=0)
    S, A = alg.sample(theta)
    lam = alg.occupancy(S, A)
    assert np.abs(lam - ev["lam_local"]).max() < 0.05 * ev["lam_local"].max()
    assert np.abs(alg.shadow_rewards(lam) - shadow).max() < 0.05 * np.abs(shadow).max()


def test_start_distribution_in_the_task_and_the_solver():
    """`networked-mdp-start0` resets every agent to local state 0, after each episode too, and the
    exact solver's ξ is the product of the local start distributions."""
    task = make_task("networked-mdp-start0", n_envs=8, seed=0)
    assert task.spec.name == "networked-mdp-start0" and task.spec.n_agents == 8
    obs = task.reset()
    assert all((o[:, 0] == 1).all() for o in obs)
    act = [np.ones(8, dtype=np.int64) for _ in range(task.mdp.n_agents)]
    for _ in range(task.spec.episode_length - 1):
        res = task.step(act)
    assert not res.truncated.any() and task.state.any()  # the chain has moved away from state 0
    res = task.step(act)
    assert res.truncated.all() and all((o[:, 0] == 1).all() for o in res.obs)
    mdp = NetworkedMDP(n_agents=3, game_seed=0, start=np.array([0.25, 0.75]))
    xi = ExactSolver(mdp, gamma=0.8).xi
    assert xi.sum() == pytest.approx(1.0) and xi[0] == pytest.approx(0.25 ** 3) and xi[-1] == pytest.approx(0.75 ** 3)
    with pytest.raises(ValueError, match="start must be a distribution over the 2 local states"):
        NetworkedMDP(n_agents=3, start=np.array([0.5, 0.6]))
