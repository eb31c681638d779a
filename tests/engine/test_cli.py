"""`reactdiff-engine` end to end: real files (PyAV), a tiny random-weight model directory, ONNX Runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import ClassVar

import av
import numpy as np
import pytest

from engine import cli
from engine.features import SAMPLE_RATE
from engine.sources import FileSource
from engine.sources.base import AudioChunk
from renderer.avatar import Avatar, AvatarKind
from renderer.face import FACE_INDEX, neutral_face
from renderer.video import write_face_media
from tests.engine.test_stream import FakeSource, speech


def run_cli(*args: str | Path) -> tuple[int, str]:
    """main() in this process; returns (exit status, stderr)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, err.getvalue()


def assert_one_line_error(code: int, err: str, *phrases: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("reactdiff-engine: error:"), err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in lines[0], err


# --- mistakes that need no model ------------------------------------------------------------------------------


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ["--input", "--output", "--side-by-side", "--model", "--backend", "--steps", "--seed", "--stats",
                   "--audio-device", "--face-model", "--hop", "--size", "--avatar", "--style", "--list-audio-devices",
                   "--realtime", "--fast", "--quiet", "--trackers", "--background", "--camera-device", "--persona",
                   "--expressiveness", "--list-personas", "--params-out"]:  # fmt: skip
        assert option in text
    assert "anyone" in text and "0.25 to 2.5" in text and "--list-personas" in text and ".jsonl" in text


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--model", "m", "--output", "y.mp4"], "give --input FILE or --audio-device"),
        (["--model", "m", "--input", "x.mp4", "--output", "y.avi"], "write a .mp4 file or 'virtualcam'"),
        (["--model", "m", "--input", "x.mp4"], "--output is required"),
        (["--model", "m", "--input", "x.mp4", "--output", "y.mp4", "--size", "big"], "expected WIDTHxHEIGHT"),
        (["--model", "m", "--input", "x.mp4", "--output", "y.mp4", "--size", "255x256"], "must be even"),
        (["--model", "m", "--input", "x.mp4", "--output", "y.mp4", "--steps", "0"], "use 1 to 50"),
        (["--model", "m", "--audio-device", "mic", "--output", "virtualcam", "--fast"], "--fast needs a file"),
        (["--model", "m", "--input", "x.mp4", "--output", "y.mp4", "--trackers", "0"], "use 1 to 8"),
        (["--model", "no/such/dir", "--input", "x.mp4", "--output", "y.mp4"], "does not exist"),
    ],
)
def test_user_mistakes_are_one_line_errors(args, phrase, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # y.mp4 is checked for being writable
    assert_one_line_error(*run_cli(*args), phrase)


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--room", "local", "--side-by-side"], "--side-by-side is for files and devices"),
        (["--input", "x.mp4", "--fast", "--output", "virtualcam"], "--fast has no clock to pace --output virtualcam"),
        (["--input", "x.mp4", "--output", "y.mp4", "--camera-device", "/dev/video2"], "only with --output virtualcam"),
        (["--input", "x.mp4", "--output", "y.mp4", "--stats", "nodir/s.json"], "--stats: nodir/s.json: folder nodir"),
        (["--input", "x.mp4", "--output", "/proc/out.mp4"], "--output: /proc/out.mp4: cannot write a file there"),
        (["--input", "x.mp4", "--output", "out.mp4"], "--output: out.mp4 is a folder"),
        (["--input", "x.mp4", "--output", "y.mp4", "--stats", "out.mp4"], "--stats: out.mp4 is a folder"),
        (["--input", "x.mp4", "--output", "y.mp4", "--background", "sky.png"], "background image sky.png does not"),
        (["--input", "x.mp4", "--output", "y.mp4", "--background", "1,2,300"], "background '1,2,300': expected R,G,B"),
        (["--input", "x.mp4", "--output", "y.mp4", "--size", "641x360"], "--size 641x360: width and height must be"),
        (["--input", "x.mp4", "--output", "y.mp4", "--avatar", "nope"],
         "--avatar nope: unknown avatar 'nope': choose a style (default, bob, curls, glasses) or give a portrait"),
        (["--input", "x.mp4", "--output", "y.mp4", "--style", "nope"], "--avatar nope: unknown avatar 'nope'"),
        (["--input", "x.mp4", "--output", "y.mp4", "--avatar", "me.jpg"], "avatar photo me.jpg does not exist"),
        (["--input", "x.mp4", "--output", "y.mp4", "--avatar", "me.gif"], "a portrait must be a .jpg, .jpeg, .png"),
        (["--room", "local", "--avatar", "me.png"], "--avatar me.png: avatar photo me.png does not exist"),
        (["--input", "x.mp4", "--output", "y.mp4", "--expressiveness", "3"], "--expressiveness 3.0: use 0.25 to 2.5"),
        (["--room", "local", "--expressiveness", "nan"], "--expressiveness nan: use 0.25 to 2.5"),
        (["--input", "x.mp4", "--output", "y.mp4", "--params-out", "p.txt"],
         "--params-out p.txt: write a .npz, .jsonl, .csv file"),
        (["--input", "x.mp4", "--output", "y.mp4", "--params-out", "nodir/p.csv"], "--params-out: nodir/p.csv: folder"),
        (["--room", "local", "--params-out", "out.mp4"], "--params-out out.mp4: write a .npz"),
        (["--input", "x.mp4", "--output", "y.mp4", "--temperature", "2"], "--temperature 2.0: use 0 to 1.5"),
        (["--room", "local", "--temperature", "-1"], "--temperature -1.0: use 0 to 1.5"),
    ],
)  # fmt: skip
def test_mistakes_in_the_arguments_are_refused_before_anything_starts(args, phrase, tmp_path, monkeypatch, capsys):
    """Before the model loads, a room starts or the clip is read: these used to end in a traceback after the run
    (--stats in a missing folder, --output a folder or in /proc, --room with --side-by-side) or be accepted."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out.mp4").mkdir()
    monkeypatch.setattr(cli, "open_backend", lambda args: pytest.fail("the model was loaded"))
    assert_one_line_error(*run_cli("--model", "m", *args), phrase)
    assert capsys.readouterr().out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_camera_device_reaches_the_virtual_camera(monkeypatch):
    import pyvirtualcam.camera

    opened = []

    class Camera:
        def __init__(self, *, width, height, fps, fourcc, device, **kw):
            opened.append(device)

        def device(self):
            return opened[-1]

        def native_fourcc(self):
            return None

        def close(self):
            return None

    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"fake": Camera})
    with cli.parse_output("virtualcam", "/dev/video7").factory()(64, 48) as sink:
        assert sink.device == "/dev/video7"
    with cli.parse_output("virtualcam").factory()(64, 48):
        assert opened == ["/dev/video7", None]  # no --camera-device: pyvirtualcam picks the first free one


@pytest.mark.parametrize(
    ("args", "size"),
    [
        (["--input", "x.mp4", "--output", "y.mp4"], (256, 256)),
        (["--audio-device", "mic", "--output", "virtualcam"], (1280, 720)),
        (["--room", "local"], (640, 480)),
        (["--room", "local", "--output", "virtualcam"], (640, 480)),  # one avatar feeds both: the room's size
        (["--room", "local", "--size", "320x240", "--avatar", "glasses"], (320, 240)),
    ],
)
def test_each_output_has_its_default_size_and_the_avatar_is_made_before_the_model(args, size, tmp_path, monkeypatch):
    import renderer.avatar

    monkeypatch.chdir(tmp_path)
    made, real = [], renderer.avatar.create_avatar

    def create_avatar(spec, *, width, height, background):
        made.append((spec, (width, height)))
        return real(spec, width=width, height=height, background=background)

    def open_backend(args):
        raise cli.UserError("stopped where the model loads")

    monkeypatch.setattr(renderer.avatar, "create_avatar", create_avatar)
    monkeypatch.setattr(cli, "open_backend", open_backend)
    assert_one_line_error(*run_cli("--model", "m", *args), "stopped where the model loads")
    assert made == [(args[args.index("--avatar") + 1] if "--avatar" in args else "default", size)]


class FakeBackend:
    name, steps, sampler_name = "fake", 4, "dpmpp2m"

    def close(self):
        return None


def test_a_stop_while_the_model_loads_still_writes_the_stats(tmp_path, monkeypatch):
    """Ctrl-C during start-up: the README promises --stats with "interrupted": true at any moment."""
    import signal
    import time

    def load(args):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the model loads
        time.sleep(0.05)  # the handler runs (sleep resumes after it: PEP 475)
        return FakeBackend()

    monkeypatch.setattr(cli, "open_backend", load)
    stats = tmp_path / "s.json"
    code, _ = run_cli("--model", "m", "--input", "x.mp4", "--output", tmp_path / "o.mp4", "--stats", stats)
    assert code == 130
    report = json.loads(stats.read_text())
    assert report["interrupted"] is True and report["backend"] == "fake" and report["frames"]["output"] == 0
    assert report["mode"] == "fast" and report["media_s"] == 0 and not (tmp_path / "o.mp4").exists()


def test_without_model_the_shipped_default_is_used_or_the_error_says_so(monkeypatch):
    import engine.cli
    from engine.models import DEFAULT_MODEL_DIR, default_model_dir

    assert default_model_dir() in (None, DEFAULT_MODEL_DIR)
    monkeypatch.setattr(engine.cli, "default_model_dir", lambda: None)
    assert_one_line_error(*run_cli("--input", "x.mp4", "--output", "y.mp4"), "no default model: pass --model DIR")


# --- with a model ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


def write_clip(path: Path, *, seconds: float = 2.0, audio: bool = True, video: bool = True) -> Path:
    """A talking avatar (jaw moving) at 25 fps 160x120 with speech-like tone bursts at 16 kHz."""
    frames = round(seconds * 25)
    faces = neutral_face(frames)
    faces[:, FACE_INDEX["jawOpen"]] = 0.5 + 0.5 * np.sin(np.arange(frames) / 3)
    write_face_media(path, faces if video else None, speech(seconds) if audio else None, size=(160, 120))
    return path


def video_info(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as video:
        stream = video.streams.video[0]
        frames = sum(1 for _ in video.decode(stream))
        return frames, stream.width, stream.height


@pytest.mark.slow
def test_file_to_mp4_side_by_side_with_stats(model_dir, tmp_path):
    clip = write_clip(tmp_path / "speaker.mp4")
    out, stats = tmp_path / "listener.mp4", tmp_path / "stats.json"
    code, err = run_cli("--model", model_dir, "--input", clip, "--output", out, "--side-by-side", "--stats", stats,
                        "--size", "96x120", "--seed", "4", "--quiet")  # fmt: skip
    assert code == 0, err
    frames, width, height = video_info(out)
    report = json.loads(stats.read_text())
    listener = report["frames"]["generated"]  # 25 fps; AAC adds its priming samples to the 2 s
    assert 50 <= listener <= 52 and frames == report["frames"]["output"] == round(listener * 30 / 25)
    assert (width, height) == (160 + 96, 120)  # the 160x120 speaker fits the avatar height as it is
    assert report["mode"] == "fast" and report["windows"]["dropped"] == 0 and report["frames"]["filled"] == 0
    assert report["latency_ms"]["frames"] == listener and report["latency_ms"]["p95_ms"] >= 0
    assert report["tracker"]["tracked"] == 50 and report["rtf"] > 0 and report["backend"] == "onnxruntime"


@pytest.mark.slow
def test_an_output_that_fails_mid_run_is_a_one_line_error(model_dir, tmp_path, monkeypatch):
    from renderer.sinks import Mp4Sink

    def full_disk(self, frame, timestamp_s):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Mp4Sink, "_write", full_disk)
    code, err = run_cli("--model", model_dir, "--input", write_clip(tmp_path / "s.wav", seconds=1.0, video=False),
                        "--output", tmp_path / "o.mp4", "--quiet")  # fmt: skip
    assert_one_line_error(code, err, "No space left on device")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "value", "corner"),
    [("--background", "10,200,30", (10, 200, 30)), ("--avatar", "bob", (244, 232, 218)),
     ("--style", "curls", (220, 234, 224))],
)  # fmt: skip
def test_background_and_avatar_reach_the_picture(model_dir, tmp_path, option, value, corner):
    out = tmp_path / "o.mp4"
    code, err = run_cli("--model", model_dir, "--input", write_clip(tmp_path / "s.wav", seconds=1.0, video=False),
                        "--output", out, "--size", "64x48", option, value, "--quiet")  # fmt: skip
    assert code == 0, err
    with av.open(str(out)) as video:
        corners = [f.to_ndarray(format="rgb24")[0, 0].astype(int) for f in video.decode(video=0)]
    assert len(corners) == 30 and all(np.abs(c - corner).max() < 8 for c in corners)  # H.264 is near


class FakePhotoAvatar(Avatar):
    """Stands in for renderer.photo's PhotoAvatar: a flat colour, and a record of where it was made and drawn."""

    kind = AvatarKind.PHOTO
    made: ClassVar[list[tuple[Path, tuple[int, int], str]]] = []
    drawn_in: ClassVar[set[str]] = set()
    released: ClassVar[list[Path]] = []

    def __init__(self, path, *, width, height, background=None, cache_dir=None):
        super().__init__(width=width, height=height)
        self.path = path
        self.made.append((path, (width, height), threading.current_thread().name))
        self._frame = np.full((height, width, 3), (200, 40, 90), np.uint8)

    def _draw(self, face):
        self.drawn_in.add(threading.current_thread().name)
        return self._frame

    def _release(self):
        self.released.append(self.path)


