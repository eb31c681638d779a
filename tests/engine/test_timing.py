"""The timing policies (engine.runtime.timing): one contract every registered policy passes, then what each
policy decides on its own. Real queues, a real listener timeline and real playout loops; only the renderer is
a recorder."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.runtime.queues import StageQueue
from engine.runtime.timelines import Emitted, ListenerTimeline
from engine.runtime.timing import (
    FAST_FRAMES_AHEAD,
    TIMINGS,
    AdaptiveDelay,
    FastTiming,
    PlayerParts,
    PlayoutDelay,
    RealtimeTiming,
    Timing,
    TimingKind,
    create_timing,
)
from engine.smoothing import OneEuroConfig, OneEuroFilter
from engine.stats import StreamStats
from engine.windows import WindowPlan
from renderer.face import FACE_DIM, FRAME_SECONDS

DIM, W = 83, 16
FIXED = PlayoutDelay.fixed(0.05)


def window(end: int, hop: int = 4) -> WindowPlan:
    """A window of W frames ending at listener frame `end`, `hop` of them new."""
    return WindowPlan(end=end, window=W, hop=hop)


@pytest.fixture(params=list(TimingKind), ids=lambda kind: kind.value)
def timing(request: pytest.FixtureRequest) -> Timing:
    """Every registered policy, started at wall time 100 s, with media time 0 arriving at 100.5 s."""
    policy = create_timing(request.param, delay=PlayoutDelay.fixed(0.05))
    policy.start(100.0)
    policy.observe(100.5, 0.0)
    return policy


class WaitRecorder:
    """Stands in for StageQueue.wait_idle: counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


class Recorder:
    """Stands in for playout.Renderer: keeps (sink timestamp, media time, face) of every rendered frame."""

    def __init__(self) -> None:
        self.shown: list[tuple[float, float, np.ndarray]] = []
        self.audio_offset_s: float | None = 0.0  # set by a live playout (where media time 0 is on the sink's clock)

    def render(self, face: np.ndarray, media_t: float, timestamp_s: float, mark: object = None) -> None:
        self.shown.append((timestamp_s, media_t, face.copy()))


def queue_of(runs: int) -> StageQueue[Emitted]:
    frames: StageQueue[Emitted] = StageQueue(1000, lossless=False)
    for k in range(runs):
        frames.put(Emitted(k, np.zeros((1, DIM), np.float32), np.zeros((1, DIM), np.float32), False))
    return frames


# --- the contract: every policy -------------------------------------------------------------------------------


def test_every_kind_has_a_policy_that_says_its_kind():
    assert set(TIMINGS) == set(TimingKind)
    for kind in TimingKind:
        assert create_timing(kind, delay=PlayoutDelay.fixed(0.1)).kind is kind


def test_the_origin_is_fixed_once_and_never_moves(timing: Timing):
    assert timing.origin in (100.0, 100.5)  # the run's start, or the first input's arrival minus its media time
    origin = timing.origin
    timing.observe(250.0, 3.0)
    timing.observe(90.0, 0.0)
    assert timing.origin == origin


def test_an_input_never_arrives_before_its_media_time_on_the_run_clock(timing: Timing):
    # a source that hands each input out a little after its media time
    assert timing.origin is not None
    media = np.arange(1, 6) * FRAME_SECONDS
    arrivals = timing.arrivals(media, measured_s=timing.origin + 0.2 + 0.01)
    assert arrivals.shape == (5,) and arrivals.dtype == np.float64
    assert np.all(arrivals >= timing.origin + media - 1e-9)


def test_a_window_whose_video_has_arrived_may_be_cut(timing: Timing):
    wait = WaitRecorder()
    assert timing.faces_ready(1.0, 1.0, wait) is True
    assert wait.calls <= 1


def test_the_tracker_is_never_waited_for_before_the_video_has_arrived(timing: Timing):
    wait = WaitRecorder()
    timing.faces_ready(1.0, 0.5, wait)  # wait_idle now could wait for frames that come much later
    assert wait.calls == 0


def test_a_window_with_time_to_spare_is_never_skipped(timing: Timing):
    timing.ran(window(24), 100.5, 100.6, 100.7)
    assert timing.skip(window(10_000), 101.0) is False  # needed some 400 s from now


def test_a_frame_is_never_ready_before_its_inference_is_done(timing: Timing):
    # three windows, each input arriving before it runs; latency can only add to the inference time
    runs = [(100.6, 100.61, 100.71), (100.76, 100.77, 100.80), (100.92, 100.95, 101.05)]
    readies = [timing.ran(window(4 * k + 3), arrival, start, end) for k, (arrival, start, end) in enumerate(runs)]
    for (arrival, start, end), ready in zip(runs, readies, strict=True):
        assert ready - arrival >= end - start - 1e-9
    assert readies == sorted(readies)


