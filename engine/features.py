"""Speaker audio features per 40 ms face frame: the one code path that training and serving both call.

Audio is 16 kHz mono float32. Face frame t covers samples [t*640, (t+1)*640). Its features are computed only
from samples that end at (t+1)*640 (causal), so a live stream can emit frame t as soon as its samples arrive:

    [0:40)   log-mel energies (40 bands, 25 ms windows every 10 ms, averaged over the frame's 4 windows)
    [40:44)  log energy of each of the 4 windows (the within-frame envelope: onsets, syllables)
    [44:57)  MFCC deltas: MFCC(t) - MFCC(t-1), 13 coefficients (0 for the first frame)

`audio_features` runs on a whole clip; `StreamingAudioFeatures` runs on chunks of any size and returns the
same numbers (to float rounding) because both call `_frame_block` on the same sample positions.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft
from numpy.typing import NDArray

SAMPLE_RATE = 16_000
FRAME_SAMPLES = 640  # 40 ms: one 25 fps face frame
WIN_SAMPLES = 400  # 25 ms analysis window
SUB_HOP = 160  # 10 ms between analysis windows
SUBFRAMES = FRAME_SAMPLES // SUB_HOP  # 4 windows per face frame
N_FFT = 512
N_MELS = 40
N_MFCC = 13
AUDIO_FEATURE_DIM = N_MELS + SUBFRAMES + N_MFCC  # 57
# Samples before a frame's start that its features read: the first window reaches back WIN - SUB_HOP samples,
# and the delta needs the previous frame.
CONTEXT_SAMPLES = FRAME_SAMPLES + WIN_SAMPLES - SUB_HOP
_LOG_FLOOR = 1e-8


class AudioFormatError(ValueError):
    """Audio handed to the feature extractor is not 16 kHz mono finite float samples."""


@functools.cache
def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> NDArray[np.float32]:
    """(n_fft//2 + 1, n_mels) triangular filters on the HTK mel scale from 20 Hz to rate/2."""
    mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(20.0), mel(rate / 2), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).T.astype(np.float32)


@functools.cache
def _window() -> NDArray[np.float32]:
    return np.hanning(WIN_SAMPLES).astype(np.float32)


def _frame_block(padded: NDArray[np.float32], frames: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Features (frames, 44) and MFCCs (frames, 13) for `frames` frames.

    `padded` holds CONTEXT_SAMPLES - FRAME_SAMPLES samples of history followed by the frames' own samples.
    """
    lead = WIN_SAMPLES - SUB_HOP  # history the first window of a frame needs
    # window k of frame t ends at t*640 + (k+1)*160 (relative to the frames' start): it never reads ahead.
    ends = lead + SUB_HOP * np.arange(1, frames * SUBFRAMES + 1)
    index = ends[:, None] - WIN_SAMPLES + np.arange(WIN_SAMPLES)[None]
    windows = padded[index] * _window()  # (frames*4, 400)
    power = np.abs(np.fft.rfft(windows, n=N_FFT, axis=-1)) ** 2 / N_FFT  # (frames*4, 257)
    log_mel = np.log(power @ mel_filterbank() + _LOG_FLOOR).reshape(frames, SUBFRAMES, N_MELS)
    log_energy = np.log(power.sum(-1) + _LOG_FLOOR).reshape(frames, SUBFRAMES)
    mean_mel = log_mel.mean(axis=1)
    mfcc = scipy.fft.dct(mean_mel, type=2, norm="ortho", axis=-1)[:, :N_MFCC]
    return np.concatenate([mean_mel, log_energy], axis=-1).astype(np.float32), mfcc.astype(np.float32)


def check_audio(samples: NDArray[np.floating], what: str = "audio") -> NDArray[np.float32]:
    """Check that `samples` is a 1-D finite float array; return it as float32."""
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise AudioFormatError(f"{what}: expected mono samples of shape (N,), got {arr.shape}; mix channels first")
    if arr.dtype.kind != "f":
        raise AudioFormatError(f"{what}: expected float samples in [-1, 1], got {arr.dtype}; divide int16 by 32768")
    if not np.isfinite(arr).all():
        raise AudioFormatError(f"{what}: sample {int(np.argmin(np.isfinite(arr)))} is not finite")
    return arr.astype(np.float32, copy=False)


def audio_features(samples: NDArray[np.floating]) -> NDArray[np.float32]:
    """Features (T, 57) of a whole 16 kHz mono clip, T = len(samples) // 640 (a partial last frame is dropped)."""
    samples = check_audio(samples)
    frames = len(samples) // FRAME_SAMPLES
    head = np.zeros(WIN_SAMPLES - SUB_HOP, dtype=np.float32)
    base, mfcc = _frame_block(np.concatenate([head, samples[: frames * FRAME_SAMPLES]]), frames)
    delta = np.diff(mfcc, axis=0, prepend=mfcc[:1])
    return np.concatenate([base, delta], axis=-1)


class StreamingAudioFeatures:
    """Causal features for audio arriving in chunks; `push` returns the frames completed by each chunk.

    The output equals `audio_features` on the concatenated audio, frame for frame.
    """

    def __init__(self) -> None:
        self._pending = np.zeros(WIN_SAMPLES - SUB_HOP, dtype=np.float32)  # history + unconsumed samples
        self._last_mfcc: NDArray[np.float32] | None = None
        self.frames_emitted = 0

    def push(self, chunk: NDArray[np.floating]) -> NDArray[np.float32]:
        """Append 16 kHz mono samples; return features (n, 57) for the n frames they complete (n may be 0)."""
        self._pending = np.concatenate([self._pending, check_audio(chunk, "audio chunk")])
        lead = WIN_SAMPLES - SUB_HOP
        frames = (len(self._pending) - lead) // FRAME_SAMPLES
        if frames == 0:
            return np.zeros((0, AUDIO_FEATURE_DIM), dtype=np.float32)
        base, mfcc = _frame_block(self._pending[: lead + frames * FRAME_SAMPLES], frames)
        previous = mfcc[:1] if self._last_mfcc is None else self._last_mfcc[None]
        delta = np.diff(mfcc, axis=0, prepend=previous)
        self._last_mfcc = mfcc[-1]
        self._pending = self._pending[frames * FRAME_SAMPLES :]
        self.frames_emitted += frames
        return np.concatenate([base, delta], axis=-1)
