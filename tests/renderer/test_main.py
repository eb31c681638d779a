import av
import numpy as np

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
