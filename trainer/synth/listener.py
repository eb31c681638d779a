"""Synthetic listeners: personas that react to a speaker in their own way, as pure functions on numpy arrays.

A listener perceives the speaker (`SpeakerCues`: when they talk, their pauses and turn ends, where questions end,
stressed moments (loudness and pitch peaks), how much they smile and when they laugh) and reacts after their own
lag (0.2-0.9 s). Six personas (`PERSONAS`), each a family of individuals whose parameters are drawn from ranges:

- reserved: small, late reactions: a shallow nod in some pauses, faint smiles back, lips lightly pressed;
- nodder: nods in nearly every pause (two or three dips), small nods on stressed words, many "mm-hm"s;
- mirror: smiles back at every smile and laughs with the speaker, mirrors their raised brows, tilts the head;
- thinker: furrows the brows at stressed words and questions, looks away (up and aside) to think, presses the
  lips, tilts the head, nods slowly and seldom;
- enthusiast: a broad resting smile, laughs at the speaker's laughs and smiles, brows up and eyes wide at
  questions and exclamations, quick nods and head tilts;
- sceptic: a one-sided smirk, one brow raised at questions and claims, eyes narrowed, head tilted back, rare nods.

Every listener also blinks, shifts gaze and sways idly. Several different personas react to each speaker clip:
the several different but appropriate reactions of the corpus's neighbour matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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
TURN_END_FRAMES = 30  # 1.2 s: a pause this long after speech hands the turn over
VOCAL_FRAMES = 6  # a vocalisation needs this much of the pause left after the nod starts


@dataclass(frozen=True)
class Persona:
    """One listener's reaction style: a persona's name and this individual's parameters (see `PERSONAS`)."""

    name: str
    """The persona (a key of `PERSONAS`)."""
    expressiveness: float
    """Scales every reaction's amplitude."""
    lag_s: float
    """Reaction lag in seconds."""
    nod_rate: float
    """Probability of a backchannel nod in a pause of the speaker."""
    nod_depth: float
    """Depth of a nod's first dip in radians (at expressiveness 1)."""
    nod_cycles: float
    """Mean number of extra dips per nod."""
    nod_frames: float
    """Frames per dip (a slow nod takes longer)."""
    emphasis_nod: float
    """Probability of a small nod on a stressed word."""
    mimicry_gain: float
    """How much of the speaker's smile comes back, delayed by the lag."""
    vocal_rate: float
    """Probability that a pause nod comes with a vocal backchannel."""
    resting_smile: float
    smirk: float
    """Smile asymmetry, 0 (even) to 1 (the left corner alone)."""
    laugh_rate: float
    """Probability of laughing along when the speaker laughs (a third of it at a big smile of theirs)."""
    brow_raise: float
    """Both brows up after a question or an exclamation-like peak."""
    furrow: float
    """Brows down at stressed words and questions."""
    one_brow: float
    """The right outer brow up at questions and stressed claims."""
    squint: float
    """Resting narrowing of the eyes."""
    press: float
    """Resting press and roll of the lips."""
    gaze_aversion: float
    """Probability of looking away (up and aside) after a question or a stressed word."""
    tilt: float
    """Head roll in radians at stressed words and turn ends."""
    head_back: float
    """Resting head pitch, chin up, in radians."""
    blinks_per_min: float
    gaze_shifts_per_min: float
    sway: float
    """Standard deviation of idle head yaw in radians."""
    voice: VoiceStyle
    """Voice of the vocal backchannels."""


