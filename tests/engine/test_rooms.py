"""The pure parts of engine.rooms: room URLs, signaling schemas, active-speaker selection, reaction frames."""

from __future__ import annotations

import json

import msgpack
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine.rooms import messages as m
from engine.rooms.messages import (
    MAX_MESSAGE_BYTES,
    MessageError,
    encode_message,
    parse_client_message,
    parse_server_message,
)
from engine.rooms.reactions import ReactionError, ReactionFrame, decode_reaction, encode_reaction
from engine.rooms.speaker import SILENCE_DB, ActiveSpeaker, LevelMeter, choose_speaker, frame_power, power_db
from engine.rooms.urls import RoomKind, RoomURLError, parse_room_url
from renderer.face import EMOTION_DIM, FACE_DIM
from tests.engine.fuzz import CASES, signaling_texts

TOKEN = "abcdefghijklmnopqrstuvwx"


# --- URLs -------------------------------------------------------------------------------------------------------


def test_builtin_room_urls_give_the_signaling_socket():
    url = parse_room_url(f"https://room.lan:8443/r/Room_1-x?token={TOKEN}&display=Avatar")
    assert (url.kind, url.host, url.port, url.secure, url.room, url.token) == (
        RoomKind.BUILTIN, "room.lan", 8443, True, "Room_1-x", TOKEN,
    )  # fmt: skip
    assert url.ws_url == f"wss://room.lan:8443/ws/Room_1-x?token={TOKEN}"
    assert url.display == "Avatar" and url.verify_tls
    assert parse_room_url(f"http://127.0.0.1/r/abcd?token={TOKEN}").port == 80
    assert not parse_room_url(f"https://h:1/r/abcd?token={TOKEN}&insecure=1").verify_tls


def test_janus_urls_name_a_videoroom():
    url = parse_room_url("janus+ws://127.0.0.1/?room=1234&pin=secret")
    assert (url.kind, url.port, url.room, url.pin, url.secure) == (RoomKind.JANUS, 8188, "1234", "secret", False)
    assert url.ws_url == "ws://127.0.0.1:8188/"
    assert parse_room_url("janus+wss://[::1]:9000/?room=7").ws_url == "wss://[::1]:9000/"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://host/r/abcd?token=" + TOKEN, "unsupported scheme"),
        ("http:///r/abcd?token=" + TOKEN, "no host"),
        ("http://host/room/abcd?token=" + TOKEN, "the path must be /r/ROOM"),
        ("http://host/r/ab?token=" + TOKEN, "is not a reactdiff-room id"),
        ("http://host/r/abcd", "missing token="),
        ("http://host/r/abcd?token=short", "token is malformed"),
        (f"http://host/r/abcd?token={TOKEN}&token={TOKEN}", "given 2 times"),
        ("http://host:99999/r/abcd?token=" + TOKEN, "out of range"),
        ("janus+ws://host/?room=lobby", "must be the VideoRoom's number"),
        ("janus+ws://host/", "missing room="),
        (f"http://host/r/abcd?token={TOKEN}&insecure=yes", "insecure= must be 1"),
    ],
)
def test_bad_room_urls_say_what_is_wrong(url, problem):
    with pytest.raises(RoomURLError, match=problem):
        parse_room_url(url)


# --- signaling messages ---------------------------------------------------------------------------------------


