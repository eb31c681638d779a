"""The face representation shared by every part of ReactDiff Live.

One face frame is 58 float32 values in the layout of REACT's FaceVerse coefficients:

    [0:52)   52 expression blendshape weights, ARKit semantics, in ``BLENDSHAPE_NAMES`` order, range [0, 1]
    [52:55)  head rotation in radians: pitch (+ = chin up), yaw (+ = face turns to the image's right),
             roll (+ = head tilts counter-clockwise as seen in the image)
    [55:58)  head translation from the rest position, in units of 10 cm: x (+ = image right),
             y (+ = up), z (+ = towards the camera)

One emotion frame is 25 float32 values in REACT's emotion CSV layout: 15 action-unit occurrences in [0, 1],
valence and arousal in [-1, 1], then 8 expression probabilities that sum to 1.

Frames run at ``FPS`` = 25. This module is the only place that defines the layout; everything else imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

FPS = 25
FRAME_SECONDS = 1.0 / FPS

# ARKit's 52 blendshapes in alphabetical order (MediaPipe's order, minus its `_neutral`, plus `tongueOut`).
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft",
    "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip
ROTATION_NAMES: tuple[str, ...] = ("pitch", "yaw", "roll")
TRANSLATION_NAMES: tuple[str, ...] = ("tx", "ty", "tz")
FACE_NAMES: tuple[str, ...] = BLENDSHAPE_NAMES + ROTATION_NAMES + TRANSLATION_NAMES

NUM_BLENDSHAPES = 52
FACE_DIM = 58
BLENDSHAPES = slice(0, 52)
ROTATION = slice(52, 55)
TRANSLATION = slice(55, 58)
BLENDSHAPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(BLENDSHAPE_NAMES)}
FACE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FACE_NAMES)}

# Largest head pose the avatar and the model are meant for; larger values are clipped by `clip_face`.
MAX_ROTATION_RAD = 1.0
MAX_TRANSLATION = 2.0  # 20 cm
TRANSLATION_UNIT_CM = 10.0
# MediaPipe's facial transform puts a face at the usual webcam distance around z = -50 cm.
MEDIAPIPE_REST_CM = np.array([0.0, 0.0, -50.0], dtype=np.float32)

FACE_LOW = np.concatenate([np.zeros(52), np.full(3, -MAX_ROTATION_RAD), np.full(3, -MAX_TRANSLATION)]).astype(
    np.float32
)
FACE_HIGH = np.concatenate([np.ones(52), np.full(3, MAX_ROTATION_RAD), np.full(3, MAX_TRANSLATION)]).astype(np.float32)

# Left/right mirror pairs (the avatar and the data augmentation both use them).
MIRROR_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (name, name.removesuffix("Left") + "Right") for name in BLENDSHAPE_NAMES if name.endswith("Left")
)

AU_NAMES: tuple[str, ...] = (
    "AU1", "AU2", "AU4", "AU6", "AU7", "AU9", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU23", "AU24", "AU25", "AU26",
)  # fmt: skip
EXPRESSION_NAMES: tuple[str, ...] = (
    "Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt",
)  # fmt: skip
EMOTION_NAMES: tuple[str, ...] = (*AU_NAMES, "Valence", "Arousal", *EXPRESSION_NAMES)
EMOTION_DIM = 25
AUS = slice(0, 15)
VALENCE_AROUSAL = slice(15, 17)
EXPRESSIONS = slice(17, 25)
EMOTION_LOW = np.array([0.0] * 15 + [-1.0, -1.0] + [0.0] * 8, dtype=np.float32)
EMOTION_HIGH = np.ones(EMOTION_DIM, dtype=np.float32)


class FaceValueError(ValueError):
    """An array handed across a boundary is not a valid face or emotion sequence."""


def neutral_face(frames: int | None = None) -> NDArray[np.float32]:
    """A calm neutral face: all blendshapes 0, head upright at the rest position. Shape (58,) or (frames, 58)."""
    face = np.zeros(FACE_DIM, dtype=np.float32)
    return face if frames is None else np.tile(face, (frames, 1))


def clip_face(face: NDArray[np.floating]) -> NDArray[np.float32]:
    """Clip (..., 58) faces into the valid value ranges."""
    return np.clip(face, FACE_LOW, FACE_HIGH).astype(np.float32)


def validate_frames(
    array: ArrayLike, dim: int, what: str, *, check_range: tuple[NDArray, NDArray] | None = None
) -> NDArray[np.float32]:
    """Check that `array` is a (T, dim) or (dim,) float sequence with finite values; return it as float32.

    `what` names the array in the error ("speaker face from clip.npy"). With `check_range`, values more than
    1e-3 outside [low, high] are an error too.
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "fiu":
        raise FaceValueError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2) or arr.shape[-1] != dim:
        raise FaceValueError(
            f"{what}: expected shape (T, {dim}) or ({dim},), got {arr.shape}; each frame must hold exactly {dim} values"
        )
    frames = arr.reshape(-1, dim)
    bad = ~np.isfinite(frames)
    if bad.any():
        t, d = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(frames[t, d]) else "inf"
        raise FaceValueError(f"{what}: frame {t}, value {d} is {kind} ({int(bad.sum())} non-finite values)")
    if check_range is not None:
        low, high = check_range
        outside = (frames < low - 1e-3) | (frames > high + 1e-3)
        if outside.any():
            t, d = np.argwhere(outside)[0]
            raise FaceValueError(
                f"{what}: frame {t}, value {d} = {frames[t, d]:.4f} is outside [{low[d]:.2f}, {high[d]:.2f}]"
            )
    return arr.astype(np.float32, copy=False)


