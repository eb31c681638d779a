"""engine.sources: files, a (stand-in) ALSA audio device and aiortc tracks, all checked against one contract."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from hypothesis import given

from engine.features import SAMPLE_RATE
from engine.sources import (
    SOURCES,
    AudioChunk,
    DropOldestQueue,
    FileSource,
    Media,
    MonoResampler,
    Source,
    SourceError,
    SourceKind,
    VideoFrame,
    WebRTCSource,
    choose_input_device,
    create_source,
    iterate_in_thread,
)
from engine.sources.file import MAX_GAP_S, MAX_VIDEO_PIXELS
from renderer.face import FACE_INDEX, neutral_face
from renderer.vector import VectorAvatar
from renderer.video import write_face_media
from tests.engine.conftest import REPO
from tests.fuzzing import (
    FUZZ,
    LARGE_REPR,
    hostile_headers,
    media_cases,
    wav_claiming,
    within,
    write_media,
    write_small_media,
    y4m_claiming,
)
from tests.resources import no_resource_growth
from trainer.data.loaders import load_audio

TONE_HZ = 440.0


# --- helpers --------------------------------------------------------------------------------------------


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def make_clip(
    path: Path, *, seconds: float = 2.0, audio: bool = True, video: bool = True, faststart: bool = False
) -> Path:
    """A 25 fps 320x240 avatar video (mouth opening and closing) with a 440 Hz stereo tone at 44.1 kHz."""
    frames = round(seconds * 25)
    faces = neutral_face(frames)
    faces[:, FACE_INDEX["jawOpen"]] = 0.5 + 0.5 * np.sin(np.arange(frames) / 4)
    stereo = np.stack([tone(seconds, 44100)] * 2)
    options = {"movflags": "faststart"} if faststart else None
    write_face_media(path, faces if video else None, stereo if audio else None, audio_rate=44100, size=(320, 240),
                     options=options)  # fmt: skip
    return path


def dominant_hz(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def check_contract(items: list[Media], source: Source) -> np.ndarray:
    """What every source promises; returns the audio joined."""
    audio = [i for i in items if isinstance(i, AudioChunk)]
    video = [i for i in items if isinstance(i, VideoFrame)]
    assert bool(audio) == source.has_audio and bool(video) == source.has_video
    for chunk in audio:
        assert chunk.samples.dtype == np.float32 and chunk.samples.ndim == 1 and chunk.samples.size > 0
    for before, after in itertools.pairwise(audio):  # audio is the clock: no gaps, no overlaps
        assert after.t_start_s == pytest.approx(before.t_end_s, abs=1e-6)
    assert [f.t_s for f in video] == sorted(f.t_s for f in video)
    for frame in video[:3]:
        assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (*frame.size[::-1], 3)
    assert source.stats.audio_chunks == len(audio) and source.stats.video_frames == len(video)
    source.close()
    source.close()  # idempotent
    return np.concatenate([c.samples for c in audio]) if audio else np.zeros(0, np.float32)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "speaker.mp4")


def test_every_kind_has_a_registered_source():
    assert set(SOURCES) == set(SourceKind)
    assert all(SOURCES[kind].kind is kind for kind in SourceKind)


# --- file -----------------------------------------------------------------------------------------------


def test_file_source_decodes_audio_and_video_in_media_time_order(clip: Path):
    with create_source(SourceKind.FILE, path=clip) as source:
        items = list(source)
    times = [i.t_start_s if isinstance(i, AudioChunk) else i.t_s for i in items]
    assert times == sorted(times)
    audio = check_contract(items, source)
    video = [i for i in items if isinstance(i, VideoFrame)]
    assert len(video) == 50 and video[1].t_s == pytest.approx(0.04)
    assert video[0].rgb.shape == (240, 320, 3)
    assert abs(len(audio) - 2 * SAMPLE_RATE) < 0.05 * SAMPLE_RATE
    assert dominant_hz(audio[4000:20000]) == pytest.approx(TONE_HZ, abs=2)
    assert 0.45 < np.abs(audio[4000:20000]).max() < 0.55  # stereo averaged, amplitude kept


def test_file_source_audio_matches_the_trainer_loader(tmp_path: Path):
    wav = make_clip(tmp_path / "tone.wav", video=False)
    with FileSource(wav) as source:
        audio = check_contract(list(source), source)
    np.testing.assert_allclose(audio, load_audio(wav), atol=1e-6)


def test_audio_only_and_video_only_files(tmp_path: Path):
    with FileSource(make_clip(tmp_path / "a.wav", seconds=0.5, video=False)) as source:
        assert source.has_audio and not source.has_video
        check_contract(list(source), source)
    with FileSource(make_clip(tmp_path / "v.mp4", seconds=0.5, audio=False)) as source:
        assert source.has_video and not source.has_audio
        items = list(source)
        assert len(items) == 12
        check_contract(items, source)


def test_missing_or_unreadable_files_name_the_file(tmp_path: Path):
    with pytest.raises(SourceError, match=r"nothing\.mp4: no such file"):
        FileSource(tmp_path / "nothing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match=r"junk\.mp4: cannot open"):
        FileSource(junk)


def test_truncated_files_raise_source_error(clip: Path, tmp_path: Path):
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"  # the index (moov) sits at the end: nothing can be opened
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"cut\.mp4: cannot open.*corrupt or truncated"):
        FileSource(cut)
    streamable = make_clip(tmp_path / "fast.mp4", faststart=True)  # index first: decoding fails mid-stream
    data = streamable.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    items: list[Media] = []
    with FileSource(cut) as source, pytest.raises(SourceError, match=r"cut\.mp4: .*truncated"):
        items.extend(source)
    assert len(items) > 10  # what came before the damage was delivered


def test_realtime_pacing_holds_items_until_their_media_time(tmp_path: Path):
    path = make_clip(tmp_path / "short.mp4", seconds=0.4)
    with FileSource(path, realtime=True) as source:
        start = time.monotonic()
        items = list(source)
    for item in items:
        due = item.t_end_s if isinstance(item, AudioChunk) else item.t_s
        assert item.arrival_s - start >= due - 0.005


def test_close_from_another_thread_ends_a_realtime_iteration(clip: Path):
    source = FileSource(clip, realtime=True)
    threading.Timer(0.2, source.close).start()
    items = list(source)
    assert 0 < len(items) < 40
    with FileSource(clip) as again:
        list(again)
        with pytest.raises(SourceError, match="only once"):
            list(again)


def test_iterate_in_thread_serves_asyncio(clip: Path):
    async def collect() -> list[Media]:
        with FileSource(clip) as source:
            return [item async for item in iterate_in_thread(source)]

    items = asyncio.run(collect())
    assert sum(isinstance(i, VideoFrame) for i in items) == 50
    assert sum(i.samples.size for i in items if isinstance(i, AudioChunk)) > 1.9 * SAMPLE_RATE


# --- resampling -----------------------------------------------------------------------------------------


def _frame(samples: np.ndarray, rate: int, layout: str, pts: int) -> av.AudioFrame:
    """An s16 packed frame (what aiortc delivers) from (channels, n) float samples."""
    data = (np.clip(samples, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="s16", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, fractions.Fraction(1, rate)
    return frame


def test_resampler_rebuilds_on_a_rate_or_layout_change_and_keeps_every_sample():
    resampler = MonoResampler()
    a, b = tone(0.5, 48000), tone(0.5, 22050)
    out = [resampler.push(_frame(np.stack([a[k : k + 960]] * 2), 48000, "stereo", k)) for k in range(0, 24000, 960)]
    out += [resampler.push(_frame(b[None, k : k + 441], 22050, "mono", k)) for k in range(0, 11025, 441)]
    out.append(resampler.flush())
    audio = np.concatenate(out)
    assert resampler.format_changes == 1 and resampler.input_format == ("s16", "mono", 22050)
    assert abs(len(audio) - SAMPLE_RATE) <= 64  # 1 s in, 1 s out
    assert dominant_hz(audio[1000:7000]) == pytest.approx(TONE_HZ, abs=3)
    assert dominant_hz(audio[9000:15000]) == pytest.approx(TONE_HZ, abs=3)


def test_drop_oldest_queue_drops_counts_times_out_and_closes():
    queue: DropOldestQueue[int] = DropOldestQueue(2)
    for i in range(5):
        queue.put(i)
    assert queue.dropped == 3 and queue.get(0) == 3 and queue.get(0) == 4
    with pytest.raises(TimeoutError):
        queue.get(0.01)
    threading.Timer(0.05, queue.close).start()
    assert queue.get(5.0) is None


# --- audio device ---------------------------------------------------------------------------------------

DEVICES = [
    {
        "index": 0,
        "name": "HDA Intel PCH: ALC257 Analog (hw:0,0)",
        "max_input_channels": 2,
        "default_samplerate": 44100.0,
    },
    {"index": 1, "name": "HDMI 0", "max_input_channels": 0, "default_samplerate": 48000.0},
    {"index": 2, "name": "USB Audio Mic", "max_input_channels": 1, "default_samplerate": 48000.0},
    {"index": 3, "name": "USB Audio Mic 2", "max_input_channels": 1, "default_samplerate": 48000.0},
]


def test_choose_input_device_by_index_name_or_default():
    assert choose_input_device(None, DEVICES, default=2)["index"] == 2
    assert choose_input_device("0", DEVICES)["index"] == 0
    assert choose_input_device("alc257", DEVICES)["index"] == 0
    assert choose_input_device("usb audio mic", DEVICES)["index"] == 2  # the exact name wins
    with pytest.raises(SourceError, match="several input devices"):
        choose_input_device("USB", DEVICES)
    with pytest.raises(SourceError, match=r"no audio input device matches 'HDMI'(.|\n)*2: USB Audio Mic \(1 ch"):
        choose_input_device("HDMI", DEVICES)  # an output-only device is not an input
    with pytest.raises(SourceError, match="no audio input devices found"):
        choose_input_device(None, DEVICES[1:2])


# Run in a subprocess: PortAudio reads the ALSA configuration once, when sounddevice is imported.
DEVICE_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading, time
    import numpy as np
    fifo = sys.argv[1]
    writer = os.open(fifo, os.O_RDWR)  # before PortAudio probes the device: opening the FIFO must not block
    from engine.sources import AudioDeviceSource, SourceError, input_devices
    if not any(d["name"] == "speakerfile" for d in input_devices()):
        print("NODEVICE", [d["name"] for d in input_devices()]); sys.exit(0)
    try:
        AudioDeviceSource("no-such-mic")
    except SourceError as exc:
        print("NOTFOUND", str(exc).replace("\\n", " | "))
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    def feed():  # 0.8 s at real-time pace, then silence from a device that is still there: a stall
        start = time.monotonic()
        for k in range(0, 38400, 960):
            os.write(writer, np.repeat(tone[k:k + 960], 2).tobytes())
            time.sleep(max(0.0, start + (k + 960) / 48000 - time.monotonic()))
    threading.Thread(target=feed, daemon=True).start()
    source = AudioDeviceSource("speakerfile", stall_timeout_s=0.5)
    chunks = []
    try:
        for chunk in source:
            chunks.append(chunk)
    except SourceError as exc:
        print("STALLED", exc)
    os.close(writer)  # end of file unblocks the driver so the stream can stop
    source.close(); source.close()
    audio = np.concatenate([c.samples for c in chunks])
    gaps = max(abs(b.t_start_s - a.t_end_s) for a, b in zip(chunks, chunks[1:]))
    spectrum = np.abs(np.fft.rfft(audio[2000:10000] * np.hanning(8000)))
    print("AUDIO", len(audio), gaps, np.fft.rfftfreq(8000, 1 / 16000)[spectrum.argmax()], source.stats.dropped)
    """
)


