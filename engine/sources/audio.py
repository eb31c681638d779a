"""Audio of any rate, layout and sample format → mono float32 at 16 kHz (or another rate), one resampler per stream.

The trainer's file loader and every live source call `MonoResampler`, so training and serving hear the
same samples. Channels are averaged here rather than by libswresample, whose stereo→mono matrix scales
each channel by 0.707: a tone present in both channels keeps its amplitude.
"""

from __future__ import annotations

import logging

import av
import numpy as np
from numpy.typing import NDArray

from engine.features import SAMPLE_RATE

log = logging.getLogger(__name__)

_EMPTY = np.zeros(0, dtype=np.float32)


def _mono(frame: av.AudioFrame) -> NDArray[np.float32]:
    # packed float from the resampler: (1, samples * channels), channel-interleaved. (Planar output would give
    # one plane per channel, but PyAV 18 miscounts the planes of frames with 8 or more channels and reads past
    # them: a 7.1 file crashed the process.)
    channels = frame.layout.nb_channels
    return frame.to_ndarray().reshape(-1, channels).mean(axis=1, dtype=np.float32)


def _joined(chunks: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    return np.concatenate(chunks) if chunks else _EMPTY


class MonoResampler:
    """Resamples one audio stream to `rate` Hz mono float32 with `av.AudioResampler` (libswresample).

    When the input's sample rate, channel layout or sample format changes mid-stream, the old resampler is
    flushed (its buffered samples are kept), a new one is built, and `format_changes` is incremented.
    `what` names the stream in log messages.
    """

    def __init__(self, rate: int = SAMPLE_RATE, what: str = "audio") -> None:
        self.rate = rate
        self.what = what
        self.format_changes = 0
        self.input_format: tuple[str, str, int] | None = None  # (sample format, layout, rate) now being resampled
        self._resampler: av.AudioResampler | None = None

    def push(self, frame: av.AudioFrame) -> NDArray[np.float32]:
        """Resample one decoded frame; returns the (n,) samples ready so far (n may be 0)."""
        key = (frame.format.name, frame.layout.name, int(frame.sample_rate))
        chunks: list[NDArray[np.float32]] = []
        if self._resampler is not None and key != self.input_format:
            log.info("%s: input changed from %s to %s; rebuilding the resampler", self.what, self.input_format, key)
            self.format_changes += 1
            chunks.append(self.flush())
        if self._resampler is None:
            # Packed float at the target rate with the layout kept: channels are averaged in `_mono`.
            self._resampler = av.AudioResampler(format="flt", rate=self.rate)
            self.input_format = key
        chunks.extend(_mono(out) for out in self._resampler.resample(frame))
        return _joined(chunks)

    def push_array(self, samples: NDArray[np.float32], rate: int) -> NDArray[np.float32]:
        """Resample (n, channels) float32 interleaved samples at `rate` Hz (what PortAudio delivers)."""
        if samples.ndim != 2 or samples.dtype != np.float32:
            got = f"{samples.shape} {samples.dtype}"
            raise ValueError(f"{self.what}: expected (n, channels) float32 samples, got {got}")
        layout = {1: "mono", 2: "stereo"}.get(samples.shape[1], f"{samples.shape[1]}c")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples).reshape(1, -1), format="flt", layout=layout)
        frame.sample_rate = rate
        return self.push(frame)

    def flush(self) -> NDArray[np.float32]:
        """Drain the resampler's delay line (end of stream or before a format change); it is rebuilt on next push."""
        if self._resampler is None:
            return _EMPTY
        out = _joined([_mono(frame) for frame in self._resampler.resample(None)])
        self._resampler = None
        return out
