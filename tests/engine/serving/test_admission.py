"""Admission control: the load model (batching, tracking, rendering), the limits it gives, the refusal's message,
and the costs measured on this machine (a real VP8 encoder and decoder, a real face tracker)."""

from __future__ import annotations

import time

import pytest

from engine.serving.admission import (
    AdmissionError,
    Capacity,
    CapacityConfig,
    Costs,
    LoadMeter,
    Measured,
    measure_avatar_frame,
    measure_costs,
    measure_decode,
)
from engine.serving.scheduler import SchedulerConfig
from engine.serving.service import BackendSettings, InProcessService

COSTS = Costs(batch_s={1: 0.008, 2: 0.014, 16: 0.09}, threads=1, video_frame_s=0.01, avatar_frame_s=0.004)


def capacity(costs=COSTS, gather_s=0.04, **config) -> Capacity:
    return Capacity(costs, CapacityConfig(**{"cores": 2.0, **config}), hop=8, scheduler=SchedulerConfig(gather_s))


def test_batch_times_are_interpolated_between_and_extrapolated_beyond_the_measured_sizes():
    assert COSTS.batch(1) == 0.008 and COSTS.batch(2) == 0.014
    assert COSTS.batch(9) == pytest.approx(0.014 + 7 * (0.09 - 0.014) / 14)
    assert COSTS.batch(32) == pytest.approx(0.09 + 16 * (0.09 - 0.014) / 14)


def test_gathering_longer_batches_more_and_loads_the_scheduler_less():
    alone, gathered = capacity(gather_s=0.0).load(16, 0), capacity(gather_s=0.32).load(16, 0)
    assert alone.scheduler == pytest.approx(16 * 25 / 8 * 0.008)  # every window its own call
    assert gathered.scheduler == pytest.approx(25 / 8 * 0.09)  # one call of 16 per hop
    assert capacity().load(0, 0).cores == 0


def test_the_limits_follow_the_cores_tracking_and_rendering():
    cap = capacity()
    per_audio = cap.load(1, 0).cores
    assert per_audio == pytest.approx(25 / 8 * 0.008 + 30 * 0.004)
    limits = cap.limits()
    assert limits["video"] < limits["audio"]
    assert cap.fits(limits["audio"], 0) and not cap.fits(limits["audio"] + 1, 0)
    assert cap.load(limits["audio"], 0).cores <= 2.0 * 0.8 < cap.load(limits["audio"] + 1, 0).cores
    assert capacity(cores=4.0).limits()["audio"] > limits["audio"]
    assert capacity(max_sessions=3).limits() == {"audio": 3, "video": 3}


def test_a_session_over_the_limit_is_refused_with_the_limit_and_what_to_do():
    cap = capacity(max_sessions=2)
    cap.admit(1, 0, new_video=True)
    with pytest.raises(AdmissionError, match=r"server full: 2 session\(s\) running \(1 with video\).*limit 2 "
                       r"audio-only or 2 video sessions.*stop a session or start another server") as err:  # fmt: skip
        cap.admit(1, 1, new_video=False)
    assert err.value.limits == {"audio": 2, "video": 2}


def test_a_server_without_video_refuses_video_sessions_only():
    cap = capacity(video=False)
    assert cap.limits()["video"] == 0
    cap.admit(0, 0, new_video=False)
    with pytest.raises(AdmissionError, match=r'audio-only sessions .*--no-video.*"video": false'):
        cap.admit(0, 0, new_video=True)


def test_what_is_measured_now_refuses_a_session_the_model_would_admit():
    cap = capacity()
    quiet = Measured(machine_cores=0.2, process_cores=0.1, missed=0, window_s=10.0)
    cap.admit(2, 0, new_video=False, measured=quiet)
    with pytest.raises(AdmissionError, match=r"missed 3 window deadline\(s\) in the last 10 s"):
        cap.admit(2, 0, new_video=False, measured=Measured(0.2, 0.1, 3, 10.0))
    busy = Measured(machine_cores=1.2, process_cores=1.0, missed=0, window_s=10.0)  # 0.5 a session, here
    with pytest.raises(AdmissionError, match=r"machine is busy: 1.20 of 2 cores \(this server 1.00\).* needs about "
                       r"0.50 \(at most 80% may be busy\)"):  # fmt: skip
        cap.admit(2, 0, new_video=False, measured=busy)


def test_the_load_meter_sees_this_process_work_and_the_windows_missed():
    missed = [0]
    wall, cpu = time.monotonic(), time.process_time()
    meter = LoadMeter(lambda: missed[0], interval_s=0.02, window_s=5.0)
    end = cpu + 0.3
    while time.process_time() < end:  # this thread busy for 0.3 s of CPU (longer where the machine is shared)
        pass
    missed[0] = 4
    time.sleep(0.1)
    now = meter.now()
    share = (time.process_time() - cpu) / (time.monotonic() - wall)  # what this process used, seen from here
    meter.close()
    meter.close()
    assert now.process_cores == pytest.approx(share, abs=0.15) and now.process_cores > 0.1
    assert now.machine_cores >= now.process_cores - 0.1 and now.missed == 4


def test_costs_are_measured_on_this_machine(tiny_model_dir):
    seconds, key_frame = measure_avatar_frame((96, 64), frames=3)
    assert 0 < seconds < 1 and len(key_frame) > 100
    assert 0 < measure_decode((96, 64), frames=3) < 1
    with InProcessService(tiny_model_dir, BackendSettings("onnxruntime")) as service:
        costs = measure_costs(service, size=(96, 64), video=True, max_batch=4)
    assert sorted(costs.batch_s) == [1, 2, 4] and costs.threads == 1
    assert 0 < costs.batch_s[1] < costs.batch_s[4] and 0 < costs.video_frame_s < 1 and costs.avatar_frame_s > 0