def test_audio_device_source_on_an_alsa_file_device(alsa_fifo_device: tuple[Path, dict[str, str]]):
    fifo, env = alsa_fifo_device
    run = subprocess.run(
        [sys.executable, "-c", DEVICE_SCRIPT, str(fifo)], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in run.stdout.splitlines() if " " in line}
    if "NODEVICE" in lines:
        pytest.skip(f"PortAudio does not list the ALSA file device from $XDG_CONFIG_HOME/alsa/asoundrc: {lines}")
    assert "no audio input device matches 'no-such-mic'" in lines["NOTFOUND"] and "speakerfile" in lines["NOTFOUND"]
    assert "speakerfile" in lines["STALLED"] and "no audio for 0.5 s" in lines["STALLED"]
    samples, gap, hz, dropped = lines["AUDIO"].split()
    assert abs(int(samples) - 0.8 * SAMPLE_RATE) < 0.05 * SAMPLE_RATE  # 0.8 s captured at 48 kHz, now 16 kHz
    assert float(gap) < 1e-6 and float(hz) == pytest.approx(TONE_HZ, abs=3) and int(dropped) == 0


# --- WebRTC ---------------------------------------------------------------------------------------------


class ToneTrack(MediaStreamTrack):
    """20 ms s16 frames: 0.4 s stereo at 48 kHz, then 0.4 s mono at 16 kHz, then the track ends."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.plan = [(48000, "stereo", k) for k in range(20)] + [(16000, "mono", k) for k in range(20)]

    async def recv(self) -> av.AudioFrame:
        await asyncio.sleep(0)
        if not self.plan:
            self.stop()
            raise MediaStreamError
        rate, layout, k = self.plan.pop(0)
        n = rate // 50
        x = tone(0.02 * (k + 1), rate)[-n:]
        return _frame(np.stack([x] * (2 if layout == "stereo" else 1)), rate, layout, k * n)


class AvatarTrack(MediaStreamTrack):
    """Ten 25 fps avatar frames with 90 kHz timestamps starting at an arbitrary RTP offset, then the end."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.rgb = VectorAvatar(width=160, height=120).draw(neutral_face()).copy()

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(0.001)
        if self.sent == 10:
            raise MediaStreamError
        frame = av.VideoFrame.from_ndarray(self.rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = 123_456 + 3600 * self.sent, fractions.Fraction(1, 90000)
        self.sent += 1
        return frame


def test_webrtc_source_async_iteration_resamples_and_ends_with_the_tracks():
    async def collect() -> tuple[list[Media], WebRTCSource]:
        source = WebRTCSource(audio=ToneTrack(), video=AvatarTrack())
        return [item async for item in source], source

    items, source = asyncio.run(collect())
    audio = check_contract(sorted(items, key=lambda i: isinstance(i, VideoFrame)), source)
    assert source.stats.format_changes == 1 and source.stats.dropped == 0
    assert abs(len(audio) - 0.8 * SAMPLE_RATE) <= 64
    assert dominant_hz(audio[1000:6000]) == pytest.approx(TONE_HZ, abs=4)
    assert dominant_hz(audio[8000:12000]) == pytest.approx(TONE_HZ, abs=4)
    video = [i for i in items if isinstance(i, VideoFrame)]
    assert len(video) == 10 and np.diff([f.t_s for f in video]) == pytest.approx([0.04] * 9)
    assert video[0].rgb.shape == (120, 160, 3) and abs(video[0].t_s) < 1.0  # anchored to the audio clock


def test_webrtc_source_feeds_a_worker_thread_with_a_bounded_drop_oldest_queue():
    async def run() -> tuple[list[Media], WebRTCSource]:
        source = WebRTCSource(audio=ToneTrack(), queue_size=8)
        with pytest.raises(SourceError, match="call start"):
            next(iter(source))
        gate = threading.Event()

        def consume() -> list[Media]:
            gate.wait(5)  # let the queue overflow first
            return list(source)

        worker = asyncio.get_running_loop().run_in_executor(None, consume)
        await source.start()
        gate.set()
        return await worker, source

    items, source = asyncio.run(run())
    assert len(items) == 8 and source.stats.dropped == source.stats.audio_chunks - 8 > 0
    assert items[-1].t_start_s == pytest.approx(0.8 - items[-1].duration_s, abs=0.005)


def test_webrtc_source_close_stops_an_endless_track():
    class Endless(MediaStreamTrack):
        kind = "video"

        async def recv(self) -> av.VideoFrame:
            await asyncio.sleep(0.005)
            return av.VideoFrame(32, 32, "yuv420p")

    async def run() -> int:
        source, count = WebRTCSource(video=Endless()), 0
        async for _ in source:
            count += 1
            if count == 5:
                source.close()
        return count

    assert asyncio.run(run()) == 5
    with pytest.raises(SourceError, match="an audio track, a video track or both"):
        WebRTCSource()
    with pytest.raises(SourceError, match="the audio track given is a 'video' track"):
        WebRTCSource(audio=AvatarTrack())


# --- damaged and hostile files (property-based) ------------------------------------------------------------


@pytest.fixture(scope="module")
def small_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return write_small_media(tmp_path_factory.mktemp("small-media"))


def check_file_source(path: Path) -> None:
    """Open and read all of `path`: the items keep the contract, or a SourceError names the file."""
    try:
        with FileSource(path) as source:
            items = list(source)
    except SourceError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc), exc
        return
    audio = [i for i in items if isinstance(i, AudioChunk)]
    video = [i for i in items if isinstance(i, VideoFrame)]
    assert items and (source.has_audio or not audio) and (source.has_video or not video)
    for chunk in audio:
        assert chunk.samples.dtype == np.float32 and chunk.samples.ndim == 1 and np.isfinite(chunk.samples).all()
    for before, after in itertools.pairwise(audio):
        assert after.t_start_s == pytest.approx(before.t_end_s, abs=1e-6)
    assert all(np.isfinite(frame.t_s) for frame in video)
    for frame in video[:2]:  # a damaged frame still converts to RGB of its own size, within the limit
        assert frame.rgb.shape == (*frame.size[::-1], 3) and frame.size[0] * frame.size[1] <= MAX_VIDEO_PIXELS


