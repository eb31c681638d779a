"""Churn: CHURN scripted participants (WebSocket plus aiortc peers, in-process; tests/engine/test_rooms_client.py)
join a built-in room and leave, WAVE at a time, while the engine's room session (its own loop thread, as
`reactdiff-engine --room` runs it) serves them. Most wait for the avatar before leaving; every HASTY-th leaves
straight after sending its offer, while the engine is still answering it. Afterwards the engine holds no peer
connection, avatar subscription or task more than before, no RTCPeerConnection object is left in the process, and
its file descriptors and Python threads are back at their baseline (tests/resources.py), which is taken after one
warm-up wave and with the loops' executors at full size (aiortc's codecs and executor threads are made once and
kept). OS threads are reported, not checked: in about a third of the runs 6 or 12 native threads of FFmpeg
(libavutil slice threads, made for PyAV's scaler and resampler contexts inside aiortc's encoders) outlive every
Python object that made them, which is PyAV's or aiortc's to fix."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import threading
import time
from typing import Any

import numpy as np
from aiortc import RTCPeerConnection

from engine.rooms.session import RoomSession
from renderer.track import SubscribedVideoTrack
from tests.engine.test_rooms_client import (
    Participant,
    loopback_ice,  # noqa: F401 (autouse: ICE on 127.0.0.1 only)
    room_server,
    until,
    ws_of,
)
from tests.resources import Resources

CHURN = 100
WAVE = 4  # participants in the room at once besides the engine (they mesh with each other too, as browsers do)
HASTY = 4  # every 4th participant leaves without waiting for the avatar
SETTLE_S = 10.0


async def visit(ws_url: str, name: str, *, hasty: bool) -> None:
    """Join, wait for the engine's avatar (unless `hasty`) and leave."""
    async with Participant(ws_url, name, 0.05) as participant:
        if not hasty:
            await until(lambda: len(participant.video_frames) > 0, 20)


async def wave(ws_url: str, first: int) -> None:
    await asyncio.gather(*(visit(ws_url, f"p{k}", hasty=k % HASTY == HASTY - 1) for k in range(first, first + WAVE)))


async def fill_executor() -> None:
    """Start every thread of the running loop's default executor: it makes them only as work piles up, then
    keeps them, so a baseline taken before they all exist would count them as grown."""
    workers = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default max_workers
    barrier = threading.Barrier(workers)
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(None, barrier.wait, 10) for _ in range(workers)))


async def loop_tasks() -> int:
    """Tasks on the running loop (the engine's, through session.call), besides this one."""
    return len(asyncio.all_tasks()) - 1


def live(kind: type) -> int:
    """Objects of `kind` in the process (after a collection); avatar subscriptions only while not stopped."""
    gc.collect()
    # type(), not isinstance(): isinstance reads __class__, which some objects (torch's deprecated reduce_op, once
    # torch is imported by other tests) answer with a warning, an error under pytest
    objects = [obj for obj in gc.get_objects() if type(obj) is kind]
    return sum(getattr(obj, "readyState", "live") == "live" for obj in objects)


def grown(now: Resources, before: Resources) -> list[str]:
    """The checked counts (not OS threads: see the module docstring) that are above `before`."""
    return [line for line in now.grown_from(before) if not line.startswith("OS threads")]


async def settled(before: Resources, timeout_s: float) -> Resources:
    """Resources.now() once no checked count is above `before` (threads end a little after they are told to), or
    at timeout_s; polled without blocking the loop the room server runs on."""
    deadline = time.monotonic() + timeout_s
    while grown(now := Resources.now(), before) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return now


def drain(session: RoomSession) -> None:
    """The engine's reader: take the speaker's media and keep the avatar's frames coming."""
    for k, _ in enumerate(session.source):
        if k % 10 == 0:
            session.sink.write(np.full((48, 64, 3), k % 256, np.uint8), k * 0.02)


def test_a_hundred_participants_come_and_go_and_the_engine_keeps_nothing_of_them():
    async def test() -> dict[str, Any]:
        async with room_server(connects_per_min=60 * CHURN) as (server, room):  # all of them from 127.0.0.1
            ws_url = ws_of(server, room)
            loop = asyncio.get_running_loop()
            session = RoomSession(room.url(server.base_url), size=(64, 48))
            await loop.run_in_executor(None, session.start)
            reader = threading.Thread(target=drain, args=(session,), name="test-churn-reader")
            reader.start()
            try:
                await wave(ws_url, -WAVE)  # warm-up
                await fill_executor()
                session.call(fill_executor(), 15)
                await until(lambda: not session.client.peers, SETTLE_S)
                await asyncio.sleep(1.0)  # the warm-up's receivers' decoder threads finish exiting
                before = Resources.now()
                tasks_before, pcs_before = session.call(loop_tasks(), 5), live(RTCPeerConnection)
                subscribers_before = live(SubscribedVideoTrack)
                start = time.monotonic()
                for first in range(0, CHURN, WAVE):
                    await wave(ws_url, first)
                churn_s = time.monotonic() - start
                await until(lambda: not session.client.peers and len(room.participants) == 1, SETTLE_S)
                after = await settled(before, SETTLE_S)
                left = grown(after, before)
                # a connection closed at the end may still be held by the task closing it for a few turns
                with contextlib.suppress(AssertionError):  # still there at the timeout: the figures say so below
                    await until(lambda: live(RTCPeerConnection) <= pcs_before, SETTLE_S, poll_s=0.2)
                tasks_after, pcs_after = session.call(loop_tasks(), 5), live(RTCPeerConnection)
                subscribers_after = live(SubscribedVideoTrack)
            finally:
                session.source.close()  # the reader ends before the sink closes, as the engine's player does
                reader.join(10)
                await loop.run_in_executor(None, session.close)
        return {
            "participants": CHURN, "churn_s": round(churn_s, 1), "grown": left,
            "before": {"fds": before.fds, "threads": before.threads, "os_threads": before.tasks,
                       "engine_tasks": tasks_before, "peer_connections": pcs_before,
                       "avatar_subscriptions": subscribers_before},
            "after": {"fds": after.fds, "threads": after.threads, "os_threads": after.tasks,
                      "engine_tasks": tasks_after, "peer_connections": pcs_after,
                      "avatar_subscriptions": subscribers_after},
        }  # fmt: skip

    figures = asyncio.run(test())
    print(json.dumps(figures))
    assert not figures["grown"], figures
    assert figures["after"]["engine_tasks"] <= figures["before"]["engine_tasks"], figures
    assert figures["after"]["peer_connections"] == figures["before"]["peer_connections"] == 0, figures
    assert figures["after"]["avatar_subscriptions"] == figures["before"]["avatar_subscriptions"] == 0, figures
