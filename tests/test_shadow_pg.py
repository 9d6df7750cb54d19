"""Shadow-reward truncated policy gradient (agentd/learner/shadow_pg.py, agentd/qvals.py): the
occupancy estimate and shadow rewards by hand, the gradient step's direction, the κ-hop Q-value
exchange's schedule, and a real distributed run whose utility improves while QVALS only ever
travels between neighbours."""
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agentd.learner import make_learner
from agentd.qvals import QExchange
from agentd.memory_network import MemoryNetwork
from agentd.relay import RelayPlan
from agentd.update_phase import MemoryPost
from envserver.tasks.base import AgentSpec
from topologies import generate, khop_ball, load_topology

torch.set_num_threads(1)

AGENT = AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=2)
E, T = 2, 4
STATES = np.array([[0, 0], [1, 0], [2, 0], [0, 1]])  # [T, E] local states visited


def _learner(**over):
    return make_learner("shadow-pg", AGENT, critic_dim=4, n_agents=3, n_envs=E, seed=0,
                        overrides={"rollout_len": T, "hidden": 16, **over})


def _fill(lrn, reward=0.5):
    eye = np.eye(3, dtype=np.float32)
    acts = []
    for t in range(T):
        acts.append(lrn.act(eye[STATES[t]], np.zeros((E, 4), np.float32)))
        lrn.observe(np.full(E, reward, np.float32), np.zeros((E, 0), np.float32), np.zeros(E, bool))
    return np.array(acts)


def test_occupancy_and_entropy_shadow_reward_by_hand():
    lrn = _learner(gamma=0.9)
    acts = _fill(lrn)
    lam, states = lrn.occupancy()
    np.testing.assert_array_equal(states, STATES)
    counts = np.zeros((3, 2))
    for t in range(T):
        for e in range(E):
            counts[STATES[t, e], acts[t, e]] += 1
    np.testing.assert_allclose(lam, counts / (T * E * 0.1))  # eq. 20, (1 − γ)·Σλ = 1
    d = np.array([5, 2, 1]) / 8  # visits of states 0, 1, 2
    value, grad = lrn.utility_and_grad(lam)
    assert value == pytest.approx(-(d * np.log(d)).sum())
    np.testing.assert_allclose(grad, np.repeat((-0.1 * (np.log(d) + 1))[:, None], 2, axis=1))


def test_target_and_linear_utilities():
    lrn = _learner(gamma=0.5, utility="target", utility_target="2,1,1")
    _fill(lrn)
    lam, _ = lrn.occupancy()
    d, target = np.array([5, 2, 1]) / 8, np.array([0.5, 0.25, 0.25])
    value, grad = lrn.utility_and_grad(lam)
    assert value == pytest.approx(-((d - target) ** 2).sum())
    np.testing.assert_allclose(grad[:, 0], -2 * 0.5 * (d - target))
    lin = _learner(utility="linear")
    _fill(lin, reward=0.25)
    stats = lin.update(np.zeros((E, 4), np.float32))
    assert stats["utility"] == pytest.approx(0.25) and stats["shadow_reward_mean"] == pytest.approx(0.25)


@pytest.mark.parametrize("over, message", [
    ({"utility_target": "1,2"}, "3 non-negative numbers"), ({"utility_target": "a,b,c"}, "comma-separated"),
    ({"normalize_obs": "true"}, "normalize_obs"), ({"utility": "nope"}, "utility must be one of"),
])
def test_bad_configuration_is_one_clear_error(over, message):
    with pytest.raises(ValueError, match=message):
        _learner(**over)


def test_gradient_step_follows_the_shared_q():
    """Q-sum high wherever action 0 was taken: π(0 | x) rises in every visited state."""
    lrn = _learner()
    _fill(lrn)
    acts = lrn.buffer.actions.reshape(-1).copy()
    eye = torch.eye(3)
    before = lrn.actor(eye).exp()[:, 0].detach().numpy()
    lrn.shadow_q(np.zeros((E, 4), np.float32))
    lrn.update_from_q(np.where(acts == 0, 3.0, -3.0).astype(np.float32))
    after = lrn.actor(eye).exp()[:, 0].detach().numpy()
    assert (after > before).all()


