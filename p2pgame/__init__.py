"""p2pgame: competitive equilibria of P2P active and reactive power markets under dynamic operating envelopes.

    import p2pgame
    scenario = p2pgame.load_scenario("scenarios/ieee13_day.toml")
    result = p2pgame.solve(scenario, method="centralized")
"""

from p2pgame.errors import ConvergenceError, InputError, SolverError

__all__ = ["InputError", "SolverError", "ConvergenceError", "load_scenario", "solve"]
__version__ = "0.1.0"


def load_scenario(path):
    """The `Scenario` in a TOML scenario file (docs/scenarios.md); InputError naming the file and the field."""
    from p2pgame.scenario.loader import load_scenario as load

    return load(path)


def solve(scenario, method=None, **options):
    """Run the market of `scenario` and certify it (see `p2pgame.market.solve`).

    Options as `p2pgame.market.solve` (reactive, doe_policy, max_iterations, progress: None,
    False, True or a callable). An outcome outside the certificate's tolerances is returned,
    not raised: check `result.certified` (the failing figures: `result.certificate.failures`).
    The result's tables are DataFrames and its `plot_*()` methods draw what the CLI draws.
    """
    from p2pgame.market import solve as market_solve

    return market_solve(scenario, method, **options)
