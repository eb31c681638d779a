import av
import numpy as np
import pytest

from renderer.face import FACE_INDEX, neutral_face
from renderer.video import write_face_video


def test_writes_one_video_frame_per_face_at_the_face_rate(tmp_path):
    faces = neutral_face(30)
    faces[:, FACE_INDEX["jawOpen"]] = np.linspace(0, 1, 30)
    write_face_video(tmp_path / "a.mp4", faces, fps=25.0, size=(128, 96))
    with av.open(str(tmp_path / "a.mp4")) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.average_rate == 25
    assert len(decoded) == 30 and decoded[0].shape == (96, 128, 3)
    assert np.abs(decoded[-1].astype(int) - decoded[0]).max() > 50  # the mouth opened


def test_side_by_side_puts_the_given_frames_on_the_left(tmp_path):
    speaker = np.zeros((5, 64, 32, 3), dtype=np.uint8)
    speaker[..., 0] = 200
    write_face_video(tmp_path / "b.mp4", neutral_face(5), size=(64, 64), side_by_side=speaker)
    with av.open(str(tmp_path / "b.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (64, 96, 3)
    assert frame[32, 10, 0] > 180 and frame[32, 10, 1] < 30
    with pytest.raises(ValueError, match="side_by_side"):
        write_face_video(tmp_path / "c.mp4", neutral_face(4), size=(64, 64), side_by_side=speaker)


def test_write_face_media_muxes_speech_with_the_avatar_or_refuses_nothing(tmp_path):
    from renderer.video import write_face_media

    path = tmp_path / "talk.mp4"
    write_face_media(path, neutral_face(25), np.zeros(16000, np.float32), size=(64, 64))
    with av.open(str(path)) as media:
        assert sorted(s.type for s in media.streams) == ["audio", "video"]
        assert sum(1 for _ in media.decode(video=0)) == 25
    with pytest.raises(ValueError, match="give faces, audio or both"):
        write_face_media(tmp_path / "none.mp4")


def test_any_avatar_and_a_frame_filter_and_the_crf_are_honoured(tmp_path):
    from renderer.vector import VectorAvatar

    faces = neutral_face(10)
    faces[:, FACE_INDEX["jawOpen"]] = np.linspace(0, 1, 10)
    with VectorAvatar("curls", width=96, height=64) as avatar:
        write_face_video(tmp_path / "plain.mp4", faces, avatar=avatar, crf=18)
        write_face_video(tmp_path / "coarse.mp4", faces, avatar=avatar, crf=40)
        write_face_video(tmp_path / "dark.mp4", faces, avatar=avatar, frame_filter=lambda f: f // 2)
        reference = avatar.draw(faces[0]).copy()
    frames = {}
    for name in ("plain", "dark"):
        with av.open(str(tmp_path / f"{name}.mp4")) as container:
            frames[name] = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
    assert frames["plain"][0].shape == (64, 96, 3) and len(frames["dark"]) == 10  # the avatar's own size
    assert np.abs(frames["plain"][0] - reference).mean() < 3
    assert np.abs(frames["dark"][0] - reference // 2).mean() < 6  # the filter's frame was written
    assert (tmp_path / "coarse.mp4").stat().st_size < 0.7 * (tmp_path / "plain.mp4").stat().st_size  # crf 40
