"""trainer.behaviour: the smile-back lag and the motion energy read from face frames."""

from __future__ import annotations

import numpy as np
import pytest

from renderer.face import FACE_DIM, FACE_INDEX, motion_energy
from trainer.behaviour import lagged_correlation, median_reaction_lag_ms, reaction_lag, smile


def faces_smiling(smiles: np.ndarray) -> np.ndarray:
    """(T, 58) faces whose two mouthSmile values follow `smiles` (T,)."""
    out = np.zeros((len(smiles), FACE_DIM), np.float32)
    out[:, FACE_INDEX["mouthSmileLeft"]] = out[:, FACE_INDEX["mouthSmileRight"]] = smiles
    return out


@pytest.mark.parametrize("lag", [0, 7, 30])
def test_a_listener_who_smiles_back_later_is_found_at_that_lag(lag):
    rng = np.random.default_rng(lag)
    speaker = np.convolve(rng.random(400 + lag), np.ones(9) / 9, mode="same")  # smiles that come and go
    listener = 0.5 * speaker[: len(speaker) - lag]  # the same smiles, half as wide, `lag` frames later
    listener = np.concatenate([np.full(lag, listener[0]), listener])
    found, r = reaction_lag(smile(faces_smiling(speaker)), smile(faces_smiling(listener)))
    assert found == lag and r > 0.99
    pairs = np.stack([faces_smiling(speaker)] * 3), np.stack([faces_smiling(listener)] * 3)
    assert median_reaction_lag_ms(*pairs) == lag * 40


def test_a_still_face_has_no_correlation_and_no_motion():
    still = np.zeros(100)
    assert not lagged_correlation(np.sin(np.arange(100) / 5), still).any()
    assert motion_energy(faces_smiling(still)) == 0


def test_motion_energy_is_the_mean_speed_of_the_58_numbers():
    frames = np.zeros((11, FACE_DIM + 25))  # (T, 83): the emotion columns do not count
    frames[:, 0] = np.arange(11) * 0.1  # one number moving 0.1 a frame
    frames[:, FACE_DIM:] = np.arange(11)[:, None]
    assert motion_energy(frames) == pytest.approx(0.1 / FACE_DIM)
    assert motion_energy(np.stack([frames, 2 * frames])) == pytest.approx(1.5 * 0.1 / FACE_DIM)  # over a batch


def test_the_nearest_centroid_names_personas_from_their_motion():
    from trainer.behaviour import NearestCentroid

    rng = np.random.default_rng(0)

    def people(count, *, nod, smile_level):
        out = np.zeros((count, 200, FACE_DIM))
        out[..., FACE_INDEX["pitch"]] = nod * np.sin(np.arange(200) / 3.0) * rng.uniform(0.8, 1.2, (count, 1))
        out[..., FACE_INDEX["mouthSmileLeft"]] = smile_level + 0.02 * rng.standard_normal((count, 200))
        return out + 0.005 * rng.standard_normal(out.shape)

    train = {"nodder": people(8, nod=0.1, smile_level=0.05), "smiler": people(8, nod=0.01, smile_level=0.5)}
    classifier = NearestCentroid(train)
    test = {"nodder": people(5, nod=0.1, smile_level=0.05), "smiler": people(5, nod=0.01, smile_level=0.5)}
    assert classifier.accuracy(test) == 1.0
    swapped = {"nodder": test["smiler"], "smiler": test["nodder"]}
    assert classifier.accuracy(swapped) == 0.0
