"""Matrix games of dpo.md Table 3 and the exact iteration (17)."""
import numpy as np
import pytest

from envserver.tasks import make_task
from envserver.tasks.matrix_games import (
    PAYOFFS,
    dpo_step,
    exact_dpo_iteration,
    individual_advantage,
    joint_return,
    kl,
    literal_m_hat,
    payoff_matrix,
    surrogate,
    theory_m_hat,
)

TABLE3 = {1: (5, 7, 6, 4), 2: (1, 3, 5, 4), 3: (7, 1, 1, 3), 4: (20, 0, 0, 10)}


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_tasks_pay_table3(k):
    assert PAYOFFS[k] == TABLE3[k]
    task = make_task(f"matrix-game-{k}", n_envs=4, seed=0)
    assert task.spec.n_agents == 2 and task.spec.episode_length == 1
    assert all(a.n_actions == 2 for a in task.spec.agents)
    obs = task.reset()
    assert len(obs) == 2 and obs[0].shape == (4, 1)
    res = task.step([np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])])  # (p,q) (p,1−q) (1−p,q) (1−p,1−q)
    assert res.reward.tolist() == list(TABLE3[k])
    assert res.terminated.all() and not res.truncated.any()
    a, b, c, d = TABLE3[k]
    p, q = 0.3, 0.8
    assert task.evaluate(p, q) == pytest.approx(p * q * a + p * (1 - q) * b + (1 - p) * q * c + (1 - p) * (1 - q) * d)


def test_advantage_and_return_formulas():
    R = payoff_matrix(2)
    pols = [np.array([0.3, 0.7]), np.array([0.6, 0.4])]
    J = joint_return(R, pols)
    assert J == pytest.approx(pols[0] @ R @ pols[1])
    assert individual_advantage(R, pols, 0) == pytest.approx(R @ pols[1] - J)
    assert individual_advantage(R, pols, 1) == pytest.approx(pols[0] @ R - J)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("m", ["theory", 1.0, 0.0])
def test_iteration_17_is_monotone(k, m):
    starts = [(0.5, 0.5), (0.2, 0.7)]
    for init in starts:
        out = exact_dpo_iteration(k, steps=15, M=m, C=10.0, init=init)
        assert np.all(np.diff(out["J"]) >= -1e-9), (k, m, init, out["J"])
        assert np.all(out["surrogate_gain"] >= -1e-12)  # each agent's surrogate never falls below π_t's 0


def test_without_the_sqrt_term_the_iteration_improves_every_game():
    for k in PAYOFFS:
        out = exact_dpo_iteration(k, steps=15, M=0.0, C=10.0, init=(0.5, 0.5))
        assert out["J"][-1] > out["J"][0] + 0.2


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_with_the_theorems_constant_no_agent_moves(k):
    """Pinsker: (1/N)·ΔL ≤ TV·range/N < √2·M̂·TV ≤ M̂·√KL, so π_t is the unique maximiser."""
    R = payoff_matrix(k)
    assert theory_m_hat(R) > np.ptp(R) / (2 * np.sqrt(2)) and literal_m_hat(R) > 0
    out = exact_dpo_iteration(k, steps=5, M="theory", init=(0.35, 0.6))
    assert np.allclose(out["policies"], out["policies"][0])


def test_theorem_3_3_lower_bound_holds_numerically():
    rng = np.random.default_rng(0)
    for _ in range(300):
        R = payoff_matrix(int(rng.integers(1, 5)))
        old = [rng.dirichlet([1, 1]) for _ in range(2)]
        new = [rng.dirichlet([1, 1]) for _ in range(2)]
        m_hat, c = theory_m_hat(R), 10.0
        adv_joint = R - joint_return(R, old)
        l_joint = new[0] @ adv_joint @ new[1]
        kl_joint = sum(kl(o, n) for o, n in zip(old, new))
        rhs = sum(surrogate(new[i], old[i], individual_advantage(R, old, i), 2, m_hat, c) for i in range(2))
        assert l_joint - c * kl_joint >= rhs - 1e-9


def test_step_maximises_the_surrogate():
    R = payoff_matrix(4)
    pols = [np.array([0.3, 0.7]), np.array([0.45, 0.55])]
    new = dpo_step(R, pols, m_hat=1.0, c=10.0)
    xs = np.linspace(1e-6, 1 - 1e-6, 20001)
    for i in range(2):
        adv = individual_advantage(R, pols, i)
        grid = max(surrogate(np.array([x, 1 - x]), pols[i], adv, 2, 1.0, 10.0) for x in xs)
        assert surrogate(new[i], pols[i], adv, 2, 1.0, 10.0) >= grid - 1e-9
