"""Reading corpora in the REACT 2023/2024 layout (the official data and the synthetic corpus alike).

    from trainer.data import ReactDataset, random_windows
    ds = ReactDataset("data/synth", "train")
    for window in random_windows(ds, window=50, count=1000, rng=np.random.default_rng(0)):
        ...  # window.speaker_face (50, 58), window.speaker_audio (32000,), window.listener_face (50, 58)

`loaders` reads single files, `react` indexes a split into speaker→listener samples, `windows` cuts them.
"""

from trainer.data.loaders import (
    AUDIO_RATE,
    SAMPLES_PER_FRAME,
    DatasetError,
    fit_audio,
    load_audio,
    load_emotion,
    load_face,
    load_mean_face,
    load_video,
    png_frame_paths,
)
from trainer.data.react import ClipFiles, ReactDataset, Sample, read_pairs
from trainer.data.windows import Window, cut_window, random_windows

__all__ = [
    "AUDIO_RATE",
    "SAMPLES_PER_FRAME",
    "ClipFiles",
    "DatasetError",
    "ReactDataset",
    "Sample",
    "Window",
    "cut_window",
    "fit_audio",
    "load_audio",
    "load_emotion",
    "load_face",
    "load_mean_face",
    "load_video",
    "png_frame_paths",
    "random_windows",
    "read_pairs",
]