class FakeCamera:
    """pyvirtualcam's backend contract, keeping what it is sent (`install` makes it the only backend)."""

    frames: ClassVar[list[np.ndarray]] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.shape = (height, width)

    def device(self):
        return "fake"

    def native_fourcc(self):
        return None

    def send(self, frame):
        self.frames.append(np.array(frame))

    def close(self):
        return None

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
        """The camera of this test; returns the list its frames go to."""
        import pyvirtualcam.camera

        cls.frames = []
        monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"fake": cls})
        return cls.frames


@pytest.mark.slow
@pytest.mark.parametrize("output", ["file", "virtualcam"])
def test_a_photo_avatar_is_made_once_before_the_run_and_drawn_by_the_player(model_dir, tmp_path, monkeypatch, output):
    """--avatar PHOTO through the factory: made in the main thread before the model loads (a slow preparation is
    over before anything runs), drawn only by the player thread, into the mp4 or the camera; closed once."""
    import renderer.avatar

    frames = FakeCamera.install(monkeypatch)
    monkeypatch.setitem(renderer.avatar.AVATARS, AvatarKind.PHOTO, "tests.engine.test_cli:FakePhotoAvatar")
    for record in (FakePhotoAvatar.made, FakePhotoAvatar.drawn_in, FakePhotoAvatar.released):
        record.clear()
    portrait = tmp_path / "me.jpg"
    portrait.write_bytes(b"a portrait")
    out = tmp_path / "o.mp4" if output == "file" else "virtualcam"
    code, err = run_cli("--model", model_dir, "--input", write_clip(tmp_path / "s.wav", seconds=1.0, video=False),
                        "--output", out, "--size", "64x48", "--avatar", portrait, "--quiet")  # fmt: skip
    assert code == 0, err
    assert FakePhotoAvatar.made == [(portrait, (64, 48), "MainThread")] and FakePhotoAvatar.released == [portrait]
    assert FakePhotoAvatar.drawn_in and "MainThread" not in FakePhotoAvatar.drawn_in
    if output == "file":
        with av.open(str(out)) as video:
            frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
        assert all(np.abs(f[24, 32].astype(int) - (200, 40, 90)).max() < 12 for f in frames)
    assert len(frames) >= 30  # 1 s at 30 fps (the camera, in its own pixel format, also before and after)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["audio-only", "video-only"])
