"""Room URLs the engine understands, parsed and checked at the boundary.

    http(s)://HOST:PORT/r/<room>?token=<token>      the built-in room server (`reactdiff-room`)
    janus+ws(s)://HOST:PORT/?room=<id>[&pin=<pin>]  a Janus VideoRoom through its WebSocket API (port 8188 by default)

Both take `&display=<name>` (the name others see) and `&insecure=1` (accept a self-signed TLS certificate).

`parse_room_url` returns a `RoomURL` with the WebSocket address to connect to; errors say what to fix.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urlencode, urlsplit

ROOM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
DISPLAY_MAX = 64


class RoomURLError(ValueError):
    """A room URL that cannot be used; the message shows the accepted forms."""


class RoomKind(enum.Enum):
    """Which kind of room a URL names."""

    BUILTIN = "builtin"
    JANUS = "janus"


URL_FORMS = "http(s)://HOST:PORT/r/ROOM?token=TOKEN (reactdiff-room) or janus+ws(s)://HOST:PORT/?room=ID (Janus)"


@dataclass(frozen=True)
class RoomURL:
    """A parsed room URL."""

    kind: RoomKind
    host: str
    port: int
    secure: bool
    """TLS (https / wss)."""
    room: str
    """Room id: the built-in server's random id, or the Janus VideoRoom number as text."""
    token: str = ""
    """Built-in rooms: the room token from the URL."""
    pin: str = ""
    """Janus: the room's PIN, if it has one."""
    display: str = "ReactDiff avatar"
    """Name shown to other participants."""
    verify_tls: bool = True
    """Check the server's TLS certificate (`&insecure=1` in the URL turns it off, for a self-signed LAN server)."""

    @property
    def ws_url(self) -> str:
        """The WebSocket address to connect to (signaling for built-in rooms, the Janus API for Janus)."""
        scheme = "wss" if self.secure else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.kind is RoomKind.JANUS:
            return f"{scheme}://{host}:{self.port}/"
        return f"{scheme}://{host}:{self.port}/ws/{self.room}?{urlencode({'token': self.token})}"

    @property
    def page_url(self) -> str:
        """Built-in rooms: the web page participants open."""
        scheme = "https" if self.secure else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/r/{self.room}?{urlencode({'token': self.token})}"


def _query_value(query: dict[str, list[str]], name: str, url: str, *, required: bool) -> str:
    values = query.get(name, [])
    if len(values) > 1:
        raise RoomURLError(f"room URL {url!r}: {name}= is given {len(values)} times; give it once")
    if required and not values:
        raise RoomURLError(f"room URL {url!r}: missing {name}=...; expected {URL_FORMS}")
    return values[0] if values else ""


def parse_room_url(url: str) -> RoomURL:
    """Parse a built-in room URL or a janus+ws URL (see the module docstring); raises RoomURLError."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as err:
        raise RoomURLError(f"room URL {url!r}: {err}; expected {URL_FORMS}") from err
    if not parts.hostname:
        raise RoomURLError(f"room URL {url!r}: no host; expected {URL_FORMS}")
    query = parse_qs(parts.query, keep_blank_values=True)
    display = _query_value(query, "display", url, required=False) or RoomURL.display
    insecure = _query_value(query, "insecure", url, required=False)
    if insecure not in ("", "0", "1"):
        raise RoomURLError(f"room URL {url!r}: insecure= must be 1 (skip the TLS certificate check) or 0")
    if len(display) > DISPLAY_MAX:
        raise RoomURLError(f"room URL {url!r}: display= is longer than {DISPLAY_MAX} characters")
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        room_url = _builtin(url, parts.hostname, port, scheme == "https", parts.path, query, display)
        return replace(room_url, verify_tls=insecure != "1")
    if scheme in ("janus+ws", "janus+wss"):
        room = _query_value(query, "room", url, required=True)
        if not room.isdigit() or len(room) > 19:
            raise RoomURLError(f"room URL {url!r}: room={room!r} must be the VideoRoom's number, e.g. room=1234")
        pin = _query_value(query, "pin", url, required=False)
        secure = scheme == "janus+wss"
        return RoomURL(
            RoomKind.JANUS, parts.hostname, port or 8188, secure, room, pin=pin, display=display,
            verify_tls=insecure != "1",
        )  # fmt: skip
    raise RoomURLError(f"room URL {url!r}: unsupported scheme {parts.scheme!r}; expected {URL_FORMS}")


def _builtin(
    url: str, host: str, port: int | None, secure: bool, path: str, query: dict[str, list[str]], display: str
) -> RoomURL:
    match = re.fullmatch(r"/r/([^/]+)/?", path)
    if match is None:
        raise RoomURLError(f"room URL {url!r}: the path must be /r/ROOM; expected {URL_FORMS}")
    room = match.group(1)
    if not ROOM_ID_RE.match(room):
        raise RoomURLError(f"room URL {url!r}: room id {room!r} is not a reactdiff-room id (4-64 of A-Z a-z 0-9 _ -)")
    token = _query_value(query, "token", url, required=True)
    if not TOKEN_RE.match(token):
        raise RoomURLError(f"room URL {url!r}: the token is malformed; copy the whole URL that reactdiff-room printed")
    return RoomURL(RoomKind.BUILTIN, host, port or (443 if secure else 80), secure, room, token=token, display=display)
