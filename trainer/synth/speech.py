"""Speech tracks for the synthetic corpus: a speaker's monologue with pauses, and what the faces read from audio.

Audio is 16 kHz mono float32 in [-1, 1]; frame t of a clip is centred on sample t * 640 (40 ms frames at 25 fps),
so a clip of S seconds has S * 16000 samples and S * 25 + 1 frames (REACT's 751 for 30 s).

`speak_monologue` is the one function here that calls espeak-ng (through `trainer.synth.espeak`); everything
else is a pure function on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter, resample_poly

from renderer.face import FPS
from trainer.synth import espeak
from trainer.synth.text import LAUGHS, SentenceKind, make_sentence

SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640 samples = 40 ms
SPEECH_RMS = 0.08  # loud frames of an utterance sit here; `frame_loudness` reads this level as 1.0
ROOM_TONE_RMS = 0.0015  # about -56 dBFS
ACTIVE_LOUDNESS = 0.12  # frames louder than this (relative to SPEECH_RMS) count as speech
ROUNDING_REFERENCE_HZ = 900.0  # used when a clip has too few voiced frames to find its own median centroid

# Default English voices (espeak-ng language voices; MBROLA voices need an extra program) and variants.
DEFAULT_VOICES: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)  # fmt: skip
VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5")


@dataclass(frozen=True)
class VoiceStyle:
    """How one person sounds: an espeak-ng voice with variant, a speaking rate and a pitch."""

    voice: str
    """espeak-ng voice spec, ``LANG+VARIANT``."""
    rate_wpm: int
    """Words per minute (espeak-ng ``-s``)."""
    pitch: int
    """Base pitch 0-99 (espeak-ng ``-p``)."""


@dataclass(frozen=True)
class Utterance:
    """One sentence placed in a clip."""

    text: str
    kind: SentenceKind
    start_s: float
    end_s: float
    """End of the audible speech (clipped to the clip's end)."""


@dataclass(frozen=True)
class AudioCues:
    """What a face reads from a speech track, one value per 40 ms frame."""

    loudness: NDArray[np.float32]
    """(T,) frame RMS relative to `SPEECH_RMS` (1.0 = ordinary speech)."""
    active: NDArray[np.bool_]
    """(T,) speech present (short gaps between syllables filled)."""
    rounding: NDArray[np.float32]
    """(T,) lip rounding in [0, 1]: low spectral centroid in voiced frames (u, o, w)."""
    pitch: NDArray[np.float32]
    """(T,) fundamental frequency in Hz of voiced frames, 0 elsewhere."""


def frame_count(seconds: float) -> int:
    """Frames in a clip of `seconds`, counting both ends (751 for 30 s)."""
    return round(seconds * FPS) + 1


def sample_voice_style(rng: np.random.Generator, voices: tuple[str, ...]) -> VoiceStyle:
    """A random voice from `voices` (a spec without ``+variant`` gets a random variant), rate and pitch."""
    voice = voices[int(rng.integers(len(voices)))]
    if "+" not in voice:
        voice = f"{voice}+{VARIANTS[int(rng.integers(len(VARIANTS)))]}"
    return VoiceStyle(voice=voice, rate_wpm=int(rng.integers(140, 195)), pitch=int(rng.integers(30, 70)))


def pause_seconds(rng: np.random.Generator) -> float:
    """A pause between sentences: short (0.25-0.5 s), medium (0.5-1 s) or long (1-2 s), where listeners react."""
    kind = rng.choice(3, p=[0.3, 0.45, 0.25])
    low, high = [(0.25, 0.5), (0.5, 1.0), (1.0, 2.0)][int(kind)]
    return float(rng.uniform(low, high))


def to_sample_rate(samples: NDArray[np.float32], rate: int, target: int = SAMPLE_RATE) -> NDArray[np.float32]:
    """Resample (N,) audio from `rate` to `target` Hz (polyphase, deterministic)."""
    if rate == target:
        return samples.astype(np.float32)
    g = gcd(rate, target)
    return resample_poly(samples, target // g, rate // g).astype(np.float32)


def trim_silence(samples: NDArray[np.float32], threshold: float = 0.01) -> NDArray[np.float32]:
    """Drop leading and trailing samples quieter than `threshold` (espeak-ng pads each sentence)."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples[:0]


def set_level(samples: NDArray[np.float32], rms: float) -> NDArray[np.float32]:
    """Scale audio so that its loud frames (90th percentile of 40 ms frame RMS) sit at `rms`."""
    n = len(samples) // SAMPLES_PER_FRAME
    if n == 0:
        return samples
    frames = samples[: n * SAMPLES_PER_FRAME].reshape(n, SAMPLES_PER_FRAME)
    level = float(np.percentile(np.sqrt(np.mean(frames**2, axis=1)), 90))
    return (samples * (rms / max(level, 1e-6))).astype(np.float32)


def room_tone(rng: np.random.Generator, n: int, rms: float = ROOM_TONE_RMS) -> NDArray[np.float32]:
    """(n,) low-passed noise at `rms`: the hum of a quiet room."""
    noise = lfilter([1.0], [1.0, -0.95], rng.standard_normal(n))
    return (noise * (rms / max(float(np.std(noise)), 1e-12))).astype(np.float32)


def mix_at(track: NDArray[np.float32], clip: NDArray[np.float32], start: int) -> int:
    """Add `clip` into `track` from sample `start` (cut at the end of `track`); returns the samples placed."""
    count = max(0, min(len(clip), len(track) - start))
    track[start : start + count] += clip[:count]
    return count


def speak(binary: str, text: str, style: VoiceStyle, *, rate_scale: float = 1.0, pitch_shift: int = 0) -> NDArray:
    """One phrase from espeak-ng at 16 kHz, trimmed of its leading and trailing silence."""
    speech = espeak.synthesize(
        binary,
        text,
        voice=style.voice,
        rate_wpm=round(style.rate_wpm * rate_scale),
        pitch=int(np.clip(style.pitch + pitch_shift, 0, 99)),
    )
    return trim_silence(to_sample_rate(speech.samples, speech.rate))


PITCH_SHIFT = {SentenceKind.STATEMENT: 0, SentenceKind.QUESTION: 4, SentenceKind.EXCLAMATION: 9, SentenceKind.LAUGH: 14}
LAUGH_AFTER = {SentenceKind.EXCLAMATION: 0.45, SentenceKind.STATEMENT: 0.06}  # P(a laugh follows the sentence)


def speak_monologue(
    binary: str, rng: np.random.Generator, style: VoiceStyle, seconds: float
) -> tuple[NDArray[np.float32], list[Utterance]]:
    """A speaker's track: sentences with pauses between them over room tone, and where each sentence sits.

    Returns (seconds * 16000,) float32 audio and the utterances in order. Questions are spoken a little higher,
    exclamations higher and louder; a laugh ("ha ha ha", high and quick) may follow an exclamation (or, rarely, a
    statement) after a short gap, as an utterance of its own. The last one may be cut by the end of the clip.
    """
    n = round(seconds * SAMPLE_RATE)
    audio = room_tone(rng, n)
    utterances: list[Utterance] = []
    t = float(rng.uniform(0.2, 0.8))
    while t < seconds - 0.3:
        sentence = make_sentence(rng)
        t = _say(binary, rng, style, audio, utterances, sentence.text, sentence.kind, t)
        if rng.random() < LAUGH_AFTER.get(sentence.kind, 0.0) and t < seconds - 0.5:
            laugh = LAUGHS[int(rng.integers(len(LAUGHS)))]
            t = _say(binary, rng, style, audio, utterances, laugh, SentenceKind.LAUGH, t + float(rng.uniform(0.1, 0.3)))
        t += pause_seconds(rng)
    return np.clip(audio, -1.0, 1.0), utterances


def _say(
    binary: str, rng: np.random.Generator, style: VoiceStyle, audio: NDArray[np.float32],
    utterances: list[Utterance], text: str, kind: SentenceKind, t: float,
) -> float:  # fmt: skip
    """Speak `text` into `audio` from `t` seconds, note it in `utterances`; returns where it ends (seconds)."""
    quick = kind is SentenceKind.LAUGH
    samples = speak(
        binary, text, style, rate_scale=float(rng.uniform(1.25, 1.5) if quick else rng.uniform(0.92, 1.08)),
        pitch_shift=PITCH_SHIFT[kind] + int(rng.integers(-5, 6)),
    )  # fmt: skip
    loud = {SentenceKind.EXCLAMATION: 1.3, SentenceKind.LAUGH: 0.9}.get(kind, 1.0)
    start = round(t * SAMPLE_RATE)
    placed = mix_at(audio, set_level(samples, SPEECH_RMS * float(rng.uniform(0.8, 1.15)) * loud), start)
    utterances.append(Utterance(text, kind, t, (start + placed) / SAMPLE_RATE))
    return t + len(samples) / SAMPLE_RATE


# --- what a face reads from audio --------------------------------------------------------------------------


def _frames(audio: NDArray[np.float32], frames: int) -> NDArray[np.float32]:
    """(frames, 640) windows centred on sample t * 640 (zero-padded at both ends)."""
    half = SAMPLES_PER_FRAME // 2
    padded = np.zeros(frames * SAMPLES_PER_FRAME + SAMPLES_PER_FRAME, dtype=np.float32)
    count = min(len(audio), len(padded) - half)
    padded[half : half + count] = audio[:count]
    return padded[: frames * SAMPLES_PER_FRAME].reshape(frames, SAMPLES_PER_FRAME)


def frame_loudness(audio: NDArray[np.float32], frames: int) -> NDArray[np.float32]:
    """(frames,) RMS of each 40 ms frame relative to `SPEECH_RMS`."""
    windows = _frames(audio, frames)
    return (np.sqrt(np.mean(windows.astype(np.float64) ** 2, axis=1)) / SPEECH_RMS).astype(np.float32)


def fill_gaps(mask: NDArray[np.bool_], max_gap: int) -> NDArray[np.bool_]:
    """Set runs of False no longer than `max_gap` frames that lie between two True frames."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    out = mask.copy()
    for gap_start, gap_end in zip(run_ends[:-1], run_starts[1:], strict=True):
        if gap_end - gap_start <= max_gap:
            out[gap_start:gap_end] = True
    return out


def frame_rounding(audio: NDArray[np.float32], active: NDArray[np.bool_]) -> NDArray[np.float32]:
    """(T,) lip rounding from the spectrum: rounded vowels (u, o) have a low spectral centroid.

    The centroid of 100-4000 Hz is compared with the clip's median over speech frames, so higher voices
    (higher formants) are judged against themselves.
    """
    windows = _frames(audio, len(active)) * np.hanning(SAMPLES_PER_FRAME).astype(np.float32)
    power = np.abs(np.fft.rfft(windows, axis=1)) ** 2
    freqs = np.fft.rfftfreq(SAMPLES_PER_FRAME, 1.0 / SAMPLE_RATE)
    band = (freqs > 100) & (freqs < 4000)
    centroid = (power[:, band] @ freqs[band]) / np.maximum(power[:, band].sum(axis=1), 1e-12)
    reference = float(np.median(centroid[active])) if active.sum() >= 10 else ROUNDING_REFERENCE_HZ
    rounding = np.clip((0.95 * reference - centroid) / (0.3 * reference), 0.0, 1.0) * active
    return rounding.astype(np.float32)


def frame_pitch(audio: NDArray[np.float32], active: NDArray[np.bool_]) -> NDArray[np.float32]:
    """(T,) fundamental frequency (Hz, 70-400) of each active 40 ms frame from its autocorrelation; 0 where the
    frame is silent or not voiced (the best normalised autocorrelation peak under 0.5)."""
    windows = _frames(audio, len(active)).astype(np.float64)
    windows -= windows.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(windows, n=2 * SAMPLES_PER_FRAME, axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :SAMPLES_PER_FRAME]
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 70  # lags of 400 Hz and 70 Hz
    lag = lo + np.argmax(acf[:, lo:hi], axis=1)
    strength = acf[np.arange(len(acf)), lag] / np.maximum(acf[:, 0], 1e-12)
    voiced = active & (strength > 0.5)
    return np.where(voiced, SAMPLE_RATE / lag, 0.0).astype(np.float32)


def audio_cues(audio: NDArray[np.float32], frames: int) -> AudioCues:
    """Per-frame loudness, speech activity, lip rounding and pitch of a 16 kHz track."""
    loudness = frame_loudness(audio, frames)
    active = fill_gaps(loudness > ACTIVE_LOUDNESS, max_gap=3)
    rounding = gaussian_filter1d(frame_rounding(audio, active), 0.8).astype(np.float32)
    return AudioCues(loudness=loudness, active=active, rounding=rounding, pitch=frame_pitch(audio, active))
