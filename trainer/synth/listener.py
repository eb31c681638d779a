"""Synthetic listeners: stochastic reaction policies with persona parameters, as pure functions on numpy arrays.

A listener perceives the speaker (`SpeakerCues`: when they talk, how much they smile, where questions end, which
moments are stressed) and reacts after their own lag (200-800 ms):

- backchannel nods in the speaker's pauses (`plan_backchannels`), some with a short vocalisation ("mm-hm",
  "yeah") that starts with the nod;
- smile mimicry: the speaker's smile, delayed by the lag and scaled by the persona's mimicry gain;
- brows raised after a question, the odd small nod on a stressed word;
- blinks (more around nods), gaze shifts and an idle head sway.

Several personas (warm, reserved, animated, attentive, thoughtful) give the several different but appropriate
reactions that each speaker clip gets.
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
    seconds_to_frames,
    set_eyes,
    set_head,
    set_pair,
    smooth,
    sway,
)
from trainer.synth.speaker import mouth_tracks, write_mouth
from trainer.synth.speech import AudioCues, VoiceStyle
from trainer.synth.text import BACKCHANNELS

MIN_PAUSE_FRAMES = 10  # 0.4 s: shorter pauses get no backchannel
VOCAL_FRAMES = 6  # a vocalisation needs this much of the pause left after the nod starts


@dataclass(frozen=True)
class Persona:
    """One listener's reaction style."""

    name: str
    """Archetype it was drawn from (see `ARCHETYPES`)."""
    expressiveness: float
    """Scales nods, brow raises and own smiles."""
    lag_s: float
    """Reaction lag in seconds (0.2-0.8)."""
    nod_rate: float
    """Probability of a backchannel nod in a pause of the speaker."""
    mimicry_gain: float
    """How much of the speaker's smile comes back, delayed by the lag."""
    vocal_rate: float
    """Probability that a pause nod comes with a vocal backchannel."""
    blinks_per_min: float
    gaze_shifts_per_min: float
    sway: float
    """Standard deviation of idle head yaw in radians."""
    voice: VoiceStyle
    """Voice of the vocal backchannels."""


# name → (expressiveness, lag_s, nod_rate, mimicry_gain, vocal_rate) ranges; each value is drawn uniformly.
ARCHETYPES: dict[str, tuple[tuple[float, float], ...]] = {
    "warm": ((0.9, 1.2), (0.25, 0.5), (0.65, 0.85), (0.7, 0.95), (0.3, 0.5)),
    "reserved": ((0.45, 0.65), (0.5, 0.8), (0.4, 0.55), (0.3, 0.5), (0.05, 0.15)),
    "animated": ((1.15, 1.4), (0.2, 0.4), (0.75, 0.95), (0.8, 1.0), (0.4, 0.6)),
    "attentive": ((0.75, 0.95), (0.3, 0.55), (0.7, 0.9), (0.5, 0.7), (0.2, 0.35)),
    "thoughtful": ((0.6, 0.8), (0.55, 0.8), (0.5, 0.7), (0.45, 0.65), (0.1, 0.25)),
}


def sample_personas(rng: np.random.Generator, count: int, voices: list[VoiceStyle]) -> list[Persona]:
    """`count` personas from different archetypes (cycling through them when `count` exceeds their number).

    `voices` holds one voice per persona.
    """
    names = [list(ARCHETYPES)[int(i)] for i in rng.permutation(len(ARCHETYPES))]
    personas = []
    for i in range(count):
        name = names[i % len(names)]
        expr, lag, nod, mimic, vocal = (float(rng.uniform(lo, hi)) for lo, hi in ARCHETYPES[name])
        personas.append(
            Persona(
                name=name, expressiveness=expr, lag_s=lag, nod_rate=nod, mimicry_gain=mimic, vocal_rate=vocal,
                blinks_per_min=float(rng.uniform(12.0, 22.0)), gaze_shifts_per_min=float(rng.uniform(4.0, 10.0)),
                sway=float(rng.uniform(0.015, 0.04)), voice=voices[i],
            )
        )  # fmt: skip
    return personas


@dataclass(frozen=True)
class SpeakerCues:
    """What a listener perceives of the speaker, per frame or as event frames."""

    active: NDArray[np.bool_]
    """(T,) the speaker is talking."""
    smile: NDArray[np.float32]
    """(T,) the speaker's smile (mean of mouthSmileLeft/Right)."""
    question_ends: list[int]
    """Frames where the speaker's questions finish."""
    emphasis: list[int]
    """Frames where a stressed stretch of speech starts."""


def smile_of(face: NDArray[np.floating]) -> NDArray[np.float32]:
    """(T,) mean of mouthSmileLeft and mouthSmileRight of (T, 58) faces."""
    cols = [BLENDSHAPE_INDEX["mouthSmileLeft"], BLENDSHAPE_INDEX["mouthSmileRight"]]
    return np.asarray(face, dtype=np.float32)[:, cols].mean(axis=1)


def pauses(active: NDArray[np.bool_], min_frames: int = MIN_PAUSE_FRAMES) -> list[tuple[int, int]]:
    """[start, end) frame ranges of silence at least `min_frames` long that follow some speech."""
    edges = np.diff(np.concatenate([[1], active.astype(np.int8), [1]]))
    starts, ends = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True) if b - a >= min_frames and a > 0]


