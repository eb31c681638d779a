"""The REACT-layout reader, on the tiny official-style corpus that conftest.py writes."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.sources.file import MAX_VIDEO_PIXELS
from renderer.face import EMOTION_DIM, FACE_DIM
from tests.fuzzing import FUZZ, LARGE_REPR, hostile_headers, media_cases, within, write_small_media
from tests.resources import no_resource_growth
from tests.trainer.conftest import (
    AUDIO_SECONDS,
    FRAMES,
    PAIRS,
    SPLIT,
    TONE_HZ,
    Layout,
    random_emotion,
    write_emotion_csv,
    write_png,
    write_wav,
)
from trainer.cli import main
from trainer.data import (
    SAMPLES_PER_FRAME,
    DatasetError,
    ReactDataset,
    load_audio,
    load_face,
    load_mean_face,
    load_video,
    random_windows,
)
from trainer.data.loaders import face_frames

M = len(PAIRS)


def test_every_layout_variation_loads_with_the_right_shapes(pristine_layout: Layout) -> None:
    ds = ReactDataset(pristine_layout.root, SPLIT)
    assert len(ds) == 2 * M
    # Pair 2 mixes 76 and 75 frames (REACT's 751 vs 750): trimmed to the shorter.
    expected_frames = [FRAMES, FRAMES, FRAMES - 1] * 2
    for index, frames in enumerate(expected_frames):
        sample = ds[index]
        assert sample.frames == frames == ds.frames(index)
        assert sample.speaker_face.shape == sample.listener_face.shape == (frames, FACE_DIM)
        assert sample.speaker_emotion.shape == sample.listener_emotion.shape == (frames, EMOTION_DIM)
        assert sample.speaker_audio.shape == (frames * SAMPLES_PER_FRAME,)
        for array in (sample.speaker_face, sample.speaker_emotion, sample.speaker_audio, sample.listener_face):
            assert array.dtype == np.float32


def test_values_match_the_files_with_the_mean_face_subtracted(pristine_layout: Layout) -> None:
    ds = ReactDataset(pristine_layout.root, SPLIT)
    for k, (speaker, listener) in enumerate(PAIRS):
        sample, frames = ds[k], ds.frames(k)
        assert (sample.speaker_id, sample.listener_id) == (speaker, listener)
        np.testing.assert_allclose(sample.speaker_face, pristine_layout.clips[speaker].face[:frames], atol=1e-5)
        np.testing.assert_allclose(sample.listener_face, pristine_layout.clips[listener].face[:frames], atol=1e-5)
        # Emotion columns are taken by position, whatever the header says (and past a pandas index column).
        np.testing.assert_allclose(sample.listener_emotion, pristine_layout.clips[listener].emotion[:frames])


def test_explicit_mean_face_replaces_the_root_one(pristine_layout: Layout, tmp_path) -> None:
    zeros = tmp_path / "zero_mean.npy"
    np.save(zeros, np.zeros(FACE_DIM, dtype=np.float32))
    raw = ReactDataset(pristine_layout.root, SPLIT, mean_face=zeros)[0].speaker_face
    centred = ReactDataset(pristine_layout.root, SPLIT)[0].speaker_face
    np.testing.assert_allclose(raw - centred, np.broadcast_to(pristine_layout.mean_face, raw.shape), atol=1e-5)


def test_both_directions_swap_roles(pristine_layout: Layout) -> None:
    ds = ReactDataset(pristine_layout.root, SPLIT)
    for k in range(M):
        forward, swapped = ds[k], ds[M + k]
        assert (swapped.speaker_id, swapped.listener_id) == (forward.listener_id, forward.speaker_id)
        np.testing.assert_array_equal(swapped.speaker_face, forward.listener_face)
        np.testing.assert_array_equal(swapped.listener_face, forward.speaker_face)
        np.testing.assert_array_equal(swapped.speaker_emotion, forward.listener_emotion)
        assert (swapped.speaker_video_path, swapped.listener_video_path) == (
            forward.listener_video_path,
            forward.speaker_video_path,
        )
    # The swapped sample's audio is the listener's own recording, not the speaker's.
    assert not np.allclose(ds[M].speaker_audio, ds[0].speaker_audio)
    assert len(ReactDataset(pristine_layout.root, SPLIT, directions="forward")) == M


def test_samples_are_fresh_copies(pristine_layout: Layout) -> None:
    ds = ReactDataset(pristine_layout.root, SPLIT)
    ds[0].speaker_face[:] = 99.0
    assert ds[0].speaker_face.max() < 99.0


def test_audio_is_resampled_to_16k_mono_and_keeps_its_pitch(pristine_layout: Layout) -> None:
    path = pristine_layout.path("Audio_files", PAIRS[1][0], ".wav")  # 44.1 kHz stereo: 0.6 and 0.2 tones
    audio = load_audio(path)
    assert audio.dtype == np.float32
    assert abs(audio.size - AUDIO_SECONDS * 16000) <= 1
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * 16000 / audio.size == pytest.approx(TONE_HZ, abs=1.0)
    assert np.abs(audio[1000:-1000]).max() == pytest.approx(0.4, abs=0.01)  # channels averaged


def test_png_folder_frames_come_in_numeric_order(pristine_layout: Layout) -> None:
    ds = ReactDataset(pristine_layout.root, SPLIT)
    video = ds.video_frames(1)  # a PNG folder 1.png … 76.png; frame k is gray level 3k
    assert video.shape == (FRAMES, 8, 8, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video[:, 0, 0, 0], 3 * np.arange(1, FRAMES + 1))
    assert ds.video_frames(M + 1, who="listener").shape == video.shape  # the same clip, roles swapped


def test_mp4_video_decodes_to_rgb_frames(pristine_layout: Layout) -> None:
    ds = ReactDataset(pristine_layout.root, SPLIT)
    video = ds.video_frames(0)
    assert video.shape == (FRAMES, 32, 32, 3) and video.dtype == np.uint8
    np.testing.assert_allclose(video[:, 16, 16, 0], 3 * np.arange(1, FRAMES + 1), atol=6)  # lossy H.264
    with pytest.raises(DatasetError, match="Novice_video/1: no video"):
        ds.video_frames(0, who="listener")


def test_random_windows_are_aligned_slices_of_their_sample(pristine_layout: Layout) -> None:
    ds = ReactDataset(pristine_layout.root, SPLIT)
    window = 20
    windows = list(random_windows(ds, window, 30, np.random.default_rng(0)))
    assert len(windows) == 30
    for w in windows:
        sample, frames = ds[w.index], slice(w.start, w.start + window)
        np.testing.assert_array_equal(w.speaker_face, sample.speaker_face[frames])
        np.testing.assert_array_equal(w.listener_face, sample.listener_face[frames])
        np.testing.assert_array_equal(w.listener_emotion, sample.listener_emotion[frames])
        audio = sample.speaker_audio[w.start * SAMPLES_PER_FRAME : (w.start + window) * SAMPLES_PER_FRAME]
        np.testing.assert_array_equal(w.speaker_audio, audio)
        assert w.speaker_audio.shape == (window * SAMPLES_PER_FRAME,)


def test_random_windows_cover_every_sample_and_start(pristine_layout: Layout) -> None:
    ds = ReactDataset(pristine_layout.root, SPLIT)
    window = FRAMES - 5  # starts 0..5 (0..4 on the 75-frame pair)
    windows = list(random_windows(ds, window, 400, np.random.default_rng(1)))
    assert {w.index for w in windows} == set(range(len(ds)))
    assert {w.start for w in windows} == set(range(6))
    assert all(w.start + window <= ds.frames(w.index) for w in windows)


def test_window_longer_than_a_clip_is_an_error(pristine_layout: Layout) -> None:
    ds = ReactDataset(pristine_layout.root, SPLIT)
    with pytest.raises(DatasetError, match=r"window of 76 frames .*\(RECOLA/group-1/P25/1: 75 frames\)"):
        random_windows(ds, FRAMES, 1, np.random.default_rng(0))


def test_neighbour_matrix_in_both_directions_and_forward(pristine_layout: Layout) -> None:
    written = pristine_layout.neighbours != 0
    np.testing.assert_array_equal(ReactDataset(pristine_layout.root, SPLIT).neighbours(), written)
    forward = ReactDataset(pristine_layout.root, SPLIT, directions="forward").neighbours()
    np.testing.assert_array_equal(forward, written[:M, :M])
    assert forward.dtype == np.bool_


def test_neighbour_matrix_of_the_wrong_size_or_absent_is_an_error(layout: Layout) -> None:
    path = layout.root / f"neighbour_emotion_{SPLIT}.npy"
    np.save(path, np.eye(4))
    ds = ReactDataset(layout.root, SPLIT)
    with pytest.raises(DatasetError, match=r"neighbour_emotion_val\.npy: shape \(4, 4\), expected \(6, 6\)"):
        ds.neighbours()
    path.unlink()
    with pytest.raises(DatasetError, match=r"neighbour_emotion_val\.npy: missing"):
        ds.neighbours()


# --- bad input ------------------------------------------------------------------------------------------


def test_missing_file_is_an_error_naming_it(layout: Layout) -> None:
    missing = layout.path("Emotion", PAIRS[1][1], ".csv")
    missing.unlink()
    with pytest.raises(DatasetError, match=rf"{re.escape(str(missing))}: missing \(pair 1 of .*val\.csv\)"):
        ReactDataset(layout.root, SPLIT)


def test_listener_audio_is_needed_only_for_both_directions(layout: Layout) -> None:
    layout.path("Audio_files", PAIRS[0][1], ".wav").unlink()
    assert len(ReactDataset(layout.root, SPLIT, directions="forward")) == M
    with pytest.raises(DatasetError, match=r"Novice_video/1\.wav: missing"):
        ReactDataset(layout.root, SPLIT)


def test_lenient_mode_skips_counts_and_reports(layout: Layout, caplog: pytest.LogCaptureFixture) -> None:
    missing = layout.path("3D_FV_files", PAIRS[0][0], ".npy")
    missing.unlink()
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        ds = ReactDataset(layout.root, SPLIT, strict=False)
    assert len(ds) == 2 * (M - 1)
    assert [path for path, _ in ds.skipped] == [missing]
    assert "skipped 1 of 3 pairs" in caplog.text
    assert ds[0].speaker_id == PAIRS[1][0]
    # The neighbour matrix follows: rows and columns of the skipped pair are dropped.
    keep = [1, 2, 4, 5]
    np.testing.assert_array_equal(ds.neighbours(), layout.neighbours[np.ix_(keep, keep)] != 0)


def test_lenient_preload_drops_pairs_whose_contents_are_bad(layout: Layout) -> None:
    np.save(layout.path("3D_FV_files", PAIRS[2][1], ".npy"), np.zeros((FRAMES, 57)))
    ds = ReactDataset(layout.root, SPLIT, strict=False)
    ds.preload()
    assert len(ds) == 2 * (M - 1)
    assert "P26/1.npy: expected 3DMM coefficients" in ds.skipped[0][1]
    with pytest.raises(DatasetError, match=r"P26/1\.npy: expected 3DMM coefficients .* got shape \(76, 57\)"):
        ReactDataset(layout.root, SPLIT).preload()


def test_wrong_emotion_column_count_names_the_file(layout: Layout) -> None:
    path = layout.path("Emotion", PAIRS[0][0], ".csv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    with pytest.raises(
        DatasetError, match=rf"{re.escape(str(path))}: expected 25 columns, got 24 \(REACT emotion files have 15 AUs"
    ):
        ReactDataset(layout.root, SPLIT)[0]


def test_nan_in_npy_names_the_file_and_frame(layout: Layout) -> None:
    path = layout.path("3D_FV_files", PAIRS[0][1], ".npy")
    face = np.load(path)
    face[5, 3] = np.nan
    np.save(path, face)
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}: frame 5, value 3 is NaN"):
        ReactDataset(layout.root, SPLIT)[0]


def test_misaligned_lengths_name_the_files(layout: Layout) -> None:
    path = layout.path("Emotion", PAIRS[0][1], ".csv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:61]) + "\n")  # 60 frames against 76
    with pytest.raises(DatasetError, match=rf"differ by 16 .*listener emotion {re.escape(str(path))}: 60 frames"):
        ReactDataset(layout.root, SPLIT)[0]


def test_audio_too_short_names_the_file(layout: Layout) -> None:
    path = layout.path("Audio_files", PAIRS[0][0], ".wav")
    shutil.copy(layout.root / "mean_face.npy", path)  # not audio at all
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}: cannot decode audio"):
        ReactDataset(layout.root, SPLIT)[0]
    write_wav(path, np.zeros(16000 * 2), 16000)  # 2 s against 76 frames (3.04 s)
    with pytest.raises(
        DatasetError, match=rf"{re.escape(str(path))}: the audio lasts 2.000 s but the clip's 76 frames last 3.040 s"
    ):
        ReactDataset(layout.root, SPLIT)[0]


def test_png_gap_names_the_folder_and_the_frame(layout: Layout) -> None:
    folder = layout.path("Video_files", PAIRS[1][0])
    (folder / "10.png").unlink()
    with pytest.raises(DatasetError, match=rf"{re.escape(str(folder))}: frame 10.png is missing"):
        load_video(folder)
    write_png(folder / "10.png", np.zeros((8, 8, 3), np.uint8))
    assert load_video(folder).shape == (FRAMES, 8, 8, 3)


@pytest.mark.parametrize("shape", [(750, 1, 58), (751, 1, 58), (1, 751, 58), (751, 58, 1), (1, 750, 1, 58), (1, 58)])
def test_face_arrays_that_squeeze_to_t_by_58_are_read(tmp_path, shape) -> None:
    path = tmp_path / "clip.npy"
    values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    np.save(path, values)
    frames = values.size // FACE_DIM
    np.testing.assert_array_equal(load_face(path), values.reshape(frames, FACE_DIM))
    assert face_frames(path) == frames


@pytest.mark.parametrize(
    "shape", [(750, 57), (750, 2, 58), (2, 750, 58), (58, 750), (0, 58), (0, 1, 58), (750,), (1,), ()]
)
def test_face_array_of_another_shape_names_the_file_and_the_shape(tmp_path, shape) -> None:
    path = tmp_path / "clip.npy"
    np.save(path, np.zeros(shape, dtype=np.float32))
    expected = rf"{re.escape(str(path))}: expected 3DMM coefficients .* squeezes to \(T, 58\) .* got shape "
    expected += re.escape(str(shape))
    with pytest.raises(DatasetError, match=expected):
        load_face(path)
    with pytest.raises(DatasetError, match=expected):
        face_frames(path)


def test_nan_in_a_t_1_58_array_names_the_frame(tmp_path) -> None:
    path = tmp_path / "clip.npy"
    face = np.zeros((751, 1, FACE_DIM), dtype=np.float32)
    face[700, 0, 4] = np.nan
    np.save(path, face)
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}: frame 700, value 4 is NaN"):
        load_face(path)


def test_mean_face_with_singleton_axes_is_read_and_another_shape_is_an_error(tmp_path) -> None:
    path = tmp_path / "mean_face.npy"
    mean = np.arange(FACE_DIM, dtype=np.float32)
    np.save(path, mean.reshape(1, 1, FACE_DIM))
    np.testing.assert_array_equal(load_mean_face(path), mean)
    np.save(path, mean.reshape(2, 29))
    with pytest.raises(
        DatasetError, match=r"mean_face\.npy: a mean face holds 58 values, got an array of shape \(2, 29\)"
    ):
        load_mean_face(path)


def write_official_clip(layout: Layout, clip_id: str, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Replace a clip's 3DMM array by a (T, 1, 58) one as REACT ships it, with a T-frame emotion CSV and audio."""
    face = rng.normal(0.0, 0.2, (frames, 1, FACE_DIM)).astype(np.float32) + layout.mean_face
    np.save(layout.path("3D_FV_files", clip_id, ".npy"), face)
    write_emotion_csv(layout.path("Emotion", clip_id, ".csv"), random_emotion(rng, frames))
    write_wav(layout.path("Audio_files", clip_id, ".wav"), rng.uniform(-0.3, 0.3, frames * SAMPLES_PER_FRAME), 16000)
    return face[:, 0] - layout.mean_face


