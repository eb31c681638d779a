import av
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
