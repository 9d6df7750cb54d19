"""Action masks on a task that is not SMAX (the masked PettingZoo toy, pure numpy), so they are
tested with the base test extra: the actor never samples a masked-out action (statistically, over
many draws, for every discrete learner), an update keeps the policy on the stored support, the
STEP carries the mask, and a real envserver refuses an unavailable action with an ERROR naming it,
steps that copy with the fallback action and keeps every agent stepping."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import zmq

from agentd.learner import ALGOS, make_learner
from agentd.learner.dists import Categorical
from compose.run.launcher import free_ports
from envserver import protocol as P
from envserver.tasks import make_task, task_spec
from envserver.tasks.base import AgentSpec

torch.set_num_threads(1)

MASKED_TOY = "pettingzoo:envserver.tasks.pettingzoo_toy:masked_parallel_env"
N_ACTIONS, E = 6, 32
SPEC = AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=N_ACTIONS, action_mask=True)
DISCRETE_ALGOS = sorted(k for k, c in ALGOS.items() if "discrete" in c.act_kinds)


def _learner(algo: str, seed: int = 0):
    limits = (1.0,) if ALGOS[algo].uses_costs else ()
    over = {"rollout_len": 8} if algo != "iql" else {"rollout_len": 8, "learning_starts": 64, "batch_size": 32}
    return make_learner(algo, SPEC, critic_dim=5, n_agents=2, n_envs=E, seed=seed, overrides=over,
                        cost_limits=limits, episode_length=10)


def _random_masks(rng: np.random.Generator) -> np.ndarray:
    m = rng.random((E, N_ACTIONS)) < 0.4
    m[np.arange(E), rng.integers(0, N_ACTIONS, E)] = True  # every row keeps one available action
    return m


@pytest.mark.parametrize("algo", DISCRETE_ALGOS)
def test_a_masked_action_is_never_sampled(algo):
    """6,400 draws through act() with updates in between: none masked out, and every action drawn
    often where it was available (so the masks did not leave one action per row)."""
    rng = np.random.default_rng(1)
    learner = _learner(algo)
    drawn = np.zeros(N_ACTIONS)
    for _ in range(200):
        mask = _random_masks(rng)
        obs, cin = rng.normal(size=(E, 3)).astype(np.float32), rng.normal(size=(E, 5)).astype(np.float32)
        a = learner.act(obs, cin, mask)
        assert mask[np.arange(E), a].all(), f"{algo} sampled a masked-out action"
        np.add.at(drawn, a, 1)
        learner.observe(rng.normal(size=E).astype(np.float32), np.zeros((E, 1), np.float32), rng.random(E) < 0.1)
        if learner.ready():
            stats = learner.update(cin)
            assert all(np.isfinite(v) for v in stats.values() if isinstance(v, float)), stats
    assert (drawn > 0.03 * drawn.sum()).all(), drawn


def test_masked_sampling_follows_the_renormalised_policy():
    """With one input and one mask, 3,200 draws match π(a)/Σ_available π within 5 standard errors
    and never hit the masked-out actions; the same actor unmasked gives those actions mass."""
    learner = make_learner("dpo", SPEC, 5, 2, E, 0, overrides={"rollout_len": 100, "normalize_obs": False})
    obs, cin = np.full((E, 3), 0.7, np.float32), np.full((E, 5), -0.3, np.float32)
    mask = np.tile([True, False, True, True, False, True], (E, 1))
    counts = np.zeros(N_ACTIONS)
    while not learner.ready():
        np.add.at(counts, learner.act(obs, cin, mask), 1)
        learner.observe(np.zeros(E, np.float32), np.zeros((E, 1), np.float32), np.zeros(E, bool))
    with torch.no_grad():
        raw = learner.actor(torch.from_numpy(obs[:1]))
        p = torch.exp(Categorical.masked(raw, torch.from_numpy(mask[:1])))[0].double().numpy()
    assert float(torch.exp(raw)[0, ~torch.from_numpy(mask[0])].sum()) > 0.1
    n = counts.sum()
    assert counts[~mask[0]].sum() == 0
    assert np.all(np.abs(counts / n - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12), (counts / n, p)


def test_masks_are_required_exactly_where_the_task_masks():
    learner = _learner("dpo")
    obs, cin = np.zeros((E, 3), np.float32), np.zeros((E, 5), np.float32)
    with pytest.raises(ValueError, match="masks actions"):
        learner.act(obs, cin)
    with pytest.raises(ValueError, match="available action in every row"):
        learner.act(obs, cin, np.zeros((E, N_ACTIONS), bool))
    plain = make_learner("dpo", AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=N_ACTIONS), 5, 2, E, 0)
    with pytest.raises(ValueError, match="does not mask actions"):
        plain.act(obs, cin, np.ones((E, N_ACTIONS), bool))


def test_an_update_starts_on_the_stored_support_with_ratio_one():
    """The first minibatch of an update must see ratio 1 and KL 0 (buffer.py): the new policy is
    restricted to the support the stored, masked distribution had."""
    rng = np.random.default_rng(2)
    learner = _learner("dpo")
    while not learner.ready():
        cin = rng.normal(size=(E, 5)).astype(np.float32)
        learner.act(rng.normal(size=(E, 3)).astype(np.float32), cin, _random_masks(rng))
        learner.observe(np.ones(E, np.float32), np.zeros((E, 1), np.float32), np.zeros(E, bool))
    batch = learner._prepare(cin, None)
    with torch.no_grad():
        params = learner._policy(batch.obs, batch.params_old)
        unmasked = learner.actor(batch.obs)
    assert torch.allclose(params, batch.params_old, atol=1e-5)
    assert float(Categorical.kl(batch.params_old, params).max()) < 1e-5
    assert float(Categorical.kl(batch.params_old, unmasked).mean()) > 1e-3  # the restriction matters


def test_step_carries_the_mask_and_an_absent_one_is_named():
    z = np.zeros(2, np.float32)
    arrays = {"obs": np.zeros((2, 3), np.float32), "reward": z, "cost": np.zeros((2, 0), np.float32),
              "terminated": z.astype(np.uint8), "truncated": z.astype(np.uint8)}
    mask = np.array([[1, 0, 1], [0, 0, 1]], np.uint8)
    msg = P.decode([bytes(f) for f in P.encode("STEP", {"t": 0}, {**arrays, "mask": mask})])
    assert (P.check_array(msg, "mask", (2, 3), np.uint8) == mask).all()
    bare = P.decode([bytes(f) for f in P.encode("STEP", {"t": 0}, arrays)])  # a task without masks
    with pytest.raises(P.ProtocolError, match="STEP lacks buffer 'mask'"):
        P.check_array(bare, "mask", (2, 3), np.uint8)


def test_the_toy_task_masks_the_moves_off_the_line_and_falls_back_to_an_available_action():
    spec = task_spec(MASKED_TOY)
    assert all(a.action_mask for a in spec.agents)
    assert not any(a.action_mask for a in task_spec("coop-game").agents)
    task = make_task(MASKED_TOY, n_envs=3, seed=0)
    task.reset()
    left, right = task.action_masks()
    assert (left == [False, True, True]).all() and (right == [True, True, False]).all()
    assert (task.fallback_action(0) == 1).all()  # action 0 (move −1) is masked out in cell 0: stay
    assert (task.fallback_action(1) == 0).all()


# --- a real envserver ---------------------------------------------------------------------------
@pytest.fixture
def toy_server(tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    proc = subprocess.Popen([sys.executable, "-m", "envserver.main", "--task", MASKED_TOY, "--bind", endpoint,
                             "--envs", "2", "--steps", "1000000", "--deadline", "5",
                             "--run-dir", str(tmp_path / "envserver")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ctx = zmq.Context()
    yield endpoint, ctx, proc, tmp_path
    proc.terminate()
    out = proc.communicate(timeout=20)[0].decode()
    ctx.destroy(linger=0)
    assert proc.returncode == 0, out


def _recv(sock) -> P.Message:
    assert sock.poll(20_000), "no reply from envserver"
    return P.decode(sock.recv_multipart())


def test_an_unavailable_action_gets_an_error_and_the_fallback_while_all_keep_stepping(toy_server):
    endpoint, ctx, proc, tmp_path = toy_server
    socks = []
    for i in range(2):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send_multipart(P.encode("HELLO", {"agent": i, "version": P.PROTOCOL_VERSION, "resume": False,
                                            "incarnation": 1}))
        assert _recv(s).type == "WELCOME"
        socks.append(s)
    steps = [_recv(s) for s in socks]
    assert [m.type for m in steps] == ["STEP", "STEP"]
    assert (steps[0].arrays["mask"] == [[0, 1, 1], [0, 1, 1]]).all()  # the left agent may not step off cell 0
    # agent 0: copy 0 tries the masked-out move −1 (action 0), copy 1 moves right; agent 1 stays
    socks[0].send_multipart(P.encode("ACT", {"agent": 0, "t": 0}, {"action": np.array([0, 2], np.int64)}))
    socks[1].send_multipart(P.encode("ACT", {"agent": 1, "t": 0}, {"action": np.array([1, 1], np.int64)}))
    err = _recv(socks[0])
    assert err.type == "ERROR"
    assert "action 0 is unavailable to agent 0 in env copy 0" in err["reason"] and "fallback action 1" in err["reason"]
    nxt = [_recv(s) for s in socks[::-1]]  # both agents get step 1: nobody waited for a deadline
    assert [(m.type, m["t"]) for m in nxt] == [("STEP", 1), ("STEP", 1)]
    left = nxt[1]
    assert left.arrays["obs"][:, 0].tolist() == [0.0, 1.0]  # copy 0 stayed (the fallback), copy 1 moved
    assert left.arrays["cost"][:, 0].tolist() == [0.0, 0.0]  # the masked move was never tried on the env
    assert (left.arrays["mask"] == [[0, 1, 1], [1, 1, 1]]).all()
    for i, s in enumerate(socks):  # and the agent that erred is still live: its ACT counts
        s.send_multipart(P.encode("ACT", {"agent": i, "t": 1}, {"action": np.array([1, 1], np.int64)}))
    assert [_recv(s)["t"] for s in socks] == [2, 2]
    events = [json.loads(line)["event"] for line in (tmp_path / "envserver" / "events.jsonl").read_text().splitlines()]
    assert "agent_down" not in events


@pytest.mark.slow
def test_khop_run_on_a_masked_task_never_tries_a_masked_move(tmp_path):
    """Agent processes over sockets: the toy's cost counts tries to walk off the line, which its
    masks forbid, so every episode's cost is 0; the unmasked toy, same seed, pays some."""
    costs = {}
    for name, task in (("masked", MASKED_TOY), ("plain", MASKED_TOY.replace("masked_parallel_env", "parallel_env"))):
        res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--task", task, "--algo", "ippo",
                              "--steps", "1200", "--envs", "4", "--seed", "0", "--no-progress",
                              "--run-dir", str(tmp_path / name)], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        rows = [json.loads(line) for line in (tmp_path / name / "envserver" / "episodes.jsonl").read_text().splitlines()]
        assert len(rows) >= 8
        costs[name] = sum(r["episode_cost"] for r in rows)
    assert costs["masked"] == 0.0
    assert costs["plain"] > 0.0


def test_a_masked_task_as_a_parallel_env_gives_its_masks_in_infos():
    from envserver.pettingzoo import parallel_env

    env = parallel_env(MASKED_TOY, seed=0)
    try:
        _obs, infos = env.reset()
        assert infos["agent_0"]["action_mask"].tolist() == [0, 1, 1]
        assert infos["agent_1"]["action_mask"].tolist() == [1, 1, 0]
        _obs, _rew, _term, _trunc, infos = env.step({"agent_0": 2, "agent_1": 1})
        assert infos["agent_0"]["action_mask"].tolist() == [1, 1, 1]
        with pytest.raises(RuntimeError, match="action 2 is unavailable to agent 1"):
            env.step({"agent_0": 1, "agent_1": 2})
    finally:
        env.close()
