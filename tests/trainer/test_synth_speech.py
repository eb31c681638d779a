"""trainer.synth text, espeak-ng and speech tracks: sentences, real espeak-ng speech, what faces read from audio."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trainer.synth import espeak
from trainer.synth.speech import (
    SAMPLE_RATE,
    SPEECH_RMS,
    VoiceStyle,
    audio_cues,
    fill_gaps,
    frame_count,
    set_level,
    speak_monologue,
    trim_silence,
)
from trainer.synth.text import SentenceKind, make_sentence

END = {SentenceKind.STATEMENT: ".", SentenceKind.QUESTION: "?", SentenceKind.EXCLAMATION: "!"}


def test_the_grammar_gives_many_distinct_well_formed_sentences_of_every_kind() -> None:
    rng = np.random.default_rng(0)
    sentences = [make_sentence(rng) for _ in range(400)]
    assert len({s.text for s in sentences}) > 380
    assert {s.kind for s in sentences} == set(END)  # laughs are not sentences
    for s in sentences:
        assert s.text[0].isupper() and s.text.endswith(END[s.kind]) and "  " not in s.text and " ," not in s.text


def test_frame_count_matches_react() -> None:
    assert frame_count(30) == 751 and frame_count(10) == 251


def test_fill_gaps_closes_only_short_gaps_between_speech() -> None:
    mask = np.array([0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0], dtype=bool)
    assert fill_gaps(mask, 3).astype(int).tolist() == [0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0]


def tone(seconds: float, freqs: list[float]) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return np.sum([np.sin(2 * np.pi * f * t) for f in freqs], axis=0).astype(np.float32)


def test_audio_cues_find_speech_and_rounding() -> None:
    # 1 s silence, 1 s of energy below 700 Hz (like "oo"), 1 s of energy at 1.5-2.5 kHz (like "ee"), 1 s silence
    silence = np.zeros(SAMPLE_RATE, np.float32)
    rounded = set_level(tone(1.0, [150, 300, 450, 600]), SPEECH_RMS)
    spread = set_level(tone(1.0, [150, 1500, 2000, 2500]), SPEECH_RMS)
    cues = audio_cues(np.concatenate([silence, rounded, spread, silence]), frame_count(4))
    assert not cues.active[:23].any() and cues.active[27:73].all() and not cues.active[78:].any()
    assert np.allclose(cues.loudness[30:70], 1.0, atol=0.1)
    assert cues.rounding[30:45].mean() > 0.8 and cues.rounding[55:70].mean() < 0.1


def test_pitch_is_found_in_voiced_frames_only() -> None:
    # 1 s of a 110 Hz voice, 1 s of 180 Hz (a pitch accent), 1 s of noise (unvoiced), 1 s of silence
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)
    parts = [set_level(tone(1.0, [f0 * k for k in (1, 2, 3, 4)]), SPEECH_RMS) for f0 in (110, 180)]
    audio = np.concatenate([*parts, set_level(noise, SPEECH_RMS), np.zeros(SAMPLE_RATE, np.float32)])
    cues = audio_cues(audio, frame_count(4))
    assert np.allclose(cues.pitch[3:22], 110, rtol=0.03) and np.allclose(cues.pitch[28:47], 180, rtol=0.03)
    assert (cues.pitch[53:72] == 0).mean() > 0.9 and not cues.pitch[78:].any()


def test_monologues_laugh_after_some_exclamations(binary: str) -> None:
    style = VoiceStyle("en-us+f3", 170, 50)
    kinds = [u.kind for seed in range(6) for u in speak_monologue(binary, np.random.default_rng(seed), style, 30.0)[1]]
    assert SentenceKind.LAUGH in kinds and kinds[0] is not SentenceKind.LAUGH
    follows = [kinds[i - 1] for i, k in enumerate(kinds) if k is SentenceKind.LAUGH]
    assert SentenceKind.LAUGH not in follows and SentenceKind.QUESTION not in follows


def test_trim_and_level() -> None:
    x = np.concatenate([np.zeros(100), tone(0.5, [200]), np.zeros(100)]).astype(np.float32)
    trimmed = trim_silence(x)
    assert len(trimmed) < 0.5 * SAMPLE_RATE + 2 and abs(trimmed[0]) > 0.01
    assert np.sqrt(np.mean(set_level(trimmed, 0.05) ** 2)) == pytest.approx(0.05, rel=0.05)


@pytest.fixture(scope="module")
def binary() -> str:
    return espeak.find_espeak()


def test_espeak_speaks_deterministically(binary: str) -> None:
    a = espeak.synthesize(binary, "Did you see the old bridge?", voice="en-us+f3", rate_wpm=170, pitch=50)
    b = espeak.synthesize(binary, "Did you see the old bridge?", voice="en-us+f3", rate_wpm=170, pitch=50)
    assert a.rate == 22050 and len(a.samples) > 0.5 * a.rate
    assert np.array_equal(a.samples, b.samples) and np.abs(a.samples).max() > 0.05
    assert espeak.espeak_version(binary)[0].isdigit()


def test_unknown_voices_are_refused(binary: str) -> None:
    espeak.check_voices(binary, ["en-us", "en-gb+m3", "en-029"])
    with pytest.raises(espeak.EspeakError, match="unknown espeak-ng voice 'xx-yy'"):
        espeak.check_voices(binary, ["en-us", "xx-yy"])
    with pytest.raises(espeak.EspeakError, match="unknown espeak-ng variant 'nope'"):
        espeak.check_voices(binary, ["en-us+nope"])


def test_monologue_places_sentences_with_pauses(binary: str) -> None:
    style = VoiceStyle("en-gb+m2", 170, 45)
    audio, utterances = speak_monologue(binary, np.random.default_rng(1), style, 8.0)
    assert audio.shape == (8 * SAMPLE_RATE,) and audio.dtype == np.float32 and np.abs(audio).max() <= 1.0
    assert len(utterances) >= 2
    for first, second in itertools.pairwise(utterances):
        gap = 0.1 if second.kind is SentenceKind.LAUGH else 0.25  # a laugh follows its sentence closely
        assert first.start_s < first.end_s and second.start_s - first.end_s >= gap - 1e-6  # a pause between
    cues = audio_cues(audio, frame_count(8.0))
    u = utterances[0]
    assert cues.active[round(u.start_s * 25) + 3 : round(u.end_s * 25) - 3].mean() > 0.8  # speech where placed
