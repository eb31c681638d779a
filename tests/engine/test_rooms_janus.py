"""The engine's Janus VideoRoom client against Debian's `janus`: the engine (`reactdiff-engine --room
janus+ws://...` with a tiny random-weight model) follows an in-process aiortc speaker and publishes the avatar,
which an in-process aiortc subscriber receives; errors (no Janus, no such room, Janus killed mid-session) are
one-line; nothing leaks.

Janus (libnice) never gathers ICE candidates on loopback, and tests may send traffic only to 127.0.0.0/8 or to
test hosts of their own. So every test that starts Janus runs inside a network namespace this file creates:
`test_janus_in_netns` re-runs the file under `unshare --net --pid` (tests/netns.py), where the `netns` fixture
brings `lo` up and puts a TEST-NET-2 documentation address on a virtual interface that exists only in that
namespace. Janus (`ice_enforce_list`) and aiortc (`get_host_addresses`) gather ICE on that address alone;
signaling stays on 127.0.0.1. Outside the namespace those tests are skipped and nothing here looks up, binds to
or sends to any of the host's own addresses."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioice.ice
import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from engine.rooms.base import ReconnectPolicy, RoomError
from engine.rooms.janus import VIDEOROOM, JanusAPI, JanusRoomClient
from engine.rooms.urls import parse_room_url
from tests.e2e.harness import EngineThread
from tests.engine.test_rooms_client import ToneTrack, painted_avatar, until
from tests.netns import in_netns, prepare_namespace, run_file_in_netns
from tests.netns import tiny_model as shared_tiny_model

JANUS = shutil.which("janus") or "/usr/bin/janus"
LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
ROOM = 1234

NETNS_RUN_TIMEOUT_S = 420  # the whole inner pytest run; on timeout it is killed with everything it started
REJOIN_S = 3.0  # issue 11: the engine is back in the room within 3 s of Janus
JANUS_DOWN_S = 4.0  # past the backoff's first, shorter delays


def why_janus_cannot_run() -> str | None:
    if not Path(JANUS).exists():
        return "janus is not installed (apt-get install janus)"
    for plugin in (LIB / "plugins/libjanus_videoroom.so", LIB / "transports/libjanus_websockets.so"):
        if not plugin.exists():
            return f"{plugin} is missing (the Debian janus package provides it)"
    return None


pytestmark = pytest.mark.skipif(why_janus_cannot_run() is not None, reason=str(why_janus_cannot_run()))


@pytest.fixture(scope="module")
def netns() -> str:
    """Inside the fresh namespace of `test_janus_in_netns`: its one address (tests/netns.py)."""
    return prepare_namespace()


@pytest.fixture
def local_ice(netns: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """aiortc gathers host candidates on the namespace's address only (Janus: its ice_enforce_list)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [netns])
    return netns