def test_one_missing_modality_still_gives_a_listener(model_dir, tmp_path, kind):
    clip = write_clip(tmp_path / ("a.wav" if kind == "audio-only" else "v.mp4"), audio=kind == "audio-only",
                      video=kind == "video-only")  # fmt: skip
    out, stats = tmp_path / "listener.mp4", tmp_path / "stats.json"
    code, err = run_cli("--model", model_dir, "--input", clip, "--output", out, "--stats", stats, "--quiet")
    assert code == 0, err
    report = json.loads(stats.read_text())
    assert 50 <= report["frames"]["generated"] <= 52 and video_info(out)[0] == report["frames"]["output"]
    with av.open(str(out)) as listener:  # the speaker's audio comes along when there is some
        assert len(listener.streams.audio) == (1 if kind == "audio-only" else 0)


CUE_S = 1.0


def write_cued_clip(path: Path, seconds: float = 2.0) -> Path:
    """A speaker (160x120, 25 fps) who opens the mouth wide at CUE_S, when a 440 Hz tone starts in the sound."""
    faces = neutral_face(round(seconds * 25))
    faces[round(CUE_S * 25) :, FACE_INDEX["jawOpen"]] = 1.0
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = 0.5 * ((t >= CUE_S) & (t < CUE_S + 0.3)) * np.sin(2 * np.pi * 440 * t)
    write_face_media(path, faces, audio.astype(np.float32), size=(160, 120))
    return path