def test_official_t_1_58_arrays_of_750_and_751_frames_make_a_sample(layout: Layout) -> None:
    rng = np.random.default_rng(3)
    speaker = write_official_clip(layout, PAIRS[0][0], 751, rng)
    listener = write_official_clip(layout, PAIRS[0][1], 750, rng)
    ds = ReactDataset(layout.root, SPLIT)
    assert ds.frames(0) == ds.frames(M) == 750
    sample, swapped = ds[0], ds[M]
    assert sample.speaker_face.shape == sample.listener_face.shape == (750, FACE_DIM)
    np.testing.assert_allclose(sample.speaker_face, speaker[:750], atol=1e-5)
    np.testing.assert_allclose(sample.listener_face, listener, atol=1e-5)
    np.testing.assert_array_equal(swapped.listener_face, sample.speaker_face)
    assert sample.speaker_audio.shape == (750 * SAMPLES_PER_FRAME,)


def test_blank_lines_in_an_emotion_csv_are_skipped_as_the_frame_count_skips_them(layout: Layout) -> None:
    path = layout.path("Emotion", PAIRS[0][0], ".csv")
    path.write_text(path.read_text() + "\n   \n\t\n")
    ds = ReactDataset(layout.root, SPLIT)
    assert ds[0].speaker_emotion.shape == (ds.frames(0), EMOTION_DIM) == (FRAMES, EMOTION_DIM)


