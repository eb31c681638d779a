"""The synthetic speaker's face, driven by their own speech: pure functions on numpy arrays.

- mouth: jawOpen and mouthLowerDown follow the loudness envelope, mouthFunnel/mouthPucker the lip rounding read
  from the spectrum, mouthClose and a light mouthPress in silence (`mouth_tracks`, also used for listeners'
  backchannel vocalisations);
- emphasis (loud stretches well above the local level): brow raises and small nods;
- question ends: brows up and chin up; exclamations and random moments: smiles; laughs (their own utterances):
  a broad smile, squinting eyes, the head back;
- blinks (15-20 per minute), gaze shifts and a slow head sway that is livelier while talking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from renderer.face import BLENDSHAPE_INDEX, FPS, clip_face, neutral_face
from trainer.synth.motion import (
    add_at,
    add_to,
    blink_track,
    envelope,
    gaze_track,
    max_at,
    nod_kernel,
    poisson_onsets,
    set_eyes,
    set_head,
    set_pair,
    smooth,
    sway,
)
from trainer.synth.speech import AudioCues, Utterance
from trainer.synth.text import SentenceKind


@dataclass(frozen=True)
class SpeakerStyle:
    """How animated one synthetic speaker is."""

    expressiveness: float
    """Scales smiles, brow raises and nods (about 0.6-1.3)."""
    jaw_gain: float
    """How wide the mouth opens for the same loudness."""
    smiles_per_min: float
    """Spontaneous smiles per minute (exclamations add more)."""
    blinks_per_min: float
    gaze_shifts_per_min: float
    sway: float
    """Standard deviation of idle head yaw in radians."""


def sample_speaker_style(rng: np.random.Generator) -> SpeakerStyle:
    """A random speaker style."""
    return SpeakerStyle(
        expressiveness=float(rng.uniform(0.6, 1.3)),
        jaw_gain=float(rng.uniform(0.8, 1.2)),
        smiles_per_min=float(rng.uniform(1.5, 5.0)),
        blinks_per_min=float(rng.uniform(15.0, 20.0)),
        gaze_shifts_per_min=float(rng.uniform(8.0, 18.0)),
        sway=float(rng.uniform(0.03, 0.07)),
    )


def mouth_tracks(cues: AudioCues, jaw_gain: float = 1.0) -> dict[str, NDArray[np.float32]]:
    """Blendshape tracks (name → (T,)) of a mouth that speaks `cues`; paired names without Left/Right."""
    opening = smooth(np.clip(cues.loudness - 0.05, 0.0, 1.6) ** 0.7, 0.7)  # room tone stays shut
    rounding = cues.rounding
    silence = smooth(~cues.active, 2.0)
    return {
        "jawOpen": 0.42 * jaw_gain * opening * (1.0 - 0.35 * rounding),
        "mouthLowerDown": 0.3 * opening * (1.0 - 0.5 * rounding),
        "mouthUpperUp": 0.08 * opening,
        "mouthStretch": 0.08 * opening * (1.0 - rounding),
        "mouthFunnel": 0.5 * rounding * np.minimum(opening, 1.0),
        "mouthPucker": 0.35 * rounding * (1.0 - 0.5 * np.minimum(opening, 1.0)),
        "mouthClose": 0.12 * silence,
        "mouthPress": 0.06 * silence,
    }


def write_mouth(face: NDArray[np.float32], tracks: dict[str, NDArray[np.float32]]) -> None:
    """Add `mouth_tracks` output into (T, 58) faces."""
    for name, values in tracks.items():
        if name in BLENDSHAPE_INDEX:
            add_to(face, name, values)
        else:
            set_pair(face, name, values)


def emphasis_frames(cues: AudioCues, min_gap: int = 25) -> list[int]:
    """Onsets of stressed stretches, at least `min_gap` frames apart: loudness 50% above its 2 s average over
    speech, or voiced pitch 15% above the clip's median (a pitch accent)."""
    level = smooth(cues.loudness, 2.0)
    speech = cues.active.astype(np.float32)
    local = smooth(cues.loudness * speech, 2.0 * FPS) / np.maximum(smooth(speech, 2.0 * FPS), 1e-3)
    loud = (level > 1.5 * local) & (level > 0.8) & cues.active
    voiced = cues.pitch > 0
    median = float(np.median(cues.pitch[voiced])) if voiced.sum() >= 10 else np.inf
    high = voiced & (cues.pitch > 1.15 * median)
    onsets: list[int] = []
    for hot in (loud, high):
        onsets += (np.flatnonzero(hot[1:] & ~hot[:-1]) + 1).tolist()
    spaced: list[int] = []
    for t in sorted(onsets):
        if not spaced or t - spaced[-1] >= min_gap:
            spaced.append(int(t))
    return spaced


