"""`khop compare` on real short runs: seeds of one configuration pooled into a mean with a 95 %
band, configurations labelled by what differs, the table's numbers from the runs' own summaries."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compose.cli import main
from compose.judge.compare import binned, group_band
from compose.judge.stats import t_quantile
from compose.report import summarize

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """DPO on coop-game at κ = 1 with seeds 0 and 1, and at κ = 0 with seed 0 (in process, 400 steps each)."""
    root = tmp_path_factory.mktemp("cmp")
    out = {}
    for name, args in (("k1s0", ["--seed", "0"]), ("k1s1", ["--seed", "1"]), ("k0s0", ["--kappa", "0"])):
        res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(root / name), "--inprocess",
                              "--no-progress", "--steps", "400", "--envs", "4", *args],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        out[name] = root / name
    return out


def test_seeds_pool_and_configs_are_labelled_by_what_differs(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", str(runs["k1s0"]), str(runs["k0s0"]), str(runs["k1s1"]), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "compare.md")
    rows = list(csv.DictReader(open(out / "compare.csv")))
    assert [(r["group"], r["seed"]) for r in rows] == [("dpo kappa=1", "0"), ("dpo kappa=1", "1"), ("dpo kappa=0", "0")]
    finals = [summarize(runs[n])["last_quarter_return"] for n in ("k1s0", "k1s1")]
    half = t_quantile(0.975, 1) * np.std(finals, ddof=1) / np.sqrt(2)
    md = (out / "compare.md").read_text()
    assert f"| dpo kappa=1 | 2 | none | {np.mean(finals):,.2f} ± {half:,.2f} | n/a |" in md
    k0 = summarize(runs["k0s0"])
    assert f"| dpo kappa=0 | 1 | none | {k0['last_quarter_return']:,.2f} | n/a | {k0['bytes_per_agent_step']:,.2f} |" in md
    for name in ("return.png", "cost.png", "bytes.png"):
        assert (out / name).read_bytes()[:8] == PNG


def test_binning_and_band() -> None:
    grid = np.array([0.0, 10.0, 20.0, 30.0])
    assert np.allclose(binned(np.array([0.0, 10.0, 15.0, 20.0]), np.array([1.0, 3.0, 5.0, 7.0]), grid)[:2], [2.0, 6.0])
    assert np.isnan(binned(np.array([5.0]), np.array([1.0]), grid)[2])
    mean, half = group_band([np.array([1.0, 2.0, np.nan]), np.array([3.0, np.nan, np.nan])])
    assert mean[0] == 2.0 and half[0] == pytest.approx(12.7062, abs=1e-3)  # t(1) · std(1, 3) / √2
    assert mean[1] == 2.0 and half[1] == 0.0 and np.isnan(mean[2])


def test_not_a_run_directory(tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"khop compare: error: {tmp_path} is not a run directory (no config.json)"
