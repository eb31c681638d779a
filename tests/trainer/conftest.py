"""A tiny corpus in the official REACT layout, written with numpy, `wave` and PyAV, for the dataset tests.

Three val pairs of ~3 s clips that cover the layout's variations: 16 kHz mono and 44.1 kHz stereo wavs, an mp4
and PNG-folder videos, a (1, T, 58) npy, 76 vs 75 frames (like REACT's 751 vs 750), an emotion CSV with a pandas
index column, a mean face, and a (6, 6) neighbour matrix.

Also: every trainer test caches portraits (trainer.synth.portraits) and photo-avatar preparations in a folder of
the test session's own, never in the user's ~/.cache (`portrait_cache`).
"""

from __future__ import annotations

import csv
import shutil
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from numpy.typing import NDArray

from renderer.face import FACE_DIM, FPS


@pytest.fixture(scope="session", autouse=True)
def portrait_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """$XDG_CACHE_HOME of the session (worker processes inherit it): portraits are made and prepared once here."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


SPLIT = "val"
FRAMES = 3 * FPS + 1  # 76, as the synthetic corpus writes seconds * 25 + 1
AUDIO_SECONDS = 3.0
TONE_HZ = 440.0
# Official files spell the header their own way; the reader maps columns by position.
OFFICIAL_HEADER = [
    *(f"AU{n}" for n in (1, 2, 4, 6, 7, 9, 10, 12, 14, 15, 17, 23, 24, 25, 26)),
    "valence", "arousal", "Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger", "Contempt",
]  # fmt: skip


@dataclass
class Clip:
    """What the builder wrote for one person's clip, as the reader should return it."""

    clip_id: str
    face: NDArray[np.float32]  # (T, 58), mean face already subtracted
    emotion: NDArray[np.float32]  # (T, 25)


@dataclass
class Layout:
    root: Path
    pairs: list[tuple[str, str]]
    clips: dict[str, Clip]
    mean_face: NDArray[np.float32]
    neighbours: NDArray[np.float32]  # (6, 6) as written

    def path(self, modality: str, clip_id: str, suffix: str = "") -> Path:
        return self.root / SPLIT / modality / f"{clip_id}{suffix}"


PAIRS = [
    ("NoXI/001_2016-03-17_Paris/Expert_video/1", "NoXI/001_2016-03-17_Paris/Novice_video/1"),
    ("NoXI/002_2016-03-17_Paris/Expert_video/3", "NoXI/002_2016-03-17_Paris/Novice_video/3"),
    ("RECOLA/group-1/P25/1", "RECOLA/group-1/P26/1"),
]


def write_wav(path: Path, audio: NDArray[np.floating], rate: int) -> None:
    """Write (samples,) or (samples, channels) floats in [-1, 1] as 16-bit PCM."""
    frames = audio.reshape(len(audio), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(frames.shape[1])
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(np.round(frames * 32767).astype("<i2").tobytes())


def tone(rate: int, seconds: float, hz: float = TONE_HZ, amplitude: float = 0.5) -> NDArray[np.float64]:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * hz * t)


def write_png(path: Path, image: NDArray[np.uint8]) -> None:
    """Write one (H, W, 3) uint8 image as a PNG with PyAV."""
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.height, stream.width = image.shape[:2]
        stream.pix_fmt = "rgb24"
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def write_png_folder(folder: Path, frames: NDArray[np.uint8]) -> None:
    """Frames as `1.png … N.png`."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, image in enumerate(frames, start=1):
        write_png(folder / f"{k}.png", image)


def write_mp4(path: Path, frames: NDArray[np.uint8]) -> None:
    """(N, H, W, 3) uint8 frames as a 25 fps H.264 mp4."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def gray_frames(count: int, size: int, step: int) -> NDArray[np.uint8]:
    """Uniform gray frames whose level is step * (frame number, from 1), so the order can be read back."""
    levels = (np.arange(1, count + 1) * step).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, size, size, 3)).copy()


