"""`p2pgame feeders` lists every built-in feeder, the phase feeders marked three-phase."""

from p2pgame.cli import main


def test_feeders_lists_the_phase_feeders_as_three_phase(capsys):
    assert main(["feeders"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert {"ieee13", "case33bw", "ieee13-3ph", "eulv-3ph"} <= set(rows)
    assert "three-phase: " in rows["ieee13-3ph"] and "three-phase: " in rows["eulv-3ph"]
    assert "three-phase" not in rows["ieee13"]
