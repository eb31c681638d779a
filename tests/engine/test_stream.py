"""The streaming runtime on in-memory fakes: a source of tone bursts and numbered video frames, a tracker that
reads the number back, and a cheap deterministic "model" that uses every input the backend would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from engine.features import SAMPLE_RATE, audio_features
from engine.runtime import StreamConfig, StreamEngine, WindowModel
from engine.runtime.playout import FilePlayout
from engine.runtime.probe import TICK_MOD, ProbeCode, draw_code, read_code
from engine.runtime.queues import StageQueue
from engine.runtime.timelines import Emitted, ListenerTimeline
from engine.smoothing import OneEuroConfig, OneEuroFilter, one_euro
from engine.sources.base import AudioChunk, Media, Source, SourceError, SourceKind, VideoFrame
from engine.windows import SILENCE_FEATURES, WindowPlan, dependency_horizon, generate_windows
from renderer.face import FACE_DIM
from renderer.timing import interpolate_faces

W, HOP, LATENT = 16, 4, (4, 3)
DIM = 83


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Tone bursts with pauses: features that change from frame to frame."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = (np.sin(2 * np.pi * 1.3 * t) > 0).astype(np.float32)
    return (0.3 * envelope * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def numbered_frame(k: int) -> np.ndarray:
    return np.full((24, 32, 3), k % 251, np.uint8)


def probed_frame(k: int) -> np.ndarray:
    """A numbered frame large enough for the delay probe's barcode, which carries k."""
    rgb = np.full((32, 112, 3), k % 251, np.uint8)
    draw_code(rgb, ProbeCode(k))
    return rgb


class FakeSource(Source):
    """Audio in chunks of `chunk` samples and 25 fps numbered video, in media-time order, optionally paced."""

    kind = SourceKind.FILE

    def __init__(self, audio=None, video_frames=0, *, chunk=640, realtime=False, fail_at_s=None, frame=numbered_frame):
        super().__init__()
        self.audio, self.video_frames, self.chunk = audio, video_frames, chunk
        self.realtime, self.fail_at_s, self.frame = realtime, fail_at_s, frame
        self.closed = threading.Event()

    @property
    def has_audio(self):
        return self.audio is not None

    @property
    def has_video(self):
        return self.video_frames > 0

    def _items(self) -> list[tuple[float, float, Media | None]]:
        items = []
        if self.audio is not None:
            for start in range(0, len(self.audio), self.chunk):
                samples = self.audio[start : start + self.chunk]
                t0, t1 = start / SAMPLE_RATE, (start + len(samples)) / SAMPLE_RATE
                items.append((t0, t1, AudioChunk(samples, t0, 0.0)))
        items += [(k / 25, k / 25, VideoFrame(self.frame(k), k / 25, 0.0)) for k in range(self.video_frames)]
        return sorted(items, key=lambda i: i[0])

    def __iter__(self) -> Iterator[Media]:
        start = time.monotonic()
        for _t0, due, item in self._items():
            if self.fail_at_s is not None and due >= self.fail_at_s:
                raise SourceError("fake: the device disappeared")
            if self.realtime and self.closed.wait(max(0.0, start + due - time.monotonic())):
                return
            if self.closed.is_set():
                return
            now = time.monotonic()
            if isinstance(item, AudioChunk):
                yield AudioChunk(item.samples, item.t_start_s, now)
            else:
                yield VideoFrame(item.image, item.t_s, now)

    def close(self):
        self.closed.set()


@dataclass
class FakeResult:
    face: np.ndarray
    found: bool


class FakeTracker:
    """Face value 0 (browDownLeft) = frame number / 250 (read below any barcode); `found` False for frames in `lost`."""

    def __init__(self, lost=()):
        self.lost = set(lost)

    def track(self, rgb, timestamp_s):
        face = np.zeros(FACE_DIM, np.float32)
        face[0] = rgb[-1, 0, 0] / 250.0
        return FakeResult(face, int(rgb[-1, 0, 0]) not in self.lost)


