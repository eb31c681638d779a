"""The synthetic dyadic corpus: espeak-ng speech, a speaker face driven by it, and stochastic listener reactions.

    reactdiff-trainer synth --out data/synth --clips 100 --seconds 30 --seed 0

Modules: `text` (sentences), `espeak` (the only external program), `speech` (monologues, audio cues),
`motion` (smooth motion primitives), `speaker` and `listener` (faces as pure functions of cues),
`corpus` (layout, splits, neighbour matrix, writing), `command` (the CLI).
"""

from trainer.synth.command import add_parser

__all__ = ["add_parser"]