# persona → field → (low, high): each individual draws each value uniformly; unlisted fields are 0.
PERSONAS: dict[str, dict[str, tuple[float, float]]] = {
    "reserved": {
        "expressiveness": (0.4, 0.6), "lag_s": (0.55, 0.9), "nod_rate": (0.3, 0.5), "nod_depth": (0.04, 0.06),
        "nod_cycles": (0.0, 0.3), "nod_frames": (11, 14), "mimicry_gain": (0.15, 0.35), "vocal_rate": (0.0, 0.1),
        "brow_raise": (0.1, 0.2), "press": (0.1, 0.2), "gaze_aversion": (0.0, 0.1), "blinks_per_min": (10, 14),
        "gaze_shifts_per_min": (2, 5), "sway": (0.01, 0.02),
    },
    "nodder": {
        "expressiveness": (0.85, 1.1), "lag_s": (0.25, 0.45), "nod_rate": (0.85, 1.0), "nod_depth": (0.09, 0.14),
        "nod_cycles": (1.0, 2.0), "nod_frames": (9, 12), "emphasis_nod": (0.5, 0.8), "mimicry_gain": (0.3, 0.5),
        "vocal_rate": (0.5, 0.8), "resting_smile": (0.03, 0.08), "laugh_rate": (0.05, 0.15),
        "brow_raise": (0.2, 0.35), "tilt": (0.0, 0.02), "blinks_per_min": (16, 22), "gaze_shifts_per_min": (3, 6),
        "sway": (0.02, 0.03),
    },
    "mirror": {
        "expressiveness": (0.9, 1.2), "lag_s": (0.2, 0.4), "nod_rate": (0.5, 0.7), "nod_depth": (0.06, 0.09),
        "nod_cycles": (0.3, 0.8), "nod_frames": (10, 13), "emphasis_nod": (0.1, 0.2), "mimicry_gain": (1.0, 1.3),
        "vocal_rate": (0.2, 0.4), "resting_smile": (0.05, 0.1), "laugh_rate": (0.3, 0.5), "brow_raise": (0.35, 0.55),
        "tilt": (0.02, 0.04), "blinks_per_min": (14, 18), "gaze_shifts_per_min": (4, 8), "sway": (0.02, 0.035),
    },
    "thinker": {
        "expressiveness": (0.75, 1.0), "lag_s": (0.6, 0.9), "nod_rate": (0.3, 0.5), "nod_depth": (0.05, 0.08),
        "nod_cycles": (0.0, 0.3), "nod_frames": (16, 20), "emphasis_nod": (0.0, 0.05), "mimicry_gain": (0.1, 0.25),
        "vocal_rate": (0.05, 0.15), "furrow": (0.35, 0.55), "squint": (0.1, 0.2), "press": (0.2, 0.35),
        "gaze_aversion": (0.6, 0.9), "tilt": (0.06, 0.1), "blinks_per_min": (8, 12), "gaze_shifts_per_min": (8, 12),
        "sway": (0.015, 0.025),
    },
    "enthusiast": {
        "expressiveness": (1.2, 1.5), "lag_s": (0.2, 0.35), "nod_rate": (0.7, 0.9), "nod_depth": (0.08, 0.12),
        "nod_cycles": (0.5, 1.2), "nod_frames": (8, 11), "emphasis_nod": (0.3, 0.5), "mimicry_gain": (0.9, 1.2),
        "vocal_rate": (0.4, 0.6), "resting_smile": (0.2, 0.3), "laugh_rate": (0.6, 0.9), "brow_raise": (0.5, 0.7),
        "tilt": (0.08, 0.12), "blinks_per_min": (18, 24), "gaze_shifts_per_min": (6, 10), "sway": (0.03, 0.05),
    },
    "sceptic": {
        "expressiveness": (0.75, 1.0), "lag_s": (0.5, 0.8), "nod_rate": (0.15, 0.3), "nod_depth": (0.04, 0.06),
        "nod_frames": (12, 15), "mimicry_gain": (0.1, 0.2), "vocal_rate": (0.05, 0.15), "resting_smile": (0.1, 0.16),
        "smirk": (0.7, 1.0), "laugh_rate": (0.0, 0.05), "furrow": (0.15, 0.25), "one_brow": (0.4, 0.6),
        "squint": (0.2, 0.35), "press": (0.15, 0.25), "gaze_aversion": (0.1, 0.3), "tilt": (0.04, 0.08),
        "head_back": (0.05, 0.09), "blinks_per_min": (10, 14), "gaze_shifts_per_min": (3, 6), "sway": (0.015, 0.025),
    },
}  # fmt: skip
PERSONA_NAMES: tuple[str, ...] = tuple(PERSONAS)


def draw_persona(name: str, rng: np.random.Generator, voice: VoiceStyle) -> Persona:
    """One individual of persona `name`: each parameter drawn uniformly from the persona's range."""
    ranges = PERSONAS[name]
    values = {
        f.name: float(rng.uniform(*ranges[f.name])) if f.name in ranges else 0.0
        for f in fields(Persona)
        if f.name not in ("name", "voice")
    }
    return Persona(name=name, voice=voice, **values)