def test_pairs_csv_without_the_path_columns_is_an_error(layout: Layout) -> None:
    csv_path = layout.root / f"{SPLIT}.csv"
    csv_path.write_text("a,b\n0,x\n")
    with pytest.raises(
        DatasetError, match=rf"{re.escape(str(csv_path))}: the header must name columns speaker_path and listener_path"
    ):
        ReactDataset(layout.root, SPLIT)


def test_video_a_frame_short_is_padded_and_far_off_is_an_error(layout: Layout) -> None:
    folder = layout.path("Video_files", PAIRS[1][0])
    (folder / f"{FRAMES}.png").unlink()  # 75 frames against 76
    video = ReactDataset(layout.root, SPLIT).video_frames(1)
    assert video.shape[0] == FRAMES
    np.testing.assert_array_equal(video[-1], video[-2])
    for k in range(FRAMES - 10, FRAMES):
        (folder / f"{k}.png").unlink()
    with pytest.raises(
        DatasetError, match=rf"{re.escape(str(folder))}: 65 video frames, but the sample's arrays hold 76"
    ):
        ReactDataset(layout.root, SPLIT).video_frames(1)


@pytest.mark.slow
def test_reads_a_synthetic_corpus(tmp_path) -> None:
    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "--clips", "3", "--seconds", "4", "--seed", "0", "--video"]) == 0
    frames = 4 * 25 + 1
    for split in ("train", "val", "test"):
        ds = ReactDataset(out, split)
        m = ds.num_pairs
        assert len(ds) == 2 * m and ds.neighbours().shape == (2 * m, 2 * m)
        assert ds.neighbours().diagonal().all()
        for index in range(len(ds)):
            sample = ds[index]
            assert sample.speaker_face.shape == (frames, FACE_DIM)
            assert sample.listener_emotion.shape == (frames, EMOTION_DIM)
            assert sample.speaker_audio.shape == (frames * SAMPLES_PER_FRAME,)
            role = "Expert_video" if index < m else "Novice_video"  # the roles swap in the second half
            assert sample.speaker_id.startswith("Synth/") and sample.speaker_id.endswith(f"{role}/1")
        np.testing.assert_array_equal(ds[m].speaker_face, ds[0].listener_face)
    assert ds.video_frames(0, who="listener").shape == (frames, 256, 256, 3)
    window = next(random_windows(ds, 50, 1, np.random.default_rng(0)))
    assert window.speaker_audio.shape == (50 * SAMPLES_PER_FRAME,)


