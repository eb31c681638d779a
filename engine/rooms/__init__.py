"""Rooms the engine joins as a participant: the built-in `reactdiff-room` and Janus VideoRoom.

Pure parts: `urls` (room URL parsing), `messages` (signaling schemas), `speaker` (active speaker with hysteresis),
`reactions` (msgpack face frames on the `reactions` data channel). aiortc parts: `switch`, `base`, `builtin`,
`janus`; `session.RoomSession` puts a client on its own event-loop thread for the streaming engine.
"""

from engine.rooms.base import ReconnectPolicy, RoomError
from engine.rooms.urls import RoomKind, RoomURL, RoomURLError, parse_room_url

__all__ = ["ReconnectPolicy", "RoomError", "RoomKind", "RoomURL", "RoomURLError", "parse_room_url"]
