"""`p2pgame plot DIR`: redraw the plots of a results folder from its CSV and JSON files."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="redraw the plots of a results folder",
        description="Read summary.json and the CSV tables that `p2pgame solve --out DIR` wrote and draw "
        "DIR/plots/*.png again (replacing the folder plots/ as a whole).",
    )
    p.add_argument("dir", metavar="DIR", help="results folder written by p2pgame solve --out")
    p.set_defaults(func=run)


def run(args) -> int:
    from p2pgame.results.plots import plot_all
    from p2pgame.results.writers import PLOTS_DIR, read_results, replace_atomically

    tables = read_results(args.dir)
    target = Path(args.dir) / PLOTS_DIR
    written = []
    replace_atomically(target, lambda tmp: written.extend(plot_all(tables, tmp)))
    print(f"{len(written)} plots written to {target}: {', '.join(p.name for p in written)}")
    return 0