def panel_change_s(path: Path) -> float:
    """Time of the first output frame whose speaker panel (the left 160 columns) differs from the first one's."""
    with av.open(str(path)) as video:
        frames = [(f.time, f.to_ndarray(format="rgb24")[:, :160].astype(int)) for f in video.decode(video=0)]
    return next(t for t, rgb in frames if (np.abs(rgb - frames[0][1]) > 40).sum() > 200)  # the mouth opened


def audio_onset_s(path: Path) -> tuple[float, float]:
    """(media time where the tone starts, seconds of audio), read back from the file's audio track."""
    chunks = [c for c in FileSource(path) if isinstance(c, AudioChunk)]
    samples = np.concatenate([c.samples for c in chunks])
    return chunks[0].t_start_s + np.argmax(np.abs(samples) > 0.25) / SAMPLE_RATE, len(samples) / SAMPLE_RATE


@pytest.mark.slow
@pytest.mark.parametrize("pace", ["--fast", "--realtime"])
def test_mp4_carries_the_speakers_audio_in_sync_with_the_speaker_panel(model_dir, tmp_path, pace):
    out, stats = tmp_path / "listener.mp4", tmp_path / "stats.json"
    code, err = run_cli("--model", model_dir, "--input", write_cued_clip(tmp_path / "speaker.mp4"), "--output", out,
                        "--side-by-side", "--size", "96x120", "--stats", stats, "--quiet", pace)  # fmt: skip
    assert code == 0, err
    report = json.loads(stats.read_text())
    frames, width, height = video_info(out)
    assert (frames, width, height) == (report["frames"]["output"], 160 + 96, 120)  # the video as without audio
    with av.open(str(out)) as listener:
        (track,) = listener.streams.audio
        assert track.codec_context.name == "aac" and track.duration is not None and track.time_base is not None
        duration = float(track.duration * track.time_base)
    onset, heard = audio_onset_s(out)
    assert abs(duration - frames / 30) <= 2 / 30 and abs(heard - duration) <= 0.07  # AAC pads its last frame
    assert onset == pytest.approx(CUE_S, abs=1 / 30)  # the tone at its media time
    # seen as it is heard: fast mode stamps frame k at k/30 exactly; the realtime clock's media times are rounded
    # to the 30 fps grid (half a frame either way) and nudged a frame on when two round alike
    slack = 0.5 / 30 if pace == "--fast" else 1.5 / 30
    assert panel_change_s(out) == pytest.approx(onset, abs=slack)
    assert report["audio"]["dropped_chunks"] == 0


