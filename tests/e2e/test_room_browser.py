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


ENGINE_PEER = "Object.values(window.reactdiffRoom.peers).find((p) => p.role === 'engine')"


@pytest.mark.skipif(why_not is not None, reason=str(why_not))
def test_the_page_changes_who_listens_and_a_hostile_page_is_refused_without_harm(persona_model_dir, tmp_path,
                                                                                  monkeypatch):  # fmt: skip
    """The room page builds its persona menu and expressiveness slider from what the engine says, a change made
    there reaches the engine (its --stats record it from the frame it applied to) and comes back to the page; what a
    hostile page sends (a wrong type, NaN, an unknown persona, bytes that are not msgpack, a flood) is refused or
    dropped and counted, and that page keeps its connection, its reactions and the listener it had."""
    import json
    import time

    import aioice.ice
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    y4m, wav = speaker_clip(tmp_path)
    stats, params = tmp_path / "stats.json", tmp_path / "listener.jsonl"
    with room_server() as url, chromium(y4m, wav) as driver:
        driver.get(url + "&name=alice")
        page_id = wait_for(driver, "return window.reactdiffRoom && window.reactdiffRoom.id")
        engine = EngineThread(["--model", str(persona_model_dir), "--room", url, "--quiet", "--size", "128x96",
                               "--persona", "nodder", "--stats", str(stats), "--params-out", str(params)])  # fmt: skip
        engine.start()
        told = wait_for(driver, "return window.reactdiffRoom.listener", 30)
        assert told["persona"] == "nodder" and told["personas"] == ["anyone", "nodder", "reserved"]
        assert told["expressiveness"] is None and told["by"] == "start"
        menu = Select(driver.find_element(By.ID, "persona"))
        assert [o.text for o in menu.options] == told["personas"] and menu.first_selected_option.text == "nodder"
        assert driver.find_element(By.ID, "listener").is_displayed()

        menu.select_by_value("reserved")  # what a user does: pick from the menu, drag the slider
        driver.execute_script("const s = document.getElementById('expressiveness'); s.value = '2';"
                              "s.dispatchEvent(new Event('input'));")  # fmt: skip
        listener = "const l = window.reactdiffRoom.listener; return l.persona === 'reserved' && " \
                   "l.expressiveness === 2 && l"  # fmt: skip
        now = wait_for(driver, listener, 20)
        assert now["by"] == page_id
        assert driver.find_element(By.ID, "expressiveness-value").text == "2.00x"
        assert driver.find_element(By.ID, "listener-by").text == "set by you"

        for hostile in [
            "MessagePack.encode({v: 1, type: 'listener-set', persona: 5})",  # a wrong type
            "MessagePack.encode({v: 1, type: 'listener-set', expressiveness: NaN})",
            "MessagePack.encode({v: 1, type: 'listener-set', persona: 'ghost'})",  # no such persona
            "new Uint8Array([0xc1, 0x00, 0x07])",
        ]:  # fmt: skip  (not msgpack)
            driver.execute_script(f"{ENGINE_PEER}.channel.send({hostile})")
            time.sleep(0.35)  # within the rate limit: each is read and refused
        flood = "MessagePack.encode({v: 1, type: 'listener-set', persona: 'reserved'})"
        driver.execute_script(f"const peer = {ENGINE_PEER}; for (let k = 0; k < 300; k++) peer.channel.send({flood})")
        count = driver.execute_script("return window.reactdiffRoom.reactions.count")
        wait_for(driver, f"return window.reactdiffRoom.reactions.count > {count + 25}")  # reactions go on
        assert driver.execute_script(f"return {ENGINE_PEER}.pc.connectionState") == "connected"
        kept = driver.execute_script("return window.reactdiffRoom.listener")
        assert (kept["persona"], kept["expressiveness"]) == ("reserved", 2)
    engine.join(20)  # the server shut down: the room closed under the engine, which wrote its stats
    assert engine.code == 2
    report = json.loads(stats.read_text())
    changes = report["listener"]["changes"]
    assert (changes[0]["persona"], changes[0]["expressiveness"], changes[0]["by"]) == ("nodder", None, "start")
    mine = [c for c in changes[1:] if c["by"] == page_id]
    assert len(mine) == len(changes) - 1 and mine[1]["expressiveness"] == 2.0
    assert mine[0]["persona"] == "reserved" and any(c["frame"] is not None for c in mine)  # windows made with them
    room = report["room"]
    assert room["controls_refused"] == 4 and room["controls_dropped"] > 250
    assert room["controls"] == len(mine) == report["listener"]["changes_total"] - 1
    frames = [json.loads(line) for line in params.read_text().splitlines()]
    assert len(frames) > 50 and [f["t_s"] for f in frames] == pytest.approx([k / 25 for k in range(len(frames))])