@pytest.mark.filterwarnings(LARGE_REPR)
def test_damaged_media_files_are_a_source_error_or_read_whole(small_media: dict[str, bytes], tmp_path: Path):
    """1,000 files of eight formats cut short, with bytes flipped, inserted or removed, emptied or random,
    under the right suffix, a wrong one or none."""

    @FUZZ
    @given(media_cases(small_media))
    def check(case: tuple[str, bytes]) -> None:
        suffix, data = case
        path = tmp_path / f"case{suffix}"
        path.write_bytes(data)
        within(lambda: check_file_source(path))

    with no_resource_growth():
        check()


@pytest.mark.filterwarnings(LARGE_REPR)
def test_headers_claiming_huge_frames_or_odd_audio_are_a_source_error_or_within_the_limits(tmp_path: Path):
    """1,000 PNG, Y4M and WAV headers claiming up to 100000x100000 pixels, any sample rate, channels, sample size."""

    @FUZZ
    @given(hostile_headers())
    def check(case: tuple[str, bytes]) -> None:
        suffix, data = case
        path = tmp_path / f"case{suffix}"
        path.write_bytes(data)
        within(lambda: check_file_source(path))

    with no_resource_growth():
        check()


# --- damaged and hostile files: the cases the fuzzing found -----------------------------------------------


