"""Market designs compared on one scenario (default: the IEEE 13-node day); see p2pgame.bench.compare.

Run: `.venv/bin/python benchmarks/compare.py [SCENARIO] [--out benchmarks/results]`.
Prints the table and writes compare.md, compare.json and the PNG plots into the output folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from p2pgame.bench.compare import NOTE, compare, save_plots, table
from p2pgame.scenario import scenario_or_default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", help="scenario file (default: the IEEE 13-node day)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="output folder")
    args = parser.parse_args()
    comparison = compare(scenario_or_default(args.scenario), progress=True)
    out = Path(args.out)
    paths = save_plots(comparison, out)
    text = f"Scenario `{comparison.scenario}`. {NOTE}\n\n{table(comparison)}\n"
    (out / "compare.md").write_text(text)
    (out / "compare.json").write_text(json.dumps(comparison.to_dict(), indent=1) + "\n")
    print(text)
    print("written:", ", ".join(str(p) for p in [*paths, out / "compare.md", out / "compare.json"]))


if __name__ == "__main__":
    main()
