"""A constrained learner learns its constraint through real processes: DEC-MAPPO-L on the Safety-
Gymnasium Swimmer velocity task (`khop run`, an envserver and two agentd processes, default
hyperparameters, seed fixed).

Why the Swimmer: its cost threshold is 0.04891 m/s, which a random policy exceeds on about a third
of its steps, so the first episodes cost ≈ 380 against a limit of 25 and the constraint is binding
from the first update. Why the assertions hold for the right reason (measured, 48k env steps, E = 4,
2026-12-05): DEC-MAPPO-L's mean episode cost fell from 260 (first quarter of the episodes) to 123
(last quarter) with seed 0 and from 304 to 81 with seed 1, while unconstrained IPPO with seed 0
went from 307 to 275 (its return rising 26 → 39). So the drop of more than 40 % asked for below
is one that learning to swim without the constraint did not give (IPPO: 11 %); the test fails if
the multiplier stops acting on the policy, and the last test trains IPPO on the same seed to check
that the constrained run ends below it. Takes about 2.5 minutes on two busy cores.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

TASK, STEPS, ENVS, SEED = "safe-velocity-swimmer-2x1", 48_000, 4, 0
LIMIT = 25.0  # the task's per-episode cost limit (SafePO --safety-bound)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(d: Path, algo: str) -> Path:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--task", TASK, "--algo", algo,
                          "--steps", str(STEPS), "--envs", str(ENVS), "--seed", str(SEED), "--run-dir", str(d),
                          "--no-progress"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    print(f"{TASK} {algo} {STEPS} steps: {time.monotonic() - t0:.0f} s wall")
    cfg = json.loads((d / "config.json").read_text())
    assert not cfg["inprocess"] and cfg["cost_limits"] == [LIMIT]
    return d


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("swimmer") / "run", "dec-mappo-l")


def episode_costs(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    episodes = rows(run_dir / "envserver" / "episodes.jsonl")
    return (np.array([e["env_step"] for e in episodes], dtype=float),
            np.array([e["episode_cost"] for e in episodes], dtype=float))


@pytest.mark.parametrize("agent", [0, 1])
def test_lambda_rises_on_every_update_whose_cost_is_over_the_limit(run_dir, agent):
    metrics = rows(run_dir / f"agent-{agent}" / "metrics.jsonl")
    lam = np.array([r["lambda0"] for r in metrics])
    est = np.array([r["episode_cost0_est"] for r in metrics])
    gap = np.array([r["cost_gap0"] for r in metrics])
    np.testing.assert_allclose(gap, est - LIMIT, rtol=1e-9)
    over = gap > 0
    assert over.mean() > 0.9, f"the constraint should bind on most updates here, got {over.mean():.2f}"
    before = np.concatenate([[0.001], lam[:-1]])  # λ starts at lambda_init 0.001 (omnisafe PPOLag)
    rose = lam > before
    assert rose[over].all(), f"λ fell on over-limit updates {np.flatnonzero(over & ~rose).tolist()}"
    assert lam[-1] > 1.0, f"λ ended at {lam[-1]:.3f} after {len(lam)} over-limit updates"


def test_the_episode_cost_trends_down(run_dir):
    step, cost = episode_costs(run_dir)
    assert len(cost) == STEPS // 1000  # 1000-step episodes, none terminates early
    q = len(cost) // 4
    first, last = cost[:q].mean(), cost[-q:].mean()
    slope = np.polyfit(step, cost, 1)[0]
    print(f"episode cost: first quarter {first:.1f}, last quarter {last:.1f}, slope {slope * 1000:.2f} per 1k steps")
    assert first > 4 * LIMIT  # the constraint is violated at the start (a random policy's speed)
    assert slope < 0 and last < 0.6 * first, (first, last, slope)


def test_the_constrained_run_ends_below_the_unconstrained_one(run_dir, tmp_path):
    """Same task, seed and budget without a constraint (IPPO): its last-quarter episode cost stays
    higher than DEC-MAPPO-L's (measured 2026-12-05: DEC-MAPPO-L 257 → 122, IPPO ending at 275)."""
    _, constrained = episode_costs(run_dir)
    _, free = episode_costs(train(tmp_path / "ippo", "ippo"))
    q = len(constrained) // 4
    assert constrained[-q:].mean() < free[-q:].mean(), (constrained[-q:].mean(), free[-q:].mean())