def test_metadata_that_is_not_utf8_does_not_stop_a_file(small_media: dict[str, bytes], tmp_path: Path):
    # PyAV decodes metadata strictly by default: a flipped byte in the encoder tag was a UnicodeDecodeError.
    path = tmp_path / "tag.mp4"
    path.write_bytes(small_media[".mp4"].replace(b"Lavf", b"\xffavf"))
    with FileSource(path) as source:
        assert sum(isinstance(i, VideoFrame) for i in source) == 10


def test_a_stream_of_an_unknown_codec_is_left_out(small_media: dict[str, bytes], tmp_path: Path):
    # FFmpeg has no decoder for it, so no codec context: that was an AttributeError while opening.
    path = tmp_path / "unknown.mp4"
    path.write_bytes(small_media[".mp4"].replace(b"avc1", b"zzz1"))
    with FileSource(path) as source:
        assert source.has_audio and not source.has_video
        assert all(isinstance(i, AudioChunk) for i in source)


def test_audio_shorter_than_the_video_holds_back_a_bounded_number_of_frames(tmp_path: Path):
    # The audio stream goes quiet long before the end of the file: every video frame after it used to wait in
    # memory for audio that never came, until the end of the file (hours of decoded frames for a long video).
    path = write_media(tmp_path / "short-audio.mp4", "mp4", ("libx264", 200), ("aac", 0.2))
    with FileSource(path) as source:
        video = [i for i in source if isinstance(i, VideoFrame)]
    assert len(video) == 200 and [f.t_s for f in video] == sorted(f.t_s for f in video)
    assert source.pending_peak < 40  # MAX_PENDING (32) + the frames of one packet; 195 without the bound


