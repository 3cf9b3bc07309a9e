"""Scenarios: the `Scenario` a market runs on, TOML scenario files, and the default IEEE 13-node day."""

from p2pgame.scenario.default import default_scenario
from p2pgame.scenario.loader import load_scenario
from p2pgame.scenario.model import MarketSettings, Scenario

__all__ = ["Scenario", "MarketSettings", "load_scenario", "default_scenario", "scenario_or_default"]


def scenario_or_default(path: str | None) -> Scenario:
    """The scenario in the file at `path`, or the default IEEE 13-node day when there is none (the CLI's rule)."""
    return default_scenario() if path is None else load_scenario(path)
