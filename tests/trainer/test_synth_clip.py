"""`reactdiff-trainer clip`: one speaker as a single media file, drawn as a vector style or from a portrait."""

import av
import numpy as np
import pytest

from trainer.cli import main


@pytest.mark.slow
def test_clip_writes_one_file_with_speech_and_video(tmp_path):
    out = tmp_path / "speaker.mp4"
    assert main(["clip", "--out", str(out), "--seconds", "4", "--seed", "2", "--size", "128x128"]) == 0
    with av.open(str(out)) as container:
        kinds = sorted(s.type for s in container.streams)
        assert kinds == ["audio", "video"]
        frames = list(container.decode(video=0))
    assert len(frames) == 101 and frames[0].width == 128
    assert main(["clip", "--out", str(out), "--size", "127x128"]) == 2  # odd sizes cannot be H.264


def tracked_found(path) -> float:
    """Share of the video frames of `path` in which the engine's tracker finds a face."""
    from engine.tracker import FaceTracker

    with av.open(str(path)) as container, FaceTracker() as tracker:
        found = [
            tracker.track(f.to_ndarray(format="rgb24"), i / 25).found for i, f in enumerate(container.decode(video=0))
        ]
    return float(np.mean(found))


@pytest.mark.slow
def test_clip_draws_the_speaker_from_a_library_portrait_or_a_photo_of_ones_own(tmp_path):
    from skimage import data

    from renderer.sinks import save_png

    own = tmp_path / "me.png"
    save_png(own, data.astronaut())
    for portrait in ("smiling_man", str(own)):
        out = tmp_path / "speaker.mp4"
        args = ["clip", "--out", str(out), "--seconds", "4", "--seed", "2", "--size", "192x144"]
        assert main([*args, "--portrait", portrait]) == 0
        with av.open(str(out)) as container:
            assert sorted(s.type for s in container.streams) == ["audio", "video"]
        assert tracked_found(out) > 0.95, portrait


@pytest.mark.parametrize(
    ("portrait", "message"),
    [
        ("nobody", "--portrait nobody: neither a library portrait (astronaut, "),
        ("missing.jpg", "avatar photo missing.jpg does not exist"),
        ("notes.txt", "--portrait notes.txt: neither a library portrait"),
    ],
)
def test_a_bad_portrait_is_one_clear_line(tmp_path, capsys, monkeypatch, portrait, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a photo")
    assert main(["clip", "--out", str(tmp_path / "s.mp4"), "--seconds", "4", "--portrait", portrait]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
    assert not (tmp_path / "s.mp4").exists()


def test_a_photo_without_a_face_is_refused_before_any_work(tmp_path, capsys):
    from renderer.sinks import save_png

    blank = tmp_path / "wall.png"
    save_png(blank, np.full((200, 200, 3), 128, np.uint8))
    assert main(["clip", "--out", str(tmp_path / "s.mp4"), "--seconds", "4", "--portrait", str(blank)]) == 2
    assert "no face found" in capsys.readouterr().err