def test_realtime_pacing_skips_a_jump_in_damaged_timestamps(tmp_path: Path):
    # Frames 6-9 claim to come 100 s after frame 5: pacing used to wait those 100 s.
    path = write_media(tmp_path / "jump.mkv", "matroska", ("mjpeg", 10), None, pts_offset_s=100.0)
    source = FileSource(path, realtime=True)
    items: list[Media] = []
    reader = threading.Thread(target=lambda: items.extend(source))
    start = time.monotonic()
    reader.start()
    reader.join(10.0)
    source.close()
    reader.join()
    assert len(items) == 10 and time.monotonic() - start < 0.4 + MAX_GAP_S + 1.0
    assert items[-1].t_s == pytest.approx(100.36, abs=0.01)  # media times are kept as the file has them


def test_a_file_that_decodes_to_nothing_is_a_source_error(tmp_path: Path):
    # The header of a 64x48 raw stream, and half a frame: iterating used to end at once with no item and no error.
    path = tmp_path / "half-frame.y4m"
    path.write_bytes(y4m_claiming(64, 48, bytes(2000)))
    with FileSource(path) as source, pytest.raises(SourceError, match=r"half-frame\.y4m: no audio or video could be"):
        list(source)


@pytest.mark.parametrize(
    ("suffix", "data", "error"),
    [
        (".y4m", y4m_claiming(8000, 8000), r"video frames of 8000x8000 pixels, more than the 8,847,360 this reads"),
        (".wav", wav_claiming(1, 1), r"audio at 1 Hz, outside the 4000-768000 Hz this reads"),
        (".wav", wav_claiming(16000, 65), r"audio with 65 channels, more than the 64 this reads \(mix it down"),
    ],
    ids=["8000x8000", "1-hz", "65-channels"],
)
def test_headers_beyond_the_limits_say_what_and_how_to_fix(tmp_path: Path, suffix: str, data: bytes, error: str):
    path = tmp_path / f"claim{suffix}"
    path.write_bytes(data)
    with pytest.raises(SourceError, match=rf"claim\{suffix}: {error}"):
        FileSource(path)