@dataclass(frozen=True)
class Backchannel:
    """A nod the listener makes, maybe with a vocalisation starting on the same frame."""

    frame: int
    cycles: int
    amplitude: float
    """Depth of the first dip in radians."""
    cycle_frames: int
    word: str | None


def plan_backchannels(cues: SpeakerCues, persona: Persona, rng: np.random.Generator) -> list[Backchannel]:
    """Where `persona` nods: in most pauses (after its lag, inside the pause), rarely on a stressed word."""
    lag = seconds_to_frames(persona.lag_s)
    after_question = set(cues.question_ends)
    plan = []
    for start, end in pauses(cues.active):
        asked = any(start - 3 <= q <= start + 3 for q in after_question)
        inviting = asked or end - start >= FPS  # questions and long pauses invite a backchannel
        if rng.random() >= min(1.0, persona.nod_rate * (1.25 if inviting else 1.0)):
            continue
        at = min(start + lag + int(rng.integers(0, 4)), end - 5)
        vocal = end - at >= VOCAL_FRAMES and rng.random() < persona.vocal_rate
        word = BACKCHANNELS[int(rng.integers(len(BACKCHANNELS)))] if vocal else None
        cycles = 1 + int(rng.random() < 0.45) + int(rng.random() < 0.15)
        amp = float(rng.uniform(0.06, 0.12)) * persona.expressiveness
        plan.append(Backchannel(at, cycles, amp, int(rng.integers(10, 15)), word))
    for at in cues.emphasis:
        if rng.random() < 0.12 * persona.nod_rate:
            amp = float(rng.uniform(0.02, 0.04)) * persona.expressiveness
            plan.append(Backchannel(at + lag, 1, amp, int(rng.integers(10, 14)), None))
    return sorted(plan, key=lambda b: b.frame)


def smile_episodes(smile: NDArray[np.float32], threshold: float = 0.03) -> list[tuple[int, int]]:
    """[start, end) frame ranges where `smile` exceeds `threshold`."""
    edges = np.diff(np.concatenate([[0], (smile > threshold).astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def mimicry(cues: SpeakerCues, persona: Persona, rng: np.random.Generator) -> NDArray[np.float32]:
    """(T,) the speaker's smiles returned after the persona's lag: each episode answered or not, at its own
    strength (mimicry gain x 0.5-1.2) and a lag jittered by up to ±3 frames."""
    frames, lag = len(cues.smile), seconds_to_frames(persona.lag_s)
    smile = smooth(cues.smile, 3.0)
    out = np.zeros(frames, dtype=np.float32)
    for start, end in smile_episodes(smile):
        if rng.random() < 0.5 + 0.45 * persona.mimicry_gain:
            gain = persona.mimicry_gain * float(rng.uniform(0.5, 1.2))
            max_at(out, gain * smile[start:end], start + lag + int(rng.integers(-3, 4)))
    return smooth(out, 1.5)


def listener_smile(cues: SpeakerCues, persona: Persona, rng: np.random.Generator) -> NDArray[np.float32]:
    """(T,) smile: mimicry of the speaker's smiles, a faint resting smile and occasional own smiles."""
    frames = len(cues.smile)
    mimic = mimicry(cues, persona, rng)
    own = np.zeros(frames, dtype=np.float32)
    for at in poisson_onsets(rng, frames, 1.5, refractory=5 * FPS):
        max_at(own, envelope(8, int(rng.integers(10, 40)), 15) * rng.uniform(0.1, 0.25), at)
    return np.clip(mimic + persona.expressiveness * (own + 0.04), 0.0, 0.9)


def listener_face(
    cues: SpeakerCues,
    persona: Persona,
    plan: list[Backchannel],
    own_audio: AudioCues,
    rng: np.random.Generator,
) -> NDArray[np.float32]:
    """(T, 58) face of `persona` listening to a speaker who gave `cues`, acting out `plan`.

    `own_audio` are the cues of the listener's own track (their vocalisations move their mouth).
    """
    frames = len(cues.active)
    face = neutral_face(frames)
    write_mouth(face, mouth_tracks(own_audio, jaw_gain=0.7))
    smile = listener_smile(cues, persona, rng)
    set_pair(face, "mouthSmile", smile)
    set_pair(face, "cheekSquint", 0.4 * smile)

    lag = seconds_to_frames(persona.lag_s)
    brows, pitch = np.zeros(frames, np.float32), np.zeros(frames, np.float32)
    for at in cues.question_ends:
        if rng.random() < 0.8:
            max_at(brows, envelope(5, 8, 12) * rng.uniform(0.3, 0.6) * persona.expressiveness, at + lag)
    for b in plan:
        add_at(pitch, nod_kernel(b.amplitude, b.cycles, b.cycle_frames), b.frame)
    add_to(face, "browInnerUp", brows)
    set_pair(face, "browOuterUp", 0.7 * brows)

    nod_blinks = [b.frame + 2 for b in plan if rng.random() < 0.35]
    gaze = gaze_track(rng, frames, persona.gaze_shifts_per_min, 0.2)
    yaw = sway(rng, frames, persona.sway) + 0.08 * gaze[:, 0]
    set_head(face, pitch + sway(rng, frames, 0.4 * persona.sway), yaw, sway(rng, frames, 0.5 * persona.sway, 2.0))
    set_eyes(face, blink_track(rng, frames, persona.blinks_per_min, nod_blinks), gaze)
    return clip_face(face)
