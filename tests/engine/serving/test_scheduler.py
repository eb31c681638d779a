"""The shared inference scheduler: sessions batched together get the frames they get alone; batches form as the
config says (everyone waiting, the gathering deadline, max_batch, buckets); one session's bad window or the
service's failure reach exactly the sessions concerned."""

from __future__ import annotations

import functools
import json
import shutil
import threading
import time

import numpy as np
import pytest

from engine.backends import create_backend, window_shapes
from engine.model_dir import load_model_dir
from engine.runtime import StreamConfig, StreamEngine, WindowModel
from engine.serving.scheduler import BatchRecord, BatchScheduler, SchedulerConfig, default_buckets
from engine.serving.service import BackendSettings, InferenceService, InProcessService, ServiceKind
from engine.serving.sessions import SessionSpec, persona_style, window_inputs
from tests.engine.test_stream import FakeSource, speech


class RecordingService(InferenceService):
    """Row i of the answer = a function of row i's inputs alone; records each call's batch size; may fail."""

    kind = ServiceKind.IN_PROCESS

    def __init__(self, model, *, fail=False, delay_s=0.0):
        super().__init__(model, BackendSettings())
        self.sizes: list[int] = []
        self.fail, self.delay_s = fail, delay_s

    @classmethod
    def unavailable_reason(cls):
        return None

    @property
    def backend_name(self):
        return "fake"

    def _run(self, audio, face, present, known, known_mask, noise, *who):
        self.sizes.append(len(audio))
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("the service fell over")
        w, d = self.model.window, self.model.listener_dim
        value = audio.mean(axis=(1, 2)) + noise.mean(axis=(1, 2))  # (B,)
        return np.broadcast_to(value[:, None, None], (len(audio), w, d)).astype(np.float32)


def window(model, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in window_shapes(model, 1).values()]
    arrays[2] = np.ones((1, 2), np.float32)
    return arrays


