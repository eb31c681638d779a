"""The avatar through a bad network: headless Chromium (the speaker, fake camera and mic) and `reactdiff-engine
--room` in a reactdiff-room, inside a network namespace of this file's own (tests/netns.py), where every media
packet crosses `lo`. Once the avatar plays, the link turns bad (`IMPAIRMENT`: 5 % of UDP packets dropped in both
directions, each direction of the engine's media capped at 1.5 Mbit/s behind a 100 ms queue); over the next
MEASURE_S seconds the browser must keep decoding the avatar at MIN_FPS or more, and no frame may stay on screen
longer than MAX_FREEZE_MS (requestVideoFrameCallback in the page, getStats counters beside it)."""

from __future__ import annotations

import dataclasses
import json

import aioice.ice
import pytest

from tests.e2e.harness import (
    AVATAR_PLAYBACK,
    ENGINE_MEDIA_PORT,
    EngineThread,
    chromium,
    missing_tools,
    room_server,
    speaker_clip,
    wait_for,
)
from tests.netns import LinkFaults, in_netns, prepare_namespace, run_file_in_netns, why_faults_cannot_run

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    (missing_tools() or why_faults_cannot_run()) is not None, reason=str(missing_tools() or why_faults_cannot_run())
)]  # fmt: skip

IMPAIRMENT = LinkFaults(loss_percent=5.0, rate_kbit=1500, queue_ms=100)
MEASURE_S = 12.0
MIN_FPS = 20.0
MAX_FREEZE_MS = 1000.0
NETNS_RUN_TIMEOUT_S = 240


def test_faults_in_netns(tmp_path, tiny_model):
    """This file's other tests, in a fresh network and PID namespace (tests/netns.py)."""
    run_file_in_netns(__file__, "test_faults_in_netns", tmp_path / "inner", NETNS_RUN_TIMEOUT_S, tiny_model)


@in_netns
def test_the_avatar_keeps_playing_through_loss_and_a_rate_cap(tiny_model, tmp_path, monkeypatch):
    address = prepare_namespace()
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [address])
    y4m, wav = speaker_clip(tmp_path)
    with room_server() as url, chromium(y4m, wav, loopback=False) as driver:
        driver.set_script_timeout(MEASURE_S + 30)
        driver.get(url + "&name=speaker")
        wait_for(driver, "return window.reactdiffRoom && window.reactdiffRoom.id")
        engine = EngineThread(["--model", str(tiny_model), "--room", url, "--quiet", "--size", "256x256"])
        engine.start()
        wait_for(driver, "const v = document.querySelector('.tile.engine video'); return v && v.videoWidth > 0", 60)
        IMPAIRMENT.apply(driver.execute_async_script(ENGINE_MEDIA_PORT))
        playback = driver.execute_async_script(AVATAR_PLAYBACK, MEASURE_S)
        link = LinkFaults.counts()
    engine.join(20)
    fps = playback["counts"]["framesDecoded"] / playback["seconds"]
    figures = {"impairment": dataclasses.asdict(IMPAIRMENT), "decoded_fps": round(fps, 1), **playback, "link": link}
    print(json.dumps(figures))
    assert link["dropped_random"] > 0 and playback["counts"]["packetsLost"] > 0, (link, playback)  # it was lossy
    assert link["sent_capped"] > playback["counts"]["packetsReceived"], link  # and the media went through the caps
    assert fps >= MIN_FPS, playback
    assert playback["longest_gap_ms"] < MAX_FREEZE_MS, playback
    assert engine.code == 2  # the server shut down under it: the room closed (one-line error, not a hang)
