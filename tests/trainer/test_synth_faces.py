"""trainer.synth motion, speaker and listener: face tracks as pure functions of cues (no espeak-ng needed)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from renderer.face import FACE_INDEX, validate_face
from trainer.synth.listener import (
    PERSONA_NAMES,
    SpeakerCues,
    draw_persona,
    listener_face,
    pauses,
    plan_backchannels,
    sample_personas,
    smile_of,
)
from trainer.synth.motion import blink_track, envelope, nod_kernel, sway
from trainer.synth.speaker import SpeakerStyle, mouth_tracks, speaker_face
from trainer.synth.speech import AudioCues, Utterance, VoiceStyle
from trainer.synth.text import SentenceKind

FRAMES = 1501  # 60 s


def syllable_cues(frames: int = FRAMES) -> tuple[AudioCues, list[Utterance]]:
    """Speech 2 s on, 1 s off, with 4 Hz syllables; the odd utterances are questions."""
    t = np.arange(frames) / 25.0
    on = (t % 3.0) < 2.0
    loudness = (on * (0.6 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)).astype(np.float32)
    rounding = (on * (np.sin(2 * np.pi * 0.7 * t) > 0.5)).astype(np.float32)
    starts = np.arange(0.0, t[-1] - 2.0, 3.0)
    kinds = [SentenceKind.QUESTION if i % 2 else SentenceKind.STATEMENT for i in range(len(starts))]
    utterances = [Utterance("x", kind, float(s), float(s) + 2.0) for s, kind in zip(starts, kinds, strict=True)]
    pitch = (on * (120 + 30 * (np.sin(2 * np.pi * 0.5 * t) > 0.9))).astype(np.float32)  # a pitch accent now and then
    return AudioCues(loudness=loudness, active=on, rounding=rounding, pitch=pitch), utterances


STYLE = SpeakerStyle(
    expressiveness=1.0, jaw_gain=1.0, smiles_per_min=4.0, blinks_per_min=18.0, gaze_shifts_per_min=12.0, sway=0.05
)
PERSONA = replace(
    draw_persona("nodder", np.random.default_rng(0), VoiceStyle("en-us+f2", 170, 50)),
    expressiveness=1.0, lag_s=0.4, nod_rate=1.0, mimicry_gain=0.8, vocal_rate=0.5, brow_raise=0.4,
)  # fmt: skip


def col(face: np.ndarray, name: str) -> np.ndarray:
    return face[:, FACE_INDEX[name]]


def test_motion_kernels_start_and_end_at_rest() -> None:
    env = envelope(5, 3, 7)
    assert len(env) == 15 and env.max() == 1.0 and env[0] < 0.3 and env[-1] < 0.2
    nod = nod_kernel(0.1, 2, 12)
    assert len(nod) == 24 and nod.min() == pytest.approx(-0.1) and nod[0] == 0.0 and nod.max() <= 0.0
    assert np.std(sway(np.random.default_rng(0), 500, 0.05)) == pytest.approx(0.05, rel=1e-3)


def test_blinks_happen_15_to_20_times_a_minute() -> None:
    blinks = blink_track(np.random.default_rng(2), FRAMES * 5, 18.0)  # 5 minutes
    closures = np.sum((blinks[1:] > 0.5) & (blinks[:-1] <= 0.5))
    assert 15 * 5 * 0.75 <= closures <= 20 * 5 * 1.25


def test_the_mouth_follows_the_speech_envelope() -> None:
    cues, _ = syllable_cues()
    tracks = mouth_tracks(cues)
    assert np.corrcoef(tracks["jawOpen"], cues.loudness)[0, 1] > 0.9
    silent = ~(cues.active | np.roll(cues.active, 2) | np.roll(cues.active, -2))  # silence away from its edges
    assert tracks["jawOpen"][silent].max() < 0.05 < tracks["jawOpen"][cues.active].mean()
    assert tracks["mouthClose"][silent].mean() > 3 * tracks["mouthClose"][cues.active].mean()
    rounded = cues.rounding > 0.5
    assert tracks["mouthFunnel"][rounded].mean() > 0.2 > tracks["mouthFunnel"][~rounded].mean()


def test_the_speaker_face_is_valid_smooth_and_reacts_to_questions() -> None:
    cues, utterances = syllable_cues()
    face = speaker_face(cues, utterances, STYLE, np.random.default_rng(0))
    validate_face(face, "speaker", check_range=True)
    assert np.abs(np.diff(face[:, 52:55], axis=0)).max() < 0.03  # head: no jumps (radians per frame)
    assert np.abs(np.diff(smile_of(face))).max() < 0.1
    ends = [round(u.end_s * 25) for u in utterances if u.kind is SentenceKind.QUESTION]
    near = np.concatenate([np.arange(e - 5, e + 10) for e in ends])
    brows = col(face, "browInnerUp")
    assert brows[near].mean() > 0.2 and brows[near].mean() > 1.5 * brows.mean()
    assert np.array_equal(face, speaker_face(cues, utterances, STYLE, np.random.default_rng(0)))


def speaker_cues(seed: int = 0) -> SpeakerCues:
    cues, utterances = syllable_cues()
    face = speaker_face(cues, utterances, STYLE, np.random.default_rng(seed))
    ends = [round(u.end_s * 25) for u in utterances if u.kind is SentenceKind.QUESTION]
    return SpeakerCues(cues.active, smile_of(face), ends, [], [])


def quiet(frames: int = FRAMES) -> AudioCues:
    zeros = np.zeros(frames, np.float32)
    return AudioCues(zeros, np.zeros(frames, bool), zeros, zeros)


def test_backchannel_nods_fall_in_the_pauses_after_the_lag() -> None:
    seen = speaker_cues()
    plan = plan_backchannels(seen, PERSONA, np.random.default_rng(0))
    gaps = pauses(seen.active)
    assert len(gaps) == 20 and len(plan) == len(gaps)  # nod_rate 1: every pause gets a nod
    for b, (start, end) in zip(plan, gaps, strict=True):
        assert start + 10 <= b.frame < end  # lag 0.4 s = 10 frames
    assert any(b.word for b in plan) and not all(b.word for b in plan)
    shy = plan_backchannels(seen, replace(PERSONA, nod_rate=0.3), np.random.default_rng(0))
    assert len(shy) < len(plan)


def test_listener_face_mimics_smiles_after_its_lag_and_nods_in_pauses() -> None:
    seen = speaker_cues()
    plan = plan_backchannels(seen, PERSONA, np.random.default_rng(1))
    face = listener_face(seen, PERSONA, plan, quiet(), np.random.default_rng(1))
    validate_face(face, "listener", check_range=True)
    speaker, listener = seen.smile, smile_of(face)
    corr = [np.corrcoef(speaker[: FRAMES - lag], listener[lag:])[0, 1] for lag in range(30)]
    assert abs(int(np.argmax(corr)) - 10) <= 3 and max(corr) > 0.6
    velocity = np.diff(col(face, "pitch"), prepend=0.0) ** 2
    assert velocity[~seen.active].mean() > 3 * velocity[seen.active].mean()
    assert np.abs(np.diff(face[:, 52:55], axis=0)).max() < 0.05  # a brisk nod, 1.2 rad/s at most; no jumps


def test_listener_brows_rise_after_questions() -> None:
    seen = speaker_cues()
    face = listener_face(seen, PERSONA, [], quiet(), np.random.default_rng(3))
    brows = col(face, "browInnerUp")
    after = np.concatenate([np.arange(q + 10, q + 25) for q in seen.question_ends])
    assert brows[after].mean() > 0.15 and brows[after].mean() > 2 * brows.mean()


def test_listeners_are_drawn_from_different_personas() -> None:
    voices = [VoiceStyle("en-us", 170, 50)] * 6
    personas = sample_personas(np.random.default_rng(0), 6, voices)
    assert {p.name for p in personas} == set(PERSONA_NAMES) and len(PERSONA_NAMES) == 6
    assert all(0.2 <= p.lag_s <= 0.9 for p in personas)


def persona_face(name: str, seed: int = 0) -> tuple[np.ndarray, SpeakerCues]:
    """A 60 s reaction of one individual of persona `name` to the syllable speaker, who also laughs now and then."""
    seen = speaker_cues()
    seen = SpeakerCues(seen.active, seen.smile, seen.question_ends, seen.emphasis, laughs=list(range(100, FRAMES, 300)))
    rng = np.random.default_rng(seed)
    persona = draw_persona(name, rng, VoiceStyle("en-us", 170, 50))
    return listener_face(seen, persona, plan_backchannels(seen, persona, rng), quiet(), rng), seen


def after(events: list[int], frames: range) -> np.ndarray:
    """The frames `frames` after each event, within the clip."""
    index = np.concatenate([np.arange(e + frames.start, e + frames.stop) for e in events])
    return index[index < FRAMES]


def test_each_persona_shows_its_signature() -> None:
    faces = {name: persona_face(name) for name in PERSONA_NAMES}
    for face, _ in faces.values():
        validate_face(face, "listener", check_range=True)
    smile = {name: smile_of(face).mean() for name, (face, _) in faces.items()}
    assert max(smile, key=smile.__getitem__) == "enthusiast" and min(smile, key=smile.__getitem__) == "reserved"
    thinker, seen = faces["thinker"]
    furrow = col(thinker, "browDownLeft")
    assert (
        furrow[after(seen.question_ends, range(20, 40))].mean()
        > 0.3
        > faces["mirror"][0][:, FACE_INDEX["browDownLeft"]].max()
    )
    assert col(thinker, "eyeLookUpLeft").max() > 0.2  # looks away to think
    sceptic = faces["sceptic"][0]
    assert col(sceptic, "mouthSmileLeft").mean() > 3 * col(sceptic, "mouthSmileRight").mean()  # a one-sided smirk
    assert col(sceptic, "browOuterUpRight").max() > 2 * col(sceptic, "browOuterUpLeft").max() + 0.1
    enthusiast, seen = faces["enthusiast"]
    assert col(enthusiast, "jawOpen")[after(seen.laughs, range(5, 25))].mean() > 0.1  # laughs along
    nods = {name: np.abs(np.diff(col(face, "pitch"))).sum() for name, (face, _) in faces.items()}
    assert nods["nodder"] > 2 * max(nods["reserved"], nods["sceptic"], nods["thinker"])
