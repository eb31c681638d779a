"""`reactdiff-trainer synth`: the corpus on disk (layout, determinism, shapes, pair structure, errors)."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from renderer.face import EMOTION_NAMES, FACE_INDEX
from trainer.cli import main
from trainer.data.react import ReactDataset
from trainer.evaluate import corpus_ceiling, load_split
from trainer.synth.corpus import (
    ANY_PERSONA,
    LISTENER_ROLE,
    MANIFEST,
    SynthConfigError,
    clip_id,
    config_from_manifest,
    neighbour_matrix,
    redraw_listeners,
    script_count,
    session_name,
    session_of,
    split_scripts,
)
from trainer.synth.espeak import find_espeak
from trainer.synth.listener import PERSONA_NAMES
from trainer.synth.portraits import pool_names
from trainer.synth.speech import fill_gaps

ARGS = ["synth", "--clips", "8", "--seconds", "10", "--seed", "3"]
FRAMES = 10 * 25 + 1


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    assert main([*ARGS, "--out", str(out), "--workers", "1"]) == 0
    return out


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32768, wav.getframerate()


@pytest.mark.slow
def test_same_seed_gives_identical_files_whatever_the_worker_count(corpus: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main([*ARGS, "--out", str(again), "--workers", "2"]) == 0
    first, second = file_hashes(corpus), file_hashes(again)
    assert len(first) == 3 * 3 * 2 * 3 + 3 * 2 + 1  # 9 sessions x 2 roles x (wav, npy, csv) + csv/npy per split + json
    assert first == second


def test_files_load_back_with_the_right_shapes(corpus: Path) -> None:
    for split in ("train", "val", "test"):
        for npy in sorted((corpus / split / "3D_FV_files").rglob("1.npy")):
            face = np.load(npy)
            assert face.shape == (FRAMES, 58) and face.dtype == np.float32 and np.isfinite(face).all()
            rel = npy.relative_to(corpus / split / "3D_FV_files").with_suffix("")
            with (corpus / split / "Emotion" / rel).with_suffix(".csv").open() as f:
                rows = list(csv.reader(f))
            assert tuple(rows[0]) == EMOTION_NAMES
            assert len(rows) == FRAMES + 1 and all(len(r) == 25 for r in rows[1:])
            assert all(len(v.split(".")[1]) == 6 for v in rows[1])
            audio, rate = read_wav((corpus / split / "Audio_files" / rel).with_suffix(".wav"))
            assert rate == 16000 and len(audio) == 10 * 16000


def test_pairs_and_neighbours_follow_the_documented_structure(corpus: Path) -> None:
    manifest = json.loads((corpus / "synth_manifest.json").read_text())
    assert manifest["counts"]["scripts"] == {"train": 1, "val": 1, "test": 1}
    assert manifest["tools"]["espeak-ng"]
    lines = (corpus / "val.csv").read_text().splitlines()
    assert lines[0] == ",speaker_path,listener_path"
    assert lines[1] == "0,Synth/g0001l0/Expert_video/1,Synth/g0001l0/Novice_video/1"
    matrix = np.load(corpus / "neighbour_emotion_val.npy")
    assert matrix.shape == (6, 6) and matrix.dtype == bool and not matrix.all()
    assert matrix[:3, :3].all() and matrix[3:, 3:].all() and not matrix[:3, 3:].any() and not matrix[3:, :3].any()
    speaker = [np.load(corpus / f"val/3D_FV_files/Synth/g0001l{i}/Expert_video/1.npy") for i in range(3)]
    listener = [np.load(corpus / f"val/3D_FV_files/Synth/g0001l{i}/Novice_video/1.npy") for i in range(3)]
    assert all(np.array_equal(speaker[0], s) for s in speaker)  # one script: the same speaker in every session
    assert not np.array_equal(listener[0], listener[1])  # different personas react differently


def test_the_dataset_reader_reads_the_corpus(corpus: Path) -> None:
    ds = ReactDataset(corpus, "test")
    assert len(ds) == 6
    sample = ds[4]  # a reversed sample: the listener speaks
    assert sample.speaker_face.shape == (FRAMES, 58) and sample.listener_emotion.shape == (FRAMES, 25)
    assert ds.neighbours().shape == (6, 6)


VIDEO_ARGS = ["synth", "--clips", "3", "--seconds", "4", "--listeners-per-speaker", "1", "--video", "--seed", "5"]


@pytest.fixture(scope="module")
def video_corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small --video corpus written three times: with 1 and 2 workers, and with the unseen portraits."""
    root = tmp_path_factory.mktemp("video")
    runs = {"a": ["--workers", "1"], "b": ["--workers", "2"], "unseen": ["--workers", "2", "--portraits", "unseen"]}
    for name, extra in runs.items():
        assert main([*VIDEO_ARGS, "--out", str(root / name), *extra]) == 0
    return {name: root / name for name in runs}