def sample_personas(rng: np.random.Generator, count: int, voices: list[VoiceStyle]) -> list[Persona]:
    """`count` listeners of different personas (cycling through all of them when `count` exceeds their number);
    `voices` holds one voice per listener."""
    order = [PERSONA_NAMES[int(i)] for i in rng.permutation(len(PERSONA_NAMES))]
    return [draw_persona(order[i % len(order)], rng, voices[i]) for i in range(count)]


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
    """Frames where a stressed stretch of speech starts (a loudness or pitch peak)."""
    laughs: list[int]
    """Frames where the speaker starts laughing."""

    @property
    def turn_ends(self) -> list[int]:
        """Frames where the speaker stops for long enough to hand the turn over."""
        return [start for start, _ in pauses(self.active, TURN_END_FRAMES)]


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
    """Where `persona` nods: in pauses (after its lag, inside the pause; questions and turn ends invite one more
    often), and on stressed words."""
    lag = seconds_to_frames(persona.lag_s)
    after_question = set(cues.question_ends)
    plan = []
    for start, end in pauses(cues.active):
        asked = any(start - 3 <= q <= start + 3 for q in after_question)
        inviting = asked or end - start >= TURN_END_FRAMES
        if rng.random() >= min(1.0, persona.nod_rate * (1.25 if inviting else 1.0)):
            continue
        at = min(start + lag + int(rng.integers(0, 4)), end - 5)
        vocal = end - at >= VOCAL_FRAMES and rng.random() < persona.vocal_rate
        word = BACKCHANNELS[int(rng.integers(len(BACKCHANNELS)))] if vocal else None
        cycles = 1 + int(rng.poisson(persona.nod_cycles))
        amp = float(rng.uniform(0.8, 1.2)) * persona.nod_depth * persona.expressiveness
        plan.append(Backchannel(at, min(cycles, 4), amp, round(persona.nod_frames * rng.uniform(0.9, 1.1)), word))
    for at in cues.emphasis:
        if rng.random() < persona.emphasis_nod:
            amp = float(rng.uniform(0.3, 0.5)) * persona.nod_depth * persona.expressiveness
            plan.append(Backchannel(at + lag, 1, amp, round(persona.nod_frames), None))
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
        if rng.random() < 0.5 + 0.45 * min(persona.mimicry_gain, 1.0):
            gain = persona.mimicry_gain * float(rng.uniform(0.5, 1.2))
            max_at(out, gain * smile[start:end], start + lag + int(rng.integers(-3, 4)))
    return smooth(out, 1.5)


def laugh_onsets(cues: SpeakerCues, persona: Persona, rng: np.random.Generator) -> list[int]:
    """Frames where the listener laughs along: at the speaker's laughs (P laugh_rate) and big smiles (a third)."""
    lag = seconds_to_frames(persona.lag_s)
    onsets = [at + lag for at in cues.laughs if rng.random() < persona.laugh_rate]
    for start, end in smile_episodes(cues.smile, threshold=0.35):
        if end - start > 10 and rng.random() < persona.laugh_rate / 3:
            onsets.append(start + lag + 5)
    return sorted(onsets)


def listener_smile(cues: SpeakerCues, persona: Persona, laughs: list[int], rng: np.random.Generator) -> NDArray:
    """(T,) smile: mimicry of the speaker's smiles, laughs, a resting smile and occasional own smiles."""
    frames = len(cues.smile)
    own = np.zeros(frames, dtype=np.float32)
    for at in poisson_onsets(rng, frames, 1.5, refractory=5 * FPS):
        max_at(own, envelope(8, int(rng.integers(10, 40)), 15) * rng.uniform(0.1, 0.25), at)
    for at in laughs:
        max_at(own, envelope(4, int(rng.integers(15, 35)), 15) * rng.uniform(0.5, 0.7), at)
    smile = mimicry(cues, persona, rng) + persona.expressiveness * (own + persona.resting_smile)
    return np.clip(smile, 0.0, 0.95)


def laugh_mouth(frames: int, laughs: list[int], persona: Persona, rng: np.random.Generator) -> NDArray:
    """(T,) jaw opening of laughter: 5 Hz bursts over 0.6-1.4 s at each onset."""
    jaw = np.zeros(frames, dtype=np.float32)
    for at in laughs:
        length = int(rng.integers(15, 35))
        bursts = np.abs(np.sin(np.pi * np.arange(length) / 2.5)) * envelope(3, length - 9, 6)
        max_at(jaw, bursts * rng.uniform(0.2, 0.35) * persona.expressiveness, at)
    return jaw


def brow_tracks(cues: SpeakerCues, persona: Persona, rng: np.random.Generator) -> dict[str, NDArray[np.float32]]:
    """(T,) brow tracks: both up after questions, down (furrowed) at stressed words and questions, the right outer
    brow up at questions and stressed claims; the persona's amplitudes, after its lag."""
    frames, lag, gain = len(cues.active), seconds_to_frames(persona.lag_s), persona.expressiveness
    raise_, furrow, one = (np.zeros(frames, np.float32) for _ in range(3))
    for at in cues.question_ends:
        if rng.random() < 0.85:
            max_at(raise_, envelope(5, 8, 12) * rng.uniform(0.7, 1.3) * persona.brow_raise * gain, at + lag)
        max_at(furrow, envelope(8, 20, 15) * rng.uniform(0.7, 1.2) * persona.furrow * gain, at + lag)
        max_at(one, envelope(6, 15, 15) * rng.uniform(0.7, 1.2) * persona.one_brow * gain, at + lag)
    for at in cues.emphasis:
        if rng.random() < 0.5:
            max_at(furrow, envelope(6, 12, 12) * rng.uniform(0.6, 1.0) * persona.furrow * gain, at + lag)
            max_at(one, envelope(5, 10, 12) * rng.uniform(0.5, 0.9) * persona.one_brow * gain, at + lag)
            max_at(raise_, envelope(4, 5, 10) * rng.uniform(0.3, 0.6) * persona.brow_raise * gain, at + lag)
    return {"raise": raise_, "furrow": furrow + 0.3 * persona.furrow * gain, "one": one}


