"""Feeders and power flows: the Feeder data model, LinDistFlow, the AC branch flow, and the
OpenDSS / pandapower bridges with the three-phase -> single-phase reduction."""

from p2pgame.network.feeder import Feeder
from p2pgame.network.powerflow import PowerFlowResult
from p2pgame.network.registry import builtin_feeders, load_feeder

__all__ = ["Feeder", "PowerFlowResult", "load_feeder", "builtin_feeders"]
