"""Running a sweep's cells as `khop run` subprocesses, resumably."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from envserver.options import names, to_argv

from ..run.config import LaunchError, RunConfig, validate
from .report import write_sweep_report
from .spec import Cell, SweepError, SweepSpec


def run_command(cfg: RunConfig) -> list[str]:
    """The `khop run` command line that runs one cell: the cell's RunConfig as its own arguments."""
    return [sys.executable, "-m", "compose.cli", "run", *to_argv(cfg)]


# --------------------------------------------------------------------------- resume


#: what may differ between a cell's recorded run and the sweep's wish: where and how it is watched
#: (supervision, keys), and the topology (recorded resolved: the task's default graph by name)
_NOT_MATCHED = ("run_dir", "progress", "restart", "max_restarts", "curve", "topology")


def cell_state(run_dir: Path, cfg: RunConfig) -> str:
    """"absent", "finished", or "unfinished"; raises SweepError if the directory holds another run."""
    config_file = run_dir / "config.json"
    if not run_dir.exists():
        return "absent"
    if config_file.exists():
        try:
            recorded = json.loads(config_file.read_text())
        except ValueError:
            return "unfinished"
        want = asdict(cfg)
        for key in names(RunConfig):
            if key not in _NOT_MATCHED and key in recorded and recorded[key] != want[key]:
                raise SweepError(f"{run_dir} holds a run with {key}={recorded[key]!r}, but this sweep asks for "
                                 f"{want[key]!r}; use another --out")
    try:
        status = json.loads((run_dir / "run_status.json").read_text())
    except (OSError, ValueError):
        return "unfinished"
    if status.get("state") == "finished" and (run_dir / "report" / "summary.md").exists():
        return "finished"
    return "unfinished"


# --------------------------------------------------------------------------- running


class Sweep:
    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.out = Path(spec.out)
        self.cells = spec.cells()
        self.interrupted = False
        self.configs = {c.name: c.run_config(spec, self.out / "runs" / c.name) for c in self.cells}
        for name, cfg in self.configs.items():  # every cell is checked before anything runs
            try:
                validate(cfg)
            except LaunchError as err:
                raise SweepError(f"cell {name}: {err}") from None

    def run(self, dry_run: bool = False) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "sweep.json").write_text(json.dumps(self.spec.to_json(), indent=1))
        states = {c.name: cell_state(self.out / "runs" / c.name, self.configs[c.name]) for c in self.cells}
        pending = [c for c in self.cells if states[c.name] != "finished"]
        done = len(self.cells) - len(pending)
        print(f"khop sweep: {len(self.cells)} cells, {done} finished (skipped), {len(pending)} to run, "
              f"{self.spec.jobs} at a time -> {self.out}", flush=True)
        if dry_run:
            for c in pending:
                print("  " + " ".join(run_command(self.configs[c.name])))
            return 0
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def interrupt(signum: int, _frame: object) -> None:
            self.interrupted = True
        for sig in previous:
            signal.signal(sig, interrupt)
        failed = []
        try:
            failed = self._run_cells(pending, states)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        report_dir = write_sweep_report(self.out, self.cells)
        print(f"khop sweep: report in {report_dir}", flush=True)
        if self.interrupted:
            print("khop sweep: interrupted; rerun the same command to resume", file=sys.stderr)
            return 130
        if failed:
            print(f"khop sweep: {len(failed)} cell(s) failed: {', '.join(failed)}; see {self.out / 'logs'}",
                  file=sys.stderr)
            return 1
        return 0

    def _run_cells(self, pending: list[Cell], states: dict[str, str]) -> list[str]:
        running: dict[str, tuple[subprocess.Popen, Any, float]] = {}
        failed: list[str] = []
        queue = list(pending)
        logs = self.out / "logs"
        logs.mkdir(exist_ok=True)
        n_total, n_done = len(pending), 0
        try:
            while (queue or running) and not self.interrupted:
                while queue and len(running) < self.spec.jobs and not self.interrupted:
                    cell = queue.pop(0)
                    run_dir = self.out / "runs" / cell.name
                    if states[cell.name] == "unfinished":
                        print(f"  {cell.name}: removing the unfinished run and starting again", flush=True)
                        shutil.rmtree(run_dir)
                    log = open(logs / f"{cell.name}.log", "wb")
                    proc = subprocess.Popen(run_command(self.configs[cell.name]), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                    running[cell.name] = (proc, log, time.monotonic())
                    print(f"  started {cell.name}", flush=True)
                time.sleep(0.2)
                for name, (proc, log, started) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    log.close()
                    del running[name]
                    n_done += 1
                    ok = proc.returncode == 0
                    if not ok and proc.returncode != 130:
                        failed.append(name)
                    print(f"  [{n_done}/{n_total}] {name}: {'finished' if ok else f'exit {proc.returncode}'} "
                          f"in {time.monotonic() - started:.0f} s", flush=True)
        finally:
            for proc, _log, _ in running.values():  # interrupted: let every cell stop cleanly
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for name, (proc, log, _) in running.items():
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
        return failed