# --- damaged and hostile media (property-based) ---------------------------------------------------------


@pytest.fixture(scope="module")
def small_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return write_small_media(tmp_path_factory.mktemp("small-media"))


def check_readers(path: Path, reader: str) -> None:
    """Read `path` with one of the trainer's media readers: sane arrays, or a DatasetError naming the file."""
    try:
        if reader == "audio":
            audio = load_audio(path)
            assert audio.dtype == np.float32 and audio.size > 0 and np.abs(audio).max() <= 1.0
        else:
            folder = path.parent / "frames"  # a PNG folder of one frame goes through the image reader
            if reader == "image":
                folder.mkdir(exist_ok=True)
                shutil.copy(path, folder / "1.png")
            video = load_video(folder if reader == "image" else path)
            assert video.dtype == np.uint8 and video.ndim == 4 and video.shape[1] * video.shape[2] <= MAX_VIDEO_PIXELS
    except DatasetError as exc:
        assert str(path.parent) in str(exc) and "\n" not in str(exc), exc


READERS = st.sampled_from(["audio", "video", "image"])


@pytest.mark.filterwarnings(LARGE_REPR)
def test_damaged_or_hostile_media_are_a_dataset_error_or_read(small_media: dict[str, bytes], tmp_path: Path) -> None:
    """1,000 damaged files of eight formats and headers claiming huge frames or odd audio, through load_audio,
    load_video on a file and load_video on a one-frame PNG folder."""

    @FUZZ
    @given(st.one_of(media_cases(small_media), hostile_headers()), READERS)
    def check(case: tuple[str, bytes], reader: str) -> None:
        suffix, data = case
        path = tmp_path / f"case{suffix}"
        path.write_bytes(data)
        within(lambda: check_readers(path, reader))

    with no_resource_growth():
        check()


def test_a_png_frame_that_holds_no_picture_names_the_file(small_media: dict[str, bytes], tmp_path: Path) -> None:
    # An mp3 saved as 1.png has no video stream: that was an IndexError from container.decode(video=0).
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "1.png").write_bytes(small_media[".mp3"])
    with pytest.raises(DatasetError, match=r"frames/1\.png: no video stream that this can decode"):
        load_video(folder)
