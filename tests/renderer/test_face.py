import numpy as np
import pytest

from renderer import face as F


def test_layout_is_58_and_25_with_named_ranges():
    assert len(F.BLENDSHAPE_NAMES) == F.NUM_BLENDSHAPES == 52
    assert len(set(F.BLENDSHAPE_NAMES)) == 52
    assert list(F.BLENDSHAPE_NAMES) == sorted(F.BLENDSHAPE_NAMES)  # ARKit/MediaPipe alphabetical order
    assert len(F.FACE_NAMES) == F.FACE_DIM == 58
    assert F.FACE_NAMES[F.ROTATION] == ("pitch", "yaw", "roll")
    assert len(F.EMOTION_NAMES) == F.EMOTION_DIM == 25
    assert F.EMOTION_NAMES[F.VALENCE_AROUSAL] == ("Valence", "Arousal")
    assert len(F.MIRROR_PAIRS) == 20
    assert all(right in F.BLENDSHAPE_INDEX for _, right in F.MIRROR_PAIRS)


def test_neutral_face_is_valid_and_calm():
    face = F.neutral_face(10)
    assert face.shape == (10, 58) and face.dtype == np.float32
    F.validate_face(face, check_range=True)
    emotion = F.emotion_from_face(face)
    assert np.argmax(emotion[0, F.EXPRESSIONS]) == 0  # Neutral
    assert np.all(emotion[:, F.AUS] == 0)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 57)), "expected shape (T, 58)"),
        (np.zeros((2, 3, 58)), "expected shape (T, 58)"),
        (np.array([["a"] * 58]), "numeric"),
    ],
)
def test_validate_rejects_wrong_shape_and_dtype(array, message):
    with pytest.raises(F.FaceValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        F.validate_face(array, "listener face")


def test_validate_names_the_frame_with_nan_or_out_of_range():
    face = F.neutral_face(5)
    face[3, 7] = np.nan
    with pytest.raises(F.FaceValueError, match=r"clip\.npy: frame 3, value 7 is NaN"):
        F.validate_face(face, "clip.npy")
    face[3, 7] = 0.0
    face[2, F.FACE_INDEX["jawOpen"]] = 1.7
    with pytest.raises(F.FaceValueError, match=r"frame 2, value 24 = 1\.7000 is outside"):
        F.validate_face(face, "clip.npy", check_range=True)
    emotion = np.zeros((3, 25))
    emotion[1, 0] = np.inf
    with pytest.raises(F.FaceValueError, match="frame 1, value 0 is inf"):
        F.validate_emotion(emotion)


def test_rotation_round_trip():
    rng = np.random.default_rng(0)
    for pitch, yaw, roll in rng.uniform(-1.0, 1.0, size=(50, 3)):
        assert np.allclose(F.euler_from_matrix(F.rotation_matrix(pitch, yaw, roll)), (pitch, yaw, roll))


def test_rotation_signs_follow_the_documented_convention():
    nose = np.array([0.0, 0.0, 1.0])  # the face looks along +z, towards the viewer
    assert (F.rotation_matrix(0.3, 0, 0) @ nose)[1] > 0  # pitch +: chin up, the face tilts upwards
    assert (F.rotation_matrix(0, 0.3, 0) @ nose)[0] > 0  # yaw +: turns towards the image's right
    assert (F.rotation_matrix(0, 0, 0.3) @ np.array([1.0, 0, 0]))[1] > 0  # roll +: counter-clockwise


def test_face_from_mediapipe_maps_names_pose_and_translation():
    class Cat:
        def __init__(self, name, score):
            self.category_name, self.score = name, score

    cats = [Cat("_neutral", 0.9), Cat("jawOpen", 0.4), Cat("mouthSmileLeft", 0.7)]
    transform = np.eye(4)
    transform[:3, :3] = F.rotation_matrix(0.1, -0.2, 0.05) * 1.3  # MediaPipe matrices may carry scale
    transform[:3, 3] = [2.0, -1.0, -45.0]
    face = F.face_from_mediapipe(cats, transform)
    assert face.shape == (58,)
    assert face[F.FACE_INDEX["jawOpen"]] == pytest.approx(0.4)
    assert face[F.FACE_INDEX["mouthSmileLeft"]] == pytest.approx(0.7)
    assert face[F.FACE_INDEX["tongueOut"]] == 0.0
    assert np.allclose(face[F.ROTATION], [0.1, -0.2, 0.05], atol=1e-6)
    assert np.allclose(face[F.TRANSLATION], [0.2, -0.1, 0.5], atol=1e-6)
    with pytest.raises(F.FaceValueError, match="4x4"):
        F.face_from_mediapipe({}, np.eye(3))


def test_mirror_swaps_pairs_and_is_an_involution():
    face = F.neutral_face()
    face[F.FACE_INDEX["eyeBlinkLeft"]] = 1.0
    face[F.FACE_INDEX["yaw"]] = 0.3
    mirrored = F.mirror_face(face)
    assert mirrored[F.FACE_INDEX["eyeBlinkRight"]] == 1.0 and mirrored[F.FACE_INDEX["eyeBlinkLeft"]] == 0.0
    assert mirrored[F.FACE_INDEX["yaw"]] == pytest.approx(-0.3)
    assert np.array_equal(F.mirror_face(mirrored), face)


def test_emotion_follows_the_face():
    face = F.neutral_face(3)
    face[1, F.FACE_INDEX["mouthSmileLeft"]] = face[1, F.FACE_INDEX["mouthSmileRight"]] = 0.8
    face[2, F.FACE_INDEX["browDownLeft"]] = face[2, F.FACE_INDEX["browDownRight"]] = 0.8
    emotion = F.emotion_from_face(face)
    F.validate_emotion(emotion, check_range=True)
    assert np.allclose(emotion[:, F.EXPRESSIONS].sum(-1), 1.0, atol=1e-5)
    happy, angry = F.EMOTION_NAMES.index("Happy"), F.EMOTION_NAMES.index("Anger")
    assert np.argmax(emotion[1, F.EXPRESSIONS]) + 17 == happy
    assert np.argmax(emotion[2, F.EXPRESSIONS]) + 17 == angry
    assert emotion[1, F.EMOTION_NAMES.index("AU12")] == 1.0
    assert emotion[1, 15] > 0.5 > emotion[0, 15] > emotion[2, 15]  # valence