def looking_away(cues: SpeakerCues, persona: Persona, rng: np.random.Generator) -> NDArray[np.float32]:
    """(T, 2) gaze aversion: up and to one side for 1-2 s after some questions and stressed words (thinking)."""
    frames, lag = len(cues.active), seconds_to_frames(persona.lag_s)
    x, y = np.zeros(frames, np.float32), np.zeros(frames, np.float32)
    for at in sorted([*cues.question_ends, *cues.emphasis]):
        if rng.random() < persona.gaze_aversion:
            shape = envelope(4, int(rng.integers(20, 45)), 6)
            max_at(y, 0.3 * shape, at + lag)
            add_at(x, 0.35 * shape * (1.0 if rng.random() < 0.5 else -1.0), at + lag)
    return np.stack([np.clip(x, -0.35, 0.35), y], axis=1)


def head_tilts(cues: SpeakerCues, persona: Persona, rng: np.random.Generator) -> NDArray[np.float32]:
    """(T,) head roll: a slow tilt to one side at some stressed words and turn ends."""
    frames, lag = len(cues.active), seconds_to_frames(persona.lag_s)
    roll = np.zeros(frames, np.float32)
    for at in sorted([*cues.emphasis, *cues.turn_ends]):
        if rng.random() < 0.5:
            side = 1.0 if rng.random() < 0.5 else -1.0
            tilt = envelope(10, int(rng.integers(10, 30)), 12) * side * persona.tilt * rng.uniform(0.7, 1.2)
            add_at(roll, tilt, at + lag)
    return np.clip(roll, -0.2, 0.2)


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
    frames, gain = len(cues.active), persona.expressiveness
    face = neutral_face(frames)
    write_mouth(face, mouth_tracks(own_audio, jaw_gain=0.7))
    laughs = laugh_onsets(cues, persona, rng)
    smile = listener_smile(cues, persona, laughs, rng)
    set_pair(face, "mouthSmile", smile, persona.smirk)
    set_pair(face, "mouthDimple", 0.4 * persona.smirk * smile, persona.smirk)
    set_pair(face, "cheekSquint", 0.4 * smile, persona.smirk)
    add_to(face, "jawOpen", laugh_mouth(frames, laughs, persona, rng))
    set_pair(face, "mouthPress", np.full(frames, persona.press * gain, np.float32))
    add_to(face, "mouthRollLower", np.full(frames, 0.5 * persona.press * gain, np.float32))

    brows = brow_tracks(cues, persona, rng)
    add_to(face, "browInnerUp", brows["raise"])
    set_pair(face, "browOuterUp", 0.7 * brows["raise"])
    set_pair(face, "browDown", brows["furrow"])
    add_to(face, "browOuterUpRight", brows["one"])
    set_pair(face, "eyeWide", max(persona.brow_raise - 0.35, 0.0) * 2.0 * brows["raise"])  # the most animated
    set_pair(face, "eyeSquint", np.full(frames, persona.squint * gain, np.float32) + 0.35 * smile)

    pitch = np.full(frames, persona.head_back, np.float32)
    for b in plan:
        add_at(pitch, nod_kernel(b.amplitude, b.cycles, b.cycle_frames), b.frame)
    nod_blinks = [b.frame + 2 for b in plan if rng.random() < 0.35]
    gaze = gaze_track(rng, frames, persona.gaze_shifts_per_min, 0.2) + looking_away(cues, persona, rng)
    yaw = sway(rng, frames, persona.sway) + 0.08 * gaze[:, 0]
    roll = sway(rng, frames, 0.5 * persona.sway, 2.0) + head_tilts(cues, persona, rng)
    set_head(face, pitch + sway(rng, frames, 0.4 * persona.sway), yaw, roll)
    set_eyes(face, blink_track(rng, frames, persona.blinks_per_min, nod_blinks), np.clip(gaze, -0.6, 0.6))
    return clip_face(face)
