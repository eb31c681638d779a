"""The `reactions` data channel: msgpack-encoded, timestamped listener face frames, for clients that draw the
avatar themselves.

One message per listener frame (25 fps), a msgpack map:

    {"v": 1, "type": "face", "i": frame index, "t": media time (s), "ts": sender's Unix time (s),
     "face": bin (58 float32 little-endian, renderer.face layout), "emotion": bin (25 float32 LE, optional)}

Floats travel as raw float32 bytes (232 bytes per face) so a browser decodes them with one Float32Array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from numpy.typing import NDArray

from renderer.face import EMOTION_DIM, FACE_DIM

CHANNEL_LABEL = "reactions"
CHANNEL_ID = 0
"""The channel is negotiated out of band (both peers create it with this id), so either side may offer."""
VERSION = 1
MAX_MESSAGE_BYTES = 1024


class ReactionError(ValueError):
    """A reactions message that does not follow the format above."""


@dataclass(frozen=True)
class ReactionFrame:
    """One listener frame as sent on the channel."""

    index: int
    t_s: float
    """Media time of the frame (index / 25 s from the stream's start)."""
    sent_s: float
    """Unix time (s) at which the sender emitted it."""
    face: NDArray[np.float32]  # (58,)
    emotion: NDArray[np.float32] | None = None  # (25,)


def encode_reaction(frame: ReactionFrame) -> bytes:
    """The msgpack bytes of one frame."""
    face = np.asarray(frame.face, np.float32)
    if face.shape != (FACE_DIM,):
        raise ReactionError(f"reaction frame {frame.index}: face must have shape ({FACE_DIM},), got {face.shape}")
    message: dict[str, Any] = {
        "v": VERSION,
        "type": "face",
        "i": int(frame.index),
        "t": float(frame.t_s),
        "ts": float(frame.sent_s),
        "face": face.astype("<f4").tobytes(),
    }
    if frame.emotion is not None:
        emotion = np.asarray(frame.emotion, np.float32)
        if emotion.shape != (EMOTION_DIM,):
            raise ReactionError(f"reaction frame {frame.index}: emotion must have shape ({EMOTION_DIM},)")
        message["emotion"] = emotion.astype("<f4").tobytes()
    return bytes(msgpack.packb(message, use_bin_type=True))


def _floats(message: dict[str, Any], key: str, size: int) -> NDArray[np.float32]:
    raw = message.get(key)
    if not isinstance(raw, bytes) or len(raw) != 4 * size:
        raise ReactionError(f"reactions message: {key!r} must be {4 * size} bytes of float32")
    values = np.frombuffer(raw, "<f4").astype(np.float32)
    if not np.isfinite(values).all():
        raise ReactionError(f"reactions message: {key!r} holds non-finite values")
    return values


def _finite(value: Any) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value)


def decode_reaction(data: bytes) -> ReactionFrame:
    """Parse and check one message; raises ReactionError naming the bad field."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ReactionError(f"reactions message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        message = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as err:
        raise ReactionError(f"reactions message is not msgpack: {err}") from err
    if not isinstance(message, dict) or message.get("type") != "face" or message.get("v") != VERSION:
        raise ReactionError(f"reactions message: expected a map with type 'face' and v {VERSION}")
    index, t_s, sent_s = message.get("i"), message.get("t"), message.get("ts")
    if not isinstance(index, int) or index < 0:
        raise ReactionError("reactions message: 'i' must be a frame index >= 0")
    if not (_finite(t_s) and _finite(sent_s)):
        raise ReactionError("reactions message: 't' and 'ts' must be finite numbers (seconds)")
    assert isinstance(t_s, float | int) and isinstance(sent_s, float | int)
    emotion = _floats(message, "emotion", EMOTION_DIM) if "emotion" in message else None
    return ReactionFrame(index, float(t_s), float(sent_s), _floats(message, "face", FACE_DIM), emotion)
