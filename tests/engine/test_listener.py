"""Who listens (engine.listener) on the tiny random-weight model exported with two named personas: the window
inputs a persona and an expressiveness become, a listener's own frames through the style graph, the checks, the
holder the inference worker reads, and a change in the middle of a stream."""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path

import msgspec
import numpy as np
import pytest

from engine.backends import create_backend
from engine.listener import (
    ANYONE,
    ListenerChoices,
    ListenerControl,
    ListenerError,
    read_reference,
)
from engine.model_dir import load_model_dir
from engine.runtime import StreamConfig, StreamEngine, WindowModel
from renderer.face import FACE_DIM, emotion_from_face, motion_energy, neutral_face
from tests.conftest import PERSONAS
from tests.engine.test_stream import FakeSource, speech


@pytest.fixture(scope="module")
def model(persona_model_dir: Path):
    return load_model_dir(persona_model_dir)


@pytest.fixture(scope="module")
def choices(model) -> ListenerChoices:
    return ListenerChoices.from_model(model)


def listener_frames(frames: int, seed: int = 0) -> np.ndarray:
    """(T, 58) a listener who nods and smiles now and then: smooth, in range, moving."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / 25
    faces = neutral_face(frames)
    faces[:, 43:45] = (0.3 + 0.3 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6)))[:, None]  # mouthSmile L/R
    faces[:, 52] = 0.1 * np.sin(2 * np.pi * 0.7 * t)  # pitch: nods
    faces[:, :52] = np.clip(faces[:, :52] + rng.uniform(0, 0.05, (frames, 52)), 0, 1)
    return faces.astype(np.float32)


def test_a_named_persona_and_expressiveness_become_the_window_inputs(model, choices):
    styles = model.style
    assert choices.names == [ANYONE, "nodder", "reserved"]
    inputs = choices.choose("nodder", 1.5).window_inputs(choices.energy_mean)
    np.testing.assert_array_equal(inputs["style"], np.float32([styles.personas["nodder"].style]))
    want = math.log(1.5 * PERSONAS["nodder"] / styles.energy_mean)  # X times the persona's own energy
    np.testing.assert_allclose(inputs["expressiveness"], [[want, 1.0]], rtol=1e-6)
    anyone = choices.choose(ANYONE, None).window_inputs(choices.energy_mean)  # as the style moves: [0, 0]
    np.testing.assert_array_equal(anyone["style"], np.float32([styles.null]))
    np.testing.assert_array_equal(anyone["expressiveness"], [[0.0, 0.0]])
    at_one = choices.choose(ANYONE, 1.0).window_inputs(choices.energy_mean)
    np.testing.assert_allclose(at_one["expressiveness"], [[0.0, 1.0]], atol=1e-7)  # anyone at 1: the corpus mean
    assert inputs["style"].dtype == inputs["expressiveness"].dtype == np.float32


def test_style_guidance_pushes_every_persona_but_anyone_from_the_personas_centre(model, persona_model_dir, tmp_path):
    import torch

    from trainer.evaluate import guided_personas, who_listens
    from trainer.train import load_model, load_personas

    np.save(tmp_path / "me.npy", listener_frames(200))
    plain = ListenerChoices.from_model(model, tmp_path / "me.npy")
    manifest = {**model.manifest, "style": {**model.manifest["style"], "guidance": 3.0}}
    pushed = ListenerChoices.from_model(dataclasses.replace(model, manifest=manifest), tmp_path / "me.npy")
    centre = (plain.personas["nodder"].style + plain.personas["reserved"].style) / 2  # the named personas' mean
    for name in ("nodder", "reserved", "me.npy"):  # the model's personas and a listener's own frames alike
        want = centre + 3.0 * (plain.personas[name].style - centre)
        np.testing.assert_allclose(pushed.personas[name].style, want, rtol=1e-5, atol=1e-5)
        assert np.abs(pushed.personas[name].style - plain.personas[name].style).max() > 0.1
    gap = np.linalg.norm(pushed.personas["nodder"].style - pushed.personas["reserved"].style)
    assert gap == pytest.approx(3 * np.linalg.norm(plain.personas["nodder"].style - plain.personas["reserved"].style))
    np.testing.assert_array_equal(pushed.personas[ANYONE].style, np.float32(model.style.null))  # no one stays so
    before = {**model.manifest, "style": {k: v for k, v in model.manifest["style"].items() if k != "guidance"}}
    older = ListenerChoices.from_model(dataclasses.replace(model, manifest=before))  # written before style guidance
    np.testing.assert_array_equal(older.personas["nodder"].style, np.float32(model.style.personas["nodder"].style))
    # The trainer's evaluation asks for the same listener as the engine does with the same style guidance.
    run = persona_model_dir.parent / "run" / "model.pt"
    trained, personas = load_model(run), load_personas(run)
    trained.cfg = dataclasses.replace(trained.cfg, style_guidance=3.0)
    with torch.no_grad():
        style, _ = who_listens(trained, 2, guided_personas(trained, personas)["nodder"])
    assert style is not None and style.shape == (2, len(centre))
    np.testing.assert_allclose(style[1], pushed.personas["nodder"].style, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("persona", "x", "phrase"),
    [
        ("thinker", None, "unknown persona 'thinker'; this model's personas: anyone, nodder, reserved"),
        ("nodder", 2.6, "expressiveness 2.6: use 0.25 to 2.5"),
        ("nodder", 0.2, "expressiveness 0.2: use 0.25 to 2.5"),
        ("nodder", float("nan"), "expressiveness nan: use 0.25 to 2.5"),
        ("x" * 500, None, "unknown persona '" + "x" * 64 + "…'"),
    ],
)
def test_a_choice_the_model_cannot_take_is_a_one_line_error(choices, persona, x, phrase):
    with pytest.raises(ListenerError) as error:
        choices.choose(persona, x)
    assert phrase in str(error.value) and "\n" not in str(error.value)


def test_a_model_without_a_style_input_takes_no_persona(model):
    version_1 = dataclasses.replace(model, manifest={k: v for k, v in model.manifest.items() if k != "style"})
    with pytest.raises(ListenerError, match=r"takes no persona or expressiveness .*format version 1"):
        ListenerChoices.from_model(version_1)


def test_a_listeners_own_frames_give_the_mean_style_of_their_stretches(model, persona_model_dir, tmp_path):
    import torch

    from trainer.train import load_model

    faces = listener_frames(250)  # two stretches of R = 100 frames, and 50 left over
    np.save(tmp_path / "me.npy", faces)
    np.save(tmp_path / "react.npy", faces[:, None])  # REACT's (T, 1, 58)
    mine = ListenerChoices.from_model(model, tmp_path / "me.npy")
    react = ListenerChoices.from_model(model, tmp_path / "react.npy")
    assert mine.names == [ANYONE, "nodder", "reserved", "me.npy"]
    style = mine.personas["me.npy"]
    np.testing.assert_array_equal(style.style, react.personas["react.npy"].style)
    assert style.energy == pytest.approx(motion_energy(faces))
    reference = np.concatenate([faces, emotion_from_face(faces)], axis=1)[:200].reshape(2, 100, -1)
    with torch.no_grad():  # the trainer's own StyleEncoder on the same stretches
        want = load_model(persona_model_dir.parent / "run" / "model.pt").style_of(torch.from_numpy(reference))
    np.testing.assert_allclose(style.style, want.mean(dim=0).numpy(), atol=1e-4)
    assert np.abs(style.style - np.asarray(model.style.null)).max() > 0.01  # someone, not anyone


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (lambda f: np.where(np.arange(len(f))[:, None] == 7, np.nan, f), "frame 7, value 0 is NaN"),
        (lambda f: f[:, :57], "squeezes to (T, 58)"),
        (lambda f: f[:99], "99 frames (4.0 s); a listener's style needs at least 100 frames (4 s at 25 fps)"),
        (lambda f: np.zeros((150, 58), np.float32), "the face never moves"),
        (lambda f: f.astype(complex), "expected a numeric array"),
        (lambda f: np.array([{"a": 1}], dtype=object), "cannot read a .npy array"),
        (lambda f: b"not an array", "cannot read a .npy array"),
    ],
)
def test_a_reference_file_the_style_cannot_come_from_is_a_one_line_error(model, tmp_path, content, phrase):
    path = tmp_path / "ref.npy"
    data = content(listener_frames(150))
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        np.save(path, data, allow_pickle=True)
    with pytest.raises(ListenerError) as error:
        ListenerChoices.from_model(model, path)
    assert phrase in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_read_reference_squeezes_reacts_layout(tmp_path):
    np.save(tmp_path / "r.npy", listener_frames(120)[None, :, :])  # (1, T, 58)
    assert read_reference(tmp_path / "r.npy", 100).shape == (120, FACE_DIM)


def test_the_holder_applies_a_change_from_the_next_window_and_reports_it(choices):
    control = ListenerControl(choices, choices.choose("nodder", None))
    heard = []
    unsubscribe = control.subscribe(heard.append)
    first = control.window_inputs(0)
    change = control.change(persona="reserved", by="room:a")
    assert control.current() is change and heard == [change] and change.frame is None  # no window used it yet
    assert control.window_inputs(8) is not first
    control.change(expressiveness=2.0, by="room:b")  # the persona stays
    control.change(expressiveness=msgspec.UNSET, by="room:b")  # nothing given: the same listener again
    with pytest.raises(ListenerError):
        control.change(persona="nobody", by="room:c")  # refused: nothing changes, nobody is told
    assert len(heard) == 3 and control.current().listener.expressiveness == 2.0
    unsubscribe()
    control.change(expressiveness=None, by="room:a")  # back to moving as the style does
    control.window_inputs(12)
    report = control.report()
    assert heard[-1] is not control.current() and report["changes_total"] == 5
    assert [(c["persona"], c["expressiveness"], c["by"], c["frame"]) for c in report["changes"]] == [
        ("nodder", None, "start", 0), ("reserved", None, "room:a", 8), ("reserved", 2.0, "room:b", None),
        ("reserved", 2.0, "room:b", None), ("reserved", None, "room:a", 12),
    ]  # fmt: skip
    assert report["persona"] == "reserved" and report["expressiveness"] is None and report["changes"][1]["t_s"] == 0.32


def test_a_window_reads_one_whole_listener_while_another_thread_changes_it(choices):
    control = ListenerControl(choices, choices.choose("nodder", 0.5))
    expected = {}  # (persona's first style value, expressiveness input) of every listener it can be
    for name in ("nodder", "reserved"):
        for x in (0.5, 2.0):
            inputs = choices.choose(name, x).window_inputs(choices.energy_mean)
            expected[float(inputs["style"][0, 0])] = expected.get(float(inputs["style"][0, 0]), set()) | {
                float(inputs["expressiveness"][0, 0])
            }
    stop = threading.Event()

    def flip() -> None:
        k = 0
        while not stop.is_set():
            control.change(persona=("nodder", "reserved")[k % 2], expressiveness=(0.5, 2.0)[k // 2 % 2], by="t")
            k += 1

    thread = threading.Thread(target=flip)
    thread.start()
    try:
        for frame in range(3000):
            inputs = control.window_inputs(frame)
            assert float(inputs["expressiveness"][0, 0]) in expected[float(inputs["style"][0, 0])]
    finally:
        stop.set()
        thread.join()
    assert control.changes_total > 10


def stream_with_a_change(model_dir: Path, change_at: int | None, **change: object) -> tuple[np.ndarray, dict]:
    """Smoothed face frames (T, 58) of 6 s of speech through the tiny model as the nodder; during window
    `change_at` (1-based) the listener changes, so the window after it is the first to use the new one."""
    backend = create_backend("onnxruntime", model_dir)
    choices = ListenerChoices.from_model(backend.model)
    control = ListenerControl(choices, choices.choose("nodder", None))
    calls = 0

    def run_window(*arrays: np.ndarray, **who: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == change_at:
            control.change(**change, by="test")  # type: ignore[arg-type]
        return backend.run_window(*arrays, **who)

    model = dataclasses.replace(WindowModel.from_backend(backend), run_window=run_window)
    engine = StreamEngine(model, FakeSource(speech(6.0)), config=StreamConfig(record=True), listener_control=control)
    engine.run()
    backend.close()
    return engine.recorded()[1][:, :FACE_DIM], control.report()


@pytest.mark.parametrize("change", [{"persona": "reserved"}, {"persona": ANYONE, "expressiveness": 2.5}])
def test_a_change_mid_stream_has_no_seam_and_the_new_listener_differs(persona_model_dir, change):
    same, _ = stream_with_a_change(persona_model_dir, None)
    faces, report = stream_with_a_change(persona_model_dir, 10, **change)
    seam = report["changes"][-1]["frame"]
    assert seam == 40  # window 11 (frames 40..43 new, hop 4) is the first with the new listener
    np.testing.assert_array_equal(faces[:seam], same[:seam])  # the same run up to the change
    assert np.abs(faces[seam:] - same[seam:]).mean() > 1e-3  # a different listener after it
    steps = np.abs(np.diff(faces, axis=0)).max(axis=1)  # (T - 1,) the largest frame-to-frame step of each frame
    across = steps[seam - 1 : seam + 4]  # into the first new frame, and through the window that joins it
    elsewhere = np.delete(steps, range(seam - 1, seam + 4))
    assert across.max() <= elsewhere.max(), (across, elsewhere.max())
