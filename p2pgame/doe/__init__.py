"""Dynamic operating envelopes: robust LinDistFlow constraints and the operator's allocation policies.

`assign(policy, feeder, customers, periods, dt_h, ...) -> Envelopes` is the entry point;
`POLICIES` names the policies; `worst_case`, `sample_check` and `ac_worst_case` check a
set of envelopes against LinDistFlow (corners, random points) and the AC power flow;
`worst_case_report` gives both for a feeder, and `export_dss` writes the OpenDSS corners.
"""

from p2pgame.doe.ac import ac_worst_case, corner_injections
from p2pgame.doe.assign import assign
from p2pgame.doe.envelopes import Envelopes
from p2pgame.doe.policies import POLICIES
from p2pgame.doe.problem import Box, EnvelopeProblem
from p2pgame.doe.report import export_dss, worst_case_report
from p2pgame.doe.robust import NetworkArrays, RobustRows, WorstCase, sample_check, worst_case

__all__ = [
    "POLICIES",
    "Box",
    "EnvelopeProblem",
    "Envelopes",
    "NetworkArrays",
    "RobustRows",
    "WorstCase",
    "ac_worst_case",
    "assign",
    "corner_injections",
    "export_dss",
    "sample_check",
    "worst_case",
    "worst_case_report",
]
