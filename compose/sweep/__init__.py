"""`khop sweep`: a grid of runs — κ × communication budget × algorithm × seed, plus relay mode,
task, steps, envs and topology, each fixed or listed — with a combined report.

    OUT/sweep.json            the resolved spec (what was asked for)
    OUT/runs/<cell>/          one ordinary `khop run` directory per cell
    OUT/logs/<cell>.log       that run's console output
    OUT/report/sweep.csv      one row per cell: axes, final return and cost, bytes per agent-step …
    OUT/report/sweep.md       the same aggregated over seeds, with the return-vs-bytes Pareto frontier
    OUT/report/pareto.png     final return and cost against bytes per agent-step
    OUT/report/curves.png     learning curves per κ (mean over seeds), one column per budget

Cells run as `khop run` subprocesses, at most ``--jobs`` at a time (default 1: a distributed run
already uses every core of a 2-core machine; an ``--inprocess`` run uses one). A sweep is
resumable: a cell is finished when its run directory records ``run_status.json`` state
"finished" and a report; finished cells are skipped, any other cell directory (interrupted,
failed, half written) is removed and run again from scratch. A cell directory whose config.json
disagrees with the spec is an error, never silently reused. Ctrl-C stops the running cells (they
write their partial reports), writes the combined report of what is finished, and exits 130.

Final return / cost = the mean over the last quarter of a run's episodes (as `khop report`);
bytes per agent-step = wire bytes an agent sent per env step, averaged over agents.
"""
from __future__ import annotations

from .cli import cmd_sweep, register
from .report import aggregate, write_sweep_report
from .runner import Sweep, cell_state
from .spec import SweepError, SweepSpec

__all__ = ["Sweep", "SweepError", "SweepSpec", "aggregate", "cell_state", "cmd_sweep", "register",
           "write_sweep_report"]
