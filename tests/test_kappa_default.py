"""κ defaults to the graph's diameter for the centralised references (MAPPO-L, HAPPO, MACPO) when
the user passes no --kappa, and to 1 otherwise; the effective κ and its origin are recorded."""
import json
import subprocess
import sys

import pytest

from compose.launcher import RunConfig, validate


@pytest.mark.parametrize("algo, topology, expected", [
    ("happo", "line", 5), ("mappo-l", "", 3), ("macpo", "star", 2),  # diameters of line-6, ring-6, star-6
    ("dpo", "line", 1), ("mafocops", "line", 1), ("ippo", "", 1),
])
def test_default_kappa(algo, topology, expected):
    cfg = RunConfig(algo=algo, topology=topology)
    validate(cfg)
    assert cfg.kappa == expected
    assert ("diameter" in cfg.kappa_rule) == (algo in ("happo", "mappo-l", "macpo"))


def test_explicit_kappa_wins():
    cfg = RunConfig(algo="happo", topology="line", kappa=2)
    validate(cfg)
    assert (cfg.kappa, cfg.kappa_rule) == (2, "--kappa")


def test_run_records_the_effective_kappa(tmp_path):
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--algo", "happo", "--topology", "line",
                          "--steps", "40", "--envs", "2", "--inprocess", "--no-progress", "--run-dir", str(run_dir)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    config = json.loads((run_dir / "config.json").read_text())
    assert config["kappa"] == 5 and config["graph_diameter"] == 5 and "diameter" in config["kappa_rule"]
    for i in range(6):
        assert json.loads((run_dir / f"agent-{i}" / "learner_config.json").read_text())["kappa"] == 5