def squeezed_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """`shape` without its singleton axes: what numpy's `squeeze()` (the official REACT loaders) leaves."""
    return tuple(n for n in shape if n != 1)


def face_frames_shape(shape: tuple[int, ...], what: str = "face") -> tuple[int, int]:
    """(T, 58) for an array of face frames of `shape` once its singleton axes are dropped, as REACT's official
    loaders read 3DMM files: (T, 1, 58) (how REACT ships them), (1, T, 58) and (T, 58, 1) hold T frames, (1, 1, 58)
    one. Any other shape, or no frames, is a FaceValueError naming `what`."""
    kept = squeezed_shape(shape)
    if len(kept) == 1:
        kept = (1, *kept)  # a single frame squeezes to (58,)
    if len(kept) != 2 or kept[1] != FACE_DIM or 0 in shape:
        raise FaceValueError(
            f"{what}: expected 3DMM coefficients (52 expression, 3 rotation, 3 translation) in an array that "
            f"squeezes to (T, {FACE_DIM}) with T >= 1, such as (T, 1, {FACE_DIM}); got shape {shape}"
        )
    return kept[0], FACE_DIM


def validate_face(array: ArrayLike, what: str = "face", *, check_range: bool = False) -> NDArray[np.float32]:
    """Validate a (T, 58) or (58,) face array at a boundary (see `validate_frames`)."""
    return validate_frames(array, FACE_DIM, what, check_range=(FACE_LOW, FACE_HIGH) if check_range else None)


def validate_emotion(array: ArrayLike, what: str = "emotion", *, check_range: bool = False) -> NDArray[np.float32]:
    """Validate a (T, 25) or (25,) emotion array at a boundary (see `validate_frames`)."""
    return validate_frames(array, EMOTION_DIM, what, check_range=(EMOTION_LOW, EMOTION_HIGH) if check_range else None)


def mirror_face(face: NDArray[np.floating]) -> NDArray[np.float32]:
    """Swap left and right: paired blendshapes exchange values, yaw, roll and x translation change sign."""
    out = np.array(face, dtype=np.float32, copy=True)
    for left, right in MIRROR_PAIRS:
        i, j = FACE_INDEX[left], FACE_INDEX[right]
        out[..., [i, j]] = out[..., [j, i]]
    for name in ("yaw", "roll", "tx"):
        out[..., FACE_INDEX[name]] *= -1.0
    return out


# --- head pose ------------------------------------------------------------------------------------------


def motion_energy(frames: ArrayLike) -> float:
    """How much a face moves: the mean per-frame speed of the 58 face numbers of (..., T, >=58) frames (mean
    |x(t+1) - x(t)| over time, dimensions and everything else). One definition for the trainer's scores and the
    engine's expressiveness."""
    face = np.asarray(frames, np.float64)[..., :FACE_DIM]
    return float(np.abs(np.diff(face, axis=-2)).mean())


def rotation_matrix(pitch: float, yaw: float, roll: float) -> NDArray[np.float64]:
    """3x3 head rotation in a camera frame with x right, y up, z towards the viewer; the face looks along +z.

    R = Rz(roll) @ Ry(yaw) @ Rx(-pitch): positive pitch lifts the chin (the face's +z axis tilts towards +y),
    positive yaw turns it towards +x (the image's right), positive roll tilts it counter-clockwise.
    """
    cp, sp = np.cos(-pitch), np.sin(-pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cr, sr = np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ ry @ rx


def euler_from_matrix(rot: NDArray[np.floating]) -> tuple[float, float, float]:
    """Inverse of `rotation_matrix`: (pitch, yaw, roll) in radians, yaw in [-pi/2, pi/2]."""
    yaw = float(np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0)))
    pitch = -float(np.arctan2(rot[2, 1], rot[2, 2]))
    roll = float(np.arctan2(rot[1, 0], rot[0, 0]))
    return pitch, yaw, roll


# --- MediaPipe ------------------------------------------------------------------------------------------


class Category(Protocol):
    """What MediaPipe's FaceLandmarker returns per blendshape (`mediapipe.tasks...Category`)."""

    category_name: str | None
    score: float | None


