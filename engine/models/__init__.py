"""The model shipped with the package: `engine/models/base/` (an exported model directory, with its evaluation).

Reproduce it with the commands in configs/base.toml, then `reactdiff-trainer export --run runs/base
--out engine/models/base` and `reactdiff-trainer eval --run runs/base --data data/synth100 --json
engine/models/base/eval.json`.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).with_name("base")


def default_model_dir() -> Path | None:
    """The packaged default model directory, or None when this installation carries none."""
    return DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / "manifest.json").is_file() else None