def write_emotion_csv(path: Path, emotion: NDArray[np.float32], *, index_column: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(([""] if index_column else []) + OFFICIAL_HEADER)
        for t, row in enumerate(emotion):
            writer.writerow(([t] if index_column else []) + [f"{v:.6f}" for v in row])


def random_emotion(rng: np.random.Generator, frames: int) -> NDArray[np.float32]:
    aus = (rng.random((frames, 15)) < 0.3).astype(np.float32)
    valence_arousal = rng.uniform(-1, 1, (frames, 2))
    logits = rng.normal(size=(frames, 8))
    expressions = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    emotion = np.concatenate([aus, valence_arousal, expressions], axis=1)
    return np.round(emotion, 6).astype(np.float32)  # what survives the CSV's 6 decimals


def write_clip(
    layout: Layout, clip_id: str, rng: np.random.Generator, *, frames: int = FRAMES, leading_axis: bool = False
) -> None:
    """Write a clip's 3DMM npy (raw: face + mean face) and emotion CSV; record what the reader should return."""
    face = rng.normal(0.0, 0.2, (frames, FACE_DIM)).astype(np.float32)
    raw = face + layout.mean_face
    npy = layout.path("3D_FV_files", clip_id, ".npy")
    npy.parent.mkdir(parents=True, exist_ok=True)
    np.save(npy, raw[None] if leading_axis else raw)
    emotion = random_emotion(rng, frames)
    write_emotion_csv(layout.path("Emotion", clip_id, ".csv"), emotion, index_column=clip_id.endswith("Novice_video/3"))
    layout.clips[clip_id] = Clip(clip_id, raw - layout.mean_face, emotion)


def build_layout(root: Path) -> Layout:
    """Write the tiny official-style corpus under `root` (see the module docstring)."""
    rng = np.random.default_rng(7)
    mean_face = rng.normal(0.0, 1.0, FACE_DIM).astype(np.float32)
    neighbours = (rng.random((6, 6)) < 0.4).astype(np.float32)
    np.fill_diagonal(neighbours, 1.0)
    layout = Layout(root, PAIRS, {}, mean_face, neighbours)
    (root / SPLIT).mkdir(parents=True)
    np.save(root / "mean_face.npy", mean_face[None])  # (1, 58), as FaceVerse ships it
    np.save(root / f"neighbour_emotion_{SPLIT}.npy", neighbours)
    with (root / f"{SPLIT}.csv").open("w") as file:
        file.write(",speaker_path,listener_path\n")
        file.writelines(f"{i},{s},{li}\n" for i, (s, li) in enumerate(PAIRS))
    for speaker, listener in PAIRS[:2]:
        write_clip(layout, speaker, rng)
        write_clip(layout, listener, rng)
    write_clip(layout, PAIRS[2][0], rng, leading_axis=True)
    write_clip(layout, PAIRS[2][1], rng, frames=FRAMES - 1)  # 76 vs 75 frames, like 751 vs 750
    _write_media(layout, rng)
    return layout


def _write_media(layout: Layout, rng: np.random.Generator) -> None:
    for speaker, listener in PAIRS:
        for clip_id in (speaker, listener):
            write_wav(layout.path("Audio_files", clip_id, ".wav"), rng.uniform(-0.3, 0.3, 16000 * 3), 16000)
    stereo = np.stack([tone(44100, AUDIO_SECONDS, amplitude=0.6), tone(44100, AUDIO_SECONDS, amplitude=0.2)], axis=1)
    write_wav(layout.path("Audio_files", PAIRS[1][0], ".wav"), stereo, 44100)
    write_mp4(layout.path("Video_files", PAIRS[0][0], ".mp4"), gray_frames(FRAMES, 32, 3))
    write_png_folder(layout.path("Video_files", PAIRS[1][0]), gray_frames(FRAMES, 8, 3))


@pytest.fixture(scope="session")
def pristine_layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return build_layout(tmp_path_factory.mktemp("react") / "corpus")


@pytest.fixture
def layout(pristine_layout: Layout, tmp_path: Path) -> Layout:
    """A private copy of the tiny corpus that a test may damage."""
    root = tmp_path / "corpus"
    shutil.copytree(pristine_layout.root, root)
    return Layout(
        root, pristine_layout.pairs, pristine_layout.clips, pristine_layout.mean_face, pristine_layout.neighbours
    )


TINY_CONFIG = """
[model]
window = 16
hop = 4
d_model = 32
heads = 4
ae_width = 32
latent_channels = 8
[train]
batch_size = 8
ae_steps = 20
diffusion_steps = 20
checkpoint_every = 10
"""


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic corpus written by `reactdiff-trainer synth` (6 sessions of 4 s)."""
    from trainer.cli import main

    root = tmp_path_factory.mktemp("synth") / "corpus"
    assert main(["synth", "--out", str(root), "--clips", "6", "--seconds", "4", "--seed", "0"]) == 0
    return root


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A config for a model small and short enough to train in seconds."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture(scope="session")
def tiny_run(synth_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with a briefly trained tiny model (shared by the tests that only read it)."""
    from trainer.cli import main

    folder = tmp_path_factory.mktemp("run")
    (folder / "tiny.toml").write_text(TINY_CONFIG)
    args = ["fit", "--config", str(folder / "tiny.toml"), "--data", str(synth_corpus), "--out", str(folder / "run")]
    assert main([*args, "--no-progress"]) == 0
    return folder / "run"
