"""The allocation policies, one module each, behind one interface.

A policy is a function `policy(problem: EnvelopeProblem, **options) -> Box` returning
`(N, T)` bounds inside the customers' ranges that satisfy every robust LinDistFlow row.
"""

from __future__ import annotations

import inspect
from typing import Callable

from p2pgame.doe.policies.ac_validated import ac_validated
from p2pgame.doe.policies.best_split import best_split
from p2pgame.doe.policies.equal import equal
from p2pgame.doe.policies.fair import fair
from p2pgame.doe.policies.max_total import max_total
from p2pgame.doe.policies.p_first import p_first
from p2pgame.doe.policies.proportional import proportional
from p2pgame.doe.policies.welfare import welfare
from p2pgame.doe.problem import Box, EnvelopeProblem
from p2pgame.errors import InputError

POLICIES: dict[str, Callable[..., Box]] = {
    "max-total": max_total,
    "equal": equal,
    "proportional": proportional,
    "fair": fair,
    "welfare": welfare,
    "ac-validated": ac_validated,
    "p-first": p_first,
    "best-split": best_split,
}


def check_policy(name: str, options: dict) -> Callable[..., Box]:
    """The policy function, after checking its name and options (InputError naming what is wrong)."""
    if name not in POLICIES:
        raise InputError(f"unknown DOE policy {name!r}; valid policies: {', '.join(POLICIES)}")
    policy = POLICIES[name]
    try:
        inspect.signature(policy).bind(None, **options)
    except TypeError as exc:
        raise InputError(f"DOE policy {name}: {exc}") from None
    return policy


def call_policy(name: str, problem: EnvelopeProblem, options: dict) -> Box:
    """Run policy `name` with `options` on `problem`."""
    return check_policy(name, options)(problem, **options)