def clip_looks(corpus: Path) -> dict[Path, dict]:
    """Each distinct video of a corpus (one per speaker script, one per listener) and its look from the manifest."""
    scripts = json.loads((corpus / "synth_manifest.json").read_text())["scripts"]
    looks = {}
    for video in sorted(corpus.glob("*/Video_files/Synth/*/*/1.mp4")):
        session, role = video.parts[-3], video.parts[-2]
        entry = scripts[session[:5]]["looks"]
        looks[video] = entry["speaker"] if role == "Expert_video" else entry["listeners"][int(session[6:])]
    return looks


@pytest.mark.slow
def test_video_renders_both_faces_identically_on_every_run(video_corpora: dict[str, Path]) -> None:
    assert file_hashes(video_corpora["a"]) == file_hashes(video_corpora["b"])
    for role in ("Expert_video", "Novice_video"):
        with av.open(str(video_corpora["a"] / f"val/Video_files/Synth/g0001l0/{role}/1.mp4")) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 4 * 25 + 1 and frames[0].shape == (256, 256, 3)


@pytest.mark.slow
def test_every_clip_shows_its_own_person_and_the_tracker_finds_the_photo_faces(video_corpora: dict[str, Path]) -> None:
    from engine.tracker import FaceTracker

    manifest = json.loads((video_corpora["a"] / "synth_manifest.json").read_text())
    assert manifest["options"]["looks"] == {"pool": "train", "vector_share": 0.2, "augment": True}
    assert sorted(manifest["portraits"]) == sorted(pool_names("train"))  # each with its package, file and sha256
    assert all(len(entry["sha256"]) == 64 for entry in manifest["portraits"].values())
    looks = clip_looks(video_corpora["a"])
    assert len(looks) == 6 and len({json.dumps(look, sort_keys=True) for look in looks.values()}) == 6
    photos = [video for video, look in looks.items() if look["avatar"].startswith("photo:")]
    assert photos, "seed 5 should draw at least one portrait"
    for video, look in looks.items():
        with av.open(str(video)) as container, FaceTracker() as tracker:
            found = [
                tracker.track(f.to_ndarray(format="rgb24"), i / 25).found
                for i, f in enumerate(container.decode(video=0))
            ]
        assert len(found) == 4 * 25 + 1
        if video in photos:
            assert np.mean(found) >= 0.9, (video, look)
            assert look["avatar"].removeprefix("photo:") in pool_names("train")


@pytest.mark.slow
def test_the_unseen_pool_changes_only_the_people_in_the_videos(video_corpora: dict[str, Path]) -> None:
    train, unseen = file_hashes(video_corpora["b"]), file_hashes(video_corpora["unseen"])
    assert train.keys() == unseen.keys()
    for name, digest in train.items():
        if name.endswith((".wav", ".npy", ".csv")):
            assert unseen[name] == digest, name  # audio, faces, emotions, pairs and neighbours
    train_looks, unseen_looks = clip_looks(video_corpora["b"]), clip_looks(video_corpora["unseen"])
    for (video, a), b in zip(train_looks.items(), unseen_looks.values(), strict=True):
        assert (a["framing"], a["camera"]) == (b["framing"], b["camera"])  # the same cameras...
        if a["avatar"].startswith("photo:"):  # ... on other people
            assert b["avatar"].removeprefix("photo:") in pool_names("unseen")
            name = str(video.relative_to(video_corpora["b"]))
            assert unseen[name] != train[name]


# --- listeners react to their own speaker -------------------------------------------------------------------


def smile(face: np.ndarray) -> np.ndarray:
    return face[:, [FACE_INDEX["mouthSmileLeft"], FACE_INDEX["mouthSmileRight"]]].mean(axis=1)


def best_lagged_correlation(speaker: np.ndarray, listener: np.ndarray, max_lag: int = 25) -> float:
    """Largest Pearson correlation of listener(t + lag) with speaker(t) over lags 0..1 s (0 if either is flat)."""
    best = 0.0
    for lag in range(max_lag + 1):
        x, y = speaker[: len(speaker) - lag], listener[lag:]
        if x.std() > 1e-6 and y.std() > 1e-6:
            best = max(best, float(np.corrcoef(x, y)[0, 1]))
    return best


