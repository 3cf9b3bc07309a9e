"""Built-in feeders and load_feeder."""

import pytest

from p2pgame.errors import InputError
from p2pgame.network import builtin_feeders, load_feeder
from p2pgame.network.registry import IEEE13_DSS, THREE_PHASE_MARK, three_phase_dss
from p2pgame.network.threephase import PhaseFeeder


def test_builtin_list_matches_the_feeders():
    listed = {name: n for name, n, source in builtin_feeders() if not source.startswith(THREE_PHASE_MARK)}
    assert set(listed) == {"ieee13", "case33bw", "cigre_lv", "mv_oberrhein", "kerber_landnetz_kabel_1",
                           "kerber_landnetz_freileitung_1", "ieee_european_lv_asymmetric"}
    for name, n in listed.items():
        feeder = load_feeder(name)
        assert (feeder.name, feeder.n) == (name, n)


def test_phase_feeders_are_listed_as_three_phase():
    listed = {name: n for name, n, source in builtin_feeders() if source.startswith(THREE_PHASE_MARK)}
    assert set(listed) == {"ieee13-3ph", "eulv-3ph"}
    for name, n in listed.items():
        feeder = load_feeder(name)
        assert isinstance(feeder, PhaseFeeder) and (feeder.name, feeder.n) == (name, n)


def test_paths_load_through_their_importer():
    assert load_feeder(IEEE13_DSS).nodes == load_feeder("ieee13").nodes
    assert three_phase_dss("ieee13") == IEEE13_DSS


@pytest.mark.parametrize(
    "name, message",
    [
        ("ieee14", "unknown feeder 'ieee14': give a built-in name \\(ieee13, case33bw, cigre_lv, mv_oberrhein, kerber"),
        ("missing.dss", "missing.dss: no such feeder file \\(built-in feeders: ieee13"),
        ("missing.json", "missing.json: no such feeder file"),
    ],
)
def test_unknown_feeders_list_the_valid_names(name, message):
    with pytest.raises(InputError, match=message):
        load_feeder(name)


def test_only_dss_feeders_have_a_three_phase_model():
    with pytest.raises(InputError, match="feeder case33bw has no three-phase model"):
        three_phase_dss("case33bw")
