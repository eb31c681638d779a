"""End to end: reactdiff-room, headless Chromium with a fake camera and mic (a synthetic speaker clip), and
`reactdiff-engine --room`; the browser must receive the avatar's video (non-blank, changing) and reaction
frames on the `reactions` data channel, and the engine must leave with a one-line error when the room closes."""

from __future__ import annotations

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
        assert "fps" in stats
    engine.join(20)  # the server shut down: the room closed under the engine
    assert engine.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("reactdiff-engine: error: room ") and "was closed by the server" in err