@pytest.mark.slow
def test_a_sample_rate_change_mid_stream_is_followed(model_dir, tmp_path):
    parts = []
    for rate in (16000, 44100):
        path = tmp_path / f"{rate}.aac"
        with av.open(str(path), "w", format="adts") as out:
            stream = out.add_stream("aac", rate=rate)
            stream.layout = "mono"
            x = (0.3 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)).astype(np.float32)
            for k in range(0, len(x), 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, k : k + 1024]), "fltp", "mono")
                frame.sample_rate, frame.pts = rate, k
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        parts.append(path.read_bytes())
    joined = tmp_path / "joined.aac"
    joined.write_bytes(b"".join(parts))
    stats = tmp_path / "s.json"
    code, err = run_cli(
        "--model", model_dir, "--input", joined, "--output", tmp_path / "o.mp4", "--stats", stats, "--quiet"
    )
    assert code == 0, err
    assert 1.9 < json.loads(stats.read_text())["media_s"] < 2.3  # both seconds, each at its own rate


@pytest.mark.slow
def test_a_speaker_without_a_face_degrades_gracefully(model_dir, tmp_path):
    clip = tmp_path / "wall.mp4"
    with av.open(str(clip), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
    code, err = run_cli("--model", model_dir, "--input", clip, "--output", tmp_path / "o.mp4", "--quiet")
    assert code == 0, err
    assert video_info(tmp_path / "o.mp4")[0] == 30


@pytest.mark.parametrize("hop", ["0", "16"])
def test_a_hop_the_window_cannot_hold_is_refused_before_loading_or_joining(model_dir, hop, monkeypatch):
    # --hop 16 (the window) passed the argument checks, then the engine refused it after loading and joining
    monkeypatch.setattr(cli, "open_backend", lambda args: pytest.fail("the model was loaded"))
    monkeypatch.setattr(cli, "open_room", lambda *args: pytest.fail("the room was joined"))
    url = f"http://127.0.0.1:9/r/room1?token={'t' * 24}"
    code, err = run_cli("--model", model_dir, "--room", url, "--hop", hop)
    assert_one_line_error(code, err, f"--hop={hop}: must be between 1 and 15 frames")


@pytest.mark.slow
def test_bad_inputs_are_one_line_errors(model_dir, tmp_path):
    out = tmp_path / "o.mp4"
    assert_one_line_error(*run_cli("--model", model_dir, "--input", tmp_path / "none.mp4", "--output", out),
                          "no such file")  # fmt: skip
    garbage = tmp_path / "corrupt.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    assert_one_line_error(*run_cli("--model", model_dir, "--input", garbage, "--output", out), "corrupt.mp4")
    clip = write_clip(tmp_path / "s.mp4", seconds=3.0)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    assert_one_line_error(*run_cli("--model", model_dir, "--input", truncated, "--output", out), "truncated.mp4")
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    assert_one_line_error(*run_cli("--model", broken, "--input", clip, "--output", out), "manifest.json")
    assert_one_line_error(*run_cli("--model", model_dir, "--input", clip, "--output", out, "--hop", "99"), "hop=99")


@pytest.mark.slow
def test_a_device_that_disappears_mid_stream_is_a_clear_error(model_dir, tmp_path, monkeypatch):
    source = FakeSource(speech(3.0), chunk=320, realtime=True, fail_at_s=1.0)
    monkeypatch.setattr(cli, "open_source", lambda args, realtime: source)
    code, err = run_cli("--model", model_dir, "--audio-device", "mic", "--output", tmp_path / "o.mp4", "--quiet")
    assert_one_line_error(code, err, "the device disappeared")
    assert source.closed.is_set()


# Run in a subprocess: PortAudio reads the ALSA configuration once, when sounddevice is imported.
DEVICE_SCRIPT = textwrap.dedent(
    """
    import faulthandler, os, sys, threading, time
    import numpy as np
    faulthandler.dump_traceback_later(90, exit=True)  # a hang shows every thread's stack in the test's failure
    fifo, model, out = sys.argv[1:4]
    writer = os.open(fifo, os.O_RDWR)  # before PortAudio probes the device: opening the FIFO must not block
    from engine import cli
    from engine.sources import input_devices
    if not any(d["name"] == "speakerfile" for d in input_devices()):
        print("NODEVICE"); sys.exit(0)
    t = np.arange(48000 * 2) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 1.3 * t) > 0) * 32767).astype("<i2")
    def feed():  # 1.5 s at real-time pace, then nothing: the device stalls
        start = time.monotonic()
        for k in range(0, 72000, 960):
            os.write(writer, np.repeat(tone[k:k + 960], 2).tobytes())
            time.sleep(max(0.0, start + (k + 960) / 48000 - time.monotonic()))
    threading.Thread(target=feed, daemon=True).start()
    code = cli.main(["--model", model, "--audio-device", "speakerfile", "--output", out, "--quiet"])
    print("EXIT", code, flush=True)
    # The writer stays open: PortAudio's capture thread stays blocked in the stalled device while the process
    # exits, as with a wedged driver. The exit must still be clean (no hang in PortAudio's teardown, no crash).
    """
)


@pytest.mark.slow
def test_live_audio_device_runs_in_real_time_until_it_stalls(model_dir, tmp_path, alsa_fifo_device):
    fifo, env = alsa_fifo_device
    out = tmp_path / "live.mp4"
    run = subprocess.run([sys.executable, "-c", DEVICE_SCRIPT, str(fifo), str(model_dir), str(out)], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    if "NODEVICE" in run.stdout:
        pytest.skip("PortAudio does not list the ALSA file device from $XDG_CONFIG_HOME/alsa/asoundrc")
    assert "EXIT 2" in run.stdout and run.returncode == 0, f"{run.returncode}: {run.stdout}{run.stderr[-3000:]}"
    errors = [line for line in run.stderr.splitlines() if line.startswith("reactdiff-engine: error:")]
    assert len(errors) == 1 and "no audio for" in errors[0] and "Traceback" not in run.stderr
    assert out.exists() and video_info(out)[0] > 10  # what was streamed before the stall was written


def assert_stopped_cleanly(process: subprocess.Popen[str], status: int) -> str:
    """The engine exits with `status` within 30 s, saying it stopped, with no traceback; returns its stderr."""
    try:
        code = process.wait(timeout=30)
    finally:
        process.kill()
    err = process.stderr.read() if process.stderr is not None else ""
    assert code == status and "reactdiff-engine: stopping" in err and "Traceback" not in err, f"{code}: {err}"
    return err


@pytest.mark.slow
@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.3, 2.0])
def test_room_local_prints_its_url_and_ctrl_c_at_any_moment_stops_it(model_dir: Path, delay_s: float, tmp_path: Path):
    """Ctrl-C while the engine joins, loads the tracker or streams: exit 130, never a hang or a death by SIGINT,
    and the --stats file says it was interrupted."""
    import signal
    import time
    import urllib.request

    stats = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "engine.cli", "--room", "local", "--model", str(model_dir), "--quiet", "--stats",
           str(stats)]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()
        assert line.startswith("room ready: open http://127.0.0.1:"), line + process.stderr.read()
        with urllib.request.urlopen(line.split()[3], timeout=5) as response:
            assert response.status == 200
        time.sleep(delay_s)
        process.send_signal(signal.SIGINT)
        assert_stopped_cleanly(process, 130)
    assert json.loads(stats.read_text())["interrupted"] is True