def test_messages_round_trip_through_the_schemas():
    text = encode_message(m.Offer(to="p1", sdp="v=0\r\n"))
    assert json.loads(text) == {"type": "offer", "to": "p1", "sdp": "v=0\r\n"}
    assert parse_client_message(text) == m.Offer(to="p1", sdp="v=0\r\n")
    relayed = encode_message(m.RelayedOffer(sender="p2", sdp="v=0\r\n"))
    assert json.loads(relayed)["from"] == "p2" and parse_server_message(relayed) == m.RelayedOffer("p2", "v=0\r\n")
    welcome = json.dumps({"type": "welcome", "id": "me", "peers": [{"id": "p1", "name": "Ann", "role": "browser"}]})
    assert parse_server_message(welcome) == m.Welcome(id="me", peers=[m.PeerInfo(id="p1", name="Ann", role="browser")])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "unknown message type None"),
        ('{"type": "welcome", "id": "x", "peers": []}', "unknown message type 'welcome'"),  # a server's message
        ('{"type": "join", "name": "", "role": "browser"}', r"'join' message: .* at `\$.name`"),
        ('{"type": "join", "name": "x", "role": "admin"}', r"at `\$.role`"),
        ('{"type": "stats", "stats": {"fps": NaN}}', "not JSON"),
        ('{"type": "stats", "stats": {"fps": 1e999}}', r"out of range - at `\$.stats"),
        ('{"type": "stats", "stats": {"ok": true}}', r"got `bool` - at `\$.stats"),
        ('{"type": "leave", "why": 1}', "unknown field `why`"),
        (json.dumps({"type": "offer", "to": "p", "sdp": "x" * MAX_MESSAGE_BYTES}), "over the"),
    ],
)
def test_invalid_messages_are_rejected_with_the_field(text, problem):
    with pytest.raises(MessageError, match=problem):
        parse_client_message(text)


def test_building_an_invalid_message_fails_at_the_sender():
    with pytest.raises(MessageError, match=r"'offer' message: Expected `str` of length >= 1 - at `\$.sdp`"):
        encode_message(m.Offer(to="p1", sdp=""))


# --- active speaker ---------------------------------------------------------------------------------------------


def tone(level: float, n: int = 960) -> np.ndarray:
    return (level * 32767 * np.sin(np.arange(n) * 0.3)).astype(np.int16)


def test_levels_are_dbfs_over_the_last_window():
    assert frame_power(np.full(10, 0.5, np.float32)) == pytest.approx(0.25)
    assert power_db(0.0) == SILENCE_DB
    meter = LevelMeter(window_s=1.0)
    for k in range(50):  # 1 s of loud frames ...
        meter.add("a", k * 0.02, tone(0.5))
    assert meter.levels_db(0.99)["a"] == pytest.approx(10 * np.log10(0.5**2 / 2), abs=0.5)
    for k in range(50):  # ... then 1 s of near silence
        meter.add("a", 1.0 + k * 0.02, tone(0.001))
    assert meter.levels_db(1.99)["a"] < -55
    assert meter.levels_db(10.0)["a"] == SILENCE_DB


def test_choose_speaker_switches_only_past_the_margin():
    assert choose_speaker(None, {}) is None
    assert choose_speaker(None, {"b": -30.0, "a": -30.0}) == "a"
    assert choose_speaker("a", {"a": -30.0, "b": -25.0}, margin_db=6) == "a"
    assert choose_speaker("a", {"a": -30.0, "b": -23.0}, margin_db=6) == "b"
    assert choose_speaker("gone", {"a": -50.0, "b": -40.0}) == "b"


def test_active_speaker_holds_after_a_switch_and_follows_the_louder_voice():
    speaker = ActiveSpeaker(margin_db=6.0, hold_s=1.0)
    assert speaker.update({"a": -20.0, "b": -60.0}, 0.0) == "a"
    assert speaker.update({"a": -60.0, "b": -20.0}, 0.5) == "a"  # held
    assert speaker.update({"a": -60.0, "b": -20.0}, 1.2) == "b"
    assert speaker.update({"a": -22.0, "b": -20.0}, 3.0) == "b"  # within the margin: no flapping
    assert speaker.update({"a": -20.0}, 3.1) == "a"  # b left: replaced at once


# --- reactions --------------------------------------------------------------------------------------------------