# Run in a fresh interpreter: its peak memory is then what these files cost, and a crash fails one test only.
HOSTILE_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from engine.sources import FileSource, SourceError
    from tests.fuzzing import png_claiming, wav_claiming
    from trainer.data import DatasetError, load_audio, load_video
    folder = Path(sys.argv[1])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    cases = {"huge.png": png_claiming(16000, 16000), "one-hz.wav": wav_claiming(1, 1, data=bytes(12800)),
             "seven-one.wav": wav_claiming(48000, 8)}
    for name, data in cases.items():
        (folder / name).write_bytes(data)
        for read in (lambda p: list(FileSource(p)), load_video if name.endswith(".png") else load_audio):
            try:
                read(folder / name)
                print("READ", name)
            except (SourceError, DatasetError) as exc:
                print("REFUSED", name, type(exc).__name__)
    print("PEAK_MB", base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """
)


def test_files_claiming_huge_frames_slow_audio_or_many_channels_keep_memory_bounded(tmp_path: Path):
    # Before: the 200-byte PNG took the process to 845 MB, the 12 KB 1 Hz WAV to 1.4 GB through load_audio, and the
    # 7.1 WAV killed it (SIGSEGV in PyAV's planar to_ndarray); it is now read, by both readers.
    run = subprocess.run([sys.executable, "-c", HOSTILE_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert sum(line.startswith("REFUSED") for line in lines) == 4, lines
    assert lines.count("READ seven-one.wav") == 2, lines
    base, peak = map(int, lines[-1].split()[1:])
    assert peak - base < 100, f"reading the files raised peak memory from {base} MB to {peak} MB"


def test_audio_of_eight_and_more_channels_mixes_to_mono(tmp_path: Path):
    """A 7.1 (and a 24-channel) file killed the process (SIGSEGV in PyAV's planar to_ndarray); it is read in a
    fresh interpreter here so a crash fails this test only. A tone in one of n channels comes out at 1/n."""
    script = textwrap.dedent(
        """
        import sys, wave
        import numpy as np
        from pathlib import Path
        from engine.sources import FileSource
        from engine.sources.base import AudioChunk
        for channels in (8, 24):
            path = Path(sys.argv[1]) / f"{channels}ch.wav"
            t = np.arange(16000) / 16000
            samples = np.zeros((16000, channels), np.int16)
            samples[:, 3] = (0.8 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
            with wave.open(str(path), "wb") as out:
                out.setnchannels(channels); out.setsampwidth(2); out.setframerate(16000)
                out.writeframes(samples.tobytes())
            with FileSource(path) as source:
                mono = np.concatenate([c.samples for c in source if isinstance(c, AudioChunk)])
            print(channels, len(mono), round(float(np.abs(mono).max()) * channels, 2))
        """
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60,
                          cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line.split() for line in done.stdout.splitlines()] == [["8", "16000", "0.8"], ["24", "16000", "0.8"]]
