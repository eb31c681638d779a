"""Tracked speaker faces: the engine's tracker re-extracts training speaker faces from the corpus videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.runtime.timelines import SpeakerTimeline, TrackedFace
from engine.tracker import faces_per_frame
from engine.windows import WindowPlan, window_present
from renderer.face import FACE_DIM, FACE_INDEX
from trainer.cli import main as trainer_main
from trainer.config import ConfigError, config_from_dict
from trainer.data import ReactDataset
from trainer.data.loaders import DatasetError
from trainer.data.tracked import TrackCache, track_videos
from trainer.track_command import mean_correlation


@pytest.fixture(scope="module")
def video_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tracked") / "data"
    code = trainer_main(["synth", "--out", str(root), "--clips", "6", "--seconds", "4", "--seed", "5", "--video"])
    assert code == 0
    return root


def test_offline_frames_get_the_faces_the_live_timeline_gives_them():
    rng = np.random.default_rng(0)
    times = np.arange(40) / 30.0 + 0.05  # 30 fps video that starts 50 ms in, off the 40 ms grid
    faces = rng.random((40, FACE_DIM)).astype(np.float32)
    found = rng.random(40) > 0.2
    found[8:20] = False  # 400 ms without a face: some windows have none
    offline, offline_found = faces_per_frame(times, faces, found, 30)

    live = SpeakerTimeline(8, has_audio=True, has_video=True)
    presence = []
    live.add_audio(np.zeros((30, 57), np.float32), np.zeros(30))
    for t, face, ok in zip(times, faces, found, strict=True):
        live.add_face(TrackedFace(float(t), face, bool(ok), 0.0))
    for end in range(7, 30, 8):
        plan = WindowPlan(end=end, window=8, hop=8)
        inputs = live.window_inputs(0, plan)
        np.testing.assert_array_equal(inputs.face[0], offline[end - 7 : end + 1])
        offline_present = window_present(np.ones((1, 2), np.float32), offline_found[None], plan)
        np.testing.assert_array_equal(inputs.present, offline_present)  # the same face presence as training
        presence.append(float(inputs.present[0, 1]))
    assert presence == [1.0, 0.0, 1.0]
    assert not offline_found[0] and np.all(offline[0] == 0)  # frame 0 ends before the first video frame's slot
    np.testing.assert_array_equal(offline[1], faces[0])


def test_results_out_of_media_time_order_are_refused():
    with pytest.raises(ValueError, match="media-time order"):
        faces_per_frame(np.array([0.2, 0.1]), np.zeros((2, FACE_DIM), np.float32), np.ones(2, bool), 10)


@pytest.mark.slow
def test_track_command_caches_faces_that_follow_the_speaker(video_corpus: Path, capsys: pytest.CaptureFixture[str]):
    args = ["track", "--data", str(video_corpus), "--splits", "test", "--no-progress"]
    assert trainer_main([*args, "--workers", "1"]) == 0
    report = json.loads(capsys.readouterr().out)["test"]
    assert report["videos_tracked"] >= 2 and report["face_found"] > 0.95
    assert report["mean_correlation"] > 0.2  # the tracker recovers the drawn motion, not noise

    fitted = ReactDataset(video_corpus, "test")
    tracked = ReactDataset(video_corpus, "test", speaker_faces="tracked")
    a, b = fitted[0], tracked[0]
    assert b.speaker_face.shape == a.speaker_face.shape and np.isfinite(b.speaker_face).all()
    assert not np.allclose(a.speaker_face, b.speaker_face)  # it is not the corpus array under another name
    np.testing.assert_array_equal(a.listener_face, b.listener_face)  # listener targets stay the corpus's
    jaw = FACE_INDEX["jawOpen"]
    assert np.corrcoef(a.speaker_face[:, jaw], b.speaker_face[:, jaw])[0, 1] > 0.5

    # Everything is cached now: nothing is tracked again.
    assert tracked.track(progress=False) == 0
    assert trainer_main(args) == 0
    assert json.loads(capsys.readouterr().out)["test"]["videos_tracked"] == 0


@pytest.mark.slow
def test_an_edited_video_is_tracked_again_not_served_stale(video_corpus: Path, tmp_path: Path):
    root = tmp_path / "copy"
    shutil.copytree(video_corpus, root, ignore=shutil.ignore_patterns("tracked_faces"))
    dataset = ReactDataset(root, "test", speaker_faces="tracked")
    video = dataset.clips(0)[0].video
    assert video is not None and dataset.tracked is not None
    assert track_videos([video], dataset.tracked, progress=False) == 1
    other = dataset.clips(len(dataset) - 1)[0].video
    assert other is not None and other.read_bytes() != video.read_bytes()
    shutil.copyfile(other, video)  # the user replaced the video
    fresh = TrackCache(root / "tracked_faces")
    assert not fresh.has(video)
    with pytest.raises(DatasetError, match="reactdiff-trainer track"):
        fresh.load(video)


def test_a_speaker_without_video_is_a_clear_error(video_corpus: Path, tmp_path: Path):
    root = tmp_path / "novideo"
    shutil.copytree(video_corpus, root, ignore=shutil.ignore_patterns("tracked_faces", "Video_files"))
    dataset = ReactDataset(root, "test", speaker_faces="tracked")
    with pytest.raises(DatasetError, match=r"no video .* to track"):
        dataset.track(progress=False)
    with pytest.raises(DatasetError, match="use the fitted 3D_FV faces"):
        dataset[0]


def test_speaker_faces_setting_is_checked():
    assert config_from_dict({"train": {"speaker_faces": "tracked"}}).train.speaker_faces == "tracked"
    with pytest.raises(ConfigError, match="choose fitted or tracked"):
        config_from_dict({"train": {"speaker_faces": "mediapipe"}})
    with pytest.raises(ValueError, match="speaker_faces"):
        ReactDataset(Path("."), "test", speaker_faces="both")  # type: ignore[arg-type]


def test_mean_correlation_ignores_still_dimensions():
    t = np.linspace(0, 6, 100)
    a = np.zeros((100, 3), np.float32)
    a[:, 0] = np.sin(t)
    b = a.copy()
    b[:, 1] = np.cos(t)  # moves in b only
    assert mean_correlation(a, b) == pytest.approx(1.0)
    assert np.isnan(mean_correlation(np.zeros((10, 2), np.float32), np.zeros((10, 2), np.float32)))


@pytest.mark.slow
def test_a_stop_while_tracking_keeps_every_video_done_and_the_next_run_tracks_the_rest(
    video_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import threading

    root = tmp_path / "copy"
    shutil.copytree(video_corpus, root, ignore=shutil.ignore_patterns("tracked_faces"))
    dataset = ReactDataset(root, "train", speaker_faces="tracked")
    assert dataset.tracked is not None
    videos = {dataset.tracked.path(v).name for v in dataset.speaker_videos()}
    assert len(videos) >= 3
    stop = threading.Event()
    store = TrackCache.store

    def store_then_stop(self: TrackCache, video: Path, result: dict) -> None:
        store(self, video, result)
        stop.set()  # Ctrl-C right after the first video is stored

    monkeypatch.setattr(TrackCache, "store", store_then_stop)
    with pytest.raises(KeyboardInterrupt):
        dataset.track(workers=2, progress=False, stop=stop)
    monkeypatch.setattr(TrackCache, "store", store)
    kept = {p.name for p in dataset.tracked.folder.glob("*.npz")}
    assert 1 <= len(kept) <= 2 < len(videos) and kept <= videos  # the one done, and the one running when asked
    assert dataset.track(workers=2, progress=False) == len(videos) - len(kept)


@pytest.mark.slow
def test_eval_on_tracked_faces_scores_mime_on_what_the_model_sees_too(
    video_corpus: Path, tiny_run: Path, tmp_path: Path
):
    out = tmp_path / "eval.json"
    args = ["eval", "--run", str(tiny_run), "--data", str(video_corpus), "--json", str(out), "--predictions", "2",
            "--speaker-faces", "tracked"]  # fmt: skip
    assert trainer_main(args) == 0
    result = json.loads(out.read_text())
    mime, seen = result["baselines"]["mime"], result["baselines"]["mime_tracked"]
    assert seen["FRCorr"] != mime["FRCorr"]  # the tracker's view of the speaker, not the corpus's own numbers
    assert seen["FRDiv"] == 0  # still one copy for every prediction
    halves = result["directions"]
    assert (halves["listening"]["baseline mime (tracked)"] + halves["swapped"]["baseline mime (tracked)"]) / 2 == (
        pytest.approx(seen["FRCorr"], rel=1e-6)
    )
    assert "| baseline mime_tracked |" in out.with_suffix(".md").read_text()
