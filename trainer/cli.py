"""`reactdiff-trainer`: build data, train, score and export ReactDiff models.

    reactdiff-trainer synth --out data/synth --clips 100 --seconds 30 --seed 0
    reactdiff-trainer --help

Each sub-command lives in its own module and registers itself through `add_parser(subparsers)`;
its handler gets the parsed arguments and returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from engine.interrupt import Interrupted

# Modules that define a sub-command (each has `add_parser`).
COMMAND_MODULES: tuple[str, ...] = (
    "trainer.synth",
    "trainer.synth.clip",
    "trainer.track_command",
    "trainer.fit_command",
    "trainer.export",
    "trainer.evaluate",
    "trainer.sample_command",
    "trainer.metrics_command",
)


class UserError(Exception):
    """A mistake the user can fix (bad path, bad option); printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reactdiff-trainer",
        description="Build data for, train, score and export ReactDiff listener-reaction models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args))
    except (UserError, FileNotFoundError, ValueError) as exc:
        print(f"reactdiff-trainer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"reactdiff-trainer {args.command}: interrupted" + (f": {exc}" if str(exc) else ""), file=sys.stderr)
        return exc.exit_status if isinstance(exc, Interrupted) else 130


if __name__ == "__main__":
    # Run through the imported module so `trainer.cli.UserError` raised by sub-commands is this module's class
    # (`python -m trainer.cli` and torchrun would otherwise load this file twice, as __main__ and trainer.cli).
    from trainer.cli import main as package_main

    sys.exit(package_main())
