"""The `p2pgame` command: parse arguments, call the library, print.

Each sub-command lives in its own module with `register(subparsers)`, which adds
its parser and sets `func` to a function `(args) -> int`. Errors become one line
on stderr: exit code 2 for bad input or a file that cannot be read or written
(OSError), 1 for solver trouble, no traceback unless `--debug` (accepted before
or after the sub-command). A reader that stops early (`p2pgame solve | head`) ends
the command quietly with exit code 141, as a process killed by SIGPIPE reports it
(the convention of `cat` and the other Unix tools): the rest of the output goes to
the null device.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from p2pgame import __version__
from p2pgame.errors import InputError, SolverError

BROKEN_PIPE = 141
"""Exit code when stdout's reader has gone: 128 + SIGPIPE, what a shell reports for `cat` in the same case."""

COMMANDS = ["feeders", "powerflow", "doe", "solve", "scenario", "plot", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pgame",
        description="P2P active and reactive power markets under dynamic operating envelopes.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"p2pgame {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"p2pgame.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"p2pgame.cli.{name}":
                raise
            continue
        module.register(sub)
    for command in sub.choices.values():  # `--debug` also after the sub-command
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is seen as one
        return code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except InputError as exc:
        if args.debug:
            raise
        print(f"p2pgame: error: {exc}", file=sys.stderr)
        return 2
    except SolverError as exc:
        if args.debug:
            raise
        print(f"p2pgame: solver error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if args.debug:
            raise
        print(f"p2pgame: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("p2pgame: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
