"""Scenarios: the `Scenario` a market runs on, TOML scenario files, and the default IEEE 13-node day."""

from p2pgame.scenario.default import default_scenario
from p2pgame.scenario.loader import load_scenario
from p2pgame.scenario.model import MarketSettings, Scenario

__all__ = ["Scenario", "MarketSettings", "load_scenario", "default_scenario"]
