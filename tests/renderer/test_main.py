from typing import ClassVar

import av
import numpy as np
import pytest

from renderer.__main__ import main
from renderer.avatar import AVATARS, Avatar, AvatarKind
from renderer.face import FACE_INDEX, neutral_face


def test_renders_a_clip_to_mp4_at_the_output_rate(tmp_path, capsys):
    faces = neutral_face(25)
    faces[:, FACE_INDEX["eyeBlinkLeft"]] = np.linspace(0, 1, 25)
    np.save(tmp_path / "clip.npy", faces)
    out = tmp_path / "out.mp4"
    assert main(["--params", str(tmp_path / "clip.npy"), "--out", str(out), "--size", "96x64", "--fps", "30"]) == 0
    with av.open(str(out)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 30 and (frames[0].width, frames[0].height) == (96, 64)


@pytest.mark.parametrize("shape", [(3, 1, 58), (1, 3, 58), (3, 58, 1)])
def test_react_shaped_arrays_render_as_the_trainer_reads_them(tmp_path, shape):
    """REACT ships its 3DMM arrays as (T, 1, 58); the renderer refused them while the trainer read them."""
    np.save(tmp_path / "clip.npy", neutral_face(3).reshape(shape))
    out = tmp_path / "frames"
    assert main(["--params", str(tmp_path / "clip.npy"), "--out", str(out), "--size", "64x64", "--fps", "25"]) == 0
    assert len(list(out.glob("*.png"))) == 3


def test_png_sequence_and_contact_sheet(tmp_path):
    np.save(tmp_path / "clip.npy", neutral_face(3))
    args = ["--params", str(tmp_path / "clip.npy"), "--out", str(tmp_path / "frames"), "--size", "64x64"]
    assert main([*args, "--fps", "25", "--sheet", str(tmp_path / "sheet.png"), "--style", "bob"]) == 0
    assert len(list((tmp_path / "frames").glob("*.png"))) == 3
    with av.open(str(tmp_path / "sheet.png")) as container:
        sheet = next(container.decode(video=0))
    assert sheet.width == 4 * 256 and sheet.height == 4 * 256


def test_bad_file_gives_one_line_error_and_exit_2(tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((4, 57)))
    assert main(["--params", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.npy" in err and "58" in err
    (tmp_path / "junk.npy").write_text("not numpy")
    assert main(["--params", str(tmp_path / "junk.npy"), "--out", str(tmp_path / "o.mp4")]) == 2


def test_help_explains_every_option(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    text = capsys.readouterr().out
    for option in (
        "--params",
        "--out",
        "--camera",
        "--size",
        "--avatar",
        "--style",
        "--background",
        "--fps",
        "--sheet",
    ):
        assert option in text


def test_an_unknown_output_extension_is_refused_before_anything_is_written(tmp_path, capsys):
    np.save(tmp_path / "clip.npy", neutral_face(3))
    sheet = tmp_path / "sheet.png"
    args = ["--params", str(tmp_path / "clip.npy"), "--out", str(tmp_path / "clip.mov"), "--sheet", str(sheet)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "clip.mov" in err and ".mp4" in err and "folder" in err
    assert not (tmp_path / "clip.mov").exists() and not sheet.exists()  # was: a folder of PNGs named clip.mov


def test_size_follows_the_engines_rule_and_default(tmp_path, capsys):
    from renderer.sinks import DEFAULT_SIZE

    np.save(tmp_path / "clip.npy", neutral_face(2))
    args = ["--params", str(tmp_path / "clip.npy"), "--out", str(tmp_path / "o.mp4")]
    with pytest.raises(SystemExit) as exit_:  # an mp4 cannot take it: refused before rendering, not by the writer
        main([*args, "--size", "65x64"])
    assert exit_.value.code == 2
    assert "must be even" in capsys.readouterr().err and not (tmp_path / "o.mp4").exists()
    assert main([*args, "--background", "10,200,30", "--fps", "25"]) == 0
    with av.open(str(tmp_path / "o.mp4")) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == DEFAULT_SIZE
    assert np.abs(frame.to_ndarray(format="rgb24")[0, 0].astype(int) - (10, 200, 30)).max() < 8


def test_a_background_image_that_does_not_decode_is_refused_at_the_command_line(tmp_path, capsys):
    (tmp_path / "bg.png").write_text("not an image")
    with pytest.raises(SystemExit) as exit_:
        main(["--sheet", str(tmp_path / "s.png"), "--background", str(tmp_path / "bg.png")])
    assert exit_.value.code == 2
    assert "cannot decode" in capsys.readouterr().err and not (tmp_path / "s.png").exists()


class FakePhotoAvatar(Avatar):
    """Stands in for renderer.photo's PhotoAvatar: the top half red, the bottom half black."""

    kind = AvatarKind.PHOTO
    made: ClassVar[list[tuple[str, int, int]]] = []

    def __init__(self, path, *, width, height, background=None, cache_dir=None):
        super().__init__(width=width, height=height)
        self.made.append((path.name, width, height))
        self._frame = np.zeros((height, width, 3), np.uint8)
        self._frame[: height // 2, :, 0] = 255

    def _draw(self, face):
        return self._frame

    def _release(self):
        self._frame = None


@pytest.fixture
def photo(tmp_path, monkeypatch):
    """A portrait file whose --avatar goes to FakePhotoAvatar through the registry."""
    monkeypatch.setitem(AVATARS, AvatarKind.PHOTO, "tests.renderer.test_main:FakePhotoAvatar")
    FakePhotoAvatar.made.clear()
    (tmp_path / "me.jpg").write_bytes(b"a portrait")
    return tmp_path / "me.jpg"


def test_a_photo_avatar_renders_clips_and_contact_sheets(tmp_path, photo):
    np.save(tmp_path / "clip.npy", neutral_face(5))
    sheet, out = tmp_path / "sheet.png", tmp_path / "o.mp4"
    args = ["--params", str(tmp_path / "clip.npy"), "--out", str(out), "--fps", "25", "--sheet", str(sheet)]
    assert main([*args, "--avatar", str(photo)]) == 0
    assert FakePhotoAvatar.made == [("me.jpg", 256, 256), ("me.jpg", 256, 256)]  # the sheet's tiles, the clip
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 5 and all(f[10, 10, 0] > 240 and f[240, 10, 0] < 16 for f in frames)
    with av.open(str(sheet)) as container:
        tiles = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert tiles.shape == (4 * 256, 4 * 256, 3) and tiles[300, 300, 0] > 240 and tiles[400, 300, 0] < 16


def test_the_virtual_camera_defaults_to_1280x720(tmp_path, monkeypatch):
    import pyvirtualcam.camera

    opened = []

    class Camera:
        def __init__(self, *, width, height, fps, fourcc, device, **kw):
            opened.append((width, height))

        def device(self):
            return "fake"

        def native_fourcc(self):
            return None

        def send(self, frame):
            return None

        def close(self):
            return None

    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"fake": Camera})
    np.save(tmp_path / "clip.npy", neutral_face(2))
    assert main(["--params", str(tmp_path / "clip.npy"), "--camera", "--fps", "25", "--avatar", "glasses"]) == 0
    assert main(["--params", str(tmp_path / "clip.npy"), "--camera", "--fps", "25", "--size", "640x480"]) == 0
    assert opened == [(1280, 720), (640, 480)]


@pytest.mark.parametrize(
    ("avatar", "phrase"),
    [("nope", "unknown avatar 'nope': choose a style (default, bob, curls, glasses)"),
     ("missing.webp", "avatar photo missing.webp does not exist"), ("me.bmp", "a portrait must be a .jpg")],
)  # fmt: skip
def test_a_bad_avatar_is_one_line_and_exit_2_before_anything_is_written(tmp_path, capsys, monkeypatch, avatar, phrase):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "clip.npy", neutral_face(2))
    assert main(["--params", "clip.npy", "--out", "o.mp4", "--sheet", "s.png", "--avatar", avatar]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and phrase in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npy"]
