"""Active-speaker selection: the participant loudest over the last second, switching with hysteresis.

    meter.add("alice", t_s, samples)               # every received audio frame, any participant
    speaker = selector.update(meter.levels_db(now), now)

Pure pieces: `frame_power` (mean square of int16 or float samples), `LevelMeter` (sliding one-second energy per
participant), `choose_speaker` (hysteresis rule) and `ActiveSpeaker` (adds a minimum hold time).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

SILENCE_DB = -100.0  # level of a participant with no audio in the window


def frame_power(samples: NDArray[np.generic]) -> float:
    """Mean square of one audio frame, full scale = 1 (int16 samples are scaled by 1/32768)."""
    if samples.size == 0:
        return 0.0
    x = samples.astype(np.float64)
    if np.issubdtype(samples.dtype, np.integer):
        x /= 32768.0
    return float(np.mean(x * x))


def power_db(power: float) -> float:
    """dBFS of a mean-square power (a full-scale square wave is 0 dB), floored at SILENCE_DB."""
    return max(SILENCE_DB, 10.0 * math.log10(power)) if power > 0 else SILENCE_DB


class LevelMeter:
    """Per-participant audio energy over the last `window_s` seconds."""

    def __init__(self, window_s: float = 1.0) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.window_s = window_s
        self._frames: dict[str, deque[tuple[float, float, int]]] = {}  # id -> (t_s, power, samples)

    def add(self, participant: str, t_s: float, samples: NDArray[np.generic]) -> None:
        """Record one frame of `participant`'s audio received at `t_s` (seconds, any monotonic clock)."""
        self._frames.setdefault(participant, deque()).append((t_s, frame_power(samples), samples.size))

    def remove(self, participant: str) -> None:
        self._frames.pop(participant, None)

    def levels_db(self, now_s: float) -> dict[str, float]:
        """dBFS of every known participant over (now - window, now]; SILENCE_DB if nothing arrived."""
        levels = {}
        for participant, frames in self._frames.items():
            while frames and frames[0][0] <= now_s - self.window_s:
                frames.popleft()
            energy = sum(p * n for _, p, n in frames)
            count = sum(n for _, _, n in frames)
            levels[participant] = power_db(energy / count) if count else SILENCE_DB
        return levels


def choose_speaker(current: str | None, levels_db: Mapping[str, float], *, margin_db: float = 6.0) -> str | None:
    """The participant to follow: keep `current` unless another is louder by more than `margin_db`.

    With no current speaker (none yet, or they left) the loudest is chosen; ties go to the first id in sort order.
    """
    if not levels_db:
        return None
    loudest = min(levels_db, key=lambda p: (-levels_db[p], p))
    if current is None or current not in levels_db:
        return loudest
    if levels_db[loudest] > levels_db[current] + margin_db:
        return loudest
    return current


@dataclass
class ActiveSpeaker:
    """`choose_speaker` plus a minimum time between switches (so two equally loud people do not flap)."""

    margin_db: float = 6.0
    """How much louder (dB over the last second) someone must be to take over."""
    hold_s: float = 1.0
    """Seconds after a switch during which no other switch happens (a speaker who leaves is replaced at once)."""
    current: str | None = None
    switched_at: float = -math.inf

    def update(self, levels_db: Mapping[str, float], now_s: float) -> str | None:
        """The speaker to follow at `now_s`, given everyone's current level."""
        if self.current in levels_db and now_s - self.switched_at < self.hold_s:
            return self.current
        chosen = choose_speaker(self.current, levels_db, margin_db=self.margin_db)
        if chosen != self.current:
            self.current, self.switched_at = chosen, now_s
        return chosen
