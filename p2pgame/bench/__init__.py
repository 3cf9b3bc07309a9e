"""Benchmarks: market designs compared on one scenario, and the solvers' scaling in the number of prosumers.

- `compare.compare(scenario)`: active-only vs active+reactive trading, every DOE policy,
  the DOE market vs locational prices vs a network-blind market (`p2pgame bench compare`).
- `scaling.run_scaling(sizes, ...)`: time, rounds and memory of the Nash solvers and the
  centralised solve on synthetic feeders (`p2pgame bench scaling`).
- `synthetic.synthetic_scenario(n, periods)`: a market day for n house prosumers.
"""

from p2pgame.bench.compare import compare
from p2pgame.bench.scaling import run_scaling
from p2pgame.bench.synthetic import synthetic_scenario

__all__ = ["compare", "run_scaling", "synthetic_scenario"]
