"""Signaling messages of the built-in room (JSON over WebSocket) and their validation.

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
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024  # an SDP with full ICE is a few kB
MAX_SDP_CHARS = 48 * 1024
MAX_NAME_CHARS = 64
MAX_STATS_KEYS = 32
ROLES = ("browser", "engine")

Message = dict[str, Any]


class MessageError(ValueError):
    """A signaling message that is not valid JSON or does not follow the schema; the message says which field."""


def _text(limit: int) -> Any:
    def check(value: Any) -> bool:
        return isinstance(value, str) and 0 < len(value) <= limit

    check.__doc__ = f"a non-empty string of at most {limit} characters"
    return check


def _role(value: Any) -> bool:
    """'browser' or 'engine'"""
    return value in ROLES


def _stats(value: Any) -> bool:
    """a map of at most 32 short names to numbers, short strings or null"""
    if not isinstance(value, dict) or len(value) > MAX_STATS_KEYS:
        return False
    for key, item in value.items():
        if not (isinstance(key, str) and 0 < len(key) <= MAX_NAME_CHARS):
            return False
        number = isinstance(item, int | float) and not isinstance(item, bool) and math.isfinite(item)
        if not (item is None or number or (isinstance(item, str) and len(item) <= MAX_NAME_CHARS)):
            return False
    return True


def _peer(value: Any) -> bool:
    """a peer {id, name, role}"""
    return validate_fields(value, PEER_FIELDS) is None


def _peers(value: Any) -> bool:
    """a list of peers"""
    return isinstance(value, list) and len(value) <= 64 and all(_peer(p) for p in value)


_id, _name, _sdp, _reason = _text(32), _text(MAX_NAME_CHARS), _text(MAX_SDP_CHARS), _text(256)
PEER_FIELDS = {"id": _id, "name": _name, "role": _role}
CLIENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "join": {"name": _name, "role": _role},
    "offer": {"to": _id, "sdp": _sdp},
    "answer": {"to": _id, "sdp": _sdp},
    "stats": {"stats": _stats},
    "leave": {},
    "ping": {},
}
SERVER_SCHEMAS: dict[str, dict[str, Any]] = {
    "welcome": {"id": _id, "peers": _peers},
    "peer-joined": {"peer": _peer},
    "peer-left": {"id": _id},
    "offer": {"from": _id, "sdp": _sdp},
    "answer": {"from": _id, "sdp": _sdp},
    "stats": {"from": _id, "stats": _stats},
    "error": {"message": _reason},
    "room-closed": {"reason": _reason},
    "pong": {},
}


def validate_fields(message: Any, fields: dict[str, Any]) -> str | None:
    """None if `message` is a dict with exactly `fields` (plus "type"), each passing its check; else the problem."""
    if not isinstance(message, dict):
        return "expected a JSON object"
    extra = sorted(set(message) - set(fields) - {"type"})
    if extra:
        return f"unexpected field(s) {extra}"
    for name, check in fields.items():
        if name not in message:
            return f"missing field {name!r}"
        if not check(message[name]):
            return f"field {name!r} must be {check.__doc__}"
    return None


def parse_message(text: str | bytes, schemas: dict[str, dict[str, Any]]) -> Message:
    """Decode one JSON message and check it against `schemas` (CLIENT_SCHEMAS or SERVER_SCHEMAS)."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(text)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MessageError(f"message is not JSON: {err}") from err
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in schemas:
        raise MessageError(f"unknown message type {kind!r}; expected one of {sorted(schemas)}")
    problem = validate_fields(message, schemas[kind])
    if problem is not None:
        raise MessageError(f"{kind!r} message: {problem}")
    return message


def parse_client_message(text: str | bytes) -> Message:
    """A message a participant sent to the server (raises MessageError)."""
    return parse_message(text, CLIENT_SCHEMAS)


def parse_server_message(text: str | bytes) -> Message:
    """A message the server sent to a participant (raises MessageError)."""
    return parse_message(text, SERVER_SCHEMAS)


def make_message(kind: str, schemas: dict[str, dict[str, Any]], **fields: Any) -> str:
    """Build and check a message; a bug in the sender shows up here rather than at the other end."""
    message = {"type": kind, **fields}
    problem = validate_fields(message, schemas.get(kind, {})) if kind in schemas else f"unknown type {kind!r}"
    if problem is not None:
        raise MessageError(f"building {kind!r}: {problem}")
    return json.dumps(message, separators=(",", ":"))