def speaker_pauses(audio: np.ndarray, frames: int) -> np.ndarray:
    """(T,) True where the speaker's wav is quiet (frame RMS under 10% of its loud level, syllable gaps filled)."""
    windows = np.zeros(frames * 640 + 640, np.float32)
    windows[320 : 320 + len(audio)] = audio[: len(windows) - 320]
    rms = np.sqrt(np.mean(windows[: frames * 640].reshape(frames, 640) ** 2, axis=1))
    return ~fill_gaps(rms > 0.1 * np.percentile(rms, 90), 3)


def nod_share_in_pauses(listener: np.ndarray, pauses: np.ndarray) -> float:
    """Mean squared head-pitch velocity in the pauses, relative to its mean over the whole clip."""
    velocity = np.diff(listener[:, FACE_INDEX["pitch"]], prepend=listener[0, FACE_INDEX["pitch"]]) ** 2
    return float(velocity[pauses].mean() / max(velocity.mean(), 1e-12))


def test_listeners_react_to_their_own_speaker_more_than_to_others(corpus: Path) -> None:
    speakers, listeners = {}, {}
    for session in sorted(corpus.glob("*/3D_FV_files/Synth/*")):
        split_dir, script = session.parents[2], session.name[:5]
        audio, _ = read_wav(split_dir / "Audio_files/Synth" / session.name / "Expert_video/1.wav")
        face = np.load(session / "Expert_video/1.npy")
        speakers[script] = (face, speaker_pauses(audio, len(face)))
        listeners[session.name] = np.load(session / "Novice_video/1.npy")
    scores: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for name, listener in listeners.items():
        for script, (face, pauses) in speakers.items():
            scores[name.startswith(script)].append(
                (best_lagged_correlation(smile(face), smile(listener)), nod_share_in_pauses(listener, pauses))
            )
    matched, mismatched = np.array(scores[True]), np.array(scores[False])
    assert len(matched) == 9 and len(mismatched) == 18
    assert matched[:, 0].mean() > mismatched[:, 0].mean() + 0.2  # smile mimicry follows the own speaker
    assert matched[:, 1].mean() > 1.5 * mismatched[:, 1].mean()  # nods fall in the own speaker's pauses
    assert matched[:, 1].mean() > 1.3  # ... more than in speech


def test_listeners_drawn_again_react_to_the_same_speaker_as_new_people(corpus: Path) -> None:
    config = config_from_manifest(corpus)
    assert (config.seed, config.clips, config.seconds, config.listeners_per_speaker) == (3, 8, 10.0, 3)
    script = split_scripts(script_count(config.clips, config.listeners_per_speaker))["test"][0]
    folder = corpus / "test/3D_FV_files/Synth"
    stored = [np.load(folder / session_name(script, j) / "Novice_video/1.npy") for j in range(3)]
    speaker, asked = redraw_listeners(find_espeak(), config, script, {None: 3, ANY_PERSONA: 3})
    drawn, others = asked[None], asked[ANY_PERSONA]
    assert np.array_equal(speaker, np.load(folder / session_name(script, 0) / "Expert_video/1.npy"))
    assert [d.shape for d in drawn] == [(3, FRAMES, 58)] * 3 and all(np.isfinite(d).all() for d in drawn)
    again = redraw_listeners(find_espeak(), config, script, {None: 3})[1][None]
    assert all(np.array_equal(a, b) for a, b in zip(drawn, again, strict=True))  # from the seed alone
    for own, draws in zip(stored, drawn, strict=True):  # new individuals, never the corpus's own reaction
        assert all(not np.allclose(d, own) for d in draws) and not np.allclose(draws[0], draws[1])
    assert not any(np.allclose(a, b) for a, b in zip(drawn, others, strict=True))
    other_speaker = np.load(next((corpus / "train/3D_FV_files/Synth").glob("*")) / "Expert_video/1.npy")
    own_score = np.mean([best_lagged_correlation(smile(speaker), smile(d)) for ds in drawn for d in ds])
    other_score = np.mean([best_lagged_correlation(smile(other_speaker), smile(d)) for ds in drawn for d in ds])
    assert own_score > other_score + 0.1  # they react to this speaker, as the corpus's listeners do
    with pytest.raises(ValueError, match="unknown persona 'jester': give one of reserved, nodder"):
        redraw_listeners(find_espeak(), config, script, {"jester": 1})


