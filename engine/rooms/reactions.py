"""The `reactions` data channel: msgpack-encoded, timestamped listener face frames, for clients that draw the
avatar themselves.

One message per listener frame (25 fps), a msgpack map:

    {"v": 1, "type": "face", "i": frame index, "t": media time (s), "ts": sender's Unix time (s),
     "face": bin (58 float32 little-endian, renderer.face layout), "emotion": bin (25 float32 LE, optional)}

Floats travel as raw float32 bytes (232 bytes per face) so a browser decodes them with one Float32Array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

from renderer.face import EMOTION_DIM, FACE_DIM

CHANNEL_LABEL = "reactions"
CHANNEL_ID = 0
"""The channel is negotiated out of band (both peers create it with this id), so either side may offer."""
VERSION: Literal[1] = 1
MAX_MESSAGE_BYTES = 1024
MAX_SECONDS = 1e12  # bounds media and Unix times (and so refuses NaN and infinities)


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


Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]


def _floats(count: int) -> object:
    return Annotated[bytes, msgspec.Meta(min_length=4 * count, max_length=4 * count)]


class FaceMessage(msgspec.Struct, tag_field="type", tag="face", omit_defaults=True):
    """The wire form of a ReactionFrame (the msgpack map above); unknown keys are ignored, for newer senders."""

    v: Literal[1]
    i: Annotated[int, msgspec.Meta(ge=0)]
    t: Seconds
    ts: Seconds
    face: _floats(FACE_DIM)  # type: ignore[valid-type]
    emotion: _floats(EMOTION_DIM) | None = None  # type: ignore[valid-type]


_DECODER = msgspec.msgpack.Decoder(FaceMessage)
_ENCODER = msgspec.msgpack.Encoder()


def _checked(values: NDArray[np.float32] | None, size: int, what: str, index: int) -> bytes | None:
    if values is None:
        return None
    array = np.asarray(values, np.float32)
    if array.shape != (size,):
        raise ReactionError(f"reaction frame {index}: {what} must have shape ({size},), got {array.shape}")
    return array.astype("<f4").tobytes()


def encode_reaction(frame: ReactionFrame) -> bytes:
    """The msgpack bytes of one frame."""
    face = _checked(frame.face, FACE_DIM, "face", frame.index)
    assert face is not None
    message = FaceMessage(VERSION, int(frame.index), float(frame.t_s), float(frame.sent_s), face,
                          _checked(frame.emotion, EMOTION_DIM, "emotion", frame.index))  # fmt: skip
    return _ENCODER.encode(message)


def _finite(raw: bytes, what: str) -> NDArray[np.float32]:
    values = np.frombuffer(raw, "<f4").astype(np.float32)
    if not np.isfinite(values).all():
        raise ReactionError(f"reactions message: {what!r} holds non-finite values")
    return values


def decode_reaction(data: bytes) -> ReactionFrame:
    """Parse and check one message; raises ReactionError naming the bad field."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ReactionError(f"reactions message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        message = _DECODER.decode(data)
    except msgspec.ValidationError as err:
        raise ReactionError(f"reactions message: {err}") from err
    except msgspec.DecodeError as err:
        raise ReactionError(f"reactions message is not msgpack: {err}") from err
    emotion = None if message.emotion is None else _finite(message.emotion, "emotion")
    return ReactionFrame(message.i, message.t, message.ts, _finite(message.face, "face"), emotion)