def in_threads(fns) -> list:
    """Run each fn in a thread at once; their results (or exceptions) in order."""
    results: list = [None] * len(fns)

    def call(i):
        try:
            results[i] = fns[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.fixture
def model(tiny_model_dir):
    return load_model_dir(tiny_model_dir)


def test_sessions_batched_together_get_the_frames_they_get_alone(model):
    seeds = [(0, 11), (1, 12), (2, 13)]  # (speech seed, noise seed) per session
    alone = []
    with create_backend("onnxruntime", model) as backend:
        for audio_seed, seed in seeds:
            engine = StreamEngine(WindowModel.from_backend(backend), FakeSource(speech(2.0, audio_seed)),
                                  config=StreamConfig(seed=seed, record=True))  # fmt: skip
            engine.run()
            alone.append(engine.recorded()[0])
    with InProcessService(model, BackendSettings("onnxruntime")) as service:
        scheduler = BatchScheduler(service, SchedulerConfig(gather_s=1.0))
        records: list[BatchRecord] = []
        scheduler.observers.append(records.append)
        clients = [scheduler.client() for _ in seeds]
        engines = [
            StreamEngine(WindowModel.from_model(model, client.run_window), FakeSource(speech(2.0, a)),
                         config=StreamConfig(seed=s, record=True))
            for client, (a, s) in zip(clients, seeds, strict=True)
        ]  # fmt: skip
        in_threads([e.run for e in engines])
        scheduler.close()
    assert max(r.rows for r in records) == 3  # the windows really went together
    for engine, want in zip(engines, alone, strict=True):
        np.testing.assert_allclose(engine.recorded()[0], want, atol=1e-5, rtol=0)


@pytest.fixture
def persona_model(tiny_model_dir, tmp_path):
    """The tiny model with a named persona in its manifest (an untrained model has none)."""
    root = tmp_path / "model"
    shutil.copytree(tiny_model_dir, root)
    manifest = json.loads((root / "manifest.json").read_text())
    d = manifest["d_model"]
    style = np.random.default_rng(4).standard_normal(d).round(3).tolist()
    manifest["style"]["personas"] = {"nodder": {"style": style, "energy": 1.5}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return load_model_dir(root)


def test_a_persona_reaches_the_model_through_the_scheduler_beside_a_session_without_one(persona_model):
    model, style = persona_model, persona_style(persona_model, "nodder")
    config = StreamConfig(seed=5, record=True)
    with create_backend("onnxruntime", model) as backend:
        alone = []
        for who in (style, None):
            engine = StreamEngine(WindowModel.from_model(model, functools.partial(backend.run_window, style=who)),
                                  FakeSource(speech(1.5, 2)), config=config)  # fmt: skip
            engine.run()
            alone.append(engine.recorded()[0])
    assert np.abs(alone[0] - alone[1]).max() > 1e-3  # the persona changes the reactions
    with InProcessService(model, BackendSettings("onnxruntime")) as service:
        scheduler = BatchScheduler(service, SchedulerConfig(gather_s=1.0))
        records: list[BatchRecord] = []
        scheduler.observers.append(records.append)
        engines = [
            StreamEngine(WindowModel.from_model(model, functools.partial(scheduler.client().run_window, style=who)),
                         FakeSource(speech(1.5, 2)), config=config)
            for who in (style, None)
        ]  # fmt: skip
        in_threads([e.run for e in engines])
        scheduler.close()
    assert max(r.rows for r in records) == 2
    for engine, want in zip(engines, alone, strict=True):
        np.testing.assert_allclose(engine.recorded()[0], want, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="persona 'sceptic': this model knows nodder"):
        persona_style(model, "sceptic")


def test_a_batch_runs_once_every_open_session_has_a_window_waiting(model):
    service = RecordingService(model)
    scheduler = BatchScheduler(service, SchedulerConfig(gather_s=5.0))
    clients = [scheduler.client() for _ in range(3)]
    start = time.monotonic()
    out = in_threads([lambda c=c, i=i: c.run_window(*window(model, i)) for i, c in enumerate(clients)])
    assert time.monotonic() - start < 2.0 and service.sizes == [3]
    for i, frames in enumerate(out):
        arrays = window(model, i)
        assert frames.shape == (1, model.window, model.listener_dim)
        assert frames[0, 0, 0] == pytest.approx(arrays[0].mean() + arrays[5].mean(), abs=1e-6)
    scheduler.close()


def test_a_window_waits_for_others_no_longer_than_the_gathering_time(model):
    service = RecordingService(model)
    scheduler = BatchScheduler(service, SchedulerConfig(gather_s=0.3))
    records: list[BatchRecord] = []
    scheduler.observers.append(records.append)
    first, _idle = scheduler.client(), scheduler.client()  # the second session sends nothing
    first.run_window(*window(model, 0))
    assert service.sizes == [1] and 0.29 <= records[0].waits_s[0] < 0.6
    _idle.close()  # with only one session open, nothing is waited for
    start = time.monotonic()
    first.run_window(*window(model, 1))
    assert time.monotonic() - start < 0.2
    scheduler.close()


def test_max_batch_splits_and_buckets_pad_with_rows_that_are_dropped(model):
    service = RecordingService(model, delay_s=0.2)
    scheduler = BatchScheduler(service, SchedulerConfig(gather_s=0.5, max_batch=3, buckets=(1, 4)))
    records: list[BatchRecord] = []
    scheduler.observers.append(records.append)
    clients = [scheduler.client() for _ in range(5)]
    out = in_threads([lambda c=c, i=i: c.run_window(*window(model, i)) for i, c in enumerate(clients)])
    assert sorted(r.rows for r in records) == [2, 3] and service.sizes == [4, 4]  # padded to the bucket
    for i, frames in enumerate(out):  # each session still gets its own row
        arrays = window(model, i)
        assert frames[0, 0, 0] == pytest.approx(arrays[0].mean() + arrays[5].mean(), abs=1e-6)
    scheduler.close()


def test_cuda_graph_backends_get_power_of_two_buckets_by_default():
    assert default_buckets("torch-cuda", 16) == (1, 2, 4, 8, 16)
    assert default_buckets("tensorrt", 12) == (1, 2, 4, 8, 12)
    assert default_buckets("onnxruntime", 16) == ()
    assert SchedulerConfig(max_batch=12, buckets=default_buckets("tensorrt", 12)).padded(9) == 12


def test_bad_config_is_refused_with_the_rule():
    with pytest.raises(ValueError, match="largest at least max_batch"):
        SchedulerConfig(max_batch=16, buckets=(1, 2, 8))
    with pytest.raises(ValueError, match="need gather_s >= 0"):
        SchedulerConfig(gather_s=-1)


def test_a_bad_window_fails_its_own_session_only(model):
    service = RecordingService(model)
    scheduler = BatchScheduler(service, SchedulerConfig(gather_s=0.2))
    good, bad = scheduler.client(), scheduler.client()
    broken = window(model, 1)
    broken[0][0, 0, 0] = np.nan
    out = in_threads([lambda: good.run_window(*window(model, 0)), lambda: bad.run_window(*broken)])
    assert isinstance(out[1], ValueError) and "NaN" in str(out[1])
    assert out[0].shape == (1, model.window, model.listener_dim) and service.sizes == [1]
    scheduler.close()


def test_a_failing_service_fails_every_window_of_its_batch_and_closing_fails_the_waiting_ones(model):
    scheduler = BatchScheduler(RecordingService(model, fail=True), SchedulerConfig(gather_s=5.0))
    clients = [scheduler.client() for _ in range(2)]
    out = in_threads([lambda c=c: c.run_window(*window(model, 0)) for c in clients])
    assert all(isinstance(o, RuntimeError) and "fell over" in str(o) for o in out)
    waiting = scheduler.submit(tuple(window(model, 0)[:6]))  # one of the two sessions waits for the other ...
    scheduler.close()  # ... when the scheduler closes
    with pytest.raises(RuntimeError, match="closed"):
        waiting.result(1)
    with pytest.raises(RuntimeError, match="closed"):
        clients[0].run_window(*window(model, 0))


def test_a_sessions_expressiveness_and_temperature_reach_the_model_through_the_scheduler(persona_model):
    """A session's expressiveness and temperature (reactdiff-serve's POST fields) give the frames the engine gives
    alone with the same listener and noise, beside a session that takes the defaults; out of range: one line."""
    room = "http://h/r/abcd?token=abcdefghijklmnopqrstuvwx"
    specs = [SessionSpec(room, persona="nodder", expressiveness=1.5, temperature=0.5), SessionSpec(room)]
    inputs = [window_inputs(persona_model, spec) for spec in specs]
    assert inputs[1] == {} and inputs[0]["expressiveness"][0, 1] == 1.0
    configs = [StreamConfig(seed=5, record=True, temperature=spec.temperature) for spec in specs]
    with create_backend("onnxruntime", persona_model) as backend:
        alone = []
        for who, config in zip(inputs, configs, strict=True):
            engine = StreamEngine(WindowModel.from_model(persona_model, functools.partial(backend.run_window, **who)),
                                  FakeSource(speech(1.5, 2)), config=config)  # fmt: skip
            engine.run()
            alone.append(engine.recorded()[0])
    assert np.abs(alone[0] - alone[1]).max() > 1e-3
    with InProcessService(persona_model, BackendSettings("onnxruntime")) as service:
        scheduler = BatchScheduler(service, SchedulerConfig(gather_s=1.0))
        engines = [
            StreamEngine(WindowModel.from_model(persona_model, functools.partial(scheduler.client().run_window, **who)),
                         FakeSource(speech(1.5, 2)), config=config)
            for who, config in zip(inputs, configs, strict=True)
        ]  # fmt: skip
        in_threads([e.run for e in engines])
        scheduler.close()
    for engine, want in zip(engines, alone, strict=True):
        np.testing.assert_allclose(engine.recorded()[0], want, atol=1e-5, rtol=0)
    for bad, phrase in ((SessionSpec(room, expressiveness=9.0), "expressiveness 9.0: use 0.25 to 2.5"),
                        (SessionSpec(room, temperature=2.0), "temperature 2.0: use 0 to 1.5")):  # fmt: skip
        with pytest.raises(ValueError, match=phrase):
            window_inputs(persona_model, bad)