def test_backpressure_never_holds_the_worker_once_the_player_has_taken_everything(timing: Timing):
    frames = queue_of(2 * FAST_FRAMES_AHEAD)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (timing.after_window(frames), done.set()))
    worker.start()
    while len(frames):  # the player
        frames.get(0)
        time.sleep(0.01)
    assert done.wait(2.0)
    worker.join()
    timing.after_window(frames)  # an empty queue: returns at once


@pytest.mark.parametrize("live_sink", [False, True])
def test_the_player_shows_every_frame_once_the_windows_are_done_then_ends(timing: Timing, live_sink: bool):
    frames: StageQueue[Emitted] = StageQueue(1000, lossless=False)
    neutral = np.zeros(DIM, np.float32)
    listener = ListenerTimeline(W, neutral, OneEuroFilter(OneEuroConfig().per_dimension(DIM)), frames.put, record=True)
    plan = listener.plan(9)  # one window: listener frames 0..9, a ramp
    assert plan is not None
    ramp = np.linspace(0, 0.9, W, dtype=np.float32)[None, :, None] * np.ones((1, W, DIM), np.float32)
    listener.commit(plan, ramp)
    finished, renderer = threading.Event(), Recorder()
    parts = PlayerParts(
        frames, renderer, listener, threading.Event(), fps=30.0, speaker_frames=lambda: 10, finished=finished,
        live_sink=live_sink, stats=StreamStats(),  # type: ignore[arg-type]
    )  # fmt: skip
    timing.origin = time.monotonic()  # media time 0 is now (a live player shows it after delay_s)
    finished.set()
    timing.windows_done(frames)
    player = threading.Thread(target=timing.player(parts).run)
    player.start()
    player.join(5.0)
    assert not player.is_alive() and len(frames) == 0
    stamps = [t for t, _, _ in renderer.shown]
    assert stamps == sorted(stamps) and len(stamps) >= 5
    # it ends once the stream's last frame (media time 0.36 s) is on screen, to within one output tick
    assert renderer.shown[-1][1] >= 9 * FRAME_SECONDS - 1 / 30 - 1e-6
    smoothed = listener.recorded_frames()[1]
    step = float(smoothed[-1, 0] - smoothed[-2, 0])
    face = renderer.shown[-1][2]
    assert face.shape == (FACE_DIM,) and abs(float(face[0]) - float(smoothed[-1, 0])) <= step + 1e-6


# --- fast: lossless, synthetic time ------------------------------------------------------------------------------


def test_fast_arrivals_are_media_time_from_the_run_start_whatever_the_source_says():
    fast = FastTiming(delay=FIXED)
    fast.start(100.0)
    fast.observe(300.0, 0.0)  # the origin stays at the run's start
    media = np.array([0.04, 0.08])
    np.testing.assert_array_equal(fast.arrivals(media, measured_s=300.0), 100.0 + media)


def test_fast_waits_for_every_tracked_face_of_the_window():
    fast, wait = FastTiming(delay=FIXED), WaitRecorder()
    assert fast.faces_ready(1.0, 0.96, wait) is False  # the frame at 0.96 s may be followed by one before 1.0 s
    assert fast.faces_ready(1.0, 1.0, wait) is True and wait.calls == 1


def test_fast_never_skips_and_its_latency_is_a_simulated_single_worker():
    fast = FastTiming(delay=FIXED)
    fast.start(0.0)
    assert fast.skip(window(3), now_s=1e6) is False  # however far behind the wall clock
    # inputs at 0.1 s and 0.2 s, 0.15 s of inference each (run back to back much later): the second waits
    assert fast.ran(window(3), 0.1, 50.0, 50.15) == pytest.approx(0.25)
    assert fast.ran(window(7), 0.2, 50.15, 50.30) == pytest.approx(0.40)
    assert fast.ran(window(11), 1.0, 50.30, 50.45) == pytest.approx(1.15)  # idle in between: starts when input came


def test_fast_holds_the_worker_while_the_player_has_runs_queued_and_closes_the_queue_at_the_end():
    fast, frames = FastTiming(delay=FIXED), queue_of(FAST_FRAMES_AHEAD)
    worker = threading.Thread(target=fast.after_window, args=(frames,))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive()  # 4 runs queued: the worker waits
    frames.get(0)
    worker.join(2.0)
    assert not worker.is_alive()
    fast.windows_done(frames)
    while len(frames):
        frames.get(0)
    assert frames.get(0) is None  # closed: FilePlayout renders the tail


# --- realtime: measured time, drops -----------------------------------------------------------------------------


def test_realtime_arrivals_are_measured_and_faces_never_awaited():
    live, wait = RealtimeTiming(delay=PlayoutDelay.fixed(0.2)), WaitRecorder()
    live.start(100.0)
    assert live.origin is None  # placed by the first input, not the start
    live.observe(100.5, 0.04)
    assert live.origin == pytest.approx(100.46)
    np.testing.assert_array_equal(live.arrivals(np.array([0.04, 0.08]), measured_s=100.5), [100.5, 100.5])
    assert live.faces_ready(5.0, 0.0, wait) is True and wait.calls == 0


