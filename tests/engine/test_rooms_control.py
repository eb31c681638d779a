"""The listener control messages of the reactions channel (engine.rooms.control): what a page may send, what the
engine answers, and 1,000 generated hostile messages, each parsed or refused with a ControlError."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.listener import ANYONE, ListenerChange, ListenerChoices, ListenerStyle
from engine.rooms.control import (
    MAX_CONTROL_BYTES,
    ControlError,
    ListenerSet,
    decode_control,
    decode_state,
    encode_state,
)
from engine.rooms.reactions import ReactionFrame, encode_reaction
from tests.fuzzing import FUZZ, damaged

pack = msgspec.msgpack.encode
TEMPLATES: list[dict[str, Any]] = [
    {"v": 1, "type": "listener-set", "persona": "nodder"},
    {"v": 1, "type": "listener-set", "expressiveness": 1.5},
    {"v": 1, "type": "listener-set", "persona": "reserved", "expressiveness": None},
]


def choices() -> ListenerChoices:
    """Two personas of 4-float styles (no model needed for the messages)."""
    styles = {name: ListenerStyle(name, np.full(4, k, np.float32), 0.01 * (k + 1))
              for k, name in enumerate([ANYONE, "nodder"])}  # fmt: skip
    return ListenerChoices(styles, 0.01, 100)


def test_a_page_may_change_the_persona_the_expressiveness_or_both():
    assert decode_control(pack(TEMPLATES[0])) == ListenerSet(1, persona="nodder")
    assert decode_control(pack(TEMPLATES[1])) == ListenerSet(1, expressiveness=1.5)
    both = decode_control(pack(TEMPLATES[2]))
    assert both.persona == "reserved" and both.expressiveness is None  # nil: as the persona's style moves
    assert decode_control(pack({"v": 1, "type": "listener-set", "expressiveness": 2})).expressiveness == 2.0  # JS ints


@pytest.mark.parametrize(
    ("message", "phrase"),
    [
        ("text", "a text message"),
        (b"\x00" * (MAX_CONTROL_BYTES + 1), "over the 256-byte limit"),
        (b"\xc1", "not msgpack"),
        (pack([1, 2]), "Expected `object`, got `array`"),
        (pack({"v": 1, "type": "face", "persona": "x"}), "Invalid value 'face' - at `$.type`"),
        (pack({"v": 2, "type": "listener-set", "persona": "x"}), "at `$.v`"),
        (pack({"v": 1, "type": "listener-set", "persona": 5}), "Expected `str`, got `int` - at `$.persona`"),
        (pack({"v": 1, "type": "listener-set", "persona": ""}), "length >= 1 - at `$.persona`"),
        (pack({"v": 1, "type": "listener-set", "persona": "x" * 65}), "length <= 64 - at `$.persona`"),
        (pack({"v": 1, "type": "listener-set", "expressiveness": math.nan}), "at `$.expressiveness`"),
        (pack({"v": 1, "type": "listener-set", "expressiveness": math.inf}), "at `$.expressiveness`"),
        (pack({"v": 1, "type": "listener-set", "expressiveness": 2.51}), "<= 2.5 - at `$.expressiveness`"),
        (pack({"v": 1, "type": "listener-set", "expressiveness": "1"}), "at `$.expressiveness`"),
        (pack({"v": 1, "type": "listener-set", "persona": "x", "admin": 1}), "Object contains unknown field `admin`"),
        (pack({"v": 1, "type": "listener-set"}), "names neither a persona nor an expressiveness"),
    ],
)  # fmt: skip
def test_a_message_that_breaks_the_schema_is_refused_with_what_was_wrong(message, phrase):
    with pytest.raises(ControlError) as error:
        decode_control(message)
    assert phrase in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_the_engine_tells_the_pages_the_listener_and_the_choices():
    c = choices()
    change = ListenerChange(c.choose("nodder", 2.0), "3f2a", 4)
    state = decode_state(encode_state(change, c.names))
    assert (state.persona, state.expressiveness, state.by) == ("nodder", 2.0, "3f2a")
    assert state.personas == [ANYONE, "nodder"]
    assert state.range == (0.25, 2.5)
    assert msgspec.msgpack.decode(encode_state(change, c.names))["type"] == "listener"  # what the page switches on


# what a msgpack map may hold: NaN, infinities and bytes too (JSON's strategies have none, and ints past 64 bits)
scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=80)
    | st.binary(max_size=16)
)  # fmt: skip
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16,
)  # fmt: skip


@st.composite
def changed(draw: st.DrawFn, template: dict[str, Any]) -> dict[str, Any]:
    """`template` with one of its fields replaced by any msgpack value, dropped, or joined by an unknown one (as
    tests.engine.fuzz.mutated does for JSON)."""
    message = dict(template)
    key = draw(st.sampled_from(sorted(message)))
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "replace":
        message[key] = draw(values)
    elif action == "drop":
        del message[key]
    else:
        message[draw(st.text(min_size=1, max_size=12))] = draw(values)
    return message


def _messages() -> st.SearchStrategy[bytes | str]:
    """Valid controls, controls with a field replaced, dropped or added, other msgpack values, damaged bytes of
    valid messages (a face frame's too), random bytes and text."""
    valid = [pack(t) for t in TEMPLATES]
    face = encode_reaction(ReactionFrame(1, 0.04, 1.0, np.ones(58, np.float32)))
    packed = st.sampled_from(TEMPLATES).flatmap(changed) | st.dictionaries(st.text(max_size=12), values)
    return (
        st.sampled_from(valid)
        | packed.map(pack)
        | values.map(pack)
        | st.sampled_from([*valid, face]).flatmap(damaged)
        | st.binary(max_size=300)
        | st.text(max_size=40)
    )


@FUZZ
@given(message=_messages())
def test_any_message_is_a_checked_change_or_a_control_error(message: bytes | str) -> None:
    try:
        change = decode_control(message)
    except ControlError as error:
        assert "\n" not in str(error)
        return
    persona, x = change.persona, change.expressiveness
    assert persona is not msgspec.UNSET or x is not msgspec.UNSET
    assert persona is msgspec.UNSET or (isinstance(persona, str) and 1 <= len(persona) <= 64)
    assert x is msgspec.UNSET or x is None or 0.25 <= x <= 2.5


@FUZZ
@given(persona=st.text(min_size=1, max_size=64), x=st.none() | st.floats(0.25, 2.5))
def test_every_valid_change_decodes_to_itself(persona: str, x: float | None) -> None:
    assert decode_control(pack({"v": 1, "type": "listener-set", "persona": persona, "expressiveness": x})) == (
        ListenerSet(1, persona=persona, expressiveness=x)
    )
