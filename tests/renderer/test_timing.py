import numpy as np
import pytest

from renderer.face import FACE_INDEX, neutral_face
from renderer.timing import FacePacer, interpolate_faces


def ramp(frames):
    faces = neutral_face(frames)
    faces[:, FACE_INDEX["jawOpen"]] = np.arange(frames) / 100  # value = input frame index / 100
    return faces


def test_interpolate_25_to_30_keeps_duration_and_follows_the_ramp():
    faces = ramp(50)  # 2 s
    out = interpolate_faces(faces, 25.0, 30.0)
    assert out.shape == (60, 58) and out.dtype == np.float32
    times = np.arange(60) / 30.0
    expected = np.minimum(times * 25.0, 49) / 100
    assert np.allclose(out[:, FACE_INDEX["jawOpen"]], expected, atol=1e-6)
    assert np.array_equal(out[0], faces[0])


def test_interpolate_same_rate_is_identity_and_checks_input():
    faces = ramp(7)
    assert np.array_equal(interpolate_faces(faces, 25, 25), faces)
    assert interpolate_faces(np.zeros((0, 58)), 25, 30).shape == (0, 58)
    with pytest.raises(ValueError, match="positive"):
        interpolate_faces(faces, 0, 30)
    with pytest.raises(ValueError, match="58"):
        interpolate_faces(np.zeros((3, 50)), 25, 30)


def test_pacer_interpolates_holds_and_rejects_time_going_back():
    pacer = FacePacer(capacity=3)
    with pytest.raises(LookupError):
        pacer.face_at(0.0)
    faces = ramp(5)
    for k in range(5):
        pacer.push(k * 0.04, faces[k])
    assert len(pacer) == 3  # keeps only the newest frames
    jaw = FACE_INDEX["jawOpen"]
    assert pacer.face_at(0.10)[jaw] == pytest.approx(0.025)  # halfway between frames 2 and 3
    assert pacer.face_at(1.0)[jaw] == pytest.approx(0.04)  # late: hold the newest
    assert pacer.face_at(0.0)[jaw] == pytest.approx(0.02)  # before the oldest kept frame
    with pytest.raises(ValueError, match="increase"):
        pacer.push(0.16, faces[0])