def face_from_mediapipe(
    blendshapes: Iterable[Category] | Mapping[str, float], transform: ArrayLike
) -> NDArray[np.float32]:
    """One 58-float face from FaceLandmarker output: blendshape categories and the 4x4 facial transform.

    `blendshapes` is the list of categories for one face (or a name→score mapping); `_neutral` is ignored and
    the missing `tongueOut` stays 0. `transform` is the face's 4x4 transformation matrix (translation in cm).
    """
    scores = (
        dict(blendshapes)
        if isinstance(blendshapes, Mapping)
        else {c.category_name: c.score for c in blendshapes if c.category_name}
    )
    face = neutral_face()
    for name, score in scores.items():
        index = BLENDSHAPE_INDEX.get(str(name))
        if index is not None and score is not None:
            face[index] = score
    matrix = np.asarray(transform, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise FaceValueError(f"facial transform: expected a finite 4x4 matrix, got shape {matrix.shape}")
    rot = matrix[:3, :3] / np.linalg.norm(matrix[:3, :3], axis=0, keepdims=True)  # drop any scale
    face[ROTATION] = euler_from_matrix(rot)
    face[TRANSLATION] = (matrix[:3, 3] - MEDIAPIPE_REST_CM) / TRANSLATION_UNIT_CM
    return clip_face(face)


# --- emotion --------------------------------------------------------------------------------------------


def _mean(face: NDArray[np.float32], *names: str) -> NDArray[np.float32]:
    return np.mean([face[..., BLENDSHAPE_INDEX[n]] for n in names], axis=0)


def _pair(face: NDArray[np.float32], stem: str) -> NDArray[np.float32]:
    return _mean(face, stem + "Left", stem + "Right")


def emotion_from_face(face: ArrayLike) -> NDArray[np.float32]:
    """REACT's 25 emotion values computed from (..., 58) faces: a fixed, documented mapping.

    AUs follow FACS↔ARKit correspondences (AU1 inner brow raiser ← browInnerUp, AU12 lip corner puller ←
    mouthSmile, ...), scaled so a half-strength blendshape reads as a full occurrence. Valence and arousal are
    squashed linear read-outs; the 8 expression probabilities are a softmax over expression evidence.
    """
    f = np.asarray(face, dtype=np.float32)[..., :NUM_BLENDSHAPES]
    smile, frown = _pair(f, "mouthSmile"), _pair(f, "mouthFrown")
    brow_down, brow_outer = _pair(f, "browDown"), _pair(f, "browOuterUp")
    brow_inner = f[..., BLENDSHAPE_INDEX["browInnerUp"]]
    jaw_open = f[..., BLENDSHAPE_INDEX["jawOpen"]]
    eye_wide, sneer = _pair(f, "eyeWide"), _pair(f, "noseSneer")
    cheek, press, dimple = _pair(f, "cheekSquint"), _pair(f, "mouthPress"), _pair(f, "mouthDimple")
    upper_up, stretch = _pair(f, "mouthUpperUp"), _pair(f, "mouthStretch")
    lips_part = np.maximum(jaw_open, _pair(f, "mouthLowerDown"))
    raw_aus = [
        brow_inner, brow_outer, brow_down, cheek, _pair(f, "eyeSquint"), sneer, upper_up, smile,
        dimple, frown, f[..., BLENDSHAPE_INDEX["mouthShrugLower"]],
        _mean(f, "mouthRollLower", "mouthRollUpper"), press, lips_part, jaw_open,
    ]  # fmt: skip
    aus = np.clip(2.0 * np.stack(raw_aus, axis=-1), 0.0, 1.0)
    valence = np.tanh(2.5 * (smile + 0.5 * cheek - frown - 0.6 * brow_down - 0.6 * sneer))
    arousal = np.tanh(2.5 * (eye_wide + 0.6 * brow_inner + 0.5 * brow_outer + 0.6 * jaw_open + stretch) - 0.3)
    smile_asym = np.abs(f[..., BLENDSHAPE_INDEX["mouthSmileLeft"]] - f[..., BLENDSHAPE_INDEX["mouthSmileRight"]])
    evidence = np.stack(
        [
            np.full_like(smile, 0.6),  # Neutral wins when nothing else is present
            4.0 * smile + 2.0 * cheek,
            4.0 * frown + 2.0 * brow_inner * (1.0 - smile),
            3.0 * eye_wide + 2.0 * brow_outer + 1.5 * jaw_open,
            2.0 * eye_wide + 2.0 * brow_inner + 3.0 * stretch,
            4.0 * sneer + 2.0 * upper_up,
            4.0 * brow_down + 2.0 * press,
            4.0 * smile_asym + 2.0 * dimple,
        ],
        axis=-1,
    )
    evidence = np.exp(3.0 * (evidence - evidence.max(axis=-1, keepdims=True)))
    expressions = evidence / evidence.sum(axis=-1, keepdims=True)
    out = np.concatenate([aus, valence[..., None], arousal[..., None], expressions], axis=-1)
    return out.astype(np.float32)
