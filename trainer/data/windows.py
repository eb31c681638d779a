"""Training windows: W aligned frames cut from a sample (faces, emotions and the matching 640·W audio samples)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from renderer.face import FPS
from trainer.data.loaders import SAMPLES_PER_FRAME, DatasetError
from trainer.data.react import ReactDataset, Sample


@dataclass(frozen=True)
class Window:
    """Frames [start, start + W) of sample `index`."""

    index: int
    start: int  # first frame
    speaker_face: NDArray[np.float32]  # (W, 58)
    speaker_emotion: NDArray[np.float32]  # (W, 25)
    speaker_audio: NDArray[np.float32]  # (W * 640,) 16 kHz
    listener_face: NDArray[np.float32]  # (W, 58)
    listener_emotion: NDArray[np.float32]  # (W, 25)


def cut_window(sample: Sample, start: int, window: int) -> Window:
    """Frames [start, start + window) of `sample`, audio cut on the same 40 ms frame boundaries."""
    if not 0 <= start <= sample.frames - window:
        raise ValueError(
            f"window [{start}, {start + window}) does not fit in sample {sample.index} of {sample.frames} frames"
        )
    frames = slice(start, start + window)
    audio = slice(start * SAMPLES_PER_FRAME, (start + window) * SAMPLES_PER_FRAME)
    return Window(
        index=sample.index,
        start=start,
        speaker_face=sample.speaker_face[frames],
        speaker_emotion=sample.speaker_emotion[frames],
        speaker_audio=sample.speaker_audio[audio],
        listener_face=sample.listener_face[frames],
        listener_emotion=sample.listener_emotion[frames],
    )


def random_windows(dataset: ReactDataset, window: int, count: int, rng: np.random.Generator) -> Iterator[Window]:
    """`count` random windows of `window` frames: a sample drawn uniformly, then a start uniformly within it.

    Every sample must hold at least `window` frames; that is checked here, before the first window.
    """
    if window < 1 or count < 0:
        raise ValueError(f"window must be >= 1 frame and count >= 0, got window={window}, count={count}")
    lengths = np.array([dataset.frames(i) for i in range(len(dataset))])
    shortest = int(np.argmin(lengths))
    if lengths[shortest] < window:
        speaker, _ = dataset.clips(shortest)
        raise DatasetError(
            f"a window of {window} frames ({window / FPS:.2f} s) is longer than sample {shortest} "
            f"({speaker.clip_id}: {lengths[shortest]} frames); use window <= {lengths[shortest]}"
        )
    return _draw(dataset, lengths, window, count, rng)


def _draw(
    dataset: ReactDataset, lengths: NDArray[np.int_], window: int, count: int, rng: np.random.Generator
) -> Iterator[Window]:
    for _ in range(count):
        index = int(rng.integers(len(dataset)))
        start = int(rng.integers(lengths[index] - window + 1))
        yield cut_window(dataset[index], start, window)