def test_clip_ids_name_their_script_and_listener(tmp_path: Path) -> None:
    assert session_of(clip_id(session_name(34, 2), LISTENER_ROLE)) == (34, 2)
    assert session_of("NoXI/005_2016-03-18_Paris/Expert_video/3") is None
    (tmp_path / MANIFEST).write_text('{"seed": 1, "options": {"clips": 9}}')
    with pytest.raises(SynthConfigError, match=r"synth_manifest.json: cannot read the options .*'seconds'"):
        config_from_manifest(tmp_path)


def test_the_ceiling_scores_fresh_listeners_and_refuses_a_corpus_it_did_not_write(
    corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    test = load_split(corpus, "test", "fitted", None)
    ceiling = corpus_ceiling(corpus, "test", test, draws=2, persona_draws=2)
    assert ceiling is not None and (ceiling["draws"], ceiling["persona_draws"]) == (2, 2)
    same, any_persona = ceiling["listening"]["same_persona"], ceiling["listening"]["any_persona"]
    assert same["FRCorr"] > 0 and any_persona["FRCorr"] > 0  # fresh listeners of this speaker fit it
    assert same["FRDiv"] > 0 and any_persona["FRDiv"] > same["FRDiv"]  # other personas differ more than people
    assert 0 < any_persona["coverage"] <= 1 and 0 < any_persona["precision"] <= 1
    by_persona = ceiling["listening"]["by_persona"]
    assert set(by_persona) == set(PERSONA_NAMES) and all(np.isfinite(p["FRCorr"]) for p in by_persona.values())
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    for speaker in copy.glob("test/3D_FV_files/Synth/*/Expert_video/1.npy"):
        np.save(speaker, np.load(speaker) + 0.01)  # a corpus this generator did not write
    with caplog.at_level(logging.WARNING):
        assert corpus_ceiling(copy, "test", test, draws=2, persona_draws=2) is None
    assert "is not what this generator draws" in caplog.text
    (copy / MANIFEST).unlink()  # REACT's own data: no generator to draw from
    assert corpus_ceiling(copy, "test", test, draws=2, persona_draws=2) is None


# --- options -----------------------------------------------------------------------------------------------


def test_clips_round_up_to_whole_scripts_split_70_15_15() -> None:
    assert script_count(8, 3) == 3 and script_count(3, 3) == 3 and script_count(100, 3) == 34
    splits = split_scripts(34)
    assert [len(r) for r in splits.values()] == [24, 5, 5]
    assert sorted(i for r in splits.values() for i in r) == list(range(34))
    assert [len(r) for r in split_scripts(3).values()] == [1, 1, 1]


def test_neighbour_rule_for_reversed_rows() -> None:
    matrix = neighbour_matrix([0, 0, 1])
    assert matrix.shape == (6, 6) and matrix.diagonal().all()
    assert matrix[0].tolist() == [True, True, False, False, False, False]
    assert matrix[5].tolist() == [False, False, False, False, False, True]
    assert matrix[3].tolist() == [False, False, False, True, True, False]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--clips", "2"], "--clips 2"),
        (["--seconds", "2"], "--seconds 2"),
        (["--voices", "en-us,klingon"], "unknown espeak-ng voice 'klingon'"),
        (["--voices", "en-us+nosuchvariant"], "unknown espeak-ng variant"),
        (["--listeners-per-speaker", "0"], "--listeners-per-speaker 0"),
        (["--video", "--vector-share", "1.5"], "--vector-share 1.5: give a share from 0 to 1"),
        (["--portraits", "unseen"], "--portraits: only apply to videos; add --video"),
        (["--no-augment", "--vector-share", "0"], "--vector-share, --no-augment: only apply to videos"),
    ],
)
def test_bad_options_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["synth", "--out", str(tmp_path / "c"), "--clips", "3", "--seconds", "5", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_missing_espeak_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["synth", "--out", str(tmp_path / "c"), "--clips", "3", "--seconds", "5"]) == 2
    assert "espeak-ng was not found on PATH" in capsys.readouterr().err


def test_refuses_a_non_empty_folder_without_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["synth", "--out", str(tmp_path), "--clips", "3", "--seconds", "5"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    args = ["synth", "--out", str(tmp_path), "--clips", "3", "--seconds", "5", "--workers", "1"]
    assert main([*args, "--overwrite"]) == 0
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "test.csv").is_file()


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    text = capsys.readouterr().out
    for option in ("--out", "--clips", "--seconds", "--seed", "--listeners-per-speaker", "--voices", "--video"):
        assert option in text
    for option in ("--workers", "--overwrite", "--portraits", "--vector-share", "--no-augment"):
        assert option in text
    assert "rounded up to whole speaker scripts" in text
    for name in pool_names("train") + pool_names("unseen"):
        assert name in text
