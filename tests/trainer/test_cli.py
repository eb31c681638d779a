"""`reactdiff-trainer` itself: which errors are one line, where -v goes."""

from __future__ import annotations

import pytest

from trainer import fit_command
from trainer.cli import build_parser, main
from trainer.config import ConfigError

FIT = ["fit", "--config", "c.toml", "--data", "d", "--out", "o"]


def one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"reactdiff-trainer {command}: error: "), lines
    return lines[0]


def test_a_bug_keeps_its_traceback_while_a_mistake_is_one_line(monkeypatch, capsys):
    # every ValueError was turned into "error: ..." and exit 2, a bug's included
    def load_config(path):
        raise ValueError("operands could not be broadcast together with shapes (4,) (3,)")

    monkeypatch.setattr(fit_command, "load_config", load_config)
    with pytest.raises(ValueError, match="could not be broadcast"):
        main(FIT)

    def missing(path):
        raise ConfigError(f"config file {path} does not exist")

    monkeypatch.setattr(fit_command, "load_config", missing)
    assert main(FIT) == 2
    assert "config file c.toml does not exist" in one_line_error(capsys, "fit")


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        ([*FIT, "--track-workers", "0"], "--track-workers 0: give 1 or more"),
        (["sample", "--run", "r", "--data", "d", "--out", "o.mp4", "--steps", "0"], "--steps 0: use 1 to 50"),
        (["build-engine", "--model", "m", "--max-batch", "0"], "--max-batch 0"),
    ],
)
def test_options_that_reached_a_library_value_error_are_refused_first(args, phrase, capsys):
    assert main(args) == 2
    assert phrase in one_line_error(capsys, args[0])


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [([*FIT, "-v"], True), (["-v", *FIT], True), ([FIT[0], "--verbose", *FIT[1:]], True), (FIT, False)],
)
def test_verbose_goes_before_or_after_the_command(argv, verbose):
    # `fit ... -v` was "unrecognized arguments: -v"
    assert build_parser().parse_args(argv).verbose is verbose
