"""Env steps per second of `khop run` (real processes, real sockets), per task.

Start-up (torch import, joining) is excluded: the rate is measured from the envserver's first
STEP to its last, read from its status file. Each setting runs ``--repeats`` times alternating
tasks, because this machine's speed drifts by up to 2x within minutes (PERF.md).

    python bench/run_speed.py [--steps 20000] [--envs 8] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from compose.launcher import Launch, RunConfig

SETTINGS = [
    ("coop-game", "dpo", 1),
    ("safe-halfcheetah-2x3", "dpo", 1),
]


def one_run(task: str, algo: str, kappa: int, steps: int, envs: int, root: Path) -> dict:
    run_dir = root / f"{task}-{len(list(root.iterdir()))}"
    cfg = RunConfig(task=task, algo=algo, kappa=kappa, steps=steps, envs=envs, run_dir=run_dir, progress=False)
    code = Launch(cfg).run()
    status = json.loads((run_dir / "envserver" / "status.json").read_text())
    updates = sum(len((p / "metrics.jsonl").read_text().splitlines()) for p in run_dir.glob("agent-*"))
    seconds = status["time"] - status["started_at"]
    return {"code": code, "steps_per_s": status["env_step"] / seconds, "seconds": seconds, "updates": updates}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    results: dict[tuple, list[dict]] = {s: [] for s in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for setting in SETTINGS:
                results[setting].append(one_run(*setting, args.steps, args.envs, Path(tmp)))
    print(f"| task | algo | κ | E | env steps/s (median of {args.repeats}, incl. updates) | runs |")
    print("|---|---|---|---|---|---|")
    for (task, algo, kappa), runs in results.items():
        rates = [r["steps_per_s"] for r in runs]
        print(f"| {task} | {algo} | {kappa} | {args.envs} | {statistics.median(rates):,.0f} | "
              f"{', '.join(f'{r:,.0f}' for r in rates)} |")


if __name__ == "__main__":
    main()
