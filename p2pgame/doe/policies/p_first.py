"""`p-first`: the P envelopes of trading without reactive power, then the largest Q envelopes beside them."""

from __future__ import annotations

from p2pgame.doe.policies.max_total import largest_total
from p2pgame.doe.problem import Box, EnvelopeProblem
from p2pgame.errors import InputError

BASES = ("max-total", "equal", "proportional", "fair")
"""Policies whose P envelopes `p-first` can keep (those that need nothing but the network and the customers)."""


def p_first(problem: EnvelopeProblem, *, base: str = "max-total", **base_options) -> Box:
    """Policy `base`'s P-only envelopes, kept as they are, plus the largest total Q width that still fits.

    First `base` runs on the assignment without reactive trading (each customer's q fixed
    at its value without it, `Agent.reactive_without_trading`), which gives exactly the P
    boxes of `assign(base, ..., reactive=False)`. Then, with those P boxes held, each
    period's Q boxes grow from the fixed q towards the customers' ranges by the LP of
    `max-total` on the Q widths alone. Every P-only operation stays inside the boxes, so
    the P and Q market can do all that the P-only market of `base` can: its welfare is at
    least as high. Without reactive envelopes this is `base` itself. `base_options` go
    to `base`.
    """
    from p2pgame.doe.policies import call_policy

    if base not in BASES:
        raise InputError(f"p-first: base policy {base!r} is not one of {', '.join(BASES)}")
    p_only = problem.without_q_trading()
    problem.step("p-first: P envelopes", 0, 2)
    box = call_policy(base, p_only, base_options)
    if not problem.reactive:
        return box
    problem.step("p-first: Q envelopes", 1, 2)
    fixed_q = p_only.capability
    held = Box(box.pmin_kw, box.pmax_kw, fixed_q.qmin_kvar, fixed_q.qmax_kvar)
    result = largest_total(problem, held, hold_p=True)
    problem.step("p-first: Q envelopes", 2, 2)
    return result
