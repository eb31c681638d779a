"""One suite that every registered sink kind passes."""

import asyncio
import itertools
from fractions import Fraction

import av
import numpy as np
import pytest
import pyvirtualcam

from renderer.sinks import (
    Mp4Sink,
    SinkError,
    SinkKind,
    TeeSink,
    check_writable,
    create_sink,
    parse_size,
    place_samples,
    to_i420,
)

W, H, FPS = 64, 48, 30.0


class FakeCamera:
    """A pyvirtualcam backend that keeps the frames it is sent."""

    frames: list[np.ndarray] = []  # noqa: RUF012

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height = width, height
        FakeCamera.frames = []

    def close(self):
        return None

    def send(self, frame):
        FakeCamera.frames.append(frame.reshape(self.height, self.width, 3).copy())

    def device(self):
        return "fake0"

    def native_fourcc(self):
        return None


class NoDevice(FakeCamera):
    def __init__(self, **kw):
        raise RuntimeError("device not found")


pyvirtualcam.register_backend("fake", FakeCamera)
pyvirtualcam.register_backend("nodevice", NoDevice)


def open_sink(kind, tmp_path):
    options = {"width": W, "height": H, "fps": FPS}
    if kind is SinkKind.TEE:  # a PNG folder and a camera: read back through the PNG part
        parts = [open_sink(SinkKind.PNG, tmp_path), open_sink(SinkKind.VIRTUAL_CAMERA, tmp_path)]
        return create_sink(kind, sinks=parts, **options)
    extra = {
        SinkKind.MP4: {"path": tmp_path / "out.mp4"},
        SinkKind.PNG: {"directory": tmp_path / "frames"},
        SinkKind.VIRTUAL_CAMERA: {"backend": "fake"},
        SinkKind.WEBRTC: {"queue_size": 8},
    }[kind]
    return create_sink(kind, **options, **extra)


def read_back(kind, sink, tmp_path, count):
    """The frames that came out of a closed file, folder, camera or tee sink."""
    if kind is SinkKind.MP4:
        with av.open(str(tmp_path / "out.mp4")) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if kind is SinkKind.TEE:
        assert [s.closed for s in sink.sinks] == [True, True]  # closing the tee closed its parts
        camera = read_back(SinkKind.VIRTUAL_CAMERA, sink.sinks[1], tmp_path, count)
        pngs = read_back(SinkKind.PNG, sink.sinks[0], tmp_path, count)
        assert all(np.array_equal(a, b) for a, b in zip(camera, pngs, strict=True))  # both parts got every frame
        return pngs
    if kind is SinkKind.PNG:
        files = sorted((tmp_path / "frames").glob("*.png"))
        out = []
        for path in files:
            with av.open(str(path)) as container:
                out.append(next(container.decode(video=0)).to_ndarray(format="rgb24"))
        return out
    assert kind is SinkKind.VIRTUAL_CAMERA, kind  # WebRTC is read while it is open (write_and_pull_each)
    return FakeCamera.frames


def frames(count):
    # smooth, distinct gradients: lossy H.264 with 4:2:0 chroma keeps them close
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([2 * x, 3 * y, x + y], axis=-1)
    return [np.clip(base + 30 * k, 0, 255).astype(np.uint8) for k in range(count)]


async def write_and_pull_each(sink, sent):
    """Write each frame, then take it off the track as an encoder would, with its pts on the 90 kHz clock."""
    received, pts = [], []
    for k, frame in enumerate(sent):
        sink.write(frame, k / FPS)
        got = await sink.track.recv()
        assert got.time_base == Fraction(1, 90000)
        pts.append(got.pts)
        received.append(got.to_ndarray(format="rgb24"))
    assert pts[0] == 0 and all(b > a for a, b in itertools.pairwise(pts))
    return received


@pytest.mark.parametrize("kind", list(SinkKind))
def test_sink_delivers_the_frames_it_is_given(kind, tmp_path):
    sent = frames(4)
    sink = open_sink(kind, tmp_path)
    with sink:
        if kind is SinkKind.WEBRTC:  # a live track: its consumer takes each frame as it comes (the newest wins)
            received = asyncio.run(write_and_pull_each(sink, sent))
        else:
            for k, frame in enumerate(sent):
                sink.write(frame, k / FPS)
        assert sink.frames_written == 4
    if kind is not SinkKind.WEBRTC:
        received = read_back(kind, sink, tmp_path, 4)
    assert len(received) == 4
    for got, want in zip(received, sent, strict=True):
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want).mean() < 6
    sink.close()  # a second close is harmless
    assert sink.closed