def smile_track(
    rng: np.random.Generator, frames: int, style: SpeakerStyle, utterances: list[Utterance]
) -> NDArray[np.float32]:
    """(T,) smile intensity: spontaneous smiles plus most exclamations, each a smooth rise-hold-fall."""
    starts = poisson_onsets(rng, frames, style.smiles_per_min, refractory=3 * FPS)
    starts += [round(u.start_s * FPS) for u in utterances if u.kind is SentenceKind.EXCLAMATION and rng.random() < 0.8]
    track = np.zeros(frames, dtype=np.float32)
    for at in sorted(starts):
        shape = envelope(int(rng.integers(6, 12)), int(rng.integers(15, 70)), int(rng.integers(10, 20)))
        max_at(track, shape * rng.uniform(0.25, 0.6) * style.expressiveness, at)
    return np.clip(track, 0.0, 0.9)


def question_ends(utterances: list[Utterance]) -> list[int]:
    """Frames at which questions finish."""
    return [round(u.end_s * FPS) for u in utterances if u.kind is SentenceKind.QUESTION]


def laugh_spans(utterances: list[Utterance]) -> list[tuple[int, int]]:
    """[start, end) frames of the speaker's laughs."""
    return [(round(u.start_s * FPS), round(u.end_s * FPS)) for u in utterances if u.kind is SentenceKind.LAUGH]


def laughs(utterances: list[Utterance]) -> list[int]:
    """Frames at which the speaker starts laughing."""
    return [start for start, _ in laugh_spans(utterances)]


def laugh_face(face: NDArray[np.float32], spans: list[tuple[int, int]], rng: np.random.Generator, gain: float) -> None:
    """Add laughs to (T, 58) faces over `spans`: a broad smile with squinting eyes and the head thrown back a
    little, shaking with the bursts (the jaw already follows the laugh's sound). `gain` scales it."""
    frames = len(face)
    smile, pitch = np.zeros(frames, np.float32), np.zeros(frames, np.float32)
    for start, end in spans:
        max_at(smile, envelope(4, max(end - start, 1), 15) * rng.uniform(0.55, 0.8) * gain, start - 2)
        back = envelope(5, max(end - start, 1), 12) * rng.uniform(0.04, 0.08) * gain  # + pitch: chin up
        shake = 0.015 * gain * np.sin(2 * np.pi * np.arange(len(back)) / 5.0) * (back > 0)
        add_at(pitch, back + shake, start)
    set_pair(face, "mouthSmile", smile)
    set_pair(face, "cheekSquint", 0.6 * smile)
    set_pair(face, "eyeSquint", 0.5 * smile)
    add_to(face, "pitch", pitch)


def speaker_face(
    cues: AudioCues, utterances: list[Utterance], style: SpeakerStyle, rng: np.random.Generator
) -> NDArray[np.float32]:
    """(T, 58) face of a speaker saying `utterances`, whose audio gave `cues`."""
    frames = len(cues.loudness)
    face = neutral_face(frames)
    write_mouth(face, mouth_tracks(cues, style.jaw_gain))
    smile = smile_track(rng, frames, style, utterances)
    asym = float(rng.uniform(-0.1, 0.1))
    set_pair(face, "mouthSmile", smile, asym)
    set_pair(face, "cheekSquint", 0.45 * smile, asym)
    set_pair(face, "eyeSquint", 0.2 * smile)
    laugh_face(face, laugh_spans(utterances), rng, style.expressiveness)

    brows, pitch = np.zeros(frames, np.float32), np.zeros(frames, np.float32)
    for at in emphasis_frames(cues):
        if rng.random() < 0.6:
            max_at(brows, envelope(4, 5, 10) * rng.uniform(0.2, 0.45) * style.expressiveness, at - 2)
        if rng.random() < 0.7:
            add_at(pitch, nod_kernel(rng.uniform(0.03, 0.07) * style.expressiveness, 1, int(rng.integers(9, 14))), at)
    for at in question_ends(utterances):
        max_at(brows, envelope(6, 12, 12) * rng.uniform(0.4, 0.7) * style.expressiveness, at - 8)
        add_at(pitch, -nod_kernel(rng.uniform(0.03, 0.06), 1, 25), at - 8)  # chin up while asking
    add_to(face, "browInnerUp", brows)
    set_pair(face, "browOuterUp", 0.8 * brows)

    talking = 0.6 + 0.4 * smooth(cues.active, FPS)
    yaw, roll = sway(rng, frames, style.sway) * talking, sway(rng, frames, 0.5 * style.sway, 2.0) * talking
    gaze = gaze_track(rng, frames, style.gaze_shifts_per_min, 0.35)
    set_head(face, pitch + sway(rng, frames, 0.5 * style.sway) * talking, yaw + 0.1 * gaze[:, 0], roll)
    set_eyes(face, blink_track(rng, frames, style.blinks_per_min), gaze)
    return clip_face(face)