def test_reaction_frames_round_trip_as_float32():
    rng = np.random.default_rng(0)
    face, emotion = rng.random(FACE_DIM, np.float32), rng.random(EMOTION_DIM, np.float32)
    data = encode_reaction(ReactionFrame(12, 0.48, 1.7e9, face, emotion))
    assert len(data) < 400
    back = decode_reaction(data)
    assert (back.index, back.t_s, back.sent_s) == (12, 0.48, 1.7e9)
    np.testing.assert_array_equal(back.face, face)
    np.testing.assert_array_equal(back.emotion, emotion)
    raw = msgpack.unpackb(data)
    assert raw["type"] == "face" and np.frombuffer(raw["face"], "<f4")[3] == face[3]
    assert decode_reaction(encode_reaction(ReactionFrame(0, 0.0, 0.0, face))).emotion is None


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb([1]), "Expected `object`, got `array`"),
        (msgpack.packb({"type": "mood", "v": 1}), r"Invalid value 'mood' - at `\$.type`"),
        (msgpack.packb({"type": "face", "v": 2}), r"Invalid enum value 2 - at `\$.v`"),
        (msgpack.packb({"type": "face", "v": 1, "i": -1, "t": 0.0, "ts": 0.0}), r"`int` >= 0 - at `\$.i`"),
        (msgpack.packb({"type": "face", "v": 1, "i": 0, "t": float("nan"), "ts": 0.0}), r"at `\$.t`"),
        (msgpack.packb({"type": "face", "v": 1, "i": 0, "t": 0.0, "ts": 0.0, "face": b"\x00" * 8}), "length >= 232"),
        (msgpack.packb({"type": "face", "v": 1, "i": 0, "t": 0.0, "ts": 0.0, "face": b"\xff" * 232}), "non-finite"),
        (b"\x00" * 2000, "limit"),
    ],
)
def test_bad_reaction_messages_are_rejected(message, problem):
    with pytest.raises(ReactionError, match=problem):
        decode_reaction(message)


# --- properties: whatever arrives, a typed message or a one-line error --------------------------------------------

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
CLIENT_TEMPLATES = [
    {"type": "join", "name": "Ann", "role": "browser"},
    {"type": "offer", "to": "p1", "sdp": SDP},
    {"type": "stats", "stats": {"fps": 30.0, "backend": "onnx", "p95": None}},
    {"type": "leave"},
]
SERVER_TEMPLATES = [
    {"type": "welcome", "id": "me", "peers": [{"id": "p1", "name": "Ann", "role": "browser"}]},
    {"type": "offer", "from": "p1", "sdp": SDP},
    {"type": "room-closed", "reason": "idle"},
]


@CASES
@given(text=signaling_texts(CLIENT_TEMPLATES + SERVER_TEMPLATES))
@example(text='{"type": "join", "name": "A", "role": "browser", "\\n": null}')  # a newline in a field name
def test_any_signaling_text_parses_to_a_message_that_re_encodes_or_to_a_one_line_error(text):
    for parse in (parse_client_message, parse_server_message):
        try:
            message = parse(text)
        except MessageError as err:
            assert "\n" not in str(err) and len(str(err)) < 400
            continue
        assert parse(encode_message(message)) == message  # what was accepted is within the schema


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20) | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["v", "type", "i", "t", "ts", "face",
                                                                                 "emotion", "x"]), inner, max_size=7),
    max_leaves=12,
)  # fmt: skip


@CASES
@given(data=st.binary(max_size=1100) | st.builds(msgpack.packb, msgpack_values))
def test_any_reactions_bytes_decode_to_a_finite_frame_or_a_reaction_error(data):
    try:
        frame = decode_reaction(data)
    except ReactionError as err:
        assert "\n" not in str(err)
        return
    assert frame.index >= 0 and np.isfinite(frame.face).all() and frame.face.shape == (FACE_DIM,)
    again = decode_reaction(encode_reaction(frame))
    assert (again.index, again.t_s, again.sent_s) == (frame.index, frame.t_s, frame.sent_s)
    np.testing.assert_array_equal(again.face, frame.face)
