import numpy as np
import pytest

from engine import features as F


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * F.SAMPLE_RATE)) / F.SAMPLE_RATE
    envelope = (np.sin(2 * np.pi * 3.0 * t) > 0).astype(np.float32)  # 3 Hz syllables with silences
    tone = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 660 * t)
    return (0.3 * envelope * tone + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_one_feature_row_per_40ms_frame():
    feats = F.audio_features(_speechlike(2.03))
    assert feats.shape == (50, F.AUDIO_FEATURE_DIM) and feats.dtype == np.float32
    assert np.isfinite(feats).all()


@pytest.mark.parametrize("chunk", [160, 640, 961, 4096, 32000])
def test_streaming_equals_offline_for_any_chunking(chunk):
    audio = _speechlike(3.0, seed=1)
    offline = F.audio_features(audio)
    stream = F.StreamingAudioFeatures()
    online = np.concatenate([stream.push(audio[i : i + chunk]) for i in range(0, audio.size, chunk)])
    assert online.shape == offline.shape
    np.testing.assert_allclose(online, offline, atol=1e-5, rtol=1e-6)


def test_features_are_causal():
    audio = _speechlike(2.0, seed=2)
    changed = audio.copy()
    changed[25 * 640 :] = np.random.default_rng(3).standard_normal(changed.size - 25 * 640).astype(np.float32)
    a, b = F.audio_features(audio), F.audio_features(changed)
    np.testing.assert_array_equal(a[:25], b[:25])  # frames before the change never see it
    assert not np.allclose(a[25:], b[25:])


def test_energy_tracks_the_envelope():
    feats = F.audio_features(_speechlike(2.0))
    loud = feats[:, F.N_MELS : F.N_MELS + F.SUBFRAMES].mean(-1)
    t = (np.arange(len(feats)) + 0.5) * 0.04
    voiced = np.sin(2 * np.pi * 3.0 * t) > 0.3
    silent = np.sin(2 * np.pi * 3.0 * t) < -0.3
    assert loud[voiced].mean() > loud[silent].mean() + 3.0  # natural-log units


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros((2, 640), np.float32), "mono"),
        (np.zeros(640, np.int16), "float"),
        (np.array([0.0, np.nan] * 400, np.float32), "not finite"),
    ],
)
def test_bad_audio_is_a_clear_error(samples, message):
    with pytest.raises(F.AudioFormatError, match=message):
        F.audio_features(samples)
