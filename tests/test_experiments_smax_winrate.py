"""experiments/smax_winrate.py: the win-rate summary from cell records (first and last tenth of the
steps, binned curves), and the refusal of a task that is not a battle."""
import json

import pytest

from experiments import smax_winrate
from experiments.common import Cell, record_path

SCRIPT = smax_winrate  # whose RESULTS the conftest sandbox redirects


def test_first_and_last_tenth_win_rates_from_the_records(sandbox):
    cells = [Cell("smax-3m", "ippo", s, 1000, 8) for s in range(2)]
    for cell, late in zip(cells, ([1, 1, 0, 1], [0, 1, 1, 1])):
        path = record_path(cell, smax_winrate.GROUP)
        path.parent.mkdir(parents=True, exist_ok=True)
        steps = [50, 80, 400] + [950] * 4  # two episodes in the first tenth, four in the last
        path.write_text(json.dumps({"steps": steps, "won": [0, 0, 1] + late, "returns": [0.0] * 7,
                                    "code_version": "khop test"}))
    rec = smax_winrate.summarise(cells)["algos"]["ippo"]
    assert rec["first"] == [0.0, 0.0] and rec["last"] == [0.75, 0.75] and rec["episodes"] == [7, 7]
    assert rec["won"].shape == (2, smax_winrate.BINS) and rec["won"][:, -1].tolist() == [0.75, 0.75]


def test_a_task_that_is_not_a_battle_is_refused(capsys):
    with pytest.raises(SystemExit) as err:
        smax_winrate.main(["--task", "coop-game", "--report-only"])
    assert err.value.code == 2 and "choose an SMAX battle" in capsys.readouterr().err
