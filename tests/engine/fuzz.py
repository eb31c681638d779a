"""Hypothesis strategies for what reaches the rooms from the network, and a background event loop to run live
servers and clients under them (hypothesis calls a plain function once per example).

- `signaling_texts(templates)`: WebSocket text frames: valid messages (from `templates`), the same with a field
  replaced, dropped or added, other JSON, and text that is not JSON;
- `sdp_variants(sdp)`: a real SDP with lines dropped, duplicated, swapped, rewritten or cut short; candidates
  other than 127.0.0.1 are taken out, so that no test ever sends a connectivity check off this machine;
- `LoopThread`: `with LoopThread() as loop: loop.run(coro, timeout_s)` (a hang is a TimeoutError, not a stuck test).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.fuzzing import FUZZ

T = TypeVar("T")

CASES = settings(FUZZ, suppress_health_check=[HealthCheck.too_slow])  # live servers make some cases slow

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16,
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any]) -> dict[str, Any]:
    """`template` with one of its fields replaced, dropped, or joined by an unknown one."""
    message = dict(template)
    key = draw(st.sampled_from(sorted(message)))
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "replace":
        message[key] = draw(json_values)
    elif action == "drop":
        del message[key]
    else:
        message[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
    return message


def signaling_texts(templates: list[dict[str, Any]]) -> st.SearchStrategy[str]:
    """Text frames a participant (or a server) might send: see the module docstring."""
    valid = st.sampled_from(templates)
    objects = valid | st.sampled_from(templates).flatmap(mutated) | st.dictionaries(st.text(max_size=12), json_values)
    return objects.map(json.dumps) | json_values.map(json.dumps) | st.text(max_size=200)


def _loopback_candidates_only(lines: list[str]) -> list[str]:
    """Drop every ICE candidate whose address is not 127.0.0.1 (mutations can make one up)."""
    kept = []
    for line in lines:
        fields = line.split()
        if line.startswith("a=candidate") and (len(fields) < 5 or fields[4] != "127.0.0.1"):
            continue
        kept.append(line)
    return kept


@st.composite
def sdp_variants(draw: st.DrawFn, sdp: str) -> str:
    """`sdp` after up to four line-level mutations, or cut short (see the module docstring)."""
    lines = sdp.rstrip("\r\n").split("\r\n")
    for _ in range(draw(st.integers(0, 4))):
        if not lines:
            break
        k = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "duplicate", "swap", "value", "text", "number"]))
        if action == "drop":
            del lines[k]
        elif action == "duplicate":
            lines.insert(k, lines[k])
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[j] = lines[j], lines[k]
        elif action == "value":  # keep the attribute, make up its value
            head = lines[k].split(":", 1)[0] if ":" in lines[k] else lines[k][:2]
            lines[k] = head + (":" if ":" in lines[k] else "") + draw(st.text(max_size=40))
        elif action == "text":
            lines[k] = draw(st.text(max_size=60)).replace("\r", "").replace("\n", "")
        else:
            lines[k] = lines[k].replace(draw(st.sampled_from("0123456789")), str(draw(st.integers(-1, 2**33))), 1)
    text = "\r\n".join(_loopback_candidates_only(lines)) + "\r\n"
    if draw(st.booleans()) and draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    return text


class LoopThread:
    """An asyncio loop in its own thread; `run(coro)` waits for the result (TimeoutError after `timeout_s`)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.errors: list[dict[str, Any]] = []  # what reached the loop's exception handler (unhandled task errors)
        self.loop.set_exception_handler(lambda loop, context: self.errors.append(context))
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-fuzz-loop", daemon=True)

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout_s} s: a hang") from None

    def __exit__(self, *exc: object) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.get_running_loop().shutdown_default_executor()

        self.run(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
