"""Market participants: the Agent interface (one Pyomo block each), the built-in agents, prices and envelopes."""

from p2pgame.agents.base import Agent, Capability, Response
from p2pgame.agents.ev import EVCharger
from p2pgame.agents.model import AgentModel, Box, Prices
from p2pgame.agents.params import AgentSpec
from p2pgame.agents.prosumer import Prosumer
from p2pgame.agents.templates import compile_population
from p2pgame.agents.upstream import UpstreamGrid

__all__ = [
    "Agent", "AgentModel", "AgentSpec", "Box", "Capability", "EVCharger", "Prices", "Prosumer", "Response", "UpstreamGrid",
    "compile_population",
]