@pytest.mark.parametrize("kind", list(SinkKind))
def test_sink_rejects_bad_frames_with_clear_errors(kind, tmp_path):
    with open_sink(kind, tmp_path) as sink:
        with pytest.raises(TypeError, match="uint8"):
            sink.write(np.zeros((H, W, 3), dtype=np.float32), 0.0)
        with pytest.raises(ValueError, match=rf"\({H}, {W}, 3\)"):
            sink.write(np.zeros((H, W, 4), dtype=np.uint8), 0.0)
        sink.write(np.zeros((H, W, 3), dtype=np.uint8), 1.0)
        with pytest.raises(ValueError, match="non-decreasing"):
            sink.write(np.zeros((H, W, 3), dtype=np.uint8), 0.5)
    with pytest.raises(SinkError, match="after close"):
        sink.write(np.zeros((H, W, 3), dtype=np.uint8), 2.0)


def test_mp4_has_h264_yuv420p_at_the_requested_rate(tmp_path):
    with open_sink(SinkKind.MP4, tmp_path) as sink:
        for k, frame in enumerate(frames(3)):
            sink.write(frame, k / FPS)
    with av.open(str(tmp_path / "out.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 30


RATE = 16_000


def tone_burst(seconds: float, start_s: float, length_s: float = 0.2) -> np.ndarray:
    """Silence with a 440 Hz burst of amplitude 0.5 from `start_s`: (seconds * 16000,) float32."""
    t = np.arange(round(seconds * RATE)) / RATE
    inside = (t >= start_s) & (t < start_s + length_s)
    return (0.5 * inside * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def decoded_audio(path) -> tuple[np.ndarray, float, str]:
    """(mono samples placed from time 0 by their timestamps, the stream's duration in s, its codec)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.duration is not None and stream.time_base is not None
        duration, codec = float(stream.duration * stream.time_base), stream.codec_context.name
        out = np.zeros(round(duration * RATE) + 4096, np.float32)
        for frame in container.decode(stream):
            start = round(frame.time * RATE)
            samples = frame.to_ndarray()[0]
            out[start : start + len(samples)] = samples[: len(out) - start]
    return out, duration, codec


def onset_s(samples: np.ndarray) -> float:
    return float(np.argmax(np.abs(samples) > 0.25)) / RATE


def test_mp4_audio_lands_on_the_frame_clock_gaps_silent_overlaps_cut(tmp_path):
    audio = tone_burst(3.0, 1.5)
    path = tmp_path / "talk.mp4"
    with Mp4Sink(path=path, width=W, height=H, fps=FPS, audio_rate=RATE) as sink:
        assert sink.audio is not None
        for k, frame in enumerate(frames(90)):
            sink.write(frame, k / FPS)
            chunk = slice(k * 533, (k + 1) * 533)  # 33.3 ms a frame, as the engine passes it
            if 10 <= k < 20:
                continue  # chunks lost (0.33..0.67 s): silence there, and what follows must not move earlier
            sink.write_audio(audio[chunk], chunk.start / RATE)
        sink.write_audio(audio[90 * 533 - 800 :], (90 * 533 - 800) / RATE)  # overlaps what was written
    heard, duration, codec = decoded_audio(path)
    assert codec == "aac" and duration == pytest.approx(3.0, abs=1 / FPS)
    assert onset_s(heard) == pytest.approx(1.5, abs=0.25 / FPS)
    assert np.abs(heard[round(1.55 * RATE) : round(1.65 * RATE)]).max() > 0.4  # the burst itself survived
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 90  # the video is what it was without audio


def test_place_samples_fills_a_gap_with_silence_and_cuts_an_overlap():
    planes = np.arange(1, 6, dtype=np.float32)[None]
    assert place_samples(planes, 7, 5).tolist() == [[0, 0, 1, 2, 3, 4, 5]]
    assert place_samples(planes, 3, 5).tolist() == [[3, 4, 5]]
    assert place_samples(planes, 0, 9).shape == (1, 0)


def test_write_audio_needs_an_audio_track_and_mono_float32(tmp_path):
    with open_sink(SinkKind.MP4, tmp_path) as sink:
        assert sink.audio is None  # video only unless asked
        with pytest.raises(SinkError, match="no audio track"):
            sink.write_audio(np.zeros(100, np.float32), 0.0)
    with Mp4Sink(path=tmp_path / "a.mp4", width=W, height=H, audio_rate=RATE) as sink:
        with pytest.raises(TypeError, match="1-D float32"):
            sink.write_audio(np.zeros((2, 100), np.float32), 0.0)
        with pytest.raises(ValueError, match="finite time"):
            sink.write_audio(np.zeros(100, np.float32), -1.0)
        sink.write(frames(1)[0], 0.0)
    with pytest.raises(SinkError, match="after close"):
        sink.write_audio(np.zeros(100, np.float32), 0.0)


def test_virtual_camera_without_device_says_how_to_create_one():
    with pytest.raises(SinkError, match="modprobe v4l2loopback") as info:
        create_sink(SinkKind.VIRTUAL_CAMERA, width=W, height=H, backend="nodevice")
    assert "OBS" in str(info.value)


def test_webrtc_track_gives_the_newest_frame_and_counts_what_it_drops():
    """A consumer that fell behind (a connection still coming up, a slow encode) gets the newest frame, not a
    backlog that would delay every later frame; the full queue and the skipped frames are both counted."""
    sink = create_sink("webrtc", width=W, height=H, queue_size=2)
    sent = frames(5)
    for k, frame in enumerate(sent):
        sink.write(frame, k / FPS)
    assert sink.dropped == 3  # pushed out of the full queue

    async def pull():
        return [(await sink.track.recv()).to_ndarray(format="rgb24") for _ in range(2)]

    got = asyncio.run(pull())

    def near(a, b):  # the track carries yuv420p (a frame's neighbours differ by 30 levels)
        return np.abs(a.astype(int) - b).mean() < 3

    assert near(got[0], sent[4]) and sink.dropped == 4  # the newest; the one behind it skipped
    assert np.array_equal(got[1], got[0])  # nothing new: the last frame repeats
    sink.close()


def test_unknown_kind_lists_the_choices():
    with pytest.raises(ValueError, match="mp4"):
        create_sink("gif", width=W, height=H)


def test_tee_is_its_own_kind_names_its_parts_and_passes_audio_to_those_with_a_track(tmp_path):
    mp4 = Mp4Sink(path=tmp_path / "talk.mp4", width=W, height=H, fps=FPS, audio_rate=RATE)
    camera = create_sink(SinkKind.VIRTUAL_CAMERA, width=W, height=H, backend="fake")
    with TeeSink(sinks=[camera, mp4], width=W, height=H) as tee:
        assert tee.kind is SinkKind.TEE and tee.kinds == [SinkKind.VIRTUAL_CAMERA, SinkKind.MP4]
        assert tee.audio is mp4.audio
        for k, frame in enumerate(frames(30)):
            tee.write(frame, k / FPS)
        tee.write_audio(tone_burst(1.0, 0.5), 0.0)  # the camera has no track: only the mp4 takes it
    heard, duration, _ = decoded_audio(tmp_path / "talk.mp4")
    assert duration == pytest.approx(1.0, abs=1 / FPS) and onset_s(heard) == pytest.approx(0.5, abs=0.25 / FPS)
    assert len(FakeCamera.frames) == 30 and mp4.closed and camera.closed
    with pytest.raises(ValueError, match="every sink must take 32x48"):
        TeeSink(sinks=[create_sink(SinkKind.VIRTUAL_CAMERA, width=W, height=H, backend="fake")], width=32, height=H)


@pytest.mark.parametrize(
    ("text", "size"), [("256x256", (256, 256)), (" 640 X 360 ", (640, 360)), ("16x4096", (16, 4096))]
)
def test_parse_size_reads_even_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "phrase"),
    [("big", "expected WIDTHxHEIGHT"), ("255x256", "must be even"), ("640x361", "must be even"),
     ("8x8", "from 16 to 4096"), ("8192x256", "from 16 to 4096"), ("-2x4", "expected WIDTHxHEIGHT")],
)  # fmt: skip
def test_parse_size_refuses_what_an_mp4_cannot_take(text, phrase):
    with pytest.raises(ValueError, match=phrase):
        parse_size(text)


def test_check_writable_refuses_folders_missing_folders_and_unwritable_places(tmp_path):
    (tmp_path / "old.mp4").write_bytes(b"kept")
    assert check_writable(tmp_path / "old.mp4") == tmp_path / "old.mp4"
    assert (tmp_path / "old.mp4").read_bytes() == b"kept"  # an existing file is not truncated by the check
    assert check_writable(tmp_path / "new.mp4") and not (tmp_path / "new.mp4").exists()  # nor left behind
    with pytest.raises(SinkError, match="is a folder"):
        check_writable(tmp_path)
    with pytest.raises(SinkError, match=r"folder .*nodir does not exist"):
        check_writable(tmp_path / "nodir" / "s.json")
    with pytest.raises(SinkError, match="cannot write a file there"):
        check_writable("/proc/out.mp4")  # /proc takes no new files, even for root


@pytest.mark.parametrize("where", ["folder", "proc"])
def test_mp4_sink_refuses_a_path_it_cannot_write_when_it_opens(tmp_path, where):
    """PyAV itself fails only at the first frame, with its own error (av.error.IsADirectoryError)."""
    path = tmp_path if where == "folder" else "/proc/out.mp4"
    with pytest.raises(SinkError, match="is a folder" if where == "folder" else "cannot write a file there"):
        Mp4Sink(path=path, width=W, height=H)


class BrokenCamera(FakeCamera):
    def send(self, frame):
        raise OSError(28, "No space left on device")


pyvirtualcam.register_backend("broken", BrokenCamera)


def test_an_io_failure_while_writing_is_a_sink_error():
    sink = create_sink(SinkKind.VIRTUAL_CAMERA, width=W, height=H, backend="broken")
    with pytest.raises(SinkError, match=r"VirtualCameraSink: .*No space left on device"):
        sink.write(frames(1)[0], 0.0)
    sink.close()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b) ** 2)))


def test_the_yuv420p_conversion_is_swscales_bt601_limited_range(tmp_path):
    """to_i420 (OpenCV) makes what PyAV's swscale made before: the same luma (BT.601, Y 16-235) and the same chroma
    on smooth colour. Chroma is the mean of 2x2 blocks where swscale filters wider, so a detailed photo through
    the mp4 sink (libx264, crf 20) decodes within 0.8 dB of the swscale path (measured 0.4-0.5 dB)."""
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[::2, ::2])  # (256, 256, 3), every second pixel: much detail
    y, x = np.mgrid[0:96, 0:128]
    ramp = np.stack([2 * x, 2.6 * y, 255 - 2 * x], axis=-1).astype(np.uint8)
    for rgb in (photo, ramp):
        old = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
        rows = rgb.shape[0]
        assert np.abs(to_i420(rgb)[:rows].astype(int) - old[:rows]).max() <= 1  # luma
    chroma = np.abs(to_i420(ramp)[96:].astype(int) - old[96:])  # the same matrix; chroma sited half a pixel apart
    assert chroma.max() <= 2 and chroma.mean() < 1
    assert to_i420(np.zeros((16, 16, 3), np.uint8))[:16].max() == 16
    assert to_i420(np.full((16, 16, 3), 255, np.uint8))[:16].min() == 235
    with Mp4Sink(path=tmp_path / "new.mp4", width=256, height=256) as sink:
        sink.write(photo, 0.0)
    with av.open(str(tmp_path / "old.mp4"), "w") as container:  # the old path: RGB frames, swscale in the encoder
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt, stream.options = 256, 256, "yuv420p", {"crf": "20"}
        container.mux(stream.encode(av.VideoFrame.from_ndarray(photo, format="rgb24")))
        container.mux(stream.encode(None))
    decoded = {}
    for name in ("old", "new"):
        with av.open(str(tmp_path / f"{name}.mp4")) as container:
            decoded[name] = _psnr(next(container.decode(video=0)).to_ndarray(format="rgb24"), photo)
    assert decoded["new"] > decoded["old"] - 0.8, decoded


def test_the_encoders_are_handed_yuv420p_frames(tmp_path):
    """The mp4 sink and the WebRTC track (recv and every subscriber) give their encoders yuv420p frames, which
    they encode as they are: no swscale conversion per frame (PyAV's reformat to yuv420p returns the frame)."""
    sink = Mp4Sink(path=tmp_path / "out.mp4", width=W, height=H, fps=FPS)
    stream, handed = sink._stream, []

    class Recording:
        def encode(self, frame=None):
            handed.append(frame)
            return stream.encode(frame)

    sink._stream = Recording()
    with sink:
        sink.write(frames(1)[0], 0.0)
    track = create_sink(SinkKind.WEBRTC, width=W, height=H).track
    peer = track.subscribe()
    track.put(frames(1)[0])

    async def pull():
        return [await track.recv(), await peer.recv(), await peer.recv()]

    handed += asyncio.run(pull())
    track.stop()
    video = [f for f in handed if f is not None]
    assert len(video) == 4 and all(f.format.name == "yuv420p" and f.reformat(format="yuv420p") is f for f in video)
