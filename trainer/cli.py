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


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean the input is wrong, not the code: each names the file or option at fault.

    They are printed as one line (exit 2); any other exception, a ValueError from a bug say, keeps its traceback.
    """
    from engine.model_dir import ModelDirError
    from engine.sources.base import SourceError
    from renderer.avatar import AvatarError
    from renderer.sinks import SinkError
    from trainer.baselines import BaselineInputError
    from trainer.config import ConfigError
    from trainer.data.loaders import DatasetError
    from trainer.metrics import MetricInputError
    from trainer.synth.corpus import SynthConfigError
    from trainer.synth.portraits import PortraitError

    return (UserError, FileNotFoundError, ConfigError, DatasetError, ModelDirError, MetricInputError,
            BaselineInputError, SynthConfigError, PortraitError, AvatarError, SourceError, SinkError)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reactdiff-trainer",
        description="Build data for, train, score and export ReactDiff listener-reaction models.",
    )
    add_verbose(parser, default=False)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    for sub in subparsers.choices.values():
        add_verbose(sub, default=argparse.SUPPRESS)  # absent after COMMAND: keeps what was given before it
    return parser


def add_verbose(parser: argparse.ArgumentParser, default: object) -> None:
    """-v/--verbose, on the main parser and on every sub-command's (so it works before or after COMMAND)."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log debug messages")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args))
    except user_errors() as exc:
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
