import av
import numpy as np
import pytest

from renderer.__main__ import main
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
    for option in ("--params", "--out", "--camera", "--size", "--style", "--background", "--fps", "--sheet"):
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