class FakeModel:
    """A WindowFn that depends on audio, face, present, the known frames and the noise; records its inputs."""

    def __init__(self, delay_s=0.0, fail_at=None, slow_every=1):
        self.calls: list[dict[str, np.ndarray]] = []
        self.delay_s, self.fail_at, self.slow_every = delay_s, fail_at, slow_every

    def __call__(self, audio, face, present, known, known_mask, noise):
        self.calls.append({"audio": audio.copy(), "present": present.copy(), "known_mask": known_mask.copy()})
        if self.fail_at is not None and len(self.calls) > self.fail_at:
            raise RuntimeError("fake backend crashed")
        if len(self.calls) % self.slow_every == 0:
            time.sleep(self.delay_s)
        drive = np.tanh(audio[..., :1].mean(-1, keepdims=True) / 10) + face[..., :1] * present[:, None, 1:2]
        carried = known.mean(axis=1, keepdims=True) * 0.5
        out = np.broadcast_to(drive + carried + noise.mean() * 0.1, (*audio.shape[:2], DIM))
        return (out + np.linspace(0, 0.1, DIM, dtype=np.float32)).astype(np.float32)


def window_model(fn) -> WindowModel:
    return WindowModel(fn, W, HOP, LATENT, DIM, np.full(DIM, 0.05, np.float32))


def engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("reactdiff-")]


def run_fast(source, fn, *, tracker=None, **config):
    engine = StreamEngine(window_model(fn), source, tracker=tracker, config=StreamConfig(record=True, **config))
    stats = engine.run()
    assert engine_threads() == []
    return engine, stats


def offline(fn, audio, face, present, *, hop=HOP, seed=0, temperature=1.0):
    return generate_windows(
        fn, audio[None], face[None], present, window=W, hop=hop, latent_shape=LATENT, listener_dim=DIM, seed=seed,
        neutral_listener=np.full(DIM, 0.05, np.float32), temperature=temperature,
    )[0]  # fmt: skip


@pytest.mark.parametrize(("chunk", "hop", "seconds"), [(640, 4, 2.0), (1000, 4, 2.03), (4800, 7, 1.5), (333, 15, 1.0)])
def test_fast_mode_gives_the_frames_of_generate_windows(chunk, hop, seconds):
    audio = speech(seconds)
    frames = len(audio) // 640
    source = FakeSource(audio, video_frames=frames + 2, chunk=chunk)
    engine, stats = run_fast(source, FakeModel(), tracker=FakeTracker(), hop=hop, seed=3)
    raw, smoothed, filled = engine.recorded()
    face = np.zeros((frames, FACE_DIM), np.float32)
    face[:, 0] = np.arange(frames) / 250.0  # sample-and-hold: video frame t is the face of audio frame t
    want = offline(FakeModel(), audio_features(audio), face, np.ones((1, 2), np.float32), hop=hop, seed=3)
    np.testing.assert_allclose(raw, want, atol=1e-6)
    np.testing.assert_allclose(smoothed, one_euro(want, OneEuroConfig().per_dimension(DIM)), atol=1e-5)
    assert not filled.any() and stats.windows_dropped == 0 and stats.frames_filled == 0
    assert stats.frames_generated == frames == len(stats.latencies_s)
    assert engine.listener.seams == list(range(hop, frames, hop))


@pytest.mark.parametrize("temperature", [0.0, 0.5])
def test_the_temperature_reaches_every_windows_noise_as_offline(temperature):
    audio = speech(1.5)
    frames = len(audio) // 640
    face = np.zeros((frames, FACE_DIM), np.float32)
    face[:, 0] = np.arange(frames) / 250.0
    runs = {}
    for seed in (3, 4):
        source = FakeSource(audio, video_frames=frames + 2, chunk=640)
        engine, _ = run_fast(source, FakeModel(), tracker=FakeTracker(), seed=seed, temperature=temperature)
        runs[seed] = engine.recorded()[0]
        want = offline(FakeModel(), audio_features(audio), face, np.ones((1, 2), np.float32), seed=seed,
                       temperature=temperature)  # fmt: skip
        np.testing.assert_allclose(runs[seed], want, atol=1e-6)
    assert (np.abs(runs[3] - runs[4]).max() < 1e-7) == (temperature == 0.0)  # at 0 the seed no longer matters


