"""End to end: reactdiff-room, headless Chromium with a fake camera and mic (a synthetic speaker clip), and
`reactdiff-engine --room`; the browser must receive the avatar's video (non-blank, changing) and reaction
frames on the `reactions` data channel, and the engine must leave with a one-line error when the room closes."""

from __future__ import annotations

import re

import pytest

from tests.e2e.harness import (
    INBOUND_FPS,
    PROBE_FRAMES,
    EngineThread,
    chromium,
    missing_tools,
    room_server,
    speaker_clip,
    wait_for,
)

pytestmark = pytest.mark.slow
why_not = missing_tools()
STATS_BOX = "document.querySelector('.tile.engine .stats')"


@pytest.mark.skipif(why_not is not None, reason=str(why_not))
def test_a_browser_sees_the_avatar_and_receives_reactions(tiny_model, tmp_path, monkeypatch, capsys):
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    y4m, wav = speaker_clip(tmp_path)
    with room_server() as url, chromium(y4m, wav) as driver:
        driver.set_script_timeout(30)
        driver.get(url + "&name=alice")
        wait_for(driver, "return window.reactdiffRoom && window.reactdiffRoom.id")
        engine = EngineThread(["--model", str(tiny_model), "--room", url, "--quiet", "--size", "256x256"])
        engine.start()
        wait_for(driver, "const v = document.querySelector('.tile.engine video'); return v && v.videoWidth > 0")
        wait_for(driver, "return window.reactdiffRoom.reactions.count > 0")
        samples = driver.execute_async_script(PROBE_FRAMES, 30)
        assert all(s["std"] > 5 for s in samples), samples[:3]  # a drawn avatar, not a blank frame
        assert len({s["hash"] for s in samples}) >= 10  # and it moves
        reactions = wait_for(driver, "const r = window.reactdiffRoom.reactions; return r.count > 25 && r")
        assert reactions["errors"] == 0 and len(reactions["last"]["face"]) == 58
        fps = driver.execute_async_script(INBOUND_FPS, 2)
        assert fps > 0
        stats = wait_for(driver, "return Object.values(window.reactdiffRoom.stats)[0]")
        assert "fps" in stats and stats["engine_delay_ms"] > 0
        shown = wait_for(driver, f"const t = {STATS_BOX}.textContent; return t.includes('delay') && t")
        delay = re.search(r"delay: ~(\d+) ms \(estimated\)", shown)  # no barcode on this camera: an estimate
        assert delay is not None and int(delay.group(1)) > stats["engine_delay_ms"], shown
    engine.join(20)  # the server shut down: the room closed under the engine
    assert engine.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("reactdiff-engine: error: room ") and "was closed by the server" in err


@pytest.mark.skipif(why_not is not None, reason=str(why_not))
def test_the_page_measures_the_delay_from_its_camera_to_the_avatar_with_the_delay_probe(tiny_model, tmp_path,
                                                                                        monkeypatch):  # fmt: skip
    # the camera's frames carry their index, the engine draws on each avatar frame the newest one it depended on:
    # the page reads both barcodes from decoded pixels and shows the measured delay
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    y4m, wav = speaker_clip(tmp_path, probe=True)
    with room_server() as url, chromium(y4m, wav) as driver:
        driver.get(url + "&name=alice")
        wait_for(driver, "return window.reactdiffRoom && window.reactdiffRoom.id")
        engine = EngineThread(["--model", str(tiny_model), "--room", url, "--quiet", "--size", "256x256",
                               "--delay-probe"])  # fmt: skip
        engine.start()
        samples = wait_for(driver, "const d = window.reactdiffRoom.delay.samples; return d.length > 60 && d", 30)
        delays = [s["delay"] for s in samples]
        assert min(delays) > 20 and max(delays) < 1500, delays  # capture to display, on the page's own clock
        ticks = [s["tick"] for s in samples]
        assert len(set(ticks)) > 30  # many different avatar frames were read, not one
        shown = wait_for(driver, f"const t = {STATS_BOX}.textContent; return t.includes('(measured)') && t")
        assert re.search(r"delay: \d+ ms \(measured\)", shown), shown
    engine.join(20)
