"""Who listens, changed from a room's page: control messages on the `reactions` data channel, msgpack maps like
its face frames (engine.rooms.reactions).

page -> engine, a change (a key left out keeps its value):

    {"v": 1, "type": "listener-set", "persona": str, "expressiveness": float in [0.25, 2.5] | nil}

    `persona`: a name the engine listed; `expressiveness`: X (engine.listener), nil: as the persona's style moves.

engine -> every page, the listener now: when a page's channel opens, and to every page after each change:

    {"v": 1, "type": "listener", "persona": str, "expressiveness": float | nil, "personas": [str, ...],
     "range": [0.25, 2.5], "by": "start" | the id of the participant who made the change}

A page's message that breaks the schema (a wrong type, NaN, a value out of range, an unknown key, more than
MAX_CONTROL_BYTES) is refused with the field it broke: `decode_control` raises ControlError.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from engine.listener import EXPRESSIVENESS_RANGE, MAX_PERSONA_CHARS, ListenerChange
from engine.rooms.messages import one_line

VERSION: Literal[1] = 1
MAX_CONTROL_BYTES = 256  # a change is ~60 bytes
MAX_PERSONAS = 64

PersonaName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PERSONA_CHARS)]
Expressiveness = Annotated[float, msgspec.Meta(ge=EXPRESSIVENESS_RANGE[0], le=EXPRESSIVENESS_RANGE[1])]  # no NaN


class ControlError(ValueError):
    """A control message that does not follow the schema above; the message says which field."""


class ListenerSet(msgspec.Struct, tag_field="type", tag="listener-set", forbid_unknown_fields=True):
    """A page's change of the listener (see the module docstring)."""

    v: Literal[1]
    persona: PersonaName | msgspec.UnsetType = msgspec.UNSET
    expressiveness: Expressiveness | msgspec.UnsetType | None = msgspec.UNSET


class ListenerState(msgspec.Struct, tag_field="type", tag="listener"):
    """The engine's listener as every page is told it."""

    v: Literal[1]
    persona: PersonaName
    expressiveness: float | None
    personas: Annotated[list[PersonaName], msgspec.Meta(max_length=MAX_PERSONAS)]
    range: tuple[float, float]
    by: str


_DECODER = msgspec.msgpack.Decoder(ListenerSet)
_STATE_DECODER = msgspec.msgpack.Decoder(ListenerState)
_ENCODER = msgspec.msgpack.Encoder()


def decode_control(data: bytes | str) -> ListenerSet:
    """Parse and check a page's control message; raises ControlError naming what was wrong."""
    if isinstance(data, str):
        raise ControlError("a text message; listener controls are msgpack (binary) maps")
    if len(data) > MAX_CONTROL_BYTES:
        raise ControlError(f"a message of {len(data)} bytes is over the {MAX_CONTROL_BYTES}-byte limit")
    try:
        message = _DECODER.decode(data)
    except msgspec.ValidationError as err:
        raise ControlError(f"listener control: {one_line(str(err))}") from None
    except msgspec.DecodeError as err:
        raise ControlError(f"listener control is not msgpack: {one_line(str(err))}") from None
    if message.persona is msgspec.UNSET and message.expressiveness is msgspec.UNSET:
        raise ControlError("listener control names neither a persona nor an expressiveness")
    return message


def encode_state(change: ListenerChange, personas: list[str]) -> bytes:
    """The msgpack bytes of the `listener` message for `change`, listing `personas`."""
    listener = change.listener
    state = ListenerState(VERSION, listener.persona.name, listener.expressiveness, personas[:MAX_PERSONAS],
                          EXPRESSIVENESS_RANGE, change.by)  # fmt: skip
    return _ENCODER.encode(state)


def decode_state(data: bytes) -> ListenerState:
    """The engine's `listener` message (for clients written in Python, and the tests)."""
    return _STATE_DECODER.decode(data)