class StubLearner:
    """Q̃_o = 2^o everywhere, so each received sum names exactly which origins arrived."""

    def __init__(self, me):
        self.me, self.got = me, None

    def shadow_q(self, critic_in):
        return np.full(5, 2.0 ** self.me, np.float32)

    def update_from_q(self, q_sum):
        self.got = q_sum
        return {}


@pytest.mark.parametrize("kind, kappa", [("line", 2), ("ring", 3), ("star", 1), ("grid", 2)])
def test_q_values_reach_the_ball_once_through_neighbours_only(kind, kappa):
    g = generate(kind, 6)
    plan = RelayPlan(g, kappa, [1] * 6, 1)
    net = MemoryNetwork(plan)
    post = MemoryPost(net)
    xs = [QExchange(i, plan, post.mailbox(i)) for i in range(6)]
    learners = [StubLearner(i) for i in range(6)]
    stats = QExchange.drive(xs, learners, [None] * 6, update=0)
    for i in range(6):
        ball = khop_ball(g, i, kappa)
        np.testing.assert_array_equal(learners[i].got, np.full(5, sum(2.0 ** o for o in ball), np.float32))
        assert stats[i]["qvals_origins"] == sorted(ball) and stats[i]["qvals_missing"] == 0
        assert all(g.has_edge(i, int(p)) for p in net.counters[i].sent_to("update"))
        # hop by hop: i relays exactly the origins it is the designated relay for
        planned = sum(1 for j in g.adj[i] for o, d in khop_ball(g, j, kappa).items()
                      if d >= 1 and plan.relay_of[(j, o)] == i)
        assert sum(net.counters[i].sent_to("update").values()) == planned


def test_a_lost_q_message_is_left_out_not_waited_for():
    g = generate("line", 3)
    plan = RelayPlan(g, 1, [1] * 3, 1)
    net = MemoryNetwork(plan)
    post = MemoryPost(net)
    xs = [QExchange(i, plan, post.mailbox(i)) for i in range(3)]
    xs[0].mailbox = SimpleNamespace(send=lambda peer, frames: None, discard=lambda stale: None,
                                    wait=post.mailbox(0).wait)  # agent 0's sends are lost
    learners = [StubLearner(i) for i in range(3)]
    stats = QExchange.drive(xs, learners, [None] * 3, update=0)
    assert stats[1]["qvals_missing"] == 1 and stats[1]["qvals_origins"] == [1, 2]
    np.testing.assert_array_equal(learners[1].got, np.full(5, 2.0 + 4.0, np.float32))


@pytest.mark.slow
def test_distributed_shadow_pg_improves_its_utility_and_shares_q_with_neighbours_only(tmp_path):
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--task", "networked-mdp", "--algo", "shadow-pg",
                          "--kappa", "2", "--steps", "8000", "--envs", "16", "--seed", "1", "--no-progress",
                          "--run-dir", str(run_dir), "--set", "rollout_len=32", "--set", "utility=target",
                          "--set", "utility_target=0.9,0.1"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    g = load_topology(run_dir / "topology.json")
    first, last = [], []
    for i in g.nodes:
        rows = [json.loads(line) for line in (run_dir / f"agent-{i}" / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) >= 10
        first.append(np.mean([r["utility"] for r in rows[:3]]))
        last.append(np.mean([r["utility"] for r in rows[-3:]]))
        assert all(r["qvals_origins"] == sorted(khop_ball(g, i, 2)) and r["qvals_missing"] == 0 for r in rows)
        sent = rows[-1]["msgs_sent_update_to"]
        assert sent and all(g.has_edge(i, int(p)) for p in sent)
        assert rows[-1]["bytes_sent_update"] > 0
    # −Σ(d − d*)² towards d* = (0.9, 0.1), averaged over the 8 agents: measured −0.24 → −0.12 (seed 1)
    assert np.mean(last) > np.mean(first) + 0.03
