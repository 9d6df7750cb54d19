"""One in-process training run, exactly what `khop run --inprocess` does, through the library API
(``compose.run.launcher.Launch(RunConfig(..., inprocess=True)).run()``) so the reproduction scripts
do not depend on the CLI's argument parsing."""
from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--task", required=True)
    p.add_argument("--algo", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--kappa", type=int, default=1)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    a = p.parse_args(argv)
    from compose.run.launcher import Launch
    from compose.run.config import RunConfig

    cfg = RunConfig(task=a.task, algo=a.algo, seed=a.seed, steps=a.steps, envs=a.envs, kappa=a.kappa,
                    run_dir=a.run_dir, overrides=a.overrides, progress=False, inprocess=True)
    return Launch(cfg).run()


if __name__ == "__main__":
    raise SystemExit(main())
