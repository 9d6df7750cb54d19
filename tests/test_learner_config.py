"""Each algorithm owns its hyperparameter keys: learner_config refuses a user override the chosen
algorithm would not read, drops task-family and preset values it does not read, and checkpoints
holding the whole flat config keep loading."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from agentd.learner import ALGOS, LearnerConfig, learner_config, make_learner
from agentd.learner.config import COMMON_KEYS
from agentd.learner.defaults import PRESETS, TASK_DEFAULTS, defaults_for
from envserver.tasks.base import AgentSpec

DISCRETE = AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=4)
CONTINUOUS = AgentSpec(obs_dim=3, act_kind="continuous", act_dim=1)
FIELDS = {f.name for f in dataclasses.fields(LearnerConfig)}


@pytest.mark.parametrize("task", [None, ""])
def test_foreign_key_refused_with_one_line(task: str | None) -> None:
    with pytest.raises(ValueError) as err:
        learner_config("dpo", {"focops_lam": 3}, task=task)
    assert str(err.value) == "--set focops_lam: dpo does not use this key (used by mafocops)"
    with pytest.raises(ValueError) as err:  # a key most algorithms read: the short complement is named
        learner_config("iql", {"clip": 0.1, "epochs": 3}, task=task)
    assert str(err.value) == ("--set clip: iql does not use this key (used by all but iddpg, iql, macpo); "
                              "--set epochs: iql does not use this key (used by all but iddpg, iql)")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown learner override"):  # a typo is still named as such
        learner_config("dpo", {"focops_lamb": 3}, task=task)


def test_task_defaults_of_other_algorithms_are_not_refused() -> None:
    # mpe sets DPO's d_target = 0.01; ippo does not read it, iql reads no minibatches either (coop-game)
    assert "d_target" in defaults_for("mpe") and "minibatches" in defaults_for("coop-game")
    assert learner_config("ippo", task="mpe").d_target == LearnerConfig().d_target
    assert learner_config("dpo", task="mpe").d_target == 0.01
    iql = learner_config("iql", {"lr_critic": 1e-3}, task="coop-game")
    assert iql.rollout_len == 32 and iql.minibatches == LearnerConfig().minibatches and iql.lr_critic == 1e-3
    # the caller merged them itself (task=None): a field a family sets is dropped, not refused ...
    assert learner_config("ippo", {**defaults_for("mpe"), "epochs": 3}).epochs == 3
    # ... but with the task named, the user's own d_target on ippo is refused
    with pytest.raises(ValueError, match="^--set d_target: ippo does not use this key"):
        learner_config("ippo", {"d_target": 0.01}, task="mpe")


def test_presets() -> None:
    assert learner_config("dec-mappo-l", {"preset": "safepo"}, task="").lambda_init == 0.78
    # mafocops reads the preset's lambda_optimizer only; the λ fields are dropped
    cfg = learner_config("mafocops", {"preset": "safepo"}, task="")
    assert cfg.lambda_optimizer == "sgd" and cfg.lambda_init == LearnerConfig().lambda_init
    with pytest.raises(ValueError) as err:
        learner_config("dpo", {"preset": "safepo"}, task="")
    assert str(err.value) == ("--set preset=safepo: dpo uses none of its keys "
                              "(lagrangian_form, lambda_init, lambda_lr, lambda_optimizer)")


def test_declared_keys_are_consistent() -> None:
    """Every declared key is a field, declared once; every field is read by some algorithm; each
    algorithm's own defaults and the presets/task families only set fields (some algorithm reads)."""
    assert set(COMMON_KEYS) <= FIELDS and len(set(COMMON_KEYS)) == len(COMMON_KEYS)
    for algo, cls in ALGOS.items():
        assert set(cls.config_keys) <= FIELDS - set(COMMON_KEYS), algo
        assert len(set(cls.config_keys)) == len(cls.config_keys), algo
        assert set(cls.defaults) <= cls.used_keys(), algo
    assert set().union(*(cls.used_keys() for cls in ALGOS.values())) == FIELDS
    for values in (*PRESETS.values(), *TASK_DEFAULTS.values()):
        assert set(values) <= FIELDS


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_algorithm_constructs_with_its_owned_keys(algo: str) -> None:
    cls = ALGOS[algo]
    agent = CONTINUOUS if cls.act_kinds == ("continuous",) else DISCRETE
    small = {"rollout_len": 8, "replay_size": 64, "learning_starts": 8, "batch_size": 8}  # cheap to build
    cfg = learner_config(algo, {k: v for k, v in small.items() if k in cls.used_keys()})
    owned = {k: getattr(cfg, k) for k in cls.used_keys()}
    lrn = make_learner(algo, agent, 5, 2, 2, 0, owned, task="", cost_limits=(1.0,) if cls.uses_costs else (),
                       episode_length=4)
    assert lrn.cfg == cfg and lrn.used_keys() == cls.used_keys()


class _Reads:
    """A LearnerConfig that records which fields are read."""

    def __init__(self, cfg: LearnerConfig) -> None:
        self.cfg, self.read = cfg, set()

    def __getattr__(self, name: str) -> object:
        self.read.add(name)
        return getattr(self.cfg, name)


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_an_algorithm_reads_only_the_keys_it_declares(algo: str) -> None:
    """Build, act, observe and update once with a recording config: every field read is declared,
    so a key learner_config refuses would really have been ignored."""
    cls = ALGOS[algo]
    agent = CONTINUOUS if cls.act_kinds == ("continuous",) else DISCRETE
    small = {"rollout_len": 8, "replay_size": 64, "learning_starts": 8, "batch_size": 8, "gradient_steps": 2}
    reads = _Reads(learner_config(algo, {k: v for k, v in small.items() if k in cls.used_keys()}, task=""))
    n_costs = 1 if cls.uses_costs else 0
    lrn = cls(agent, 5, 2, 2, 0, reads, cost_limits=(1.0,) * n_costs, episode_length=4)  # type: ignore[arg-type]
    obs, cin = np.eye(3, dtype=np.float32)[[0, 1]], np.ones((2, 5), np.float32)
    for t in range(64):
        lrn.act(obs, cin)
        lrn.observe(np.ones(2), np.ones((2, n_costs)), np.full(2, t % 4 == 3))
        if lrn.ready():
            lrn.update(cin)
            break
    assert lrn.n_updates == 1
    # MACPO builds the base's actor Adam (its checkpoints hold it) but moves the actor by the trust-region step
    built_unused = {"lr_actor"} if algo == "macpo" else set()
    assert reads.read - built_unused <= cls.used_keys(), sorted(reads.read - cls.used_keys())


def test_flat_checkpoint_config_loads() -> None:
    """A checkpoint stores the whole flat config; fields this algorithm does not read may differ (another
    task family's d_target, an old file's defaults) without a warning, a field it reads is adopted."""
    lrn = make_learner("ippo", DISCRETE, 5, 2, 2, 0, {"rollout_len": 8})
    state = lrn.state_dict()
    state["cfg"].update(d_target=0.001, focops_lam=9.0, replay_size=5)
    fresh = make_learner("ippo", DISCRETE, 5, 2, 2, 1, {"rollout_len": 8})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh.load_state_dict(state)
    assert fresh.cfg == lrn.cfg
    state["cfg"]["epochs"] = 3
    with pytest.warns(UserWarning, match=r"differs in \['epochs'\]"):
        fresh.load_state_dict(state)
    assert fresh.cfg.epochs == 3 and fresh.cfg.d_target == LearnerConfig().d_target
