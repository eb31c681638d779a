"""Signaling messages of the built-in room (JSON over WebSocket), as msgspec Structs: the schema is the types.

The server only relays signaling; media flows peer to peer (a full mesh). aiortc has no trickle ICE, so every
offer and answer carries a complete SDP with its candidates. A newcomer offers to everyone already in the room.

client -> server                                   server -> client
  {"type": "join", "name": str, "role": ROLE}        {"type": "welcome", "id": ID, "peers": [PEER, ...]}
  {"type": "offer"|"answer", "to": ID, "sdp": str}   {"type": "peer-joined", "peer": PEER}
  {"type": "stats", "stats": {str: number|str|null}} {"type": "peer-left", "id": ID}
  {"type": "leave"}                                  {"type": "offer"|"answer", "from": ID, "sdp": str}
  {"type": "ping"}                                   {"type": "stats", "from": ID, "stats": {...}}
                                                     {"type": "error", "message": str}
                                                     {"type": "room-closed", "reason": str}
                                                     {"type": "pong"}
PEER = {"id": ID, "name": str, "role": "browser"|"engine"}

    message = parse_client_message(text)          # MessageError naming the field; a ClientMessage Struct
    text = encode_message(Welcome(id=..., peers=[...]))   # checked against the schema before it is sent
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, TypeVar, get_args

import msgspec

MAX_MESSAGE_BYTES = 64 * 1024  # an SDP with full ICE is a few kB
MAX_SDP_CHARS = 48 * 1024
MAX_NAME_CHARS = 64
MAX_STATS_KEYS = 32
MAX_PEERS = 64

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SDP_CHARS)]
MAX_REASON_CHARS = 256
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REASON_CHARS)]
Role = Literal["browser", "engine"]
StatValue = int | float | Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)] | None  # floats are finite
Stats = Annotated[dict[Name, StatValue], msgspec.Meta(max_length=MAX_STATS_KEYS)]


class MessageError(ValueError):
    """A signaling message that is not valid JSON or does not follow the schema; the message says which field."""


def clip(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` cut to `limit` characters (an error or reason field quoting what a peer sent must still fit)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    """Control characters a peer put in a field name or value, escaped: an error stays one line in a log."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda match: repr(match.group())[1:-1], text)


class _Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    """Every message is a JSON object whose "type" names its Struct; unknown fields are refused."""


class PeerInfo(msgspec.Struct, forbid_unknown_fields=True):
    """A participant as the others see it."""

    id: Id
    name: Name
    role: Role


# client -> server


class Join(_Message, tag="join"):
    name: Name
    role: Role


class Offer(_Message, tag="offer"):
    to: Id
    sdp: Sdp


class Answer(_Message, tag="answer"):
    to: Id
    sdp: Sdp


class PublishStats(_Message, tag="stats"):
    stats: Stats


class Leave(_Message, tag="leave"):
    pass


class Ping(_Message, tag="ping"):
    pass


ClientMessage = Join | Offer | Answer | PublishStats | Leave | Ping


# server -> client


class Welcome(_Message, tag="welcome"):
    id: Id
    peers: Annotated[list[PeerInfo], msgspec.Meta(max_length=MAX_PEERS)]


class PeerJoined(_Message, tag="peer-joined"):
    peer: PeerInfo


class PeerLeft(_Message, tag="peer-left"):
    id: Id


class RelayedOffer(_Message, tag="offer"):
    sender: Id = msgspec.field(name="from")
    sdp: Sdp


class RelayedAnswer(_Message, tag="answer"):
    sender: Id = msgspec.field(name="from")
    sdp: Sdp


class RelayedStats(_Message, tag="stats"):
    sender: Id = msgspec.field(name="from")
    stats: Stats


class ErrorNotice(_Message, tag="error"):
    message: Reason


class ClosedNotice(_Message, tag="room-closed"):
    reason: Reason


class Pong(_Message, tag="pong"):
    pass


ServerMessage = (
    Welcome | PeerJoined | PeerLeft | RelayedOffer | RelayedAnswer | RelayedStats | ErrorNotice | ClosedNotice | Pong
)


class _Tag(msgspec.Struct):
    """Just the "type" of a message, to say which kind of message broke the schema."""

    type: object = None


_CLIENT = msgspec.json.Decoder(ClientMessage)
_SERVER = msgspec.json.Decoder(ServerMessage)
_TAG = msgspec.json.Decoder(_Tag)
_ENCODER = msgspec.json.Encoder()
T = TypeVar("T")


def _types(union: object) -> list[str]:
    return sorted(str(struct.__struct_config__.tag) for struct in get_args(union))


def _parse(text: str | bytes, decoder: msgspec.json.Decoder[T], union: object) -> T:
    if len(text) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(text)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        return decoder.decode(text)
    except msgspec.ValidationError as err:
        try:
            kind = _TAG.decode(text).type
        except (msgspec.ValidationError, msgspec.DecodeError):
            kind = None  # not even an object
        if kind not in _types(union):
            raise MessageError(f"unknown message type {clip(repr(kind), 40)}; expected one of {_types(union)}") from err
        raise MessageError(f"{kind!r} message: {one_line(str(err))}") from err
    except msgspec.DecodeError as err:
        raise MessageError(f"message is not JSON: {one_line(str(err))}") from err


def parse_client_message(text: str | bytes) -> ClientMessage:
    """A message a participant sent to the server (raises MessageError)."""
    return _parse(text, _CLIENT, ClientMessage)


def parse_server_message(text: str | bytes) -> ServerMessage:
    """A message the server sent to a participant (raises MessageError)."""
    return _parse(text, _SERVER, ServerMessage)


def encode_message(message: ClientMessage | ServerMessage) -> str:
    """The JSON text of a message, checked against its schema first: a bug in the sender shows up here (as a
    MessageError) rather than at the other end. (Struct constructors do not check lengths or value ranges.)"""
    data = _ENCODER.encode(message)
    if isinstance(message, ClientMessage):
        parse_client_message(data)
    else:
        parse_server_message(data)
    return data.decode()