def test_audio_only_marks_the_face_absent():
    audio = speech(1.2)
    fn = FakeModel()
    engine, _ = run_fast(FakeSource(audio), fn)
    assert all(c["present"].tolist() == [[1.0, 0.0]] for c in fn.calls)
    want = offline(FakeModel(), audio_features(audio), np.zeros((30, FACE_DIM), np.float32), np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(engine.recorded()[0], want, atol=1e-6)


def test_video_only_hears_silence_and_marks_audio_absent():
    fn = FakeModel()
    _, stats = run_fast(FakeSource(None, video_frames=40), fn, tracker=FakeTracker())
    assert stats.frames_generated == 40 and stats.tracked_frames == 40
    assert all(c["present"].tolist() == [[0.0, 1.0]] for c in fn.calls)
    np.testing.assert_allclose(fn.calls[-1]["audio"][0], np.tile(SILENCE_FEATURES, (W, 1)), atol=1e-6)


def test_a_window_where_no_face_was_found_marks_the_face_absent():
    fn = FakeModel()
    run_fast(FakeSource(speech(1.6), video_frames=40), fn, tracker=FakeTracker(lost=range(40)), hop=8)
    assert [c["present"][0, 1] for c in fn.calls] == [0.0] * len(fn.calls)


def test_source_failure_is_raised_and_every_thread_ends():
    source = FakeSource(speech(3.0), video_frames=75, fail_at_s=1.0)
    engine = StreamEngine(window_model(FakeModel()), source, tracker=FakeTracker())
    with pytest.raises(SourceError, match="disappeared"):
        engine.run()
    assert engine_threads() == [] and source.closed.is_set()
    engine.close()  # twice is fine


def test_backend_failure_is_raised_and_every_thread_ends():
    engine = StreamEngine(window_model(FakeModel(fail_at=2)), FakeSource(speech(3.0)))
    with pytest.raises(RuntimeError, match="fake backend crashed"):
        engine.run()
    assert engine_threads() == []


def test_close_from_another_thread_stops_a_realtime_stream():
    source = FakeSource(speech(30.0), chunk=320, realtime=True)
    engine = StreamEngine(window_model(FakeModel()), source, config=StreamConfig(realtime=True))
    threading.Timer(0.5, engine.close).start()
    stats = engine.run()
    assert engine_threads() == [] and stats.media_s < 5.0


def test_hop_must_leave_a_known_frame_in_the_window():
    with pytest.raises(ValueError, match="hop=16: must be between 1 and 15"):
        StreamEngine(window_model(FakeModel()), FakeSource(speech(1.0)), config=StreamConfig(hop=W))


class Sink:
    """Keeps what it is given; `audio=True`: it has an audio track (renderer.sinks.Sink.audio is not None)."""

    def __init__(self, width, height, *, audio=False):
        self.width, self.height = width, height
        self.frames: list[tuple[float, np.ndarray]] = []
        self.audio = "track" if audio else None
        self.heard: list[tuple[float, np.ndarray]] = []  # (start_s, samples) given to write_audio
        self.closed = False

    def write(self, frame, timestamp_s):
        assert frame.shape == (self.height, self.width, 3)
        self.frames.append((timestamp_s, frame.copy()))

    def write_audio(self, samples, start_s):
        assert self.audio is not None and not self.closed
        self.heard.append((start_s, samples.copy()))

    def close(self):
        self.closed = True


def sinks_into(sinks: list[Sink], *, audio=False):
    def make(width, height):
        sinks.append(Sink(width, height, audio=audio))
        return sinks[-1]

    return make


def raw_before(timeline: ListenerTimeline) -> np.ndarray:
    return timeline.recorded_frames()[0][-1]


@pytest.mark.slow
def test_realtime_with_a_slow_model_drops_windows_but_loses_no_frame():
    # every third window takes 0.6 s, a hop is 0.16 s: windows behind it are dropped, their frames filled
    source = FakeSource(speech(2.5), chunk=320, realtime=True)
    sinks: list[Sink] = []
    config = StreamConfig(realtime=True, record=True, size=(32, 32), latency_budget_s=0.1)
    engine = StreamEngine(
        window_model(FakeModel(delay_s=0.6, slow_every=3)), source, make_sink=sinks_into(sinks), config=config
    )
    stats = engine.run()
    raw, _, filled = engine.recorded()
    assert len(raw) == 62 == stats.frames_generated + stats.frames_filled  # every frame, once, in order
    assert stats.windows_dropped > 0 and filled.any() and (~filled).any()
    assert sinks[0].closed and len(sinks[0].frames) > 0
    times = [t for t, _ in sinks[0].frames]
    assert times == sorted(times)
    assert engine_threads() == []


def test_file_playout_is_the_interpolation_of_the_emitted_frames():
    frames_q: StageQueue[Emitted] = StageQueue(100, lossless=False)
    rng = np.random.default_rng(0)
    faces = rng.random((23, DIM)).astype(np.float32)
    for first in range(0, 23, 5):
        frames_q.put(Emitted(first, faces[first : first + 5], faces[first : first + 5], False))
    frames_q.close()
    shown: list[tuple[float, np.ndarray]] = []

    class Recorder:
        def render(self, face, media_t, timestamp_s):
            shown.append((timestamp_s, face.copy()))

    FilePlayout(frames_q, Recorder(), threading.Event(), fps=30.0).run()  # type: ignore[arg-type]
    want = interpolate_faces(faces[:, :FACE_DIM], 25.0, 30.0)
    assert len(shown) == len(want) == 28
    assert [t for t, _ in shown] == pytest.approx(np.arange(28) / 30)
    np.testing.assert_allclose(np.stack([f for _, f in shown]), want, atol=1e-5)


def test_side_by_side_puts_the_speaker_left_of_the_avatar():
    sinks: list[Sink] = []
    source = FakeSource(speech(1.0), video_frames=25)
    config = StreamConfig(size=(32, 24), side_by_side=True)
    engine = StreamEngine(
        window_model(FakeModel()), source, tracker=FakeTracker(), make_sink=sinks_into(sinks), config=config
    )
    stats = engine.run()
    sink = sinks[0]
    assert (sink.width, sink.height) == (32 + 32, 24)  # the 32x24 speaker video fits the height as it is
    assert len(sink.frames) == stats.output_frames == 30 and sink.closed
    _, last = sink.frames[-1]
    assert int(last[5, 5, 0]) == pytest.approx(24, abs=2)  # the newest numbered frame (24) on the left


def test_listener_timeline_fills_a_gap_longer_than_the_window():
    out: list[Emitted] = []
    neutral = np.zeros(DIM, np.float32)
    timeline = ListenerTimeline(W, neutral, OneEuroFilter(OneEuroConfig().per_dimension(DIM)), out.append, record=True)
    first = timeline.plan(HOP - 1)
    assert first is not None
    timeline.commit(first, np.ones((1, W, DIM), np.float32))
    plan = timeline.plan(40)  # windows ending 7..36 were dropped
    assert plan is not None and plan.first_new == 40 - W + 2 and timeline.filled == plan.first_new - HOP
    known, mask = timeline.conditioning(plan)
    assert np.all(known[0, 0] == raw_before(timeline)) and mask[0].tolist() == [1.0] + [0.0] * (W - 1)
    timeline.fill_through(30)  # the player could not wait for it
    assert timeline.commit(plan, np.full((1, W, DIM), 2.0, np.float32)) == 10
    raw, _, filled = timeline.recorded_frames()
    assert len(raw) == 41 and filled.sum() == 41 - HOP - 10
    step = 2.0 - raw[30, 0]  # the window's level vs the last filled frame
    assert np.abs(np.diff(raw[:, 0])).max() < 0.25 * step  # hold/decay and the seam join spread it: no jump


class GappySource(FakeSource):
    """Audio with 0.3 s missing after the first 0.5 s (a device dropped blocks; media time skips ahead)."""

    def __iter__(self):
        first, second = self.audio[:8000], self.audio[8000:]
        yield AudioChunk(first, 0.0, time.monotonic())
        yield AudioChunk(second, 0.8, time.monotonic())


def test_audio_lost_by_the_source_becomes_silence_on_the_media_clock():
    audio = speech(1.0)
    engine, stats = run_fast(GappySource(audio), FakeModel())
    heard = np.concatenate([audio[:8000], np.zeros(4800, np.float32), audio[8000:]])
    want = offline(FakeModel(), audio_features(heard), np.zeros((32, FACE_DIM), np.float32), np.array([[1.0, 0.0]]))
    assert stats.frames_generated == 32  # 1.3 s
    np.testing.assert_allclose(engine.recorded()[0], want, atol=1e-6)


@pytest.mark.parametrize("realtime", [False, True])
def test_speaker_audio_goes_to_the_sink_at_the_media_time_its_panel_shows(realtime):
    # the rule (engine.runtime.playout.Renderer): the frame stamped t shows the speaker frame of media time t,
    # and the audio of media time t is written at t
    audio = speech(1.2)
    source = FakeSource(audio, video_frames=30, chunk=1000, realtime=realtime)
    sinks: list[Sink] = []
    config = StreamConfig(realtime=realtime, size=(32, 24), side_by_side=True)
    engine = StreamEngine(window_model(FakeModel()), source, tracker=FakeTracker(),
                          make_sink=sinks_into(sinks, audio=True), config=config)  # fmt: skip
    stats = engine.run()
    sink = sinks[0]
    starts = [start for start, _ in sink.heard]
    assert starts == [k * 1000 / SAMPLE_RATE for k in range(len(starts))]  # every chunk, on the media clock
    np.testing.assert_array_equal(np.concatenate([s for _, s in sink.heard]), audio)
    for t, frame in sink.frames:
        assert frame[5, 5, 0] == np.floor(t * 25 + 1e-6)  # the speaker frame of media time t
    assert len(sink.frames) >= 30 and stats.audio_dropped == 0 and sink.closed


def test_audio_the_player_cannot_take_in_time_is_dropped_and_counted(monkeypatch):
    monkeypatch.setattr("engine.runtime.engine.AUDIO_QUEUE_CHUNKS", 2)  # the reader runs a window ahead
    sinks: list[Sink] = []
    engine = StreamEngine(window_model(FakeModel()), FakeSource(speech(1.0), chunk=320),
                          make_sink=sinks_into(sinks, audio=True), config=StreamConfig(size=(32, 24)))  # fmt: skip
    stats = engine.run()
    assert stats.audio_dropped > 0 and len(sinks[0].heard) + stats.audio_dropped == 50
    assert stats.to_json()["audio"] == {"dropped_chunks": stats.audio_dropped}


def test_a_sink_without_an_audio_track_gets_frames_only():
    sinks: list[Sink] = []
    engine = StreamEngine(window_model(FakeModel()), FakeSource(speech(1.0)), make_sink=sinks_into(sinks),
                          config=StreamConfig(size=(32, 24)))  # fmt: skip
    stats = engine.run()
    assert sinks[0].heard == [] and len(sinks[0].frames) == 30 and stats.audio_dropped == 0


class SlowTracker(FakeTracker):
    """A FakeTracker that takes `delay_s` per frame (the reader reaches the end while frames are still queued)."""

    def __init__(self, delay_s: float):
        super().__init__()
        self.delay_s = delay_s

    def track(self, rgb, timestamp_s):
        time.sleep(self.delay_s)
        return super().track(rgb, timestamp_s)


def test_fast_mode_tracks_every_face_before_the_last_window():
    # the stream's last (shorter) window is cut once the source has ended: it must still wait for the frames
    # the tracker has not finished, or the output depends on the machine's speed
    audio = speech(1.08)  # 27 frames: windows end at 3, 7, .., 23, then the last one at 26
    engine, _ = run_fast(FakeSource(audio, video_frames=27), FakeModel(), tracker=SlowTracker(0.03), hop=HOP)
    face = np.zeros((27, FACE_DIM), np.float32)
    face[:, 0] = np.arange(27) / 250.0
    want = offline(FakeModel(), audio_features(audio), face, np.ones((1, 2), np.float32))
    np.testing.assert_allclose(engine.recorded()[0], want, atol=1e-6)


def test_a_slow_emit_never_holds_up_the_player_and_runs_stay_in_frame_order():
    # emit is where the room encodes the reactions channel; the 30 fps player's fill must not wait for it
    out: list[Emitted] = []
    entered, release = threading.Event(), threading.Event()

    def slow_emit(block: Emitted) -> None:
        if not out and not entered.is_set():  # the first run (the worker's window) is slow to send
            entered.set()
            release.wait(2.0)
        out.append(block)

    neutral = np.zeros(DIM, np.float32)
    timeline = ListenerTimeline(W, neutral, OneEuroFilter(OneEuroConfig().per_dimension(DIM)), slow_emit)
    plan = timeline.plan(HOP - 1)
    assert plan is not None
    worker = threading.Thread(target=timeline.commit, args=(plan, np.ones((1, W, DIM), np.float32)))
    worker.start()
    assert entered.wait(2.0)
    start = time.monotonic()
    assert timeline.fill_through(HOP + 5) == 6  # the player: frames 4..9 are due now
    waited = time.monotonic() - start
    release.set()
    worker.join()
    assert waited < 0.5
    assert [(b.first, len(b.raw), b.filled) for b in out] == [(0, HOP, False), (HOP, 6, True)]


def test_runs_emitted_from_two_threads_reach_emit_once_each_in_frame_order():
    rng = np.random.default_rng(0)
    out: list[Emitted] = []

    def jittery_emit(block: Emitted) -> None:
        time.sleep(float(rng.uniform(0, 0.002)))
        out.append(block)

    neutral = np.zeros(DIM, np.float32)
    timeline = ListenerTimeline(W, neutral, OneEuroFilter(OneEuroConfig().per_dimension(DIM)), jittery_emit)

    def windows() -> None:
        for end in range(HOP - 1, 400, HOP):
            plan = timeline.plan(end)
            if plan is not None:
                timeline.commit(plan, np.ones((1, W, DIM), np.float32))

    def fills() -> None:
        for frame in range(0, 400, 3):
            timeline.fill_through(frame)

    threads = [threading.Thread(target=windows), threading.Thread(target=fills)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lengths = [len(b.raw) for b in out]  # each run starts where the one before it ended: every frame once, in order
    assert [b.first for b in out] == np.cumsum([0, *lengths[:-1]]).tolist()
    assert sum(lengths) == timeline.raw.end == 400


def test_a_live_sink_gets_the_speaker_audio_on_its_clock_with_the_frames_that_show_it():
    # a room's recording (--room URL --output room.mp4): the sink is live, stamped on the playout's clock from
    # its first (neutral) frame; the audio of media time t is written where the frame showing media time t is
    audio = speech(1.2)
    source = FakeSource(audio, video_frames=30, chunk=1000, realtime=True)
    sinks: list[Sink] = []
    config = StreamConfig(realtime=True, live_sink=True, size=(32, 24), side_by_side=True, playout_delay_s=0.2)
    engine = StreamEngine(window_model(FakeModel()), source, tracker=FakeTracker(),
                          make_sink=sinks_into(sinks, audio=True), config=config)  # fmt: skip
    stats = engine.run()
    sink = sinks[0]
    assert len(sink.heard) == 20 and stats.audio_dropped == 0  # 1.2 s in chunks of 1000 samples
    np.testing.assert_array_equal(np.concatenate([s for _, s in sink.heard]), audio)
    offset = sink.heard[0][0]  # where media time 0 is on the sink's clock: the playout delay after it started
    assert offset == pytest.approx(0.2, abs=0.15)  # (placed where it arrived, it would be near 0)
    assert [start for start, _ in sink.heard] == pytest.approx([offset + k * 1000 / SAMPLE_RATE for k in range(20)])
    shown = [(t - offset, int(frame[5, 5, 0])) for t, frame in sink.frames if t >= offset]
    assert len(shown) >= 30
    for media_t, number in shown:  # the speaker frame of that media time (the live clock wakes up to a frame late)
        assert abs(number - np.floor(media_t * 25 + 1e-6)) <= 1, (media_t, number)


class BackloggedSource(FakeSource):
    """A paced source whose items all waited `backlog_s` for the engine (a room's source starts before it)."""

    def __init__(self, audio, *, backlog_s: float, **options):
        super().__init__(audio, realtime=True, **options)
        self.backlog_s = backlog_s

    def __iter__(self):
        for item in super().__iter__():
            assert isinstance(item, AudioChunk)
            yield AudioChunk(item.samples, item.t_start_s, item.arrival_s - self.backlog_s)


def test_a_live_sink_starting_after_media_time_0_gets_the_audio_from_its_own_start():
    # media time 0 "was shown" 0.5 s - 0.2 s before the playout began: that audio has no place on the sink's clock
    audio = speech(1.2)
    sinks: list[Sink] = []
    config = StreamConfig(realtime=True, live_sink=True, size=(32, 24), playout_delay_s=0.2)
    engine = StreamEngine(window_model(FakeModel()), BackloggedSource(audio, backlog_s=0.5, chunk=1000),
                          make_sink=sinks_into(sinks, audio=True), config=config)  # fmt: skip
    engine.run()
    heard = sinks[0].heard
    assert heard[0][0] == 0.0 and all(start > 0 for start, _ in heard[1:])
    kept = np.concatenate([s for _, s in heard])
    assert 0.2 * SAMPLE_RATE < len(audio) - len(kept) < 0.4 * SAMPLE_RATE  # about 0.3 s of it came too early
    np.testing.assert_array_equal(kept, audio[len(audio) - len(kept) :])  # the rest, every sample


@pytest.mark.parametrize("hop", [3, 8])
def test_each_emitted_frame_knows_the_newest_speaker_input_it_depended_on(hop):
    # fast mode (deterministic): listener frame j depends on speaker frames up to its latent token's end; the face
    # held there is video frame t = that frame, whose barcode says t, and the audio frame completing it is the
    # newest input (its synthetic arrival: media time (t + 1) / 25 on the run's clock)
    audio = speech(1.6)
    frames = len(audio) // 640
    source = FakeSource(audio, video_frames=frames, frame=probed_frame)
    engine, _ = run_fast(source, FakeModel(), tracker=FakeTracker(), hop=hop, probe=True)
    tags, arrivals = [], []
    for block in engine.listener.recorded:
        assert block.sources is not None and not block.filled
        tags += block.sources.tag.tolist()
        arrivals += block.sources.arrival_s.tolist()
    want = []
    for end in range(hop - 1, frames, hop):
        plan = WindowPlan(end=end, window=W, hop=hop)
        want += dependency_horizon(plan, engine.model.downsample)[W - hop :].tolist()
    assert tags[: len(want)] == want and len(want) >= frames - hop
    offsets = np.asarray(arrivals[: len(want)]) - (np.asarray(want) + 1) / 25
    assert np.ptp(offsets) < 1e-6  # one origin for all


def test_probe_marks_every_live_avatar_frame_and_logs_each_stage():
    audio = speech(2.0)
    source = FakeSource(audio, video_frames=50, chunk=320, realtime=True, frame=probed_frame)
    sinks: list[Sink] = []
    config = StreamConfig(realtime=True, live_sink=True, size=(112, 64), probe=True, playout_delay_s=0.3)
    engine = StreamEngine(window_model(FakeModel()), source, tracker=FakeTracker(), make_sink=sinks_into(sinks),
                          config=config)  # fmt: skip
    stats = engine.run()
    assert engine.probe is not None
    speaker, windows, frames = engine.probe.snapshot()
    assert [r.tag for r in speaker] == list(range(50))  # every video frame's barcode was read
    codes = [read_code(rgb) for _, rgb in sinks[0].frames]
    marked = [c for c in codes if c is not None]
    assert len(marked) == len(frames) >= 40 and codes[-len(marked) :] == marked  # once the first window is shown
    assert [c.tick for c in marked] == [k % TICK_MOD for k in range(len(marked))]
    assert [c.index for c in marked] == [f.tag for f in frames] == sorted(f.tag for f in frames)
    cut = {w.k: w.cut_s for w in windows}
    tracked = {r.tag: r for r in speaker}
    for f in frames:  # the face it shows was tracked before its window was cut, which ran before it was drawn
        assert tracked[f.tag].tracked_s <= cut[f.window] <= f.render_s <= f.written_s
    assert len(stats.delays_s) == len(frames)
    delays = np.asarray(stats.delays_s)
    engine_side = np.asarray([f.written_s - tracked[f.tag].arrival_s for f in frames])
    assert (delays <= engine_side + 1e-6).all()  # the newest input may be the audio frame, newer than the video
    # media time m is shown at origin + 0.3 s + m and depends on input up to a latent token (4 frames) past it,
    # which arrived at origin + (frame + 1) / 25: between 0.3 - 0.2 s and 0.3 s (scheduling adds a little)
    assert delays.min() > 0.09 and delays.max() < 0.35


def test_the_live_playout_delay_falls_to_what_the_windows_need_and_fills_almost_nothing():
    # windows take ~10 ms and are cut as their audio arrives: they need about (hop + 1) frames + a chunk + that;
    # the delay starts at (hop + 1) frames + 0.1 s and comes down to it without a frame left unmade
    source = FakeSource(speech(4.0), chunk=320, realtime=True)
    config = StreamConfig(realtime=True, live_sink=True, size=(32, 24), latency_budget_s=0.1)
    engine = StreamEngine(window_model(FakeModel(delay_s=0.01)), source, make_sink=sinks_into([]), config=config)
    stats = engine.run()
    delays = np.asarray(stats.playout_delays_s)
    assert delays[0] == pytest.approx((HOP + 1) / 25 + 0.1)
    assert delays.min() >= (HOP + 1) / 25 - 1e-9  # never below the floor
    assert delays[-1] < (HOP + 1) / 25 + 0.05  # came down (measured here: 0.216 s)
    assert stats.frames_filled <= 0.01 * (stats.frames_generated + stats.frames_filled) + 1
    assert stats.to_json()["playout_delay_ms"]["last_ms"] == pytest.approx(delays[-1] * 1000)