def test_realtime_skips_a_window_that_its_expected_inference_time_makes_late():
    live = RealtimeTiming(delay=PlayoutDelay.fixed(0.2))
    live.observe(10.0, 0.0)  # origin 10 s: listener frame 25 is needed at 10 + 0.2 + 24 * 0.04 = 11.16 s
    assert live.deadline(25, 11.0) == pytest.approx(11.16)
    assert live.ran(window(3), 10.0, 10.0, 10.1) == 10.1  # ready when it finished; it took 0.1 s
    assert live.skip(window(25), now_s=11.05) is False  # 11.05 + 0.1 < 11.16
    assert live.skip(window(25), now_s=11.07) is True
    live.ran(window(29), 10.0, 10.0, 10.6)  # a slow window raises the estimate (running mean: 0.8*0.1 + 0.2*0.6 = 0.2)
    assert live.skip(window(25), now_s=10.97) is True and live.skip(window(25), now_s=10.95) is False


def test_realtime_never_holds_the_worker_and_keeps_the_queue_open_for_fills():
    live, frames = RealtimeTiming(delay=PlayoutDelay.fixed(0.2)), queue_of(100)
    live.after_window(frames)  # returns at once with 100 runs queued
    live.windows_done(frames)
    assert frames.put(Emitted(100, np.zeros((1, DIM), np.float32), np.zeros((1, DIM), np.float32), True))


# --- the adaptive playout delay ----------------------------------------------------------------------------------


def test_the_adaptive_delay_settles_on_what_all_but_one_percent_of_the_frames_needed():
    delay = AdaptiveDelay(PlayoutDelay(start_s=0.3, floor_s=0.08, ceiling_s=0.6))
    rng = np.random.default_rng(0)
    needs = [*rng.uniform(0.10, 0.14, 495), *([0.5] * 5)]  # 1 % of the frames far later (a stall)
    for need in rng.permutation(needs):
        delay.need(float(need), 1)
    assert delay.target() == pytest.approx(np.quantile(needs, 0.99) + 0.005)
    assert 0.14 < delay.target() < 0.16  # the stall's frames are left to be filled
    delay.need(0.5, 2)  # one more window that late: more than 1 % of the frames now
    assert delay.target() == pytest.approx(0.505)


def test_a_window_needs_one_frame_less_for_each_later_frame_of_it():
    delay = AdaptiveDelay(PlayoutDelay(start_s=0.3, floor_s=0.01, ceiling_s=0.6, fill_fraction=0.0, margin_s=0.0))
    delay.need(0.3, 4)
    assert list(delay._needed) == pytest.approx([0.3, 0.26, 0.22, 0.18])
    assert delay.target() == pytest.approx(0.3)


def test_the_adaptive_delay_moves_at_its_rates_and_stays_between_floor_and_ceiling():
    delay = AdaptiveDelay(PlayoutDelay(start_s=0.3, floor_s=0.1, ceiling_s=0.5))
    assert delay.at(0.0) == 0.3  # nothing needed yet: the start
    delay.need(0.02, 4)  # far less than the floor
    assert delay.at(1.0) == pytest.approx(0.25)  # falls 0.05 s per s (the avatar at 1.05x)
    assert delay.at(10.0) == pytest.approx(0.1)  # down to the floor, no further
    delay.need(2.0, 100)  # a long stall: far more than the ceiling
    assert delay.at(11.0) == pytest.approx(0.35)  # rises 0.25 s per s (the avatar at 0.75x)
    assert delay.at(12.0) == pytest.approx(0.5)  # up to the ceiling, no further
    assert delay.at(11.5) == pytest.approx(0.5)  # an earlier time changes nothing


def test_a_fixed_delay_stays_fixed_and_a_policy_out_of_order_is_refused():
    delay = AdaptiveDelay(PlayoutDelay.fixed(0.2))
    delay.need(1.0, 10)
    assert delay.at(0.0) == delay.at(100.0) == 0.2
    with pytest.raises(ValueError, match="floor"):
        PlayoutDelay(start_s=0.1, floor_s=0.2, ceiling_s=0.5)


def test_realtime_tells_the_delay_what_each_window_needed_and_a_skipped_one_would_have():
    live = RealtimeTiming(delay=PlayoutDelay(start_s=0.2, floor_s=0.01, ceiling_s=0.6, fill_fraction=0.0))
    live.observe(10.0, 0.0)
    # window of frames 4..7, done at 10.35 s: frame 4 is needed 0.35 - 3 * 0.04 = 0.23 s after its media time
    live.ran(window(7), 10.3, 10.3, 10.35)
    assert live.delay.target() == pytest.approx(0.23 + 0.005)
    assert live.skip(window(9, hop=2), now_s=10.5)  # frame 8 needed at 10 + 0.2 + 7 * 0.04 = 10.48 s: too late
    assert live.delay.target() == pytest.approx(10.5 + 0.05 - 10.0 - 7 * 0.04 + 0.005)  # now + expected
