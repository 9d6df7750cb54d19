"""Options declared once (envserver/options.py): what `khop run` writes for its children is what
they parse back, every communication option exists under one name at every entry point, and a
value out of range is one line naming the option, at every entry point."""
import subprocess
import sys
from pathlib import Path

import pytest

from agentd.agent import AgentConfig
from agentd.comm import CommConfig
from agentd.main import build_parser as agentd_parser
from compose.cli import build_parser as khop_parser
from compose.run.config import RunConfig, process_args, validate
from envserver.main import build_parser as envserver_parser
from envserver.options import OptionError, check, flags, from_namespace, names, to_argv
from envserver.server import ServerConfig


def _options(parser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def _sub(name: str):
    return khop_parser()._subparsers._group_actions[0].choices[name]


NON_DEFAULT = dict(task="coop-game", algo="dec-mappo-l", kappa=2, steps=1234, envs=3, seed=7, overrides=["gamma=0.9"],
                   deadline_s=12.5, checkpoint_every=3, progress=False, relay="async", comm_budget=640.0,
                   budget_max_period=2, link_loss=0.05, round_timeout_ms=250.0, link_timeout_s=9.0,
                   heartbeat_timeout_s=2.0, actor_mask=True, actor_input="local")


def test_a_run_config_survives_its_own_command_line():
    cfg = RunConfig(**NON_DEFAULT)
    back = from_namespace(RunConfig, khop_parser().parse_args(["run", *to_argv(cfg)]))
    assert back == cfg
    assert to_argv(RunConfig()) == []  # defaults are not written


def test_children_parse_back_what_the_launcher_writes(tmp_path):
    cfg = RunConfig(**{**NON_DEFAULT, "actor_input": None, "actor_mask": False, "relay": "sync"})
    spec, graph = validate(cfg)
    args = process_args(cfg, spec.n_agents, "tcp://127.0.0.1:5999", "tcp://127.0.0.1:5999", tmp_path / "t.json",
                        tmp_path)
    server = from_namespace(ServerConfig, envserver_parser().parse_args(args["envserver"]))
    assert (server.task, server.envs, server.seed, server.max_env_steps, server.deadline_s, server.run_dir) == \
        (cfg.task, cfg.envs, cfg.seed, cfg.steps, cfg.deadline_s, tmp_path / "envserver")
    for i in range(spec.n_agents):
        agent = from_namespace(AgentConfig, agentd_parser().parse_args(args[f"agent-{i}"]))
        assert agent.agent == i and agent.kappa == cfg.kappa and agent.overrides == cfg.overrides
        assert {n: getattr(agent, n) for n in names(CommConfig)} == {n: getattr(cfg, n) for n in names(CommConfig)}
        assert agent.actor_input == "khop"  # validate() decided the algorithm's default; the agent is told it


def test_every_communication_option_is_one_flag_at_every_entry_point():
    comm = set(flags(CommConfig).values())
    for parser in (_sub("run"), _sub("sweep"), _sub("compose"), agentd_parser()):
        assert comm <= _options(parser), parser.prog
    assert set(flags(ServerConfig).values()) <= _options(envserver_parser())


@pytest.mark.parametrize("field, value, message", [
    ("heartbeat_timeout_s", 0.0, "--heartbeat-timeout must be > 0 and finite, got 0.0"),
    ("budget_max_period", 0, "--budget-max-period must be >= 1, got 0"),
    ("relay", "fast", "--relay must be one of sync, async; got 'fast'"),
    ("deadline_s", -1.0, "--deadline must be > 0 and finite, got -1.0"),
    ("link_timeout_s", float("inf"), "--link-timeout must be > 0 and finite, got inf"),
])
def test_a_value_out_of_range_names_the_option(field, value, message):
    with pytest.raises(OptionError) as err:
        check(RunConfig(**{field: value}))
    assert str(err.value) == message


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "agentd.main", "--id", "0", "--env", "tcp://127.0.0.1:1", "--topology", "x.json",
     "--heartbeat-timeout", "0"],
    [sys.executable, "-m", "envserver.main", "--task", "coop-game", "--deadline", "-1"],
    [sys.executable, "-m", "compose.cli", "run", "--link-timeout", "0"],
    [sys.executable, "-m", "compose.cli", "sweep", "--link-timeout", "0", "--dry-run", "--out", "/tmp/x"],
])
def test_every_entry_point_refuses_a_bad_value_with_one_line_before_starting(command, tmp_path):
    res = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "must be > 0" in res.stderr
    assert not list(Path(tmp_path).iterdir())  # nothing started, nothing written


def test_settings_that_would_make_a_run_meaningless_are_warned_and_recorded(tmp_path):
    cfg = RunConfig(task="coop-game", algo="dec-mappo-l", kappa=9, comm_budget=1.0)
    validate(cfg)
    text = " | ".join(cfg.warnings)
    assert len(cfg.warnings) == 3, text
    assert "dec-mappo-l is a cost-constrained learner but coop-game has no cost" in text
    assert "--kappa 9 exceeds the graph's diameter" in text
    assert "--comm-budget 1 bytes is less than one relay message" in text
    clean = RunConfig(task="coop-game", algo="ippo")
    validate(clean)
    assert clean.warnings == []
    run = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--inprocess", "--no-progress", "--run-dir",
                          str(run), "--algo", "dec-mappo-l", "--steps", "200", "--envs", "2"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "khop run: warning: dec-mappo-l is a cost-constrained learner" in res.stderr
    import json
    assert json.loads((run / "config.json").read_text())["warnings"] == [
        line.split("warning: ", 1)[1] for line in res.stderr.splitlines() if "warning: " in line]