@pytest.mark.slow
def test_sigterm_mid_stream_finishes_the_mp4_and_the_stats(model_dir: Path, tmp_path: Path):
    import signal
    import time

    clip = write_clip(tmp_path / "speaker.mp4", seconds=8.0)
    out, stats = tmp_path / "listener.mp4", tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "engine.cli", "--model", str(model_dir), "--input", str(clip), "--output", str(out),
           "--realtime", "--stats", str(stats), "--quiet"]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        deadline = time.monotonic() + 60
        while not (out.exists() and out.stat().st_size > 0) and process.poll() is None:  # streaming has begun
            assert time.monotonic() < deadline, "the engine wrote nothing within 60 s"
            time.sleep(0.05)
        time.sleep(1.5)  # a second and a half of the 8 s clip, paced in real time
        process.send_signal(signal.SIGTERM)
        err = assert_stopped_cleanly(process, 143)
    assert "Ctrl-C" not in err  # the hint is for Ctrl-C only
    report = json.loads(stats.read_text())
    assert report["interrupted"] is True
    frames = video_info(out)[0]  # a complete, readable file with what was streamed before the stop
    assert 0 < frames == report["frames"]["output"] < 8 * 30


def test_a_second_stop_signal_exits_at_once(tmp_path: Path):
    """The first signal asks the run to stop; when that takes too long, a second one ends the process."""
    script = textwrap.dedent("""
        import os, signal, time
        from engine.interrupt import StopSignals
        with StopSignals("prog") as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested.wait(5) and stop.exit_status == 130
            print("asked", flush=True)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        print("not reached")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 130 and run.stdout == "asked\n", run.stdout + run.stderr
    assert run.stderr.splitlines() == ["prog: stopping (press Ctrl-C again to quit at once)", "prog: stopped at once"]


def test_stop_signals_restore_the_previous_handlers_and_wait_gives_up_on_a_stop():
    import signal
    import threading
    from concurrent.futures import Future

    from engine.interrupt import StopSignals

    before = signal.getsignal(signal.SIGINT)
    with StopSignals("prog") as stop:
        never: Future[int] = Future()
        done: Future[int] = Future()
        done.set_result(7)
        assert stop.wait(done) == 7
        threading.Timer(0.2, stop.requested.set).start()
        with pytest.raises(KeyboardInterrupt):
            stop.wait(never)
        assert never.cancelled()
    assert signal.getsignal(signal.SIGINT) is before


# --- who listens, and the frames for your own renderer --------------------------------------------------------


def reference_file(path: Path, frames: int) -> Path:
    """A listener's own frames: a slow nod and a smile that comes and goes."""
    faces = neutral_face(frames)
    t = np.arange(frames) / 25
    faces[:, FACE_INDEX["mouthSmileLeft"]] = faces[:, FACE_INDEX["mouthSmileRight"]] = 0.3 + 0.3 * np.sin(t)
    faces[:, FACE_INDEX["pitch"]] = 0.1 * np.sin(2 * np.pi * 0.7 * t)
    np.save(path, faces)
    return path


@pytest.mark.parametrize(
    ("persona", "phrase"),
    [
        ("thinker", "--persona thinker: unknown persona 'thinker'; this model's personas: anyone, nodder, reserved"),
        ("me.npy", "--persona me.npy: no such file (give a .npy of a listener's own face frames, or a name)"),
        ("short.npy", "--persona short.npy: short.npy: 50 frames (2.0 s); a listener's style needs at least 100"),
    ],
)
def test_a_persona_the_model_cannot_take_is_refused_before_anything_starts(persona_model_dir, tmp_path, monkeypatch,
                                                                           persona, phrase):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    reference_file(tmp_path / "short.npy", 50)
    monkeypatch.setattr(cli, "start_local_room", lambda args: pytest.fail("a room was started"))
    assert_one_line_error(*run_cli("--model", persona_model_dir, "--room", "local", "--persona", persona), phrase)


@pytest.mark.parametrize("args", [["--persona", "nodder"], ["--expressiveness", "1.5"], ["--list-personas"]])
def test_a_model_without_personas_refuses_them_in_one_line(args, version_1_model_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "open_source", lambda args, realtime: pytest.fail("the input was opened"))
    more = [] if args == ["--list-personas"] else ["--input", "x.mp4", "--output", str(tmp_path / "y.mp4")]
    code, err = run_cli("--model", version_1_model_dir, *args, *more)
    assert_one_line_error(code, err, "takes no persona", "format version 1")


def test_list_personas_prints_the_names_persona_takes(persona_model_dir, capsys):
    assert cli.main(["--model", str(persona_model_dir), "--list-personas"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["anyone", "nodder", "reserved"]
    assert "0.02 x the corpus mean" in lines[1] and "--persona FILE.npy" in lines[3]  # nodder 0.02, the mean 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "params"),
    [("--fast", "p.npz"), ("--realtime", "p.jsonl"), ("audio-device", "p.csv"), ("virtualcam", "p.jsonl")],
)
def test_persona_expressiveness_and_params_out_in_every_mode(persona_model_dir, tmp_path, monkeypatch, mode, params):
    from tests.engine.test_params_out import read_back

    clip = write_clip(tmp_path / "s.wav", seconds=1.5, video=False)
    out: list[str | Path] = ["--output", tmp_path / "o.mp4"]
    source: list[str | Path] = ["--input", clip, *([mode] if mode.startswith("--") else [])]
    if mode == "audio-device":
        monkeypatch.setattr(cli, "open_source", lambda args, realtime: FakeSource(speech(1.5), chunk=320,
                                                                                   realtime=True))  # fmt: skip
        source = ["--audio-device", "mic"]
    if mode == "virtualcam":
        FakeCamera.install(monkeypatch)
        out = ["--output", "virtualcam", "--size", "64x48"]
    stats = tmp_path / "s.json"
    code, err = run_cli("--model", persona_model_dir, *source, *out, "--persona", "nodder", "--expressiveness",
                        "1.5", "--stats", stats, "--params-out", tmp_path / params, "--quiet")  # fmt: skip
    assert code == 0, err
    report = json.loads(stats.read_text())
    assert report["listener"] == {"persona": "nodder", "expressiveness": 1.5, "changes_total": 1, "changes": [
        {"persona": "nodder", "expressiveness": 1.5, "by": "start", "frame": 0, "t_s": 0.0}]}  # fmt: skip
    t_s, faces = read_back(tmp_path / params)
    emitted = report["frames"]["generated"] + report["frames"]["filled"]
    assert len(faces) == emitted >= 30 and np.isfinite(faces).all()
    np.testing.assert_allclose(t_s, np.arange(emitted) / 25, atol=1e-9)


class RecordingAvatar(Avatar):
    """A flat avatar that keeps every face it is asked to draw."""

    kind = AvatarKind.VECTOR

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width=width, height=height)
        self.faces: list[np.ndarray] = []

    def _draw(self, face):
        self.faces.append(np.array(face, np.float32))
        return np.zeros((self.height, self.width, 3), np.uint8)

    def _release(self):
        return None


@pytest.mark.slow
def test_params_out_holds_the_frames_the_avatar_was_drawn_from(persona_model_dir, tmp_path, monkeypatch):
    from renderer.timing import interpolate_faces
    from tests.engine.test_params_out import read_back

    avatar = RecordingAvatar(64, 48)
    monkeypatch.setattr(cli, "open_avatar", lambda args, size, background: avatar)
    me = reference_file(tmp_path / "me.npy", 120)
    clip = write_clip(tmp_path / "s.mp4", seconds=2.0)
    stats = tmp_path / "s.json"
    code, err = run_cli("--model", persona_model_dir, "--input", clip, "--output", tmp_path / "o.mp4", "--size",
                        "64x48", "--persona", me, "--params-out", tmp_path / "p.csv", "--stats", stats,
                        "--quiet")  # fmt: skip
    assert code == 0, err
    _, faces = read_back(tmp_path / "p.csv")
    drawn = np.stack(avatar.faces)  # 30 fps, interpolated from the 25 fps frames (renderer.timing)
    assert 50 <= len(faces) <= 52  # 2 s (AAC adds its priming samples)
    np.testing.assert_allclose(drawn, interpolate_faces(faces, 25.0, 30.0), atol=1e-6)
    assert json.loads(stats.read_text())["listener"]["persona"] == "me.npy"


@pytest.mark.slow
def test_ctrl_c_mid_stream_loses_no_frame_of_params_out(persona_model_dir: Path, tmp_path: Path):
    import signal
    import time

    from tests.engine.test_params_out import read_back

    clip = write_clip(tmp_path / "speaker.wav", seconds=8.0, video=False)
    params, stats = tmp_path / "p.npz", tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "engine.cli", "--model", str(persona_model_dir), "--input", str(clip), "--output",
           str(tmp_path / "o.mp4"), "--realtime", "--stats", str(stats), "--params-out", str(params), "--quiet",
           "--persona", "reserved"]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        deadline = time.monotonic() + 60
        while not (tmp_path / "o.mp4").exists() and process.poll() is None:  # streaming has begun
            assert time.monotonic() < deadline, "the engine wrote nothing within 60 s"
            time.sleep(0.05)
        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        assert_stopped_cleanly(process, 130)
    report = json.loads(stats.read_text())
    t_s, faces = read_back(params)
    assert report["interrupted"] is True and report["listener"]["persona"] == "reserved"
    assert 0 < len(faces) == report["frames"]["generated"] + report["frames"]["filled"] < 8 * 25
    np.testing.assert_allclose(t_s, np.arange(len(faces)) / 25, atol=1e-9)