@pytest.mark.slow
def test_janus_in_netns(tmp_path: Path, tiny_model: Path) -> None:
    """Every Janus test, run by a pytest of its own in a fresh network and PID namespace: when that run ends or
    is killed (timeout), the kernel kills Janus and anything else it started, and the namespace is gone."""
    run_file_in_netns(__file__, "test_janus_in_netns", tmp_path / "inner", NETNS_RUN_TIMEOUT_S, tiny_model)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def janus_config(folder: Path, ws_port: int, ice_address: str) -> Path:
    """A private Janus setup: only the VideoRoom plugin (room 1234) and the WebSocket transport on 127.0.0.1;
    ICE on `ice_address` alone."""
    for kind, name in (("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_websockets.so")):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        (folder / kind / name).symlink_to(LIB / kind / name)
    for kind in ("events", "loggers"):
        (folder / kind).mkdir(exist_ok=True)
    (folder / "janus.jcfg").write_text(
        f'general: {{ configs_folder = "{folder}", plugins_folder = "{folder}/plugins", '
        f'transports_folder = "{folder}/transports", events_folder = "{folder}/events", '
        f'loggers_folder = "{folder}/loggers", log_to_stdout = true, debug_level = 4 }}\n'
        'media: { ipv6 = false, rtp_port_range = "20000-40000" }\n'
        f'nat: {{ ice_enforce_list = "{ice_address}", nice_debug = false }}\n'
        "plugins: {}\ntransports: {}\nloggers: {}\nevents: {}\n"
    )
    (folder / "janus.transport.websockets.jcfg").write_text(
        f'general: {{ json = "compact", ws = true, ws_port = {ws_port}, ws_ip = "127.0.0.1", wss = false }}\n'
        "admin: { admin_ws = false, admin_wss = false }\n"
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text(
        f'general: {{}}\nroom-{ROOM}: {{ description = "reactdiff test", publishers = 6, audiocodec = "opus", '
        'videocodec = "vp8" }\n'
    )
    return folder / "janus.jcfg"


class Janus:
    """`janus` as a subprocess on 127.0.0.1 (its log in `log`); `stop()` kills it, `start()` runs it again."""

    def __init__(self, folder: Path, ice_address: str) -> None:
        self.port = free_port()
        self.config = janus_config(folder, self.port, ice_address)
        self.log = folder / "janus.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"janus+ws://127.0.0.1:{self.port}/?room={ROOM}"

    def start(self) -> None:
        folder = self.config.parent
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [JANUS, "-F", str(folder), "-C", str(self.config), "-P", str(folder / "plugins"), "-o"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"janus exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"janus did not listen on {self.port} within 10 s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@pytest.fixture(scope="module")
def tiny_model(request: pytest.FixtureRequest) -> Path:
    """The shared random-weight tiny model directory (tests/conftest.py; in the namespace, the outer run's)."""
    return shared_tiny_model(request)


@pytest.fixture
def janus(tmp_path: Path, local_ice: str) -> Iterator[Janus]:
    server = Janus(tmp_path / "janus", local_ice)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class FramesTrack(MediaStreamTrack):
    """A moving grey-level 64x48 video at 25 fps (the synthetic speaker's camera)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._n, self._start = 0, time.monotonic()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await asyncio.sleep(max(0.0, self._start + self._n / 25 - time.monotonic()))
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (40 + 3 * self._n) % 256, np.uint8), format="rgb24")
        frame.pts, frame.time_base = self._n * 3600, fractions.Fraction(1, 90_000)
        self._n += 1
        return frame


class JanusPeer:
    """A browser-like VideoRoom participant in Python (on JanusAPI): publishes a tone and a video, or subscribes
    to one feed and records the video frames it receives."""

    def __init__(self, janus: Janus) -> None:
        self.ws_url = parse_room_url(janus.url).ws_url
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames: list[np.ndarray] = []
        self.feed_id = 0
        self._tasks: list[asyncio.Task[Any]] = []

    async def __aenter__(self) -> JanusPeer:
        self.api = await JanusAPI.connect(self.ws_url)
        self.handle = await self.api.attach(VIDEOROOM)
        return self

    async def publish(self, display: str, level: float) -> list[dict[str, Any]]:
        """Join as a publisher with a tone and moving frames; returns the publishers already there."""
        joined, _ = await self.api.message(
            self.handle, {"request": "join", "ptype": "publisher", "room": ROOM, "display": display}
        )
        self.feed_id = joined["id"]
        self.pc.addTrack(ToneTrack(level))
        self.pc.addTrack(FramesTrack())
        await self.pc.setLocalDescription(await self.pc.createOffer())
        _, jsep = await self.api.message(
            self.handle, {"request": "publish"}, {"type": "offer", "sdp": self.pc.localDescription.sdp}
        )
        assert jsep is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "answer"))
        await self.api.trickle_completed(self.handle)
        return list(joined["publishers"])

    async def subscribe(self, feed: int) -> None:
        """Receive one publisher's streams; the video frames land in `frames`."""

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.create_task(self._record(track)))

        _, jsep = await self.api.message(
            self.handle, {"request": "join", "ptype": "subscriber", "room": ROOM, "streams": [{"feed": feed}]}
        )
        assert jsep is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.api.message(
            self.handle, {"request": "start"}, {"type": "answer", "sdp": self.pc.localDescription.sdp}
        )
        await self.api.trickle_completed(self.handle)

    async def _record(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames.append(frame.to_ndarray(format="rgb24"))

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
        await self.api.close()


async def room_tasks_left() -> list[str]:
    current = asyncio.current_task()
    return [t.get_name() for t in asyncio.all_tasks() if t is not current and t.get_name().startswith("room-")]


async def until_listed(peer: JanusPeer, publishers: dict[str, int], timeout_s: float = 10.0) -> None:
    """Wait until the room's publishing participants are exactly `publishers` (display -> feed id)."""
    deadline = time.monotonic() + timeout_s
    while True:
        data, _ = await peer.api.message(peer.handle, {"request": "listparticipants", "room": ROOM})
        listed = {p.get("display"): p["id"] for p in data["participants"] if p.get("publisher")}
        if listed == publishers:
            return
        assert time.monotonic() < deadline, f"the room lists {listed}, not {publishers}"
        await asyncio.sleep(0.05)


def engine_client(janus: Janus, **kwargs: Any) -> JanusRoomClient:
    return JanusRoomClient(parse_room_url(janus.url + "&display=engine"), painted_avatar(), **kwargs)


@in_netns
def test_the_engine_publishes_the_avatar_and_follows_the_loudest_publisher(janus):
    async def test():
        async with JanusPeer(janus) as quiet:
            await quiet.publish("quiet", 0.01)
            client = engine_client(janus)
            await client.join()  # subscribes to "quiet", who is there already
            serving = asyncio.create_task(client.serve())
            async with JanusPeer(janus) as loud, JanusPeer(janus) as viewer:
                await loud.publish("loud", 0.5)
                await until_listed(loud, {"engine": client.feed_id, "loud": loud.feed_id, "quiet": quiet.feed_id})
                await until(lambda: client.switch.speaker == str(loud.feed_id), 15)
                peaks = [np.abs((await client.switch.audio.recv()).to_ndarray()).max() for _ in range(60)]
                assert max(peaks) > 0.3 * 32767  # the loud tone, forwarded to the engine
                await viewer.subscribe(client.feed_id)
                await until(lambda: len(viewer.frames) > 20, 15)
            means = [frame.mean() for frame in viewer.frames]  # the painted avatar brightens one level a frame
            assert all(frame.shape == (48, 64, 3) and frame.std() < 10 for frame in viewer.frames)
            assert means[-1] > means[0] + 5 and len({round(m) for m in means}) > 5
            await until(lambda: client.switch.speaker == str(quiet.feed_id), 15)  # loud left: the one still there
            await client.close()
            await serving
        assert await room_tasks_left() == []

    asyncio.run(test())


@in_netns
def test_join_errors_are_one_line(janus):
    async def test():
        nobody = f"janus+ws://127.0.0.1:{free_port()}/?room={ROOM}"
        no_room = janus.url.replace(f"room={ROOM}", "room=999")
        async with JanusPeer(janus) as owner:
            await owner.api.message(owner.handle, {"request": "create", "room": 78, "pin": "right", "permanent": False})
        wrong_pin = janus.url.replace(f"room={ROOM}", "room=78&pin=wrong")
        for url, reason in [
            (nobody, "cannot reach Janus at ws://127.0.0.1:"),
            (no_room, "Janus room 999 on 127.0.0.1:.* does not exist; fix room= in the URL or create the room"),
            (wrong_pin, "Janus room 78 on 127.0.0.1:.*: the PIN is wrong or missing"),
        ]:
            client = JanusRoomClient(parse_room_url(url), painted_avatar())
            with pytest.raises(RoomError, match=reason) as caught:
                await client.join()
            assert "\n" not in str(caught.value)
            await client.close()
        assert await room_tasks_left() == []

    asyncio.run(test())


@in_netns
def test_janus_restarting_is_survived_within_3_s_and_janus_gone_ends_the_client(janus):
    """Janus killed for JANUS_DOWN_S: on the default ReconnectPolicy the engine publishes in the restarted
    Janus's room (listed as a publisher) within REJOIN_S of Janus listening again."""

    async def test():
        client = engine_client(janus)
        await client.join()
        serving = asyncio.create_task(client.serve())
        first_feed = client.feed_id
        janus.stop()  # killed mid-session: the socket drops
        await asyncio.sleep(JANUS_DOWN_S)  # failed attempts (connection refused) until the longest delay
        await asyncio.get_running_loop().run_in_executor(None, janus.start)
        back_at = time.monotonic()
        await until(lambda: client.reconnects == 1, 20)
        assert client.feed_id != first_feed  # joined the restarted Janus's room afresh and publishes there
        async with JanusPeer(janus) as viewer:
            await until_listed(viewer, {"engine": client.feed_id})
        rejoin_s = time.monotonic() - back_at
        print(json.dumps({"janus_rejoin_after_server_s": round(rejoin_s, 3)}))
        assert rejoin_s < REJOIN_S
        client.reconnect = ReconnectPolicy(0.05, 0.2, 1.0)
        janus.stop()  # and now for good
        with pytest.raises(RoomError, match=r"^lost Janus room 1234: no connection to Janus at 127\.0\.0\.1:\d+ for"):
            await asyncio.wait_for(serving, 10)
        await client.close()
        assert await room_tasks_left() == []

    asyncio.run(test())


@in_netns
def test_a_destroyed_room_ends_the_client(janus):
    async def test():
        async with JanusPeer(janus) as owner:
            created, _ = await owner.api.message(owner.handle, {"request": "create", "room": 77, "permanent": False})
            assert created["videoroom"] == "created"
            client = JanusRoomClient(parse_room_url(janus.url.replace(f"room={ROOM}", "room=77")), painted_avatar())
            await client.join()
            serving = asyncio.create_task(client.serve())
            await owner.api.message(owner.handle, {"request": "destroy", "room": 77})
            with pytest.raises(RoomError, match=r"^Janus room 77 was destroyed"):
                await asyncio.wait_for(serving, 10)
            assert client.reconnects == 0
            await client.close()
        assert await room_tasks_left() == []

    asyncio.run(test())


@pytest.mark.slow
@in_netns
def test_reactdiff_engine_joins_a_janus_room_and_a_subscriber_sees_the_avatar(janus, tiny_model, capsys):
    """`reactdiff-engine --room janus+ws://...` with a speaker in the room: a subscriber receives the rendered
    avatar (non-blank, moving); destroying the room ends the engine with a one-line error and no leftover threads."""
    threads_before = {t.name for t in threading.enumerate()}

    async def test() -> EngineThread:
        async with JanusPeer(janus) as speaker, JanusPeer(janus) as viewer:
            await speaker.publish("speaker", 0.5)
            engine = EngineThread(["--model", str(tiny_model), "--room", janus.url + "&display=engine", "--quiet",
                                   "--size", "128x128"])  # fmt: skip
            engine.start()
            feed = await until_feed(viewer, "engine", 60)
            await viewer.subscribe(feed)
            await until(lambda: len(viewer.frames) >= 60, 30)
            frames = viewer.frames[-30:]
            assert all(f.shape == (128, 128, 3) and f.std() > 5 for f in frames)  # a drawn avatar, not a blank frame
            assert len({f.tobytes() for f in frames}) >= 10  # and it moves
            await speaker.api.message(speaker.handle, {"request": "destroy", "room": ROOM})
            await asyncio.get_running_loop().run_in_executor(None, engine.join, 20)
        return engine

    engine = asyncio.run(test())
    assert engine.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[-1] == f"reactdiff-engine: error: Janus room {ROOM} was destroyed (closed by its owner)"
    leaked = {t.name for t in threading.enumerate()} - threads_before
    assert not leaked, leaked


async def until_feed(peer: JanusPeer, display: str, timeout_s: float) -> int:
    """The feed id of the publisher called `display`, once it publishes."""
    deadline = time.monotonic() + timeout_s
    while True:
        data, _ = await peer.api.message(peer.handle, {"request": "listparticipants", "room": ROOM})
        for participant in data["participants"]:
            if participant.get("display") == display and participant.get("publisher"):
                return int(participant["id"])
        assert time.monotonic() < deadline, f"no publisher {display!r} in room {ROOM}: {data['participants']}"
        await asyncio.sleep(0.1)


@pytest.mark.slow
@in_netns
def test_reactdiff_engine_gives_one_line_errors_for_unusable_janus_rooms(janus, tiny_model, capsys):
    from engine.cli import main

    for url, message in [
        (f"janus+ws://127.0.0.1:{free_port()}/?room=1", "cannot reach Janus at ws://127.0.0.1:"),
        (janus.url.replace(f"room={ROOM}", "room=4321"), "Janus room 4321 on 127.0.0.1:"),
        ("janus+ws://127.0.0.1/?room=lobby", "room='lobby' must be the VideoRoom's number"),
    ]:
        assert main(["--model", str(tiny_model), "--room", url, "--quiet"]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("reactdiff-engine: error: ") and message in lines[0], lines
